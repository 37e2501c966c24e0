//! The conformance suite every [`JobQueue`] must pass: plain async functions taking
//! `&dyn JobQueue` and a [`TimeControl`], run on [`super::MemoryQueue`] (with a
//! [`ManualClock`]) in this crate's unit tests and on [`super::RedisQueue`] (with
//! [`RealTime`]) in the integration tests.
//!
//! Differences between implementations are arguments: the time control says how to let
//! time pass and how much the clock may move by itself during a check.
//!
//! Each check uses its own run ids (`<prefix>-<check>`) and finalizes its runs when done,
//! so the checks can share one queue (claims serve every active run of the queue) as long
//! as nothing else claims from it meanwhile.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use super::memory::ManualClock;
use super::types::*;
use super::JobQueue;
use crate::error::{Error, Result};

/// How a check lets time pass on the queue's clock.
#[async_trait]
pub trait TimeControl: Send + Sync {
    /// Lets at least `ms` milliseconds pass on the queue's clock.
    async fn advance(&self, ms: u64);

    /// How far the queue's clock may move by itself during a check (0 for a manual clock):
    /// the slack allowed on upper bounds of times the queue reports.
    fn slack_ms(&self) -> u64;

    /// Factor applied to the durations of timing-sensitive checks, so that on a real clock
    /// a loaded machine's pauses stay small against the windows checked (1 on a manual clock).
    fn scale(&self) -> u64 {
        1
    }
}

#[async_trait]
impl TimeControl for ManualClock {
    async fn advance(&self, ms: u64) {
        ManualClock::advance(self, ms);
    }

    fn slack_ms(&self) -> u64 {
        0
    }
}

/// Real time, for a queue on a clock the test cannot move (Redis: the server's `TIME`):
/// `advance` sleeps `margin_ms` longer than asked.
#[derive(Debug, Clone, Copy)]
pub struct RealTime {
    pub margin_ms: u64,
    pub slack_ms: u64,
}

impl Default for RealTime {
    fn default() -> Self {
        RealTime { margin_ms: 25, slack_ms: 1_000 }
    }
}

#[async_trait]
impl TimeControl for RealTime {
    async fn advance(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms + self.margin_ms)).await;
    }

    fn slack_ms(&self) -> u64 {
        self.slack_ms
    }

    fn scale(&self) -> u64 {
        5
    }
}

/// Runs every check, with run ids made unique by `prefix`.
pub async fn run_all(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    macro_rules! checks {
        ($($check:ident),* $(,)?) => {$(
            eprintln!("queue conformance: {}", stringify!($check));
            $check(q, time, prefix).await;
        )*};
    }
    checks!(
        submit_registers_run,
        submit_is_idempotent_and_detects_conflicts,
        claims_shards_in_order,
        ack_is_fenced_and_idempotent,
        expired_lease_is_reclaimed_and_fenced,
        heartbeat_extends_lease,
        retry_backoff_doubles_and_caps,
        max_attempts_makes_job_dead,
        non_retryable_failure_is_dead_at_once,
        expired_lease_at_max_attempts_is_dead,
        release_keeps_attempt_budget,
        release_owned_gives_back_lost_claims,
        runs_are_served_by_priority_then_age,
        cancel_stops_claims,
        retry_dead_revives_jobs,
        finalize_leaves_active_set,
        unknown_run_is_an_error,
        restored_run_queues_only_uncommitted_shards,
        storage_commit_overrides_queue_state,
        given_back_jobs_go_before_new_ones,
        ack_and_claim_goes_on_and_keeps_priorities,
        finished_runs_keep_their_counts,
        a_whole_run_has_no_stranded_shards,
        overdue_counts_expired_leases_and_due_retries,
    );
}

/// A run record with the suite's defaults (3 attempts, 300 ms leases, 100 ms backoff).
pub fn record(run_id: &str, shards: u64) -> RunRecord {
    RunRecord {
        run_id: run_id.to_string(),
        spec_digest: format!("digest-{run_id}"),
        spec_json: format!("{{\"run\":\"{run_id}\"}}"),
        shards,
        max_attempts: 3,
        lease_ms: 300,
        backoff_ms: 100,
        max_backoff_ms: 400,
        priority: 0,
        created_ms: 0,
    }
}

fn id(prefix: &str, check: &str) -> String {
    format!("{prefix}-{check}")
}

async fn submit(q: &dyn JobQueue, run: &RunRecord) {
    assert_eq!(q.submit(run).await.unwrap(), Submitted::Created, "submit {}", run.run_id);
}

async fn claim(q: &dyn JobQueue, owner: &str) -> Lease {
    q.claim(owner).await.unwrap().unwrap_or_else(|| panic!("{owner}: expected a job to claim"))
}

async fn claim_none(q: &dyn JobQueue, why: &str) {
    let got = q.claim("nobody").await.unwrap();
    assert!(got.is_none(), "{why}: expected nothing to claim, got {got:?}");
}

async fn counts(q: &dyn JobQueue, run_id: &str) -> Counts {
    q.counts(run_id).await.unwrap()
}

/// Finalizes the runs so they no longer take part in claims.
async fn finish(q: &dyn JobQueue, runs: &[&str]) {
    for run in runs {
        q.mark_finalized(run).await.unwrap();
    }
}

