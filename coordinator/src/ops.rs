//! The run operations behind the subcommands, shared by the Redis and embedded modes.

use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use shared::job::{finalize, layout, FinalizeReport};
use shared::queue::{Counts, JobQueue, RunRecord, Submitted};
use shared::spec::RunSpec;
use shared::storage::{Created, Store};

/// Connects to Redis; the error names the URL without its password.
pub async fn connect(redis_url: &str) -> anyhow::Result<Arc<dyn JobQueue>> {
    let q = shared::queue::RedisQueue::connect(redis_url).await?;
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

/// The run's directory in its output store.
pub fn run_store(spec: &RunSpec, run_id: &str) -> anyhow::Result<Store> {
    Ok(Store::open(&spec.output.url)?.child(run_id))
}

/// Checks the output store works and writes `run.json` create-only. An existing `run.json`
/// with the same spec is accepted (idempotent submit); another spec is an error.
pub async fn prepare_output(spec: &RunSpec, run_id: &str) -> anyhow::Result<Store> {
    let root = Store::open(&spec.output.url)?;
    root.check_reachable().await?;
    let store = root.child(run_id);
    let doc = serde_json::json!({
        "run_id": run_id,
        "spec_digest": spec.digest(),
        "created_ms": now_ms(),
        "labelgen_version": env!("CARGO_PKG_VERSION"),
        "spec": spec,
    });
    let body = Bytes::from(serde_json::to_vec_pretty(&doc)?);
    if store.put_create(layout::RUN_JSON, body).await? == Created::AlreadyExists {
        let existing = store.get(layout::RUN_JSON).await?.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&existing).with_context(|| format!("{} is not JSON", store.describe(layout::RUN_JSON)))?;
        let digest = v.get("spec_digest").and_then(|d| d.as_str()).unwrap_or("");
        if digest != spec.digest() {
            bail!(
                "run {run_id} already exists at {} with a different spec (digest {digest}, this spec {}); choose another --run-id",
                store.describe(layout::RUN_JSON),
                spec.digest()
            );
        }
    }
    Ok(store)
}

/// Submits a run: output first (so a bad bucket leaves Redis untouched), then the queue.
pub async fn submit(queue: &dyn JobQueue, spec: &RunSpec, run_id: &str) -> anyhow::Result<Submitted> {
    prepare_output(spec, run_id).await?;
    Ok(queue.submit(&run_record(spec, run_id)).await?)
}

/// The record and spec of a known run.
pub async fn load_run(queue: &dyn JobQueue, run_id: &str) -> anyhow::Result<(RunRecord, RunSpec)> {
    let Some(rec) = queue.run(run_id).await? else {
        bail!("unknown run {run_id:?}: `coordinator list` shows the runs this Redis knows");
    };
    let spec = RunSpec::from_json(&rec.spec_json, &format!("run {run_id}"))?;
    Ok((rec, spec))
}

/// Writes the manifest of a fully committed run and marks it finalized in the queue.
pub async fn finalize_run(queue: &dyn JobQueue, run_id: &str) -> anyhow::Result<(FinalizeReport, Store)> {
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

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
