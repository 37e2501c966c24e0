//! The worker loop: claim a job of any active run, keep its lease alive, execute the
//! shard, then ack, fail or release it. Stops claiming when `shutdown` resolves, lets jobs
//! in hand finish within the grace period, then releases the rest without spending an
//! attempt.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use super::execute::{execute_shard, Abort, ShardJob, ShardOutcome};
use super::pipeline::{Pipeline, PipelineFactory};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::queue::{FailOutcome, JobQueue, Lease, LeaseStatus};
use crate::spec::RunSpec;
use crate::storage::Store;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Name of this worker in leases and logs.
    pub owner: String,
    /// Jobs executed at once.
    pub concurrency: usize,
    /// Exit once no active run has work left (nothing pending, delayed or leased).
    pub exit_when_idle: bool,
    /// Wait between claims when nothing is ready.
    pub poll: Duration,
    /// After shutdown is asked for, how long jobs in hand may run before they are released.
    pub grace: Duration,
    /// Where counts go (served over HTTP by the binaries).
    pub metrics: Arc<Metrics>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { owner: default_owner(), concurrency: 1, exit_when_idle: false, poll: Duration::from_millis(250), grace: Duration::from_secs(25), metrics: Metrics::new() }
    }
}

/// `HOSTNAME-PID`: unique enough to tell workers apart in leases.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

struct RunCtx {
    spec: Arc<RunSpec>,
    digest: String,
    store: Store,
    pipeline: Arc<dyn Pipeline>,
}

/// Per-process cache of what each run needs (spec, store, pipeline), built once per run.
#[derive(Default)]
pub struct RunCache {
    runs: Mutex<HashMap<String, Arc<RunCtx>>>,
}

impl RunCache {
    async fn get(&self, queue: &dyn JobQueue, factory: &Arc<dyn PipelineFactory>, run_id: &str) -> Result<Arc<RunCtx>> {
        if let Some(ctx) = self.runs.lock().unwrap().get(run_id) {
            return Ok(ctx.clone());
        }
        let rec = queue.run(run_id).await?.ok_or_else(|| Error::Run { run: run_id.into(), message: "unknown run".into() })?;
        let spec = RunSpec::from_json(&rec.spec_json, &format!("run {run_id} spec"))?;
        let store = Store::open(&spec.output.url)?.child(run_id);
        // Building a pipeline may load models: keep it off the async threads.
        let pipeline = {
            let (factory, spec) = (factory.clone(), spec.clone());
            tokio::task::spawn_blocking(move || factory.build(&spec)).await.map_err(|e| Error::Job(format!("building the pipeline panicked: {e}")))??
        };
        let ctx = Arc::new(RunCtx { spec: Arc::new(spec), digest: rec.spec_digest, store, pipeline });
        self.runs.lock().unwrap().insert(run_id.to_string(), ctx.clone());
        Ok(ctx)
    }
}

/// The abort switch of every job in hand, by (run, shard).
type InFlight = Arc<Mutex<HashMap<(String, u64), Arc<Abort>>>>;

