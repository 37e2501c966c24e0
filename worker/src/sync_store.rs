//! Synchronous reads and writes of single files at a storage location (a local path,
//! `file:///abs/path` or `s3://bucket/prefix`): wrappers over [`shared::storage::Store`]
//! for the training and sampling code, which writes model artifacts (weights,
//! `model.json`), checkpoints and previews file by file. Also [`block_on`], which runs a
//! future to completion from synchronous code, inside a tokio runtime or not.
//!
//! Model artifacts as a whole (digest, fetch, cache, checks) are `shared::artifact`.
//! Training checkpoints are written as a [`FileSet`], so a kill mid-save never leaves a
//! mix of two steps.

use std::collections::BTreeMap;

use anyhow::Context;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shared::artifact::sha256_hex;
use shared::storage::Store;

/// Runs `f` to completion: on the current tokio runtime (from a blocking section) if
/// there is one, else on a fresh current-thread runtime.
pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => tokio::task::block_in_place(|| h.block_on(f)),
        Err(_) => tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(f),
    }
}

/// Writes `name` under the location `uri`.
pub fn write_file(uri: &str, name: &str, data: Vec<u8>) -> anyhow::Result<()> {
    let store = Store::open(uri).with_context(|| format!("artifact location {uri}"))?;
    block_on(store.put(name, Bytes::from(data))).with_context(|| format!("writing {}", store.describe(name)))?;
    Ok(())
}

/// Reads `name` from the location `uri`; `None` if it does not exist.
pub fn read_file(uri: &str, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let store = Store::open(uri).with_context(|| format!("artifact location {uri}"))?;
    Ok(block_on(store.get(name)).with_context(|| format!("reading {}", store.describe(name)))?.map(|b| b.to_vec()))
}

/// Where both trainers keep their checkpoint's state file under OUT (in the checkpoint
/// directory, `checkpoint/`, beside its file sets).
pub const CHECKPOINT_STATE: &str = "checkpoint/state.json";

/// The split settings beside the test stems: `OUT/split.json`.
pub const SPLIT_FILE: &str = "split.json";

/// The settings that decide a split, as `split.json` holds them. Nothing held out: the
/// group pattern splits nothing, so it is no part of the split.
fn split_settings(test_fraction: f64, split_group: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "test_fraction": test_fraction, "split_group": split_group.filter(|_| test_fraction > 0.0) })
}

/// Writes the test split's stems of `ds` to `OUT/test_stems.txt`, one a line, sorted (an
/// empty file without a test split), so a later evaluation can use exactly them, and the
/// settings that made the split to `OUT/split.json`.
///
/// A `resume` of a checkpoint must split the same way: the model has trained on the first
/// run's train split, and an evaluation trusts the list to name only files it never saw.
/// The same `--test-fraction` and `--split-group` put every file on the same side as
/// before (files added since may join either side), so the settings are compared; an
/// OUT written before `split.json` existed is checked by its list instead: every file it
/// held out must still be held out. A refused resume changes nothing.
pub fn write_test_stems(out: &str, ds: &shared::dataset::Dataset, resume: bool) -> anyhow::Result<()> {
    let out = out.trim_end_matches('/');
    let split = split_settings(ds.options.test_fraction, ds.options.split_group.as_deref());
    let stems = ds.test_stems_text();
    if resume && read_file(out, CHECKPOINT_STATE)?.is_some() {
        let how = "resume with the first run's --test-fraction and --split-group (or start again with --overwrite)";
        if let Some(first) = read_file(out, SPLIT_FILE)? {
            let first: serde_json::Value = serde_json::from_slice(&first).with_context(|| format!("{out}/{SPLIT_FILE}: not JSON"))?;
            // Read through the same rule: one written before a pattern that held nothing
            // out was left out of it still has the pattern.
            let first = match first["test_fraction"].as_f64() {
                Some(f) => split_settings(f, first["split_group"].as_str()),
                None => first,
            };
            if first != split {
                anyhow::bail!("{out}/{SPLIT_FILE}: the run being resumed split its data with {first}, this run with {split}: {how}");
            }
        } else if let Some(first) = read_file(out, shared::dataset::TEST_STEMS_FILE)? {
            let now: std::collections::BTreeSet<&str> = stems.lines().collect();
            let first = String::from_utf8_lossy(&first).into_owned();
            if let Some(moved) = first.lines().find(|s| !s.is_empty() && !now.contains(s)) {
                anyhow::bail!("{out}/{}: the run being resumed held out {moved}, which this run would train on: {how}", shared::dataset::TEST_STEMS_FILE);
            }
        }
    }
    write_file(out, shared::dataset::TEST_STEMS_FILE, stems.into_bytes())?;
    write_file(out, SPLIT_FILE, serde_json::to_vec_pretty(&split).expect("split settings serialise"))
}

