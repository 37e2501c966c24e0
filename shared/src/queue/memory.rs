//! [`MemoryQueue`]: the job queue in one process (embedded mode), on a [`Clock`] that
//! tests can drive ([`ManualClock`]).
//!
//! Same semantics as the Redis queue (checked by the same conformance suite), including
//! what counts report: `leased` counts a lease until a claim reclaims it (an expired lease
//! still counts), `delayed` counts a retry until a claim moves it to ready.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::types::*;
use super::JobQueue;
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

/// One run: the same structures as the Redis layout.
struct Run {
    record: RunRecord,
    state: RunState,
    ready: VecDeque<u64>,
    /// (claimable again at, shard)
    delayed: BTreeSet<(u64, u64)>,
    /// shard → (deadline, owner)
    leased: HashMap<u64, (u64, String)>,
    /// shard → claims so far (token of the latest lease)
    claims: HashMap<u64, u64>,
    /// shard → failed attempts so far (not dead)
    failures: HashMap<u64, u32>,
    committed: HashSet<u64>,
    /// shard → (failures, last error)
    dead: BTreeMap<u64, (u32, String)>,
}

impl Run {
    /// Whether `(shard, token)` is the current lease.
    fn holds(&self, shard: u64, token: u64) -> bool {
        self.leased.contains_key(&shard) && self.claims.get(&shard) == Some(&token)
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
            self.delayed.insert((at_ms, shard));
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

fn unknown(run_id: &str) -> Error {
    Error::Run { run: run_id.to_string(), message: "unknown run".to_string() }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn submit_restored(&self, run: &RunRecord, committed: &[u64]) -> Result<Submitted> {
        if run.shards == 0 {
            return Err(Error::Run { run: run.run_id.clone(), message: "a run needs at least one shard".into() });
        }
        let now = self.clock.now_ms();
        let mut runs = self.lock();
        if let Some(existing) = runs.get(&run.run_id) {
            if existing.record.spec_digest == run.spec_digest {
                return Ok(Submitted::AlreadyExists);
            }
            return Err(Error::Run {
                run: run.run_id.clone(),
                message: format!("already submitted with a different spec (stored digest {}, this spec {})", existing.record.spec_digest, run.spec_digest),
            });
        }
        let record = RunRecord { created_ms: now, ..run.clone() };
        let committed: HashSet<u64> = committed.iter().copied().filter(|&s| s < run.shards).collect();
        runs.insert(
            run.run_id.clone(),
            Run {
                record,
                state: RunState::Active,
                ready: (0..run.shards).filter(|s| !committed.contains(s)).collect(),
                delayed: BTreeSet::new(),
                leased: HashMap::new(),
                claims: HashMap::new(),
                failures: HashMap::new(),
                committed,
                dead: BTreeMap::new(),
            },
        );
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

    async fn claim(&self, owner: &str) -> Result<Option<Lease>> {
        let now = self.clock.now_ms();
        let mut runs = self.lock();
        let mut active: Vec<(i32, u64, String)> =
            runs.values().filter(|r| r.state == RunState::Active).map(|r| (-r.record.priority, r.record.created_ms, r.record.run_id.clone())).collect();
        active.sort();
        for (_, _, run_id) in active {
            let run = runs.get_mut(&run_id).expect("listed run exists");
            run.tidy(now);
            let Some(shard) = run.ready.pop_front() else { continue };
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
            if !run.holds(lease.shard, lease.token) {
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
            if run.claims.get(&lease.shard) != Some(&lease.token) {
                return false;
            }
            if run.leased.remove(&lease.shard).is_some() {
                run.failures.remove(&lease.shard);
                run.committed.insert(lease.shard);
                return true;
            }
            // The same token acking again: idempotent.
            run.committed.contains(&lease.shard)
        })
    }

    async fn fail(&self, lease: &Lease, error: &str, retryable: bool) -> Result<FailOutcome> {
        self.with_run(&lease.run_id, |run, now| {
            if !run.holds(lease.shard, lease.token) {
                return FailOutcome::Lost;
            }
            run.leased.remove(&lease.shard);
            run.failed(lease.shard, error, retryable, now)
        })
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.with_run(&lease.run_id, |run, _| {
            if !run.holds(lease.shard, lease.token) {
                return false;
            }
            run.leased.remove(&lease.shard);
            run.ready.push_front(lease.shard);
            true
        })
    }

    async fn cancel(&self, run_id: &str) -> Result<()> {
        self.with_run(run_id, |run, _| {
            if run.state == RunState::Active {
                run.state = RunState::Cancelled;
            }
        })
    }

    /// Revives dead jobs; the run's state is left as it is (a cancelled run stays
    /// cancelled, a finalized one finalized).
    async fn retry_dead(&self, run_id: &str) -> Result<u64> {
        self.with_run(run_id, |run, _| {
            let dead = std::mem::take(&mut run.dead);
            let revived = dead.len() as u64;
            run.ready.extend(dead.into_keys());
            revived
        })
    }

    async fn mark_committed(&self, run_id: &str, shard: u64) -> Result<bool> {
        self.with_run(run_id, |run, _| {
            if run.committed.contains(&shard) {
                return false;
            }
            run.ready.retain(|&s| s != shard);
            run.delayed.retain(|&(_, s)| s != shard);
            run.leased.remove(&shard);
            run.failures.remove(&shard);
            run.dead.remove(&shard);
            run.committed.insert(shard);
            true
        })
    }

    async fn counts(&self, run_id: &str) -> Result<Counts> {
        self.with_run(run_id, |run, _| {
            let delayed = run.delayed.len() as u64;
            Counts {
                total: run.record.shards,
                pending: run.ready.len() as u64 + delayed,
                delayed,
                leased: run.leased.len() as u64,
                committed: run.committed.len() as u64,
                dead: run.dead.len() as u64,
                state: run.state,
                last_committed: run.committed.contains(&(run.record.shards.saturating_sub(1))),
            }
        })
    }

    async fn dead(&self, run_id: &str) -> Result<Vec<DeadJob>> {
        self.with_run(run_id, |run, _| run.dead.iter().map(|(&shard, (failures, error))| DeadJob { shard, failures: *failures, error: error.clone() }).collect())
    }

    async fn mark_finalized(&self, run_id: &str) -> Result<()> {
        self.with_run(run_id, |run, _| run.state = RunState::Finalized)
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
