//! `worker bench`: measured figures for the `ddpm-spade` pipeline (per-stage time per
//! image, images/s), a CPU-versus-CUDA comparison of the same samples, the nearest
//! versus smooth label upscale ([`crate::bench`]), the training loader and the image
//! encodings.
//! Used by `scripts/gpu-check.sh`; prints tables. Only `compare` fails (exit 1) on bounds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::builder::TypedValueParser;
use shared::spec::{DeviceChoice, Precision};

use crate::bench::{self, Models, PipelineBench, Sampler};

/// Benchmarks: the ddpm-spade pipeline, upscaling, the training loader, encoding.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Per-stage time per image (sample, cleanup, synthesize, encode, upload) and
    /// images/s, for the models of a run spec or for full-size random models.
    ///
    /// Example: worker bench pipeline configs/local.toml --batch-sizes 1,8 --samplers ddim-20,ddpm --precisions f32,bf16
    Pipeline(PipelineArgs),
    /// Runs the same samples on the CPU (f32) and on CUDA (each of --precisions) and
    /// compares them: label pixel agreement and the images' mean absolute difference.
    /// Exits 1 when a precision misses --min-agreement or --max-mae.
    ///
    /// Example: worker bench compare configs/local.toml --count 8 --precisions f32,bf16,f16
    Compare(CompareArgs),
    /// Brings the same sampled label maps to full size both ways — nearest (cleaned at
    /// the model's size, pixels repeated) and smooth (class probabilities upscaled
    /// bilinearly, cleaned at full size) — and prints the staircase measure (share of
    /// class boundaries on the model's pixel grid) and sample and cleanup ms per map.
    ///
    /// Example: worker bench upscale models/demo/ddpm --size 512 --count 32
    Upscale(UpscaleArgs),
    /// The SPADE training loader alone: images/s reading and resizing a dataset's pairs
    /// one at a time on one thread (as training did) and in parallel batches read ahead
    /// (as `worker train spade` does now), with no model.
    ///
    /// Example: worker procedural --count 64 --size 512 --out /tmp/p512 && worker bench loader --data /tmp/p512 --size 512
    Loader(LoaderArgs),
    /// Bytes per sample and encode/decode ms per image for each `output.image_format`
    /// (PNG, JPEG at two qualities, lossless WebP) on a dataset's images; the label PNG's
    /// bytes beside them (labels are always PNG). One thread, as each encode runs.
    ///
    /// Example: worker procedural --count 16 --size 512 --out /tmp/p512 && worker bench encode --data /tmp/p512
    Encode(EncodeArgs),
}

#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// Dataset directory (images/ + labels/ PNG pairs).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Pairs measured (the first N of the directory).
    #[arg(long, default_value_t = 16)]
    pub count: usize,
}

#[derive(Debug, clap::Args)]
pub struct LoaderArgs {
    /// Dataset directory (images/ + labels/ PNG pairs).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Side the pairs are resized to.
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    /// Pairs per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Batches read each way.
    #[arg(long, default_value_t = 4)]
    pub batches: u64,
}

