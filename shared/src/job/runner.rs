//! The worker loop: claim a job of any active run, keep its lease alive (its deadline
//! counted from the claim's send, the heartbeat started once the run's record is read),
//! execute the shard, then ack, fail or release it; a commit is acked together with the
//! claim of the next job (`ack_and_claim`, one round trip on Redis). Stops claiming when `shutdown`
//! resolves, lets jobs in hand finish within the grace period, then releases the rest
//! without spending an attempt.
//!
//! A claim whose answer is lost (the connection dropped after the queue ran it) leaves a
//! lease the slot does not know it holds, and so does a job it could not ack or give back;
//! before its next claim the slot gives back every lease held under its owner name
//! ([`JobQueue::release_owned`]), so that job is claimed again at once instead of waiting
//! out its lease and losing an attempt. (A failure that could not be recorded is not
//! given back: its lease expires and counts the attempt, so a poison job still dies.)
//!
//! Failures are told apart: a job's own failure spends one of its attempts (a poison job
//! goes dead after `max_attempts`); a failure of the worker's own ([`Error::is_worker_fault`]:
//! refused credentials, models that do not load, a full disk) gives the job back untouched,
//! makes the worker unready and back off with jitter, and after `max_local_failures` in a
//! row makes it exit with an error naming the cause. A model on shared storage that no
//! longer holds the bytes pinned at submit is the job's ([`Error::ModelChanged`]): every
//! worker without it cached fails alike, so the job spends an attempt and the worker
//! serves other runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Exit once no active run has work left (nothing pending, delayed or leased) and no
    /// run this worker served has been unknown to the queue for less than `lost_run_wait`.
    pub exit_when_idle: bool,
    /// See [`LOST_RUN_WAIT`] (the default).
    pub lost_run_wait: Duration,
    /// Wait between claims when nothing is ready.
    pub poll: Duration,
    /// After shutdown is asked for, how long jobs in hand may run before they are released.
    pub grace: Duration,
    /// Failures of this worker's own (refused credentials, models that do not load, a full
    /// disk) in a row after which it exits; each gives its job back without spending an
    /// attempt.
    pub max_local_failures: u32,
    /// Wait after the first such failure; doubled each further one up to a minute,
    /// with jitter (each delay plus up to itself; `shared::retry`).
    pub local_backoff: Duration,
    /// Where counts go (served over HTTP by the binaries).
    pub metrics: Arc<Metrics>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            owner: default_owner(),
            concurrency: 1,
            exit_when_idle: false,
            lost_run_wait: LOST_RUN_WAIT,
            poll: Duration::from_millis(250),
            grace: Duration::from_secs(25),
            max_local_failures: 5,
            local_backoff: Duration::from_secs(2),
            metrics: Metrics::worker(),
        }
    }
}

/// `HOSTNAME-PID-RANDOM`: tells workers apart in leases and logs. The random part (8 hex
/// digits, new for every process) keeps names unique where host and PID repeat (PID 1 in
/// containers, no `HOSTNAME` exported): a worker gives back every lease held under its
/// name after a claim whose answer was lost ([`JobQueue::release_owned`]).
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// What a run's jobs share, read from the queue's record (cheap).
struct RunInfo {
    spec: Arc<RunSpec>,
    digest: String,
    store: Store,
    lease: Duration,
}

/// Per-process cache of what each run needs: its record (spec, store, lease) and its
/// pipeline, each built once per run. Pipelines hold models (GPU memory): the cache keeps
/// those of the [`MAX_CACHED_PIPELINES`] runs used last, so a worker that serves run after
/// run does not keep every run's models loaded.
pub struct RunCache {
    runs: Mutex<HashMap<String, Arc<RunInfo>>>,
    pipelines: Mutex<Pipelines>,
    /// How long a run whose model changed since submit fails its jobs without fetching
    /// the model again ([`MODEL_RECHECK`]).
    model_recheck: Duration,
    /// Since when a run this worker served has been unknown to the queue (see
    /// [`LOST_RUN_WAIT`]).
    lost_since: Mutex<Option<Instant>>,
    /// Runs this worker served and has since seen finalized or cancelled: no one rebuilds
    /// such a run when the queue loses it, so it is not waited for.
    finished: Mutex<std::collections::HashSet<String>>,
}

impl Default for RunCache {
    fn default() -> Self {
        RunCache { runs: Default::default(), pipelines: Default::default(), model_recheck: MODEL_RECHECK, lost_since: Default::default(), finished: Default::default() }
    }
}

/// How long a worker keeps a run's "model changed since submit" failure
/// ([`Error::ModelChanged`]) before fetching the model again: the run's jobs in between
/// fail at once (their shards dead, naming the model) instead of each downloading the
/// weights to find them changed; a model restored since is found within this.
pub const MODEL_RECHECK: Duration = Duration::from_secs(60);

