//! Helpers for the integration tests: real servers on free loopback ports, the real
//! binaries as processes.
//!
//! # Layout
//! - `redis.rs` — a `redis-server` per test (free port, own directory, AOF on).
//! - `s3.rs` — moto's S3 server per test, and a [`shared::storage::Store`] on it.
//! - `check.rs` — checks of a finished run: exactly N samples, each object and its sha256.
//! - `cli.rs` — the binaries' command lines: every argument documented (their unit tests).
//! - `spec.rs` — run specs written to temporary files; temporary directories.
//! - `proxy.rs` — a fault-injecting HTTP proxy (503s, dropped connections) for S3.
//! - `cluster.rs` — redis + S3 + a directory, and commands pointed at them.
//! - `bins.rs` — the real binaries, built once, run as processes.

pub mod bins;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod proxy;
pub mod redis;
pub mod s3;
pub mod spec;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}
