//! Redis mode end to end: real redis-server, moto's S3 server, the real binaries as
//! processes; workers killed, frozen and failing.

use std::process::Child;
use std::time::{Duration, Instant};

use labelgen_tests::bins::{cmd, run, signal, spawn, stderr, stdout};
use labelgen_tests::check;
use labelgen_tests::cluster::{stop_all, wait_all, Cluster};
use labelgen_tests::s3::S3Server;
use labelgen_tests::spec::SpecBuilder;
use shared::storage::Store;

/// The main promise: a run whose shard size does not divide its count, over 3 workers with
/// one SIGKILLed mid-job, gives exactly `count` samples, every object present with its
/// sha256 — and the same bytes as the embedded mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_of_three_workers_still_gives_exactly_n() {
    let cl = Cluster::start("kill");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 50;
    spec.shard_size = 7;
    let run_id = cl.submit(&spec, "k1");
    assert_eq!(run_id, "k1");
    let slow = [("LABELGEN_BATCH_DELAY_MS", "150")];
    let mut workers: Vec<Child> = (0..3).map(|_| cl.worker(&slow)).collect();
    // One job slot each: three leases at once means worker 0 holds one (a fixed sleep
    // lost the race on a busy machine).
    cl.wait_leased("k1", 3, Duration::from_secs(60));
    signal(&workers[0], "KILL");
    let o = cl.watch("k1");
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut workers[1..], Duration::from_secs(60));

    let store = cl.s3.store("data", "runs/k1");
    let lines = check::exactly_n(&store, 50).await;
    let summary: serde_json::Value = serde_json::from_slice(&store.get("manifest.json").await.unwrap().unwrap()).unwrap();
    assert!(summary["retried_shards"].as_u64().unwrap() >= 1, "the killed worker's shard should have been retried: {summary}");

    // Determinism: the embedded mode makes the same bytes.
    let local = cl.dir.path().join("local");
    let mut espec = SpecBuilder::new(local.to_str().unwrap());
    espec.count = 50;
    espec.shard_size = 7;
    let cfg = espec.write(cl.dir.path(), "embedded.toml");
    let o = run({
        let mut c = cmd("worker");
        c.args(["run", cfg.to_str().unwrap(), "--run-id", "k1"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let estore = Store::open(local.to_str().unwrap()).unwrap().child("k1");
    let elines = check::exactly_n(&estore, 50).await;
    assert_eq!(check::sample_bytes(&store, &lines).await, check::sample_bytes(&estore, &elines).await, "embedded and Redis runs differ");
}

/// A shard that always fails goes dead after max_attempts; watch exits non-zero naming it;
/// retry-dead after the fault is removed completes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_shard_is_reported_then_retried() {
    let cl = Cluster::start("dead");
    let fault = cl.dir.path().join("fault");
    std::fs::write(&fault, "1\n").unwrap();
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 12;
    spec.shard_size = 4;
    spec.max_attempts = 2;
    cl.submit(&spec, "d1");
    let mut w = vec![cl.worker(&[("LABELGEN_FAULT_FILE", fault.to_str().unwrap())])];
    let o = cl.watch("d1");
    assert_eq!(o.status.code(), Some(4), "watch should exit 4 (dead shards): {}", stderr(&o));
    assert_eq!(run(cl.coordinator(&["watch", "d1", "--no-such-flag"])).status.code(), Some(2), "a usage error exits 2");
    let e = stderr(&o);
    assert!(e.contains("shard 1") && e.contains("injected fault"), "{e}");
    wait_all(&mut w, Duration::from_secs(30));

    let o = run(cl.coordinator(&["status", "d1", "--json"]));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["shards"]["dead"], 1, "{st}");

    std::fs::remove_file(&fault).unwrap();
    let o = run(cl.coordinator(&["retry-dead", "d1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut w = vec![cl.worker(&[])];
    let o = cl.watch("d1");
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(30));
    check::exactly_n(&cl.s3.store("data", "runs/d1"), 12).await;
}

/// Bad input ends with a clear error and a non-zero exit, and leaves nothing half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_cleanly() {
    let cl = Cluster::start("bad");
    let spec = SpecBuilder::new("s3://data/runs");
    let cfg = spec.write(cl.dir.path(), "ok.toml");

    // Unreachable Redis: the error names the URL, never the password.
    let mut c = cmd("coordinator");
    c.args(["submit", cfg.to_str().unwrap(), "--redis", "redis://:sekrit-pw@127.0.0.1:1"]).envs(cl.s3.env());
    let o = run(c);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("127.0.0.1:1") && !e.contains("sekrit-pw"), "{e}");

    // Missing bucket: error, and Redis holds no run.
    let missing = SpecBuilder::new("s3://no-such-bucket/x");
    let cfg2 = missing.write(cl.dir.path(), "nobucket.toml");
    let o = run(cl.coordinator(&["submit", cfg2.to_str().unwrap(), "--run-id", "m1"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-bucket"), "{}", stderr(&o));
    let o = run(cl.coordinator(&["list"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("m1"), "a failed submit left a run in Redis: {}", stdout(&o));

    // Same id and spec: no-op; another spec under that id: error.
    cl.submit(&spec, "s1");
    cl.submit(&spec, "s1");
    let mut other = SpecBuilder::new("s3://data/runs");
    other.count = 21;
    let cfg3 = other.write(cl.dir.path(), "other.toml");
    let o = run(cl.coordinator(&["submit", cfg3.to_str().unwrap(), "--run-id", "s1"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("s1") && stderr(&o).contains("different spec"), "{}", stderr(&o));

    // No credential in run.json.
    let runjson = cl.s3.store("data", "runs/s1").get("run.json").await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&runjson);
    assert!(!text.contains("testing-secret-value") && !text.contains("testing-key-id"), "{text}");
}

/// SIGTERM: the worker stops claiming and, once its grace period is over, releases the job
/// in hand without spending an attempt; another worker completes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_job_without_spending_an_attempt() {
    let cl = Cluster::start("term");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 8;
    spec.shard_size = 8;
    spec.batch = 1;
    spec.max_attempts = 1;
    spec.lease_seconds = 30;
    cl.submit(&spec, "t1");
    let mut c = cmd("worker");
    c.args(["--grace-seconds", "0.3", "--metrics-addr", "127.0.0.1:0"]).env("REDIS_URL", cl.redis.url()).envs(cl.s3.env()).env("LABELGEN_BATCH_DELAY_MS", "400");
    let mut w = spawn(c);
    // Wait until the worker holds the lease.
    cl.wait_leased("t1", 1, Duration::from_secs(20));
    signal(&w, "TERM");
    let status = w.wait().unwrap();
    assert!(status.success(), "worker exit after SIGTERM: {status}");
    let o = run(cl.coordinator(&["status", "t1", "--json"]));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["shards"]["leased"], 0, "{st}");
    assert_eq!(st["shards"]["pending"], 1, "the job should be back in the queue: {st}");
    assert_eq!(st["shards"]["dead"], 0, "releasing must not spend the only attempt: {st}");
    let mut w = vec![cl.worker(&[])];
    let o = cl.watch("t1");
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(30));
    check::exactly_n(&cl.s3.store("data", "runs/t1"), 8).await;
}

/// Redis restarted (AOF on) in the middle of a run: workers and watch reconnect and the run
/// completes with exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_still_gives_exactly_n() {
    let mut cl = Cluster::start("restart");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 30;
    spec.shard_size = 4;
    cl.submit(&spec, "r1");
    let mut workers: Vec<Child> = (0..2).map(|_| cl.worker(&[("LABELGEN_BATCH_DELAY_MS", "100")])).collect();
    let watch = cl.coordinator(&["watch", "r1", "--interval", "0.2"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    cl.redis.restart();
    let o = watch.wait_with_output().unwrap();
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut workers, Duration::from_secs(60));
    check::exactly_n(&cl.s3.store("data", "runs/r1"), 30).await;
}

/// A worker frozen (SIGSTOP) past its lease, then resumed: its shard is redone by another
/// worker; its late writes are not in the manifest and do not break it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_late_writes_stay_out_of_the_manifest() {
    let cl = Cluster::start("stop");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 12;
    spec.shard_size = 6;
    spec.batch = 1;
    spec.lease_seconds = 1;
    cl.submit(&spec, "f1");
    let mut frozen = cl.worker(&[("LABELGEN_BATCH_DELAY_MS", "100")]);
    // Frozen while it holds a shard (after a fixed sleep it could still be starting).
    cl.wait_leased("f1", 1, Duration::from_secs(30));
    signal(&frozen, "STOP");
    let mut other = vec![cl.worker(&[])];
    let o = cl.watch("f1");
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut other, Duration::from_secs(30));
    let store = cl.s3.store("data", "runs/f1");
    let before = check::exactly_n(&store, 12).await;
    signal(&frozen, "CONT");
    wait_all(std::slice::from_mut(&mut frozen), Duration::from_secs(30));
    let after = check::exactly_n(&store, 12).await;
    assert_eq!(before, after, "the manifest changed after the frozen worker resumed");
    // The resumed worker learns its lease is gone and removes what it wrote late.
    check::no_orphans(&store).await;
    let summary: serde_json::Value = serde_json::from_slice(&store.get("manifest.json").await.unwrap().unwrap()).unwrap();
    assert!(summary["retried_shards"].as_u64().unwrap() >= 1, "{summary}");
}

/// Transient S3 errors (503s and dropped connections from a proxy) are retried; nothing is
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_s3_errors_are_retried() {
    let cl = Cluster::start("faulty");
    let proxy = labelgen_tests::proxy::FaultyProxy::start(cl.s3.port(), 7, 11);
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 24;
    spec.shard_size = 5;
    let cfg = spec.write(cl.dir.path(), "p1.toml");
    let env = S3Server::env_for(&proxy.endpoint());
    let submit = {
        let mut c = cmd("coordinator");
        c.args(["submit", cfg.to_str().unwrap(), "--run-id", "p1"]).env("REDIS_URL", cl.redis.url()).envs(env.clone());
        run(c)
    };
    assert!(submit.status.success(), "{}", stderr(&submit));
    let mut workers: Vec<Child> = (0..2)
        .map(|_| {
            let mut c = cmd("worker");
            c.args(["--exit-when-idle", "--metrics-addr", "127.0.0.1:0"]).env("REDIS_URL", cl.redis.url()).envs(env.clone());
            spawn(c)
        })
        .collect();
    let o = {
        let mut c = cmd("coordinator");
        c.args(["watch", "p1", "--interval", "0.2"]).env("REDIS_URL", cl.redis.url()).envs(env.clone());
        run(c)
    };
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut workers, Duration::from_secs(60));
    let (seen, e503, dropped) = proxy.seen();
    assert!(e503 >= 3 && dropped >= 2, "the proxy injected too few faults: {seen} requests, {e503} 503s, {dropped} drops");
    check::exactly_n(&cl.s3.store("data", "runs/p1"), 24).await;
}

/// `GET /metrics` from a local server; `None` while it does not answer.
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of an unlabelled gauge in a scrape.
fn gauge(body: &str, name: &str) -> Option<i64> {
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `coordinator metrics` (the cross-run autoscaling metric): shards pending or leased over
/// every active run, without naming any run; a cancelled run drops out, a finished one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_metrics_follow_every_active_run() {
    let cl = Cluster::start("queue-metrics");
    let port = labelgen_tests::free_port();
    let mut server = cl.coordinator(&["metrics", "--addr", &format!("127.0.0.1:{port}"), "--interval", "0.1"]).spawn().expect("start coordinator metrics");
    let wait_for = |want: i64, runs: i64| {
        let t0 = Instant::now();
        loop {
            let body = scrape(port).unwrap_or_default();
            if gauge(&body, "labelgen_queue_work") == Some(want) && gauge(&body, "labelgen_active_runs") == Some(runs) {
                return body;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "expected labelgen_queue_work {want} over {runs} runs, got:\n{body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(0, 0);
    let mut a = SpecBuilder::new("s3://data/qm");
    a.count = 12;
    a.shard_size = 4;
    cl.submit(&a, "qm-a");
    let mut b = SpecBuilder::new("s3://data/qm");
    b.count = 10;
    b.shard_size = 2;
    cl.submit(&b, "qm-b");
    let body = wait_for(3 + 5, 2);
    assert!(body.contains("labelgen_queue_shards{run=\"qm-b\",state=\"pending\"} 5"), "{body}");
    let o = run(cl.coordinator(&["cancel", "qm-b"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let body = wait_for(3, 1);
    assert!(!body.contains("qm-b"), "a cancelled run's gauges go: {body}");
    let mut w = vec![cl.worker(&[])];
    let o = cl.watch("qm-a");
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for(0, 0);
    stop_all(&mut w, Duration::from_secs(10));
    let _ = server.kill();
    let _ = server.wait();
}

/// The coordinator's commands at the largest shard count a run may have in one shard of a
/// sample each: submit, status and cancel answer at once and leave Redis holding the run's
/// record, not a list of 100,000,000 shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_status_and_cancel_of_a_hundred_million_shards() {
    let cl = Cluster::start("huge-cli");
    let mut spec = SpecBuilder::new("s3://data/huge");
    spec.count = 100_000_000;
    spec.shard_size = 1;
    let run_id = cl.submit(&spec, "huge");
    let o = run(cl.coordinator(&["status", &run_id, "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((st["shards"]["total"].as_u64(), st["shards"]["pending"].as_u64()), (Some(100_000_000), Some(100_000_000)), "{st}");
    let client = redis::Client::open(cl.redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("labelgen:{huge}:*").query_async(&mut con).await.unwrap();
    assert_eq!(keys, ["labelgen:{huge}:meta"], "a submitted run is its record alone");
    let o = run(cl.coordinator(&["cancel", &run_id]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(cl.coordinator(&["status", &run_id, "--json"]));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((st["state"].as_str(), st["shards"]["pending"].as_u64()), (Some("cancelled"), Some(100_000_000)), "{st}");
}
