//! The run operations behind the coordinator's subcommands, shared by the Redis and
//! embedded modes: submit, look up, finalize, status figures.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::job::{finalize, prepare_output, run_store, FinalizeReport};
use crate::queue::{Counts, JobQueue, RunRecord, RunState, Submitted};
use crate::spec::RunSpec;
use crate::storage::Store;

/// Connects to Redis; the error names the URL without its password.
pub async fn connect(redis_url: &str) -> Result<Arc<dyn JobQueue>> {
    let q = crate::queue::RedisQueue::connect(redis_url).await?;
    Ok(Arc::new(q))
}

/// Refuses `output.url = "memory://"` for a run that more than one process writes or
/// reads (submitted to Redis, or sharded statically): its objects would live and die
/// inside one process, unseen by the workers, the other tasks and finalize.
pub fn require_shared_output(spec: &RunSpec) -> Result<()> {
    if matches!(crate::storage::StoreUrl::parse(&spec.output.url), Ok(crate::storage::StoreUrl::Memory)) {
        return Err(crate::Error::Invalid {
            origin: "run spec".into(),
            key: "output.url".into(),
            message: "memory:// keeps objects inside one process: other workers, tasks and finalize could not see them; use s3://BUCKET/PREFIX or a directory (or `worker run`, which runs the whole run in one process)".into(),
        });
    }
    Ok(())
}

/// The spec's local paths that are relative (`output.url`, the models), by key: each
/// process reads them from its own working directory, so a run submitted to Redis finds
/// them only where every worker starts in the submitter's directory.
pub fn relative_paths(spec: &RunSpec) -> Vec<(&'static str, &str)> {
    let labels = spec.pipeline.labels.as_ref().map(|l| l.model.as_str());
    let images = spec.pipeline.images.as_ref().map(|i| i.model.as_str());
    [("output.url", Some(spec.output.url.as_str())), ("pipeline.labels.model", labels), ("pipeline.images.model", images)]
        .into_iter()
        .filter_map(|(key, v)| match (v, v.map(crate::storage::StoreUrl::parse)) {
            (Some(v), Some(Ok(crate::storage::StoreUrl::Local { dir }))) if dir.is_relative() => Some((key, v)),
            _ => None,
        })
        .collect()
}

/// Where the doubling retry delay stops (unless `run.retry_backoff_seconds` starts above it).
const MAX_BACKOFF_MS: u64 = 300_000;

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
        // Doubling stops at 5 minutes, or at the first delay if that is longer.
        max_backoff_ms: MAX_BACKOFF_MS.max((spec.run.retry_backoff_seconds * 1000.0) as u64),
        priority: spec.run.priority,
        created_ms: 0,
    }
}

/// Submits a run: output first (so a bad bucket leaves Redis untouched), then the queue.
/// Shards whose commit record already exists (the same run submitted again after Redis
/// lost it, say by a restarted coordinator Job, or an embedded run resumed) are marked
/// committed, not queued, as [`resume`] does.
pub async fn submit(queue: &dyn JobQueue, spec: &RunSpec, run_id: &str) -> Result<Submission> {
    let store = prepare_output(spec, run_id).await?;
    let mut committed = crate::manifest::committed_shards(&store).await?;
    committed.retain(|&s| s < spec.shards());
    let submitted = queue.submit_restored(&run_record(spec, run_id), &committed).await?;
    // Submitting again changes nothing, also for a cancelled or finalized run: say which.
    let state = match submitted {
        Submitted::Created => RunState::Active,
        Submitted::AlreadyExists => queue.counts(run_id).await?.state,
    };
    Ok(Submission { submitted, committed: committed.len() as u64, state })
}

/// What [`submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submission {
    pub submitted: Submitted,
    /// Shards with a commit record in storage: marked committed, not queued.
    pub committed: u64,
    /// The run's state in the queue (a run submitted again may be cancelled or finalized).
    pub state: RunState,
}

/// What `coordinator plan` prints: a run's size and an array that covers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub samples: u64,
    pub shard_size: u64,
    pub shards: u64,
    pub spec_digest: String,
    /// The run id `worker run-shard` uses without `--run-id`.
    pub static_run_id: String,
    /// Where the run's directories go (`output.url`).
    pub output: String,
    /// Array tasks: at most the `max_tasks` asked for, and no more than shards.
    pub tasks: u64,
    /// Shards of the busiest task (`worker run-shard --task K --tasks TASKS` runs shards
    /// K, K+TASKS, …).
    pub shards_per_task: u64,
}