/// How long an `exit_when_idle` worker waits, with nothing to claim, for a run it served
/// that the queue no longer knows (Redis restarted empty: `coordinator watch` rebuilds
/// such a run from storage within a poll or two) before it counts as idle and exits.
pub const LOST_RUN_WAIT: Duration = Duration::from_secs(600);

/// A run's pipeline build, shared by every slot that waits for it: its outcome (the
/// pipeline, or the failure each waiter gets) is kept once it is done.
type Build = futures::future::Shared<futures::future::BoxFuture<'static, std::result::Result<Arc<dyn Pipeline>, BuildFailure>>>;

/// Why a run's pipeline could not be built.
#[derive(Clone)]
struct BuildFailure {
    message: String,
    /// The run's model changed since submit ([`Error::ModelChanged`]), not this worker.
    model_changed: bool,
    /// When the build failed.
    at: Instant,
}

impl BuildFailure {
    fn error(&self) -> Error {
        if self.model_changed {
            Error::ModelChanged(self.message.clone())
        } else {
            Error::Worker(self.message.clone())
        }
    }
}

/// Each run's pipeline build (done or under way) and when it was last used (a count of
/// uses), and the count.
#[derive(Default)]
struct Pipelines {
    by_run: HashMap<String, (Build, u64)>,
    uses: u64,
}

/// Whether `build` is done and gave a pipeline.
fn built(build: &Build) -> bool {
    build.peek().is_some_and(|r| r.is_ok())
}

/// Starts building the run's pipeline off the async threads, at once and whether or not
/// anyone waits: a waiter that stops (its job lost or stopped) does not cancel the build
/// the run's other slots wait for, and the outcome is kept even when every waiter went
/// (so a pipeline built for nobody is counted and dropped like any other). Every failure
/// to build is the worker's, not the job's, but a model changed since submit.
fn start_build(factory: &Arc<dyn PipelineFactory>, spec: &Arc<RunSpec>) -> Build {
    use futures::FutureExt;
    let (factory, spec) = (factory.clone(), spec.clone());
    let task = tokio::task::spawn_blocking(move || factory.build(&spec));
    let build = async move {
        let failed = |message: String, model_changed: bool| Err(BuildFailure { message, model_changed, at: Instant::now() });
        match task.await {
            Ok(Ok(pipeline)) => Ok(pipeline),
            Ok(Err(e @ Error::ModelChanged(_))) => failed(e.to_string(), true),
            Ok(Err(e)) if e.is_worker_fault() => failed(e.to_string(), false),
            Ok(Err(e)) => failed(format!("cannot build the run's pipeline: {e}"), false),
            Err(e) if e.is_panic() => failed(format!("building the pipeline panicked: {e}"), false),
            Err(e) => failed(format!("building the pipeline was cut short: {e}"), false),
        }
    }
    .boxed()
    .shared();
    // Drives the build to its end, so `peek` sees its outcome.
    tokio::spawn(build.clone().map(drop));
    build
}

/// Runs whose pipelines a worker keeps built (see [`RunCache`]).
pub const MAX_CACHED_PIPELINES: usize = 4;

impl RunCache {
    #[cfg(test)]
    pub(super) fn with_model_recheck(model_recheck: Duration) -> Self {
        RunCache { model_recheck, ..Default::default() }
    }

    async fn info(&self, queue: &dyn JobQueue, run_id: &str) -> Result<Arc<RunInfo>> {
        if let Some(info) = self.runs.lock().unwrap().get(run_id) {
            return Ok(info.clone());
        }
        let rec = queue.run(run_id).await?.ok_or_else(|| Error::Run { run: run_id.into(), message: "unknown run".into() })?;
        let spec = RunSpec::from_json(&rec.spec_json, &format!("run {run_id} spec"))?;
        let store = super::run_store(&spec, run_id)?;
        let info = Arc::new(RunInfo { spec: Arc::new(spec), digest: rec.spec_digest, store, lease: Duration::from_millis(rec.lease_ms.max(1)) });
        self.runs.lock().unwrap().insert(run_id.to_string(), info.clone());
        Ok(info)
    }

