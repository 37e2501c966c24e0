//! `worker bench labels`: label maps per second of DDPM label models — trained artifacts or
//! randomly initialised presets — under each sampler (DDIM-N, DDPM over all T steps).
//! Prints a table; asserts nothing.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use burn::module::Module;
use burn::tensor::backend::Backend;
use shared::sample_seed;
use shared::spec::DeviceChoice;

use crate::ddpm::{DdpmModel, SamplerConfig, UNetConfig};
use crate::device::{self, DriverProbe, Resolved};

#[derive(Debug, clap::Args)]
pub struct LabelsArgs {
    /// Trained label models (path, file:// or s3://), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "URI")]
    pub models: Vec<String>,
    /// Randomly initialised presets, comma-separated: `tiny` (32×32, base 16, ×1,2,2,
    /// attention at 8, 8 norm groups: the size of a few CPU minutes of training), `small64` (64×64, base
    /// 32, ×1,2,2,2, attention at 16, 8 groups), `cifar` (the 35.7M CIFAR-10 UNet at 32×32),
    /// `cifar64` (the same at 64×64, the full-size pipeline's label model).
    #[arg(long, value_delimiter = ',', value_name = "PRESET")]
    pub random: Vec<String>,
    /// Samplers, comma-separated: ddim-N (N steps) or ddpm (all T steps).
    #[arg(long, value_delimiter = ',', default_value = "ddim-50,ddpm")]
    pub samplers: Vec<String>,
    /// Label maps sampled together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed batches per model and sampler (after one untimed DDIM-2 warm-up batch).
    #[arg(long, default_value_t = 1)]
    pub batches: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

pub fn run(args: LabelsArgs) -> anyhow::Result<ExitCode> {
    if args.batch == 0 || args.batches == 0 {
        bail!("--batch and --batches must be at least 1");
    }
    if args.models.is_empty() && args.random.is_empty() {
        bail!("give --models URI,… and/or --random tiny,small64,cifar,cifar64");
    }
    let resolved = device::resolve(args.device, &DriverProbe::detect())?;
    match resolved {
        Resolved::Cpu => run_on::<crate::backend::Cpu>(args, crate::backend::CpuDevice::default(), resolved),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(n) => run_on::<crate::backend::Gpu>(args, burn::backend::cuda::CudaDevice { index: n }, resolved),
        #[cfg(not(feature = "cuda"))]
        Resolved::Cuda(_) => unreachable!("resolve refuses CUDA without the feature"),
    }
}

/// The UNet of a `--random` preset.
pub fn preset(name: &str, k: usize) -> anyhow::Result<UNetConfig> {
    let config = match name {
        "tiny" => UNetConfig { groups: 8, ..UNetConfig::new(k, 16, vec![1, 2, 2], 1, vec![8], 0.0, 32) },
        "small64" => UNetConfig { groups: 8, ..UNetConfig::new(k, 32, vec![1, 2, 2, 2], 1, vec![16], 0.0, 64) },
        "cifar" => UNetConfig::cifar10(k),
        "cifar64" => UNetConfig { image_size: 64, ..UNetConfig::cifar10(k) },
        other => bail!("--random {other:?}: expected tiny, small64, cifar or cifar64"),
    };
    Ok(config)
}

fn sampler(s: &str) -> anyhow::Result<SamplerConfig> {
    if s == "ddpm" {
        return Ok(SamplerConfig::ddpm());
    }
    let n = s.strip_prefix("ddim-").and_then(|n| n.parse().ok()).with_context(|| format!("--samplers: expected ddim-N or ddpm, found {s:?}"))?;
    Ok(SamplerConfig::ddim(n, 0.0))
}

fn run_on<B: Backend>(args: LabelsArgs, dev: B::Device, resolved: Resolved) -> anyhow::Result<ExitCode> {
    let k = shared::ClassTable::ai_hub().len();
    let samplers: Vec<(String, SamplerConfig)> = args.samplers.iter().map(|s| Ok((s.clone(), sampler(s)?))).collect::<anyhow::Result<_>>()?;
    let mut models: Vec<(String, DdpmModel<B>)> = Vec::new();
    for uri in &args.models {
        models.push((uri.clone(), DdpmModel::<B>::load(uri, &dev).with_context(|| format!("--models {uri}"))?));
    }
    for name in &args.random {
        models.push((format!("random {name}"), crate::pipelines::random_ddpm::<B>(preset(name, k)?, &dev)?));
    }
    let mut rows = Vec::new();
    for (what, model) in &models {
        let t = model.meta.timesteps;
        let params = model.unet.num_params();
        let _ = model.sample(&(0..args.batch as u64).collect::<Vec<_>>(), &SamplerConfig::ddim(2, 0.0));
        for (name, s) in &samplers {
            s.validate(t).map_err(|e| anyhow::anyhow!("{what}: --samplers {name}: {e}"))?;
            let start = Instant::now();
            for b in 0..args.batches {
                let seeds: Vec<u64> = (0..args.batch as u64).map(|i| sample_seed(b as u64, i)).collect();
                let _ = model.sample(&seeds, s);
            }
            let secs = start.elapsed().as_secs_f64();
            let maps = (args.batch * args.batches) as f64;
            eprintln!("  {what} {name}: {:.3} maps/s", maps / secs);
            rows.push(format!("| {what} | {params} | {} | {name} ({} steps) | {} | {:.3} | {:.1} |", model.size(), s.num_steps(t), args.batch, maps / secs, 1000.0 * secs / maps));
        }
    }
    println!("device: {resolved}");
    println!("| model | parameters | size | sampler | batch | maps/s | ms/map |");
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
    for r in rows {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::commands::bench::BenchCommand;

    fn bench(a: &[&str]) -> BenchCommand {
        let cli = Cli::try_parse_from(["worker", "bench"].iter().chain(a)).unwrap();
        let Some(Command::Bench(b)) = cli.command else { panic!("not bench") };
        b
    }

    /// Both bench commands run end to end at toy sizes (figures are printed, not checked);
    /// bad presets and samplers are errors that name them.
    #[test]
    fn bench_labels_and_seg_run_at_toy_sizes() {
        crate::commands::bench::run(bench(&["labels", "--random", "tiny", "--samplers", "ddim-2", "--batch", "1", "--device", "cpu"])).unwrap();
        crate::commands::bench::run(bench(&["seg", "--sizes", "16", "--steps", "1", "--batch", "2", "--width", "2", "--full-widths", "2", "--full-size", "32", "--device", "cpu"])).unwrap();
        let e = crate::commands::bench::run(bench(&["labels", "--random", "huge", "--device", "cpu"])).unwrap_err().to_string();
        assert!(e.contains("\"huge\"") && e.contains("small64"), "{e}");
        let e = crate::commands::bench::run(bench(&["labels", "--random", "tiny", "--samplers", "ddim-x", "--device", "cpu"])).unwrap_err().to_string();
        assert!(e.contains("ddim-x"), "{e}");
        assert!(crate::commands::bench::run(bench(&["labels", "--device", "cpu"])).is_err(), "no model named");
    }
}
