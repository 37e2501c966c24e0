//! Reading a finished run directory: the lines of its `manifest.jsonl` (whole, or streamed
//! a line at a time by [`JsonLines`]), then the files they name — plain objects (`data/…/KEY.label.png`) fetched a few at a time,
//! WebDataset members (`dataset/SHARD.tar#KEY.label.png`) by fetching each tar once.

use std::collections::HashMap;

use futures::StreamExt;

use super::layout::{self, MANIFEST_JSONL};
use super::record::ManifestLine;
use crate::error::{Error, Result};
use crate::storage::Store;

/// Plain objects fetched at once.
const PLAIN_CONCURRENCY: usize = 16;
/// Tars read at once (each streamed, up to its last wanted member; only the wanted
/// members are held).
const TAR_CONCURRENCY: usize = 2;

/// Every line of `STORE/manifest.jsonl`, in manifest order, read through [`JsonLines`].
/// Errors name the file (and the line): a missing manifest (not a finished run
/// directory), a line that is not a manifest line or has an empty path, an empty manifest.
pub async fn read_manifest(store: &Store) -> Result<Vec<ManifestLine>> {
    let origin = store.describe(MANIFEST_JSONL);
    if !store.exists(MANIFEST_JSONL).await? {
        return Err(Error::format(&origin, format!("missing: {} is not a finished run directory (a run writes {MANIFEST_JSONL} when it is finalized)", store.display())));
    }
    let mut reader = JsonLines::open(store, MANIFEST_JSONL).await?;
    let mut lines = Vec::new();
    while let Some((no, line)) = reader.next::<ManifestLine>(MANIFEST_LINE).await? {
        if line.label.is_empty() || line.image.is_empty() {
            return Err(Error::format(&origin, format!("line {no}: empty \"image\" or \"label\" path")));
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(Error::format(&origin, "holds no samples"));
    }
    Ok(lines)
}

/// What a line of `manifest.jsonl` is called in errors.
pub const MANIFEST_LINE: &str = "a manifest line (index, key, image, label, seed, …)";

/// A JSON-lines object read as a stream, a line at a time, hashed as it goes: what reads
/// `manifest.jsonl` or `dataset/shards.jsonl` of a run too large to hold. Blank lines are
/// skipped; errors name the object and the line.
pub struct JsonLines {
    stream: futures::stream::BoxStream<'static, Result<bytes::Bytes>>,
    origin: String,
    buf: Vec<u8>,
    start: usize,
    line: u64,
    ended: bool,
    hasher: sha2::Sha256,
}

impl JsonLines {
    /// Opens `rel` in `store`; an error naming it when it does not exist.
    pub async fn open(store: &Store, rel: &str) -> Result<JsonLines> {
        let origin = store.describe(rel);
        let stream = store.get_stream(rel).await?.ok_or_else(|| Error::format(&origin, "missing"))?;
        Ok(JsonLines { stream, origin, buf: Vec::new(), start: 0, line: 0, ended: false, hasher: sha2::Digest::new() })
    }

    /// The next line parsed as `T` (`what` names a line for errors: "a manifest line"),
    /// with its number (from 1); `None` at the end.
    pub async fn next<T: serde::de::DeserializeOwned>(&mut self, what: &str) -> Result<Option<(u64, T)>> {
        loop {
            let line = match self.buf[self.start..].iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let line = self.start..self.start + pos;
                    self.start += pos + 1;
                    Some(line)
                }
                None if self.ended => (self.start < self.buf.len()).then(|| {
                    let line = self.start..self.buf.len();
                    self.start = self.buf.len();
                    line
                }),
                None => {
                    self.buf.drain(..self.start);
                    self.start = 0;
                    match self.stream.next().await.transpose()? {
                        Some(chunk) => {
                            sha2::Digest::update(&mut self.hasher, &chunk);
                            self.buf.extend_from_slice(&chunk);
                        }
                        None => self.ended = true,
                    }
                    continue;
                }
            };
            let Some(range) = line else { return Ok(None) };
            self.line += 1;
            let text = &self.buf[range];
            if text.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let parsed = serde_json::from_slice(text).map_err(|e| Error::format(&self.origin, format!("line {}: not {what}: {e}", self.line)))?;
            return Ok(Some((self.line, parsed)));
        }
    }

    /// The sha256 (hex) of the bytes read so far: of the whole object once `next` returned `None`.
    pub fn sha256(&self) -> String {
        hex::encode(sha2::Digest::finalize(self.hasher.clone()))
    }

    /// Where the object is, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }
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
pub async fn read_files<E: From<Error>>(store: &Store, paths: &[String], mut f: impl FnMut(&str, Vec<u8>) -> std::result::Result<(), E>) -> std::result::Result<(), E> {
    let mut plain = Vec::new();
    let mut tars: Vec<Unit> = Vec::new();
    let mut tar_index: HashMap<&str, usize> = HashMap::new();
    for path in paths {
        match layout::split_member(path) {
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

/// The `(origin, bytes)` of one unit's files. A tar is streamed (a WebDataset shard may
/// be gigabytes) and read only up to its last wanted member.
async fn fetch(store: &Store, unit: Unit<'_>) -> Result<Vec<(String, Vec<u8>)>> {
    let (object, members) = match unit {
        Unit::Plain(p) => {
            let bytes = store.get(p).await?.ok_or_else(|| missing(store, p))?;
            return Ok(vec![(store.describe(p), bytes.to_vec())]);
        }
        Unit::Tar(p, members) => (p, members),
    };
    let stream = store.get_stream(object).await?.ok_or_else(|| missing(store, object))?;
    // A storage error mid-stream reaches the tar reader as an I/O error; it is kept here so
    // that it is reported as what it is (retryable), not as a damaged tar.
    let failed: std::sync::Arc<std::sync::Mutex<Option<Error>>> = Default::default();
    let keep = failed.clone();
    let chunks = stream.map(move |chunk| {
        chunk.map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            keep.lock().unwrap().get_or_insert(e);
            io
        })
    });
    let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(chunks));
    // member name → manifest path: owned, for the blocking reader.
    let wanted: HashMap<String, String> = members.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let origin = store.describe(object);
    let read = tokio::task::spawn_blocking(move || read_members(bridge, wanted, &origin))
        .await
        .map_err(|e| Error::format(store.describe(object), format!("reading the tar panicked: {e}")))?;
    if let Some(e) = failed.lock().unwrap().take() {
        return Err(e);
    }
    let (found, left) = read?;
    if let Some((member, _)) = members.iter().find(|(m, _)| left.contains_key(*m)) {
        return Err(Error::format(store.describe(object), format!("has no member {member} (listed in {MANIFEST_JSONL})")));
    }
    Ok(found.into_iter().map(|(path, data)| (store.describe(&path), data)).collect())
}

