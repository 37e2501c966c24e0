//! Sampling: DDPM ancestral sampling over all `T` steps, or DDIM over an evenly spaced
//! subsequence of `S` steps with stochasticity `η`.
//!
//! Every random number of sample `i` comes from its own seed on the host: the initial noise
//! `x_T` from [`rng_for`]`(seed, INIT_NOISE_STREAM)`, and the per-step noise from one
//! [`rng_for`]`(seed, STEP_NOISE_STREAM)` drawn in step order (`C·H·W` standard normals for
//! each step that adds noise). A sample therefore never depends on its batch, backend or
//! thread count (up to float rounding in the network).
//!
//! Both samplers take the network's `x̂_0` ([`Objective::x0`]: for ε-prediction
//! `(x_t - √(1-ᾱ_t)·ε̂)/√ᾱ_t` clipped to `[-1, 1]`); DDIM also uses
//! `ε̂' = (x_t - √ᾱ_t·x̂_0)/√(1-ᾱ_t)`. DDPM steps to the posterior mean
//! `√ᾱ_{t-1}·β_t/(1-ᾱ_t)·x̂_0 + √α_t·(1-ᾱ_{t-1})/(1-ᾱ_t)·x_t` plus `σ_t z` with
//! `σ_t² = β̃_t = β_t(1-ᾱ_{t-1})/(1-ᾱ_t)`; DDIM to
//! `√ᾱ_prev·x̂_0 + √(1-ᾱ_prev-σ²)·ε̂' + σ z` with
//! `σ = η·√((1-ᾱ_prev)/(1-ᾱ_t))·√(1-ᾱ_t/ᾱ_prev)`. With `η = 1` over all `T` steps the two
//! coincide algebraically.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::RngExt;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use shared::rng_for;
use shared::spec::SamplerKind;

/// What a sampling loop's `on_step(done, total)` answers after each network evaluation: go
/// on, or stop (the batch is abandoned and the sampler returns nothing).
pub type Step = std::ops::ControlFlow<()>;

/// An `on_step` that reports nothing and never stops.
pub fn go_on(_done: usize, _total: usize) -> Step {
    Step::Continue(())
}

use super::objective::Objective;
use super::schedule::NoiseSchedule;
use super::unet::UNet;

/// RNG stream of a sample's initial noise `x_T`.
pub const INIT_NOISE_STREAM: u64 = 0xDD01;
/// RNG stream of a sample's per-step noise.
pub const STEP_NOISE_STREAM: u64 = 0xDD02;

/// How to sample: the run spec's [`SamplerKind`] with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerConfig {
    /// Ancestral sampling over all `T` steps.
    Ddpm,
    /// DDIM over `steps` evenly spaced timesteps; `eta` = 0 is deterministic.
    Ddim { steps: usize, eta: f64 },
}

impl SamplerConfig {
    pub fn ddpm() -> Self {
        SamplerConfig::Ddpm
    }

    pub fn ddim(steps: usize, eta: f64) -> Self {
        SamplerConfig::Ddim { steps, eta }
    }

    /// The sampler a run spec names (`kind`) with its steps and η; DDPM takes neither
    /// (it runs every timestep, see `LabelModelSection::check_sampler`).
    pub fn from_spec(kind: SamplerKind, steps: usize, eta: f64) -> Self {
        match kind {
            SamplerKind::Ddim => SamplerConfig::ddim(steps, eta),
            SamplerKind::Ddpm => SamplerConfig::ddpm(),
        }
    }

    /// Which algorithm, as the run spec names it.
    pub fn kind(&self) -> SamplerKind {
        match self {
            SamplerConfig::Ddpm => SamplerKind::Ddpm,
            SamplerConfig::Ddim { .. } => SamplerKind::Ddim,
        }
    }