fn assert_run_error<T: Debug>(result: Result<T>, run_id: &str, needle: &str) {
    match result {
        Err(Error::Run { run, message }) => {
            assert_eq!(run, run_id);
            assert!(message.contains(needle), "error {message:?} should say {needle:?}");
        }
        other => panic!("expected a run error about {needle:?} for {run_id}, got {other:?}"),
    }
}

/// When a lease was taken (its deadline less the lease duration).
fn claimed_at(lease: &Lease, run: &RunRecord) -> u64 {
    lease.deadline_ms - run.lease_ms
}

fn assert_retry_at(outcome: FailOutcome, from_ms: u64, backoff: u64, time: &dyn TimeControl) {
    let FailOutcome::Retry { at_ms } = outcome else { panic!("expected a retry, got {outcome:?}") };
    let lo = from_ms + backoff;
    assert!((lo..=lo + time.slack_ms()).contains(&at_ms), "retry at {at_ms}: expected {lo} (+ up to {} ms)", time.slack_ms());
}

/// Submit stores the record once (created_ms from the queue clock) and enqueues every shard.
pub async fn submit_registers_run(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "submit");
    let run = RunRecord { priority: 3, created_ms: 42, ..record(&run_id, 5) };
    submit(q, &run).await;
    let stored = q.run(&run_id).await.unwrap().expect("the run is stored");
    assert_ne!(stored.created_ms, 42, "created_ms comes from the queue's clock");
    assert_eq!(stored, RunRecord { created_ms: stored.created_ms, ..run.clone() });
    assert_eq!(counts(q, &run_id).await, Counts { total: 5, pending: 5, delayed: 0, leased: 0, committed: 0, dead: 0, state: RunState::Active, last_committed: false });
    assert!(q.list().await.unwrap().contains(&run_id));
    assert!(!q.relist(&run_id).await.unwrap(), "a listed run is not listed again");
    assert_eq!(q.run(&id(prefix, "never-submitted")).await.unwrap(), None);
    finish(q, &[&run_id]).await;
}

/// The same id and digest is a no-op; a different digest is an error that changes nothing.
pub async fn submit_is_idempotent_and_detects_conflicts(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "idempotent");
    let run = record(&run_id, 3);
    submit(q, &run).await;
    let first = q.run(&run_id).await.unwrap().unwrap();
    time.advance(5).await;
    assert_eq!(q.submit(&run).await.unwrap(), Submitted::AlreadyExists);
    assert_eq!(q.run(&run_id).await.unwrap().unwrap(), first, "the record is stored once");
    assert_eq!(counts(q, &run_id).await.total, 3);
    assert_eq!(counts(q, &run_id).await.pending, 3, "jobs are not enqueued twice");

    let other = RunRecord { spec_digest: "another-digest".into(), shards: 7, ..run.clone() };
    assert_run_error(q.submit(&other).await, &run_id, "different spec");
    assert_eq!(q.run(&run_id).await.unwrap().unwrap(), first);
    assert_eq!(counts(q, &run_id).await.pending, 3);
    let listed = q.list().await.unwrap();
    assert_eq!(listed.iter().filter(|r| **r == run_id).count(), 1);
    finish(q, &[&run_id]).await;
}

/// Claims lease shards in order with token 1; nothing is left once all are leased; acks commit.
pub async fn claims_shards_in_order(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "order");
    let run = record(&run_id, 3);
    submit(q, &run).await;
    let created = q.run(&run_id).await.unwrap().unwrap().created_ms;
    let mut leases = Vec::new();
    for shard in 0..3 {
        let lease = claim(q, "w1").await;
        assert_eq!((lease.run_id.as_str(), lease.shard, lease.token), (run_id.as_str(), shard, 1));
        assert_eq!((lease.failures, lease.owner.as_str()), (0, "w1"));
        assert!(lease.deadline_ms >= created + run.lease_ms, "deadline {lease:?}");
        leases.push(lease);
    }
    claim_none(q, "every shard is leased").await;
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.leased, c.committed), (0, 3, 0));
    for lease in &leases {
        assert!(q.ack(lease).await.unwrap());
    }
    let c = counts(q, &run_id).await;
    assert_eq!((c.total, c.pending, c.leased, c.committed, c.dead), (3, 0, 0, 3, 0));
    claim_none(q, "every shard is committed").await;
    finish(q, &[&run_id]).await;
}

/// Ack twice with the same token is fine; after the ack the lease is gone.
pub async fn ack_is_fenced_and_idempotent(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "ack");
    submit(q, &record(&run_id, 1)).await;
    let lease = claim(q, "w1").await;
    let forged = Lease { token: lease.token + 1, ..lease.clone() };
    assert!(!q.ack(&forged).await.unwrap(), "a token never handed out is not held");
    assert_eq!(counts(q, &run_id).await.leased, 1, "a refused ack changes nothing");
    // The current token under another owner (a stale holder after the queue lost its
    // data and counted claims from 1 again): held by neither call.
    let stale = Lease { owner: "w0".into(), ..lease.clone() };
    assert_eq!(q.heartbeat(&stale).await.unwrap(), LeaseStatus::Lost);
    assert!(!q.ack(&stale).await.unwrap());
    assert!(!q.release(&stale).await.unwrap());
    assert_eq!(q.fail(&stale, "stale", false).await.unwrap(), FailOutcome::Lost);
    let (acked, next) = q.ack_and_claim(&stale, "w0").await.unwrap();
    assert!(!acked && next.is_none(), "{next:?}");
    assert_eq!(q.heartbeat(&lease).await.unwrap(), LeaseStatus::Held, "the holder's lease is untouched");
    assert_eq!(counts(q, &run_id).await.leased, 1);
    assert!(q.ack(&lease).await.unwrap());
    assert!(q.ack(&lease).await.unwrap(), "ack is idempotent once committed");
    assert_eq!(q.heartbeat(&lease).await.unwrap(), LeaseStatus::Lost);
    assert!(!q.release(&lease).await.unwrap());
    assert_eq!(q.fail(&lease, "late", true).await.unwrap(), FailOutcome::Lost);
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.leased, c.committed, c.dead), (0, 0, 1, 0));
    finish(q, &[&run_id]).await;
}

