//! [`MemoryQueue`]: the job queue in one process (embedded mode), on a [`Clock`] that
//! tests can drive ([`ManualClock`]).
//!
//! Same semantics and layout as the Redis queue (checked by the same conformance suite):
//! shards never claimed lie behind a cursor and cost nothing, a committed bitmap while the
//! run is active, a committed counter; and what counts report: `leased` counts a lease until a claim reclaims it (an expired lease
//! still counts), `delayed` counts a retry until a claim moves it to ready.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::types::*;
use super::{unknown, JobQueue};
use crate::error::{Error, Result};

/// The queue's notion of now, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock { now: AtomicU64::new(start_ms) }
    }

    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// The job queue in memory. Every method takes one lock, so every state change is atomic.
pub struct MemoryQueue {
    clock: Arc<dyn Clock>,
    runs: Mutex<HashMap<String, Run>>,
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryQueue").field("runs", &self.lock().len()).finish_non_exhaustive()
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue::new()
    }
}

/// One run: the same structures as the Redis layout (`lua/lib.lua`).
struct Run {
    record: RunRecord,
    state: RunState,
    /// Shards at or past the cursor were never claimed.
    cursor: u64,
    /// Shards given back, retried or revived: claimed before the cursor moves on.
    ready: VecDeque<u64>,
    /// (claimable again at, shard)
    delayed: BTreeSet<(u64, u64)>,
    /// shard → (deadline, owner)
    leased: HashMap<u64, (u64, String)>,
    /// shard → claims so far (token of the latest lease); uncommitted shards only
    claims: HashMap<u64, u64>,
    /// shard → failed attempts so far (not dead, not committed)
    failures: HashMap<u64, u32>,
    /// Committed shards while the run is active.
    committed: Bits,
    committed_count: u64,
    last_committed: bool,
    /// shard → (failures, last error)
    dead: BTreeMap<u64, (u32, String)>,
}

/// A growable bitmap (Redis's SETBIT/GETBIT/BITPOS on a string).
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn get(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    fn set(&mut self, i: u64) {
        let w = (i / 64) as usize;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }

    /// The first clear bit at or past `from`.
    fn first_clear(&self, from: u64) -> u64 {
        let mut i = from;
        while (i / 64) < self.0.len() as u64 {
            let w = self.0[(i / 64) as usize] >> (i % 64);
            if w != u64::MAX >> (i % 64) {
                return i + u64::from((!w).trailing_zeros());
            }
            i = (i / 64 + 1) * 64;
        }
        i
    }
}

impl Run {
    /// Gives a leased shard back without spending an attempt (`release_one` in
    /// `lua/lib.lua`): to the front of the ready list while the run is active.
    fn release_one(&mut self, shard: u64) {
        self.leased.remove(&shard);
        // A cancelled run is never claimed again: its ready list is not kept.
        if self.state == RunState::Active {
            self.ready.push_front(shard);
        }
    }

    /// Whether `lease` is the current lease of its shard: same token and same owner (a
    /// token alone repeats once the queue lost its data and counts claims from 1 again).
    fn holds(&self, lease: &Lease) -> bool {
        self.leased.get(&lease.shard).is_some_and(|(_, owner)| *owner == lease.owner) && self.claims.get(&lease.shard) == Some(&lease.token)
    }

    /// Storage holds `shard`'s commit record: it becomes committed and leaves every other
    /// state (as `mark_committed.lua`). Whether anything changed.
    fn mark_committed(&mut self, shard: u64) -> bool {
        if shard >= self.record.shards {
            return false;
        }
        if self.state == RunState::Active {
            if self.committed.get(shard) {
                return false;
            }
            self.ready.retain(|&s| s != shard);
            self.delayed.retain(|&(_, s)| s != shard);
        } else if !self.leased.contains_key(&shard) && !self.dead.contains_key(&shard) {
            // A finished run keeps no bitmap: only leased and dead shards are known.
            return false;
        }
        self.leased.remove(&shard);
        self.dead.remove(&shard);
        self.count_committed(shard);
        true
    }