    /// Checks the config against a schedule of `t` steps.
    pub fn validate(&self, t: usize) -> Result<(), String> {
        match *self {
            SamplerConfig::Ddpm => Ok(()),
            SamplerConfig::Ddim { steps, eta } => {
                if steps == 0 || steps > t {
                    Err(format!("DDIM steps {steps} must be between 1 and the model's {t} timesteps"))
                } else if !(0.0..=1.0).contains(&eta) {
                    Err(format!("DDIM eta {eta} must be between 0 and 1"))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The timesteps visited, ascending (sampling walks them from the end): all `0..T` for
    /// DDPM; for DDIM the *trailing* spacing `round(T − i·T/S) − 1` for `i = 0…S-1` (Lin et
    /// al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed"), which
    /// always starts at `T−1`, where the pure noise sampling starts from belongs. (Leading
    /// spacing, `⌊i·T/S⌋`, started 10 cosine steps at t = 900 from pure noise.)
    pub fn timesteps(&self, t: usize) -> Vec<usize> {
        match *self {
            SamplerConfig::Ddpm => (0..t).collect(),
            SamplerConfig::Ddim { steps, .. } => {
                let stride = t as f64 / steps as f64;
                let mut ts: Vec<usize> = (0..steps).map(|i| ((t as f64 - i as f64 * stride).round() as usize).saturating_sub(1)).collect();
                ts.reverse();
                ts.dedup();
                ts
            }
        }
    }

    /// Network evaluations per sample.
    pub fn num_steps(&self, t: usize) -> usize {
        self.timesteps(t).len()
    }
}

/// Draws `n` standard normals.
fn normals(rng: &mut rand_chacha::ChaCha8Rng, n: usize, out: &mut Vec<f32>) {
    out.extend((0..n).map(|_| rng.sample::<f32, _>(StandardNormal)));
}

/// Runs the sampler for one batch: `seeds.len()` samples of shape `[c, s, s]`. Returns
/// each sample's final `x̂_0` (`[c, s, s]` row-major, in `[-1, 1]`). `on_step(done, total)`
/// is called after each network evaluation; when it answers stop, nothing is returned.
///
/// # Panics
/// If the sampler config is invalid for the schedule (see [`SamplerConfig::validate`]).
#[allow(clippy::too_many_arguments)]
pub fn sample_images<B: Backend>(
    unet: &UNet<B>,
    objective: Objective,
    schedule: &NoiseSchedule,
    channels: usize,
    size: usize,
    seeds: &[u64],
    sampler: &SamplerConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(usize, usize) -> Step,
) -> Vec<Vec<f32>> {
    let Some(x) = sample_tensor(unet, objective, schedule, channels, size, seeds, sampler, device, on_step) else { return Vec::new() };
    let flat = x.into_data().convert::<f32>().to_vec::<f32>().expect("f32 sample data");
    flat.chunks(channels * size * size).map(<[f32]>::to_vec).collect()
}

/// [`sample_images`], leaving the batch of final `x̂_0` on the device as `[B, c, s, s]`
/// (`None` for no seeds, or when `on_step` answered stop). The last step lands on `x̂_0` itself: its `ᾱ_prev` is 1.
#[allow(clippy::too_many_arguments)]
pub fn sample_tensor<B: Backend>(
    unet: &UNet<B>,
    objective: Objective,
    schedule: &NoiseSchedule,
    channels: usize,
    size: usize,
    seeds: &[u64],
    sampler: &SamplerConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(usize, usize) -> Step,
) -> Option<Tensor<B, 4>> {
    if let Err(e) = sampler.validate(schedule.len()) {
        panic!("{e}");
    }
    let b = seeds.len();
    if b == 0 {
        return None;
    }
    let n = channels * size * size;
    let shape = [b, channels, size, size];
    let mut buf = Vec::with_capacity(b * n);
    for &seed in seeds {
        normals(&mut rng_for(seed, INIT_NOISE_STREAM), n, &mut buf);
    }
    let mut x = Tensor::<B, 4>::from_data(TensorData::new(buf, shape), device);
    let mut step_rngs: Vec<_> = seeds.iter().map(|&s| rng_for(s, STEP_NOISE_STREAM)).collect();

    let ts = sampler.timesteps(schedule.len());
    let total = ts.len();
    for j in (0..total).rev() {
        let t = ts[j];
        let prev = if j > 0 { ts[j - 1] as isize } else { -1 };
        let a_t = schedule.alpha_bar(t as isize);
        let a_p = schedule.alpha_bar(prev);

        let tt = Tensor::<B, 1>::from_data(TensorData::new(vec![t as f32; b], [b]), device);
        let x0 = objective.x0(unet.forward(x.clone(), tt), x.clone(), a_t);

        let (mean, sigma) = match *sampler {
            SamplerConfig::Ddpm => {
                let beta = schedule.betas[t];
                let c0 = a_p.sqrt() * beta / (1.0 - a_t);
                let ct = (1.0 - beta).sqrt() * (1.0 - a_p) / (1.0 - a_t);
                let var = beta * (1.0 - a_p) / (1.0 - a_t);
                (x0.mul_scalar(c0) + x.mul_scalar(ct), var.max(0.0).sqrt())
            }
            SamplerConfig::Ddim { eta, .. } => {
                let sigma = eta * ((1.0 - a_p) / (1.0 - a_t) * (1.0 - a_t / a_p)).max(0.0).sqrt();
                let eps2 = (x - x0.clone().mul_scalar(a_t.sqrt())).div_scalar((1.0 - a_t).sqrt());
                let dir = (1.0 - a_p - sigma * sigma).max(0.0).sqrt();
                (x0.mul_scalar(a_p.sqrt()) + eps2.mul_scalar(dir), sigma)
            }
        };
        x = if sigma > 0.0 {
            let mut z = Vec::with_capacity(b * n);
            for rng in &mut step_rngs {
                normals(rng, n, &mut z);
            }
            mean + Tensor::<B, 4>::from_data(TensorData::new(z, shape), device).mul_scalar(sigma)
        } else {
            mean
        };
        if on_step(total - j, total).is_break() {
            return None;
        }
    }
    Some(x)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use crate::ddpm::encoding::Encoding;
    use crate::ddpm::schedule::ScheduleKind;
    use crate::ddpm::unet::UNetConfig;
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::Distribution;

    /// Adds noise to every parameter, so the zero-initialised output layers do not make the
    /// network predict ε = 0.
    pub(crate) struct Jitter;
    impl<B: Backend> ModuleMapper<B> for Jitter {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = param.consume();
            let noise = t.random_like(Distribution::Normal(0.0, 0.05));
            Param::from_mapped_value(id, t + noise, mapper)
        }
    }

    fn tiny_unet(channels: usize, size: usize) -> UNet<Cpu> {
        let device = CpuDevice::default();
        UNetConfig::new(channels, 8, vec![1, 2], 1, vec![], 0.0, size).with_groups(4).init::<Cpu>(&device).map(&mut Jitter)
    }

    #[test]
    fn ddpm_ddim_eta1_all_steps_equals_ancestral() {
        let device = CpuDevice::default();
        let unet = tiny_unet(2, 8);
        let sched = NoiseSchedule::new(ScheduleKind::Linear, 50);
        let seeds = [11u64, 12];
        let a = sample_images(&unet, Objective::Eps, &sched, 2, 8, &seeds, &SamplerConfig::ddpm(), &device, &mut go_on);
        let b = sample_images(&unet, Objective::Eps, &sched, 2, 8, &seeds, &SamplerConfig::ddim(50, 1.0), &device, &mut go_on);
        let max = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max < 1e-4, "DDIM(η=1, all 50 steps) differs from DDPM by up to {max}");
        // And the samples are not trivial: DDIM with η = 0 lands elsewhere.
        let c = sample_images(&unet, Objective::Eps, &sched, 2, 8, &seeds, &SamplerConfig::ddim(50, 0.0), &device, &mut go_on);
        let diff = a.iter().flatten().zip(c.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff > 1e-2, "DDIM η=0 should differ from ancestral sampling (max diff {diff})");
    }

    #[test]
    fn ddpm_sample_independent_of_batch() {
        let device = CpuDevice::default();
        let k = 4;
        let unet = tiny_unet(k, 8);
        let sched = NoiseSchedule::new(ScheduleKind::Cosine, 40);
        let seeds: Vec<u64> = (0..8).map(|i| shared::sample_seed(9, i)).collect();
        for sampler in [SamplerConfig::ddpm(), SamplerConfig::ddim(10, 0.5)] {
            let batch = sample_images(&unet, Objective::Eps, &sched, k, 8, &seeds, &sampler, &device, &mut go_on);
            let alone = sample_images(&unet, Objective::Eps, &sched, k, 8, &seeds[5..6], &sampler, &device, &mut go_on);
            let (m_batch, m_alone) = (Encoding::OneHot.decode(&batch[5], k, 8, 8), Encoding::OneHot.decode(&alone[0], k, 8, 8));
            assert_eq!(m_batch, m_alone, "{sampler:?}: sample 5 differs between a batch of 8 and alone");
            let max = batch[5].iter().zip(&alone[0]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(max < 1e-4, "{sampler:?}: values differ by {max}");
            assert_ne!(batch[4], batch[5], "different seeds give different samples");
        }
    }

    #[test]
    fn ddpm_ddim_timesteps_are_even_and_trailing() {
        assert_eq!(SamplerConfig::ddim(4, 0.0).timesteps(1000), vec![249, 499, 749, 999]);
        assert_eq!(SamplerConfig::ddim(3, 0.0).timesteps(10), vec![2, 6, 9]);
        // Cosine, 10 steps: sampling starts at t = T−1 (not 900, as leading spacing did).
        let ts = SamplerConfig::ddim(10, 0.0).timesteps(1000);
        assert_eq!((ts.len(), ts[9], ts[0]), (10, 999, 99));
        // All steps is every timestep, as DDPM visits them.
        assert_eq!(SamplerConfig::ddim(7, 0.0).timesteps(7), (0..7).collect::<Vec<_>>());
        assert_eq!(SamplerConfig::ddpm().num_steps(7), 7);
        assert!(SamplerConfig::ddim(0, 0.0).validate(10).is_err());
        assert!(SamplerConfig::ddim(11, 0.0).validate(10).unwrap_err().contains("10 timesteps"));
    }
}