/// A training checkpoint's files, written so that a kill at any moment leaves one whole
/// set: each save writes its files under `DIR/step-N/` ([`write_set`]), then the state
/// file that names the set with each file's sha256 (one atomic write: the commit), then
/// removes the sets before it ([`prune_sets`]). A state file without a set (written before
/// 2026-12-07) names the files directly under `DIR/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSet {
    /// The set's directory under `DIR/` (`step-N`).
    pub dir: String,
    /// Each file's sha256 (hex), by name.
    pub sha256: BTreeMap<String, String>,
}

/// Writes `files` under `uri/DIR/step-STEP/` (or `step-STEP-RANDOM/` when that directory
/// is taken: a run restarted with `--overwrite` whose save lands on the step of the
/// checkpoint still named, which must stay whole until the new state file is written) and
/// returns the set to record in the state file.
pub fn write_set(uri: &str, dir: &str, step: u64, files: Vec<(&str, Vec<u8>)>) -> anyhow::Result<FileSet> {
    let store = Store::open(uri).with_context(|| format!("artifact location {uri}"))?;
    let mut set = format!("step-{step}");
    let taken = |set: &str| block_on(store.list(&format!("{dir}/{set}"))).map(|l| !l.is_empty()).with_context(|| format!("listing {}", store.describe(dir)));
    if taken(&set)? {
        set = format!("step-{step}-{:08x}", rand::random::<u32>());
    }
    let mut sha256 = BTreeMap::new();
    for (name, bytes) in files {
        sha256.insert(name.to_string(), sha256_hex(&bytes));
        write_file(uri, &format!("{dir}/{set}/{name}"), bytes)?;
    }
    Ok(FileSet { dir: set, sha256 })
}

/// Removes everything under `uri/DIR/` but the state file `keep` and the set `current`:
/// earlier sets, files of the old layout, and a set whose save was killed before its
/// state file.
pub fn prune_sets(uri: &str, dir: &str, keep: &str, current: &FileSet) -> anyhow::Result<()> {
    let store = Store::open(uri).with_context(|| format!("artifact location {uri}"))?;
    let (keep, current) = (format!("{dir}/{keep}"), format!("{dir}/{}/", current.dir));
    for path in block_on(store.list(dir)).with_context(|| format!("listing {}", store.describe(dir)))? {
        if path != keep && !path.starts_with(&current) {
            block_on(store.delete(&path)).with_context(|| format!("removing {}", store.describe(&path)))?;
        }
    }
    Ok(())
}

/// File `name` of a checkpoint under `uri/DIR/`: from its set, checked against the sha256
/// the state file records, or (no set: the old layout) directly under `DIR/`.
pub fn read_set_file(uri: &str, dir: &str, set: Option<&FileSet>, name: &str) -> anyhow::Result<Vec<u8>> {
    let Some(set) = set else { return require_file(uri, &format!("{dir}/{name}")) };
    let path = format!("{dir}/{}/{name}", set.dir);
    let bytes = require_file(uri, &path)?;
    let want = set.sha256.get(name).with_context(|| format!("{uri}/{dir}: the state file records no sha256 for {name}"))?;
    let got = sha256_hex(&bytes);
    if &got != want {
        anyhow::bail!(
            "{uri}/{path}: sha256 {got}, but the checkpoint's state file records {want}: the checkpoint is damaged (resume from another copy, or start again without --resume)"
        );
    }
    Ok(bytes)
}

/// Refuses to start a training run from step 0 into `uri` when `uri/DIR/state.json` holds
/// a checkpoint, unless asked to (`--resume` continues it; `--overwrite` replaces it at the
/// first save): a rerun that forgot `--resume` would otherwise lose it silently.
/// What both trainers refuse on `--resume` besides their own settings (`origin`: the
/// checkpoint's state file): another class table (the same classes in another order would
/// swap what the channels mean; `None`, a checkpoint from before the table was recorded,
/// is not checked), and a checkpoint already past `--steps` (nothing to train).
pub fn check_resume(origin: &str, was: Option<&shared::ClassTable>, now: &shared::ClassTable, step: u64, steps: u64) -> anyhow::Result<()> {
    if let Some(what) = was.and_then(|was| was.difference(now, ("the checkpoint", "this run's --classes"))) {
        anyhow::bail!("{origin}: the class table differs: {what}; resume with the checkpoint's class table, or start again with --overwrite or a new --out");
    }
    if step > steps {
        anyhow::bail!("{origin}: the checkpoint is at step {step}, past --steps {steps}: ask for more steps to go on from it, or start again with --overwrite");
    }
    Ok(())
}

