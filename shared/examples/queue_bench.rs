//! Redis queue benchmark, beside `redis-benchmark` on the same server:
//!
//! 1. claim+ack cycles per second at 1, 8 and 64 concurrent workers (each its own
//!    `RedisQueue`, so its own connection), the worker's way (`ack_and_claim`: one round
//!    trip) and the old way (`claim` then `ack`: three), against redis-benchmark's rate
//!    for one EVAL doing the same Redis calls as a cycle, and for `EVAL "return 1" 0`;
//! 2. a 100,000,000-shard run: submit time, Redis memory per pending shard, per finished
//!    shard (after claims and acks) and after finalize, and the slowest Redis call over
//!    the whole phase (`SLOWLOG`, threshold 1 ms).
//!
//! ```text
//! cargo run --release -p shared --example queue_bench [-- --redis URL] [--seconds S]
//!     [--appendfsync always|everysec|no]
//! ```
//!
//! Without `--redis` it starts its own `redis-server` on a free loopback port (AOF on,
//! `appendfsync everysec` unless told otherwise; `always` is what the integration tests
//! use, `no` turns the AOF off) and removes it afterwards. With `--redis`
//! it only adds runs named `bench-<pid>-…` and finalizes them (and it changes the
//! server's slowlog settings).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::queue::{JobQueue, RedisQueue, RunRecord};

/// Redis calls of one `ack_claim.lua` (ack, then a claim from the cursor with nothing
/// to reclaim), in one EVAL: what the server must do per cycle.
const CYCLE_SCRIPT: &str = r#"
local k = KEYS[1]
local s = redis.call('HINCRBY', k .. ':meta', 'cursor', 1)
redis.call('HMGET', k .. ':meta', 'state', 'shards')
redis.call('HEXISTS', k .. ':meta', 'committed')
redis.call('HGET', k .. ':claims', s)
redis.call('ZREM', k .. ':leased', s)
redis.call('HDEL', k .. ':owners', s)
redis.call('HINCRBY', k .. ':meta', 'committed', 1)
redis.call('SETBIT', k .. ':committed', s, 1)
redis.call('HDEL', k .. ':claims', s)
redis.call('HDEL', k .. ':failures', s)
redis.call('HMGET', k .. ':meta', 'state', 'max_attempts', 'lease_ms', 'backoff_ms', 'max_backoff_ms', 'shards', 'cursor')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZRANGEBYSCORE', k .. ':leased', '-inf', now, 'LIMIT', 0, 1000)
redis.call('ZRANGEBYSCORE', k .. ':delayed', '-inf', now, 'LIMIT', 0, 1000)
redis.call('LPOP', k .. ':ready')
redis.call('STRLEN', k .. ':committed')
redis.call('BITPOS', k .. ':committed', 0, s, -1, 'BIT')
redis.call('HSET', k .. ':meta', 'cursor', s + 1)
redis.call('HINCRBY', k .. ':claims', s + 1, 1)
redis.call('ZADD', k .. ':leased', now + 30000, s + 1)
redis.call('HSET', k .. ':owners', s + 1, 'w1')
redis.call('HGET', k .. ':failures', s + 1)
redis.call('HGET', k .. ':meta', 'priority')
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

/// The run's keys (names after the hash tag) and their `MEMORY USAGE` in all.
async fn run_keys_usage(con: &mut redis::aio::MultiplexedConnection, run_id: &str) -> (String, i64) {
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("labelgen:{{{run_id}}}:*")).query_async(con).await.expect("KEYS");
    let mut total = 0;
    let mut names = Vec::new();
    for key in keys {
        let usage: Option<i64> = redis::cmd("MEMORY").arg("USAGE").arg(&key).query_async(con).await.expect("MEMORY USAGE");
        total += usage.unwrap_or(0);
        names.push(key.rsplit(':').next().unwrap_or_default().to_string());
    }
    names.sort();
    (names.join(", "), total)
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

