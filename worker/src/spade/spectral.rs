//! Spectral normalisation (Miyato et al.) by power iteration: Burn 0.21 has none.
//!
//! [`SnConv2d`] keeps an ordinary weight `W` (`[out, in, k, k]`) and a left singular
//! vector estimate `u` (`[out]`, a [`RunningState`]: saved with the module, never trained).
//! The convolution uses `W / σ`, where `σ ≈ ‖W‖₂` is estimated from `W` reshaped to
//! `(out, in·k·k)`:
//!
//! - training forward (autodiff backend): one power-iteration step `v = norm(Wᵀu)`,
//!   `u = norm(Wv)` on the detached weight, stores the new `u`, and `σ = uᵀ W v` with
//!   gradients flowing through `W` (as PyTorch's `spectral_norm`);
//! - inference forward: the stored `u` is not changed; `v = norm(Wᵀu)`, `σ = uᵀ W v`.

use burn::module::{Module, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::Distribution;

/// Small constant added to vector norms (PyTorch uses 1e-12; 1e-12 underflows nothing here).
const EPS: f64 = 1e-12;

/// Configuration of a spectrally normalised 2-D convolution.
#[derive(Config, Debug)]
pub struct SnConv2dConfig {
    /// `[in, out]` channels.
    pub channels: [usize; 2],
    /// Square kernel side.
    pub kernel: usize,
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding on every side.
    #[config(default = 0)]
    pub padding: usize,
    #[config(default = true)]
    pub bias: bool,
    /// Apply spectral normalisation (false: a plain convolution with the same layout).
    #[config(default = true)]
    pub spectral: bool,
}

impl SnConv2dConfig {
    /// Builds the convolution (PyTorch-default Kaiming-uniform weights) and a random unit `u`.
    ///
    /// # Panics
    /// If a channel count, the kernel or the stride is 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SnConv2d<B> {
        assert!(self.channels[0] > 0 && self.channels[1] > 0, "SnConv2d: channels {:?} must be positive", self.channels);
        assert!(self.kernel > 0 && self.stride > 0, "SnConv2d: kernel {} and stride {} must be positive", self.kernel, self.stride);
        let conv = Conv2dConfig::new(self.channels, [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Explicit(self.padding, self.padding, self.padding, self.padding))
            .with_bias(self.bias)
            .init(device);
        let u = self.spectral.then(|| {
            let u = Tensor::<B, 1>::random([self.channels[1]], Distribution::Normal(0.0, 1.0), device);
            RunningState::new(normalize(u))
        });
        SnConv2d { conv, u, stride: self.stride, padding: self.padding }
    }
}

/// A 2-D convolution whose weight is divided by its estimated spectral norm.
#[derive(Module, Debug)]
pub struct SnConv2d<B: Backend> {
    /// Weight `[out, in, k, k]` and optional bias `[out]` (the un-normalised parameters).
    pub conv: Conv2d<B>,
    /// Left singular vector estimate `[out]`; `None` when spectral norm is off.
    pub u: Option<RunningState<Tensor<B, 1>>>,
    #[module(skip)]
    stride: usize,
    #[module(skip)]
    padding: usize,
}

impl<B: Backend> SnConv2d<B> {
    /// `x`: `[batch, in, h, w]` → `[batch, out, h', w']`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let weight = self.weight();
        crate::cpu_conv::conv2d(x, weight, self.conv.bias.as_ref().map(|b| b.val()), [self.stride; 2], [self.padding; 2])
    }

    /// The weight the convolution uses: `W / σ` (or `W` without spectral norm). In a
    /// training forward (autodiff backend) this also advances the power iteration.
    /// σ is estimated in f32 whatever the precision, and `W / σ` rounded once.
    pub fn weight(&self) -> Tensor<B, 4> {
        let w = self.conv.weight.val();
        let Some(u_state) = &self.u else { return w };
        let dtype = w.dtype();
        let w = crate::precision::f32(w);
        let [o, i, kh, kw] = w.dims();
        let w_mat = w.clone().reshape([o, i * kh * kw]);
        let device = w.device();
        let (u, v) = if B::ad_enabled(&device) {
            // Read and stored detached: `u` ties no graph to another (a step's to the next,
            // or a data-parallel replica's to the trainer's, which would share its node).
            let (u, v) = power_iteration(w_mat.clone().detach(), u_state.value_sync().detach(), 1);
            u_state.update(u.clone().detach());
            (u, v)
        } else {
            let u = crate::precision::f32(u_state.value());
            let v = normalize(w_mat.clone().transpose().matmul(u.clone().reshape([o, 1])).reshape([i * kh * kw]));
            (u, v)
        };
        let sigma = sigma(w_mat, u, v);
        w.div(sigma.reshape([1, 1, 1, 1])).cast(dtype)
    }

    /// For inference: the weight replaced by `W / σ` (σ from the stored `u`, in f32) and
    /// spectral norm switched off, so no forward estimates σ again. The record loses `u`:
    /// a folded module is for running, not for saving.
    pub fn fold(self) -> Self {
        if self.u.is_none() {
            return self;
        }
        // Detached: a folded weight is a leaf (on an autodiff backend too).
        let w = self.weight().detach();
        let conv = Conv2d { weight: burn::module::Param::from_tensor(w), ..self.conv };
        SnConv2d { conv, u: None, ..self }
    }

    /// The current estimate of `‖W‖₂` (no update), for tests and logs.
    pub fn sigma(&self) -> Option<f32> {
        let u = self.u.as_ref()?.value();
        let w = self.conv.weight.val();
        let [o, i, kh, kw] = w.dims();
        let w_mat = w.reshape([o, i * kh * kw]);
        let v = normalize(w_mat.clone().transpose().matmul(u.clone().reshape([o, 1])).reshape([i * kh * kw]));
        Some(sigma(w_mat, u, v).into_scalar().elem::<f32>())
    }
}