    /// Counts `shard` committed; the caller knows it was not.
    fn count_committed(&mut self, shard: u64) {
        self.committed_count += 1;
        self.last_committed |= shard + 1 == self.record.shards;
        if self.state == RunState::Active {
            self.committed.set(shard);
        }
        self.claims.remove(&shard);
        self.failures.remove(&shard);
    }

    /// One failed attempt of a shard that is no longer leased: delayed or dead.
    fn failed(&mut self, shard: u64, error: &str, retryable: bool, now: u64) -> FailOutcome {
        let failures = {
            let f = self.failures.entry(shard).or_insert(0);
            *f += 1;
            *f
        };
        if !retryable || failures >= self.record.max_attempts {
            self.failures.remove(&shard);
            self.dead.insert(shard, (failures, error.to_string()));
            FailOutcome::Dead
        } else {
            let at_ms = now + backoff_ms(&self.record, failures);
            // A cancelled run is never claimed again: its retry schedule is not kept.
            if self.state == RunState::Active {
                self.delayed.insert((at_ms, shard));
            }
            FailOutcome::Retry { at_ms }
        }
    }

    /// Reclaims expired leases and moves due retries to ready (what claim.lua does first).
    fn tidy(&mut self, now: u64) {
        let mut expired: Vec<(u64, u64)> = self.leased.iter().filter(|(_, (d, _))| *d <= now).map(|(s, (d, _))| (*d, *s)).collect();
        expired.sort_unstable();
        for (_, shard) in expired {
            let (_, owner) = self.leased.remove(&shard).expect("expired lease is leased");
            self.failed(shard, &format!("lease expired (owner {owner})"), true, now);
        }
        while let Some(&(at, shard)) = self.delayed.first() {
            if at > now {
                break;
            }
            self.delayed.pop_first();
            self.ready.push_back(shard);
        }
    }

    /// The next shard to lease: the head of ready, else the cursor's (past committed ones).
    fn next_shard(&mut self) -> Option<u64> {
        if let Some(shard) = self.ready.pop_front() {
            return Some(shard);
        }
        let next = self.committed.first_clear(self.cursor);
        self.cursor = (next + 1).min(self.record.shards);
        (next < self.record.shards).then_some(next)
    }
}

impl MemoryQueue {
    /// A queue on the system clock.
    pub fn new() -> MemoryQueue {
        MemoryQueue::with_clock(Arc::new(SystemClock))
    }

    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryQueue {
        MemoryQueue { clock, runs: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the run, or fails with "unknown run".
    fn with_run<T>(&self, run_id: &str, f: impl FnOnce(&mut Run, u64) -> T) -> Result<T> {
        let now = self.clock.now_ms();
        let mut runs = self.lock();
        let run = runs.get_mut(run_id).ok_or_else(|| unknown(run_id))?;
        Ok(f(run, now))
    }
}

/// Active runs, highest priority first, then oldest, then by id.
fn active_in_order(runs: &HashMap<String, Run>) -> Vec<String> {
    // Reverse, not negation: -i32::MIN overflows.
    let mut active: Vec<(std::cmp::Reverse<i32>, u64, &String)> =
        runs.values().filter(|r| r.state == RunState::Active).map(|r| (std::cmp::Reverse(r.record.priority), r.record.created_ms, &r.record.run_id)).collect();
    active.sort();
    active.into_iter().map(|(_, _, id)| id.clone()).collect()
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn submit_restored(&self, run: &RunRecord, committed: &[u64]) -> Result<Submitted> {
        if run.shards == 0 {
            return Err(Error::Run { run: run.run_id.clone(), message: "a run needs at least one shard".into() });
        }
        let now = self.clock.now_ms();
        let mut runs = self.lock();
        if let Some(existing) = runs.get_mut(&run.run_id) {
            if existing.record.spec_digest == run.spec_digest {
                for &shard in committed.iter().filter(|&&s| s < run.shards) {
                    existing.mark_committed(shard);
                }
                return Ok(Submitted::AlreadyExists);
            }
            return Err(Error::Run {
                run: run.run_id.clone(),
                message: format!("already submitted with a different spec (stored digest {}, this spec {})", existing.record.spec_digest, run.spec_digest),
            });
        }
        let record = RunRecord { created_ms: now, ..run.clone() };
        let mut new = Run {
            record,
            state: RunState::Active,
            cursor: 0,
            ready: VecDeque::new(),
            delayed: BTreeSet::new(),
            leased: HashMap::new(),
            claims: HashMap::new(),
            failures: HashMap::new(),
            committed: Bits::default(),
            committed_count: 0,
            last_committed: false,
            dead: BTreeMap::new(),
        };
        for &shard in committed.iter().filter(|&&s| s < run.shards) {
            if !new.committed.get(shard) {
                new.count_committed(shard);
            }
        }
        runs.insert(run.run_id.clone(), new);
        Ok(Submitted::Created)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        Ok(self.lock().get(run_id).map(|r| r.record.clone()))
    }

    async fn list(&self) -> Result<Vec<String>> {
        let runs = self.lock();
        let mut ids: Vec<(u64, &String)> = runs.values().map(|r| (r.record.created_ms, &r.record.run_id)).collect();
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id.clone()).collect())
    }

