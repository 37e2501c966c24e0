//! `worker run`: the embedded mode — a whole run on this machine with an in-memory queue
//! and in-process job slots, no Redis (`shared::lifecycle::run_embedded`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use shared::lifecycle::{report_end, run_embedded, runid, QueueMode};
use shared::spec::{DeviceChoice, PipelineKind, RunSpec};

/// Generate a dataset on this machine: in-memory queue, in-process workers, no services.
///
/// Same commit protocol, manifest and contact sheet as a Redis deployment. Exit 0 when
/// the manifest lists every sample, 4 when shards are dead, 130 if interrupted (run
/// again with the same --run-id to resume: committed shards are kept), 1 on any other
/// error, 2 on a usage error.
///
/// Example: worker run configs/local.toml
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run spec (TOML), e.g. configs/local.toml.
    pub config: PathBuf,
    /// Jobs generated at once.
    #[arg(long, default_value_t = 2, value_parser = shared::lifecycle::parse_slots)]
    pub workers: usize,
    /// Run id (directory under output.url); generated when absent. Re-running with the
    /// same id and spec keeps the shards already committed.
    #[arg(long, value_parser = shared::lifecycle::runid::parse_arg)]
    pub run_id: Option<String>,
    /// Where models run: auto (CUDA when an NVIDIA driver is present, else CPU), cpu,
    /// cuda, cuda:N, or cuda:all (one pipeline per GPU; give --workers at least the
    /// number of GPUs). Overrides the spec's pipeline.device.
    #[arg(long, env = "LABELGEN_DEVICE", value_name = "DEVICE")]
    pub device: Option<DeviceChoice>,

    #[command(flatten)]
    pub fit: crate::args::FitArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    super::block_on_then_leave(rt, async move {
        let mut spec = RunSpec::load(&args.config)?;
        shared::artifact::prepare(&mut spec).await.with_context(|| format!("{}", args.config.display()))?;
        if spec.pipeline.kind == PipelineKind::DdpmSpade {
            // A device this machine cannot offer is an error now, not a failing job.
            let choice = args.device.unwrap_or(spec.pipeline.device);
            if choice != DeviceChoice::Auto {
                let devices = crate::device::resolve_all(choice, &crate::device::DriverProbe::detect()).with_context(|| format!("{}", args.config.display()))?;
                if devices.len() > args.workers {
                    tracing::warn!(
                        devices = devices.len(),
                        workers = args.workers,
                        "device {choice} loads the models on every GPU but --workers runs fewer jobs at once: some GPUs stay idle (give --workers at least the number of GPUs)"
                    );
                }
            }
        }
        let run_id = runid::pick(args.run_id, "--run-id")?;
        let end = run_embedded(spec, &run_id, args.workers, Arc::new(crate::Factory::new(args.device).with_fit(args.fit))).await?;
        Ok(report_end(&run_id, &end, QueueMode::Embedded))
    })
}
