//! [`RedisQueue`]: the job queue on a Redis server.
//!
//! Key layout: see `keys.rs`; every state change is one Lua script (`scripts.rs`,
//! `lua/*.lua`) touching the keys of exactly one run, with deadlines on the server clock
//! (`TIME`). The two global indexes (`labelgen:runs`, `labelgen:active`) hold run ids only
//! and are updated by plain commands beside the scripts, which keeps each script in one
//! Redis Cluster slot; they are self-healing: a submit that finds its run already there
//! re-adds it, `relist` (which `watch` calls every poll) re-adds an active run a failover
//! dropped from `labelgen:active`, and a claim drops index entries of runs that are no
//! longer active.
//!
//! Counts: `leased` counts leases until they are reclaimed (an expired lease still counts
//! until a claim reclaims it); `delayed` counts retries until a claim moves them to ready;
//! `committed` is a counter in the run's meta hash, so counts are O(1) in the shard count.
//!
//! Needs Redis 7.0 or later (`BITPOS … BIT`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::keys::{self, RunKeys};
use super::scripts::{scripts, AckClaimReply, ClaimReply, SubmitReply};
use super::types::*;

/// Committed shards per script call when a run is rebuilt from storage: a few ms of Redis each.
const RESTORE_CHUNK: usize = 2_000;
use super::{unknown, JobQueue};
use crate::error::{Error, Result};

/// A job queue on a Redis server. Cheap to clone (the connection is shared and
/// multiplexed); reconnects by itself after the server restarts.
#[derive(Clone)]
pub struct RedisQueue {
    con: ConnectionManager,
    /// The URL with any password replaced by `***`: safe to log.
    url: Arc<str>,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue").field("url", &self.url).finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`, or `rediss://…` for
    /// TLS). Errors name the URL with its password redacted.
    ///
    /// From the environment: `REDIS_PASSWORD_FILE` (a mounted Secret) gives the password
    /// instead of the URL; `REDIS_TLS_CA_FILE` (PEM) is the CA that signed the server's
    /// certificate when it is not in the system's trust store (a self-signed Redis).
    pub async fn connect(url: &str) -> Result<RedisQueue> {
        let shown = redact_url(url);
        let client = client(url, &shown)?;
        let config =
            ConnectionManagerConfig::new().set_number_of_retries(4).set_connection_timeout(Some(Duration::from_secs(5))).set_response_timeout(Some(Duration::from_secs(30)));
        let con = ConnectionManager::new_with_config(client, config).await.map_err(|e| with_url(&shown, "cannot connect to Redis", e))?;
        Ok(RedisQueue { con, url: shown.into() })
    }

    /// The URL this queue talks to, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// Marks `shards` committed, [`RESTORE_CHUNK`] per script call (idempotent).
    async fn mark_restored(&self, run: &RunRecord, k: &RunKeys, shards: &[u64]) -> Result<()> {
        for chunk in shards.chunks(RESTORE_CHUNK) {
            scripts().mark_committed(&mut self.con(), k, chunk).await?.ok_or_else(|| unknown(&run.run_id))?;
        }
        Ok(())
    }