    /// The run's pipeline, built on first use (models fetched and loaded) off the async
    /// threads. A failure to build belongs to this worker, not to the job. Concurrent slots
    /// of a new run wait for its one build, and share its failure (the run's next job
    /// tries again); slots of runs already built do not wait for it. A model changed since
    /// submit is the run's failure ([`Error::ModelChanged`]), given to the run's jobs
    /// without building again for `model_recheck` ([`MODEL_RECHECK`]).
    pub(super) async fn pipeline(&self, factory: &Arc<dyn PipelineFactory>, run_id: &str, spec: &Arc<RunSpec>) -> Result<Arc<dyn Pipeline>> {
        let build = {
            let mut guard = self.pipelines.lock().unwrap();
            let Pipelines { by_run, uses } = &mut *guard;
            *uses += 1;
            let (build, used) = by_run.entry(run_id.to_string()).or_insert_with(|| (start_build(factory, spec), 0));
            // A failed build is not handed to a new job: it builds again; but a changed
            // model's failure is, until it is `model_recheck` old (restored since?).
            if build.peek().is_some_and(|r| r.as_ref().is_err_and(|f| !f.model_changed || f.at.elapsed() >= self.model_recheck)) {
                *build = start_build(factory, spec);
            }
            *used = *uses;
            build.clone()
        };
        // A failure stays in `by_run` until the run's next job replaces it (above).
        let pipeline = build.await.map_err(|failure| failure.error())?;
        let mut guard = self.pipelines.lock().unwrap();
        let by_run = &mut guard.by_run;
        while by_run.values().filter(|(b, _)| built(b)).count() > MAX_CACHED_PIPELINES {
            // Jobs still running on it keep their own reference; its models go once no
            // pipeline holds them (the factory's cache does not keep them alive). Builds
            // under way are not dropped.
            let Some(oldest) = by_run.iter().filter(|(run, (b, _))| run.as_str() != run_id && built(b)).min_by_key(|(_, (_, used))| *used).map(|(run, _)| run.clone()) else {
                break;
            };
            tracing::info!(run = %oldest, "dropping the least recently used run's pipeline");
            by_run.remove(&oldest);
        }
        Ok(pipeline)
    }

    /// Drops the run's pipeline if it is still `pipeline` (not one another slot built since):
    /// its next job builds it again (jobs running on it keep it).
    fn forget_pipeline(&self, run_id: &str, pipeline: &Arc<dyn Pipeline>) {
        let mut guard = self.pipelines.lock().unwrap();
        if guard.by_run.get(run_id).is_some_and(|(b, _)| b.peek().is_some_and(|r| r.as_ref().is_ok_and(|p| Arc::ptr_eq(p, pipeline)))) {
            guard.by_run.remove(run_id);
        }
    }
}

/// The abort switch of every job in hand, by a number of this process's own (not the
/// shard: a queue that lost its data can lease one shard to two slots at once).
type InFlight = Arc<Mutex<Jobs>>;

#[derive(Default)]
struct Jobs {
    by_number: HashMap<u64, Arc<Abort>>,
    /// The grace period is over: a job that starts now is stopped at once.
    stopped: bool,
}

