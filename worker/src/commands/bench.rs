//! `worker bench`: measured figures for the `ddpm-spade` pipeline (per-stage time per
//! image, images/s) and a CPU-versus-CUDA comparison of the same samples. Used by
//! `scripts/gpu-check.sh`; prints tables, asserts nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use bytes::Bytes;
use shared::spec::{DeviceChoice, PipelineKind, RunSpec, SamplerKind};
use shared::storage::Store;

use crate::device::{self, DriverProbe, Resolved};
use crate::pipelines::{ddpm_spade_on, random_ddpm_spade, DdpmSpadePipeline, StageSeconds};

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
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Batch sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch_sizes: Vec<usize>,
    /// Samplers to time, comma-separated: ddim-N (N steps) or ddpm (all timesteps).
    #[arg(long, value_delimiter = ',', default_value = "ddim-50")]
    pub samplers: Vec<String>,
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

fn load_spec(config: &PathBuf) -> anyhow::Result<RunSpec> {
    let spec = RunSpec::load(config)?;
    if spec.pipeline.kind != PipelineKind::DdpmSpade {
        bail!("{}: pipeline.kind is not ddpm-spade; the bench measures the model pipeline", config.display());
    }
    Ok(spec)
}

fn with_sampler(spec: &RunSpec, sampler: &str) -> anyhow::Result<RunSpec> {
    let mut spec = spec.clone();
    let labels = spec.pipeline.labels.as_mut().context("pipeline.labels")?;
    if sampler == "ddpm" {
        labels.sampler = SamplerKind::Ddpm;
        labels.steps = None;
        labels.eta = 0.0;
    } else if let Some(n) = sampler.strip_prefix("ddim-").and_then(|n| n.parse::<usize>().ok()) {
        labels.sampler = SamplerKind::Ddim;
        labels.steps = Some(n);
    } else {
        bail!("--samplers: expected ddim-N or ddpm, found {sampler:?}");
    }
    Ok(spec)
}

fn pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let resolved = device::resolve(args.device, &DriverProbe::detect())?;
    match resolved {
        Resolved::Cpu => pipeline_on::<crate::backend::Cpu>(args, crate::backend::CpuDevice::default(), resolved),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(n) => pipeline_on::<crate::backend::Gpu>(args, burn::backend::cuda::CudaDevice { index: n }, resolved),
        #[cfg(not(feature = "cuda"))]
        Resolved::Cuda(_) => unreachable!("resolve refuses CUDA without the feature"),
    }
}

/// One timed setting.
struct Row {
    what: String,
    batch: usize,
    images: usize,
    stages: StageSeconds,
    encode: Duration,
    upload: Duration,
    wall: Duration,
}

