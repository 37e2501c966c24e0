//! Redis queue benchmark: claim+ack cycles per second at 1, 8 and 64 concurrent workers
//! (each its own `RedisQueue`, so its own connection), beside `redis-benchmark`'s rate for
//! one EVAL doing the same Redis calls as a claim+ack cycle, on the same server; then the
//! submit of a 1,000,000-image run (shard size 256: 3,907 jobs) and Redis memory per job.
//!
//! ```text
//! cargo run --release -p shared --example queue_bench [-- --redis URL] [--seconds S]
//!     [--appendfsync always|everysec|no]
//! ```
//!
//! Without `--redis` it starts its own `redis-server` on a free loopback port (AOF on,
//! `appendfsync everysec` unless told otherwise; `always` is what the integration tests
//! use, `no` turns the AOF off) and removes it afterwards. With `--redis`
//! it only adds runs named `bench-<pid>-…` and finalizes them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::queue::{JobQueue, RedisQueue, RunRecord};

/// Redis calls of one claim (claim.lua, nothing to reclaim) and one ack (ack.lua), in one
/// EVAL: what the server must do per cycle when a cycle costs one round trip.
const CYCLE_SCRIPT: &str = r#"
local k = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HMGET', k .. ':meta', 'state', 'max_attempts', 'lease_ms', 'backoff_ms', 'max_backoff_ms')
redis.call('ZRANGEBYSCORE', k .. ':leased', '-inf', now, 'LIMIT', 0, 1000)
redis.call('ZRANGEBYSCORE', k .. ':delayed', '-inf', now, 'LIMIT', 0, 1000)
redis.call('RPUSH', k .. ':ready', 7)
local s = redis.call('LPOP', k .. ':ready')
redis.call('HINCRBY', k .. ':claims', s, 1)
redis.call('ZADD', k .. ':leased', now + 30000, s)
redis.call('HSET', k .. ':owners', s, 'w1')
redis.call('HGET', k .. ':failures', s)
redis.call('EXISTS', k .. ':meta')
redis.call('HGET', k .. ':claims', s)
redis.call('ZREM', k .. ':leased', s)
redis.call('HDEL', k .. ':owners', s)
redis.call('HDEL', k .. ':failures', s)
redis.call('SETBIT', k .. ':committed', s, 1)
return s
"#;

struct Args {
    redis: Option<String>,
    seconds: f64,
    appendfsync: String,
}

fn parse_args() -> Args {
    let mut args = Args { redis: None, seconds: 3.0, appendfsync: "everysec".into() };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--redis" => args.redis = Some(value()),
            "--seconds" => args.seconds = value().parse().expect("--seconds: a number"),
            "--appendfsync" => args.appendfsync = value(),
            other => panic!("unknown argument {other} (see the doc at the top of queue_bench.rs)"),
        }
    }
    args
}

