//! The exactly-N promise under the faults that used to break it (issue 14): Redis losing
//! its data mid-run (or only its index of active runs), a poison worker beside a good
//! one, S3 applying a write and losing its answer, a zombie that reaches its commit after
//! its lease was reclaimed, the coordinator killed mid-command, a shard stranded by a
//! partial loss, every worker killed while it held a lease. Real redis-server, moto's S3 server, the real binaries.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use labelgen_tests::bins::{cmd, run, signal, spawn, stderr, stdout, wait_catches_sigterm};
use labelgen_tests::check;
use labelgen_tests::cluster::{stop_all, wait_all, Cluster};
use labelgen_tests::proxy::{Faults, FaultyProxy};
use labelgen_tests::s3::S3Server;
use labelgen_tests::spec::SpecBuilder;

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Redis loses everything mid-run (restart without its AOF). Watch notices, rebuilds the
/// run from the commit records and carries on; the lease tokens start again at 1, so new
/// claims repeat the tokens of attempts still running — each attempt still writes only
/// under its own random id. Exactly N, every hash right, no orphan object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_data_mid_run_is_rebuilt_from_storage() {
    let mut cl = Cluster::start("loss");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 30;
    spec.shard_size = 3;
    spec.batch = 1;
    spec.lease_seconds = 2;
    cl.submit(&spec, "l1");
    let slow = [("LABELGEN_BATCH_DELAY_MS", "120")];
    let mut workers: Vec<Child> = (0..2).map(|_| spawn(cl.worker_cmd(&slow))).collect();
    let watch = cl.coordinator(&["watch", "l1", "--interval", "0.2"]).env("RUST_LOG", "warn").stderr(Stdio::piped()).spawn().unwrap();
    let store = cl.s3.store("data", "runs/l1");
    // Some shards committed, others in flight.
    let t0 = Instant::now();
    while shared::manifest::committed_shards(&store).await.unwrap().len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no shard committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cl.redis.restart_empty();
    let o = watch.wait_with_output().unwrap();
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    assert!(stderr(&o).contains("rebuilding it from the commit records"), "{}", stderr(&o));
    stop_all(&mut workers, Duration::from_secs(30));
    check::exactly_n(&store, 30).await;
    // Late attempts of the lost queue may still have been writing when watch finalized:
    // finalize again (as README says) and nothing is left outside the manifest.
    let o = run(cl.coordinator(&["finalize", "l1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    check::no_orphans(&store).await;
}

/// A failover that lost only the index of active runs (the run's own keys survived): the
/// worker finds nothing to claim until watch, at its next poll, lists the run again; then
/// the run completes, exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lost_from_the_index_of_active_runs_is_listed_again_by_watch() {
    let cl = Cluster::start("unlisted");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 6;
    spec.shard_size = 3;
    cl.submit(&spec, "u1");
    let mut con = redis::Client::open(cl.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("DEL").arg("labelgen:active").query_async(&mut con).await.unwrap();
    let mut w = vec![cl.worker(&[])];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st: serde_json::Value = serde_json::from_str(&stdout(&run(cl.coordinator(&["status", "u1", "--json"])))).unwrap();
    assert_eq!((st["shards"]["leased"].as_u64(), st["shards"]["committed"].as_u64()), (Some(0), Some(0)), "the worker found the run unlisted: {st}");
    // Bounded: without the relist, the watch would wait forever on a run nobody serves.
    let mut watch = vec![cl.coordinator(&["watch", "u1", "--interval", "0.2"]).env("RUST_LOG", "warn").stderr(Stdio::piped()).spawn().unwrap()];
    wait_all(&mut watch, Duration::from_secs(60));
    let o = watch.pop().unwrap().wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("listed it again"), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(30));
    check::exactly_n(&cl.s3.store("data", "runs/u1"), 6).await;
}

/// A run's lease set lost an entry on its own (evicted, edited): the shard is in no state,
/// no worker will ever claim it, and the run would wait forever. Once nothing else is in
/// flight, watch finds it and queues it again; the run completes, exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_a_partial_loss_stranded_is_queued_again_by_watch() {
    let cl = Cluster::start("stranded");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 6;
    spec.shard_size = 3;
    cl.submit(&spec, "st1");
    let q = shared::queue::RedisQueue::connect(&cl.redis.url()).await.unwrap();
    let held = shared::queue::JobQueue::claim(&q, "a-worker-that-died").await.unwrap().expect("shard 0 is claimable");
    let mut con = redis::Client::open(cl.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("ZREM").arg("labelgen:{st1}:leased").arg(held.shard).query_async(&mut con).await.unwrap();
    let mut w = vec![spawn(cl.worker_cmd(&[]))];
    // Bounded: without the requeue, the watch would wait forever on the stranded shard.
    let mut watch = vec![cl.coordinator(&["watch", "st1", "--interval", "0.2"]).env("RUST_LOG", "warn").stderr(Stdio::piped()).spawn().unwrap()];
    wait_all(&mut watch, Duration::from_secs(90));
    let o = watch.pop().unwrap().wait_with_output().unwrap();
    stop_all(&mut w, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("queued them again"), "{}", stderr(&o));
    check::exactly_n(&cl.s3.store("data", "runs/st1"), 6).await;
}

/// Every worker of a run was killed while it held a lease: the queue still counts the
/// lease until some claim reclaims it, so the run looked busy. `watch` counts the lease
/// past its deadline as claimable, says that no worker serves the run, and shows the lease
/// as expired; a worker started then finishes the run, exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_workers_all_died_is_named_unserved_by_watch() {
    use std::io::BufRead;
    let cl = Cluster::start("unserved");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 6;
    spec.shard_size = 3;
    spec.lease_seconds = 1;
    cl.submit(&spec, "un1");
    let q = shared::queue::RedisQueue::connect(&cl.redis.url()).await.unwrap();
    shared::queue::JobQueue::claim(&q, "a-worker-that-died").await.unwrap().expect("shard 0 is claimable");
    let mut watch =
        cl.coordinator(&["watch", "un1", "--interval", "0.2", "--stall-warning-seconds", "2"]).env("RUST_LOG", "warn").env("NO_COLOR", "1").stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::io::BufReader::new(watch.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in lines.lines().map_while(|l| l.ok()) {
            let _ = tx.send(line.clone());
            all += &line;
            all.push('\n');
        }
        all
    });
    // The lease expires after 1 s; 2 s later with nothing claimed, the warning.
    let t0 = Instant::now();
    let warning = loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no warning from watch after {:?}", t0.elapsed()));
        if line.contains("no worker is serving this run") {
            break line;
        }
    };
    assert!(warning.contains("2 shard(s) claimable (1 of them leased by workers that stopped heartbeating"), "{warning}");
    let st: serde_json::Value = serde_json::from_str(&stdout(&run(cl.coordinator(&["status", "un1", "--json"])))).unwrap();
    assert_eq!((st["shards"]["leased"].as_u64(), st["shards"]["expired"].as_u64()), (Some(1), Some(1)), "{st}");
    let text = stdout(&run(cl.coordinator(&["status", "un1"])));
    assert!(text.contains("1 leased (1 past their deadline"), "{text}");
    let mut w = vec![spawn(cl.worker_cmd(&[]))];
    wait_all(std::slice::from_mut(&mut watch), Duration::from_secs(90));
    let status = watch.wait().unwrap();
    let err = reader.join().unwrap();
    stop_all(&mut w, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    check::exactly_n(&cl.s3.store("data", "runs/un1"), 6).await;
}