/// `x / (‖x‖ + ε)` for a vector.
pub fn normalize<B: Backend>(x: Tensor<B, 1>) -> Tensor<B, 1> {
    let n = x.clone().square().sum().sqrt().add_scalar(EPS);
    x.div(n)
}

/// `iters` power-iteration steps on `w` (`[m, n]`) from `u` (`[m]`): returns the new
/// `(u, v)` (`[m]`, `[n]`), estimates of the top left and right singular vectors.
pub fn power_iteration<B: Backend>(w: Tensor<B, 2>, u: Tensor<B, 1>, iters: usize) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [m, n] = w.dims();
    let wt = w.clone().transpose();
    let mut u = u;
    let mut v = normalize(wt.clone().matmul(u.clone().reshape([m, 1])).reshape([n]));
    for step in 0..iters {
        if step > 0 {
            v = normalize(wt.clone().matmul(u.clone().reshape([m, 1])).reshape([n]));
        }
        u = normalize(w.clone().matmul(v.clone().reshape([n, 1])).reshape([m]));
    }
    (u, v)
}

/// `σ = uᵀ W v` (`[1]`); differentiable in `w`.
pub fn sigma<B: Backend>(w: Tensor<B, 2>, u: Tensor<B, 1>, v: Tensor<B, 1>) -> Tensor<B, 1> {
    let [m, n] = w.dims();
    let wv = w.matmul(v.reshape([n, 1])).reshape([m]);
    wv.mul(u).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice, CpuTrain};
    use burn::module::AutodiffModule;
    use burn::tensor::TensorData;

    /// A 4×3 matrix with singular values 7, 2, 0.5: `U Σ Vᵀ` with `U`, `V` Householder
    /// reflections (orthogonal, not axis-aligned).
    fn known_matrix(device: &CpuDevice) -> Tensor<Cpu, 2> {
        let householder = |a: &[f32]| {
            let n = a.len();
            let nn: f32 = a.iter().map(|x| x * x).sum();
            let mut h = vec![0f32; n * n];
            for r in 0..n {
                for c in 0..n {
                    h[r * n + c] = if r == c { 1.0 } else { 0.0 } - 2.0 * a[r] * a[c] / nn;
                }
            }
            h
        };
        let u = householder(&[1.0, 2.0, -1.0, 0.5]); // 4×4
        let v = householder(&[0.3, -1.0, 2.0]); // 3×3
        let s = [7.0f32, 2.0, 0.5];
        let mut w = vec![0f32; 12];
        for r in 0..4 {
            for c in 0..3 {
                w[r * 3 + c] = (0..3).map(|k| u[r * 4 + k] * s[k] * v[c * 3 + k]).sum();
            }
        }
        Tensor::from_data(TensorData::new(w, [4, 3]), device)
    }

    #[test]
    fn spade_power_iteration_finds_the_largest_singular_value() {
        let device = CpuDevice::default();
        let w = known_matrix(&device);
        let u0 = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0], [4]), &device);
        let (u, v) = power_iteration(w.clone(), u0, 30);
        let s = sigma(w, u, v).into_scalar().elem::<f32>();
        assert!((s - 7.0).abs() < 1e-3, "σ after 30 power-iteration steps = {s}, expected 7 (singular values 7, 2, 0.5)");
    }

    #[test]
    fn spade_spectral_conv_weight_has_unit_norm_after_training_forwards() {
        let device = CpuDevice::default();
        // A 1×1 conv 3 → 4 whose weight is the known matrix (‖W‖₂ = 7).
        let mut conv = SnConv2dConfig::new([3, 4], 1).init::<CpuTrain>(&device);
        let w = Tensor::<CpuTrain, 2>::from_inner(known_matrix(&device)).reshape([4, 3, 1, 1]);
        conv.conv.weight = burn::module::Param::from_tensor(w);
        let x = Tensor::<CpuTrain, 4>::ones([1, 3, 2, 2], &device);
        // Each training forward is one power-iteration step, stored in `u`.
        for _ in 0..20 {
            let _ = conv.forward(x.clone());
        }
        let s = conv.sigma().unwrap();
        assert!((s - 7.0).abs() < 1e-3, "σ estimate after 20 training forwards = {s}, expected 7");
        let w = conv.weight().inner().reshape([4, 3]);
        let u0 = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![1.0f32, 0.3, -0.2, 0.1], [4]), &device);
        let (u, v) = power_iteration(w.clone(), u0, 100);
        let n = sigma(w, u, v).into_scalar().elem::<f32>();
        assert!((n - 1.0).abs() < 1e-3, "‖W/σ‖₂ = {n}, expected 1");
        // Inference does not move u.
        let inner = conv.valid();
        let before = inner.sigma().unwrap();
        let _ = inner.forward(Tensor::<Cpu, 4>::ones([1, 3, 2, 2], &device));
        assert_eq!(before, inner.sigma().unwrap());
        assert_eq!(inner.forward(Tensor::<Cpu, 4>::ones([2, 3, 6, 6], &device)).dims(), [2, 4, 6, 6]);
    }
}
