//! Synchronous reads and writes of single files at a storage location (a local path,
//! `file:///abs/path` or `s3://bucket/prefix`): wrappers over [`shared::storage::Store`]
//! for the training and sampling code, which writes model artifacts (weights,
//! `model.json`), checkpoints and previews file by file. Also [`block_on`], which runs a
//! future to completion from synchronous code, inside a tokio runtime or not.
//!
//! Model artifacts as a whole (digest, fetch, cache, checks) are `shared::artifact`.

use anyhow::Context;
use bytes::Bytes;
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

/// Writes the test split's stems of `ds` to `OUT/test_stems.txt`, one a line, sorted (an
/// empty file without a test split), so a later evaluation can use exactly them.
pub fn write_test_stems(out: &str, ds: &shared::dataset::Dataset) -> anyhow::Result<()> {
    write_file(out.trim_end_matches('/'), shared::dataset::TEST_STEMS_FILE, ds.test_stems_text().into_bytes())
}

/// Like [`read_file`], but a missing file is an error naming it.
pub fn require_file(uri: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    read_file(uri, name)?.ok_or_else(|| anyhow::anyhow!("{uri}/{name} does not exist"))
}