pub fn check_fresh_start(uri: &str, dir: &str, resume: bool, overwrite: bool) -> anyhow::Result<()> {
    let state = format!("{dir}/state.json");
    if resume || overwrite || read_file(uri, &state)?.is_none() {
        return Ok(());
    }
    anyhow::bail!("{uri}/{state}: a checkpoint is there; --resume to continue it, --overwrite to start again from step 0 (it is replaced at the first save), or use another --out")
}

/// Like [`read_file`], but a missing file is an error naming it.
pub fn require_file(uri: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    read_file(uri, name)?.ok_or_else(|| anyhow::anyhow!("{uri}/{name} does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resume must split as the first run did: another fraction is refused; a group
    /// pattern that held nothing out (fraction 0) is no part of the split, also in a
    /// split.json written before it was left out.
    #[test]
    fn a_resume_splits_as_the_first_run() {
        use shared::dataset::{Dataset, DatasetOptions};
        let dir = std::env::temp_dir().join(format!("labelgen-split-{}", rand::random::<u64>()));
        let data = dir.join("data");
        shared::procedural::write_dataset(&data, 12, 8, 1, &Default::default(), |_| {}).unwrap();
        let out = dir.join("out");
        let out = out.to_str().unwrap();
        let open = |test_fraction: f64, group: Option<&str>| {
            Dataset::open_with(
                &data,
                shared::ClassTable::ai_hub(),
                &DatasetOptions { test_fraction, split_group: group.map(str::to_string), labels_only: true, ..Default::default() },
            )
            .unwrap()
        };
        write_test_stems(out, &open(0.0, Some("^[^_]+")), false).unwrap();
        write_file(out, CHECKPOINT_STATE, b"{}".to_vec()).unwrap();
        write_test_stems(out, &open(0.0, None), true).expect("a pattern that held nothing out is no part of the split");
        write_file(out, SPLIT_FILE, br#"{"test_fraction": 0.0, "split_group": "^[^_]+"}"#.to_vec()).unwrap();
        write_test_stems(out, &open(0.0, None), true).expect("nor in an older split.json");
        let e = write_test_stems(out, &open(0.5, None), true).unwrap_err().to_string();
        assert!(e.contains("split.json") && e.contains("--test-fraction"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The old layout (files directly under the directory, no set) still reads; a set
    /// reads with its digests checked; pruning keeps only the state file and the set.
    #[test]
    fn file_sets_read_check_and_prune() {
        let dir = std::env::temp_dir().join(format!("labelgen-fileset-{}", rand::random::<u64>()));
        let uri = dir.to_str().unwrap();
        write_file(uri, "ck/a.mpk", b"old".to_vec()).unwrap();
        assert_eq!(read_set_file(uri, "ck", None, "a.mpk").unwrap(), b"old");
        let set = write_set(uri, "ck", 7, vec![("a.mpk", b"new a".to_vec()), ("b.mpk", b"new b".to_vec())]).unwrap();
        assert_eq!(set.dir, "step-7");
        // A directory taken (a restart over the same step) is not written into.
        let again = write_set(uri, "ck", 7, vec![("a.mpk", b"newer a".to_vec())]).unwrap();
        assert!(again.dir.starts_with("step-7-") && again.dir.len() == "step-7-".len() + 8, "{}", again.dir);
        assert_eq!(read_set_file(uri, "ck", Some(&set), "a.mpk").unwrap(), b"new a");
        write_file(uri, "ck/state.json", b"{}".to_vec()).unwrap();
        write_file(uri, "ck/step-3/a.mpk", b"earlier".to_vec()).unwrap();
        prune_sets(uri, "ck", "state.json", &set).unwrap();
        let mut left: Vec<_> = walk(&dir);
        left.sort();
        assert_eq!(left, ["ck/state.json", "ck/step-7/a.mpk", "ck/step-7/b.mpk"]);
        assert_eq!(read_set_file(uri, "ck", Some(&set), "b.mpk").unwrap(), b"new b");
        std::fs::write(dir.join("ck/step-7/b.mpk"), b"bit rot").unwrap();
        let e = read_set_file(uri, "ck", Some(&set), "b.mpk").unwrap_err().to_string();
        assert!(e.contains("ck/step-7/b.mpk") && e.contains("damaged"), "{e}");
        let e = read_set_file(uri, "ck", Some(&set), "c.mpk").unwrap_err().to_string();
        assert!(e.contains("c.mpk"), "{e}");
        // A run from step 0 into a directory holding a checkpoint needs --overwrite.
        let e = check_fresh_start(uri, "ck", false, false).unwrap_err().to_string();
        assert!(e.contains("ck/state.json") && e.contains("--resume") && e.contains("--overwrite"), "{e}");
        check_fresh_start(uri, "ck", true, false).unwrap();
        check_fresh_start(uri, "ck", false, true).unwrap();
        check_fresh_start(uri, "other", false, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn walk(root: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out
    }
}