/// An expired lease is reclaimed by the next claim as a failed attempt (delayed by the
/// backoff); its holder can then change nothing, and the next claim gets a new token.
pub async fn expired_lease_is_reclaimed_and_fenced(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "reclaim");
    let run = record(&run_id, 1);
    submit(q, &run).await;
    let old = claim(q, "w1").await;
    time.advance(run.lease_ms).await;
    claim_none(q, "the reclaimed job waits out its backoff").await;
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.delayed, c.leased, c.committed), (1, 1, 0, 0));

    assert!(!q.ack(&old).await.unwrap(), "ack after reclaim");
    assert_eq!(q.heartbeat(&old).await.unwrap(), LeaseStatus::Lost);
    assert_eq!(q.fail(&old, "late", true).await.unwrap(), FailOutcome::Lost);
    assert!(!q.release(&old).await.unwrap());
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.delayed, c.leased, c.committed, c.dead), (1, 1, 0, 0, 0));

    time.advance(run.backoff_ms).await;
    let new = claim(q, "w2").await;
    assert_eq!((new.shard, new.token, new.failures, new.owner.as_str()), (0, 2, 1, "w2"));
    assert!(!q.ack(&old).await.unwrap(), "the old token stays fenced");
    assert_eq!(q.heartbeat(&new).await.unwrap(), LeaseStatus::Held);
    assert!(q.ack(&new).await.unwrap());
    assert_eq!(counts(q, &run_id).await.committed, 1);
    finish(q, &[&run_id]).await;
}

/// Heartbeats push the deadline out: a lease kept alive is not reclaimed.
pub async fn heartbeat_extends_lease(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "heartbeat");
    let k = time.scale();
    let run = RunRecord { lease_ms: 1_000 * k, ..record(&run_id, 1) };
    submit(q, &run).await;
    let lease = claim(q, "w1").await;
    time.advance(600 * k).await;
    assert_eq!(q.heartbeat(&lease).await.unwrap(), LeaseStatus::Held);
    time.advance(600 * k).await;
    claim_none(q, "the lease was extended").await;
    let c = counts(q, &run_id).await;
    assert_eq!((c.leased, c.delayed, c.pending), (1, 0, 0));
    assert!(q.ack(&lease).await.unwrap());
    finish(q, &[&run_id]).await;
}

/// Retries wait `backoff_ms`, doubled per failure and capped at `max_backoff_ms`.
pub async fn retry_backoff_doubles_and_caps(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "backoff");
    let k = time.scale();
    let run = RunRecord { max_attempts: 5, lease_ms: 10_000 * k, backoff_ms: 200 * k, max_backoff_ms: 500 * k, ..record(&run_id, 1) };
    submit(q, &run).await;

    let a = claim(q, "w1").await;
    assert_retry_at(q.fail(&a, "e1", true).await.unwrap(), claimed_at(&a, &run), 200 * k, time);
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.delayed, c.leased, c.dead), (1, 1, 0, 0));
    claim_none(q, "first backoff").await;
    time.advance(200 * k).await;

    let b = claim(q, "w1").await;
    assert_eq!((b.token, b.failures), (2, 1));
    assert_retry_at(q.fail(&b, "e2", true).await.unwrap(), claimed_at(&b, &run), 400 * k, time);
    time.advance(200 * k).await;
    claim_none(q, "second backoff is doubled").await;
    time.advance(200 * k).await;

    let c = claim(q, "w1").await;
    assert_eq!((c.token, c.failures), (3, 2));
    assert_retry_at(q.fail(&c, "e3", true).await.unwrap(), claimed_at(&c, &run), 500 * k, time);
    time.advance(500 * k).await;

    let d = claim(q, "w1").await;
    assert_eq!((d.token, d.failures), (4, 3));
    assert!(q.ack(&d).await.unwrap());
    let c = counts(q, &run_id).await;
    assert_eq!((c.committed, c.pending, c.dead), (1, 0, 0));
    finish(q, &[&run_id]).await;
}

/// After `max_attempts` failed attempts the job is dead with its last error.
pub async fn max_attempts_makes_job_dead(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "max-attempts");
    let run = RunRecord { max_attempts: 2, ..record(&run_id, 1) };
    submit(q, &run).await;
    let a = claim(q, "w1").await;
    assert!(matches!(q.fail(&a, "boom 1", true).await.unwrap(), FailOutcome::Retry { .. }));
    time.advance(run.backoff_ms).await;
    let b = claim(q, "w1").await;
    assert_eq!(b.failures, 1);
    assert_eq!(q.fail(&b, "boom 2", true).await.unwrap(), FailOutcome::Dead);
    assert_eq!(q.dead(&run_id).await.unwrap(), vec![DeadJob { shard: 0, failures: 2, error: "boom 2".into() }]);
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.delayed, c.leased, c.dead, c.committed), (0, 0, 0, 1, 0));
    time.advance(run.max_backoff_ms).await;
    claim_none(q, "a dead job is not claimed").await;
    finish(q, &[&run_id]).await;
}