    /// Adds the run to the global indexes (idempotent).
    async fn index(&self, run_id: &str, created_ms: u64, priority: i32, state: RunState) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.zadd(keys::runs(), run_id, created_ms).ignore();
        if state == RunState::Active {
            pipe.zadd(keys::active(), keys::active_member(created_ms, run_id), keys::active_score(priority)).ignore();
        }
        let () = pipe.query_async(&mut self.con()).await?;
        if state == RunState::Active {
            self.drop_stale_members(run_id, &keys::active_member(created_ms, run_id)).await?;
        }
        Ok(())
    }

    /// Drops the members of `labelgen:active` that name `run_id` but are not `keep`: a
    /// run created again after a partial loss (its meta gone, the index entry not) has a
    /// new `created_ms`, and its old member would list it twice. One read of the index,
    /// whose size is the number of active runs.
    async fn drop_stale_members(&self, run_id: &str, keep: &str) -> Result<()> {
        let members: Vec<String> = self.con().zrange(keys::active(), 0, -1).await?;
        let stale: Vec<&String> = members.iter().filter(|m| m.as_str() != keep && keys::run_of_active_member(m) == Some(run_id)).collect();
        if !stale.is_empty() {
            let _: i64 = self.con().zrem(keys::active(), stale).await?;
        }
        Ok(())
    }

    async fn unindex_active(&self, run_id: &str, created_ms: u64) -> Result<()> {
        let _: i64 = self.con().zrem(keys::active(), keys::active_member(created_ms, run_id)).await?;
        Ok(())
    }

    /// Claims a job of the first active run (by priority, then age) that has one; with
    /// `below`, only among runs whose score in `labelgen:active` is lower (higher priority).
    async fn claim_ahead_of(&self, owner: &str, below: Option<f64>) -> Result<Option<Lease>> {
        let mut con = self.con();
        let members: Vec<String> = match below {
            None => con.zrange(keys::active(), 0, -1).await?,
            Some(score) => con.zrangebyscore(keys::active(), "-inf", format!("({score}")).await?,
        };
        for member in members {
            let Some(run_id) = keys::run_of_active_member(&member) else { continue };
            let k = RunKeys::new(run_id);
            match scripts().claim(&mut con, &k, owner).await? {
                ClaimReply::Leased { shard, token, failures, deadline_ms } => {
                    return Ok(Some(Lease { run_id: run_id.to_string(), shard, token, failures, owner: owner.to_string(), deadline_ms }));
                }
                ClaimReply::Empty => {}
                ClaimReply::Unknown | ClaimReply::Inactive => {
                    let _: i64 = con.zrem(keys::active(), &member).await?;
                }
            }
        }
        Ok(None)
    }
}