/// Numbers the jobs of this process for [`InFlight`].
static JOB_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Serves the queue until `shutdown` resolves (or, with `exit_when_idle`, until no active
/// run has work left). Returns an [`Error::Worker`] when this worker gave up after
/// `max_local_failures` failures of its own in a row.
pub async fn serve(queue: Arc<dyn JobQueue>, factory: Arc<dyn PipelineFactory>, opts: WorkerOptions, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let stopping = Arc::new(Stopping::default());
    let cache = Arc::new(RunCache::default());
    let in_flight: InFlight = Default::default();
    let health = Arc::new(Health { consecutive: AtomicU32::new(0), gave_up: Mutex::new(None) });

    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..opts.concurrency.max(1) {
        let ctx = SlotCtx {
            queue: queue.clone(),
            factory: factory.clone(),
            opts: opts.clone(),
            stopping: stopping.clone(),
            cache: cache.clone(),
            in_flight: in_flight.clone(),
            health: health.clone(),
        };
        slots.spawn(async move { slot_loop(slot, ctx).await });
    }

    let all_done = async {
        while let Some(r) = slots.join_next().await {
            if let Err(e) = r {
                // A bug, not a job's failure: stop claiming, let the other slots finish,
                // and exit with an error so the scheduler replaces this worker. The
                // panicked job's heartbeat ended with it; its lease expires.
                tracing::error!("worker slot panicked: {e}; stopping this worker");
                health.gave_up.lock().unwrap().get_or_insert_with(|| format!("a worker slot panicked: {e}"));
                stopping.set();
            }
        }
    };
    tokio::pin!(all_done);
    tokio::select! {
        _ = &mut all_done => return health.result(),
        _ = shutdown => {}
    }
    let holding = in_flight.lock().unwrap().by_number.len();
    if holding > 0 {
        tracing::info!(grace_s = opts.grace.as_secs_f64(), jobs = holding, "shutdown asked: no new claims; finishing jobs in hand");
    } else {
        tracing::debug!("shutdown asked: no job in hand");
    }
    stopping.set();
    if tokio::time::timeout(opts.grace, &mut all_done).await.is_err() {
        {
            let mut jobs = in_flight.lock().unwrap();
            jobs.stopped = true;
            if !jobs.by_number.is_empty() {
                tracing::warn!(jobs = jobs.by_number.len(), "grace period over: releasing jobs in hand");
            }
            for abort in jobs.by_number.values() {
                abort.stop();
            }
        }
        all_done.await;
    }
    health.result()
}

/// Failures of this worker's own, counted across its slots.
struct Health {
    /// Worker faults in a row (a success resets it).
    consecutive: AtomicU32,
    /// Why the worker gave up, once it has.
    gave_up: Mutex<Option<String>>,
}

impl Health {
    fn result(&self) -> Result<()> {
        match self.gave_up.lock().unwrap().clone() {
            Some(why) => Err(Error::Worker(why)),
            None => Ok(()),
        }
    }
}

struct SlotCtx {
    queue: Arc<dyn JobQueue>,
    factory: Arc<dyn PipelineFactory>,
    opts: WorkerOptions,
    stopping: Arc<Stopping>,
    cache: Arc<RunCache>,
    in_flight: InFlight,
    health: Arc<Health>,
}

/// What the slot holds after a job: the next job (claimed with the ack), nothing, or
/// possibly a lease it does not track.
enum Next {
    /// With when its claim was sent (the lease runs from then on the queue's side).
    Job(Lease, Instant),
    /// No job claimed (none ready, none asked for, or the claim was refused).
    Nothing,
    /// A lease may be held under this slot's owner name that it does not track: a claim
    /// whose answer was lost, or a job that could not be acked or given back.
    Stray,
}

/// How one claimed job ended, as far as the worker's health is concerned.
enum JobEnd {
    /// Committed, found committed, failed as the job's own fault, lost or released; with
    /// the next job when the ack claimed it in the same call.
    Done(Next),
    /// Failed through this worker's fault; the job was given back (or, when the queue did
    /// not answer, may still be leased: `true`).
    WorkerFault(String, bool),
    /// The job's model or encoder thread panicked: the job failed (its attempt spent) and
    /// its run's pipeline was dropped. Says nothing of this worker's health: a poison
    /// sample must not make a healthy worker give up, and a broken device must not look
    /// healthy (its next build fails instead).
    Panicked,
    /// The run's model changed since submit: the job failed (an attempt spent). Says
    /// nothing of this worker's health either.
    ModelChanged,
}

async fn slot_loop(slot: usize, ctx: SlotCtx) {
    let SlotCtx { queue, factory, opts, stopping, cache, in_flight, health } = ctx;
    let metrics = opts.metrics.clone();
    let owner = if opts.concurrency > 1 { format!("{}/{slot}", opts.owner) } else { opts.owner.clone() };
    // Claims are retried for as long as the worker runs (Redis may be down for minutes).
    let mut claim_delays = crate::retry::Delays::new(crate::retry::policy(Duration::from_millis(250), Duration::from_secs(5), usize::MAX));
    // The job claimed with the last ack (`ack_and_claim`), if any, and when that claim
    // was sent.
    let mut next: Option<(Lease, Instant)> = None;
    // A lease may be held under `owner` that this slot does not track (see the module doc).
    let mut stray = false;
    while !stopping.load(Ordering::SeqCst) {
        if next.is_none() && stray {
            match queue.release_owned(&owner).await {
                Ok(n) => {
                    stray = false;
                    if n > 0 {
                        tracing::warn!(owner = %owner, released = n, "gave back leases this worker no longer tracked (a claim whose answer was lost, or a job it could not ack or give back)");
                    }
                }
                Err(e) => {
                    let wait = claim_delays.next_delay().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "giving back untracked leases failed; retrying");
                    pause(wait, &stopping).await;
                    continue;
                }
            }
        }
        let (claimed, sent) = match next.take() {
            Some((lease, sent)) => (Ok(Some(lease)), sent),
            None => {
                let sent = Instant::now();
                (queue.claim(&owner).await, sent)
            }
        };
        let lease = match claimed {
            Ok(l) => {
                claim_delays.reset();
                l
            }
            Err(e) => {
                stray = true;
                let wait = claim_delays.next_delay().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "claim failed; retrying");
                pause(wait, &stopping).await;
                continue;
            }
        };
        if lease.is_some() {
            // Work came (a lost run rebuilt, or another run): a later loss waits anew.
            *cache.lost_since.lock().unwrap() = None;
        }
        let Some(lease) = lease else {
            if opts.exit_when_idle && matches!(no_work_left(queue.as_ref(), &cache, opts.lost_run_wait).await, Ok(true)) {
                break;
            }
            tokio::time::sleep(opts.poll).await;
            continue;
        };
        if stopping.load(Ordering::SeqCst) {
            // Shutdown came while the claim was on its way: give the job back (below)
            // rather than start it after the grace period's count of jobs in hand.
            next = Some((lease, sent));
            break;
        }
        metrics.jobs_claimed.inc(&lease.run_id);
        metrics.jobs_in_flight.inc();
        let abort = Arc::new(Abort::default());
        let number = JOB_NUMBER.fetch_add(1, Ordering::Relaxed);
        {
            let mut jobs = in_flight.lock().unwrap();
            if jobs.stopped {
                abort.stop();
            }
            jobs.by_number.insert(number, abort.clone());
        }
        let span = tracing::info_span!("job", run = %lease.run_id, shard = lease.shard, token = lease.token);
        let end = run_one(&queue, &factory, &cache, &metrics, lease.clone(), sent, abort.clone(), &stopping).instrument(span).await;
        in_flight.lock().unwrap().by_number.remove(&number);
        metrics.jobs_in_flight.dec();
        // A job that ended without waiting for its last batch (lost, stopped by a cancel, a
        // failed upload) waits for it now, so the next job does not share the device with
        // it; a worker shutting down does not.
        unless_stopping(abort.leftover(), &stopping).await;
        match end {
            JobEnd::Done(claimed) => {
                match claimed {
                    Next::Job(lease, sent) => next = Some((lease, sent)),
                    Next::Nothing => {}
                    Next::Stray => stray = true,
                }
                health.consecutive.store(0, Ordering::SeqCst);
                if health.gave_up.lock().unwrap().is_none() {
                    metrics.ready.store(true, Ordering::Relaxed);
                }
            }
            JobEnd::Panicked | JobEnd::ModelChanged => {}
            JobEnd::WorkerFault(why, held) => {
                stray |= held;
                let n = health.consecutive.fetch_add(1, Ordering::SeqCst) + 1;
                metrics.ready.store(false, Ordering::Relaxed);
                if n >= opts.max_local_failures.max(1) {
                    tracing::error!(failures = n, cause = %why, "giving up: this worker failed {n} times in a row through its own fault (not the jobs'); exiting so the scheduler can replace it");
                    *health.gave_up.lock().unwrap() = Some(format!("{n} failures of this worker in a row; the last: {why}"));
                    stopping.set();
                    break;
                }
                let wait = crate::retry::nth_delay(crate::retry::policy(opts.local_backoff, Duration::from_secs(60), usize::MAX), n);
                tracing::warn!(failures = n, of = opts.max_local_failures, cause = %why, wait_ms = wait.as_millis() as u64, "this worker's own failure: the job was given back; unready while backing off");
                pause(wait, &stopping).await;
            }
        }
    }
    // Leases this slot may hold without tracking them: give them back before exiting.
    if stray {
        match queue.release_owned(&owner).await {
            Ok(n) => tracing::info!(released = n, "untracked leases given back: shutting down"),
            Err(e) => tracing::warn!(error = %e, "giving back untracked leases failed; they will expire instead"),
        }
    }
    // Shutdown came between an ack (or a claim) and the job it claimed: give that job back.
    if let Some((lease, _)) = next {
        match queue.release(&lease).await {
            Ok(_) => tracing::info!(run = %lease.run_id, shard = lease.shard, "job claimed with the last ack released: shutting down"),
            Err(e) => tracing::warn!(run = %lease.run_id, shard = lease.shard, error = %e, "release failed; the lease will expire instead"),
        }
    }
}