/// `coordinator resume RUN_URI` rebuilds a run Redis lost, queueing only the shards
/// without a commit record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_queues_exactly_the_uncommitted_shards() {
    let mut cl = Cluster::start("resume");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 20;
    spec.shard_size = 5;
    cl.submit(&spec, "rs1");
    let mut w = vec![cl.worker(&[])];
    let o = run(cl.coordinator(&["watch", "rs1", "--no-finalize", "--interval", "0.2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("all 20 samples committed; not finalized"), "no manifest is claimed: {}", stdout(&o));
    wait_all(&mut w, Duration::from_secs(30));
    let store = cl.s3.store("data", "runs/rs1");
    // Forget two commits, then lose Redis.
    store.delete("shards/000001.json").await.unwrap();
    store.delete("shards/000003.json").await.unwrap();
    cl.redis.restart_empty();
    let o = run(cl.coordinator(&["status", "rs1"]));
    assert!(!o.status.success(), "the run should be unknown now");
    let o = run(cl.coordinator(&["resume", "s3://data/runs/rs1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 of 4 shards committed, 2 queued"), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "rs1");
    let o = run(cl.coordinator(&["status", "rs1", "--json"]));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((st["shards"]["committed"].as_u64(), st["shards"]["pending"].as_u64()), (Some(2), Some(2)), "{st}");
    let mut w = vec![cl.worker(&[])];
    let o = cl.watch("rs1");
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(30));
    check::exactly_n(&store, 20).await;
    check::no_orphans(&store).await;
    let o = run(cl.coordinator(&["resume", "s3://data/runs/missing"]));
    assert!(!o.status.success() && stderr(&o).contains("runs/missing/run.json"), "{}", stderr(&o));
}

/// Redis lost a run and its coordinator Job, restarted, submits the same spec again: the
/// shards with a commit record stay committed (as `resume` does) instead of being queued
/// and generated again; then the run completes, exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitting_a_run_again_after_redis_lost_it_keeps_its_commits() {
    let mut cl = Cluster::start("resubmit");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 20;
    spec.shard_size = 5;
    cl.submit(&spec, "rb1");
    let mut w = vec![cl.worker(&[])];
    let o = run(cl.coordinator(&["watch", "rb1", "--no-finalize", "--interval", "0.2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(30));
    let store = cl.s3.store("data", "runs/rb1");
    store.delete("shards/000002.json").await.unwrap();
    cl.redis.restart_empty();
    let cfg = cl.dir.path().join("rb1.toml");
    let o = run(cl.coordinator(&["submit", cfg.to_str().unwrap(), "--run-id", "rb1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("3 of 4 shards committed, 1 queued"), "{}", stderr(&o));
    let st: serde_json::Value = serde_json::from_str(&stdout(&run(cl.coordinator(&["status", "rb1", "--json"])))).unwrap();
    assert_eq!((st["shards"]["committed"].as_u64(), st["shards"]["pending"].as_u64()), (Some(3), Some(1)), "{st}");
    let mut w = vec![cl.worker(&[])];
    let o = cl.watch("rb1");
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(30));
    check::exactly_n(&store, 20).await;
    check::no_orphans(&store).await;
}

/// A worker whose storage credentials are refused, beside a good one: it gives every job
/// back without spending an attempt, backs off, and exits naming the cause; the run ends
/// with no dead shard. No credential appears in any log, record or status output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_worker_beside_a_good_one_kills_no_shard() {
    let cl = Cluster::start("poison");
    let deny = FaultyProxy::start_with(cl.s3.port(), Faults { deny_all: true, ..Default::default() });
    let mut spec = SpecBuilder::new("s3://data/runs");
    // Enough shards (30, about 0.2 s each for the good worker) for the poison worker's
    // three failures and backoffs to happen before the good one has done them all.
    spec.count = 60;
    spec.shard_size = 2;
    spec.max_attempts = 2;
    cl.submit(&spec, "p1");
    let log = cl.dir.path().join("poison.log");
    let mut poison = {
        let mut c = cmd("worker");
        c.args(["--max-local-failures", "3", "--local-backoff-seconds", "0.2", "--metrics-addr", "127.0.0.1:0", "-vv"])
            .env("REDIS_URL", cl.redis.url())
            .envs(S3Server::env_for(&deny.endpoint()))
            .env("RUST_LOG", "trace")
            .stderr(std::fs::File::create(&log).unwrap());
        spawn(c)
    };
    let mut good = vec![cl.worker(&[("LABELGEN_BATCH_DELAY_MS", "100")])];
    let o = cl.watch("p1");
    assert!(o.status.success(), "watch failed (dead shards?): {}", stderr(&o));
    wait_all(&mut good, Duration::from_secs(60));
    // Bounded: a poison worker that ran out of jobs before its third failure would idle.
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(status) = poison.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = poison.kill();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the poison worker did not give up within 60 s of the run's end:\n{}", &text[text.len().saturating_sub(3000)..]);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "the poison worker should exit non-zero");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("giving up") && text.contains("InvalidAccessKeyId"), "{}", &text[text.len().saturating_sub(3000)..]);
    assert!(deny.seen().1 >= 3, "the poison worker should have tried");
    let store = cl.s3.store("data", "runs/p1");
    check::exactly_n(&store, 60).await;
    let o = run(cl.coordinator(&["status", "p1", "--json"]));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["shards"]["dead"], 0, "{st}");

    // Credentials: not in the trace log, run.json, the manifests or status output.
    let mut texts = vec![("poison worker log", text), ("status --json", stdout(&o))];
    for f in ["run.json", "manifest.json", "manifest.jsonl"] {
        texts.push((f, String::from_utf8_lossy(&store.get(f).await.unwrap().unwrap()).into_owned()));
    }
    for (what, t) in &texts {
        for secret in ["testing-secret-value", "testing-key-id", "AKIAPOISONEDKEY0001"] {
            assert!(!t.contains(secret), "{what} contains the credential {secret:?}");
        }
    }
}

/// S3 applies a write and the answer is lost (the proxy forwards the request and drops
/// the response) on data puts, commit-record puts and deletes: the retries find their own
/// writes; nothing is lost, nothing is doubled, no winner's data is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_applied_with_lost_answers_still_give_exactly_n() {
    let cl = Cluster::start("lost");
    let puts = FaultyProxy::start_with(cl.s3.port(), Faults { every_lost_answer: 4, lost_answer_method: Some("PUT"), ..Default::default() });
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 24;
    spec.shard_size = 4;
    spec.max_attempts = 10;
    let cfg = spec.write(cl.dir.path(), "la.toml");
    let env = S3Server::env_for(&puts.endpoint());
    let with_env = |mut c: std::process::Command| {
        c.env("REDIS_URL", cl.redis.url()).envs(env.clone());
        c
    };
    let o = run(with_env({
        let mut c = cmd("coordinator");
        c.args(["submit", cfg.to_str().unwrap(), "--run-id", "la1"]);
        c
    }));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut workers: Vec<Child> = (0..2)
        .map(|_| {
            let mut c = cmd("worker");
            c.args(["--exit-when-idle", "--metrics-addr", "127.0.0.1:0"]);
            spawn(with_env(c))
        })
        .collect();
    let o = run(with_env({
        let mut c = cmd("coordinator");
        c.args(["watch", "la1", "--interval", "0.2"]);
        c
    }));
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut workers, Duration::from_secs(90));
    assert!(puts.lost_answers() >= 5, "too few lost answers injected: {}", puts.lost_answers());
    let store = cl.s3.store("data", "runs/la1");
    check::exactly_n(&store, 24).await;
    check::no_orphans(&store).await;
}

/// A zombie frozen between uploading its data and committing it, past its lease: another
/// worker redoes the shard and the run is finalized; when the zombie wakes, its lease is
/// over on its own clock, so it commits nothing and removes its own objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_reaching_its_commit_late_stays_invisible() {
    let cl = Cluster::start("zombie");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 6;
    spec.shard_size = 6;
    spec.lease_seconds = 1;
    cl.submit(&spec, "z1");
    let marks = cl.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let mut zombie = cl.worker(&[("LABELGEN_BEFORE_COMMIT_DIR", marks.to_str().unwrap()), ("LABELGEN_BEFORE_COMMIT_MS", "300")]);
    wait_for("the zombie to reach its commit", Duration::from_secs(60), || marks.join("0.ready").exists());
    signal(&zombie, "STOP");
    let store = cl.s3.store("data", "runs/z1");
    let zombie_objects = store.list("data").await.unwrap();
    assert!(!zombie_objects.is_empty(), "the zombie had uploaded its data");
    let mut other = vec![cl.worker(&[])];
    let o = cl.watch("z1");
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut other, Duration::from_secs(30));
    let before = check::exactly_n(&store, 6).await;
    signal(&zombie, "CONT");
    wait_all(std::slice::from_mut(&mut zombie), Duration::from_secs(30));
    let after = check::exactly_n(&store, 6).await;
    assert_eq!(before, after);
    check::no_orphans(&store).await;
    let rec = shared::manifest::existing_record(&store, "z1", 0).await.unwrap().unwrap();
    assert!(!zombie_objects.iter().any(|p| p.contains(&format!("/{}/", rec.attempt))), "the zombie's attempt must not be the winner");
}

