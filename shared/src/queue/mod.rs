//! The job queue: one job per shard of a run, leased to workers.
//!
//! [`JobQueue`] is the small trait every implementation provides; [`MemoryQueue`] (the
//! embedded mode) and [`RedisQueue`] implement it, and [`conformance`] checks both with
//! the same suite.
//!
//! States of a job: `pending → leased(token, owner, deadline) → committed`, or back to
//! pending (after a backoff) when an attempt fails or its lease expires, or `dead` after
//! `max_attempts` failed attempts, keeping the last error. A shard never claimed has no
//! state of its own: it lies behind the run's cursor, so submitting costs the same at
//! any shard count, and jobs given back, retried or revived are claimed before the cursor
//! moves on. A lease is fenced by its `token` (new for every claim of the shard) and its
//! `owner` (unique per worker slot; tokens count from 1 again when a lost run is rebuilt):
//! once a lease has been reclaimed, its holder can no longer heartbeat, ack, fail or
//! release the job.

mod keys;
mod memory;
mod redis;
mod scripts;
mod types;

pub mod conformance;

pub use self::memory::{Clock, ManualClock, MemoryQueue, SystemClock};
pub use self::redis::RedisQueue;
pub use self::types::*;

use async_trait::async_trait;

use crate::error::Result;