/// The worker is stopping (shutdown asked, or it gave up): no new claims. Setting it wakes
/// every [`pause`].
#[derive(Default)]
struct Stopping {
    flag: AtomicBool,
    woken: tokio::sync::Notify,
}

impl Stopping {
    fn load(&self, order: Ordering) -> bool {
        self.flag.load(order)
    }

    fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.woken.notify_waiters();
    }
}

/// Sleeps `d`, or less when shutdown is asked for meanwhile (a backoff of up to a minute
/// must not hold a stopping worker past its grace period).
async fn pause(d: Duration, stopping: &Stopping) {
    unless_stopping(tokio::time::sleep(d), stopping).await
}

/// Runs `work` to its end, or less when shutdown is asked for meanwhile.
async fn unless_stopping(work: impl Future<Output = ()>, stopping: &Stopping) {
    let woken = stopping.woken.notified();
    tokio::pin!(woken);
    // Registered before the flag is read: a stop set in between still wakes it.
    woken.as_mut().enable();
    if stopping.load(Ordering::SeqCst) {
        return;
    }
    tokio::select! {
        _ = work => {}
        _ = woken => {}
    }
}

/// True when every active run has nothing pending, delayed or leased, and no run this
/// worker served has been unknown to the queue for less than `lost_wait` (one that is may
/// be rebuilt from storage at any moment, its uncommitted shards queued again), apart
/// from runs it saw finalized or cancelled before the queue lost them.
async fn no_work_left(queue: &dyn JobQueue, cache: &RunCache, lost_wait: Duration) -> Result<bool> {
    let listed = queue.list().await?;
    let served: Vec<String> = cache.runs.lock().unwrap().keys().cloned().collect();
    let mut busy = false;
    for run in &listed {
        let c = queue.counts(run).await?;
        if c.state == crate::queue::RunState::Active {
            busy |= c.pending > 0 || c.leased > 0;
        } else if served.contains(run) {
            cache.finished.lock().unwrap().insert(run.clone());
        }
    }
    if busy {
        return Ok(false);
    }
    let finished = cache.finished.lock().unwrap().clone();
    let mut lost = None;
    for run in served.into_iter().filter(|r| !listed.contains(r) && !finished.contains(r)) {
        if queue.run(&run).await?.is_none() {
            lost = Some(run);
            break;
        }
    }
    let mut since = cache.lost_since.lock().unwrap();
    let Some(run) = lost else {
        *since = None;
        return Ok(true);
    };
    let first = *since.get_or_insert_with(|| {
        tracing::warn!(run = %run, wait_s = lost_wait.as_secs(), "the queue no longer knows a run this worker served (Redis lost its data?); waiting for `coordinator watch` or `resume` to rebuild it before exiting as idle");
        Instant::now()
    });
    Ok(first.elapsed() >= lost_wait)
}