fn missing(store: &Store, object: &str) -> Error {
    Error::format(store.describe(object), format!("listed in {MANIFEST_JSONL} but missing"))
}

/// Reads the `wanted` members (name → manifest path) from a tar, stopping once all are
/// found; returns `(manifest path, bytes)` of those found and the ones not found.
#[allow(clippy::type_complexity)] // a list of pairs and a map, named in the doc
fn read_members(tar: impl std::io::Read, mut wanted: HashMap<String, String>, origin: &str) -> Result<(Vec<(String, Vec<u8>)>, HashMap<String, String>)> {
    let mut found = Vec::with_capacity(wanted.len());
    let mut archive = tar::Archive::new(tar);
    let bad = |m: String| Error::format(origin, m);
    for entry in archive.entries().map_err(|e| bad(format!("not a tar: {e}")))? {
        if wanted.is_empty() {
            break;
        }
        let mut entry = entry.map_err(|e| bad(format!("bad tar entry: {e}")))?;
        let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(path) = wanted.remove(&name) {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| bad(format!("reading member {name}: {e}")))?;
            // The tar reader ends a member quietly where the object ends.
            if data.len() as u64 != entry.size() {
                return Err(bad(format!("member {name} is cut short: the tar ends after {} of its {} bytes", data.len(), entry.size())));
            }
            found.push((path, data));
        }
    }
    Ok((found, wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_files_and_tar_members_once_each() {
        use bytes::Bytes;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Store::memory();
            let e = read_manifest(&store).await.unwrap_err().to_string();
            assert!(e.contains("manifest.jsonl") && e.contains("missing") && e.contains("not a finished run directory"), "{e}");

            let mut tar = tar::Builder::new(Vec::new());
            for (name, data) in [("00000002.png", b"img2".as_slice()), ("00000002.label.png", b"lab2"), ("00000003.label.png", b"lab3")] {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, name, data).unwrap();
            }
            store.put("data/000001/0/000001.tar", Bytes::from(tar.into_inner().unwrap())).await.unwrap();
            store.put("data/000000/0/00000000.label.png", Bytes::from_static(b"lab0")).await.unwrap();
            store.put("data/000000/0/00000001.label.png", Bytes::from_static(b"lab1")).await.unwrap();
            let line = |i: u64, label: &str| {
                let mut l = ManifestLine::for_files(i, &format!("{i:08}"), &label.replace(".label", ""), label);
                l.seed = u64::MAX - i;
                serde_json::to_string(&l).unwrap()
            };
            let lines = [
                line(0, "data/000000/0/00000000.label.png"),
                line(1, "data/000000/0/00000001.label.png"),
                String::new(),
                line(2, "data/000001/0/000001.tar#00000002.label.png"),
                line(3, "data/000001/0/000001.tar#00000003.label.png"),
            ];
            store.put("manifest.jsonl", Bytes::from(lines.join("\n"))).await.unwrap();
            let paths = read_manifest(&store).await.unwrap().into_iter().map(|l| l.label).collect::<Vec<_>>();
            assert_eq!(paths.len(), 4);
            let mut got = Vec::new();
            read_files::<crate::Error>(&store, &paths, |origin, bytes| {
                got.push((origin.to_string(), String::from_utf8(bytes).unwrap()));
                Ok(())
            })
            .await
            .unwrap();
            got.sort();
            assert_eq!(got.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(), ["lab0", "lab1", "lab2", "lab3"]);
            assert_eq!(got[2].0, store.describe("data/000001/0/000001.tar#00000002.label.png"));

            // A member the tar lacks, an object that is missing, a line without a label.
            let bad = vec!["data/000001/0/000001.tar#00000009.label.png".to_string()];
            let e = read_files::<crate::Error>(&store, &bad, |_, _| Ok(())).await.unwrap_err().to_string();
            assert!(e.contains("000001.tar") && e.contains("has no member 00000009.label.png"), "{e}");
            // A tar cut short inside a wanted member (an upload that lost its end): an
            // error naming the tar, never a short file.
            let whole = store.get("data/000001/0/000001.tar").await.unwrap().unwrap();
            store.put("data/000002/0/000002.tar", whole.slice(..512 * 5 + 2)).await.unwrap();
            let cut = vec!["data/000002/0/000002.tar#00000003.label.png".to_string()];
            let e =
                read_files::<crate::Error>(&store, &cut, |origin, bytes| Err(crate::Error::format(origin, format!("read {} bytes", bytes.len())))).await.unwrap_err().to_string();
            assert!(e.contains("000002.tar") && e.contains("member 00000003.label.png is cut short") && e.contains("after 2 of its 4 bytes"), "{e}");
            let bad = vec!["data/nope.label.png".to_string()];
            let e = read_files::<crate::Error>(&store, &bad, |_, _| Ok(())).await.unwrap_err().to_string();
            assert!(e.contains("data/nope.label.png") && e.contains("missing"), "{e}");
            store.put("manifest.jsonl", Bytes::from_static(b"{\"index\": 0}\n")).await.unwrap();
            let e = read_manifest(&store).await.unwrap_err().to_string();
            assert!(e.contains("manifest.jsonl") && e.contains("line 1") && e.contains("not a manifest line"), "{e}");
            store.put("manifest.jsonl", Bytes::from_static(b"\n")).await.unwrap();
            let e = read_manifest(&store).await.unwrap_err().to_string();
            assert!(e.contains("holds no samples"), "{e}");
        });
    }
}
