//! The Lua scripts of the Redis queue, one per atomic state change (`lua/*.lua`, each
//! prefixed with `lua/lib.lua`, which names the keys and holds the claim, ack and commit
//! steps they share), each with a typed wrapper. Every script gets the same nine keys of
//! one run ([`run_keys`]). Scripts run by `EVALSHA`; the redis crate loads a script again
//! when the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::Script;

use super::keys::RunKeys;
use super::types::{FailOutcome, Lease, LeaseStatus, RunRecord, RunState, Stranded};
use crate::error::{Error, Result};

/// Expired leases and due retries handled per claim call, at most.
const CLAIM_BATCH: u32 = 1000;

pub(crate) struct Scripts {
    submit: Script,
    claim: Script,
    heartbeat: Script,
    ack: Script,
    ack_claim: Script,
    fail: Script,
    release: Script,
    release_owned: Script,
    cancel: Script,
    finalize: Script,
    retry_dead: Script,
    mark_committed: Script,
    requeue_stranded: Script,
}

pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
        submit: script(include_str!("lua/submit.lua")),
        claim: script(include_str!("lua/claim.lua")),
        heartbeat: script(include_str!("lua/heartbeat.lua")),
        ack: script(include_str!("lua/ack.lua")),
        ack_claim: script(include_str!("lua/ack_claim.lua")),
        fail: script(include_str!("lua/fail.lua")),
        release: script(include_str!("lua/release.lua")),
        release_owned: script(include_str!("lua/release_owned.lua")),
        cancel: script(include_str!("lua/cancel.lua")),
        finalize: script(include_str!("lua/finalize.lua")),
        retry_dead: script(include_str!("lua/retry_dead.lua")),
        mark_committed: script(include_str!("lua/mark_committed.lua")),
        requeue_stranded: script(include_str!("lua/requeue_stranded.lua")),
    });
    &SCRIPTS
}

/// A script: `lua/lib.lua` followed by its own body.
fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("lua/lib.lua")))
}

/// The invocation of `script` with the nine keys of the run, in `lib.lua`'s order.
fn run_keys<'a>(script: &'a Script, k: &RunKeys) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    inv.key(k.meta()).key(k.ready()).key(k.delayed()).key(k.leased()).key(k.owners()).key(k.claims()).key(k.failures()).key(k.dead()).key(k.committed());
    inv
}

/// What `submit.lua` found.
pub(crate) enum SubmitReply {
    Created { created_ms: u64 },
    Exists { created_ms: u64, state: RunState, priority: i32 },
    Conflict { stored_digest: String },
}

/// What `claim.lua` did.
pub(crate) enum ClaimReply {
    Unknown,
    Inactive,
    Empty,
    Leased { shard: u64, token: u64, failures: u32, deadline_ms: u64 },
}

/// Where a run sits in the active index.
pub(crate) struct StateReply {
    /// The run's state after the script.
    pub state: RunState,
    pub created_ms: u64,
}

pub(crate) struct RetryDeadReply {
    pub revived: u64,
    pub state: RunState,
    pub created_ms: u64,
    pub priority: i32,
}

/// What `ack_claim.lua` did: the ack's answer, the run's priority and the claim's answer.
pub(crate) struct AckClaimReply {
    pub acked: bool,
    pub priority: i32,
    pub claim: ClaimReply,
}

impl Scripts {
    pub(crate) async fn submit(&self, con: &mut ConnectionManager, k: &RunKeys, run: &RunRecord, committed: &[u64]) -> Result<SubmitReply> {
        let mut inv = run_keys(&self.submit, k);
        inv.arg(&run.spec_digest)
            .arg(&run.spec_json)
            .arg(run.shards)
            .arg(run.max_attempts)
            .arg(run.lease_ms)
            .arg(run.backoff_ms)
            .arg(run.max_backoff_ms)
            .arg(run.priority)
            .arg(committed);
        let r: Vec<String> = inv.invoke_async(con).await?;
        let created_ms = num(&r, 1, "submit")?;
        Ok(match field(&r, 0, "submit")? {
            "created" => SubmitReply::Created { created_ms },
            "exists" => SubmitReply::Exists { created_ms, state: state(&r, 2, "submit")?, priority: num(&r, 3, "submit")? },
            "conflict" => SubmitReply::Conflict { stored_digest: field(&r, 4, "submit")?.to_string() },
            other => return Err(bad_reply("submit", other)),
        })
    }

