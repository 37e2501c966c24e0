//! The chaos soak (issue 14): a procedural run through Redis and S3 with several workers,
//! first without faults, then again while a random worker is SIGKILLed (and replaced)
//! every few seconds, Redis is SIGKILLed and restarted on its AOF with the shipped
//! setting (`appendfsync everysec`), and every worker's S3 traffic goes through a proxy
//! that answers some requests 503, drops some connections and applies some writes but
//! loses their answers. At the end: exactly N unique samples, every object present with
//! its hash, no orphan object. It prints the faults injected, the failed attempts and
//! both wall times (not asserted: tests never assert on time).
//!
//! `#[ignore]`d in the default test run; `.ci/run` runs it at a small size. Settings
//! (environment): `LABELGEN_SOAK_SAMPLES` (20000), `LABELGEN_SOAK_SHARD_SIZE` (50),
//! `LABELGEN_SOAK_WORKERS` (3), `LABELGEN_SOAK_KILL_EVERY_MS` (3000),
//! `LABELGEN_SOAK_REDIS_EVERY_S` (60), `LABELGEN_SOAK_BATCH_DELAY_MS` (250: each batch of
//! 16 samples is held that long, so a 16-px procedural sample costs about what a real one
//! would relative to the faults' pace), `LABELGEN_SOAK_SEED` (from the clock; printed).
//! The long setting of README: the defaults.

use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use labelgen_tests::bins::{signal, spawn, stderr};
use labelgen_tests::check;
use labelgen_tests::cluster::{stop_all, Cluster};
use labelgen_tests::proxy::{Faults, FaultyProxy};
use labelgen_tests::redis::RedisServer;
use labelgen_tests::s3::S3Server;
use labelgen_tests::spec::{SpecBuilder, TempDir};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}"))).unwrap_or(default)
}

/// xorshift64*: enough to pick a victim, reproducible from the printed seed.
struct Dice(u64);
impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

struct Fleet {
    env: Vec<(String, String)>,
    workers: Vec<Child>,
    started: usize,
}

impl Fleet {
    /// A serving worker whose log goes to `w-N.log` in the cluster's directory.
    fn start_one(&mut self, cl: &Cluster) -> Child {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut c = cl.worker_cmd(&env);
        let log = File::create(cl.dir.path().join(format!("w-{}.log", self.started))).unwrap();
        self.started += 1;
        c.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(log);
        spawn(c)
    }

    fn stop(&mut self) {
        stop_all(&mut self.workers, Duration::from_secs(60));
    }
}

