//! `watch`: a progress bar (samples done/total, images/s, ETA, leased/retrying/dead) until
//! the run ends; then finalize. On a terminal the bar redraws; elsewhere (logs, CI) a
//! progress line is logged every few seconds.

use std::time::{Duration, Instant};

use crate::manifest::layout::{self, MANIFEST_JSONL};
use crate::queue::{JobQueue, RunState};

use super::ops;
use crate::error::Result;

/// How long a run may sit with shards claimable, no live lease and nothing committed
/// before `watch` says that no worker serves it, by default (`coordinator watch
/// --stall-warning-seconds`).
pub const STALL_WARN: Duration = Duration::from_secs(300);

/// What of a run's shards the stall check counts: claimable now (never claimed, given
/// back, retries past their backoff, leases past their deadline) and leases a worker
/// still holds. `Counts` shows expired leases and due retries as leased and retrying until
/// some claim moves them, so with every worker dead a run would look busy without these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Serving {
    claimable: u64,
    live_leases: u64,
    expired_leases: u64,
}

impl Serving {
    fn new(c: &crate::queue::Counts, o: crate::queue::Overdue) -> Serving {
        let expired_leases = o.expired_leases.min(c.leased);
        let waiting_retries = c.delayed.saturating_sub(o.due_retries);
        Serving { claimable: c.pending.saturating_sub(waiting_retries) + expired_leases, live_leases: c.leased - expired_leases, expired_leases }
    }
}

/// The run's [`Serving`]; asks the queue for overdue work only when something is in flight.
async fn serving(queue: &dyn JobQueue, run_id: &str, c: &crate::queue::Counts) -> Serving {
    let overdue = if c.leased > 0 || c.delayed > 0 {
        queue.overdue(run_id).await.unwrap_or_else(|e| {
            tracing::debug!(run = run_id, error = %e, "counting overdue leases failed; counted as none");
            Default::default()
        })
    } else {
        Default::default()
    };
    Serving::new(c, overdue)
}

/// The warning for a run whose shards have been claimable for `idle` with no live lease
/// and no commit; `None` before `after` or when nothing is claimable.
fn stall_warning(run_id: &str, idle: Duration, after: Duration, s: Serving) -> Option<String> {
    (idle >= after && s.claimable > 0 && s.live_leases == 0).then(|| {
        let expired = match s.expired_leases {
            0 => String::new(),
            n => format!(" ({n} of them leased by workers that stopped heartbeating: dead, or cut off from Redis)"),
        };
        format!(
            "run {run_id}: {} shard(s) claimable{expired} and none claimed for {} s: no worker is serving this run. Are workers running, and on this Redis? A worker that fails through its own fault (a model it cannot load, refused credentials, a full disk) gives its job back and exits after --max-local-failures; its log names the cause",
            s.claimable,
            idle.as_secs()
        )
    })
}

/// How a watched run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// Every shard committed and the manifest written.
    Complete {
        samples: u64,
        manifest: String,
    },
    /// Every shard committed; not finalized (asked not to): no manifest yet.
    Committed {
        samples: u64,
    },
    /// No work left but some shards are dead.
    Dead {
        shards: Vec<(u64, String)>,
    },
    Cancelled,
    /// SIGTERM or SIGINT: the watch stopped; the run goes on.
    Interrupted,
}

