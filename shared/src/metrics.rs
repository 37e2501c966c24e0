//! Prometheus metrics of a worker or coordinator, and the small HTTP endpoint that serves
//! them (`/metrics`), with `/healthz` (the process answers) and `/readyz` (it can reach
//! its queue).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

type Labels = Vec<(&'static str, String)>;

/// Every metric labelgen exports. Names carry the `labelgen_` prefix.
pub struct Metrics {
    registry: Registry,
    /// Samples in shards this process committed.
    pub samples_generated: Counter,
    pub jobs_claimed: Counter,
    pub jobs_committed: Counter,
    /// Failed attempts sent back for a retry.
    pub jobs_retried: Counter,
    pub jobs_dead: Counter,
    /// Jobs given back on shutdown or cancel, and leases found lost.
    pub jobs_released: Counter,
    pub leases_lost: Counter,
    pub jobs_in_flight: Gauge,
    /// Seconds per stage (generate, encode, upload), summed over committed shards.
    pub stage_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    /// Shards per run and state (pending, leased, committed, dead), as the coordinator sees them.
    pub queue_shards: Family<Labels, Gauge>,
    pub ready: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("jobs_committed", &self.jobs_committed.get()).finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("labelgen");
        let m = Metrics {
            samples_generated: Counter::default(),
            jobs_claimed: Counter::default(),
            jobs_committed: Counter::default(),
            jobs_retried: Counter::default(),
            jobs_dead: Counter::default(),
            jobs_released: Counter::default(),
            leases_lost: Counter::default(),
            jobs_in_flight: Gauge::default(),
            stage_seconds: Family::default(),
            queue_shards: Family::default(),
            ready: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register("samples_generated", "Samples in shards committed by this process", m.samples_generated.clone());
        registry.register("jobs_claimed", "Jobs (shards) claimed", m.jobs_claimed.clone());
        registry.register("jobs_committed", "Jobs committed (including ones found already committed)", m.jobs_committed.clone());
        registry.register("jobs_retried", "Failed attempts sent back for a retry", m.jobs_retried.clone());
        registry.register("jobs_dead", "Jobs that went dead after their last attempt", m.jobs_dead.clone());
        registry.register("jobs_released", "Jobs given back unfinished (shutdown or cancel)", m.jobs_released.clone());
        registry.register("leases_lost", "Jobs abandoned because their lease was reclaimed", m.leases_lost.clone());
        registry.register("jobs_in_flight", "Jobs being executed now", m.jobs_in_flight.clone());
        registry.register("stage_seconds", "Seconds spent per pipeline stage on committed shards", m.stage_seconds.clone());
        registry.register("queue_shards", "Shards of a run by state", m.queue_shards.clone());
        Arc::new(Metrics { registry, ..m })
    }

    /// Adds one shard's stage times.
    pub fn add_stage_seconds(&self, t: &crate::manifest::StageTimes) {
        for (stage, secs) in [("generate", t.generate), ("encode", t.encode), ("upload", t.upload)] {
            self.stage_seconds.get_or_create(&vec![("stage", stage.to_string())]).inc_by(secs);
        }
    }

    /// Sets the shard gauges of one run.
    pub fn set_queue(&self, run: &str, c: &crate::queue::Counts) {
        for (state, n) in [("pending", c.pending), ("delayed", c.delayed), ("leased", c.leased), ("committed", c.committed), ("dead", c.dead)] {
            self.queue_shards.get_or_create(&vec![("run", run.to_string()), ("state", state.to_string())]).set(n as i64);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends. Returns
/// the bound address (port 0 picks a free one).
pub async fn serve_http(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::io(format!("metrics address {addr}"), e))?;
    let bound = listener.local_addr().map_err(|e| Error::io(format!("metrics address {addr}"), e))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { continue };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (status, ctype, body) = match path {
                    "/metrics" => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode()),
                    "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                    "/readyz" if metrics.ready.load(Ordering::Relaxed) => ("200 OK", "text/plain", "ready\n".to_string()),
                    "/readyz" => ("503 Service Unavailable", "text/plain", "not ready: queue not reachable yet\n".to_string()),
                    _ => ("404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n".to_string()),
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_are_served_over_http() {
        let m = Metrics::new();
        m.jobs_committed.inc_by(3);
        m.add_stage_seconds(&crate::manifest::StageTimes { generate: 1.5, encode: 0.25, upload: 0.5 });
        let addr = serve_http("127.0.0.1:0".parse().unwrap(), m.clone()).await.unwrap();
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let body = get("/metrics").await;
        assert!(body.contains("labelgen_jobs_committed_total 3"), "{body}");
        assert!(body.contains("labelgen_stage_seconds_total{stage=\"generate\"} 1.5"), "{body}");
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        m.ready.store(true, Ordering::Relaxed);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    }
}
