//! End-to-end throughput of the `procedural` pipeline at 256×256: worker processes served
//! by a real redis-server, writing to a local directory, against the same pipeline in a
//! plain loop writing files. Prints figures; asserts nothing about time.
//!
//! `cargo bench -p labelgen-tests --bench e2e [-- COUNT]`

use std::path::Path;
use std::process::Child;
use std::time::Instant;

use labelgen_tests::bins::{cmd, run, spawn, stderr};
use labelgen_tests::redis::RedisServer;
use labelgen_tests::spec::{SpecBuilder, TempDir};
use rayon::prelude::*;
use shared::procedural::{sample, ClassShares};
use shared::ClassTable;

const SIZE: u32 = 256;

fn plain_loop(out: &Path, count: u64, threads: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    std::fs::create_dir_all(out).unwrap();
    let classes = ClassTable::ai_hub();
    let shares = ClassShares::default();
    let t0 = Instant::now();
    pool.install(|| {
        (0..count).into_par_iter().for_each(|i| {
            let (img, label) = sample(1, i, SIZE, &shares);
            std::fs::write(out.join(format!("{i:08}.png")), img.to_png()).unwrap();
            std::fs::write(out.join(format!("{i:08}.label.png")), label.to_png(&classes)).unwrap();
        })
    });
    count as f64 / t0.elapsed().as_secs_f64()
}

fn redis_mode(dir: &Path, count: u64, workers: usize) -> f64 {
    let redis = RedisServer::start();
    let out = dir.join(format!("out-{workers}"));
    let mut spec = SpecBuilder::new(out.to_str().unwrap());
    spec.count = count;
    spec.shard_size = 32;
    spec.size = SIZE;
    spec.batch = 8;
    spec.lease_seconds = 60;
    let cfg = spec.write(dir, &format!("bench-{workers}.toml"));
    let mut c = cmd("coordinator");
    c.args(["submit", cfg.to_str().unwrap(), "--run-id", "bench"]).env("REDIS_URL", redis.url());
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let t0 = Instant::now();
    let mut ws: Vec<Child> = (0..workers)
        .map(|_| {
            let mut c = cmd("worker");
            c.args(["--exit-when-idle", "--no-metrics"]).env("REDIS_URL", redis.url()).env("RAYON_NUM_THREADS", "1");
            spawn(c)
        })
        .collect();
    let mut c = cmd("coordinator");
    c.args(["watch", "bench", "--interval", "0.05"]).env("REDIS_URL", redis.url());
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let secs = t0.elapsed().as_secs_f64();
    for w in ws.iter_mut() {
        w.wait().unwrap();
    }
    count as f64 / secs
}

fn main() {
    let count: u64 = std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(512);
    let dir = TempDir::new("bench-e2e");
    println!("procedural {SIZE}x{SIZE}, {count} samples, PNG pairs to a local directory");
    println!("{:<44} {:>10} {:>10}", "setup", "images/s", "overhead");
    for n in [1usize, 2] {
        let plain = plain_loop(&dir.path().join(format!("plain-{n}")), count, n);
        let orchestrated = redis_mode(dir.path(), count, n);
        println!("{:<44} {:>10.1}", format!("plain loop, {n} thread(s)"), plain);
        println!("{:<44} {:>10.1} {:>9.1}%", format!("redis + {n} worker process(es), 1 thread each"), orchestrated, (1.0 - orchestrated / plain) * 100.0);
    }
}
