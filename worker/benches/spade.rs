//! SPADE on the CPU backend: inference images/s at 64, 128 and 256 for the small and the
//! paper-sized config (its first map from noise and from the label map), training steps/s of the small config, and parameter counts of the
//! full-size networks. Prints, asserts nothing.
//!
//! `cargo bench -p worker --bench spade` (`RAYON_NUM_THREADS` sets the threads).
//! `SPADE_BENCH_QUICK=1` skips the paper-sized config at 256.

use std::time::Instant;

use burn::module::Module;
use shared::procedural::{sample, ClassShares};
use shared::{LabelMap, RgbImage};
use worker::backend::{Cpu, CpuDevice, CpuTrain};
use worker::spade::{default_n_up, SpadeDiscriminatorConfig, SpadeGeneratorConfig, SpadeInput, SpadeTrainSettings, SpadeTrainer};

fn pairs(size: u32, n: u64) -> Vec<(RgbImage, LabelMap)> {
    (0..n).map(|i| sample(1, i, size, &ClassShares::default())).collect()
}

fn small(size: usize) -> SpadeGeneratorConfig {
    SpadeGeneratorConfig::small(8, size, 16)
}

fn paper(size: usize) -> SpadeGeneratorConfig {
    SpadeGeneratorConfig::new(8, size).with_n_up(default_n_up(size))
}

/// Images/s of one config: a warm-up batch, then batches until `budget_s` (at least one).
fn infer(name: &str, cfg: &SpadeGeneratorConfig, batch: usize, budget_s: f64) {
    let device = CpuDevice::default();
    let g = cfg.init::<Cpu>(&device);
    let labels: Vec<LabelMap> = pairs(cfg.size as u32, batch as u64).into_iter().map(|p| p.1).collect();
    let seeds: Vec<u64> = (0..batch as u64).collect();
    let t0 = Instant::now();
    let _ = g.synthesize(&labels, &seeds);
    let warm = t0.elapsed().as_secs_f64();
    let (mut n, t1) = (0usize, Instant::now());
    let timed_note = if warm * 2.0 > budget_s {
        // Slow: the warm-up batch is the measurement.
        n = batch;
        "one batch, extrapolated"
    } else {
        while n == 0 || t1.elapsed().as_secs_f64() < budget_s {
            let _ = g.synthesize(&labels, &seeds);
            n += batch;
        }
        "timed"
    };
    let secs = if timed_note == "timed" { t1.elapsed().as_secs_f64() } else { warm };
    println!(
        "infer {name:>11} {:>3}x{:<3} ngf {:>2} n_up {} batch {batch}: {:>8.2} images/s ({:.3} s/image, {timed_note}; {:.1}M params)",
        cfg.size,
        cfg.size,
        cfg.ngf,
        cfg.n_up,
        n as f64 / secs,
        secs / n as f64,
        g.num_params() as f64 / 1e6
    );
}

fn train(size: usize, batch: usize, steps: usize) {
    let device = CpuDevice::default();
    let g = small(size);
    let d = SpadeDiscriminatorConfig::new(8).with_ndf(16);
    let settings = SpadeTrainSettings { batch, ..SpadeTrainSettings::default() };
    let mut t = SpadeTrainer::<CpuTrain>::new(g, d, settings, &device);
    let data = pairs(size as u32, batch as u64);
    let (images, labels): (Vec<RgbImage>, Vec<LabelMap>) = data.into_iter().unzip();
    t.step(&labels, &images).unwrap();
    let t0 = Instant::now();
    for _ in 0..steps {
        t.step(&labels, &images).unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("train  small {size}x{size} ngf 16 ndf 16 batch {batch}: {:.2} steps/s, {:.1} images/s (G+D step, {steps} steps)", steps as f64 / secs, (steps * batch) as f64 / secs);
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("SPADE CPU benchmark (burn flex, {threads} rayon threads)");
    let quick = std::env::var_os("SPADE_BENCH_QUICK").is_some();
    for size in [64, 128, 256] {
        infer("small", &small(size), 4, 3.0);
    }
    for size in [64, 128, 256] {
        if quick && size == 256 {
            continue;
        }
        // The first map from noise (linear) and from the label map (conv), side by side.
        infer("paper", &paper(size), 1, 3.0);
        infer("paper-label", &paper(size).with_input(SpadeInput::Label), 1, 3.0);
    }
    train(64, 4, 10);

    let device = CpuDevice::default();
    for (input, layer) in [(SpadeInput::Noise, "noise linear (256 → 1024x16x16)"), (SpadeInput::Label, "label conv 3x3 ((8 + 256) → 1024 at 16x16)")] {
        let g = SpadeGeneratorConfig::new(8, 512).with_input(input).init::<Cpu>(&device);
        let first = g.fc.num_params() + g.conv_in.num_params();
        println!(
            "params: generator ngf 64, 512x512, n_up 5, input {input:?}: {:.2}M total = {:.2}M {layer} + {:.2}M blocks and output conv (NVlabs without the VAE: ~92M)",
            g.num_params() as f64 / 1e6,
            first as f64 / 1e6,
            (g.num_params() - first) as f64 / 1e6
        );
    }
    let d = SpadeDiscriminatorConfig::new(8).init::<Cpu>(&device);
    println!("params: discriminator ndf 64, 2 scales, 4 layers: {:.2}M (NVlabs: ~5.5M)", d.num_params() as f64 / 1e6);
    println!("(counts include the spectral-norm u vectors, one float per output channel of each normalised conv)");
}