#[derive(Debug, clap::Args)]
pub struct UpscaleArgs {
    /// A onehot label model (directory or s3:// prefix holding model.json).
    pub model: String,
    /// Output side in pixels (a whole multiple of the model's).
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    /// Maps per mode.
    #[arg(long, default_value_t = 32)]
    pub count: usize,
    /// Maps sampled at once.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// DDIM steps.
    #[arg(long, default_value_t = shared::spec::DEFAULT_DDIM_STEPS)]
    pub steps: usize,
    /// Opening radius in output pixels (the pipeline's default).
    #[arg(long, default_value_t = shared::cleanup::DEFAULT_OPEN_RADIUS)]
    pub open_radius_px: u32,
    /// Islands under this many output pixels are removed (the pipeline's default).
    #[arg(long, default_value_t = shared::cleanup::DEFAULT_MIN_ISLAND)]
    pub min_island_px: u32,
    #[command(flatten)]
    pub device: crate::args::DeviceArg,
}

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// A ddpm-spade run spec: its models, cleanup, image size and batch sizes are used,
    /// and its sampler, precision and overlap unless the flags below name others.
    pub config: Option<PathBuf>,
    /// Instead of a spec's models: randomly initialised full-size models — the 35.7M
    /// CIFAR-config UNet on 64×64 one-hot labels and the 94.6M SPADE generator (label input) — at this
    /// image size (e.g. 512).
    #[arg(long, value_name = "SIZE", conflicts_with = "config")]
    pub random_full_size: Option<u32>,
    #[command(flatten)]
    pub device: crate::args::DeviceArg,
    /// Samples per batch to time, comma-separated: each is handed to the pipeline at once
    /// and is both models' batch unless --label-batch / --image-batch (or the spec) say
    /// otherwise.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch_sizes: Vec<usize>,
    /// Precisions to time, comma-separated: f32, bf16, f16. Rows after f32's are compared
    /// with it: label pixel agreement and image mean absolute difference (0-255) of the
    /// first timed batch. [default: the spec's pipeline.precision, else f32]
    #[arg(long, value_delimiter = ',')]
    pub precisions: Vec<shared::spec::Precision>,
    /// Samplers to time, comma-separated: ddim-N (N steps) or ddpm (all timesteps).
    /// [default: the spec's pipeline.labels sampler and steps, else ddim-20]
    #[arg(long, value_delimiter = ',')]
    pub samplers: Vec<Sampler>,
    /// DDPM batch size (pipeline.labels.batch_size), overriding the spec's; default: the
    /// spec's, else each --batch-sizes value.
    #[arg(long, value_name = "N")]
    pub label_batch: Option<usize>,
    /// SPADE batch size (pipeline.images.batch_size), overriding the spec's; default: the
    /// spec's, else each --batch-sizes value.
    #[arg(long, value_name = "N")]
    pub image_batch: Option<usize>,
    /// pipeline.overlap settings to time, comma-separated: on (the DDPM samples the next
    /// batch while SPADE paints this one), off (one after the other), or on,off for both
    /// side by side. [default: the spec's pipeline.overlap, else on]
    #[arg(long, value_delimiter = ',', value_name = "on|off", value_parser = clap::builder::PossibleValuesParser::new(["on", "off"]).map(|s| s == "on"))]
    pub overlap: Vec<bool>,
    /// Timed batches per setting (after the warm-up ones, as one job's batches).
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
    /// Precisions run on CUDA, comma-separated (f32, bf16, f16); the CPU runs f32.
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    pub precisions: Vec<shared::spec::Precision>,
    /// Least mean share of label pixels equal to the CPU's.
    #[arg(long, default_value_t = 0.995)]
    pub min_agreement: f64,
    /// Largest mean absolute difference of image bytes (0-255) from the CPU's.
    #[arg(long, default_value_t = 2.0)]
    pub max_mae: f64,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Pipeline(args) => pipeline(args),
        BenchCommand::Compare(args) => compare(args),
        BenchCommand::Upscale(args) => upscale(args),
        BenchCommand::Loader(args) => loader(args),
        BenchCommand::Encode(args) => encode(args),
    }
}