    async fn active_runs(&self) -> Result<Vec<String>> {
        Ok(active_in_order(&self.lock()))
    }

    async fn claim(&self, owner: &str) -> Result<Option<Lease>> {
        let now = self.clock.now_ms();
        let mut runs = self.lock();
        for run_id in active_in_order(&runs) {
            let run = runs.get_mut(&run_id).expect("listed run exists");
            run.tidy(now);
            let Some(shard) = run.next_shard() else { continue };
            let token = {
                let c = run.claims.entry(shard).or_insert(0);
                *c += 1;
                *c
            };
            let deadline_ms = now + run.record.lease_ms;
            run.leased.insert(shard, (deadline_ms, owner.to_string()));
            let failures = run.failures.get(&shard).copied().unwrap_or(0);
            return Ok(Some(Lease { run_id, shard, token, failures, owner: owner.to_string(), deadline_ms }));
        }
        Ok(None)
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<LeaseStatus> {
        self.with_run(&lease.run_id, |run, now| {
            if !run.holds(lease) {
                return LeaseStatus::Lost;
            }
            let lease_ms = run.record.lease_ms;
            if let Some((deadline, _)) = run.leased.get_mut(&lease.shard) {
                *deadline = now + lease_ms;
            }
            if run.state == RunState::Cancelled {
                LeaseStatus::Cancelled
            } else {
                LeaseStatus::Held
            }
        })
    }

    async fn ack(&self, lease: &Lease) -> Result<bool> {
        self.with_run(&lease.run_id, |run, _| {
            if run.holds(lease) {
                run.leased.remove(&lease.shard);
                run.count_committed(lease.shard);
                return true;
            }
            // Committed already (an ack repeated after its commit): idempotent.
            run.committed.get(lease.shard)
        })
    }

    async fn fail(&self, lease: &Lease, error: &str, retryable: bool) -> Result<FailOutcome> {
        self.with_run(&lease.run_id, |run, now| {
            if !run.holds(lease) {
                return FailOutcome::Lost;
            }
            run.leased.remove(&lease.shard);
            run.failed(lease.shard, error, retryable, now)
        })
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.with_run(&lease.run_id, |run, _| {
            if !run.holds(lease) {
                return false;
            }
            run.release_one(lease.shard);
            true
        })
    }

    async fn release_owned(&self, owner: &str) -> Result<u64> {
        let mut runs = self.lock();
        let mut n = 0;
        for run in runs.values_mut() {
            let mut mine: Vec<u64> = run.leased.iter().filter(|(_, (_, o))| o == owner).map(|(&s, _)| s).collect();
            // Highest pushed first, so the lowest is claimed first (as the Redis script).
            mine.sort_unstable_by(|a, b| b.cmp(a));
            for s in mine {
                run.release_one(s);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn cancel(&self, run_id: &str) -> Result<RunState> {
        self.with_run(run_id, |run, _| {
            if run.state == RunState::Active {
                run.state = RunState::Cancelled;
                run.ready = VecDeque::new();
                run.delayed = BTreeSet::new();
                run.committed = Bits::default();
            }
            run.state
        })
    }

    /// Revives the dead jobs of an active run; a cancelled or finalized run is refused.
    async fn retry_dead(&self, run_id: &str) -> Result<u64> {
        self.with_run(run_id, |run, _| {
            if run.state != RunState::Active {
                return Err(super::not_served(run_id, run.state));
            }
            let dead = std::mem::take(&mut run.dead);
            let revived = dead.len() as u64;
            run.ready.extend(dead.into_keys());
            Ok(revived)
        })?
    }

    async fn mark_committed(&self, run_id: &str, shard: u64) -> Result<bool> {
        self.with_run(run_id, |run, _| run.mark_committed(shard))
    }

    async fn counts(&self, run_id: &str) -> Result<Counts> {
        self.with_run(run_id, |run, _| {
            let (leased, dead) = (run.leased.len() as u64, run.dead.len() as u64);
            Counts {
                total: run.record.shards,
                pending: run.record.shards.saturating_sub(run.committed_count + leased + dead),
                delayed: run.delayed.len() as u64,
                leased,
                committed: run.committed_count,
                dead,
                state: run.state,
                last_committed: run.last_committed,
            }
        })
    }

    async fn dead(&self, run_id: &str) -> Result<Vec<DeadJob>> {
        self.with_run(run_id, |run, _| run.dead.iter().map(|(&shard, (failures, error))| DeadJob { shard, failures: *failures, error: error.clone() }).collect())
    }

    async fn mark_finalized(&self, run_id: &str) -> Result<()> {
        self.with_run(run_id, |run, _| {
            // A finished run keeps its record and counts only.
            run.state = RunState::Finalized;
            run.ready = VecDeque::new();
            run.delayed = BTreeSet::new();
            run.leased = HashMap::new();
            run.claims = HashMap::new();
            run.failures = HashMap::new();
            run.committed = Bits::default();
            run.dead = BTreeMap::new();
        })
    }

    async fn relist(&self, run_id: &str) -> Result<bool> {
        self.with_run(run_id, |_, _| false)
    }

    async fn overdue(&self, run_id: &str) -> Result<Overdue> {
        let now = self.clock.now_ms();
        Ok(self.lock().get(run_id).map_or_else(Overdue::default, |run| Overdue {
            expired_leases: run.leased.values().filter(|(deadline, _)| *deadline <= now).count() as u64,
            due_retries: run.delayed.iter().take_while(|(at, _)| *at <= now).count() as u64,
        }))
    }

    async fn requeue_stranded(&self, run_id: &str) -> Result<Stranded> {
        self.with_run(run_id, |run, _| match run.state {
            RunState::Active => Stranded { missing: run.record.shards.saturating_sub(run.committed_count + run.dead.len() as u64), ..Stranded::default() },
            _ => Stranded::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::conformance;

    #[tokio::test]
    async fn conformance_suite_on_manual_clock() {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let q = MemoryQueue::with_clock(clock.clone());
        conformance::run_all(&q, clock.as_ref(), "mem").await;
    }

    #[tokio::test]
    async fn system_clock_queue_claims() {
        let q = MemoryQueue::new();
        let mut run = conformance::record("sys", 2);
        run.created_ms = 0;
        q.submit(&run).await.unwrap();
        assert!(q.run("sys").await.unwrap().unwrap().created_ms > 1_600_000_000_000);
        let lease = q.claim("w").await.unwrap().unwrap();
        assert!(q.ack(&lease).await.unwrap());
    }
}
