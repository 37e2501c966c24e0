//! Records and outcomes shared by every queue implementation.

use serde::{Deserialize, Serialize};

/// A run as the queue knows it: enough to derive every job from (run id + shard number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// sha256 of the canonical run spec; submit compares it.
    pub spec_digest: String,
    /// The run spec as canonical JSON (workers parse it once per run).
    pub spec_json: String,
    /// Number of jobs (shards).
    pub shards: u64,
    /// Failed attempts after which a job is dead.
    pub max_attempts: u32,
    /// Lease duration in milliseconds; heartbeats extend it.
    pub lease_ms: u64,
    /// Backoff before the first retry, doubled each further failure.
    pub backoff_ms: u64,
    /// Cap on the backoff.
    pub max_backoff_ms: u64,
    /// Priority: higher is served first; runs of equal priority oldest first.
    pub priority: i32,
    /// Creation time, milliseconds since the Unix epoch (queue clock), set by submit.
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Created,
    AlreadyExists,
}

/// A held job. `token` fences every later call: it is new for each claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub run_id: String,
    pub shard: u64,
    /// Counts the claims of this shard (1, 2, 3, …). With the owner it fences the lease;
    /// alone it is not unique (a run rebuilt after Redis lost it counts from 1 again), so
    /// an attempt's data lives under a random attempt id, not under it.
    pub token: u64,
    /// Failed attempts so far (0 on the first try).
    pub failures: u32,
    pub owner: String,
    /// Lease deadline, milliseconds since the epoch on the queue's clock.
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    Held,
    Lost,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to pending; claimable again at `at_ms`.
    Retry {
        at_ms: u64,
    },
    Dead,
    /// The lease was no longer held; nothing changed.
    Lost,
}

/// What [`crate::queue::JobQueue::requeue_stranded`] found: shards in no state (found;
/// more than `missing` when the committed bitmap lost bits, then none queued), how many
/// of them were queued again, how many shards the counters said were neither committed
/// nor dead, and whether the committed counter was set from the bitmap (it had lost
/// increments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stranded {
    pub found: u64,
    pub queued: u64,
    pub missing: u64,
    pub recounted: bool,
}

/// What of a run's in-flight work is overdue now ([`crate::queue::JobQueue::overdue`]):
/// leases past their deadline (their worker died or stalled; the next claim reclaims
/// them) and retries whose backoff is over (claimable). `Counts` counts both as leased and
/// delayed until some claim moves them, so a run no worker serves looks busy without these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overdue {
    pub expired_leases: u64,
    pub due_retries: u64,
}

/// Job counts of a run. `pending` includes jobs waiting out a retry backoff (`delayed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub pending: u64,
    pub delayed: u64,
    pub leased: u64,
    pub committed: u64,
    pub dead: u64,
    pub state: RunState,
    /// Whether the last shard (the one that may be short) is committed: with it, the
    /// committed sample count is exact.
    #[serde(skip)]
    pub last_committed: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    #[default]
    Active,
    Cancelled,
    Finalized,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Active => "active",
            RunState::Cancelled => "cancelled",
            RunState::Finalized => "finalized",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        match s {
            "active" => Some(RunState::Active),
            "cancelled" => Some(RunState::Cancelled),
            "finalized" => Some(RunState::Finalized),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadJob {
    pub shard: u64,
    pub failures: u32,
    pub error: String,
}

/// Backoff before the claim that follows failure number `failures` (1-based).
pub fn backoff_ms(run: &RunRecord, failures: u32) -> u64 {
    let shift = failures.saturating_sub(1).min(30);
    run.backoff_ms.saturating_mul(1u64 << shift).min(run.max_backoff_ms)
}
