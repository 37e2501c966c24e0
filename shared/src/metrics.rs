//! Prometheus metrics of a worker or coordinator, and the small HTTP endpoint that serves
//! them (`/metrics`), with `/healthz` (the process answers) and `/readyz` (it can reach
//! its queue).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

type Labels = Vec<(&'static str, String)>;

/// A counter per run (`run` label), plus this process's total over all runs (for logs
/// and tests; not exported).
#[derive(Debug, Default)]
pub struct RunCounter {
    family: Family<Labels, Counter>,
    total: Counter,
}

impl RunCounter {
    pub fn inc(&self, run: &str) {
        self.inc_by(run, 1);
    }

    pub fn inc_by(&self, run: &str, n: u64) {
        self.family.get_or_create(&vec![("run", run.to_string())]).inc_by(n);
        self.total.inc_by(n);
    }

    /// The total over all runs.
    pub fn get(&self) -> u64 {
        self.total.get()
    }
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Shard durations, 1 s to about 4.5 h in doubling buckets.
fn shard_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

/// Every metric labelgen exports. Names carry the `labelgen_` prefix, but the standard
/// `process_*` metrics. A worker ([`Metrics::worker`]) exports the job counters, each with
/// a `run` label; a coordinator ([`Metrics::coordinator`]) exports the queue gauges only,
/// so it never shows worker counters stuck at zero. Both export `labelgen_build_info` and
/// the process metrics.
pub struct Metrics {
    registry: Registry,
    /// Samples in shards this process committed.
    pub samples_generated: RunCounter,
    pub jobs_claimed: RunCounter,
    pub jobs_committed: RunCounter,
    /// Failed attempts sent back for a retry.
    pub jobs_retried: RunCounter,
    pub jobs_dead: RunCounter,
    /// Jobs given back on shutdown or cancel, and leases found lost.
    pub jobs_released: RunCounter,
    pub leases_lost: RunCounter,
    /// Bytes of committed shards' objects (images, labels, tars) written to the store.
    pub uploaded_bytes: RunCounter,
    pub jobs_in_flight: Gauge,
    /// Seconds per stage (generate, encode, upload), summed over committed shards, by run.
    pub stage_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    /// Seconds from the start of generation to the commit of each committed shard, by run.
    pub shard_seconds: HistogramFamily,
    /// Shards per run and state (pending, leased, committed, dead), as the coordinator sees them.
    pub queue_shards: Family<Labels, Gauge>,
    /// Shards pending or leased over every active run (`coordinator metrics`): the
    /// workers wanted, what the KEDA ScaledObject scales on.
    pub queue_work: Gauge,
    /// Active runs (`coordinator metrics`).
    pub active_runs: Gauge,
    pub ready: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("jobs_committed", &self.jobs_committed.get()).finish_non_exhaustive()
    }
}

impl Metrics {
    /// A worker's metrics.
    pub fn worker() -> Arc<Metrics> {
        Self::build("worker")
    }

    /// A coordinator's metrics.
    pub fn coordinator() -> Arc<Metrics> {
        Self::build("coordinator")
    }

    fn build(component: &'static str) -> Arc<Metrics> {
        let mut root = Registry::default();
        let m = Metrics {
            samples_generated: RunCounter::default(),
            jobs_claimed: RunCounter::default(),
            jobs_committed: RunCounter::default(),
            jobs_retried: RunCounter::default(),
            jobs_dead: RunCounter::default(),
            jobs_released: RunCounter::default(),
            leases_lost: RunCounter::default(),
            uploaded_bytes: RunCounter::default(),
            jobs_in_flight: Gauge::default(),
            stage_seconds: Family::default(),
            shard_seconds: Family::new_with_constructor(shard_histogram),
            queue_shards: Family::default(),
            queue_work: Gauge::default(),
            active_runs: Gauge::default(),
            ready: AtomicBool::new(false),
            registry: Registry::default(),
        };
        root.register_collector(Box::new(ProcessCollector));
        let reg = root.sub_registry_with_prefix("labelgen");
        let info: Family<Labels, Gauge> = Family::default();
        info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string()), ("component", component.to_string())]).set(1);
        reg.register("build_info", "labelgen version and component (worker or coordinator); always 1", info);
        if component == "worker" {
            let counters = [
                ("samples_generated", "Samples in shards committed by this process", &m.samples_generated),
                ("jobs_claimed", "Jobs (shards) claimed", &m.jobs_claimed),
                ("jobs_committed", "Jobs committed (including ones found already committed)", &m.jobs_committed),
                ("jobs_retried", "Failed attempts sent back for a retry", &m.jobs_retried),
                ("jobs_dead", "Jobs that went dead after their last attempt", &m.jobs_dead),
                ("jobs_released", "Jobs given back unfinished (shutdown, cancel or this worker's fault)", &m.jobs_released),
                ("leases_lost", "Jobs abandoned because their lease was reclaimed or went unconfirmed for a whole lease (Redis unreachable)", &m.leases_lost),
                ("uploaded_bytes", "Bytes of committed shards written to the output store", &m.uploaded_bytes),
            ];
            for (name, help, c) in counters {
                reg.register(name, help, c.family.clone());
            }
            reg.register("jobs_in_flight", "Jobs being executed now", m.jobs_in_flight.clone());
            reg.register("stage_seconds", "Seconds spent per pipeline stage on committed shards", m.stage_seconds.clone());
            reg.register("shard_seconds", "Seconds from the start of a shard's generation to its commit", m.shard_seconds.clone());
        } else {
            reg.register("queue_shards", "Shards of a run by state", m.queue_shards.clone());
            reg.register("queue_work", "Shards pending or leased over every active run (coordinator metrics)", m.queue_work.clone());
            reg.register("active_runs", "Runs that may be claimed from (coordinator metrics)", m.active_runs.clone());
        }
        Arc::new(Metrics { registry: root, ..m })
    }

    /// Records one committed shard of `run`: its samples, bytes, stage times and duration.
    pub fn committed(&self, run: &str, rec: &crate::manifest::CommitRecord, seconds: f64) {
        self.jobs_committed.inc(run);
        self.samples_generated.inc_by(run, rec.samples.len() as u64);
        self.uploaded_bytes.inc_by(run, rec.stage_seconds.bytes);
        self.add_stage_seconds(run, &rec.stage_seconds);
        self.shard_seconds.get_or_create(&vec![("run", run.to_string())]).observe(seconds);
    }

    /// Adds one shard's stage times.
    pub fn add_stage_seconds(&self, run: &str, t: &crate::manifest::StageTimes) {
        for (stage, secs) in [("generate", t.generate), ("encode", t.encode), ("upload", t.upload)] {
            self.stage_seconds.get_or_create(&vec![("run", run.to_string()), ("stage", stage.to_string())]).inc_by(secs);
        }
    }

    /// Sets the shard gauges of one run.
    pub fn set_queue(&self, run: &str, c: &crate::queue::Counts) {
        for (state, n) in [("pending", c.pending), ("delayed", c.delayed), ("leased", c.leased), ("committed", c.committed), ("dead", c.dead)] {
            self.queue_shards.get_or_create(&vec![("run", run.to_string()), ("state", state.to_string())]).set(n as i64);
        }
    }

    /// Sets the gauges of every active run at once (`coordinator metrics`): the per-run
    /// gauges of runs no longer active go, and the totals follow.
    pub fn set_active(&self, runs: &[(String, crate::queue::Counts)]) {
        self.queue_shards.clear();
        for (run, c) in runs {
            self.set_queue(run, c);
        }
        self.queue_work.set(runs.iter().map(|(_, c)| (c.pending + c.leased) as i64).sum());
        self.active_runs.set(runs.len() as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }
}