/// The client for `url` with the password file and CA file of the environment applied.
fn client(url: &str, shown: &str) -> Result<redis::Client> {
    use redis::IntoConnectionInfo;
    let mut info = url.into_connection_info().map_err(|e| with_url(shown, "invalid Redis URL", e))?;
    if let Some(path) = std::env::var_os("REDIS_PASSWORD_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Invalid {
            origin: "$REDIS_PASSWORD_FILE".into(),
            key: std::path::Path::new(&path).display().to_string(),
            message: format!("cannot read the Redis password file: {e}"),
        })?;
        let password = text.trim_end_matches(['\n', '\r']);
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    match std::env::var_os("REDIS_TLS_CA_FILE") {
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| Error::Invalid {
                origin: "$REDIS_TLS_CA_FILE".into(),
                key: std::path::Path::new(&path).display().to_string(),
                message: format!("cannot read the CA certificate (PEM): {e}"),
            })?;
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
            redis::Client::build_with_tls(info, certs).map_err(|e| with_url(shown, "invalid Redis TLS settings", e))
        }
        None => redis::Client::open(info).map_err(|e| with_url(shown, "invalid Redis URL", e)),
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn submit_restored(&self, run: &RunRecord, committed: &[u64]) -> Result<Submitted> {
        if run.shards == 0 {
            return Err(Error::Run { run: run.run_id.clone(), message: "a run needs at least one shard".into() });
        }
        let k = RunKeys::new(&run.run_id);
        let committed: Vec<u64> = committed.iter().copied().filter(|&s| s < run.shards).collect();
        // A few thousand committed shards per script call, so no call holds Redis for long
        // however many there are; the run is indexed (visible to workers) after the last
        // chunk, so (unless a chunk fails) no committed shard is claimed in between.
        let (first, rest) = committed.split_at(committed.len().min(RESTORE_CHUNK));
        match scripts().submit(&mut self.con(), &k, run, first).await? {
            SubmitReply::Created { created_ms } => {
                let marked = self.mark_restored(run, &k, rest).await;
                // Indexed even when a chunk failed: the run exists now, and nothing else
                // (a watch's counts succeed) would index it, so it would never be served.
                // A committed shard claimed meanwhile is found committed by its worker
                // (its record exists) and acked.
                self.index(&run.run_id, created_ms, run.priority, RunState::Active).await?;
                marked?;
                Ok(Submitted::Created)
            }
            SubmitReply::Exists { created_ms, state, priority } => {
                // An earlier submit (or a resume that stopped between its chunks) may
                // have left committed shards unmarked: marking is idempotent, so mark
                // them all before the index makes the run visible again.
                self.mark_restored(run, &k, &committed).await?;
                // Heals the indexes if an earlier submit stopped between script and index.
                self.index(&run.run_id, created_ms, priority, state).await?;
                Ok(Submitted::AlreadyExists)
            }
            SubmitReply::Conflict { stored_digest } => Err(Error::Run {
                run: run.run_id.clone(),
                message: format!("already submitted with a different spec (stored digest {stored_digest}, this spec {})", run.spec_digest),
            }),
        }
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let k = RunKeys::new(run_id);
        let m: HashMap<String, String> = self.con().hgetall(k.meta()).await?;
        if m.is_empty() {
            return Ok(None);
        }
        parse_record(run_id, &m).map(Some)
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(self.con().zrange(keys::runs(), 0, -1).await?)
    }

    /// From the active index; an entry whose run is no longer active (the index heals
    /// at the next claim) is left out.
    async fn active_runs(&self) -> Result<Vec<String>> {
        let members: Vec<String> = self.con().zrange(keys::active(), 0, -1).await?;
        let mut runs = Vec::with_capacity(members.len());
        for member in &members {
            let Some(run_id) = keys::run_of_active_member(member) else { continue };
            let state: Option<String> = self.con().hget(RunKeys::new(run_id).meta(), "state").await?;
            if state.as_deref() == Some(RunState::Active.as_str()) {
                runs.push(run_id.to_string());
            }
        }
        Ok(runs)
    }

    async fn claim(&self, owner: &str) -> Result<Option<Lease>> {
        self.claim_ahead_of(owner, None).await
    }

    /// One round trip when the run goes on: the script acks and claims the run's next job,
    /// pipelined with a read of the highest priority in `labelgen:active`. If a run of
    /// higher priority is listed, a job of those runs is claimed first and, only if one is
    /// handed out, the job just claimed is given back (no attempt spent), so priorities
    /// hold; a higher run with nothing claimable (its rest dead or leased) costs one more
    /// call, not a give-back and a new token per ack. Between runs of equal priority the
    /// worker stays on its run.
    async fn ack_and_claim(&self, lease: &Lease, owner: &str) -> Result<(bool, Option<Lease>)> {
        let k = RunKeys::new(&lease.run_id);
        let reply = scripts().ack_claim(&mut self.con(), &k, lease, owner).await?;
        let Some((AckClaimReply { acked, priority, claim }, head)) = reply else { return Err(unknown(&lease.run_id)) };
        let ClaimReply::Leased { shard, token, failures, deadline_ms } = claim else {
            return Ok((acked, self.claim(owner).await?));
        };
        let next = Lease { run_id: lease.run_id.clone(), shard, token, failures, owner: owner.to_string(), deadline_ms };
        let score = keys::active_score(priority);
        if head.is_none_or(|head| head >= score) {
            return Ok((acked, Some(next)));
        }
        // An error from here on may leave a lease this worker does not track (the claim's
        // answer lost, or `next` not given back): the caller gives back every lease under
        // its owner name before it claims again.
        match self.claim_ahead_of(owner, Some(score)).await? {
            None => Ok((acked, Some(next))),
            Some(higher) => {
                self.release(&next).await?;
                Ok((acked, Some(higher)))
            }
        }
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<LeaseStatus> {
        let k = RunKeys::new(&lease.run_id);
        scripts().heartbeat(&mut self.con(), &k, lease).await?.ok_or_else(|| unknown(&lease.run_id))
    }

    async fn ack(&self, lease: &Lease) -> Result<bool> {
        let k = RunKeys::new(&lease.run_id);
        scripts().ack(&mut self.con(), &k, lease).await?.ok_or_else(|| unknown(&lease.run_id))
    }

    async fn fail(&self, lease: &Lease, error: &str, retryable: bool) -> Result<FailOutcome> {
        let k = RunKeys::new(&lease.run_id);
        scripts().fail(&mut self.con(), &k, lease, error, retryable).await?.ok_or_else(|| unknown(&lease.run_id))
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let k = RunKeys::new(&lease.run_id);
        scripts().release(&mut self.con(), &k, lease).await?.ok_or_else(|| unknown(&lease.run_id))
    }

    async fn release_owned(&self, owner: &str) -> Result<u64> {
        // Every run not finalized (a cancelled one may hold the lease too; a finalized run
        // keeps no leases): the runs' states in one round trip per 1000 runs, then one
        // script call per run that may hold leases, so the cost follows the live runs, not
        // every run the queue ever had. One gone since it was listed answers -1.
        let runs = self.list().await?;
        let mut n = 0;
        for chunk in runs.chunks(1000) {
            let mut pipe = redis::pipe();
            for run_id in chunk {
                pipe.hget(RunKeys::new(run_id).meta(), "state");
            }
            let states: Vec<Option<String>> = pipe.query_async(&mut self.con()).await?;
            for (run_id, state) in chunk.iter().zip(states) {
                if state.is_some_and(|s| s != RunState::Finalized.as_str()) {
                    n += scripts().release_owned(&mut self.con(), &RunKeys::new(run_id), owner).await?.unwrap_or(0);
                }
            }
        }
        Ok(n)
    }

    async fn cancel(&self, run_id: &str) -> Result<RunState> {
        let k = RunKeys::new(run_id);
        let r = scripts().cancel(&mut self.con(), &k).await?.ok_or_else(|| unknown(run_id))?;
        self.unindex_active(run_id, r.created_ms).await?;
        Ok(r.state)
    }

    /// Revives dead jobs; the run's state is left as it is (a cancelled run stays
    /// cancelled, a finalized one finalized).
    async fn retry_dead(&self, run_id: &str) -> Result<u64> {
        let k = RunKeys::new(run_id);
        let r = scripts().retry_dead(&mut self.con(), &k).await?.ok_or_else(|| unknown(run_id))?;
        if r.state != RunState::Active {
            return Err(super::not_served(run_id, r.state));
        }
        if r.state == RunState::Active && r.revived > 0 {
            self.index(run_id, r.created_ms, r.priority, r.state).await?;
        }
        Ok(r.revived)
    }

    async fn mark_committed(&self, run_id: &str, shard: u64) -> Result<bool> {
        let k = RunKeys::new(run_id);
        Ok(scripts().mark_committed(&mut self.con(), &k, &[shard]).await?.ok_or_else(|| unknown(run_id))? == 1)
    }

    async fn relist(&self, run_id: &str) -> Result<bool> {
        let k = RunKeys::new(run_id);
        let (created, priority, state): (Option<u64>, Option<i32>, Option<String>) =
            redis::cmd("HMGET").arg(k.meta()).arg("created_ms").arg("priority").arg("state").query_async(&mut self.con()).await?;
        let (Some(created_ms), Some(priority), Some(state)) = (created, priority, state) else { return Err(unknown(run_id)) };
        if state != RunState::Active.as_str() {
            return Ok(false);
        }
        // A cancel or finalize between the read and the add leaves an entry the next
        // claim drops (the index heals itself that way).
        let (_, added): (i64, i64) = redis::pipe()
            .zadd(keys::runs(), run_id, created_ms)
            .zadd(keys::active(), keys::active_member(created_ms, run_id), keys::active_score(priority))
            .query_async(&mut self.con())
            .await?;
        if added > 0 {
            self.drop_stale_members(run_id, &keys::active_member(created_ms, run_id)).await?;
        }
        Ok(added > 0)
    }

    /// Two round trips: the server's clock (the scripts' clock), then both ZCOUNTs.
    async fn overdue(&self, run_id: &str) -> Result<Overdue> {
        let k = RunKeys::new(run_id);
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.con()).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let (expired_leases, due_retries): (u64, u64) = redis::pipe().zcount(k.leased(), "-inf", now_ms).zcount(k.delayed(), "-inf", now_ms).query_async(&mut self.con()).await?;
        Ok(Overdue { expired_leases, due_retries })
    }

    async fn requeue_stranded(&self, run_id: &str) -> Result<Stranded> {
        scripts().requeue_stranded(&mut self.con(), &RunKeys::new(run_id)).await?.ok_or_else(|| unknown(run_id))
    }

    /// O(1) in the shard count: the committed count is a counter, the other states are
    /// sizes of their keys, and pending is what is left.
    async fn counts(&self, run_id: &str) -> Result<Counts> {
        let k = RunKeys::new(run_id);
        type Reply = ((Option<u64>, Option<String>, Option<u64>, Option<String>), u64, u64, u64);
        let ((shards, state, committed, last), delayed, leased, dead): Reply = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(k.meta())
            .arg("shards")
            .arg("state")
            .arg("committed")
            .arg("last_committed")
            .zcard(k.delayed())
            .zcard(k.leased())
            .hlen(k.dead())
            .query_async(&mut self.con())
            .await?;
        let (Some(total), Some(state)) = (shards, state) else { return Err(unknown(run_id)) };
        let state = RunState::parse(&state).ok_or_else(|| corrupt(run_id, "state", &state))?;
        let (committed, last_committed) = match committed {
            Some(n) => (n, last.is_some()),
            // A run submitted before the committed counter existed: count its bitmap.
            None => (self.con().bitcount(k.committed()).await?, self.con().getbit(k.committed(), (total.max(1) - 1) as usize).await?),
        };
        let pending = total.saturating_sub(committed + leased + dead);
        Ok(Counts { total, pending, delayed, leased, committed, dead, state, last_committed })
    }

    async fn dead(&self, run_id: &str) -> Result<Vec<DeadJob>> {
        let k = RunKeys::new(run_id);
        let (exists, dead): (bool, HashMap<u64, String>) = redis::pipe().atomic().exists(k.meta()).hgetall(k.dead()).query_async(&mut self.con()).await?;
        if !exists {
            return Err(unknown(run_id));
        }
        let mut jobs = dead
            .into_iter()
            .map(|(shard, v)| {
                let (failures, error) = v.split_once(':').ok_or_else(|| corrupt(run_id, "dead", &v))?;
                let failures = failures.parse().map_err(|_| corrupt(run_id, "dead", &v))?;
                Ok(DeadJob { shard, failures, error: error.to_string() })
            })
            .collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| j.shard);
        Ok(jobs)
    }

    async fn mark_finalized(&self, run_id: &str) -> Result<()> {
        let k = RunKeys::new(run_id);
        let r = scripts().finalize(&mut self.con(), &k).await?.ok_or_else(|| unknown(run_id))?;
        self.unindex_active(run_id, r.created_ms).await
    }
}