/// A failure that is not retryable makes the job dead at once.
pub async fn non_retryable_failure_is_dead_at_once(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "fatal");
    submit(q, &RunRecord { max_attempts: 5, ..record(&run_id, 2) }).await;
    let a = claim(q, "w1").await;
    assert_eq!(q.fail(&a, "bad spec: no classes", false).await.unwrap(), FailOutcome::Dead);
    assert_eq!(q.dead(&run_id).await.unwrap(), vec![DeadJob { shard: 0, failures: 1, error: "bad spec: no classes".into() }]);
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.dead, c.leased), (1, 1, 0));
    finish(q, &[&run_id]).await;
}

/// An expired lease that uses up the last attempt makes the job dead, naming the owner.
pub async fn expired_lease_at_max_attempts_is_dead(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "expired-dead");
    let run = RunRecord { max_attempts: 1, ..record(&run_id, 1) };
    submit(q, &run).await;
    let lease = claim(q, "w-late").await;
    time.advance(run.lease_ms).await;
    claim_none(q, "the only job died").await;
    assert_eq!(q.dead(&run_id).await.unwrap(), vec![DeadJob { shard: 0, failures: 1, error: "lease expired (owner w-late)".into() }]);
    assert!(!q.ack(&lease).await.unwrap());
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.leased, c.dead), (0, 0, 1));
    finish(q, &[&run_id]).await;
}

/// Release puts the job back at once without spending an attempt.
pub async fn release_keeps_attempt_budget(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "release");
    submit(q, &RunRecord { max_attempts: 2, ..record(&run_id, 1) }).await;
    let a = claim(q, "w1").await;
    assert!(q.release(&a).await.unwrap());
    assert!(!q.release(&a).await.unwrap(), "a released lease is gone");
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.delayed, c.leased), (1, 0, 0));
    let b = claim(q, "w2").await;
    assert_eq!((b.shard, b.token, b.failures), (0, 2, 0));
    assert!(!q.ack(&a).await.unwrap());
    // One failure of two allowed: a retry, so the release did not count as an attempt.
    assert!(matches!(q.fail(&b, "e", true).await.unwrap(), FailOutcome::Retry { .. }));
    finish(q, &[&run_id]).await;
}

/// A claim whose answer never reached its worker: `release_owned` gives that owner's
/// leases back to the front of the line without spending an attempt (in a cancelled run
/// too), and leaves other owners' leases alone. The owner names are this check's own.
pub async fn release_owned_gives_back_lost_claims(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "owned");
    let (me, other) = (format!("{prefix}-lost-replies"), format!("{prefix}-other"));
    submit(q, &record(&run_id, 4)).await;
    let lost = claim(q, &me).await;
    let kept = claim(q, &other).await;
    let lost_too = claim(q, &me).await;
    assert_eq!((lost.shard, kept.shard, lost_too.shard), (0, 1, 2));
    assert_eq!(q.release_owned(&me).await.unwrap(), 2);
    assert_eq!(q.release_owned(&me).await.unwrap(), 0, "nothing left to give back");
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.leased, c.delayed), (3, 1, 0), "{c:?}");
    assert!(!q.ack(&lost).await.unwrap(), "a lease given back is gone");
    assert_eq!(q.heartbeat(&kept).await.unwrap(), LeaseStatus::Held, "another owner's lease stays");
    let again = claim(q, &other).await;
    assert_eq!((again.shard, again.token, again.failures), (0, 2, 0), "back at the front, no attempt spent");
    assert_eq!(claim(q, &other).await.shard, 2);
    finish(q, &[&run_id]).await;

    // A run cancelled meanwhile: the lease goes too (nothing is queued again).
    let gone = id(prefix, "owned-cancelled");
    submit(q, &record(&gone, 2)).await;
    assert_eq!(claim(q, &me).await.run_id, gone);
    q.cancel(&gone).await.unwrap();
    assert_eq!(counts(q, &gone).await.leased, 1);
    assert_eq!(q.release_owned(&me).await.unwrap(), 1, "a cancelled run's lease is given back too");
    assert_eq!(counts(q, &gone).await.leased, 0);
    finish(q, &[&gone]).await;
    assert_eq!(q.release_owned(&me).await.unwrap(), 0, "a finalized run holds nothing");
}