/// The coordinator SIGKILLed in the middle of submit and of finalize; the same command
/// again completes the job: exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_mid_command_is_finished_by_running_it_again() {
    let cl = Cluster::start("ckill");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 40;
    spec.shard_size = 2;
    let cfg = spec.write(cl.dir.path(), "ck.toml");
    for delay_ms in [5u64, 40, 120] {
        let mut c = cl.coordinator(&["submit", cfg.to_str().unwrap(), "--run-id", "ck1"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
        let mut child = child;
        let _ = child.wait();
    }
    cl.submit(&spec, "ck1");
    let mut w = vec![cl.worker(&[])];
    let o = run(cl.coordinator(&["watch", "ck1", "--no-finalize", "--interval", "0.2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(60));
    for delay_ms in [20u64, 150] {
        let mut c = cl.coordinator(&["finalize", "ck1"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    let o = run(cl.coordinator(&["finalize", "ck1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let store = cl.s3.store("data", "runs/ck1");
    check::exactly_n(&store, 40).await;
    check::no_orphans(&store).await;
    // Cancelling a finalized run changes nothing, and says so.
    let o = run(cl.coordinator(&["cancel", "ck1"]));
    assert!(o.status.success() && stderr(&o).contains("run ck1 is already finalized"), "{}", stderr(&o));
}

/// `watch` and `worker run-shard` stop on SIGTERM (as PID 1 in a container they would
/// otherwise wait for SIGKILL); run-shard leaves no object of its stopped attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_run_shard_stop_on_sigterm() {
    let cl = Cluster::start("sigterm");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 8;
    spec.shard_size = 8;
    spec.batch = 1;
    cl.submit(&spec, "st1");
    let watch = cl.coordinator(&["watch", "st1", "--interval", "0.2"]).stderr(Stdio::piped()).spawn().unwrap();
    wait_catches_sigterm(&watch);
    signal(&watch, "TERM");
    let o = watch.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "watch after SIGTERM: {}", stderr(&o));

    let cfg = spec.write(cl.dir.path(), "static.toml");
    let marks = cl.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let mut c = cmd("worker");
    c.args(["run-shard", cfg.to_str().unwrap(), "--shard", "0", "--run-id", "static1"]).envs(cl.s3.env()).env("LABELGEN_BATCH_DELAY_MS", "300").stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let store = cl.s3.store("data", "runs/static1");
    let t0 = Instant::now();
    while store.list("data").await.unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(60), "run-shard wrote nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&child, "TERM");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "run-shard after SIGTERM: {}", stderr(&o));
    assert_eq!(store.list("data").await.unwrap(), Vec::<String>::new(), "the stopped attempt's objects are removed");
    assert!(store.list("shards").await.unwrap().is_empty(), "nothing was committed");
}

/// `rediss://` with a private CA ($REDIS_TLS_CA_FILE) and the password from a file
/// ($REDIS_PASSWORD_FILE, as a mounted Secret gives it): a whole run goes through a
/// TLS-only, password-protected Redis; without the password it is refused, and no output
/// shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_password_file() {
    let redis = labelgen_tests::redis::RedisServer::start_tls("tls-pw-0451");
    let s3 = S3Server::start();
    s3.create_bucket("data");
    let dir = labelgen_tests::spec::TempDir::new("tls");
    let pw = dir.path().join("redis-password");
    std::fs::write(&pw, "tls-pw-0451\n").unwrap();
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 6;
    spec.shard_size = 3;
    let cfg = spec.write(dir.path(), "tls.toml");
    let with = |name: &str, args: &[&str], password: bool| {
        let mut c = cmd(name);
        c.args(args).env("REDIS_URL", redis.tls_url()).env("REDIS_TLS_CA_FILE", redis.ca_file()).envs(s3.env());
        if password {
            c.env("REDIS_PASSWORD_FILE", &pw);
        }
        c
    };
    let o = run(with("coordinator", &["submit", cfg.to_str().unwrap(), "--run-id", "tls1"], false));
    assert!(!o.status.success(), "a Redis that requires a password must refuse");
    assert!(!stderr(&o).contains("tls-pw-0451"), "{}", stderr(&o));
    let o = run(with("coordinator", &["submit", cfg.to_str().unwrap(), "--run-id", "tls1"], true));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut w = vec![spawn({
        let mut c = with("worker", &["--exit-when-idle", "--metrics-addr", "127.0.0.1:0"], true);
        c.stdin(Stdio::null());
        c
    })];
    let o = run(with("coordinator", &["watch", "tls1", "--interval", "0.2"], true));
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(60));
    check::exactly_n(&s3.store("data", "runs/tls1"), 6).await;
    let o = run(with("coordinator", &["status", "tls1", "--json"], true));
    assert!(o.status.success() && !stdout(&o).contains("tls-pw-0451"), "{}", stdout(&o));
}

/// A worker SIGKILLed in the middle of a WebDataset tar's multipart upload leaves an open
/// upload in the bucket (invisible to listing, billed by the byte). Its id was recorded
/// beside the tar before the first part went out, so the finalize after the run aborts it:
/// no open upload, no orphan object, exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_upload_killed_mid_way_is_aborted_by_finalize() {
    let cl = Cluster::start("mpu");
    let mut spec = SpecBuilder::new("s3://data/runs");
    spec.count = 32;
    spec.shard_size = 16;
    spec.size = 64;
    spec.batch = 2;
    spec.format = "webdataset";
    spec.lease_seconds = 2;
    cl.submit(&spec, "mp1");
    // Small parts (moto takes them; only completing needs 5 MiB parts, and this worker
    // never completes), slow batches: the upload is open for seconds.
    let mut victim = spawn(cl.worker_cmd(&[("LABELGEN_PART_BYTES", "65536"), ("LABELGEN_BATCH_DELAY_MS", "400")]));
    let store = cl.s3.store("data", "runs/mp1");
    let t0 = Instant::now();
    loop {
        let listed = store.list("data").await.unwrap();
        if listed.iter().any(|p| p.ends_with(".tar.upload")) && !cl.s3.open_uploads("data").is_empty() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no multipart upload was opened: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&victim, "KILL");
    let _ = victim.wait();
    assert!(!cl.s3.open_uploads("data").is_empty(), "the killed worker's upload is open");
    let mut good = vec![cl.worker(&[])];
    let o = cl.watch("mp1");
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut good, Duration::from_secs(60));
    assert_eq!(cl.s3.open_uploads("data"), Vec::<String>::new(), "finalize left an upload open");
    check::exactly_n(&store, 32).await;
    check::no_orphans(&store).await;
}