fn corrupt(run_id: &str, field: &str, value: &str) -> Error {
    Error::Run { run: run_id.to_string(), message: format!("unreadable {field} in Redis: {value:?}") }
}

fn parse_record(run_id: &str, m: &HashMap<String, String>) -> Result<RunRecord> {
    fn get<'a>(run_id: &str, m: &'a HashMap<String, String>, f: &str) -> Result<&'a str> {
        m.get(f).map(String::as_str).ok_or_else(|| corrupt(run_id, f, "<missing>"))
    }
    fn num<T: std::str::FromStr>(run_id: &str, m: &HashMap<String, String>, f: &str) -> Result<T> {
        let v = get(run_id, m, f)?;
        v.parse().map_err(|_| corrupt(run_id, f, v))
    }
    Ok(RunRecord {
        run_id: run_id.to_string(),
        spec_digest: get(run_id, m, "spec_digest")?.to_string(),
        spec_json: get(run_id, m, "spec_json")?.to_string(),
        shards: num(run_id, m, "shards")?,
        max_attempts: num(run_id, m, "max_attempts")?,
        lease_ms: num(run_id, m, "lease_ms")?,
        backoff_ms: num(run_id, m, "backoff_ms")?,
        max_backoff_ms: num(run_id, m, "max_backoff_ms")?,
        priority: num(run_id, m, "priority")?,
        created_ms: num(run_id, m, "created_ms")?,
    })
}

