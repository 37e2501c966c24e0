//! `worker sample-labels`: samples label maps from a trained DDPM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::dataset::grid;
use shared::sample_seed;

use crate::ddpm::{DdpmModel, SamplerConfig};

/// Sample label maps from a trained DDPM model.
///
/// Writes OUT/labels/{index:06}.png (8-bit raw class codes, like the training labels),
/// OUT/previews/{index:06}.png (colourised) and OUT/grid.png (all previews). Sample i has
/// seed shared::sample_seed(--seed, i), so it is the same whatever --batch.
///
/// Example: worker sample-labels --model /tmp/ddpm-model --count 16 --sampler ddim --steps 50 --out /tmp/ddpm-samples
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
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// DDIM η (0: deterministic; 1: as noisy as DDPM).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Samples per network batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Sample on the CPU even when built with CUDA (a CUDA build uses the GPU when an
    /// NVIDIA driver is present, else the CPU with a warning).
    #[arg(long)]
    pub cpu: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.count == 0 || args.batch == 0 {
        anyhow::bail!("--count and --batch must be at least 1");
    }
    #[cfg(feature = "cuda")]
    if crate::device::use_cuda(args.cpu) {
        return run_on::<crate::backend::Gpu>(&args, &Default::default());
    }
    run_on::<crate::backend::Cpu>(&args, &Default::default())
}

fn run_on<B: burn::tensor::backend::Backend>(args: &Args, device: &B::Device) -> anyhow::Result<ExitCode> {
    let model = DdpmModel::<B>::load(&args.model, device)?;
    let sampler = match args.sampler.as_str() {
        "ddpm" => SamplerConfig::ddpm(),
        _ => SamplerConfig::ddim(args.steps, args.eta),
    };
    sampler.validate(model.meta.timesteps).map_err(|e| anyhow::anyhow!("--sampler {} --steps {} --eta {}: {e}", args.sampler, args.steps, args.eta))?;
    let labels_dir = args.out.join("labels");
    let previews_dir = args.out.join("previews");
    for d in [&labels_dir, &previews_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let per_sample = sampler.num_steps(model.meta.timesteps) as u64;
    let bar = ProgressBar::with_draw_target(Some(args.count * per_sample), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}  ETA {eta}").expect("a valid template").progress_chars("=> "));
    let start = Instant::now();
    let classes = model.classes().clone();
    let mut previews = Vec::new();
    let mut done = 0u64;
    let indices: Vec<u64> = (0..args.count).collect();
    for chunk in indices.chunks(args.batch) {
        let seeds: Vec<u64> = chunk.iter().map(|&i| sample_seed(args.seed, i)).collect();
        let base = bar.position();
        bar.set_message(format!("{done}/{} maps", args.count));
        let maps = model.sample_with_progress(&seeds, &sampler, &mut |step, _| bar.set_position(base + step as u64 * chunk.len() as u64));
        for (&i, map) in chunk.iter().zip(&maps) {
            let name = format!("{i:06}.png");
            let p = labels_dir.join(&name);
            std::fs::write(&p, map.to_png(&classes)).with_context(|| format!("writing {}", p.display()))?;
            let rgb = map.colorize(&classes);
            let p = previews_dir.join(&name);
            std::fs::write(&p, rgb.to_png()).with_context(|| format!("writing {}", p.display()))?;
            if previews.len() < 256 {
                previews.push(rgb);
            }
        }
        done += chunk.len() as u64;
    }
    bar.finish_and_clear();
    let cols = (previews.len() as f64).sqrt().ceil() as usize;
    let p = args.out.join("grid.png");
    std::fs::write(&p, grid(&previews, cols).to_png()).with_context(|| format!("writing {}", p.display()))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sampled {} label maps of {}×{} in {secs:.1} s ({:.3} maps/s, {per_sample} steps each) to {}",
        args.count,
        model.size(),
        model.size(),
        args.count as f64 / secs.max(1e-9),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn ddpm_sample_cli_parses() {
        let cli = Cli::try_parse_from(["worker", "sample-labels", "--model", "m", "--count", "4", "--out", "o", "--sampler", "ddpm"]).unwrap();
        let Some(Command::SampleLabels(a)) = cli.command else { panic!("not sample-labels") };
        assert_eq!((a.count, a.sampler.as_str(), a.steps, a.batch), (4, "ddpm", 50, 16));
    }
}
