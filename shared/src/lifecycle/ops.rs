//! The run operations behind the coordinator's subcommands, shared by the Redis and
//! embedded modes: submit, look up, finalize, status figures.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::job::{finalize, prepare_output, run_store, FinalizeReport};
use crate::queue::{Counts, JobQueue, RunRecord, Submitted};
use crate::spec::RunSpec;
use crate::storage::Store;

/// Connects to Redis; the error names the URL without its password.
pub async fn connect(redis_url: &str) -> Result<Arc<dyn JobQueue>> {
    let q = crate::queue::RedisQueue::connect(redis_url).await?;
    Ok(Arc::new(q))
}

/// The queue's record of a new run.
pub fn run_record(spec: &RunSpec, run_id: &str) -> RunRecord {
    RunRecord {
        run_id: run_id.to_string(),
        spec_digest: spec.digest(),
        spec_json: spec.canonical_json(),
        shards: spec.shards(),
        max_attempts: spec.run.max_attempts,
        lease_ms: spec.run.lease_seconds * 1000,
        backoff_ms: (spec.run.retry_backoff_seconds * 1000.0) as u64,
        max_backoff_ms: 300_000,
        priority: spec.run.priority,
        created_ms: 0,
    }
}

/// Submits a run: output first (so a bad bucket leaves Redis untouched), then the queue.
pub async fn submit(queue: &dyn JobQueue, spec: &RunSpec, run_id: &str) -> Result<Submitted> {
    prepare_output(spec, run_id).await?;
    queue.submit(&run_record(spec, run_id)).await
}

/// The record and spec of a known run.
pub async fn load_run(queue: &dyn JobQueue, run_id: &str) -> Result<(RunRecord, RunSpec)> {
    let Some(rec) = queue.run(run_id).await? else {
        return Err(Error::Run { run: run_id.into(), message: "unknown run: `coordinator list` shows the runs this Redis knows".into() });
    };
    let spec = RunSpec::from_json(&rec.spec_json, &format!("run {run_id}"))?;
    Ok((rec, spec))
}

/// Writes the manifest of a fully committed run and marks it finalized in the queue.
pub async fn finalize_run(queue: &dyn JobQueue, run_id: &str) -> Result<(FinalizeReport, Store)> {
    let (_, spec) = load_run(queue, run_id).await?;
    let store = run_store(&spec, run_id)?;
    let report = finalize(&store, run_id, &spec).await?;
    queue.mark_finalized(run_id).await?;
    Ok((report, store))
}

/// Samples in committed shards (exact: the last shard may be short).
pub fn committed_samples(spec: &RunSpec, counts: &Counts) -> u64 {
    (counts.committed * spec.run.shard_size).min(spec.run.count)
}

pub fn status_json(rec: &RunRecord, spec: &RunSpec, counts: &Counts) -> serde_json::Value {
    serde_json::json!({
        "run_id": rec.run_id,
        "state": counts.state.as_str(),
        "samples": { "total": spec.run.count, "committed": committed_samples(spec, counts) },
        "shards": counts,
        "output": spec.output.url,
        "pipeline": spec.pipeline.kind,
        "spec_digest": rec.spec_digest,
        "created_ms": rec.created_ms,
    })
}