/// Keeps a lease alive from the moment of the claim: heartbeats at a third of the lease;
/// each confirmation moves the job's local deadline; a lost lease or a cancelled run stops
/// the job. A heartbeat that fails (Redis restarting, a dropped connection) is tried again
/// within a second or two, and one that does not answer within 5 s (or a third of the
/// lease, if shorter) likewise, not a third of the lease later, so an outage shorter than
/// the lease costs no job. The task runs in
/// the job's span (its messages name the run, shard and token) and ends when the returned
/// guard is dropped, panics included. `claim_sent`: when the claim that took the lease was
/// sent (the queue started the lease no earlier).
fn heartbeat(queue: &Arc<dyn JobQueue>, lease: &Lease, abort: &Arc<Abort>, lease_len: Duration, claim_sent: Instant) -> AbortOnDrop {
    let (queue, lease, abort) = (queue.clone(), lease.clone(), abort.clone());
    // The claim confirmed the lease from the moment it was sent at the latest (not from
    // its answer, nor after the run's record was read: a slow Redis would stretch those).
    abort.held_until(claim_sent + lease_len);
    let every = (lease_len / 3).max(Duration::from_millis(50));
    let patience = every.min(Duration::from_secs(5));
    let task = async move {
        let mut retries = crate::retry::Delays::new(crate::retry::policy(Duration::from_millis(250), Duration::from_secs(1).min(every), usize::MAX));
        // The first renewal a third of the lease after the claim was sent, as the deadline
        // counts from then (not after the claim's answer and the run lookup).
        let mut wait = (claim_sent + every).saturating_duration_since(Instant::now());
        loop {
            let due = Instant::now() + wait;
            tokio::time::sleep(wait).await;
            let sent = Instant::now();
            let answer = match tokio::time::timeout(patience, queue.heartbeat(&lease)).await {
                Ok(answer) => answer,
                Err(_) => Err(Error::Worker(format!("no answer within {} ms", patience.as_millis()))),
            };
            // This task woke, or its call's timeout fired, far too late: the process itself
            // stalled (swapping, CPU starved, stopped), so a lease lost now was not lost to
            // an outage.
            if sent.saturating_duration_since(due) > patience || sent.elapsed() > patience + Duration::from_secs(1) {
                abort.set_stalled();
            }
            wait = every;
            match answer {
                Ok(LeaseStatus::Held) => {
                    retries.reset();
                    abort.set_reachable(true);
                    abort.held_until(sent + lease_len);
                }
                Ok(LeaseStatus::Lost) => {
                    tracing::warn!("lease lost; abandoning the job");
                    abort.lost();
                    return;
                }
                Ok(LeaseStatus::Cancelled) => {
                    tracing::info!("run cancelled; stopping the job");
                    abort.held_until(sent + lease_len);
                    abort.stop();
                }
                Err(e) => {
                    abort.set_reachable(false);
                    // Past the local deadline the job is lost (this check also wakes a job
                    // waiting on a long batch or a model load): no more renewals.
                    if !abort.go() && !abort.is_stopped() {
                        tracing::warn!(error = %e, "heartbeat failed and the lease is past its deadline; abandoning the job");
                        return;
                    }
                    wait = retries.next_delay().unwrap_or(every).min(every);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "heartbeat failed; retrying");
                }
            }
        }
    };
    AbortOnDrop(tokio::spawn(task.in_current_span()))
}