/// Serves the queue until `shutdown` resolves (or, with `exit_when_idle`, until no active
/// run has work left).
pub async fn serve(queue: Arc<dyn JobQueue>, factory: Arc<dyn PipelineFactory>, opts: WorkerOptions, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let stopping = Arc::new(AtomicBool::new(false));
    let metrics = opts.metrics.clone();
    let cache = Arc::new(RunCache::default());
    let in_flight: InFlight = Default::default();

    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..opts.concurrency.max(1) {
        let (queue, factory, opts, stopping, metrics, cache, in_flight) =
            (queue.clone(), factory.clone(), opts.clone(), stopping.clone(), metrics.clone(), cache.clone(), in_flight.clone());
        slots.spawn(async move { slot_loop(slot, queue, factory, opts, stopping, metrics, cache, in_flight).await });
    }

    let all_done = async {
        while let Some(r) = slots.join_next().await {
            if let Err(e) = r {
                tracing::error!("worker slot panicked: {e}");
            }
        }
    };
    tokio::pin!(all_done);
    tokio::select! {
        _ = &mut all_done => return Ok(()),
        _ = shutdown => {}
    }
    let holding = in_flight.lock().unwrap().len();
    if holding > 0 {
        tracing::info!(grace_s = opts.grace.as_secs_f64(), jobs = holding, "shutdown asked: no new claims; finishing jobs in hand");
    } else {
        tracing::debug!("shutdown asked: no job in hand");
    }
    stopping.store(true, Ordering::SeqCst);
    if tokio::time::timeout(opts.grace, &mut all_done).await.is_err() {
        let held: Vec<_> = in_flight.lock().unwrap().iter().map(|(k, a)| (k.clone(), a.clone())).collect();
        tracing::warn!(jobs = held.len(), "grace period over: releasing jobs in hand");
        for (_, abort) in held {
            abort.stop();
        }
        all_done.await;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn slot_loop(
    slot: usize,
    queue: Arc<dyn JobQueue>,
    factory: Arc<dyn PipelineFactory>,
    opts: WorkerOptions,
    stopping: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    cache: Arc<RunCache>,
    in_flight: InFlight,
) {
    let owner = if opts.concurrency > 1 { format!("{}/{slot}", opts.owner) } else { opts.owner.clone() };
    let mut queue_errors = 0u32;
    while !stopping.load(Ordering::SeqCst) {
        let lease = match queue.claim(&owner).await {
            Ok(l) => {
                queue_errors = 0;
                l
            }
            Err(e) => {
                queue_errors += 1;
                let wait = Duration::from_millis((250u64 << queue_errors.min(5)).min(5000));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "claim failed; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let Some(lease) = lease else {
            if opts.exit_when_idle && matches!(no_work_left(queue.as_ref()).await, Ok(true)) {
                break;
            }
            tokio::time::sleep(opts.poll).await;
            continue;
        };
        metrics.jobs_claimed.inc();
        metrics.jobs_in_flight.inc();
        let abort = Arc::new(Abort::default());
        in_flight.lock().unwrap().insert((lease.run_id.clone(), lease.shard), abort.clone());
        let span = tracing::info_span!("job", run = %lease.run_id, shard = lease.shard, attempt = lease.token);
        run_one(&queue, &factory, &cache, &metrics, lease.clone(), abort).instrument(span).await;
        in_flight.lock().unwrap().remove(&(lease.run_id.clone(), lease.shard));
        metrics.jobs_in_flight.dec();
    }
}

/// True when every active run has nothing pending, delayed or leased.
async fn no_work_left(queue: &dyn JobQueue) -> Result<bool> {
    for run in queue.list().await? {
        let c = queue.counts(&run).await?;
        if c.state == crate::queue::RunState::Active && (c.pending > 0 || c.leased > 0) {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn run_one(queue: &Arc<dyn JobQueue>, factory: &Arc<dyn PipelineFactory>, cache: &RunCache, metrics: &Metrics, lease: Lease, abort: Arc<Abort>) {
    let ctx = match cache.get(queue.as_ref(), factory, &lease.run_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot prepare the run");
            fail(queue.as_ref(), &lease, &e, metrics).await;
            return;
        }
    };
    // Heartbeats at a third of the lease; a lost lease or a cancelled run stops the job.
    let lease_ms = ctx.spec.run.lease_seconds * 1000;
    let hb = {
        let (queue, lease, abort) = (queue.clone(), lease.clone(), abort.clone());
        tokio::spawn(async move {
            let every = Duration::from_millis((lease_ms / 3).max(50));
            loop {
                tokio::time::sleep(every).await;
                match queue.heartbeat(&lease).await {
                    Ok(LeaseStatus::Held) => {}
                    Ok(LeaseStatus::Lost) => {
                        tracing::warn!(run = %lease.run_id, shard = lease.shard, "lease lost; abandoning the job");
                        abort.lost();
                        return;
                    }
                    Ok(LeaseStatus::Cancelled) => {
                        tracing::info!(run = %lease.run_id, shard = lease.shard, "run cancelled; stopping the job");
                        abort.stop();
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed; will retry"),
                }
            }
        })
    };
    let t0 = std::time::Instant::now();
    let job = ShardJob {
        run_id: lease.run_id.clone(),
        spec: ctx.spec.clone(),
        spec_digest: ctx.digest.clone(),
        store: ctx.store.clone(),
        pipeline: ctx.pipeline.clone(),
        shard: lease.shard,
        attempt: lease.token,
        owner: lease.owner.clone(),
        retried: lease.token > 1,
        abort: abort.clone(),
    };
    let outcome = execute_shard(job).await;
    hb.abort();
    match outcome {
        Ok(ShardOutcome::Committed(rec)) => {
            metrics.jobs_committed.inc();
            metrics.samples_generated.inc_by(rec.samples.len() as u64);
            metrics.add_stage_seconds(&rec.stage_seconds);
            tracing::info!(samples = rec.samples.len(), seconds = t0.elapsed().as_secs_f64(), "shard committed");
            ack(queue.as_ref(), &lease).await;
        }
        Ok(ShardOutcome::AlreadyCommitted) => {
            metrics.jobs_committed.inc();
            tracing::info!("shard was already committed by another attempt");
            ack(queue.as_ref(), &lease).await;
        }
        Ok(ShardOutcome::LeaseLost) => {
            metrics.leases_lost.inc();
        }
        Ok(ShardOutcome::Stopped) => {
            metrics.jobs_released.inc();
            match queue.release(&lease).await {
                Ok(_) => tracing::info!("job released"),
                Err(e) => tracing::warn!(error = %e, "release failed; the lease will expire instead"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "shard failed");
            fail(queue.as_ref(), &lease, &e, metrics).await;
        }
    }
}

/// Acks, retrying queue errors for a while: the data is committed either way, and a later
/// claimer that finds the record acks it.
async fn ack(queue: &dyn JobQueue, lease: &Lease) {
    for i in 0..20u32 {
        match queue.ack(lease).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::info!("ack refused: the lease had been reclaimed (the shard is committed all the same)");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ack failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * (i as u64 + 1))).await;
            }
        }
    }
}

async fn fail(queue: &dyn JobQueue, lease: &Lease, e: &Error, metrics: &Metrics) {
    for i in 0..20u32 {
        match queue.fail(lease, &e.to_string(), e.is_retryable()).await {
            Ok(FailOutcome::Dead) => {
                metrics.jobs_dead.inc();
                tracing::error!(error = %e, "shard is dead");
                return;
            }
            Ok(FailOutcome::Retry { .. }) => {
                metrics.jobs_retried.inc();
                return;
            }
            Ok(FailOutcome::Lost) => return,
            Err(qe) => {
                tracing::warn!(error = %qe, "recording the failure failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * (i as u64 + 1))).await;
            }
        }
    }
}
