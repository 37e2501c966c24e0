//! Normalisation, modulation and activation fused into one pass over host memory, for
//! the CPU inference backend.
//!
//! Written with Burn's tensor ops, `act(norm(x)·a + b)` is five to eight full-size
//! passes, and on `burn-flex` each runs on one thread, element by element (`expf` for
//! SiLU; a strided walk when γ and β are slices of one tensor, as SPADE's are). Here the
//! tensor's buffer is taken over (no copy when the tensor is not shared), each sample's
//! channel groups are normalised in parallel (rayon), and the activation is applied in
//! the same pass. Statistics are accumulated in f64 (two passes: mean, then variance).
//!
//! Only [`Cpu`] takes this path ([`on_host`]): autodiff backends (training) and the CUDA
//! backend keep the tensor-op versions, which the tests compare against this one.

use std::any::TypeId;

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::backend::Cpu;

/// An activation applied after a normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    /// `x·σ(x)` (the DDPM UNet's).
    Silu,
    /// `max(x, slope·x)` (SPADE's, slope 0.2).
    LeakyRelu(f32),
}

impl Act {
    /// The activation with Burn's tensor ops (any backend, autodiff included).
    pub fn apply<B: Backend>(self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Act::Identity => x,
            Act::Silu => burn::tensor::activation::silu(x),
            Act::LeakyRelu(slope) => burn::tensor::activation::leaky_relu(x, slope as f64),
        }
    }

    /// Writes `act(x·s + t)` (or, with `spade`, `act((x·s + t)·(1 + γ) + β)`) over a row,
    /// one loop per activation so that each vectorises (a `match` per element would not).
    #[inline(always)]
    fn row(self, row: &mut [f32], s: f32, t: f32, spade: Option<(&[f32], &[f32])>) {
        match self {
            Act::Identity => affine_row(row, s, t, spade, |v| v),
            Act::Silu => affine_row(row, s, t, spade, |v| v / (1.0 + exp(-v))),
            Act::LeakyRelu(slope) => affine_row(row, s, t, spade, move |v| if v >= 0.0 { v } else { slope * v }),
        }
    }
}

#[inline(always)]
fn affine_row(row: &mut [f32], s: f32, t: f32, spade: Option<(&[f32], &[f32])>, act: impl Fn(f32) -> f32) {
    match spade {
        Some((gamma, beta)) => {
            for ((v, &g), &bt) in row.iter_mut().zip(gamma).zip(beta) {
                *v = act((*v * s + t) * (1.0 + g) + bt);
            }
        }
        None => {
            for v in row.iter_mut() {
                *v = act(*v * s + t);
            }
        }
    }
}

/// `eˣ` in f32 without a libm call (so that the loops around it vectorise at opt-level
/// 3): `x = k·ln2 + r`, `|r| ≤ ln2/2`, `eʳ` by its degree-6 Taylor polynomial (relative
/// error below 2·10⁻⁷), `2ᵏ` built in the exponent bits. Inputs are clamped to
/// `[-87, 88]` (the normal f32 range), which SiLU never notices. Only operations that
/// baseline x86-64 (SSE2) has as instructions: `round` would be a libm call per element
/// there, so `k` is rounded by adding and subtracting 1.5·2²³ instead, and the clamp is a
/// max and a min (no NaN check).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0;
    // max/min rather than clamp: two instructions, no NaN branch, so the loop vectorises.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.0).min(88.0);
    let k = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `Σ f(x)` in f64 over eight running lanes, so that the loop vectorises (one running
/// sum is a chain of dependent additions, which the compiler may not reorder).
#[inline(always)]
fn sum_f64(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v as f64);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Whether `B` is the CPU inference backend, whose tensors live in host memory and
/// record no graph, so the fused pass applies.
pub fn on_host<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Cpu>()
}

/// Where the normalisation's statistics come from.
#[derive(Debug, Clone, Copy)]
pub enum Stats<'a> {
    /// Per sample, over `groups` groups of adjacent channels and all pixels (GroupNorm;
    /// `groups == channels` is instance norm).
    Groups(usize),
    /// Fixed per-channel mean and variance (batch norm at inference).
    Running { mean: &'a [f32], var: &'a [f32] },
}

/// What multiplies and shifts the normalised value.
#[derive(Debug, Clone, Copy)]
pub enum Affine<'a> {
    None,
    /// Per channel: `n·γ_c + β_c` (GroupNorm's affine).
    Channel {
        gamma: Option<&'a [f32]>,
        beta: Option<&'a [f32]>,
    },
    /// Per pixel, SPADE's `n·(1 + γ) + β`, from one `[b, 2c, h, w]` buffer whose channels
    /// `0..c` are γ and `c..2c` are β.
    Spade(&'a [f32]),
}