/// A redis-server of our own, removed on drop.
struct Server {
    child: Child,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(port: u16, appendfsync: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("labelgen-queue-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--logfile", "redis.log"]).arg("--dir").arg(&dir);
        if appendfsync == "no" {
            cmd.args(["--appendonly", "no"]);
        } else {
            cmd.args(["--appendonly", "yes", "--appendfsync", appendfsync]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start redis-server: {e} (install it: apt-get install redis-server, or pass --redis URL)"));
        Server { child, dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis URL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get_multiplexed_async_connection().await {
            Ok(mut con) => {
                if redis::cmd("PING").query_async::<String>(&mut con).await.is_ok() {
                    return con;
                }
            }
            Err(e) if Instant::now() > deadline => panic!("redis at {url} does not answer: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn used_memory(con: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(con).await.expect("INFO memory");
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).expect("used_memory in INFO memory")
}

fn record(run_id: &str, shards: u64) -> RunRecord {
    // A spec of realistic size (~1 KB): it is stored once per run, not per job.
    let spec_json = format!(
        "{{\"run_id\":\"{run_id}\",\"images\":1000000,\"shard_size\":256,\"size\":512,\"seed\":42,\
         \"model\":{{\"unet\":\"s3://models/unet-v3.mpk\",\"spade\":\"s3://models/spade-v2.mpk\",\"steps\":50}},\
         \"classes\":\"{}\",\"output\":\"s3://datasets/{run_id}/\"}}",
        "water,forest,grass,crops,urban,bare,snow,wetland,".repeat(16)
    );
    RunRecord {
        run_id: run_id.to_string(),
        spec_digest: format!("{:064x}", 0xfeed_u64),
        spec_json,
        shards,
        max_attempts: 5,
        lease_ms: 60_000,
        backoff_ms: 1_000,
        max_backoff_ms: 60_000,
        priority: 0,
        created_ms: 0,
    }
}

/// Claim+ack cycles per second with `workers` concurrent clients for `seconds`.
async fn cycles_per_second(url: &str, run_id: &str, workers: usize, seconds: f64) -> (f64, u64) {
    let queues = futures::future::join_all((0..workers).map(|_| RedisQueue::connect(url))).await;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = queues
        .into_iter()
        .enumerate()
        .map(|(w, q)| {
            let q = q.expect("connect");
            let owner = format!("bench-w{w}");
            let run_id = run_id.to_string();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let Some(lease) = q.claim(&owner).await.expect("claim") else { break };
                    assert_eq!(lease.run_id, run_id);
                    assert!(q.ack(&lease).await.expect("ack"));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker task");
    }
    (total as f64 / start.elapsed().as_secs_f64(), total)
}

/// redis-benchmark's rate for `requests` EVALs of [`CYCLE_SCRIPT`] with `clients` connections.
fn redis_benchmark(host: &str, port: u16, clients: usize, requests: u64, key: &str) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-h", host, "-p", &port.to_string(), "-n", &requests.to_string(), "-c", &clients.to_string(), "-q"])
        .args(["EVAL", CYCLE_SCRIPT, "1", key])
        .output()
        .map_err(|e| eprintln!("redis-benchmark: {e}"))
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.rsplit(['\r', '\n']).find(|l| l.contains("requests per second"))?;
    let before = line.split(" requests per second").next()?;
    before.rsplit([' ', ':']).find(|s| !s.is_empty())?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let mut _server = None;
    let url = match &args.redis {
        Some(url) => url.clone(),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            _server = Some(Server::start(port, &args.appendfsync));
            format!("redis://127.0.0.1:{port}/")
        }
    };
    let parsed = url::Url::parse(&url).expect("--redis: a redis:// URL");
    let host = parsed.host_str().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_string();
    let port = parsed.port().unwrap_or(6379);
    let mut con = raw(&url).await;
    let version: String = redis::cmd("INFO").arg("server").query_async(&mut con).await.unwrap();
    let version = version.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string();
    let q = RedisQueue::connect(&url).await.expect("connect");
    let tag = format!("bench-{}", std::process::id());
    println!(
        "redis {version} at {} ({}); {} s per level",
        q.url(),
        if args.redis.is_some() { "given".to_string() } else { format!("own server, appendfsync {}", args.appendfsync) },
        args.seconds
    );

    println!("\nclaim+ack cycles per second (cycle = ZRANGE active + EVALSHA claim + EVALSHA ack)");
    println!("{:>8} {:>14} {:>10} {:>26}", "workers", "cycles/s", "cycles", "redis-benchmark EVAL/s");
    for workers in [1usize, 8, 64] {
        let run_id = format!("{tag}-cycles-{workers}");
        q.submit(&record(&run_id, 500_000)).await.expect("submit");
        let (rate, n) = cycles_per_second(&url, &run_id, workers, args.seconds).await;
        q.mark_finalized(&run_id).await.expect("finalize");
        // About as many EVALs as the queue did cycles: about as long a run.
        let requests = (n * 2).max(1_000);
        let eval = redis_benchmark(&host, port, workers, requests, &format!("labelgen:{{{tag}-eval}}:x")).map_or("n/a".to_string(), |r| format!("{r:.0}"));
        println!("{workers:>8} {rate:>14.0} {n:>10} {eval:>26}");
        // The ready list of this level is no longer needed.
        let _: () = redis::cmd("DEL").arg(format!("labelgen:{{{run_id}}}:ready")).query_async(&mut con).await.unwrap();
    }

    println!("\nsubmit of a 1,000,000-image run, shard size 256");
    let shards = 1_000_000u64.div_ceil(256);
    let run_id = format!("{tag}-submit");
    let before = used_memory(&mut con).await;
    let start = Instant::now();
    q.submit(&record(&run_id, shards)).await.expect("submit");
    let took = start.elapsed();
    let after = used_memory(&mut con).await;
    let ready: Option<i64> = redis::cmd("MEMORY").arg("USAGE").arg(format!("labelgen:{{{run_id}}}:ready")).query_async(&mut con).await.ok();
    println!("  jobs                      {shards}");
    println!("  submit                    {:.4} s", took.as_secs_f64());
    println!("  used_memory delta / job   {:.1} bytes (whole run: {} bytes)", (after - before) as f64 / shards as f64, after - before);
    if let Some(ready) = ready {
        println!("  ready list / job          {:.1} bytes (MEMORY USAGE {ready})", ready as f64 / shards as f64);
    }

    // Every job claimed and acked once: the per-shard claim counters and the committed bitmap.
    let (_, n) = cycles_per_second(&url, &run_id, 8, 600.0).await;
    let done = used_memory(&mut con).await;
    println!("  after {n} claim+acks      {:.1} bytes / job (claim counters, committed bitmap)", (done - before) as f64 / shards as f64);
    q.mark_finalized(&run_id).await.expect("finalize");
}