/// Claim+ack cycles per second with `workers` concurrent clients for `seconds`; one round
/// trip per cycle (`ack_and_claim`) or three (`claim`, then `ack`).
async fn cycles_per_second(url: &str, run_id: &str, workers: usize, seconds: f64, one_trip: bool) -> (f64, u64) {
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
                let mut next = q.claim(&owner).await.expect("claim");
                while let Some(lease) = next {
                    assert_eq!(lease.run_id, run_id);
                    if Instant::now() >= until {
                        q.release(&lease).await.expect("release");
                        break;
                    }
                    next = if one_trip {
                        let (acked, next) = q.ack_and_claim(&lease, &owner).await.expect("ack_and_claim");
                        assert!(acked);
                        next
                    } else {
                        assert!(q.ack(&lease).await.expect("ack"));
                        q.claim(&owner).await.expect("claim")
                    };
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

/// redis-benchmark's rate for `requests` EVALs of `script` (on `key`) with `clients`
/// connections.
fn redis_benchmark(host: &str, port: u16, clients: usize, requests: u64, script: &str, key: Option<&str>) -> Option<f64> {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", host, "-p", &port.to_string(), "-n", &requests.to_string(), "-c", &clients.to_string(), "-q"]).args(["EVAL", script]);
    match key {
        Some(key) => cmd.args(["1", key]),
        None => cmd.arg("0"),
    };
    let out = cmd.output().map_err(|e| eprintln!("redis-benchmark: {e}")).ok()?;
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

    let () = redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(1000).query_async(&mut con).await.unwrap();
    let () = redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(10_000).query_async(&mut con).await.unwrap();

    println!("\nclaim+ack cycles per second: one round trip (ack_and_claim) and three (claim, ack), beside redis-benchmark");
    println!("{:>8} {:>12} {:>12} {:>18} {:>16} {:>10}", "workers", "1-trip/s", "3-trip/s", "EVAL cycle/s", "EVAL return 1/s", "ratio");
    for workers in [1usize, 8, 64] {
        let run_id = format!("{tag}-cycles-{workers}");
        q.submit(&record(&run_id, 100_000_000)).await.expect("submit");
        let (one, n1) = cycles_per_second(&url, &run_id, workers, args.seconds, true).await;
        let (three, n3) = cycles_per_second(&url, &run_id, workers, args.seconds, false).await;
        q.mark_finalized(&run_id).await.expect("finalize");
        // About as many EVALs as the queue did cycles: about as long a run.
        let requests = n1.max(n3).max(1_000);
        let cycle = redis_benchmark(&host, port, workers, requests, CYCLE_SCRIPT, Some(&format!("labelgen:{{{tag}-eval}}:x")));
        let trivial = redis_benchmark(&host, port, workers, requests, "return 1", None);
        let show = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.0}"));
        let ratio = cycle.map_or("n/a".to_string(), |c| format!("{:.2}", one / c));
        println!("{workers:>8} {one:>12.0} {three:>12.0} {:>18} {:>16} {ratio:>10}", show(cycle), show(trivial));
    }
    let _: () = redis::cmd("DEL").arg(format!("labelgen:{{{tag}-eval}}:x:meta")).arg(format!("labelgen:{{{tag}-eval}}:x:committed")).query_async(&mut con).await.unwrap();
    println!("  ratio = 1-trip cycles/s ÷ redis-benchmark's rate for one EVAL doing the same Redis calls");

    const SHARDS: u64 = 100_000_000;
    println!("\na run of {SHARDS} shards");
    let () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut con).await.unwrap();
    let run_id = format!("{tag}-submit");
    let before = used_memory(&mut con).await;
    let start = Instant::now();
    q.submit(&record(&run_id, SHARDS)).await.expect("submit");
    let took = start.elapsed();
    let after = used_memory(&mut con).await;
    println!("  submit                          {:.2} ms", took.as_secs_f64() * 1e3);
    println!("  used_memory after submit        {:+} bytes ({:.6} bytes per pending shard)", after - before, (after - before) as f64 / SHARDS as f64);
    let status = Instant::now();
    let c = q.counts(&run_id).await.expect("counts");
    println!("  counts (status, watch)          {:.2} ms (pending {})", status.elapsed().as_secs_f64() * 1e3, c.pending);

    let (rate, n) = cycles_per_second(&url, &run_id, 8, args.seconds * 3.0, true).await;
    let done = used_memory(&mut con).await;
    println!("  {n} shards claimed and acked ({rate:.0}/s): used_memory {:+} bytes, {:.3} bytes per finished shard", done - after, (done - after) as f64 / n as f64);
    let (keys, bytes) = run_keys_usage(&mut con, &run_id).await;
    println!("    the run's keys: {keys} ({bytes} bytes by MEMORY USAGE, {:.3} per finished shard)", bytes as f64 / n as f64);
    q.mark_finalized(&run_id).await.expect("finalize");
    let finalized = used_memory(&mut con).await;
    println!("  used_memory after finalize      {:+} bytes against before submit", finalized - before);
    let (keys, bytes) = run_keys_usage(&mut con, &run_id).await;
    println!("    the run's keys: {keys} ({bytes} bytes by MEMORY USAGE)");
    let slow: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(10_000).query_async(&mut con).await.unwrap();
    let micros: Vec<i64> = slow
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(f) => f.get(2).and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok()),
            _ => None,
        })
        .collect();
    match micros.iter().max() {
        Some(max) => println!("  slowest Redis call              {:.2} ms ({} calls over 1 ms)", *max as f64 / 1e3, micros.len()),
        None => println!("  slowest Redis call              under 1 ms (none in SLOWLOG)"),
    }
}
