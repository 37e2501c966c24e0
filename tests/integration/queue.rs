//! The queue against a real redis-server: the conformance suite, then what only Redis can
//! get wrong (restart with AOF, several clients racing, scripts flushed from the server, an
//! index entry lost, shards stranded by a partial loss).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use labelgen_tests::redis::RedisServer;
use shared::queue::conformance::{self, RealTime};
use shared::queue::{Counts, JobQueue, RedisQueue, RunRecord, RunState, Stranded};

async fn connect(server: &RedisServer) -> RedisQueue {
    RedisQueue::connect(&server.url()).await.expect("connect to the test redis-server")
}

/// Retries `f` until it succeeds (the connection manager reconnects after a restart).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = shared::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_passes_conformance_suite() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    conformance::run_all(&q, &RealTime::default(), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_keeps_runs_and_jobs() {
    let mut server = RedisServer::start();
    let q = connect(&server).await;
    let run = RunRecord { lease_ms: 60_000, ..conformance::record("restart", 10) };
    q.submit(&run).await.unwrap();
    let done = q.claim("w1").await.unwrap().unwrap();
    let held = q.claim("w1").await.unwrap().unwrap();
    assert!(q.ack(&done).await.unwrap());
    let before = q.counts("restart").await.unwrap();
    let record = q.run("restart").await.unwrap().unwrap();

    server.restart();

    // The same RedisQueue reconnects by itself.
    let after = eventually("counts after restart", || q.counts("restart")).await;
    assert_eq!(after, before);
    assert_eq!(after, Counts { total: 10, pending: 8, delayed: 0, leased: 1, committed: 1, dead: 0, state: RunState::Active, last_committed: false });
    assert_eq!(q.run("restart").await.unwrap().unwrap(), record);
    assert_eq!(q.list().await.unwrap(), ["restart"]);
    assert!(q.ack(&held).await.unwrap(), "a lease taken before the restart is still held");
    let next = q.claim("w2").await.unwrap().unwrap();
    assert_eq!((next.shard, next.token), (2, 1));
    assert!(q.ack(&next).await.unwrap());
    assert_eq!(q.counts("restart").await.unwrap().committed, 3);

    // A hard kill loses nothing either (appendfsync always).
    server.kill();
    server.restart();
    let after = eventually("counts after kill", || q.counts("restart")).await;
    assert_eq!((after.committed, after.pending, after.leased), (3, 7, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_clients_never_double_lease() {
    const JOBS: u64 = 200;
    let server = RedisServer::start();
    let q = connect(&server).await;
    q.submit(&RunRecord { lease_ms: 60_000, ..conformance::record("race", JOBS) }).await.unwrap();

    let mut tasks = Vec::new();
    for w in 0..8 {
        let url = server.url();
        tasks.push(tokio::spawn(async move {
            let q = RedisQueue::connect(&url).await.unwrap();
            let owner = format!("w{w}");
            let mut acked = Vec::new();
            while let Some(lease) = q.claim(&owner).await.unwrap() {
                assert_eq!(lease.token, 1, "{lease:?}: every shard is claimed once");
                assert!(q.ack(&lease).await.unwrap(), "{lease:?}");
                acked.push(lease.shard);
            }
            acked
        }));
    }
    let mut times_acked: HashMap<u64, u32> = HashMap::new();
    let mut workers_with_work = 0;
    for task in tasks {
        let acked = task.await.unwrap();
        workers_with_work += usize::from(!acked.is_empty());
        for shard in acked {
            *times_acked.entry(shard).or_default() += 1;
        }
    }
    assert_eq!(times_acked.len() as u64, JOBS, "every shard acked");
    assert!(times_acked.values().all(|&n| n == 1), "a shard acked twice: {times_acked:?}");
    assert!(workers_with_work > 1, "the clients did race");
    let c = q.counts("race").await.unwrap();
    assert_eq!((c.committed, c.pending, c.leased), (JOBS, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reload_after_script_flush() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    q.submit(&conformance::record("flush", 3)).await.unwrap();
    let a = q.claim("w1").await.unwrap().unwrap();

    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut con).await.unwrap();

    assert!(q.ack(&a).await.unwrap());
    let b = q.claim("w1").await.unwrap().unwrap();
    assert_eq!(b.shard, 1);
    // ack_and_claim runs its script in a pipeline, which loads nothing by itself.
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut con).await.unwrap();
    let (acked, c) = q.ack_and_claim(&b, "w1").await.unwrap();
    assert!(acked);
    assert_eq!(c.unwrap().shard, 2);
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut con).await.unwrap();
    q.cancel("flush").await.unwrap();
    assert_eq!(q.counts("flush").await.unwrap().state, RunState::Cancelled);
    // And resubmitting the same run is still recognised.
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut con).await.unwrap();
    assert_eq!(q.submit(&conformance::record("flush", 3)).await.unwrap(), shared::queue::Submitted::AlreadyExists);
}

