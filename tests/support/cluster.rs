//! A test cluster: redis-server, moto's S3 server with a bucket `data`, a temporary
//! directory, and the real binaries pointed at them.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::bins::{cmd, run, spawn, stderr, stdout};
use crate::redis::RedisServer;
use crate::s3::S3Server;
use crate::spec::{SpecBuilder, TempDir};

pub struct Cluster {
    pub redis: RedisServer,
    pub s3: S3Server,
    pub dir: TempDir,
}

impl Cluster {
    pub fn start(tag: &str) -> Cluster {
        let redis = RedisServer::start();
        let s3 = S3Server::start();
        s3.create_bucket("data");
        Cluster { redis, s3, dir: TempDir::new(tag) }
    }

    pub fn coordinator(&self, args: &[&str]) -> std::process::Command {
        let mut c = cmd("coordinator");
        c.args(args).env("REDIS_URL", self.redis.url()).envs(self.s3.env());
        c
    }

    pub fn worker(&self, extra_env: &[(&str, &str)]) -> Child {
        let mut c = self.worker_cmd(extra_env);
        c.arg("--exit-when-idle");
        spawn(c)
    }

    /// A `worker` command pointed at this cluster, serving until stopped (no
    /// `--exit-when-idle`); add arguments before spawning it.
    pub fn worker_cmd(&self, extra_env: &[(&str, &str)]) -> std::process::Command {
        let mut c = cmd("worker");
        c.args(["--grace-seconds", "5", "--metrics-addr", "127.0.0.1:0"]).env("REDIS_URL", self.redis.url()).envs(self.s3.env());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    pub fn submit(&self, spec: &SpecBuilder, run_id: &str) -> String {
        let cfg = spec.write(self.dir.path(), &format!("{run_id}.toml"));
        let o = run(self.coordinator(&["submit", cfg.to_str().unwrap(), "--run-id", run_id]));
        assert!(o.status.success(), "submit failed: {}", stderr(&o));
        stdout(&o).lines().last().unwrap_or_default().to_string()
    }

    /// Polls `status --json` until `n` of the run's shards are leased (workers hold them),
    /// for at most `limit`; panics naming the last status otherwise.
    pub fn wait_leased(&self, run_id: &str, n: u64, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let st: serde_json::Value = serde_json::from_str(&stdout(&run(self.coordinator(&["status", run_id, "--json"])))).unwrap_or_default();
            if st["shards"]["leased"] == n {
                return;
            }
            assert!(t0.elapsed() < limit, "{n} shards of {run_id} were never leased at once within {limit:?}: {st}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn watch(&self, run_id: &str) -> std::process::Output {
        run(self.coordinator(&["watch", run_id, "--interval", "0.2"]))
    }
}

/// SIGTERM to every child, then [`wait_all`] for `limit`.
pub fn stop_all(children: &mut [Child], limit: Duration) {
    for c in children.iter() {
        let _ = std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    }
    wait_all(children, limit);
}

pub fn wait_all(children: &mut [Child], limit: Duration) {
    let t0 = Instant::now();
    for c in children.iter_mut() {
        loop {
            if c.try_wait().unwrap().is_some() {
                break;
            }
            if t0.elapsed() > limit {
                let _ = c.kill();
                panic!("a worker did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