/// Ends a spawned task when dropped (a job's heartbeat: it must not outlive the job, even
/// one whose slot panicked, or it would keep the lease alive for nothing).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    queue: &Arc<dyn JobQueue>,
    factory: &Arc<dyn PipelineFactory>,
    cache: &RunCache,
    metrics: &Metrics,
    lease: Lease,
    claim_sent: Instant,
    abort: Arc<Abort>,
    stopping: &Stopping,
) -> JobEnd {
    let info = match cache.info(queue.as_ref(), &lease.run_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the run's record");
            return give_back(queue.as_ref(), &lease, &e, metrics).await;
        }
    };
    let _heartbeat = heartbeat(queue, &lease, &abort, info.lease, claim_sent);
    run_leased(queue, factory, cache, metrics, &lease, &abort, &info, stopping).await
}

#[allow(clippy::too_many_arguments)]
async fn run_leased(
    queue: &Arc<dyn JobQueue>,
    factory: &Arc<dyn PipelineFactory>,
    cache: &RunCache,
    metrics: &Metrics,
    lease: &Lease,
    abort: &Arc<Abort>,
    info: &RunInfo,
    stopping: &Stopping,
) -> JobEnd {
    // The next job is claimed with the ack unless the worker is shutting down.
    let claim_next = || (!stopping.load(Ordering::SeqCst)).then_some(lease.owner.as_str());
    let built = tokio::select! {
        built = cache.pipeline(factory, &lease.run_id, &info.spec) => built,
        // Stopped (the grace period is over, the run cancelled) or lost while the models
        // load, or while waiting for another slot's build: not waiting for it.
        _ = abort.ended() => return stopped_early(queue.as_ref(), lease, abort, metrics).await,
    };
    let pipeline = match built {
        Ok(p) => p,
        Err(e @ Error::ModelChanged(_)) => {
            // Every worker without the pinned model cached fails alike: an attempt spent.
            tracing::warn!(error = %e, "shard failed: the run's model changed since submit");
            fail(queue.as_ref(), lease, &e, metrics).await;
            return JobEnd::ModelChanged;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot prepare the run");
            return give_back(queue.as_ref(), lease, &e, metrics).await;
        }
    };
    let t0 = Instant::now();
    let job = ShardJob {
        run_id: lease.run_id.clone(),
        spec: info.spec.clone(),
        spec_digest: info.digest.clone(),
        store: info.store.clone(),
        pipeline: pipeline.clone(),
        shard: lease.shard,
        token: lease.token,
        owner: lease.owner.clone(),
        retried: lease.token > 1,
        abort: abort.clone(),
    };
    match execute_shard(job).await {
        Ok(ShardOutcome::Committed(rec)) => {
            metrics.committed(&lease.run_id, &rec, t0.elapsed().as_secs_f64());
            tracing::info!(samples = rec.samples.len(), attempt = rec.attempt, seconds = t0.elapsed().as_secs_f64(), "shard committed");
            return JobEnd::Done(ack(queue.as_ref(), lease, claim_next()).await);
        }
        Ok(ShardOutcome::AlreadyCommitted) => {
            metrics.jobs_committed.inc(&lease.run_id);
            tracing::info!("shard was already committed by another attempt");
            return JobEnd::Done(ack(queue.as_ref(), lease, claim_next()).await);
        }
        Ok(ShardOutcome::LeaseLost) => return lease_lost(queue.as_ref(), lease, abort, metrics).await,
        Ok(ShardOutcome::Stopped) => return released(queue.as_ref(), lease, metrics).await,
        Err(e) if e.is_worker_fault() => return give_back(queue.as_ref(), lease, &e, metrics).await,
        Err(e) => {
            tracing::warn!(error = %e, "shard failed");
            fail(queue.as_ref(), lease, &e, metrics).await;
            if let Error::Panicked(_) = e {
                // A failing device panics too (the CUDA backend does not err): the next
                // job builds the pipeline again, which checks the device (loading the
                // models, or reading back from it when they are still loaded), and a
                // failed build is this worker's own fault (given back, no attempt spent).
                // The panic itself neither counts as nor clears a failure of the worker's.
                tracing::warn!("dropping the run's pipeline after the panic: the next job of the run builds it again");
                cache.forget_pipeline(&lease.run_id, &pipeline);
                return JobEnd::Panicked;
            }
        }
    }
    JobEnd::Done(Next::Nothing)
}

/// A job stopped or lost before its shard started: released, or counted lost.
async fn stopped_early(queue: &dyn JobQueue, lease: &Lease, abort: &Abort, metrics: &Metrics) -> JobEnd {
    if abort.is_stopped() {
        released(queue, lease, metrics).await
    } else {
        lease_lost(queue, lease, abort, metrics).await
    }
}

/// A stopped job (shutdown, cancel) goes back to the queue without spending an attempt.
async fn released(queue: &dyn JobQueue, lease: &Lease, metrics: &Metrics) -> JobEnd {
    metrics.jobs_released.inc(&lease.run_id);
    release_or_stray(queue, lease, "job released").await
}