/// Claims serve the highest priority first (over the whole i32 range), then the oldest
/// run; `list` is oldest first.
pub async fn runs_are_served_by_priority_then_age(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let a = id(prefix, "prio-a");
    let b = id(prefix, "prio-b");
    let c = id(prefix, "prio-c");
    let d = id(prefix, "prio-d");
    submit(q, &record(&a, 2)).await;
    time.advance(5).await;
    submit(q, &record(&b, 1)).await;
    time.advance(5).await;
    // The extremes of the range (negating i32::MIN overflows).
    submit(q, &RunRecord { priority: i32::MAX, ..record(&c, 1) }).await;
    time.advance(5).await;
    submit(q, &RunRecord { priority: i32::MIN, ..record(&d, 1) }).await;

    let active = q.active_runs().await.unwrap();
    let ours: Vec<&String> = active.iter().filter(|r| [&a, &b, &c, &d].contains(r)).collect();
    assert_eq!(ours, [&c, &a, &b, &d], "active runs in claim order");
    let mut order = Vec::new();
    for _ in 0..5 {
        let lease = claim(q, "w1").await;
        order.push((lease.run_id.clone(), lease.shard));
        assert!(q.ack(&lease).await.unwrap());
    }
    let expected = [(c.clone(), 0), (a.clone(), 0), (a.clone(), 1), (b.clone(), 0), (d.clone(), 0)];
    assert_eq!(order, expected);
    claim_none(q, "all runs drained").await;

    let listed = q.list().await.unwrap();
    let ours: Vec<&String> = listed.iter().filter(|r| [&a, &b, &c, &d].contains(r)).collect();
    assert_eq!(ours, [&a, &b, &c, &d], "list is oldest first");
    finish(q, &[&a, &b, &c, &d]).await;
}

/// Cancel stops claims at once; heartbeats report it; leases in flight may still end (a
/// retryable failure then schedules no retry: nothing is claimed again).
pub async fn cancel_stops_claims(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "cancel");
    submit(q, &record(&run_id, 5)).await;
    let a = claim(q, "w1").await;
    let b = claim(q, "w1").await;
    let f = claim(q, "w1").await;
    q.cancel(&run_id).await.unwrap();
    claim_none(q, "the run is cancelled").await;
    assert_eq!(q.heartbeat(&a).await.unwrap(), LeaseStatus::Cancelled);
    let c = counts(q, &run_id).await;
    assert_eq!((c.state, c.pending, c.leased), (RunState::Cancelled, 2, 3));
    assert!(q.release(&a).await.unwrap(), "the holder may release");
    assert!(q.ack(&b).await.unwrap(), "finished work may still commit");
    assert_eq!(q.heartbeat(&b).await.unwrap(), LeaseStatus::Lost);
    assert!(matches!(q.fail(&f, "e", true).await.unwrap(), FailOutcome::Retry { .. }));
    q.cancel(&run_id).await.unwrap();
    let c = counts(q, &run_id).await;
    assert_eq!((c.state, c.pending, c.delayed, c.leased, c.committed), (RunState::Cancelled, 4, 0, 0, 1), "{c:?}");
    claim_none(q, "still cancelled").await;
    finish(q, &[&run_id]).await;
}

/// retry_dead revives dead jobs with a fresh budget; on a cancelled run it refuses and
/// the dead job stays dead.
pub async fn retry_dead_revives_jobs(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "retry-dead");
    submit(q, &record(&run_id, 3)).await;
    let l0 = claim(q, "w1").await;
    let l1 = claim(q, "w1").await;
    let l2 = claim(q, "w1").await;
    assert_eq!(q.fail(&l1, "e1", false).await.unwrap(), FailOutcome::Dead);
    assert_eq!(q.fail(&l0, "e0", false).await.unwrap(), FailOutcome::Dead);
    assert!(q.ack(&l2).await.unwrap());
    assert_eq!(q.dead(&run_id).await.unwrap().iter().map(|d| d.shard).collect::<Vec<_>>(), [0, 1]);

    assert_eq!(q.retry_dead(&run_id).await.unwrap(), 2);
    assert_eq!(q.dead(&run_id).await.unwrap(), []);
    let c = counts(q, &run_id).await;
    assert_eq!((c.state, c.pending, c.dead, c.committed), (RunState::Active, 2, 0, 1));
    let r0 = claim(q, "w1").await;
    let r1 = claim(q, "w1").await;
    assert_eq!((r0.shard, r0.token, r0.failures), (0, 2, 0));
    assert_eq!((r1.shard, r1.token, r1.failures), (1, 2, 0));
    assert!(q.ack(&r0).await.unwrap() && q.ack(&r1).await.unwrap());
    assert_eq!(q.retry_dead(&run_id).await.unwrap(), 0);
    assert_eq!(counts(q, &run_id).await.committed, 3);

    let cancelled = id(prefix, "retry-dead-cancelled");
    submit(q, &record(&cancelled, 1)).await;
    let lease = claim(q, "w1").await;
    assert_eq!(q.fail(&lease, "e", false).await.unwrap(), FailOutcome::Dead);
    q.cancel(&cancelled).await.unwrap();
    assert_run_error(q.retry_dead(&cancelled).await, &cancelled, "is cancelled");
    let c = counts(q, &cancelled).await;
    assert_eq!((c.state, c.pending, c.dead), (RunState::Cancelled, 0, 1), "the dead job stays dead, nothing is queued on a cancelled run");
    claim_none(q, "a cancelled run stays cancelled after retry_dead").await;
    finish(q, &[&run_id, &cancelled]).await;
}

/// A finalized run is never claimed from but is still listed and counted.
pub async fn finalize_leaves_active_set(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "finalize");
    submit(q, &record(&run_id, 2)).await;
    q.mark_finalized(&run_id).await.unwrap();
    claim_none(q, "the run is finalized").await;
    assert!(!q.active_runs().await.unwrap().contains(&run_id));
    assert!(!q.relist(&run_id).await.unwrap(), "a finalized run is not listed again");
    claim_none(q, "the run is finalized, relist or not").await;
    let c = counts(q, &run_id).await;
    assert_eq!((c.state, c.pending), (RunState::Finalized, 2));
    q.cancel(&run_id).await.unwrap();
    assert_eq!(counts(q, &run_id).await.state, RunState::Finalized, "cancel does not undo finalize");
    assert!(q.list().await.unwrap().contains(&run_id));
}