fn pipeline_on<B: Backend>(args: PipelineArgs, dev: B::Device, resolved: Resolved) -> anyhow::Result<ExitCode> {
    if args.batch_sizes.iter().any(|&b| b == 0) || args.batches == 0 {
        bail!("--batch-sizes and --batches must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let tmp = std::env::temp_dir().join(format!("labelgen-bench-{}", std::process::id()));
    let store = Store::open(tmp.to_str().context("temp dir path")?)?;
    let mut rows = Vec::new();
    let spec_base = args.config.as_ref().map(load_spec).transpose()?;
    for sampler in &args.samplers {
        let (pipe, classes, what): (DdpmSpadePipeline<B>, shared::ClassTable, String) = match (&spec_base, args.random_full_size) {
            (Some(spec), _) => {
                let spec = with_sampler(spec, sampler)?;
                (ddpm_spade_on::<B>(&spec, dev.clone(), resolved)?, spec.classes.clone(), format!("{} {sampler}", args.config.as_ref().unwrap().display()))
            }
            (None, Some(size)) => {
                let steps = match sampler.as_str() {
                    "ddpm" => None,
                    s => Some(s.strip_prefix("ddim-").and_then(|n| n.parse().ok()).with_context(|| format!("--samplers: expected ddim-N or ddpm, found {s:?}"))?),
                };
                (random_ddpm_spade::<B>(size, steps, dev.clone(), resolved)?, shared::ClassTable::ai_hub(), format!("random full-size {size}px {sampler}"))
            }
            (None, None) => bail!("give a ddpm-spade run spec or --random-full-size SIZE"),
        };
        for &batch in &args.batch_sizes {
            let mut row = Row { what: what.clone(), batch, images: 0, stages: StageSeconds::default(), encode: Duration::ZERO, upload: Duration::ZERO, wall: Duration::ZERO };
            for b in 0..args.warmup + args.batches {
                let indices: Vec<u64> = (0..batch as u64).map(|i| b as u64 * batch as u64 + i).collect();
                let t0 = Instant::now();
                let (samples, st) = pipe.generate_timed(&indices);
                let t1 = Instant::now();
                let encoded: Vec<(Vec<u8>, Vec<u8>)> = samples.iter().map(|s| (s.image.to_png(), s.label.to_png(&classes))).collect();
                let t2 = Instant::now();
                rt.block_on(async {
                    for (i, (img, lbl)) in encoded.into_iter().enumerate() {
                        store.put(&format!("{b}/{i}.png"), Bytes::from(img)).await?;
                        store.put(&format!("{b}/{i}.label.png"), Bytes::from(lbl)).await?;
                    }
                    anyhow::Ok(())
                })?;
                let t3 = Instant::now();
                if b < args.warmup {
                    continue;
                }
                row.images += batch;
                row.stages.sample += st.sample;
                row.stages.cleanup += st.cleanup;
                row.stages.synthesize += st.synthesize;
                row.encode += t2 - t1;
                row.upload += t3 - t2;
                row.wall += t3 - t0;
            }
            eprintln!("  {} batch {}: {:.2} images/s", row.what, row.batch, row.images as f64 / row.wall.as_secs_f64());
            rows.push(row);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("device: {resolved}");
    println!("| pipeline | batch | images/s | sample ms/img | cleanup ms/img | synthesize ms/img | encode ms/img | upload ms/img |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / r.images as f64;
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} |",
            r.what,
            r.batch,
            r.images as f64 / r.wall.as_secs_f64(),
            per(r.stages.sample),
            per(r.stages.cleanup),
            per(r.stages.synthesize),
            per(r.encode),
            per(r.upload)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "cuda")]
fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let spec = load_spec(&args.config)?;
    let DeviceChoice::Cuda(n) = args.device else { bail!("--device: expected cuda or cuda:N, found {}", args.device) };
    device::resolve(args.device, &DriverProbe::detect())?;
    let indices: Vec<u64> = (0..args.count).collect();
    let cpu = ddpm_spade_on::<crate::backend::Cpu>(&spec, crate::backend::CpuDevice::default(), Resolved::Cpu)?.generate_timed(&indices).0;
    let gpu = ddpm_spade_on::<crate::backend::Gpu>(&spec, burn::backend::cuda::CudaDevice { index: n }, Resolved::Cuda(n))?.generate_timed(&indices).0;
    println!("| sample | label pixels equal | image mean abs diff (0-255) | image relative error |");
    println!("| ---: | ---: | ---: | ---: |");
    let (mut agree_all, mut rel_all) = (0.0, 0.0);
    for (c, g) in cpu.iter().zip(&gpu) {
        let agree = c.label.data.iter().zip(&g.label.data).filter(|(a, b)| a == b).count() as f64 / c.label.data.len() as f64;
        let diff: f64 = c.image.data.iter().zip(&g.image.data).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>() / c.image.data.len() as f64;
        let norm: f64 = c.image.data.iter().map(|&a| a as f64).sum::<f64>() / c.image.data.len() as f64;
        let rel = diff / norm.max(1e-9);
        agree_all += agree;
        rel_all += rel;
        println!("| {} | {:.4} | {:.3} | {:.4} |", c.index, agree, diff, rel);
    }
    let n = cpu.len().max(1) as f64;
    println!("mean label agreement {:.4}, mean image relative error {:.4} over {} samples", agree_all / n, rel_all / n, cpu.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "cuda"))]
fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    bail!("worker bench compare needs a CUDA build (cargo build --release -p worker --features cuda)")
}
