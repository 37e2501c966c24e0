//! `labelgen-eval sampling`: label quality by label model and sampler (see
//! [`crate::sampling`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::backend::Backend;
use shared::spec::{LabelUpscale, RunSpec};
use worker::args::DeviceArg;
use worker::backend::OnBackend;
use worker::device::Resolved;

use worker::bench::Sampler;

use crate::sampling::{evaluate, SamplingOptions, SamplingReport};
use crate::stats::Connectivity;

/// Label quality by label model and sampler: which setting, how many steps?
///
/// Samples --count label maps from each --model with each of --samplers, through the
/// pipeline's own label stage (sampling, then the cleanup, with ramp-strip removal for
/// gray models, and the upscale to the output size), and measures the maps before and after
/// the cleanup against the real set, as `labelgen-eval labels` does: total-variation
/// distances of class shares, component sizes and class adjacency, islands per map,
/// ramp-edge pixels, and the staircase share (class borders on the model's pixel grid).
/// Every row samples the same seeds, so rows differ only by model and sampler.
///
/// Typical use: the paper's setting (gray encoding, ε objective) beside the default
/// (one-hot, x0), trained on the same data, at DDIM 10/20/50 steps and, for the first
/// model only (unless --ddpm-all), full DDPM:
///
///   labelgen-eval sampling --real data/train --spec configs/local.toml --upscale nearest \
///     --model onehot-x0=models/demo/ddpm --model gray-eps=target/sweep/paper \
///     --samplers ddim-10,ddim-20,ddim-50,ddpm --count 128 --out out/eval/sampling
///
/// (--upscale nearest because gray models have no class probabilities to upscale
/// smoothly, and configs/local.toml says smooth.)
///
/// Writes OUT/sampling.json (every figure), OUT/sampling.md (the table, also printed) and
/// OUT/grids/MODEL-SAMPLER.png (the first 64 cleaned maps of each row).
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The real dataset directory (DIR/labels/NAME.png, raw class codes): the models'
    /// training data, read with the class table their model.json records (the AI Hub
    /// land-cover table, or the one `worker train ddpm --classes FILE` was given).
    #[arg(long, value_name = "DIR")]
    pub real: PathBuf,

    /// A label model, as NAME=URI or URI (named by its last path part): a directory,
    /// file:// or s3:// location holding model.json and the weights. Repeat for each model;
    /// rows follow this order.
    #[arg(long = "model", value_name = "NAME=URI", required = true)]
    pub models: Vec<String>,

    /// Samplers, comma-separated, as `worker bench pipeline --samplers` names them: ddim-N
    /// is DDIM with N steps, ddpm is ancestral sampling over all of the model's timesteps
    /// (run for the first --model only, unless --ddpm-all).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "ddim-10,ddim-20,ddim-50,ddpm")]
    pub samplers: Vec<Sampler>,

    /// Run `ddpm` for every model, not only the first.
    #[arg(long)]
    pub ddpm_all: bool,

    /// Label maps per row.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub count: u64,

    /// Maps per network batch.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub batch: usize,

    /// Run seed: map i of every row has seed shared::sample_seed(SEED, i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// A run spec (e.g. configs/local.toml) to take the pipeline's settings from: image
    /// size, [pipeline.cleanup], pipeline.labels.upscale and eta, and pipeline.precision
    /// (the models sample in it; recorded in sampling.json). The flags below override it;
    /// without it they default to the real maps' size and the spec defaults (f32).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,

    /// Output size the maps are upscaled to and measured at; real maps of another size are
    /// resized to it (the most frequent label of each block when shrinking, nearest when
    /// growing). Default: the spec's image_size, else the real maps' most common size (then
    /// each real map is measured at its own size).
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,

    /// nearest or smooth (see pipeline.labels.upscale). Default: the spec's, else nearest.
    #[arg(long)]
    pub upscale: Option<LabelUpscale>,

    /// DDIM η. Default: the spec's, else 0.
    #[arg(long)]
    pub eta: Option<f64>,

    /// The cleanup's opening radius, in output pixels. Default: the spec's, else 2.
    #[arg(long, value_name = "PX")]
    pub open_radius_px: Option<u32>,

    /// The cleanup's island size, in output pixels; also the island threshold of the
    /// statistics (measured at the output size). Default: the spec's, else 100.
    #[arg(long, value_name = "PX")]
    pub min_island_px: Option<u32>,

    /// Component connectivity of the statistics: 8 or 4.
    #[arg(long, value_name = "4|8", default_value_t = Connectivity::Eight)]
    pub connectivity: Connectivity,

    /// Output directory (created if missing; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    crate::sampling::check(&opts)?;
    let rep = worker::backend::dispatch(args.device.device, Work(&opts))?;
    print!("{}", rep.table);
    println!("wrote {}/sampling.json, sampling.md and {} grids under {}/grids", opts.out.display(), rep.grids.len(), opts.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The flags, with the spec's settings where a flag is not given.
fn options(args: &Args) -> anyhow::Result<SamplingOptions> {
    let spec = match &args.spec {
        Some(p) => Some(RunSpec::load(p).with_context(|| format!("--spec {}", p.display()))?),
        None => None,
    };
    let labels = spec.as_ref().and_then(|s| s.pipeline.labels.as_ref());
    let cleanup = spec.as_ref().and_then(|s| s.pipeline.cleanup).unwrap_or_default();
    let models = args
        .models
        .iter()
        .map(|m| match m.split_once('=') {
            Some((name, uri)) if !name.is_empty() && !uri.is_empty() => Ok((name.to_string(), uri.to_string())),
            Some(_) => anyhow::bail!("--model {m:?}: expected NAME=URI or URI"),
            None => {
                let name = m.trim_end_matches('/').rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(m);
                Ok((name.to_string(), m.clone()))
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SamplingOptions {
        real: args.real.clone(),
        models,
        samplers: args.samplers.clone(),
        ddpm_all: args.ddpm_all,
        eta: args.eta.or(labels.map(|l| l.eta)).unwrap_or(0.0),
        count: args.count,
        batch: args.batch,
        seed: args.seed,
        upscale: args.upscale.or(labels.map(|l| l.upscale)).unwrap_or_default(),
        size: args.size.or(spec.as_ref().map(|s| s.pipeline.image_size)),
        open_radius_px: args.open_radius_px.unwrap_or(cleanup.open_radius_px),
        min_island_px: args.min_island_px.unwrap_or(cleanup.min_island_px),
        connectivity: args.connectivity,
        precision: spec.as_ref().map(|s| s.pipeline.precision).unwrap_or_default(),
        out: args.out.clone(),
    })
}

/// [`evaluate`] on the backend --device resolves to.
struct Work<'a>(&'a SamplingOptions);

impl OnBackend for Work<'_> {
    type Output = SamplingReport;
    fn run<B: Backend>(self, device: B::Device, _: Resolved) -> anyhow::Result<SamplingReport> {
        evaluate::<B>(self.0, &device, &mut |done, total| tracing::info!("row {done}/{total} done"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::options;
    use crate::cli::{Cli, Command};
    use worker::bench::Sampler;

    fn args(a: &[&str]) -> super::Args {
        let cli = Cli::try_parse_from(["labelgen-eval", "sampling"].iter().chain(a)).unwrap();
        let Command::Sampling(x) = cli.command else { panic!("not sampling") };
        x
    }

    #[test]
    fn eval_sampling_flags_parse_and_take_the_spec_settings() {
        let a = args(&["--real", "r", "--model", "a=models/x", "--model", "s3://b/m/paper/", "--out", "o"]);
        assert_eq!(a.samplers, vec![Sampler::Ddim(10), Sampler::Ddim(20), Sampler::Ddim(50), Sampler::Ddpm]);
        let o = options(&a).unwrap();
        assert_eq!(o.models, vec![("a".to_string(), "models/x".to_string()), ("paper".to_string(), "s3://b/m/paper/".to_string())]);
        assert_eq!((o.open_radius_px, o.min_island_px, o.size, o.eta), (2, 100, None, 0.0));

        let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/local.toml");
        let o = options(&args(&["--real", "r", "--model", "m", "--out", "o", "--spec", spec, "--min-island-px", "9"])).unwrap();
        assert_eq!((o.open_radius_px, o.min_island_px, o.size, o.upscale), (0, 9, Some(64), shared::spec::LabelUpscale::Smooth));

        assert!(options(&args(&["--real", "r", "--model", "=m", "--out", "o"])).unwrap_err().to_string().contains("NAME=URI"));
        let e = Cli::try_parse_from(["labelgen-eval", "sampling", "--real", "r", "--model", "m", "--out", "o", "--samplers", "ddim-10,ddim-0"]).unwrap_err();
        assert!(e.to_string().contains("expected ddim-N"), "{e}");
        let e = options(&args(&["--real", "r", "--model", "m", "--out", "o", "--spec", "/nonexistent/spec.toml"])).unwrap_err();
        assert!(format!("{e:#}").contains("--spec /nonexistent/spec.toml"), "{e:#}");
    }
}