    pub(crate) async fn claim(&self, con: &mut ConnectionManager, k: &RunKeys, owner: &str) -> Result<ClaimReply> {
        let mut inv = run_keys(&self.claim, k);
        inv.arg(owner).arg(CLAIM_BATCH);
        let r: Vec<String> = inv.invoke_async(con).await?;
        claim_reply(&r, "claim")
    }

    /// `ack_claim.lua`, pipelined with a read of the head of `labelgen:active` (the score
    /// first in line, if any): one round trip. `None`: no such run.
    pub(crate) async fn ack_claim(&self, con: &mut ConnectionManager, k: &RunKeys, lease: &Lease, owner: &str) -> Result<Option<(AckClaimReply, Option<f64>)>> {
        let mut inv = run_keys(&self.ack_claim, k);
        inv.arg(lease.shard).arg(lease.token).arg(owner).arg(CLAIM_BATCH).arg(&lease.owner);
        let query = |con: &mut ConnectionManager| {
            let mut pipe = redis::pipe();
            pipe.invoke_script(&inv).zrange_withscores(super::keys::active(), 0, 0);
            let mut con = con.clone();
            async move { pipe.query_async::<(Vec<String>, Vec<(String, f64)>)>(&mut con).await }
        };
        // A pipeline does not load a script the server lacks (after a restart): load, retry.
        let (r, head) = match query(con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                inv.load_async(con).await?;
                query(con).await?
            }
            other => other?,
        };
        if field(&r, 0, "ack_claim")? == "unknown" {
            return Ok(None);
        }
        let acked = field(&r, 0, "ack_claim")? == "1";
        let priority = num(&r, 1, "ack_claim")?;
        Ok(Some((AckClaimReply { acked, priority, claim: claim_reply(&r[2..], "ack_claim")? }, head.into_iter().next().map(|(_, score)| score))))
    }

    /// `None`: no such run.
    pub(crate) async fn heartbeat(&self, con: &mut ConnectionManager, k: &RunKeys, lease: &Lease) -> Result<Option<LeaseStatus>> {
        let mut inv = run_keys(&self.heartbeat, k);
        inv.arg(lease.shard).arg(lease.token).arg(&lease.owner);
        let r: String = inv.invoke_async(con).await?;
        Ok(match r.as_str() {
            "unknown" => None,
            "lost" => Some(LeaseStatus::Lost),
            "cancelled" => Some(LeaseStatus::Cancelled),
            "held" => Some(LeaseStatus::Held),
            other => return Err(bad_reply("heartbeat", other)),
        })
    }

    /// `None`: no such run; `Some(false)`: lease not held.
    pub(crate) async fn ack(&self, con: &mut ConnectionManager, k: &RunKeys, lease: &Lease) -> Result<Option<bool>> {
        let mut inv = run_keys(&self.ack, k);
        inv.arg(lease.shard).arg(lease.token).arg(&lease.owner);
        Ok(tri(inv.invoke_async(con).await?))
    }

    /// `None`: no such run.
    pub(crate) async fn fail(&self, con: &mut ConnectionManager, k: &RunKeys, lease: &Lease, error: &str, retryable: bool) -> Result<Option<FailOutcome>> {
        let mut inv = run_keys(&self.fail, k);
        inv.arg(lease.shard).arg(lease.token).arg(error).arg(if retryable { "1" } else { "0" }).arg(&lease.owner);
        let r: Vec<String> = inv.invoke_async(con).await?;
        Ok(match field(&r, 0, "fail")? {
            "unknown" => None,
            "lost" => Some(FailOutcome::Lost),
            "dead" => Some(FailOutcome::Dead),
            "retry" => Some(FailOutcome::Retry { at_ms: num(&r, 1, "fail")? }),
            other => return Err(bad_reply("fail", other)),
        })
    }

    /// `None`: no such run; `Some(false)`: lease not held.
    pub(crate) async fn release(&self, con: &mut ConnectionManager, k: &RunKeys, lease: &Lease) -> Result<Option<bool>> {
        let mut inv = run_keys(&self.release, k);
        inv.arg(lease.shard).arg(lease.token).arg(&lease.owner);
        Ok(tri(inv.invoke_async(con).await?))
    }

    /// `None`: no such run; else how many of `owner`'s leases were given back.
    pub(crate) async fn release_owned(&self, con: &mut ConnectionManager, k: &RunKeys, owner: &str) -> Result<Option<u64>> {
        let mut inv = run_keys(&self.release_owned, k);
        inv.arg(owner);
        let r: i64 = inv.invoke_async(con).await?;
        Ok(u64::try_from(r).ok())
    }

    /// `None`: no such run.
    pub(crate) async fn cancel(&self, con: &mut ConnectionManager, k: &RunKeys) -> Result<Option<StateReply>> {
        let r: Vec<String> = run_keys(&self.cancel, k).invoke_async(con).await?;
        state_reply(&r, "cancel")
    }

    /// `None`: no such run.
    pub(crate) async fn finalize(&self, con: &mut ConnectionManager, k: &RunKeys) -> Result<Option<StateReply>> {
        let r: Vec<String> = run_keys(&self.finalize, k).invoke_async(con).await?;
        state_reply(&r, "finalize")
    }

    /// `None`: no such run.
    pub(crate) async fn retry_dead(&self, con: &mut ConnectionManager, k: &RunKeys) -> Result<Option<RetryDeadReply>> {
        let r: Vec<String> = run_keys(&self.retry_dead, k).invoke_async(con).await?;
        if field(&r, 0, "retry_dead")? == "unknown" {
            return Ok(None);
        }
        Ok(Some(RetryDeadReply {
            revived: num(&r, 0, "retry_dead")?,
            state: state(&r, 1, "retry_dead")?,
            created_ms: num(&r, 2, "retry_dead")?,
            priority: num(&r, 3, "retry_dead")?,
        }))
    }

    /// How many of `shards` became committed; `None`: no such run.
    pub(crate) async fn mark_committed(&self, con: &mut ConnectionManager, k: &RunKeys, shards: &[u64]) -> Result<Option<u64>> {
        let mut inv = run_keys(&self.mark_committed, k);
        inv.arg(shards);
        let n: i64 = inv.invoke_async(con).await?;
        Ok(u64::try_from(n).ok())
    }

    /// `None`: no such run.
    pub(crate) async fn requeue_stranded(&self, con: &mut ConnectionManager, k: &RunKeys) -> Result<Option<Stranded>> {
        let r: Vec<String> = run_keys(&self.requeue_stranded, k).invoke_async(con).await?;
        if field(&r, 0, "requeue_stranded")? == "unknown" {
            return Ok(None);
        }
        Ok(Some(Stranded {
            found: num(&r, 0, "requeue_stranded")?,
            queued: num(&r, 1, "requeue_stranded")?,
            missing: num(&r, 2, "requeue_stranded")?,
            recounted: field(&r, 3, "requeue_stranded")? == "1",
        }))
    }
}