/// A failover that lost only the claim index's entry of a run (its own keys intact): no
/// claim finds the run until `relist` (which watch calls every poll) lists it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_claim_index_lost_is_listed_again() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    q.submit(&conformance::record("unlisted", 2)).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("DEL").arg("labelgen:active").arg("labelgen:runs").query_async(&mut con).await.unwrap();
    assert_eq!(q.claim("w1").await.unwrap(), None, "nothing lists the run");
    assert!(q.relist("unlisted").await.unwrap(), "the run was missing from the index");
    assert!(!q.relist("unlisted").await.unwrap(), "listed once");
    assert_eq!(q.list().await.unwrap(), ["unlisted"]);
    assert_eq!(q.claim("w1").await.unwrap().expect("served again").shard, 0);
}

/// A partial loss that kept a run's other keys but not its meta: submitting it again (a
/// rebuild) starts from no stale state: the old committed bit does not hide its shard,
/// and the old lease does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resubmitted_after_losing_only_its_meta_starts_clean() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let run = RunRecord { lease_ms: 60_000, ..conformance::record("metaless", 3) };
    q.submit(&run).await.unwrap();
    let done = q.claim("w1").await.unwrap().unwrap();
    assert!(q.ack(&done).await.unwrap());
    let _held = q.claim("w1").await.unwrap().unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("DEL").arg("labelgen:{metaless}:meta").query_async(&mut con).await.unwrap();
    assert_eq!(q.submit_restored(&run, &[2]).await.unwrap(), shared::queue::Submitted::Created);
    assert_eq!(q.active_runs().await.unwrap(), ["metaless"], "listed once, not under its old creation time too");
    let c = q.counts("metaless").await.unwrap();
    assert_eq!((c.committed, c.leased, c.pending), (1, 0, 2), "only the restored commit counts: {c:?}");
    let shards: Vec<u64> = [q.claim("w1").await.unwrap().unwrap().shard, q.claim("w1").await.unwrap().unwrap().shard].into();
    assert_eq!(shards, [0, 1]);
    assert_eq!(q.claim("w1").await.unwrap(), None);
}

/// A run's ready list and lease set losing entries on their own (evicted, edited) strands
/// shards in no state, which no claim would ever find. `requeue_stranded` (watch calls it
/// while nothing is in flight) queues exactly those again once nothing else is in flight;
/// a committed counter that lost increments is set from the bitmap; a bitmap that lost
/// bits queues nothing (those shards may be committed) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_a_partial_loss_stranded_are_queued_again() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let run = RunRecord { lease_ms: 60_000, ..conformance::record("stranded", 4) };
    q.submit(&run).await.unwrap();
    let mut ls = Vec::new();
    for _ in 0..4 {
        ls.push(q.claim("w1").await.unwrap().unwrap());
    }
    assert!(q.release(&ls[1]).await.unwrap());
    assert_eq!(q.fail(&ls[2], "bad input", false).await.unwrap(), shared::queue::FailOutcome::Dead);
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // Lost: the release's push to the ready list.
    let () = redis::cmd("DEL").arg("labelgen:{stranded}:ready").query_async(&mut con).await.unwrap();
    assert_eq!(q.requeue_stranded("stranded").await.unwrap(), Stranded { found: 0, queued: 0, missing: 3, recounted: false }, "shards 0 and 3 are still leased");
    assert!(q.ack(&ls[0]).await.unwrap());
    // Lost: shard 3's lease (its worker still holds it, as after a lease expiry).
    let () = redis::cmd("ZREM").arg("labelgen:{stranded}:leased").arg(3).query_async(&mut con).await.unwrap();
    assert_eq!(q.claim("w1").await.unwrap(), None, "nothing reaches the stranded shards");
    assert_eq!(q.requeue_stranded("stranded").await.unwrap(), Stranded { found: 2, queued: 2, missing: 2, recounted: false });
    let again: Vec<_> = [q.claim("w1").await.unwrap().unwrap(), q.claim("w1").await.unwrap().unwrap()].into();
    assert_eq!(again.iter().map(|l| l.shard).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(q.requeue_stranded("stranded").await.unwrap(), Stranded { found: 0, queued: 0, missing: 2, recounted: false }, "queued once");
    for l in &again {
        assert!(q.ack(l).await.unwrap());
    }
    let c = q.counts("stranded").await.unwrap();
    assert_eq!((c.committed, c.dead, c.pending), (3, 1, 0), "{c:?}");
    // Lost: one increment of the committed counter (its bit kept).
    let () = redis::cmd("HINCRBY").arg("labelgen:{stranded}:meta").arg("committed").arg(-1).query_async(&mut con).await.unwrap();
    assert_eq!(q.requeue_stranded("stranded").await.unwrap(), Stranded { found: 0, queued: 0, missing: 1, recounted: true });
    assert_eq!(q.counts("stranded").await.unwrap().committed, 3, "the counter follows the bitmap");

    // Lost: a committed bit, in a run that also has a stranded shard.
    q.submit(&RunRecord { lease_ms: 60_000, ..conformance::record("bitless", 2) }).await.unwrap();
    let a = q.claim("w1").await.unwrap().unwrap();
    let _b = q.claim("w1").await.unwrap().unwrap();
    assert!(q.ack(&a).await.unwrap());
    let () = redis::cmd("ZREM").arg("labelgen:{bitless}:leased").arg(1).query_async(&mut con).await.unwrap();
    let () = redis::cmd("SETBIT").arg("labelgen:{bitless}:committed").arg(0).arg(0).query_async(&mut con).await.unwrap();
    assert_eq!(q.requeue_stranded("bitless").await.unwrap(), Stranded { found: 2, queued: 0, missing: 1, recounted: false });
    assert_eq!(q.claim("w1").await.unwrap(), None, "shard 0 may be committed: nothing queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_error_names_url_without_password() {
    let port = labelgen_tests::free_port();
    let err = RedisQueue::connect(&format!("redis://admin:hunter2@127.0.0.1:{port}/0")).await.expect_err("nothing listens there").to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains(&format!("redis://admin:***@127.0.0.1:{port}/0")), "{err}");
}