fn encode(args: EncodeArgs) -> anyhow::Result<ExitCode> {
    use shared::dataset::{Dataset, DatasetOptions};
    use shared::{ImageEncoding, RgbImage};
    let classes = shared::ClassTable::ai_hub();
    let dataset = Dataset::open_with(&args.data, classes.clone(), &DatasetOptions { test_fraction: 0.0, labels_only: false, ..DatasetOptions::default() })?;
    let stems: Vec<String> = dataset.train.iter().take(args.count).cloned().collect();
    anyhow::ensure!(!stems.is_empty(), "--data {}: no pairs", args.data.display());
    let pairs = stems.iter().map(|s| Ok((dataset.image(s, None)?, dataset.label(s, None)?))).collect::<anyhow::Result<Vec<_>>>()?;
    let n = pairs.len() as f64;
    let label_bytes = pairs.iter().map(|(_, l)| l.to_png(&classes).len()).sum::<usize>() as f64 / n;
    let (w, h) = (pairs[0].0.width, pairs[0].0.height);
    println!("image encodings, {} images of {w}×{h} from {}, one thread; label PNG {:.0} bytes/sample:", pairs.len(), args.data.display(), label_bytes);
    println!("| output.image_format | image bytes | bytes/sample (with label) | vs PNG | encode ms/image | decode ms/image | mean abs error |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut png_bytes = 0.0;
    for (name, enc) in [
        ("png", ImageEncoding::Png),
        ("jpeg, quality 90", ImageEncoding::Jpeg { quality: 90 }),
        ("jpeg, quality 75", ImageEncoding::Jpeg { quality: 75 }),
        ("webp (lossless)", ImageEncoding::WebpLossless),
    ] {
        let t0 = std::time::Instant::now();
        let encoded: Vec<Vec<u8>> = pairs.iter().map(|(img, _)| img.encode(enc)).collect();
        let enc_ms = t0.elapsed().as_secs_f64() * 1e3 / n;
        let t1 = std::time::Instant::now();
        let decoded = encoded.iter().map(|b| RgbImage::decode(b, name)).collect::<shared::Result<Vec<_>>>()?;
        let dec_ms = t1.elapsed().as_secs_f64() * 1e3 / n;
        let err =
            decoded.iter().zip(&pairs).map(|(d, (img, _))| d.data.iter().zip(&img.data).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>() / img.data.len() as f64).sum::<f64>() / n;
        let bytes = encoded.iter().map(Vec::len).sum::<usize>() as f64 / n;
        if enc == ImageEncoding::Png {
            png_bytes = bytes + label_bytes;
        }
        println!("| {name} | {bytes:.0} | {:.0} | {:.2} | {enc_ms:.1} | {dec_ms:.1} | {err:.2} |", bytes + label_bytes, (bytes + label_bytes) / png_bytes);
    }
    Ok(ExitCode::SUCCESS)
}

fn loader(args: LoaderArgs) -> anyhow::Result<ExitCode> {
    use shared::dataset::{prefetch_batches, Dataset, DatasetOptions, PairSource};
    crate::args::at_least_one(&[("--batch", args.batch as u64), ("--batches", args.batches)])?;
    let dataset = Dataset::open_with(&args.data, shared::ClassTable::ai_hub(), &DatasetOptions { test_fraction: 0.0, labels_only: false, ..DatasetOptions::default() })?;
    let pairs = shared::dataset::DatasetPairs { dataset, size: args.size };
    let n = pairs.len();
    anyhow::ensure!(n > 0, "--data {}: no pairs", args.data.display());
    let order = |b: u64| (0..args.batch).map(|i| (b as usize * args.batch + i) % n).collect::<Vec<usize>>();
    let images = (args.batches as usize * args.batch) as f64;
    // An untimed pass first, so both timed passes read from the page cache.
    prefetch_batches::<_, anyhow::Error>(&pairs, 0..args.batches, crate::spade::PREFETCH_BATCHES, order, |_, _| Ok(()))?;
    let t0 = std::time::Instant::now();
    for b in 0..args.batches {
        for i in order(b) {
            pairs.get(i)?;
        }
    }
    let serial = images / t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    prefetch_batches::<_, anyhow::Error>(&pairs, 0..args.batches, crate::spade::PREFETCH_BATCHES, order, |_, _| Ok(()))?;
    let parallel = images / t1.elapsed().as_secs_f64();
    println!("loader, {} pairs at {}×{}, batch {}, {} threads:", images as u64, args.size, args.size, args.batch, rayon::current_num_threads());
    println!("| loader | images/s |\n| --- | ---: |\n| one at a time (before) | {serial:.1} |\n| parallel, read ahead | {parallel:.1} |");
    Ok(ExitCode::SUCCESS)
}

fn upscale(args: UpscaleArgs) -> anyhow::Result<ExitCode> {
    let work = bench::UpscaleBench {
        model: args.model,
        size: args.size,
        count: args.count,
        batch: args.batch,
        sampler: crate::ddpm::SamplerConfig::ddim(args.steps, 0.0),
        // One-hot maps have no ramps (as in the pipeline).
        cleanup: shared::cleanup::CleanupOptions { open_radius: args.open_radius_px, min_island: args.min_island_px, ramps: false, out_size: None },
    };
    print!("{}", crate::backend::dispatch(args.device.device, work)?);
    Ok(ExitCode::SUCCESS)
}

fn pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    if args.batch_sizes.contains(&0) || args.batches == 0 || args.label_batch == Some(0) || args.image_batch == Some(0) {
        bail!("--batch-sizes, --label-batch, --image-batch and --batches must be at least 1");
    }
    let (models, defaults) = match (args.config, args.random_full_size) {
        (Some(config), _) => {
            let defaults = bench::spec_settings(&bench::load_spec(&config)?)?;
            (Models::Spec(config), defaults)
        }
        (None, Some(size)) => (Models::RandomFullSize(size), (Sampler::Ddim(shared::spec::DEFAULT_DDIM_STEPS), Precision::F32, true)),
        (None, None) => bail!("give a ddpm-spade run spec or --random-full-size SIZE"),
    };
    // A flag not given times what the spec runs (the random models: the defaults).
    fn or<T>(given: Vec<T>, default: T) -> Vec<T> {
        if given.is_empty() {
            vec![default]
        } else {
            given
        }
    }
    let work = PipelineBench {
        models,
        samplers: or(args.samplers, defaults.0),
        precisions: or(args.precisions, defaults.1),
        batch_sizes: args.batch_sizes,
        label_batch: args.label_batch,
        image_batch: args.image_batch,
        overlap: or(args.overlap, defaults.2),
        batches: args.batches,
        warmup: args.warmup,
    };
    print!("{}", crate::backend::dispatch(args.device.device, work)?);
    Ok(ExitCode::SUCCESS)
}

fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    // What measures the CPU alone is `bench pipeline`: say so rather than suggest a
    // --device this command refuses.
    let DeviceChoice::Cuda(n) = args.device else {
        bail!(
            "--device {}: bench compare measures a CUDA device against the CPU; expected cuda or cuda:N (`worker bench pipeline --device cpu` measures the CPU alone)",
            args.device
        )
    };
    anyhow::ensure!(
        cfg!(feature = "cuda"),
        "bench compare measures a CUDA device against the CPU, and this worker was built without CUDA support (rebuild with `--features cuda`); `worker bench pipeline --device cpu` measures the CPU alone"
    );
    crate::device::resolve(args.device, &crate::device::DriverProbe::detect())?;
    let spec = bench::load_spec(&args.config)?;
    let mut failed = Vec::new();
    for (p, c) in bench::compare(&spec, args.count, n, &args.precisions)? {
        println!("### {p} on {} against f32 on the CPU\n{c}", args.device);
        failed.extend(bench::check_comparison(p, &c, args.min_agreement, args.max_mae));
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("bench compare: outside the bounds:\n  {}", failed.join("\n  "));
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn bench_cli_parses() {
        use shared::spec::Precision;
        let cli =
            Cli::try_parse_from(["worker", "bench", "pipeline", "--random-full-size", "64", "--samplers", "ddim-10,ddpm", "--device", "cpu", "--precisions", "f32,bf16"]).unwrap();
        let Some(Command::Bench(BenchCommand::Pipeline(a))) = cli.command else { panic!("not bench pipeline") };
        assert_eq!((a.samplers, a.batch_sizes, a.device.device), (vec![Sampler::Ddim(10), Sampler::Ddpm], vec![1, 8], DeviceChoice::Cpu));
        // Flags not given stay empty: `pipeline` fills them from the spec.
        assert_eq!((a.precisions, a.overlap), (vec![Precision::F32, Precision::Bf16], vec![]));
        let cli = Cli::try_parse_from(["worker", "bench", "pipeline", "--random-full-size", "64", "--overlap", "on,off"]).unwrap();
        let Some(Command::Bench(BenchCommand::Pipeline(a))) = cli.command else { panic!("not bench pipeline") };
        assert_eq!(a.overlap, vec![true, false]);
        assert_eq!(pipeline_args().precisions, vec![]);
        let e = Cli::try_parse_from(["worker", "bench", "pipeline", "--overlap", "true"]).unwrap_err().to_string();
        assert!(e.contains("--overlap") && e.contains("on, off"), "{e}");
        let e = Cli::try_parse_from(["worker", "bench", "compare", "x.toml", "--precisions", "fp8"]).unwrap_err().to_string();
        assert!(e.contains("--precisions") && e.contains("expected f32, bf16 or f16"), "{e}");
        let e = Cli::try_parse_from(["worker", "bench", "pipeline", "--samplers", "plms"]).unwrap_err().to_string();
        assert!(e.contains("--samplers") && e.contains("ddim-N"), "{e}");
        let e = pipeline(PipelineArgs { batch_sizes: vec![0], ..pipeline_args() }).unwrap_err().to_string();
        assert!(e.contains("--batch-sizes"), "{e}");
        let e = pipeline(pipeline_args()).unwrap_err().to_string();
        assert!(e.contains("--random-full-size"), "{e}");
        // compare on the CPU, or without CUDA: the error points at what measures the CPU.
        let compare_args = |device: &str| {
            let cli = Cli::try_parse_from(["worker", "bench", "compare", "no-such.toml", "--device", device]).unwrap();
            let Some(Command::Bench(BenchCommand::Compare(a))) = cli.command else { panic!("not bench compare") };
            a
        };
        let cases: &[&str] = if cfg!(feature = "cuda") { &["cpu"] } else { &["cpu", "cuda:0"] };
        for device in cases {
            let e = compare(compare_args(device)).unwrap_err().to_string();
            assert!(e.contains("bench pipeline --device cpu") && !e.contains("or use --device cpu"), "{device}: {e}");
        }
    }

    fn pipeline_args() -> PipelineArgs {
        let cli = Cli::try_parse_from(["worker", "bench", "pipeline"]).unwrap();
        let Some(Command::Bench(BenchCommand::Pipeline(a))) = cli.command else { panic!("not bench pipeline") };
        a
    }
}
