//! DDPM throughput on the CPU (prints, asserts nothing): label maps per second for DDIM-50
//! and DDPM-1000, and training steps per second, for the default CLI config at 32×32 and a
//! larger 64×64 config. Sampling times a few network steps and extrapolates (the cost
//! per step does not depend on the step), and says so.
//!
//! `cargo bench -p worker --bench ddpm` (`RAYON_NUM_THREADS` sets the threads).

use std::time::Instant;

use burn::module::Module;
use worker::backend::{Cpu, CpuDevice, CpuTrain};
use worker::ddpm::sampler::{go_on, sample_images};
use worker::ddpm::train::{train, DdpmTrainConfig, TrainData};
use worker::ddpm::{Encoding, NoiseSchedule, Objective, SamplerConfig, ScheduleKind, UNetConfig};

fn main() {
    let device = CpuDevice::default();
    let threads = rayon::current_num_threads();
    let configs = [
        ("tiny 32×32 (CLI default: ch 32, mult 1,2,2, 1 block, attn 8)", UNetConfig::new(8, 32, vec![1, 2, 2], 1, vec![8], 0.1, 32).with_groups(8), 16usize, 8usize),
        ("64×64 (ch 64, mult 1,2,2,2, 2 blocks, attn 16)", UNetConfig::new(8, 64, vec![1, 2, 2, 2], 2, vec![16], 0.1, 64).with_groups(32), 8, 4),
    ];
    println!("DDPM benchmark, CPU (flex), {threads} threads, one-hot encoding of 8 classes, T = 1000");
    {
        use burn::nn::GroupNormConfig;
        use burn::tensor::{activation::silu, Distribution, Tensor};
        let norm = GroupNormConfig::new(8, 32).init::<Cpu>(&device);
        let x = Tensor::<Cpu, 4>::random([16, 32, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let time = |f: &dyn Fn() -> f32| {
            f();
            let t0 = Instant::now();
            for _ in 0..5 {
                f();
            }
            t0.elapsed().as_secs_f64() / 5.0 * 1e3
        };
        let burn_ms = time(&|| silu(norm.forward(x.clone())).sum().into_scalar());
        let folded_ms = time(&|| worker::ddpm::unet::group_norm(&norm, x.clone(), true).sum().into_scalar());
        println!("GroupNorm(8)+SiLU on [16,32,32,32]: burn {burn_ms:.1} ms, folded {folded_ms:.1} ms");
    }
    for (name, cfg, batch, train_batch) in configs {
        let unet = cfg.init::<Cpu>(&device);
        let params = unet.num_params();
        let sched = NoiseSchedule::new(ScheduleKind::Linear, 1000);
        let seeds: Vec<u64> = (0..batch as u64).collect();
        // Warm-up, then time 10 steps with noise (η = 1: like DDPM) and without (η = 0).
        let _ = sample_images(&unet, Objective::Eps, &sched, 8, cfg.image_size, &seeds, &SamplerConfig::ddim(2, 1.0), &device, &mut go_on);
        let timed = |eta: f64| {
            let steps = 10;
            let t0 = Instant::now();
            let _ = sample_images(&unet, Objective::Eps, &sched, 8, cfg.image_size, &seeds, &SamplerConfig::ddim(steps, eta), &device, &mut go_on);
            t0.elapsed().as_secs_f64() / steps as f64
        };
        let step_noisy = timed(1.0);
        let step_det = timed(0.0);
        let ddpm = batch as f64 / (step_noisy * 1000.0);
        let ddim = batch as f64 / (step_det * 50.0);
        println!("{name}: {params} parameters");
        println!("  sampling, batch {batch}: {:.1} ms per network step (η=1), {:.1} ms (η=0)", step_noisy * 1e3, step_det * 1e3);
        println!("  DDPM-1000: {ddpm:.4} maps/s ({:.1} s per map)   [extrapolated from 10 steps]", 1.0 / ddpm);
        println!("  DDIM-50:   {ddim:.3} maps/s ({:.2} s per map)   [extrapolated from 10 steps]", 1.0 / ddim);

        let maps = (0..32).map(|i| shared::procedural::generate_labels(i, cfg.image_size as u32, &Default::default())).collect();
        let data = TrainData { maps, classes: shared::ClassTable::ai_hub(), digest: String::new() };
        let tcfg = |steps| DdpmTrainConfig {
            precision: worker::precision::Precision::F32,
            unet: cfg.clone(),
            encoding: Encoding::OneHot,
            objective: Objective::Eps,
            schedule: ScheduleKind::Linear,
            timesteps: 1000,
            steps,
            batch: train_batch,
            lr: 2e-4,
            ema_decay: 0.9999,
            clip: Some(1.0),
            checkpoint_every: 0,
            resume: false,
            seed: 0,
            preview_count: 0,
            flip: true,
        };
        let _ = train::<CpuTrain>(&tcfg(1), &data, None, &device, &mut |_| {}).unwrap();
        let steps = 5;
        let t0 = Instant::now();
        let _ = train::<CpuTrain>(&tcfg(steps), &data, None, &device, &mut |_| {}).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        println!("  training, batch {train_batch}: {:.2} steps/s ({:.0} ms per step; {steps} steps incl. setup)", steps as f64 / secs, secs / steps as f64 * 1e3);
    }
}