/// Every call naming a run that was never submitted is an "unknown run" error.
pub async fn unknown_run_is_an_error(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "unknown");
    let lease = Lease { run_id: run_id.clone(), shard: 0, token: 1, failures: 0, owner: "w1".into(), deadline_ms: 0 };
    assert_eq!(q.run(&run_id).await.unwrap(), None);
    assert_run_error(q.counts(&run_id).await, &run_id, "unknown run");
    assert_run_error(q.dead(&run_id).await, &run_id, "unknown run");
    assert_run_error(q.cancel(&run_id).await, &run_id, "unknown run");
    assert_run_error(q.retry_dead(&run_id).await, &run_id, "unknown run");
    assert_run_error(q.mark_finalized(&run_id).await, &run_id, "unknown run");
    assert_run_error(q.heartbeat(&lease).await, &run_id, "unknown run");
    assert_run_error(q.ack(&lease).await, &run_id, "unknown run");
    assert_run_error(q.fail(&lease, "e", true).await, &run_id, "unknown run");
    assert_run_error(q.release(&lease).await, &run_id, "unknown run");
    assert_run_error(q.mark_committed(&run_id, 0).await, &run_id, "unknown run");
    assert_run_error(q.relist(&run_id).await, &run_id, "unknown run");
    assert_run_error(q.requeue_stranded(&run_id).await, &run_id, "unknown run");
    assert!(!q.list().await.unwrap().contains(&run_id));
}

/// A run rebuilt from storage (Redis lost it): the shards with commit records count as
/// committed and are never claimed; the others are claimable once each.
pub async fn restored_run_queues_only_uncommitted_shards(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "restored");
    let run = record(&run_id, 5);
    assert_eq!(q.submit_restored(&run, &[0, 2, 3]).await.unwrap(), Submitted::Created);
    let c = counts(q, &run_id).await;
    assert_eq!((c.total, c.committed, c.pending, c.leased, c.last_committed), (5, 3, 2, 0, false));
    let a = claim(q, "w1").await;
    let b = claim(q, "w1").await;
    assert_eq!((a.shard, b.shard), (1, 4));
    claim_none(q, "only shards without a commit record are queued").await;
    assert!(q.ack(&a).await.unwrap() && q.ack(&b).await.unwrap());
    let c = counts(q, &run_id).await;
    assert_eq!((c.committed, c.last_committed), (5, true));
    assert_eq!(q.submit_restored(&run, &[0]).await.unwrap(), Submitted::AlreadyExists);
    finish(q, &[&run_id]).await;

    // More committed shards than one script call takes (Redis marks them in chunks):
    // every one counts, and only the rest is claimed.
    let run_id = id(prefix, "restored-many");
    let run = record(&run_id, 12_000);
    let committed: Vec<u64> = (0..12_000).filter(|s| s % 4000 != 7).collect();
    assert_eq!(q.submit_restored(&run, &committed).await.unwrap(), Submitted::Created);
    let c = counts(q, &run_id).await;
    assert_eq!((c.total, c.committed, c.pending, c.last_committed), (12_000, 11_997, 3, true));
    let shards = [claim(q, "w1").await.shard, claim(q, "w1").await.shard, claim(q, "w1").await.shard];
    assert_eq!(shards, [7, 4007, 8007]);
    claim_none(q, "only the three shards without a commit record").await;
    // Restoring again once those three have records too: the run exists, and its counts
    // follow storage (the three leases become committed).
    assert_eq!(q.submit_restored(&run, &(0..12_000).collect::<Vec<u64>>()).await.unwrap(), Submitted::AlreadyExists);
    let c = counts(q, &run_id).await;
    assert_eq!((c.committed, c.pending, c.leased), (12_000, 0, 0));
    finish(q, &[&run_id]).await;
}

/// Storage's commit record wins over the queue: a dead shard, a pending one and a leased
/// one each become committed; the fenced lease can no longer ack, fail or heartbeat it
/// into another state.
pub async fn storage_commit_overrides_queue_state(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "mark-committed");
    submit(q, &record(&run_id, 3)).await;
    let l0 = claim(q, "w1").await;
    let l1 = claim(q, "w1").await;
    assert_eq!(q.fail(&l0, "e", false).await.unwrap(), FailOutcome::Dead);
    // A shard past the run's end is no shard: counting it could finish the run early.
    assert!(!q.mark_committed(&run_id, 3).await.unwrap(), "shard 3 of 3");
    assert_eq!(counts(q, &run_id).await.committed, 0);
    assert!(q.mark_committed(&run_id, 0).await.unwrap(), "dead → committed");
    assert!(q.mark_committed(&run_id, 1).await.unwrap(), "leased → committed");
    assert!(q.mark_committed(&run_id, 2).await.unwrap(), "pending → committed");
    assert!(!q.mark_committed(&run_id, 2).await.unwrap(), "already committed");
    let c = counts(q, &run_id).await;
    assert_eq!((c.committed, c.pending, c.leased, c.dead), (3, 0, 0, 0));
    assert_eq!(q.dead(&run_id).await.unwrap(), []);
    claim_none(q, "every shard is committed").await;
    assert_eq!(q.fail(&l1, "late", true).await.unwrap(), FailOutcome::Lost);
    assert_eq!(q.heartbeat(&l1).await.unwrap(), LeaseStatus::Lost);
    assert!(!q.release(&l1).await.unwrap());
    let c = counts(q, &run_id).await;
    assert_eq!((c.committed, c.pending, c.delayed, c.leased), (3, 0, 0, 0), "{c:?}");
    finish(q, &[&run_id]).await;
}