/// Sum of `MEMORY USAGE` over the run's keys other than its meta hash, and how many there
/// are: what the run costs Redis beyond its record.
async fn per_shard_state(url: &str, run_id: &str) -> (u64, Vec<String>) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("labelgen:{{{run_id}}}:*")).query_async(&mut con).await.unwrap();
    let mut bytes = 0;
    let mut others = Vec::new();
    for key in keys {
        if key.ends_with(":meta") {
            continue;
        }
        let usage: Option<u64> = redis::cmd("MEMORY").arg("USAGE").arg(&key).query_async(&mut con).await.unwrap();
        bytes += usage.unwrap_or(0);
        others.push(key);
    }
    others.sort();
    (bytes, others)
}

/// A run of 100,000,000 shards (the most the spec allows, at one sample per shard) costs
/// Redis its record and nothing per pending shard; a committed shard costs a bit of the
/// bitmap while the run is active; finalize and cancel leave the record alone. Today's
/// main pushed every shard into a list at submit (≈ 3 B each, one 45-second script).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_million_shards_cost_nothing_per_pending_shard() {
    const SHARDS: u64 = 100_000_000;
    let server = RedisServer::start();
    let q = connect(&server).await;
    let run = RunRecord { lease_ms: 60_000, ..conformance::record("huge", SHARDS) };
    q.submit(&run).await.unwrap();
    let (bytes, keys) = per_shard_state(&server.url(), "huge").await;
    assert_eq!((bytes, keys.len()), (0, 0), "a fresh run is its meta hash alone: {keys:?}");
    let c = q.counts("huge").await.unwrap();
    assert_eq!((c.total, c.pending, c.leased, c.committed), (SHARDS, SHARDS, 0, 0));

    // 4,000 shards through claim + ack: a bit each in the committed bitmap, nothing else.
    let mut lease = q.claim("w1").await.unwrap().unwrap();
    for n in 1..4_000u64 {
        let (acked, next) = q.ack_and_claim(&lease, "w1").await.unwrap();
        assert!(acked);
        lease = next.unwrap();
        assert_eq!(lease.shard, n);
    }
    assert!(q.ack(&lease).await.unwrap());
    let (bytes, keys) = per_shard_state(&server.url(), "huge").await;
    assert_eq!(keys, ["labelgen:{huge}:committed"], "only the bitmap grows with committed shards");
    assert!(bytes < 4_000 / 8 + 256, "{bytes} bytes of state for 4,000 committed shards");
    let c = q.counts("huge").await.unwrap();
    assert_eq!((c.pending, c.leased, c.committed), (SHARDS - 4_000, 0, 4_000));

    q.mark_finalized("huge").await.unwrap();
    let (bytes, keys) = per_shard_state(&server.url(), "huge").await;
    assert_eq!((bytes, keys.len()), (0, 0), "a finalized run keeps its record only: {keys:?}");
    assert_eq!(q.counts("huge").await.unwrap().committed, 4_000);

    // Cancel frees the same, except the leases still in flight and the dead jobs.
    let other = RunRecord { lease_ms: 60_000, ..conformance::record("huge-cancelled", SHARDS) };
    q.submit(&other).await.unwrap();
    let done = q.claim("w1").await.unwrap().unwrap();
    let held = q.claim("w1").await.unwrap().unwrap();
    assert!(q.ack(&done).await.unwrap());
    q.cancel("huge-cancelled").await.unwrap();
    let (_, keys) = per_shard_state(&server.url(), "huge-cancelled").await;
    let names: Vec<&str> = keys.iter().map(|k| k.rsplit(':').next().unwrap()).collect();
    assert_eq!(names, ["claims", "leased", "owners"], "only the lease in flight is left");
    assert!(q.ack(&held).await.unwrap(), "the lease in flight may still commit");
    let (bytes, keys) = per_shard_state(&server.url(), "huge-cancelled").await;
    assert_eq!((bytes, keys.len()), (0, 0), "{keys:?}");
    let c = q.counts("huge-cancelled").await.unwrap();
    assert_eq!((c.state, c.pending, c.committed), (RunState::Cancelled, SHARDS - 2, 2));
}

