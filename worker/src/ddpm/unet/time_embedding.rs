//! Sinusoidal timestep embedding followed by a two-layer MLP (Ho et al.: `ch → 4·ch → 4·ch`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The transformer-style sinusoidal embedding of timesteps `t` (as in the DDPM code):
/// `[sin(t·f_0) … sin(t·f_{h-1}), cos(t·f_0) … cos(t·f_{h-1})]` with
/// `f_i = exp(-ln(10000)·i/(h-1))`, `h = dim/2`.
///
/// `t`: `[B]` → `[B, dim]`. `dim` must be even and at least 4.
pub fn sinusoidal_embedding<B: Backend>(t: Tensor<B, 1>, dim: usize) -> Tensor<B, 2> {
    assert!(dim >= 4 && dim.is_multiple_of(2), "time embedding dimension {dim} must be even and at least 4");
    let half = dim / 2;
    let scale = (10000f64).ln() / (half as f64 - 1.0);
    let freqs: Vec<f32> = (0..half).map(|i| (-(i as f64) * scale).exp() as f32).collect();
    let freqs = Tensor::<B, 2>::from_data(TensorData::new(freqs, [1, half]), &t.device());
    let args = t.unsqueeze_dim::<2>(1) * freqs; // [B, half]
    Tensor::cat(vec![args.clone().sin(), args.cos()], 1)
}

/// Config of [`TimeEmbedding`].
#[derive(Config, Debug)]
pub struct TimeEmbeddingConfig {
    /// Sinusoid dimension (the UNet's base channels).
    pub base_channels: usize,
    /// Output dimension (4 × base channels in Ho et al.).
    pub out_channels: usize,
}

impl TimeEmbeddingConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> TimeEmbedding<B> {
        assert!(self.base_channels >= 4 && self.base_channels.is_multiple_of(2), "time embedding: base channels {} must be even and at least 4", self.base_channels);
        TimeEmbedding {
            dense0: LinearConfig::new(self.base_channels, self.out_channels).init(device),
            dense1: LinearConfig::new(self.out_channels, self.out_channels).init(device),
            base_channels: self.base_channels,
        }
    }
}

/// `t ↦ dense1(silu(dense0(sinusoid(t))))`.
#[derive(Module, Debug)]
pub struct TimeEmbedding<B: Backend> {
    pub dense0: Linear<B>,
    pub dense1: Linear<B>,
    pub base_channels: usize,
}

impl<B: Backend> TimeEmbedding<B> {
    /// `t`: `[B]` timesteps (as floats) → `[B, out_channels]`. The sinusoids are computed
    /// in f32 (a bf16 timestep near 999 is off by up to 4), then cast to the weights' dtype.
    pub fn forward(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let e = sinusoidal_embedding(crate::precision::f32(t), self.base_channels).cast(crate::precision::model_dtype(&self.dense0.weight));
        self.dense1.forward(silu(self.dense0.forward(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    #[test]
    fn ddpm_sinusoid_matches_closed_form() {
        let device = CpuDevice::default();
        let t = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![0.0f32, 7.0, 999.0], [3]), &device);
        let e = sinusoidal_embedding(t, 8).into_data().to_vec::<f32>().unwrap();
        for (row, tv) in [0.0f64, 7.0, 999.0].iter().enumerate() {
            for i in 0..4 {
                let f = (-(i as f64) * (10000f64).ln() / 3.0).exp();
                assert!((e[row * 8 + i] as f64 - (tv * f).sin()).abs() < 1e-3, "sin t={tv} i={i}");
                assert!((e[row * 8 + 4 + i] as f64 - (tv * f).cos()).abs() < 1e-3, "cos t={tv} i={i}");
            }
        }
    }

    #[test]
    fn ddpm_time_embedding_shape() {
        let device = CpuDevice::default();
        let m = TimeEmbeddingConfig::new(16, 64).init::<Cpu>(&device);
        let t = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
        assert_eq!(m.forward(t).dims(), [2, 64]);
    }
}
