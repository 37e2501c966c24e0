//! `labelgen-eval bench-seg`: the segmentation model's size and speed — parameters and GMAC per
//! image (convolutions) at each size and at full size, training and inference images/s on
//! procedural pairs. Prints a table; asserts nothing.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use shared::procedural::{sample, ClassShares};
use shared::spec::DeviceChoice;
use shared::{ClassTable, LabelMap, RgbImage};

use crate::seg::{evaluate, inference, train, SegNetConfig, TrainOptions};
use worker::device::{self, DriverProbe, Resolved};

#[derive(Debug, clap::Args)]
pub struct SegArgs {
    /// Image sides to time training and inference at, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    pub sizes: Vec<u32>,
    /// Width of the timed model (the detail branch's first channel count; eval utility's
    /// --width).
    #[arg(long, default_value_t = 8)]
    pub width: usize,
    /// Widths whose size and cost are reported at --full-size (not timed).
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    pub full_widths: Vec<usize>,
    /// The image side of the full-size rows.
    #[arg(long, default_value_t = 512)]
    pub full_size: u32,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed training steps per size (after one untimed warm-up step).
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

pub fn run(args: SegArgs) -> anyhow::Result<ExitCode> {
    if args.batch == 0 || args.steps == 0 || args.sizes.iter().any(|&s| s < 8) {
        bail!("--batch and --steps must be at least 1, --sizes at least 8");
    }
    let resolved = device::resolve(args.device, &DriverProbe::detect())?;
    match resolved {
        Resolved::Cpu => run_on::<worker::backend::CpuTrain>(args, worker::backend::CpuDevice::default(), resolved),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(n) => run_on::<worker::backend::GpuTrain>(args, burn::backend::cuda::CudaDevice { index: n }, resolved),
        #[cfg(not(feature = "cuda"))]
        Resolved::Cuda(_) => unreachable!("resolve refuses CUDA without the feature"),
    }
}

fn run_on<B: AutodiffBackend>(args: SegArgs, dev: B::Device, resolved: Resolved) -> anyhow::Result<ExitCode> {
    let k = ClassTable::ai_hub().len();
    println!("device: {resolved}");
    println!("| width | size | parameters | GMAC/image | train images/s | inference images/s |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &w in &args.full_widths {
        let config = SegNetConfig::new(k).with_width(w);
        config.validate().map_err(|e| anyhow::anyhow!("--full-widths {w}: {e}"))?;
        let net = config.init::<B::InnerBackend>(&dev);
        let s = args.full_size as usize;
        println!("| {w} | {s} | {} | {} | – | – |", net.num_params(), gmac(net.macs(s, s)));
    }
    let config = SegNetConfig::new(k).with_width(args.width);
    config.validate().map_err(|e| anyhow::anyhow!("--width {}: {e}", args.width))?;
    for &size in &args.sizes {
        // Procedural pairs drawn at the size (one warm-up batch + the timed ones).
        let n = args.batch * (args.steps + 1);
        let pairs: Vec<(RgbImage, LabelMap)> = (0..n as u64).map(|i| sample(11, i, size, &ClassShares::default())).collect();
        let opts = TrainOptions { epochs: 1, batch: args.batch, lr: 1e-3, seed: 1, flips: true };
        let mut timed_from: Option<Instant> = None;
        let mut timed = Duration::ZERO;
        let model = train::<B>(&config, &pairs, &opts, &dev, |p| {
            // The first step (allocations, kernel set-up) is the warm-up.
            if p.step == 1 {
                timed_from = Some(Instant::now());
            } else if let Some(t) = timed_from {
                timed = t.elapsed();
            }
        })?;
        let train_ips = (args.batch * args.steps) as f64 / timed.as_secs_f64().max(1e-9);
        let net = inference(&model);
        let _ = evaluate(&net, &pairs[..args.batch].to_vec(), k, args.batch, &dev)?;
        let t = Instant::now();
        let _ = evaluate(&net, &pairs, k, args.batch, &dev)?;
        let infer_ips = n as f64 / t.elapsed().as_secs_f64().max(1e-9);
        let s = size as usize;
        println!("| {} | {s} | {} | {} | {train_ips:.1} | {infer_ips:.1} |", args.width, net.num_params(), gmac(net.macs(s, s)));
    }
    println!("(GMAC: multiply-accumulates of the convolutions per image, batch norm/activations/resizing left out; train: batch {}, {} timed steps after one warm-up; inference includes reading the pairs.)", args.batch, args.steps);
    Ok(ExitCode::SUCCESS)
}

/// MACs as GMAC with three significant digits.
fn gmac(macs: u64) -> String {
    let g = macs as f64 / 1e9;
    let decimals = if g >= 1.0 { 2 } else { (2 - g.log10().floor() as i32).max(0) as usize };
    format!("{g:.decimals$}")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn bench(a: &[&str]) -> super::SegArgs {
        let cli = Cli::try_parse_from(["labelgen-eval", "bench-seg"].iter().chain(a)).unwrap();
        let Command::BenchSeg(b) = cli.command else { panic!("not bench-seg") };
        b
    }

    /// The command runs end to end at toy sizes (figures are printed, not checked); a
    /// width the model refuses is an error that names the flag.
    #[test]
    fn bench_seg_runs_at_toy_sizes() {
        super::run(bench(&["--sizes", "16", "--steps", "1", "--batch", "2", "--width", "2", "--full-widths", "2", "--full-size", "32", "--device", "cpu"])).unwrap();
        let e = super::run(bench(&["--width", "1", "--full-widths", "2", "--device", "cpu"])).unwrap_err().to_string();
        assert!(e.contains("--width 1"), "{e}");
    }
}