/// A run a previous labelgen left in Redis (every shard in its ready list, commits only in
/// the bitmap, no cursor or counter) goes on under this version: its commits are counted
/// once, then the counter follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_the_previous_layout_carries_on() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let rec = conformance::record("old", 5);
    let () = redis::cmd("HSET")
        .arg("labelgen:{old}:meta")
        .arg(&[
            ("spec_digest", rec.spec_digest.clone()),
            ("spec_json", rec.spec_json.clone()),
            ("shards", "5".into()),
            ("max_attempts", "3".into()),
            ("lease_ms", "60000".into()),
            ("backoff_ms", "100".into()),
            ("max_backoff_ms", "400".into()),
            ("priority", "0".into()),
            ("created_ms", "1700000000000".into()),
            ("state", "active".into()),
        ])
        .query_async::<i64>(&mut con)
        .await
        .map(|_| ())
        .unwrap();
    let () = redis::pipe()
        .cmd("RPUSH")
        .arg("labelgen:{old}:ready")
        .arg(&[2, 3, 4])
        .ignore()
        .cmd("SETBIT")
        .arg("labelgen:{old}:committed")
        .arg(0)
        .arg(1)
        .ignore()
        .cmd("SETBIT")
        .arg("labelgen:{old}:committed")
        .arg(1)
        .arg(1)
        .ignore()
        .cmd("HSET")
        .arg("labelgen:{old}:claims")
        .arg(&[(0, 1), (1, 1)])
        .ignore()
        .cmd("ZADD")
        .arg("labelgen:runs")
        .arg(1_700_000_000_000u64)
        .arg("old")
        .ignore()
        .cmd("ZADD")
        .arg("labelgen:active")
        .arg(0)
        .arg("1700000000000:old")
        .ignore()
        .query_async(&mut con)
        .await
        .unwrap();
    let c = q.counts("old").await.unwrap();
    assert_eq!((c.total, c.committed, c.pending, c.last_committed), (5, 2, 3, false));
    let a = q.claim("w1").await.unwrap().unwrap();
    assert_eq!(a.shard, 2, "the old ready list is served");
    let (acked, b) = q.ack_and_claim(&a, "w1").await.unwrap();
    assert!(acked);
    let b = b.unwrap();
    assert_eq!(q.counts("old").await.unwrap().committed, 3, "the bitmap counted once, then the ack");
    let (_, c4) = q.ack_and_claim(&b, "w1").await.unwrap();
    let c4 = c4.unwrap();
    assert_eq!(c4.shard, 4);
    let (acked, none) = q.ack_and_claim(&c4, "w1").await.unwrap();
    assert!(acked && none.is_none(), "no shard is served twice: {none:?}");
    let c = q.counts("old").await.unwrap();
    assert_eq!((c.committed, c.pending, c.last_committed), (5, 0, true));
    q.mark_finalized("old").await.unwrap();
    assert_eq!(q.counts("old").await.unwrap().committed, 5);
}