/// The plan of a (prepared) spec for arrays of at most `max_tasks` tasks.
pub fn plan(spec: &RunSpec, max_tasks: u64) -> Plan {
    let shards = spec.shards();
    let tasks = shards.min(max_tasks.max(1));
    Plan {
        samples: spec.run.count,
        shard_size: spec.run.shard_size,
        shards,
        spec_digest: spec.digest(),
        static_run_id: crate::lifecycle::runid::static_run_id(&spec.digest()),
        output: spec.output.url.clone(),
        tasks,
        shards_per_task: shards.div_ceil(tasks),
    }
}

/// What [`resume`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub run_id: String,
    pub shards: u64,
    /// Shards with a commit record in storage: marked committed, not queued.
    pub committed: u64,
    pub submitted: Submitted,
}

/// Rebuilds a run in the queue from its output store alone (`run.json` and the commit
/// records), after Redis lost it: exactly the shards without a commit record are queued.
/// `store` is rooted at the run directory. A run the queue still knows keeps its state, but for the shards with a commit record,
/// which it counts as committed (storage is the truth).
pub async fn resume(queue: &dyn JobQueue, store: &Store) -> Result<Resumed> {
    let (run_id, spec) = read_run_json(store).await?;
    if run_store(&spec, &run_id)?.display() != store.display() {
        tracing::warn!(run = %run_id, at = %store.display(), expected = %run_store(&spec, &run_id)?.display(), "the run directory is not where its spec puts it; workers will write to the spec's output.url");
    }
    let committed = crate::manifest::committed_shards(store).await?;
    let submitted = queue.submit_restored(&run_record(&spec, &run_id), &committed).await?;
    Ok(Resumed { run_id, shards: spec.shards(), committed: committed.len() as u64, submitted })
}

/// The run id and spec (models pinned, as submitted) in a run directory's `run.json`,
/// checked against its `spec_digest`. What `resume`, and `status` and `finalize` of a
/// static run, start from: no model is fetched to know the run's digest.
pub async fn read_run_json(store: &Store) -> Result<(String, RunSpec)> {
    let where_ = store.describe(crate::manifest::layout::RUN_JSON);
    let Some(body) = store.get(crate::manifest::layout::RUN_JSON).await? else {
        return Err(Error::format(&where_, "not found: expected the run directory that `submit` (or a first `worker run-shard` task) created (…/RUN, holding run.json)"));
    };
    let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::format(&where_, format!("not JSON: {e}")))?;
    let run_id = doc.get("run_id").and_then(|v| v.as_str()).ok_or_else(|| Error::format(&where_, "no run_id"))?.to_string();
    crate::lifecycle::runid::check(&run_id, &where_)?;
    let spec_json = doc.get("spec").ok_or_else(|| Error::format(&where_, "no spec"))?.to_string();
    let spec = RunSpec::from_json(&spec_json, &where_)?;
    let stored = doc.get("spec_digest").and_then(|v| v.as_str()).unwrap_or_default();
    if stored != spec.digest() {
        return Err(Error::format(&where_, format!("spec_digest {stored} does not match its spec (digest {})", spec.digest())));
    }
    Ok((run_id, spec))
}

/// The spec of static run `run_id` (made by `worker run-shard`) whose spec file is
/// `config`: the config says where the output is, the run's `run.json` holds the spec
/// with its models pinned. Errors name both when they disagree.
pub async fn static_spec(config: &RunSpec, origin: &str, run_id: &str) -> Result<RunSpec> {
    let store = run_store(config, run_id)?;
    let (stored_id, spec) = read_run_json(&store).await?;
    if stored_id != run_id {
        return Err(Error::format(store.describe(crate::manifest::layout::RUN_JSON), format!("holds run {stored_id}, not {run_id}")));
    }
    if spec.output.url != config.output.url {
        return Err(Error::format(origin, format!("output.url {} differs from the run's own ({})", config.output.url, spec.output.url)));
    }
    Ok(spec)
}

