//! Reading the label maps of a run directory: the `label` paths of its `manifest.jsonl`,
//! then their bytes — plain objects (`data/…/KEY.label.png`) fetched a few at a time,
//! WebDataset members (`data/…/SHARD.tar#KEY.label.png`) by fetching each tar once.

use std::collections::HashMap;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::job::layout::MANIFEST_JSONL;
use crate::storage::Store;

/// Plain objects fetched at once.
const PLAIN_CONCURRENCY: usize = 16;
/// Tars fetched at once (each is held whole in memory while its members are read).
const TAR_CONCURRENCY: usize = 2;

/// The `label` path of every line of `STORE/manifest.jsonl`, in manifest order. Only that
/// field is read. Errors name the file (and the line): a missing manifest (not a finished
/// run directory), a line that is not JSON or has no `label` string, an empty manifest.
pub async fn manifest_label_paths(store: &Store) -> Result<Vec<String>> {
    let origin = store.describe(MANIFEST_JSONL);
    let bytes = store.get(MANIFEST_JSONL).await?.ok_or_else(|| {
        Error::format(&origin, format!("missing: {} is not a finished run directory (a run writes {MANIFEST_JSONL} when it is finalized)", store.display()))
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::format(&origin, format!("not UTF-8 text: {e}")))?;
    let mut paths = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::format(&origin, format!("line {}: not a JSON object: {e}", i + 1)))?;
        match value.get("label").and_then(|v| v.as_str()) {
            Some(label) if !label.is_empty() => paths.push(label.to_string()),
            _ => return Err(Error::format(&origin, format!("line {}: no \"label\" path (expected a manifest line with the label PNG's path relative to the run directory)", i + 1))),
        }
    }
    if paths.is_empty() {
        return Err(Error::format(&origin, "holds no samples"));
    }
    Ok(paths)
}

/// What to fetch: one object, or the wanted members of one tar.
enum Unit<'a> {
    Plain(&'a str),
    /// The tar's path and `(member, manifest path)` pairs.
    Tar(&'a str, Vec<(&'a str, &'a str)>),
}

/// Reads the files named by manifest `paths` (relative to `store`; `TAR#MEMBER` for a tar
/// member) and calls `f(origin, bytes)` for each, `origin` being where the file is, for
/// messages ([`Store::describe`] of the path). Every tar is fetched once, however many
/// members are read from it. Calls come in no fixed order (plain files first, then tars'
/// members); the first error stops the reading and is returned. Errors name the object:
/// missing, not a tar, no such member.
pub async fn read_label_files<E: From<Error>>(store: &Store, paths: &[String], mut f: impl FnMut(&str, Vec<u8>) -> std::result::Result<(), E>) -> std::result::Result<(), E> {
    let mut plain = Vec::new();
    let mut tars: Vec<Unit> = Vec::new();
    let mut tar_index: HashMap<&str, usize> = HashMap::new();
    for path in paths {
        match path.split_once('#') {
            None => plain.push(Unit::Plain(path)),
            Some((tar, member)) => {
                let i = *tar_index.entry(tar).or_insert_with(|| {
                    tars.push(Unit::Tar(tar, Vec::new()));
                    tars.len() - 1
                });
                if let Unit::Tar(_, members) = &mut tars[i] {
                    members.push((member, path));
                }
            }
        }
    }
    for (units, concurrency) in [(plain, PLAIN_CONCURRENCY), (tars, TAR_CONCURRENCY)] {
        let mut fetched = futures::stream::iter(units).map(|u| fetch(store, u)).buffered(concurrency);
        while let Some(files) = fetched.next().await {
            for (origin, bytes) in files? {
                f(&origin, bytes)?;
            }
        }
    }
    Ok(())
}

/// The `(origin, bytes)` of one unit's files.
async fn fetch(store: &Store, unit: Unit<'_>) -> Result<Vec<(String, Vec<u8>)>> {
    let object = match &unit {
        Unit::Plain(p) | Unit::Tar(p, _) => *p,
    };
    let bytes = store.get(object).await?.ok_or_else(|| Error::format(store.describe(object), format!("listed in {MANIFEST_JSONL} but missing")))?;
    let Unit::Tar(_, members) = unit else {
        return Ok(vec![(store.describe(object), bytes.to_vec())]);
    };
    let mut wanted: HashMap<&str, &str> = members.iter().copied().collect();
    let mut out = Vec::with_capacity(wanted.len());
    let mut archive = tar::Archive::new(std::io::Cursor::new(bytes));
    let bad = |m: String| Error::format(store.describe(object), m);
    for entry in archive.entries().map_err(|e| bad(format!("not a tar: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("bad tar entry: {e}")))?;
        let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(path) = wanted.remove(name.as_str()) {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| bad(format!("reading member {name}: {e}")))?;
            out.push((store.describe(path), data));
        }
    }
    if let Some(path) = members.iter().map(|(_, p)| *p).find(|p| wanted.values().any(|w| w == p)) {
        let member = path.split_once('#').map_or(path, |(_, m)| m);
        return Err(bad(format!("has no member {member} (listed in {MANIFEST_JSONL})")));
    }
    Ok(out)
}