fn claim_reply(r: &[String], script: &str) -> Result<ClaimReply> {
    Ok(match field(r, 0, script)? {
        "unknown" => ClaimReply::Unknown,
        "inactive" => ClaimReply::Inactive,
        "empty" => ClaimReply::Empty,
        "leased" => ClaimReply::Leased { shard: num(r, 1, script)?, token: num(r, 2, script)?, failures: num(r, 3, script)?, deadline_ms: num(r, 4, script)? },
        other => return Err(bad_reply(script, other)),
    })
}

fn tri(r: i64) -> Option<bool> {
    match r {
        -1 => None,
        0 => Some(false),
        _ => Some(true),
    }
}

fn state_reply(r: &[String], script: &str) -> Result<Option<StateReply>> {
    if field(r, 0, script)? == "unknown" {
        return Ok(None);
    }
    Ok(Some(StateReply { state: state(r, 0, script)?, created_ms: num(r, 1, script)? }))
}

fn field<'a>(r: &'a [String], i: usize, script: &str) -> Result<&'a str> {
    r.get(i).map(String::as_str).ok_or_else(|| bad_reply(script, &format!("{r:?}")))
}

fn num<T: std::str::FromStr>(r: &[String], i: usize, script: &str) -> Result<T> {
    let s = field(r, i, script)?;
    s.parse().map_err(|_| bad_reply(script, s))
}

fn state(r: &[String], i: usize, script: &str) -> Result<RunState> {
    let s = field(r, i, script)?;
    RunState::parse(s).ok_or_else(|| bad_reply(script, s))
}

fn bad_reply(script: &str, got: &str) -> Error {
    Error::Redis(redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "unexpected reply from a queue script", format!("{script}.lua returned {got:?}"))))
}