/// The standard `process_*` metrics (CPU seconds, resident and virtual memory, open file
/// descriptors, threads, start time), read from `/proc/self` at each scrape. Elsewhere
/// than Linux they are absent.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Ok(()) };
        // Fields after the command name (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0) * 1024.0;
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())).unwrap_or(0.0);
        let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0);
        let cpu = ConstCounter::new((field(14) + field(15)) / CLOCK_TICKS);
        cpu.encode(encoder.encode_descriptor("process_cpu_seconds", "Total user and system CPU time spent in seconds", None, cpu.metric_type())?)?;
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory size in bytes", kb("VmRSS:")),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", kb("VmSize:")),
            ("process_open_fds", "Number of open file descriptors", fds),
            ("process_threads", "Number of OS threads in the process", field(20)),
            ("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds", boot + field(22) / CLOCK_TICKS),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
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
        let m = Metrics::worker();
        m.jobs_committed.inc_by("r1", 3);
        m.jobs_committed.inc("r2");
        assert_eq!(m.jobs_committed.get(), 4);
        m.add_stage_seconds("r1", &crate::manifest::StageTimes { generate: 1.5, encode: 0.25, upload: 0.5, bytes: 0 });
        m.shard_seconds.get_or_create(&vec![("run", "r1".to_string())]).observe(3.0);
        let addr = serve_http("127.0.0.1:0".parse().unwrap(), m.clone()).await.unwrap();
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let body = get("/metrics").await;
        for want in [
            "labelgen_jobs_committed_total{run=\"r1\"} 3",
            "labelgen_jobs_committed_total{run=\"r2\"} 1",
            "labelgen_stage_seconds_total{run=\"r1\",stage=\"generate\"} 1.5",
            "labelgen_shard_seconds_bucket{le=\"4.0\",run=\"r1\"} 1",
            "labelgen_build_info{version=\"",
            "component=\"worker\"} 1",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
        ] {
            assert!(body.contains(want), "missing {want:?} in\n{body}");
        }
        assert!(!body.contains("queue_shards"), "a worker exports no queue gauges");
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        m.ready.store(true, Ordering::Relaxed);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    }

    /// The coordinator exports its queue gauges, build info and process metrics, and no
    /// worker counter (they would sit at zero there).
    #[test]
    fn the_coordinator_exports_no_worker_counters() {
        let m = Metrics::coordinator();
        m.set_queue("r", &crate::queue::Counts { pending: 2, dead: 1, ..Default::default() });
        let body = m.encode();
        assert!(body.contains("labelgen_queue_shards{run=\"r\",state=\"dead\"} 1"), "{body}");
        assert!(body.contains("component=\"coordinator\"} 1") && body.contains("process_start_time_seconds"), "{body}");
        for name in ["jobs_committed", "samples_generated", "stage_seconds", "shard_seconds", "uploaded_bytes"] {
            assert!(!body.contains(name), "{name} in the coordinator's metrics:\n{body}");
        }
    }
}