/// The counts of every active run, in claim order (a run that ends between the two reads
/// is left out).
pub async fn active_counts(queue: &dyn JobQueue) -> Result<Vec<(String, Counts)>> {
    let mut out = Vec::new();
    for run in queue.active_runs().await? {
        match queue.counts(&run).await {
            Ok(c) => out.push((run, c)),
            Err(Error::Run { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The record and spec of a known run.
pub async fn load_run(queue: &dyn JobQueue, run_id: &str) -> Result<(RunRecord, RunSpec)> {
    let Some(rec) = queue.run(run_id).await? else {
        return Err(Error::Run {
            run: run_id.into(),
            message: "unknown run: `coordinator list` shows the runs this Redis knows; a run Redis lost is rebuilt from its output by `coordinator resume OUTPUT_URL/RUN`".into(),
        });
    };
    let spec = RunSpec::from_json(&rec.spec_json, &format!("run {run_id}"))?;
    Ok((rec, spec))
}

/// Writes the manifest of a fully committed run and marks it finalized in the queue. The
/// queue calls ride out a Redis restart ([`crate::retry::redis_call`]): the finalize
/// between them takes a while (it copies every WebDataset tar).
pub async fn finalize_run(queue: &dyn JobQueue, run_id: &str) -> Result<(FinalizeReport, Store)> {
    let (_, spec) = crate::retry::redis_call("reading the run", || load_run(queue, run_id)).await?;
    let store = run_store(&spec, run_id)?;
    let report = finalize(&store, run_id, &spec).await?;
    match crate::retry::redis_call("marking the run finalized", || queue.mark_finalized(run_id)).await {
        Ok(()) => {}
        // Redis lost the run while finalize wrote: the manifest is complete all the same,
        // and nothing is left to serve.
        Err(Error::Run { .. }) if matches!(queue.run(run_id).await, Ok(None)) => {
            tracing::warn!(run = run_id, "the queue lost this run while its manifest was written; the manifest is complete");
        }
        Err(e) => return Err(e),
    }
    Ok((report, store))
}

/// Samples in committed shards, exact: only the last shard may be short, and the counts
/// say whether it is committed.
pub fn committed_samples(spec: &RunSpec, counts: &Counts) -> u64 {
    let size = spec.run.shard_size;
    if counts.committed == 0 {
        return 0;
    }
    if counts.last_committed {
        let last = spec.shard_range(spec.shards() - 1).count() as u64;
        (counts.committed - 1) * size + last
    } else {
        counts.committed * size
    }
}

/// A run's status as `coordinator status --json` prints it: one schema for Redis and
/// static runs; what a static run cannot know (queue states, dead shards, its creation
/// time when `run.json` lacks it) is `null`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunStatus {
    pub run_id: String,
    /// `redis` or `static`.
    pub mode: String,
    /// `active`, `cancelled` or `finalized`.
    pub state: String,
    pub samples: SampleCounts,
    pub shards: ShardCounts,
    /// The run's directory: OUTPUT_URL/RUN.
    pub output: String,
    pub pipeline: crate::spec::PipelineKind,
    pub spec_digest: String,
    pub created_ms: Option<u64>,
    /// Dead shards with their last error (Redis runs; empty for static ones).
    pub dead_shards: Vec<crate::queue::DeadJob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SampleCounts {
    pub total: u64,
    pub committed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardCounts {
    pub total: u64,
    pub committed: u64,
    /// Ready or waiting out a retry backoff.
    pub pending: Option<u64>,
    /// Waiting out a retry backoff (included in `pending`).
    pub delayed: Option<u64>,
    pub leased: Option<u64>,
    /// Leases past their deadline (included in `leased`): their workers stopped
    /// heartbeating (killed, cut off); the next claim takes them back.
    pub expired: Option<u64>,
    pub dead: Option<u64>,
}

/// The status of a run Redis knows.
pub fn redis_status(rec: &RunRecord, spec: &RunSpec, counts: &Counts, overdue: crate::queue::Overdue, dead: Vec<crate::queue::DeadJob>) -> RunStatus {
    RunStatus {
        run_id: rec.run_id.clone(),
        mode: "redis".into(),
        state: counts.state.as_str().into(),
        samples: SampleCounts { total: spec.run.count, committed: committed_samples(spec, counts) },
        shards: ShardCounts {
            total: counts.total,
            committed: counts.committed,
            pending: Some(counts.pending),
            delayed: Some(counts.delayed),
            leased: Some(counts.leased),
            expired: Some(overdue.expired_leases.min(counts.leased)),
            dead: Some(counts.dead),
        },
        output: run_store(spec, &rec.run_id).map(|s| s.display().to_string()).unwrap_or_else(|_| format!("{}/{}", spec.output.url.trim_end_matches('/'), rec.run_id)),
        pipeline: spec.pipeline.kind,
        spec_digest: rec.spec_digest.clone(),
        created_ms: Some(rec.created_ms),
        dead_shards: dead,
    }
}

/// The status of a static run (no Redis), from its output store: the commit records,
/// `run.json` and whether `manifest.json` exists.
pub async fn static_status(spec: &RunSpec, run_id: &str) -> Result<RunStatus> {
    let store = run_store(spec, run_id)?;
    let crate::manifest::CommittedCount { shards: committed, samples } = crate::manifest::count_committed(&store, spec).await?;
    let finalized = store.exists(crate::manifest::layout::MANIFEST_JSON).await?;
    let created_ms = match store.get(crate::manifest::layout::RUN_JSON).await? {
        Some(b) => serde_json::from_slice::<serde_json::Value>(&b).ok().and_then(|v| v.get("created_ms")?.as_u64()),
        None => None,
    };
    Ok(RunStatus {
        run_id: run_id.into(),
        mode: "static".into(),
        state: if finalized { "finalized" } else { "active" }.into(),
        samples: SampleCounts { total: spec.run.count, committed: samples },
        shards: ShardCounts { total: spec.shards(), committed, pending: None, delayed: None, leased: None, expired: None, dead: None },
        output: store.display().to_string(),
        pipeline: spec.pipeline.kind,
        spec_digest: spec.digest(),
        created_ms,
        dead_shards: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples, not shards × shard size: a run waiting on its short last shard does not
    /// read 999/1000.
    #[test]
    fn committed_samples_count_the_short_last_shard_as_it_is() {
        let spec = RunSpec::parse("[run]\ncount = 1000\nshard_size = 256\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\n", "t.toml").unwrap();
        let counts = |committed, last_committed| Counts { total: 4, committed, last_committed, ..Counts::default() };
        assert_eq!(committed_samples(&spec, &counts(0, false)), 0);
        assert_eq!(committed_samples(&spec, &counts(3, false)), 768);
        assert_eq!(committed_samples(&spec, &counts(3, true)), 2 * 256 + 232);
        assert_eq!(committed_samples(&spec, &counts(4, true)), 1000);
    }

    /// Submitting a run again changes nothing, and says the run's state: a cancelled run
    /// stays cancelled (nothing serves it).
    #[tokio::test]
    async fn a_run_submitted_again_reports_its_state() {
        let spec = RunSpec::parse("[run]\ncount = 4\nshard_size = 2\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\n", "t.toml").unwrap();
        let queue = crate::queue::MemoryQueue::new();
        let run_id = format!("cancel-{}", rand::random::<u32>());
        let got = |s: Submission| (s.submitted, s.committed, s.state);
        assert_eq!(got(submit(&queue, &spec, &run_id).await.unwrap()), (Submitted::Created, 0, RunState::Active));
        assert_eq!(got(submit(&queue, &spec, &run_id).await.unwrap()), (Submitted::AlreadyExists, 0, RunState::Active));
        queue.cancel(&run_id).await.unwrap();
        assert_eq!(got(submit(&queue, &spec, &run_id).await.unwrap()), (Submitted::AlreadyExists, 0, RunState::Cancelled));
        assert_eq!(queue.counts(&run_id).await.unwrap().state, RunState::Cancelled, "still cancelled");
    }

    /// A first retry delay above the 5-minute cap is kept, not cut to 5 minutes.
    #[test]
    fn the_backoff_cap_is_at_least_the_first_delay() {
        let spec = |backoff: &str| {
            RunSpec::parse(
                &format!(
                    "[run]\ncount = 1\nshard_size = 1\nretry_backoff_seconds = {backoff}\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\n"
                ),
                "t.toml",
            )
            .unwrap()
        };
        let r = run_record(&spec("2"), "r");
        assert_eq!((r.backoff_ms, r.max_backoff_ms), (2_000, 300_000));
        let r = run_record(&spec("1200"), "r");
        assert_eq!((r.backoff_ms, r.max_backoff_ms), (1_200_000, 1_200_000));
    }

    /// Relative local paths are named by key (each process resolves them from its own
    /// directory); absolute ones, s3:// and memory:// are not.
    #[test]
    fn relative_paths_are_found_by_key() {
        let spec = |url: &str, model: &str| {
            RunSpec::parse(&format!("[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"{url}\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = 64\n[pipeline.labels]\nmodel = \"{model}\"\n[pipeline.images]\nmodel = \"s3://b/spade\"\n"), "t.toml").unwrap()
        };
        assert_eq!(relative_paths(&spec("out/x", "models/ddpm")), [("output.url", "out/x"), ("pipeline.labels.model", "models/ddpm")]);
        assert!(relative_paths(&spec("/data/out", "s3://b/ddpm")).is_empty());
        assert!(relative_paths(&spec("memory://", "file:///m/ddpm")).is_empty());
    }
}