/// One fused normalisation: `act(norm(x)·a + b)`.
#[derive(Debug, Clone, Copy)]
pub struct NormAct<'a> {
    pub stats: Stats<'a>,
    pub eps: f64,
    pub affine: Affine<'a>,
    pub act: Act,
}

impl NormAct<'_> {
    /// Applies the op in place to `x`, an NCHW buffer of `shape`.
    ///
    /// # Panics
    /// If a buffer's length does not match `shape`, or the groups do not divide the
    /// channels.
    pub fn apply_slice(&self, x: &mut [f32], shape: [usize; 4]) {
        let [b, c, h, w] = shape;
        let plane = h * w;
        assert_eq!(x.len(), b * c * plane, "fused norm: buffer of {} values for shape {shape:?}", x.len());
        let groups = match self.stats {
            Stats::Groups(g) => g,
            Stats::Running { mean, var } => {
                assert!(mean.len() == c && var.len() == c, "fused norm: running stats of {}/{} channels for {c}", mean.len(), var.len());
                c
            }
        };
        assert!(groups > 0 && c % groups == 0, "fused norm: {groups} groups do not divide {c} channels");
        match self.affine {
            Affine::Channel { gamma, beta } => {
                assert!(gamma.is_none_or(|g| g.len() == c) && beta.is_none_or(|v| v.len() == c), "fused norm: affine parameters are not {c} long");
            }
            Affine::Spade(gb) => assert_eq!(gb.len(), 2 * x.len(), "fused norm: γβ buffer of {} values for shape {shape:?}", gb.len()),
            Affine::None => {}
        }
        let per = c / groups;
        let chunk = per * plane;
        if chunk == 0 {
            return;
        }
        x.par_chunks_mut(chunk).enumerate().for_each(|(i, xs)| {
            let (sample, group) = (i / groups, i % groups);
            let (mean, inv) = match self.stats {
                Stats::Groups(_) => {
                    let n = xs.len() as f64;
                    let mean = sum_f64(xs, |v| v) / n;
                    let var = sum_f64(xs, |v| (v - mean) * (v - mean)) / n;
                    (mean, 1.0 / (var + self.eps).sqrt())
                }
                Stats::Running { mean, var } => (mean[group] as f64, 1.0 / (var[group] as f64 + self.eps).sqrt()),
            };
            for (j, row) in xs.chunks_mut(plane).enumerate() {
                let ch = group * per + j;
                // Per channel: y = x·s + t.
                let (mut s, mut t) = (inv, -mean * inv);
                if let Affine::Channel { gamma, beta } = self.affine {
                    let g = gamma.map_or(1.0, |g| g[ch] as f64);
                    (s, t) = (s * g, t * g + beta.map_or(0.0, |v| v[ch] as f64));
                }
                let (s, t) = (s as f32, t as f32);
                let spade = match self.affine {
                    Affine::Spade(gb) => {
                        let g0 = (sample * 2 * c + ch) * plane;
                        let b0 = (sample * 2 * c + c + ch) * plane;
                        Some((&gb[g0..g0 + plane], &gb[b0..b0 + plane]))
                    }
                    _ => None,
                };
                self.act.row(row, s, t, spade);
            }
        });
    }

    /// Applies the op to `x` (`[b, c, h, w]`) on the CPU inference backend. On another
    /// backend, or when `x` is not a float of 16 or 32 bits, `x` comes back as the error,
    /// for tensor ops. Half-precision `x` is computed in f32 and rounded back once.
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        let dtype = x.dtype();
        if !on_host::<B>() || !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(x);
        }
        let (shape, device) = (x.dims(), x.device());
        let mut data = x.into_data().convert::<f32>();
        self.apply_slice(data.as_mut_slice::<f32>().expect("an f32 tensor reads as f32"), shape);
        Ok(Tensor::<B, 4>::from_data(data, &device).cast(dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuDevice;
    use burn::tensor::Distribution;

    #[test]
    fn fused_exp_is_within_3e_7_of_libm() {
        let mut worst = 0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.0043;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "fast exp: worst relative error {worst:e}");
        assert!(exp(-200.0) > 0.0 && exp(-200.0) < 1e-37 && exp(200.0).is_finite());
    }

    /// `|a - b| ≤ 1e-5 · max(1, |b|)` everywhere.
    fn assert_close(got: Tensor<Cpu, 4>, want: Tensor<Cpu, 4>, what: &str) {
        assert_eq!(got.dims(), want.dims(), "{what}: shapes");
        let (got, want) = (got.into_data().to_vec::<f32>().unwrap(), want.into_data().to_vec::<f32>().unwrap());
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{what}: fused differs from the tensor ops by {worst:e} (relative)");
    }

    fn random(shape: [usize; 4], mean: f64, sd: f64) -> Tensor<Cpu, 4> {
        Tensor::random(shape, Distribution::Normal(mean, sd), &CpuDevice::default())
    }

    fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// GroupNorm + SiLU against burn's `GroupNorm` then `silu`; without affine or
    /// activation against burn's; with running statistics against the formula.
    #[test]
    fn fused_group_norm_silu_matches_the_tensor_ops() {
        let device = CpuDevice::default();
        let x = random([3, 12, 5, 7], 0.7, 2.0);
        let gamma: Tensor<Cpu, 1> = Tensor::random([12], Distribution::Normal(1.0, 0.5), &device);
        let beta: Tensor<Cpu, 1> = Tensor::random([12], Distribution::Normal(0.0, 0.5), &device);
        let norm = burn::nn::GroupNormConfig::new(4, 12).init::<Cpu>(&device);
        let norm = burn::nn::GroupNorm { gamma: Some(burn::module::Param::from_tensor(gamma.clone())), beta: Some(burn::module::Param::from_tensor(beta.clone())), ..norm };
        let want = Act::Silu.apply(norm.forward(x.clone()));
        let (g, bt) = (values(gamma), values(beta));
        let op = NormAct { stats: Stats::Groups(4), eps: norm.epsilon, affine: Affine::Channel { gamma: Some(&g), beta: Some(&bt) }, act: Act::Silu };
        assert_close(op.apply(x.clone()).unwrap(), want, "GroupNorm + SiLU");

        let plain = burn::nn::GroupNormConfig::new(4, 12).with_affine(false).init::<Cpu>(&device);
        let op = NormAct { affine: Affine::None, act: Act::Identity, ..op };
        assert_close(op.apply(x.clone()).unwrap(), plain.forward(x.clone()), "GroupNorm without affine");

        let (mean, var) = (Tensor::<Cpu, 1>::random([12], Distribution::Normal(0.5, 1.0), &device), Tensor::<Cpu, 1>::random([12], Distribution::Uniform(0.5, 3.0), &device));
        let want = x.clone().sub(mean.clone().reshape([1, 12, 1, 1])).div(var.clone().add_scalar(1e-5).sqrt().reshape([1, 12, 1, 1]));
        let want = Act::LeakyRelu(0.2).apply(want);
        let (m, v) = (values(mean), values(var));
        let op = NormAct { stats: Stats::Running { mean: &m, var: &v }, eps: 1e-5, affine: Affine::None, act: Act::LeakyRelu(0.2) };
        assert_close(op.apply(x).unwrap(), want, "running statistics + leaky ReLU");
    }

    /// SPADE's modulation: instance norm, `·(1 + γ) + β` from one γβ tensor, leaky ReLU.
    #[test]
    fn fused_spade_modulation_matches_the_tensor_ops() {
        let (x, gb) = (random([2, 5, 6, 4], -0.3, 1.5), random([2, 10, 6, 4], 0.0, 0.7));
        let flat = x.clone().reshape([10, 24]);
        let mean = flat.clone().mean_dim(1);
        let centered = flat.sub(mean);
        let var = centered.clone().square().mean_dim(1);
        let norm = centered.div(var.add_scalar(1e-5).sqrt()).reshape([2, 5, 6, 4]);
        let want = Act::LeakyRelu(0.2).apply(norm.mul(gb.clone().narrow(1, 0, 5).add_scalar(1.0)).add(gb.clone().narrow(1, 5, 5)));
        let gbv = values(gb);
        let op = NormAct { stats: Stats::Groups(5), eps: 1e-5, affine: Affine::Spade(&gbv), act: Act::LeakyRelu(0.2) };
        assert_close(op.apply(x).unwrap(), want, "SPADE modulation");
    }

    /// Other backends are handed their tensor back untouched.
    #[test]
    fn fused_declines_other_backends() {
        type Train = crate::backend::CpuTrain;
        let x = Tensor::<Train, 4>::ones([1, 2, 2, 2], &CpuDevice::default());
        let op = NormAct { stats: Stats::Groups(1), eps: 1e-5, affine: Affine::None, act: Act::Identity };
        assert!(!on_host::<Train>() && on_host::<Cpu>());
        assert_eq!(op.apply(x).unwrap_err().dims(), [1, 2, 2, 2]);
    }
}