/// Wraps a connection error so that it names the (redacted) URL.
fn with_url(shown: &str, what: &'static str, e: redis::RedisError) -> Error {
    Error::Redis(redis::RedisError::from((e.kind(), what, format!("{shown}: {e}"))))
}

/// `url` with any password (in the user info, or a `pass`/`password` query parameter)
/// replaced by `***`. A URL that does not parse is not shown at all.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "<unparseable Redis URL, not shown>".to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = matches!(k.as_ref(), "pass" | "password");
                (k.into_owned(), if secret { "***".to_string() } else { v.into_owned() })
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://user:s3cret@host:6379/0"), "redis://user:***@host:6379/0");
        assert_eq!(redact_url("redis://:s3cret@host:6379"), "redis://:***@host:6379");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        let unix = redact_url("redis+unix:///tmp/r.sock?db=1&pass=s3cret");
        assert!(!unix.contains("s3cret") && unix.contains("db=1"), "{unix}");
        assert!(!redact_url("redis://u:s3cret@[bad").contains("s3cret"));
    }

    #[tokio::test]
    async fn connect_errors_name_the_url_without_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("redis://user:s3cret@127.0.0.1:{port}/");
        let err = RedisQueue::connect(&url).await.unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains(&format!("redis://user:***@127.0.0.1:{port}/")), "{err}");
        let err = RedisQueue::connect("redis://user:s3cret@[bad").await.unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