/// What every queue implementation provides. All state changes are atomic.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Registers a run and enqueues one job per shard. Idempotent: the same run id with
    /// the same spec digest returns [`Submitted::AlreadyExists`]; a different digest under
    /// an existing id is an [`crate::Error::Run`] error.
    async fn submit(&self, run: &RunRecord) -> Result<Submitted> {
        self.submit_restored(run, &[]).await
    }

    /// [`JobQueue::submit`] for a run rebuilt from its output store (Redis lost it): the
    /// shards in `committed` have commit records; they are marked committed, not queued.
    /// A run the queue already has (same spec) gets them marked too (storage is the
    /// truth; marking is idempotent), so a rebuild cut short is finished by running it
    /// again.
    async fn submit_restored(&self, run: &RunRecord, committed: &[u64]) -> Result<Submitted>;

    /// Storage holds `shard`'s commit record: the shard becomes committed whatever state
    /// the queue had it in (dead after a late commit, pending, leased). `false` if it
    /// already was. The queue follows storage, which is the truth.
    async fn mark_committed(&self, run_id: &str, shard: u64) -> Result<bool>;

    /// The record of a run, `None` if unknown.
    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>>;

    /// Every known run id, oldest first.
    async fn list(&self) -> Result<Vec<String>>;

    /// The runs that may be claimed from (active), in claim order.
    async fn active_runs(&self) -> Result<Vec<String>>;

    /// Leases the next ready job of any active run (oldest run first). Reclaims expired
    /// leases and releases due retries first. `None` when nothing is ready now.
    async fn claim(&self, owner: &str) -> Result<Option<Lease>>;

    /// Extends the lease to now + the run's lease duration. [`LeaseStatus::Lost`] when the
    /// lease was reclaimed; [`LeaseStatus::Cancelled`] when the run was cancelled (the
    /// lease still holds, so the holder may release it).
    async fn heartbeat(&self, lease: &Lease) -> Result<LeaseStatus>;

    /// Marks the job committed. `false` if the lease was no longer held (the job was
    /// reclaimed); the job's state is then left unchanged. Once a shard is committed, any
    /// ack of it answers `true` (on an active run: a cancelled or finalized one keeps no
    /// record of which shards are committed).
    async fn ack(&self, lease: &Lease) -> Result<bool>;

    /// [`JobQueue::ack`], then a claim: what a worker does between two shards. The Redis
    /// queue does both in one round trip when the run has a next job and no run of higher
    /// priority waits (between runs of equal priority the worker stays on its run);
    /// otherwise it claims as [`JobQueue::claim`] does. Returns the ack's answer and the
    /// next lease.
    async fn ack_and_claim(&self, lease: &Lease, owner: &str) -> Result<(bool, Option<Lease>)> {
        let acked = self.ack(lease).await?;
        Ok((acked, self.claim(owner).await?))
    }

    /// Records a failed attempt: the job goes back to pending after a backoff, or dead
    /// when `retryable` is false or `max_attempts` attempts have failed.
    async fn fail(&self, lease: &Lease, error: &str, retryable: bool) -> Result<FailOutcome>;

    /// Gives the job back without spending an attempt (graceful shutdown). `false` if the
    /// lease was no longer held.
    async fn release(&self, lease: &Lease) -> Result<bool>;

    /// Gives back, without spending an attempt, every lease `owner` holds (in any run not
    /// finalized; an active run's jobs go to the front of the line, as with
    /// [`JobQueue::release`]); returns how many. A worker slot calls it after a claim whose
    /// answer it never got (the connection dropped after the queue ran the claim), or a
    /// job it could not ack or give back: such a lease would otherwise sit until it
    /// expires and then count as a failed attempt. Atomic per run. Owners must be unique
    /// per worker slot, or this takes another slot's job (that slot finds its lease lost
    /// at its next heartbeat and stops the job).
    async fn release_owned(&self, owner: &str) -> Result<u64>;

    /// Stops new claims of the run at once; leases in flight see it at their next heartbeat.
    /// Returns the run's state after: cancelled, or finalized (a finalized run stays so).
    async fn cancel(&self, run_id: &str) -> Result<RunState>;

    /// Moves every dead job of an active run back to pending with a fresh attempt budget.
    /// Returns how many jobs were revived. A cancelled or finalized run is an error naming
    /// its state: nothing is served from it, so its dead jobs stay dead.
    async fn retry_dead(&self, run_id: &str) -> Result<u64>;

    /// Job counts of a run.
    async fn counts(&self, run_id: &str) -> Result<Counts>;

    /// Dead jobs of a run with their last error, by shard.
    async fn dead(&self, run_id: &str) -> Result<Vec<DeadJob>>;

    /// Records that the run's manifest has been written; the run leaves the active set.
    async fn mark_finalized(&self, run_id: &str) -> Result<()>;

    /// Lists an active run again where workers look for runs, if that index lost it while
    /// the run itself survived (a Redis failover that dropped the last writes of one key);
    /// `true` if it was missing; `false` for a listed run and a run that is not active.
    /// Idempotent. The memory queue keeps no index apart from its runs, so it only checks
    /// that the run exists.
    async fn relist(&self, run_id: &str) -> Result<bool>;

    /// Queues again the shards of an active run that are in no state at all (claimed,
    /// not committed, ready, retrying, leased or dead): only a run key lost on its own
    /// (evicted, edited) strands one, and the run would never finish. Looks only when the run
    /// is stuck (every shard claimed once, nothing ready, retrying or leased, yet not all
    /// committed or dead), so a healthy run answers at O(1) cost; then it costs a walk of
    /// the committed bitmap. Finding more shards than the counters miss means the bitmap
    /// lost bits (those shards may be committed): nothing is queued. The memory queue
    /// loses nothing, so it only checks that the run exists.
    async fn requeue_stranded(&self, run_id: &str) -> Result<Stranded>;

    /// Counts the run's leases past their deadline and retries past their backoff, by the
    /// queue's clock (O(log n)). An unknown run counts nothing.
    async fn overdue(&self, run_id: &str) -> Result<Overdue>;
}

/// The Redis key of a run's record (`labelgen:{RUN}:meta`), for messages that tell an
/// operator what to inspect or delete.
pub fn redis_meta_key(run_id: &str) -> String {
    keys::RunKeys::new(run_id).meta()
}

/// The error for a run the queue does not know.
pub(crate) fn unknown(run_id: &str) -> crate::Error {
    crate::Error::Run { run: run_id.to_string(), message: "unknown run".to_string() }
}

/// The error for a change that needs an active run (reviving dead jobs) on one that is
/// not served any more.
pub(crate) fn not_served(run_id: &str, state: RunState) -> crate::Error {
    crate::Error::Run {
        run: run_id.to_string(),
        message: format!("is {}: nothing is served from it, so its dead shards stay dead (submit the spec again under a new run id to generate them)", state.as_str()),
    }
}