/// Lines of all worker logs containing `needle`.
fn log_count(dir: &std::path::Path, needle: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("w-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().filter(|l| l.contains(needle)).count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the chaos soak: `.ci/run` runs it at a small size; see the module docs"]
async fn chaos_soak_gives_exactly_n() {
    let samples = setting("LABELGEN_SOAK_SAMPLES", 20_000);
    let shard_size = setting("LABELGEN_SOAK_SHARD_SIZE", 50);
    let n_workers = setting("LABELGEN_SOAK_WORKERS", 3) as usize;
    let kill_every = Duration::from_millis(setting("LABELGEN_SOAK_KILL_EVERY_MS", 3000));
    let redis_every = Duration::from_secs(setting("LABELGEN_SOAK_REDIS_EVERY_S", 60));
    let delay = setting("LABELGEN_SOAK_BATCH_DELAY_MS", 250).to_string();
    let seed = setting("LABELGEN_SOAK_SEED", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let mut dice = Dice(seed);
    println!("soak: {samples} samples, shard size {shard_size}, {n_workers} workers, a kill every {kill_every:?}, Redis restart every {redis_every:?}, seed {seed}");

    // The shipped Redis setting (k8s/base/redis.yaml): AOF, fsync once a second.
    let mut cl = Cluster { redis: RedisServer::start_with(&["--appendfsync", "everysec"]), s3: S3Server::start(), dir: TempDir::new("soak") };
    cl.s3.create_bucket("data");
    let mut spec = SpecBuilder::new("s3://data/soak");
    spec.count = samples;
    spec.shard_size = shard_size;
    spec.size = 16;
    spec.batch = 16;
    spec.format = "webdataset";
    spec.lease_seconds = 2;
    // Attempts a shard may spend on kills and faults before it is dead; the run must end
    // with none dead.
    spec.max_attempts = 50;

    // 1. The same run without faults, for the wall-time comparison.
    cl.submit(&spec, "calm");
    let t0 = Instant::now();
    let paced = |mut env: Vec<(String, String)>| {
        env.push(("LABELGEN_BATCH_DELAY_MS".to_string(), delay.clone()));
        env
    };
    let mut fleet = Fleet { env: paced(cl.s3.env()), workers: Vec::new(), started: 0 };
    fleet.workers = (0..n_workers).map(|_| fleet.start_one(&cl)).collect();
    let o = cl.watch("calm");
    let calm = t0.elapsed();
    assert!(o.status.success(), "fault-free watch failed: {}", stderr(&o));
    fleet.stop();
    check::exactly_n(&cl.s3.store("data", "soak/calm"), samples).await;
    let calm_committed = log_count(cl.dir.path(), "shard committed");
    println!("soak: fault-free run {:.1} s", calm.as_secs_f64());

    // 2. The chaos run: S3 faults on every worker request, kills, Redis restarts.
    let proxy = FaultyProxy::start_with(cl.s3.port(), Faults { every_503: 23, every_drop: 29, every_lost_answer: 31, lost_answer_method: None, deny_all: false });
    cl.submit(&spec, "chaos");
    let t0 = Instant::now();
    let mut fleet = Fleet { env: paced(S3Server::env_for(&proxy.endpoint())), workers: Vec::new(), started: fleet.started };
    fleet.workers = (0..n_workers).map(|_| fleet.start_one(&cl)).collect();
    let watch_log = cl.dir.path().join("watch.log");
    let mut watch = cl.coordinator(&["watch", "chaos", "--interval", "0.2"]).stderr(File::create(&watch_log).unwrap()).spawn().unwrap();
    let limit = Duration::from_secs(600).max(calm * 30);
    let (mut kills, mut redis_restarts) = (0u32, 0u32);
    let (mut next_kill, mut next_redis) = (Instant::now() + kill_every, Instant::now() + redis_every);
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < limit, "the chaos run did not end within {limit:?}; watch log: {}", std::fs::read_to_string(&watch_log).unwrap_or_default());
        if Instant::now() >= next_kill {
            let i = dice.below(fleet.workers.len());
            signal(&fleet.workers[i], "KILL");
            let _ = fleet.workers[i].wait();
            fleet.workers[i] = fleet.start_one(&cl);
            kills += 1;
            next_kill += kill_every;
        }
        if Instant::now() >= next_redis {
            // A crash, not a shutdown: no final fsync; the AOF replays what reached it.
            cl.redis.kill();
            cl.redis.restart();
            redis_restarts += 1;
            next_redis += redis_every;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let chaos = t0.elapsed();
    let watch_text = std::fs::read_to_string(&watch_log).unwrap_or_default();
    assert!(status.success(), "chaos watch failed ({status}): {watch_text}");
    fleet.stop();
    let store = cl.s3.store("data", "soak/chaos");
    check::exactly_n(&store, samples).await;
    // Late writers (an upload in flight when its attempt lost) may land after finalize;
    // the documented cure is the next finalize, which must leave nothing unnamed.
    // (Each shard's samples are one tar.)
    let orphans_before = store.list("data").await.unwrap().len().saturating_sub(samples.div_ceil(shard_size) as usize);
    let o = labelgen_tests::bins::run(cl.coordinator(&["finalize", "chaos"]));
    assert!(o.status.success(), "second finalize failed: {}", stderr(&o));
    check::no_orphans(&store).await;
    check::exactly_n(&store, samples).await;

    let summary: serde_json::Value = serde_json::from_slice(&store.get("manifest.json").await.unwrap().unwrap()).unwrap();
    let retried = summary["retried_shards"].as_u64().unwrap_or(0);
    let c = |i: usize| proxy.counts[i].load(std::sync::atomic::Ordering::SeqCst);
    let committed = log_count(cl.dir.path(), "shard committed") - calm_committed;
    println!(
        "soak: chaos run {:.1} s = {:.2}× the fault-free {:.1} s; {kills} worker SIGKILLs, {redis_restarts} Redis crash-restarts; S3 through the proxy: {} requests, {} answered 503, {} dropped, {} applied with the answer lost; attempts: {} failed, {} leases lost, {} given back, {} found the shard already committed, {committed} commits for {} shards ({retried} won by a retry); {orphans_before} late objects before the second finalize",
        chaos.as_secs_f64(),
        chaos.as_secs_f64() / calm.as_secs_f64(),
        calm.as_secs_f64(),
        c(0),
        c(1),
        c(2),
        c(3),
        log_count(cl.dir.path(), "shard failed"),
        log_count(cl.dir.path(), "lease lost"),
        log_count(cl.dir.path(), "job given back"),
        log_count(cl.dir.path(), "already committed"),
        samples.div_ceil(shard_size),
    );
    assert!(kills > 0, "no worker was killed: make the run longer or LABELGEN_SOAK_KILL_EVERY_MS shorter");
}
