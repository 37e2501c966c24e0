//! Test hooks, read from the environment, for the failure tests:
//!
//! - `LABELGEN_FAULT_FILE=PATH`: while PATH exists, a shard whose number is a line of it
//!   (or every shard, for a line `*`) fails with a retryable "injected fault" error.
//! - `LABELGEN_BATCH_DELAY_MS=N`: sleep N ms before a shard's first batch and after each
//!   batch handed on (on the thread that hands batches on), so jobs stay in flight long
//!   enough to be interrupted.
//! - `LABELGEN_BEFORE_COMMIT_DIR=DIR` (with `LABELGEN_BEFORE_COMMIT_MS=N`): when a shard's
//!   data is uploaded and its commit is next, create `DIR/SHARD.ready` and wait N ms, so a
//!   test can freeze the worker exactly between generating and committing.

use crate::error::{Error, Result};

pub fn check_injected_fault(shard: u64) -> Result<()> {
    let Some(path) = std::env::var_os("LABELGEN_FAULT_FILE") else { return Ok(()) };
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let hit = text.lines().map(str::trim).any(|l| l == "*" || l.parse::<u64>().ok() == Some(shard));
    if hit {
        return Err(Error::Job(format!("injected fault for shard {shard} (LABELGEN_FAULT_FILE)")));
    }
    Ok(())
}

pub fn batch_delay() {
    if let Some(ms) = std::env::var("LABELGEN_BATCH_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

pub async fn before_commit(shard: u64) {
    let Some(dir) = std::env::var_os("LABELGEN_BEFORE_COMMIT_DIR") else { return };
    let _ = std::fs::write(std::path::Path::new(&dir).join(format!("{shard}.ready")), std::process::id().to_string());
    if let Some(ms) = std::env::var("LABELGEN_BEFORE_COMMIT_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}
