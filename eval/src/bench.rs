//! The segmentation model's size and speed (`labelgen-eval bench-seg`): parameters and
//! GMAC per image (convolutions) at each size and at full size, training and inference
//! images/s on procedural pairs. Writes a markdown table; asserts nothing.

use std::io::Write;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use shared::procedural::{sample, ClassShares};
use shared::spec::DeviceChoice;
use shared::{ClassTable, LabelMap, RgbImage};
use worker::backend::{dispatch_train, OnTrainBackend};
use worker::device::Resolved;

use crate::seg::{evaluate, inference, train, SegNetConfig, SegTrainOptions};

/// What is measured (the flags of `labelgen-eval bench-seg`).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Image sides to time training and inference at.
    pub sizes: Vec<u32>,
    /// Width of the timed model.
    pub width: usize,
    /// Widths whose size and cost are reported at `full_size` (not timed).
    pub full_widths: Vec<usize>,
    pub full_size: u32,
    pub batch: usize,
    /// Timed training steps per size (after one untimed warm-up step).
    pub steps: usize,
}

/// Measures on `device` and writes the table to `out`, a row as soon as it is measured.
/// Errors name the flag at fault (`--width 1: …`).
pub fn bench_seg(opts: &BenchOptions, device: DeviceChoice, out: &mut dyn Write) -> anyhow::Result<()> {
    if opts.batch == 0 || opts.steps == 0 || opts.sizes.iter().any(|&s| s < 8) {
        anyhow::bail!("--batch and --steps must be at least 1, --sizes at least 8");
    }
    dispatch_train(device, Bench { opts, out })
}

struct Bench<'a> {
    opts: &'a BenchOptions,
    out: &'a mut dyn Write,
}

impl OnTrainBackend for Bench<'_> {
    type Output = ();

    fn run<B: AutodiffBackend>(self, dev: B::Device, resolved: Resolved) -> anyhow::Result<()> {
        let Bench { opts, out } = self;
        let k = ClassTable::ai_hub().len();
        writeln!(out, "device: {resolved}")?;
        writeln!(out, "| width | size | parameters | GMAC/image | train images/s | inference images/s |")?;
        writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |")?;
        for &w in &opts.full_widths {
            let config = SegNetConfig::new(k).with_width(w);
            config.validate().map_err(|e| anyhow::anyhow!("--full-widths {w}: {e}"))?;
            let net = config.init::<B::InnerBackend>(&dev);
            let s = opts.full_size as usize;
            writeln!(out, "| {w} | {s} | {} | {} | – | – |", net.num_params(), gmac(net.macs(s, s)))?;
        }
        let config = SegNetConfig::new(k).with_width(opts.width);
        config.validate().map_err(|e| anyhow::anyhow!("--width {}: {e}", opts.width))?;
        for &size in &opts.sizes {
            // Procedural pairs drawn at the size (one warm-up batch + the timed ones).
            let n = opts.batch * (opts.steps + 1);
            let pairs: Vec<(RgbImage, LabelMap)> = (0..n as u64).map(|i| sample(11, i, size, &ClassShares::default())).collect();
            let train_opts = SegTrainOptions { epochs: 1, batch: opts.batch, lr: 1e-3, seed: 1, flips: true };
            let mut timed_from: Option<Instant> = None;
            let mut timed = Duration::ZERO;
            let model = train::<B>(&config, &pairs, &train_opts, &dev, |p| {
                // The first step (allocations, kernel set-up) is the warm-up.
                if p.step == 1 {
                    timed_from = Some(Instant::now());
                } else if let Some(t) = timed_from {
                    timed = t.elapsed();
                }
            })?;
            let train_ips = (opts.batch * opts.steps) as f64 / timed.as_secs_f64().max(1e-9);
            let net = inference(&model);
            let _ = evaluate(&net, &pairs[..opts.batch].to_vec(), k, opts.batch, &dev)?;
            let t = Instant::now();
            let _ = evaluate(&net, &pairs, k, opts.batch, &dev)?;
            let infer_ips = n as f64 / t.elapsed().as_secs_f64().max(1e-9);
            let s = size as usize;
            writeln!(out, "| {} | {s} | {} | {} | {train_ips:.1} | {infer_ips:.1} |", opts.width, net.num_params(), gmac(net.macs(s, s)))?;
        }
        writeln!(
            out,
            "(GMAC: multiply-accumulates of the convolutions per image, batch norm/activations/resizing left out; train: batch {}, {} timed steps after one warm-up; inference includes reading the pairs.)",
            opts.batch, opts.steps
        )?;
        Ok(())
    }
}

/// MACs as GMAC: two decimals from 1 GMAC up, three significant digits below.
fn gmac(macs: u64) -> String {
    let g = macs as f64 / 1e9;
    let decimals = if g >= 1.0 { 2 } else { (2 - g.log10().floor() as i32).max(0) as usize };
    format!("{g:.decimals$}")
}