/// Follows a run to its end, then (with `finalize`) writes its manifest.
///
/// Storage is the truth and the queue follows it: dead shards whose commit record exists
/// (a late commit after the lease was reclaimed) are marked committed; a run finalized by
/// hand ends the watch; a run Redis lost is rebuilt from storage ([`ops::resume`]) and
/// watched on; an active run the claim index lost is listed again ([`JobQueue::relist`]);
/// shards a partial loss left in no state are queued again ([`JobQueue::requeue_stranded`]).
pub async fn watch(
    queue: &dyn JobQueue,
    run_id: &str,
    interval: Duration,
    finalize: bool,
    stall_warn: Option<Duration>,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<WatchEnd> {
    let (_, spec) = ops::load_run(queue, run_id).await?;
    let store = crate::job::run_store(&spec, run_id)?;
    let total = spec.run.count;
    let bar = crate::progress::styled(Some(total), "{spinner} {pos}/{len} samples [{bar:30}] {per_sec} · ETA {eta} · {msg}");
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let mut last_log = Instant::now();
    // The counts when requeue_stranded last found the bitmap short: not walked again (nor
    // the error logged again) until they change.
    let mut bitmap_short_at: Option<(u64, u64)> = None;
    // Since when nothing has been leased or committed (see `stall_warning`), and whether
    // that was said.
    let (mut idle_since, mut seen_committed, mut stall_said) = (Instant::now(), None, false);
    // Redis unreachable: 0.5 s doubling to 5 s with jitter, 40 tries in a row (about 5 min).
    let mut queue_delays = crate::retry::Delays::new(crate::retry::policy(Duration::from_millis(500), Duration::from_secs(5), 40));
    loop {
        let c = match queue.counts(run_id).await {
            Ok(c) => {
                queue_delays.reset();
                c
            }
            Err(e) => {
                // Redis answers but no longer knows the run (a restart without its data,
                // eviction, FLUSHALL): rebuild it from storage and carry on.
                if let Ok(None) = queue.run(run_id).await {
                    tracing::warn!(run = run_id, "the queue lost this run; rebuilding it from the commit records in {}", store.display());
                    let r = ops::resume(queue, &store).await?;
                    tracing::warn!(
                        run = run_id,
                        committed = r.committed,
                        queued = r.shards - r.committed,
                        "run rebuilt from storage: only shards without a commit record are queued again"
                    );
                    continue;
                }
                // Redis restarting or a network blip: keep watching for a while.
                if let Some(wait) = queue_delays.next_delay() {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "reading the run's counts failed; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(e);
            }
        };
        if let Some(m) = metrics {
            m.set_queue(run_id, &c);
        }
        let done = ops::committed_samples(&spec, &c);
        bar.set_position(done);
        if first.is_none() {
            // Attached to a run already under way: the samples done before count toward
            // neither the rate nor the ETA.
            bar.reset_eta();
        }
        let first_seen = *first.get_or_insert((Instant::now(), done));
        // Overdue work is asked for only when no shard committed since the last poll: a run
        // making progress is served, and needs no extra round trips per poll.
        let progressed = seen_committed != Some(c.committed);
        let serve = if progressed { Serving::new(&c, Default::default()) } else { serving(queue, run_id, &c).await };
        if progressed || serve.live_leases > 0 || serve.claimable == 0 {
            (idle_since, seen_committed, stall_said) = (Instant::now(), Some(c.committed), false);
        } else if let (false, None, Some(after)) = (stall_said, bitmap_short_at, stall_warn) {
            if let Some(warning) = stall_warning(run_id, idle_since.elapsed(), after, serve) {
                // Workers busy on other runs (of higher priority, or older) are serving,
                // just not this run yet: said so instead.
                let mut elsewhere = 0;
                for (other, oc) in ops::active_counts(queue).await.unwrap_or_default() {
                    if other != run_id {
                        elsewhere += serving(queue, &other, &oc).await.live_leases;
                    }
                }
                if elsewhere > 0 {
                    tracing::info!(run = run_id, leased_elsewhere = elsewhere, "shards waiting while workers hold jobs of other active runs (served by priority, then age)");
                } else {
                    tracing::warn!("{warning}");
                }
                stall_said = true;
            }
        }
        let expired = match serve.expired_leases {
            0 => String::new(),
            n => format!(" ({n} expired)"),
        };
        let msg = format!("leased {}{expired} · retrying {} · dead {}", c.leased, c.delayed, c.dead);
        bar.set_message(msg);
        if bar.is_hidden() && last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            let secs = first_seen.0.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { done.saturating_sub(first_seen.1) as f64 / secs } else { 0.0 };
            // Numbers as fields (JSON logs keep them apart from the message).
            let rate = (rate * 10.0).round() / 10.0;
            let (leased, retrying, dead) = (c.leased, c.delayed, c.dead);
            if rate > 0.0 {
                let eta_s = (total.saturating_sub(done) as f64 / rate).round() as u64;
                tracing::info!(done, total, rate, eta_s, leased, retrying, dead, "progress");
            } else {
                tracing::info!(done, total, rate, leased, retrying, dead, "progress");
            }
        }
        match c.state {
            RunState::Cancelled => {
                bar.abandon_with_message("cancelled");
                return Ok(WatchEnd::Cancelled);
            }
            RunState::Finalized => {
                // Finalized by this or another command (even while acks were missing): the
                // manifest says how many samples it lists.
                bar.finish_with_message("finalized");
                let samples = manifest_count(&store).await.unwrap_or(done);
                return Ok(WatchEnd::Complete { samples, manifest: store.describe(MANIFEST_JSONL) });
            }
            RunState::Active => {}
        }
        if c.committed < c.total {
            // Workers find runs through an index apart from the run: a failover that lost
            // only the index's last writes would leave this run unserved, counts intact.
            match queue.relist(run_id).await {
                Ok(true) => tracing::warn!(run = run_id, "the queue's index of active runs had lost this run (a Redis failover?): listed it again"),
                Ok(false) => {}
                Err(e) => tracing::debug!(run = run_id, error = %e, "checking that the run is listed failed; trying again at the next poll"),
            }
        }
        if c.leased == 0 && c.delayed == 0 && c.committed + c.dead < c.total && bitmap_short_at != Some((c.committed, c.dead)) {
            // Nothing in flight yet not done: either shards wait to be claimed, or a run
            // key lost on its own (evicted under a maxmemory-policy other than
            // noeviction, or edited by hand) left some in no state, which no worker
            // would ever claim.
            match queue.requeue_stranded(run_id).await {
                Ok(s) if s.found > s.missing => {
                    bitmap_short_at = Some((c.committed, c.dead));
                    tracing::error!(
                        run = run_id,
                        uncommitted_at_least = s.found,
                        missing = s.missing,
                        meta = %crate::queue::redis_meta_key(run_id),
                        "the queue's committed bitmap lost bits (shards it shows uncommitted may have commit records): nothing queued; delete the run's meta key (redis-cli DEL META) and this watch rebuilds the run from its commit records"
                    );
                }
                Ok(s) => {
                    if s.queued > 0 {
                        tracing::warn!(run = run_id, shards = s.queued, "shards were in no state in the queue (a run key lost on its own: eviction, an edit): queued them again");
                    }
                    if s.recounted {
                        tracing::warn!(run = run_id, "the queue's committed counter was behind its bitmap (a run key lost on its own): set from the bitmap");
                    }
                }
                Err(e) => tracing::debug!(run = run_id, error = %e, "looking for stranded shards failed; trying again at the next poll"),
            }
        }
        if c.committed == c.total {
            bar.finish_with_message("all shards committed");
            if !finalize {
                return Ok(WatchEnd::Committed { samples: total });
            }
            let (report, store) = ops::finalize_run(queue, run_id).await?;
            tracing::info!(
                samples = report.samples,
                removed = report.removed_objects,
                aborted_uploads = report.aborted_uploads,
                seconds = started.elapsed().as_secs_f64(),
                "finalized"
            );
            return Ok(WatchEnd::Complete { samples: report.samples, manifest: store.describe(MANIFEST_JSONL) });
        }
        if c.dead > 0 && c.pending == 0 && c.leased == 0 {
            let dead = crate::retry::redis_call("reading the dead shards", || queue.dead(run_id)).await?;
            if reconcile(queue, &store, run_id, dead.iter().map(|d| d.shard)).await? > 0 {
                continue;
            }
            bar.abandon_with_message("dead shards");
            return Ok(WatchEnd::Dead { shards: dead.into_iter().map(|d| (d.shard, d.error)).collect() });
        }
        tokio::time::sleep(interval).await;
    }
}

/// Marks committed, in the queue, each of `shards` that has a commit record in storage.
/// Returns how many changed.
pub async fn reconcile(queue: &dyn JobQueue, store: &crate::storage::Store, run_id: &str, shards: impl Iterator<Item = u64>) -> Result<u64> {
    let mut changed = 0;
    for shard in shards {
        if store.exists(&layout::record_path(shard)).await? && crate::retry::redis_call("marking a shard committed", || queue.mark_committed(run_id, shard)).await? {
            tracing::warn!(run = run_id, shard, "shard is committed in storage but the queue had it dead (a commit after its lease was reclaimed): marked committed");
            changed += 1;
        }
    }
    Ok(changed)
}

/// The sample count `manifest.json` states, if it exists.
async fn manifest_count(store: &crate::storage::Store) -> Option<u64> {
    let body = store.get(layout::MANIFEST_JSON).await.ok()??;
    serde_json::from_slice::<serde_json::Value>(&body).ok()?.get("count")?.as_u64()
}

/// Where a run's queue lives, which decides how its dead shards are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    /// Redis: `coordinator retry-dead RUN`.
    Redis,
    /// The embedded mode's in-memory queue: run the same command again with the run id.
    Embedded,
}