/// Releases the lease (fenced by its token: a no-op once another worker holds it), saying
/// `done` when it was still held; a release that fails leaves the lease untracked, given
/// back before the slot's next claim or at exit ([`Next::Stray`]).
async fn release_or_stray(queue: &dyn JobQueue, lease: &Lease, done: &str) -> JobEnd {
    match queue.release(lease).await {
        Ok(true) => tracing::info!("{done}"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "giving the job back failed; it is given back before the next claim or at exit");
            return JobEnd::Done(Next::Stray);
        }
    }
    JobEnd::Done(Next::Nothing)
}

/// A job whose lease was lost: reclaimed by the queue, or unconfirmed for a whole lease.
async fn lease_lost(queue: &dyn JobQueue, lease: &Lease, abort: &Abort, metrics: &Metrics) -> JobEnd {
    metrics.leases_lost.inc(&lease.run_id);
    // Lost by this worker's clock while the queue was unreachable, the lease may still be
    // this worker's in the queue, past its deadline or even renewed by a heartbeat that
    // got through late. Given back, the job keeps its attempt, unless another worker's
    // claim reclaimed it first (that counts a failure). Fenced by the token: once another
    // worker holds it, nothing happens. Lost while the queue answered (this process froze),
    // it is left to expire: a shard that freezes its worker goes on spending attempts.
    if !abort.cut_off() {
        return JobEnd::Done(Next::Nothing);
    }
    release_or_stray(queue, lease, "the queue still had the lease: job given back").await
}

/// A failure of this worker's own: the job goes back without spending an attempt.
async fn give_back(queue: &dyn JobQueue, lease: &Lease, e: &Error, metrics: &Metrics) -> JobEnd {
    metrics.jobs_released.inc(&lease.run_id);
    let held = match queue.release(lease).await {
        Ok(_) => {
            tracing::warn!(error = %e, "job given back: the failure is this worker's, not the job's");
            false
        }
        Err(qe) => {
            tracing::warn!(error = %e, release_error = %qe, "giving the job back failed; tried again before the next claim");
            true
        }
    };
    JobEnd::WorkerFault(e.to_string(), held)
}

/// Acks, and claims the next job in the same call when `claim_as` names the owner
/// ([`JobQueue::ack_and_claim`]); returns that job. If that call fails, acks alone,
/// retrying queue errors for a while ([`crate::retry::queue_write`]): the data is
/// committed either way, and a later claimer that finds the record acks it. The failed
/// call's claim may have run, and an ack that failed for good leaves the lease held:
/// [`Next::Stray`].
async fn ack(queue: &dyn JobQueue, lease: &Lease, claim_as: Option<&str>) -> Next {
    use backon::Retryable;
    let mut next = Next::Nothing;
    if let Some(owner) = claim_as {
        let sent = Instant::now();
        match queue.ack_and_claim(lease, owner).await {
            Ok((acked, claimed)) => {
                if !acked {
                    tracing::info!("ack refused: the lease had been reclaimed (the shard is committed all the same)");
                }
                return claimed.map_or(Next::Nothing, |l| Next::Job(l, sent));
            }
            Err(e) => {
                tracing::warn!(error = %e, "ack and claim failed; acking alone");
                next = Next::Stray;
            }
        }
    }
    let acked =
        (|| queue.ack(lease)).retry(crate::retry::queue_write()).notify(|e, wait| tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "ack failed; retrying")).await;
    match acked {
        Ok(true) => {}
        Ok(false) => tracing::info!("ack refused: the lease had been reclaimed (the shard is committed all the same)"),
        Err(e) => {
            // Still leased to this owner: given back before the next claim, whose claimer
            // finds the commit record and acks it.
            tracing::warn!(error = %e, "ack failed for good; the job is given back before the next claim, and its claimer finds the commit record");
            next = Next::Stray;
        }
    }
    next
}

async fn fail(queue: &dyn JobQueue, lease: &Lease, e: &Error, metrics: &Metrics) {
    use backon::Retryable;
    let message = e.to_string();
    let recorded = (|| queue.fail(lease, &message, e.is_retryable()))
        .retry(crate::retry::queue_write())
        .notify(|qe, wait| tracing::warn!(error = %qe, retry_in_ms = wait.as_millis() as u64, "recording the failure failed; retrying"))
        .await;
    match recorded {
        Ok(FailOutcome::Dead) => {
            metrics.jobs_dead.inc(&lease.run_id);
            tracing::error!(error = %e, "shard is dead");
        }
        Ok(FailOutcome::Retry { .. }) => metrics.jobs_retried.inc(&lease.run_id),
        Ok(FailOutcome::Lost) => {}
        Err(qe) => tracing::warn!(error = %e, queue_error = %qe, "recording the failure failed for good; the lease will expire and the shard be retried"),
    }
}
