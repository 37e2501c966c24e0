//! `worker` (no subcommand) / `worker serve`: serve every active run in Redis.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared::job::{serve, WorkerOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Redis URL: redis://[:PASSWORD@]HOST:PORT[/DB], or rediss://… for TLS. The password
    /// may come from a file instead ($REDIS_PASSWORD_FILE, e.g. a mounted Secret); a CA
    /// that is not in the system trust store from $REDIS_TLS_CA_FILE (PEM).
    #[arg(long = "redis", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", hide_env_values = true)]
    pub redis: String,

    /// Jobs executed at once by this process.
    #[arg(long, default_value_t = 1, value_parser = shared::lifecycle::parse_slots)]
    pub concurrency: usize,

    /// Exit once no active run has work left, instead of waiting for new runs. A run this
    /// worker served that Redis no longer knows (a restart without its data) is waited
    /// for up to 10 minutes first: `coordinator watch` rebuilds it from storage.
    #[arg(long)]
    pub exit_when_idle: bool,

    /// On SIGTERM, seconds the jobs in hand may take to finish before they are released
    /// (without spending an attempt). Keep it below the scheduler's own grace period.
    #[arg(long, default_value_t = 25.0, value_parser = shared::lifecycle::parse_seconds)]
    pub grace_seconds: f64,

    /// Failures of this worker's own in a row (storage refusing its credentials, models that
    /// do not load, a full disk) after which it exits non-zero. Each gives its job back
    /// without spending an attempt, marks the worker unready (/readyz) and backs off.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_local_failures: u32,

    /// Seconds to back off after the first failure of this worker's own; doubled each
    /// further one up to 60, each plus up to itself of jitter (so at most 120 s; `shared::retry`).
    #[arg(long, default_value_t = 2.0, value_parser = shared::lifecycle::parse_backoff_seconds)]
    pub local_backoff_seconds: f64,

    /// Name of this worker in leases and logs [default: HOSTNAME-PID-RANDOM, RANDOM new
    /// for every process]. Must be unique among the workers of a queue: after a claim
    /// whose answer was lost, a worker gives back every lease held under its name. With
    /// --concurrency above 1 each slot adds /SLOT.
    #[arg(long)]
    pub owner: Option<String>,

    /// Address of the HTTP endpoint: /metrics (Prometheus), /healthz, /readyz.
    #[arg(long, env = "LABELGEN_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    pub metrics_addr: std::net::SocketAddr,

    /// Do not serve metrics or probes.
    #[arg(long)]
    pub no_metrics: bool,

    /// Where models run: auto (CUDA when an NVIDIA driver is present, else CPU with a
    /// warning), cpu, cuda, cuda:N, or cuda:all (one pipeline per GPU in this process,
    /// one model cache; give --concurrency at least the number of GPUs). Overrides the
    /// run spec's pipeline.device.
    #[arg(long, env = "LABELGEN_DEVICE", value_name = "DEVICE")]
    pub device: Option<shared::spec::DeviceChoice>,

    #[command(flatten)]
    pub fit: crate::args::FitArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(choice) = args.device {
        // Fail at start, not per job, when this machine cannot offer the device.
        let devices = crate::device::resolve_all(choice, &crate::device::DriverProbe::detect()).context("--device")?;
        if devices.len() > args.concurrency {
            tracing::warn!(
                devices = devices.len(),
                concurrency = args.concurrency,
                "--device {choice} loads the models on every GPU but --concurrency runs fewer jobs at once: some GPUs stay idle (give --concurrency at least the number of GPUs)"
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    super::block_on_then_leave(rt, async move {
        let metrics = shared::metrics::Metrics::worker();
        if !args.no_metrics {
            let addr = shared::metrics::serve_http(args.metrics_addr, metrics.clone()).await?;
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
        }
        let queue = Arc::new(shared::queue::RedisQueue::connect(&args.redis).await?);
        metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut opts = WorkerOptions {
            concurrency: args.concurrency,
            exit_when_idle: args.exit_when_idle,
            grace: Duration::from_secs_f64(args.grace_seconds.clamp(0.0, 86_400.0)),
            max_local_failures: args.max_local_failures,
            local_backoff: Duration::from_secs_f64(args.local_backoff_seconds),
            metrics: metrics.clone(),
            ..Default::default()
        };
        if let Some(owner) = args.owner {
            opts.owner = owner;
        }
        tracing::info!(owner = %opts.owner, concurrency = opts.concurrency, "worker serving");
        serve(queue, Arc::new(crate::Factory::new(args.device).with_fit(args.fit)), opts, shared::lifecycle::shutdown_signal()).await?;
        tracing::info!(committed = metrics.jobs_committed.get(), samples = metrics.samples_generated.get(), "worker stopped");
        Ok(ExitCode::SUCCESS)
    })
}
