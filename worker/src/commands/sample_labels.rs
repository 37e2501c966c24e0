//! `worker sample-labels`: samples label maps from a trained DDPM.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::backend::Backend;

use crate::args::DeviceArg;
use crate::backend::OnBackend;
use crate::ddpm::sample_dir::{sample_to_dir, Sampled};
use crate::ddpm::{DdpmModel, SamplerConfig};
use crate::device::Resolved;

/// Sample label maps from a trained DDPM model.
///
/// Writes OUT/labels/{index:06}.png (8-bit raw class codes, like the training labels),
/// OUT/previews/{index:06}.png (colourised) and OUT/grid.png (all previews). Sample i has
/// seed shared::sample_seed(--seed, i), so it is the same whatever --batch.
///
/// Example: worker sample-labels --model /tmp/ddpm-model --count 16 --sampler ddim --steps 20 --out /tmp/ddpm-samples
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model location (path, file:// or s3://) holding model.json and the weights.
    #[arg(long, value_name = "URI")]
    pub model: String,
    /// Number of label maps.
    #[arg(long, value_name = "N")]
    pub count: u64,
    /// Run seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// ddim (fast, --steps steps) or ddpm (ancestral, all T steps).
    #[arg(long, default_value = "ddim", value_parser = ["ddim", "ddpm"])]
    pub sampler: String,
    /// DDIM steps [default: 20, the pipeline's, or T for a model of fewer timesteps]. Not
    /// with --sampler ddpm, which runs all T.
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM η (0: deterministic; 1: as noisy as DDPM) [default: 0]. Not with --sampler ddpm.
    // (A negative value reaches the range check rather than reading as a flag.)
    #[arg(long, allow_negative_numbers = true)]
    pub eta: Option<f64>,
    /// Samples per network batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Write S×S maps made the smooth way (pipeline.labels.upscale = "smooth": the class
    /// probabilities upscaled bilinearly, each pixel's class decided at S), instead of maps
    /// at the model's size; then `worker cleanup --no-ramps` them at S, as the pipeline
    /// does for one-hot models. One-hot models only.
    #[arg(long, value_name = "S")]
    pub smooth_size: Option<u32>,
    /// Output directory: DIR/labels/NNNNNN.png, DIR/previews/NNNNNN.png, DIR/grid.png.
    /// Maps there of an earlier sampling of more maps are removed.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: crate::args::PrecisionArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::args::at_least_one(&[("--count", args.count), ("--batch", args.batch as u64)])?;
    if args.sampler == "ddpm" && (args.steps.is_some() || args.eta.is_some()) {
        // As the run spec: the ancestral sampler runs every timestep, with no η.
        anyhow::bail!("--steps and --eta are DDIM's: --sampler ddpm runs every one of the model's timesteps (leave them out, or use --sampler ddim)");
    }
    let done = crate::backend::dispatch(args.device.device, Sample(&args))?;
    println!(
        "sampled {} label maps of {}×{} in {:.1} s ({:.3} maps/s, {} steps each) to {}",
        done.count,
        done.size,
        done.size,
        done.seconds,
        done.maps_per_sec(),
        done.steps_per_sample,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads --model on the chosen backend and samples into --out.
struct Sample<'a>(&'a Args);

impl OnBackend for Sample<'_> {
    type Output = Sampled;
    fn run<B: Backend>(self, device: B::Device, _: Resolved) -> anyhow::Result<Sampled> {
        let args = self.0;
        let model = DdpmModel::<B>::load(&args.model, &device)?.with_precision(args.precision.precision);
        let (steps, eta) = (args.steps.unwrap_or(shared::spec::default_ddim_steps(model.meta.timesteps)), args.eta.unwrap_or(0.0));
        let sampler = match args.sampler.as_str() {
            "ddpm" => SamplerConfig::ddpm(),
            _ => SamplerConfig::ddim(steps, eta),
        };
        sampler.validate(model.meta.timesteps).map_err(|e| anyhow::anyhow!("--sampler {} --steps {steps} --eta {eta}: {e}", args.sampler))?;
        if let Some(s) = args.smooth_size {
            anyhow::ensure!(
                model.meta.encoding == crate::ddpm::Encoding::OneHot,
                "--smooth-size {s}: the smooth upscale needs a onehot label model; {} is {} (leave --smooth-size out)",
                args.model,
                model.meta.encoding
            );
            anyhow::ensure!((1..=8192).contains(&s), "--smooth-size {s}: must be between 1 and 8192 pixels");
        }
        sample_to_dir(&model, &sampler, args.count, args.seed, args.batch, args.smooth_size, &args.out)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn ddpm_sample_cli_parses() {
        let cli = Cli::try_parse_from(["worker", "sample-labels", "--model", "m", "--count", "4", "--out", "o", "--sampler", "ddpm"]).unwrap();
        let Some(Command::SampleLabels(a)) = cli.command else { panic!("not sample-labels") };
        assert_eq!((a.count, a.sampler.as_str(), a.steps, a.eta, a.batch), (4, "ddpm", None, None, 16));
        let cli = Cli::try_parse_from(["worker", "sample-labels", "--model", "m", "--count", "4", "--out", "o", "--device", "cuda:1"]).unwrap();
        let Some(Command::SampleLabels(a)) = cli.command else { panic!("not sample-labels") };
        assert_eq!(a.device.device, shared::spec::DeviceChoice::Cuda(1));
        assert!(Cli::try_parse_from(["worker", "sample-labels", "--model", "m", "--count", "4", "--out", "o", "--cpu"]).is_err());
        // A negative η is a value (refused by the sampler's range check), not a flag.
        let cli = Cli::try_parse_from(["worker", "sample-labels", "--model", "m", "--count", "4", "--out", "o", "--eta", "-1"]).unwrap();
        let Some(Command::SampleLabels(a)) = cli.command else { panic!("not sample-labels") };
        assert_eq!(a.eta, Some(-1.0));
        let cli = Cli::try_parse_from(["worker", "sample-labels", "--model", "m", "--count", "4", "--out", "o", "--smooth-size", "512"]).unwrap();
        let Some(Command::SampleLabels(a)) = cli.command else { panic!("not sample-labels") };
        assert_eq!(a.smooth_size, Some(512));
    }

    /// As in a run spec, DDIM's --steps and --eta with the ddpm sampler are refused (before
    /// any model is read), not silently ignored.
    #[test]
    fn ddim_settings_with_the_ddpm_sampler_are_refused() {
        for extra in [["--steps", "50"], ["--eta", "0.5"]] {
            let cli =
                Cli::try_parse_from(["worker", "sample-labels", "--model", "no-such-model", "--count", "4", "--out", "o", "--sampler", "ddpm"].into_iter().chain(extra)).unwrap();
            let Some(Command::SampleLabels(a)) = cli.command else { panic!("not sample-labels") };
            let e = super::run(a).unwrap_err().to_string();
            assert!(e.contains("--steps and --eta are DDIM's"), "{e}");
        }
    }

    /// A model of fewer timesteps than the default DDIM steps samples with all of them by
    /// default; asking for more is refused naming --steps.
    #[test]
    fn the_default_steps_fit_a_model_of_few_timesteps() {
        use crate::backend::{Cpu, CpuDevice};
        use crate::ddpm::{DdpmMeta, DdpmModel, Encoding, UNetConfig};
        let dir = std::env::temp_dir().join(format!("labelgen-sample-few-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let unet = UNetConfig::new(Encoding::OneHot.channels(8), 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4);
        let meta = DdpmMeta::untrained(unet, Encoding::OneHot, 5, 8);
        DdpmModel::<Cpu>::new(meta.unet.init(&CpuDevice::default()), meta, CpuDevice::default()).save(dir.join("m").to_str().unwrap()).unwrap();
        let args = |extra: &[&str]| {
            let (m, o) = (dir.join("m"), dir.join("o"));
            let base = ["worker", "sample-labels", "--model", m.to_str().unwrap(), "--count", "2", "--out", o.to_str().unwrap(), "--device", "cpu"];
            let cli = Cli::try_parse_from(base.iter().copied().chain(extra.iter().copied())).unwrap();
            let Some(Command::SampleLabels(a)) = cli.command else { panic!("not sample-labels") };
            a
        };
        super::run(args(&[])).unwrap();
        assert!(dir.join("o/labels/000001.png").is_file());
        let e = super::run(args(&["--steps", "20"])).unwrap_err().to_string();
        assert!(e.contains("--steps 20"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
