//! `worker bench`: measured figures for the `ddpm-spade` pipeline (per-stage time per
//! image, images/s) and a CPU-versus-CUDA comparison of the same samples ([`crate::bench`]).
//! Used by `scripts/gpu-check.sh`; prints tables, asserts nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use shared::spec::DeviceChoice;

use crate::bench::{self, Models, PipelineBench, Sampler};

/// Measure the ddpm-spade pipeline.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Per-stage time per image (sample, cleanup, synthesize, encode, upload) and
    /// images/s, for the models of a run spec or for full-size random models.
    ///
    /// Example: worker bench pipeline configs/local.toml --batch-sizes 1,8 --samplers ddim-50,ddpm
    Pipeline(PipelineArgs),
    /// Runs the same samples on the CPU and on CUDA and compares them: label pixel
    /// agreement and the images' mean absolute difference.
    ///
    /// Example: worker bench compare configs/local.toml --count 8
    Compare(CompareArgs),
}

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// A ddpm-spade run spec (its models, cleanup and image size are used).
    pub config: Option<PathBuf>,
    /// Instead of a spec's models: randomly initialised full-size models — the 35.7M
    /// CIFAR-config UNet on 64×64 one-hot labels and the 92M SPADE generator — at this
    /// image size (e.g. 512).
    #[arg(long, value_name = "SIZE", conflicts_with = "config")]
    pub random_full_size: Option<u32>,
    #[command(flatten)]
    pub device: crate::args::DeviceArg,
    /// Batch sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch_sizes: Vec<usize>,
    /// Samplers to time, comma-separated: ddim-N (N steps) or ddpm (all timesteps).
    #[arg(long, value_delimiter = ',', default_value = "ddim-50")]
    pub samplers: Vec<Sampler>,
    /// Timed batches per setting.
    #[arg(long, default_value_t = 2)]
    pub batches: usize,
    /// Untimed warm-up batches before the timed ones (0 for slow settings like ddpm).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// A ddpm-spade run spec.
    pub config: PathBuf,
    /// Samples compared (sample indices 0..count of the spec's run).
    #[arg(long, default_value_t = 8)]
    pub count: u64,
    /// The CUDA device to compare against the CPU.
    #[arg(long, default_value = "cuda:0")]
    pub device: DeviceChoice,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Pipeline(args) => pipeline(args),
        BenchCommand::Compare(args) => compare(args),
    }
}

fn pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    if args.batch_sizes.contains(&0) || args.batches == 0 {
        bail!("--batch-sizes and --batches must be at least 1");
    }
    let models = match (args.config, args.random_full_size) {
        (Some(config), _) => Models::Spec(config),
        (None, Some(size)) => Models::RandomFullSize(size),
        (None, None) => bail!("give a ddpm-spade run spec or --random-full-size SIZE"),
    };
    let work = PipelineBench { models, samplers: args.samplers, batch_sizes: args.batch_sizes, batches: args.batches, warmup: args.warmup };
    print!("{}", crate::backend::dispatch(args.device.device, work)?);
    Ok(ExitCode::SUCCESS)
}

fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let spec = bench::load_spec(&args.config)?;
    let DeviceChoice::Cuda(n) = args.device else { bail!("--device: expected cuda or cuda:N, found {}", args.device) };
    crate::device::resolve(args.device, &crate::device::DriverProbe::detect())?;
    print!("{}", bench::compare(&spec, args.count, n)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn bench_cli_parses() {
        let cli = Cli::try_parse_from(["worker", "bench", "pipeline", "--random-full-size", "64", "--samplers", "ddim-10,ddpm", "--device", "cpu"]).unwrap();
        let Some(Command::Bench(BenchCommand::Pipeline(a))) = cli.command else { panic!("not bench pipeline") };
        assert_eq!((a.samplers, a.batch_sizes, a.device.device), (vec![Sampler::Ddim(10), Sampler::Ddpm], vec![1, 8], DeviceChoice::Cpu));
        let e = Cli::try_parse_from(["worker", "bench", "pipeline", "--samplers", "plms"]).unwrap_err().to_string();
        assert!(e.contains("--samplers") && e.contains("ddim-N"), "{e}");
        let e = pipeline(PipelineArgs { batch_sizes: vec![0], ..pipeline_args() }).unwrap_err().to_string();
        assert!(e.contains("--batch-sizes"), "{e}");
        let e = pipeline(pipeline_args()).unwrap_err().to_string();
        assert!(e.contains("--random-full-size"), "{e}");
    }

    fn pipeline_args() -> PipelineArgs {
        let cli = Cli::try_parse_from(["worker", "bench", "pipeline"]).unwrap();
        let Some(Command::Bench(BenchCommand::Pipeline(a))) = cli.command else { panic!("not bench pipeline") };
        a
    }
}