/// Exit codes of the commands that follow a run (`coordinator watch`, `worker run`),
/// each outcome its own: 1 stays "an error" and 2 clap's usage error (a Kubernetes
/// `podFailurePolicy` can fail a Job on [`DEAD_SHARDS`] and [`CANCELLED`] without
/// catching a mistyped flag).
pub mod exit_code {
    /// Every sample is committed and (unless the watch was told not to finalize) listed
    /// in the manifest.
    pub const COMPLETE: u8 = 0;
    /// Any error that ends the command (printed on stderr): Redis or storage unreachable,
    /// a bad spec.
    pub const ERROR: u8 = 1;
    /// The command line was not understood (clap's code).
    pub const USAGE: u8 = 2;
    /// The run was cancelled.
    pub const CANCELLED: u8 = 3;
    /// Shards failed `max_attempts` times and are dead (named on stderr).
    pub const DEAD_SHARDS: u8 = 4;
    /// Stopped by SIGTERM or SIGINT; the run goes on.
    pub const INTERRUPTED: u8 = 130;
}

/// Prints how a run ended and returns the exit code ([`exit_code`]).
pub fn report_end(run_id: &str, end: &WatchEnd, mode: QueueMode) -> std::process::ExitCode {
    match end {
        WatchEnd::Complete { samples, manifest } => {
            println!("run {run_id}: {samples} samples; manifest {manifest}");
            std::process::ExitCode::from(exit_code::COMPLETE)
        }
        WatchEnd::Committed { samples } => {
            println!("run {run_id}: all {samples} samples committed; not finalized: `coordinator finalize {run_id}` writes the manifest");
            std::process::ExitCode::from(exit_code::COMPLETE)
        }
        WatchEnd::Dead { shards } => {
            match mode {
                QueueMode::Redis => eprintln!("run {run_id}: {} shard(s) are dead; fix the cause, then `coordinator retry-dead {run_id}`:", shards.len()),
                QueueMode::Embedded => eprintln!(
                    "run {run_id}: {} shard(s) are dead; fix the cause, then run the same command again with `--run-id {run_id}` (committed shards are kept):",
                    shards.len()
                ),
            }
            for (shard, err) in shards {
                eprintln!("  shard {shard}: {err}");
            }
            std::process::ExitCode::from(exit_code::DEAD_SHARDS)
        }
        WatchEnd::Cancelled => {
            eprintln!("run {run_id}: cancelled");
            std::process::ExitCode::from(exit_code::CANCELLED)
        }
        WatchEnd::Interrupted => {
            match mode {
                QueueMode::Redis => eprintln!("run {run_id}: stopped watching (signal); the run goes on: `coordinator watch {run_id}` to follow it again"),
                QueueMode::Embedded => eprintln!("run {run_id}: interrupted; run the same command again with `--run-id {run_id}` to resume (committed shards are kept)"),
            }
            std::process::ExitCode::from(exit_code::INTERRUPTED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Counts;

    /// Said once shards have been claimable for five minutes with no live lease, naming
    /// the likely causes; not before, and not while a worker holds a lease or nothing is
    /// claimable. Expired leases and due retries count as claimable, not as in flight.
    #[test]
    fn a_run_nobody_serves_is_named_after_five_minutes() {
        let s = |c: Counts, expired_leases, due_retries| Serving::new(&c, crate::queue::Overdue { expired_leases, due_retries });
        let waiting = Counts { total: 10, pending: 7, committed: 3, ..Counts::default() };
        assert_eq!(s(waiting, 0, 0), Serving { claimable: 7, live_leases: 0, expired_leases: 0 });
        assert_eq!(stall_warning("r", Duration::from_secs(299), STALL_WARN, s(waiting, 0, 0)), None);
        let w = stall_warning("r", Duration::from_secs(360), STALL_WARN, s(waiting, 0, 0)).expect("a warning");
        assert!(w.contains("run r: 7 shard(s) claimable and none") && w.contains("for 360 s") && w.contains("--max-local-failures"), "{w}");

        // Every worker died: their leases expired and their failed shards' backoff is over.
        let abandoned = Counts { total: 10, pending: 2, delayed: 2, leased: 3, committed: 5, ..Counts::default() };
        assert_eq!(s(abandoned, 3, 2), Serving { claimable: 5, live_leases: 0, expired_leases: 3 });
        let w = stall_warning("r", Duration::from_secs(600), STALL_WARN, s(abandoned, 3, 2)).expect("a warning");
        assert!(w.contains("5 shard(s) claimable (3 of them leased by workers that stopped heartbeating"), "{w}");

        let busy = [
            s(abandoned, 2, 2),                                    // one lease is live
            s(Counts { leased: 1, ..waiting }, 0, 0),              // a live lease
            s(Counts { pending: 1, delayed: 1, ..waiting }, 0, 0), // only a retry in its backoff
            s(Counts { pending: 0, ..waiting }, 0, 0),             // nothing left to claim
        ];
        for b in busy {
            assert_eq!(stall_warning("r", Duration::from_secs(3600), STALL_WARN, b), None, "{b:?}");
        }
    }
}