/// Jobs given back or retried are claimed before shards never claimed; the cursor then
/// goes on where it was.
pub async fn given_back_jobs_go_before_new_ones(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "given-back");
    // The retry must still wait two claims later, and the leases outlive the check.
    let k = time.scale();
    let run = RunRecord { lease_ms: 10_000 * k, backoff_ms: 200 * k, max_backoff_ms: 400 * k, ..record(&run_id, 5) };
    submit(q, &run).await;
    let l0 = claim(q, "w1").await;
    let l1 = claim(q, "w1").await;
    assert!(q.release(&l1).await.unwrap());
    assert!(matches!(q.fail(&l0, "e", true).await.unwrap(), FailOutcome::Retry { .. }));
    let again = claim(q, "w1").await;
    assert_eq!((again.shard, again.token), (1, 2), "the released shard first");
    assert_eq!(claim(q, "w1").await.shard, 2, "then the cursor, while the retry waits");
    time.advance(run.backoff_ms).await;
    let retried = claim(q, "w1").await;
    assert_eq!((retried.shard, retried.token, retried.failures), (0, 2, 1), "the due retry before the cursor");
    assert_eq!(claim(q, "w1").await.shard, 3);
    let c = counts(q, &run_id).await;
    assert_eq!((c.total, c.pending, c.leased, c.committed), (5, 1, 4, 0));
    finish(q, &[&run_id]).await;
}

/// `ack_and_claim` acks and hands out the run's next job; when another run is first in
/// line it serves that run instead, and nothing is lost on the way.
pub async fn ack_and_claim_goes_on_and_keeps_priorities(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "ack-claim");
    submit(q, &record(&run_id, 4)).await;
    let l0 = claim(q, "w1").await;
    let (acked, next) = q.ack_and_claim(&l0, "w1").await.unwrap();
    let l1 = next.expect("the run's next job");
    assert!(acked);
    assert_eq!((l1.run_id.as_str(), l1.shard, l1.token, l1.owner.as_str()), (run_id.as_str(), 1, 1, "w1"));

    let urgent = id(prefix, "ack-claim-urgent");
    submit(q, &RunRecord { priority: 9, ..record(&urgent, 1) }).await;
    let (acked, next) = q.ack_and_claim(&l1, "w1").await.unwrap();
    let u0 = next.expect("the urgent run's job");
    assert!(acked);
    assert_eq!((u0.run_id.as_str(), u0.shard), (urgent.as_str(), 0), "a higher priority run goes first");
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.leased, c.committed), (2, 0, 2), "nothing of the first run is held: {c:?}");

    let (acked, next) = q.ack_and_claim(&u0, "w1").await.unwrap();
    let l2 = next.expect("back to the first run");
    assert!(acked);
    assert_eq!((l2.run_id.as_str(), l2.shard), (run_id.as_str(), 2));

    // A run of higher priority with nothing claimable (its one job leased elsewhere): the
    // worker stays on its run, keeping the job it claimed (first token, never given back).
    let busy = id(prefix, "ack-claim-busy");
    submit(q, &RunRecord { priority: 9, ..record(&busy, 1) }).await;
    let b0 = claim(q, "w2").await;
    assert_eq!(b0.run_id, busy);
    let (acked, next) = q.ack_and_claim(&l2, "w1").await.unwrap();
    let l3 = next.expect("the first run's last job");
    assert!(acked);
    assert_eq!((l3.run_id.as_str(), l3.shard, l3.token), (run_id.as_str(), 3, 1), "claimed once, not given back and claimed again");
    assert_eq!(counts(q, &run_id).await.leased, 1);
    let (acked, next) = q.ack_and_claim(&l3, "w1").await.unwrap();
    assert!(acked && next.is_none(), "nothing left: {next:?}");
    assert!(q.ack(&b0).await.unwrap());
    let forged = Lease { token: 7, ..l3.clone() };
    let stale = Lease { run_id: run_id.clone(), shard: 9, token: 1, ..l3.clone() };
    assert!(!q.ack_and_claim(&stale, "w1").await.unwrap().0, "a shard never leased is not acked");
    assert!(q.ack_and_claim(&forged, "w1").await.unwrap().0, "a committed shard answers true");
    assert_eq!(counts(q, &run_id).await.committed, 4);
    finish(q, &[&run_id, &urgent, &busy]).await;
}

/// Cancel and finalize drop what only claims need; the counts stay exact.
pub async fn finished_runs_keep_their_counts(q: &dyn JobQueue, _time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "finished");
    submit(q, &record(&run_id, 6)).await;
    let l0 = claim(q, "w1").await;
    let l1 = claim(q, "w1").await;
    let l2 = claim(q, "w1").await;
    assert!(q.ack(&l0).await.unwrap());
    assert_eq!(q.fail(&l1, "e", false).await.unwrap(), FailOutcome::Dead);
    assert_eq!(q.cancel(&run_id).await.unwrap(), RunState::Cancelled);
    let c = counts(q, &run_id).await;
    assert_eq!((c.state, c.pending, c.leased, c.committed, c.dead), (RunState::Cancelled, 3, 1, 1, 1));
    assert!(q.mark_committed(&run_id, 2).await.unwrap(), "a leased shard of a cancelled run");
    assert!(!q.mark_committed(&run_id, 2).await.unwrap());
    assert!(q.mark_committed(&run_id, 1).await.unwrap(), "a dead shard of a cancelled run");
    assert!(!q.ack(&l2).await.unwrap(), "the lease ended with the commit");
    let c = counts(q, &run_id).await;
    assert_eq!((c.pending, c.leased, c.committed, c.dead, c.last_committed), (3, 0, 3, 0, false));
    q.mark_finalized(&run_id).await.unwrap();
    let c = counts(q, &run_id).await;
    assert_eq!((c.state, c.total, c.committed, c.pending), (RunState::Finalized, 6, 3, 3));
    assert_eq!(q.cancel(&run_id).await.unwrap(), RunState::Finalized, "a finalized run stays finalized, and says so");
}

/// A run the queue kept whole has no stranded shard, whatever states its shards are in
/// (pending, leased, ready after a release, retrying, committed, dead, finalized):
/// nothing is queued twice. `missing` counts the shards neither committed nor dead.
pub async fn a_whole_run_has_no_stranded_shards(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "stranded");
    submit(q, &RunRecord { lease_ms: 60_000, ..record(&run_id, 4) }).await;
    let none = |missing| Stranded { found: 0, queued: 0, missing, recounted: false };
    assert_eq!(q.requeue_stranded(&run_id).await.unwrap(), none(4), "nothing claimed yet");
    let (a, b, c, d) = (claim(q, "w1").await, claim(q, "w1").await, claim(q, "w1").await, claim(q, "w1").await);
    assert_eq!(q.requeue_stranded(&run_id).await.unwrap(), none(4), "all leased");
    assert!(q.ack(&a).await.unwrap());
    assert_eq!(q.fail(&c, "bad input", false).await.unwrap(), FailOutcome::Dead);
    assert!(q.ack(&d).await.unwrap());
    assert_eq!(q.requeue_stranded(&run_id).await.unwrap(), none(1), "one leased");
    // Only in the ready list.
    assert!(q.release(&b).await.unwrap());
    assert_eq!(q.requeue_stranded(&run_id).await.unwrap(), none(1), "one ready");
    let b = claim(q, "w1").await;
    claim_none(q, "the given-back shard is claimed once").await;
    // Only retrying.
    let FailOutcome::Retry { .. } = q.fail(&b, "flaky", true).await.unwrap() else { panic!("a retry") };
    assert_eq!(q.requeue_stranded(&run_id).await.unwrap(), none(1), "one retrying");
    time.advance(1_000).await;
    let b = claim(q, "w1").await;
    claim_none(q, "the retried shard is claimed once").await;
    assert!(q.ack(&b).await.unwrap());
    assert_eq!(q.requeue_stranded(&run_id).await.unwrap(), none(0), "committed or dead");
    claim_none(q, "nothing was queued again").await;
    let c = counts(q, &run_id).await;
    assert_eq!((c.committed, c.dead, c.pending), (3, 1, 0));
    q.mark_finalized(&run_id).await.unwrap();
    assert_eq!(q.requeue_stranded(&run_id).await.unwrap(), none(0), "a finalized run");
    finish(q, &[&run_id]).await;
}

/// `overdue` counts, by the queue's clock, leases past their deadline and retries past
/// their backoff, which `counts` still shows as leased and retrying until a claim moves them.
pub async fn overdue_counts_expired_leases_and_due_retries(q: &dyn JobQueue, time: &dyn TimeControl, prefix: &str) {
    let run_id = id(prefix, "overdue");
    let k = time.scale();
    let run = RunRecord { max_attempts: 5, lease_ms: 2_000 * k, backoff_ms: 200 * k, max_backoff_ms: 200 * k, ..record(&run_id, 3) };
    assert_eq!(q.overdue(&run_id).await.unwrap(), Overdue::default(), "an unknown run");
    submit(q, &run).await;
    let (a, _b) = (claim(q, "w1").await, claim(q, "w1").await);
    assert!(matches!(q.fail(&a, "e1", true).await.unwrap(), FailOutcome::Retry { .. }));
    assert_eq!(q.overdue(&run_id).await.unwrap(), Overdue::default(), "a fresh lease and a retry in its backoff");
    time.advance(200 * k).await;
    assert_eq!(q.overdue(&run_id).await.unwrap(), Overdue { expired_leases: 0, due_retries: 1 }, "the backoff is over");
    time.advance(2_000 * k).await;
    assert_eq!(q.overdue(&run_id).await.unwrap(), Overdue { expired_leases: 1, due_retries: 1 }, "the lease expired too");
    let c = counts(q, &run_id).await;
    assert_eq!((c.leased, c.delayed), (1, 1), "counts still show both until a claim moves them");
    claim(q, "w2").await;
    assert_eq!(q.overdue(&run_id).await.unwrap(), Overdue::default(), "the claim reclaimed the lease and took the retry");
    finish(q, &[&run_id]).await;
}
