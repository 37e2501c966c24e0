//! SPADE normalisation: a parameter-free normalisation modulated per pixel by the label map.

use burn::module::{Module, RunningState};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::spectral::{SnConv2d, SnConv2dConfig};

const NORM_EPS: f64 = 1e-5;
const BATCH_MOMENTUM: f64 = 0.1;

/// Which parameter-free normalisation SPADE modulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// Per sample and channel over the pixels: a sample's output never depends on the
    /// rest of its batch (the default).
    #[default]
    Instance,
    /// Per channel over batch and pixels while training; running statistics at inference
    /// (the NVlabs default, "syncbatch").
    Batch,
}

/// Parameter-free normalisation (no affine), instance or batch.
#[derive(Module, Debug)]
pub struct ParamFreeNorm<B: Backend> {
    /// Running mean and variance (`[channels]` each), batch norm only.
    pub running: Option<RunningStats<B>>,
}

/// Running mean and variance of a batch norm, `[channels]` each.
#[derive(Module, Debug)]
pub struct RunningStats<B: Backend> {
    pub mean: RunningState<Tensor<B, 1>>,
    pub var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> ParamFreeNorm<B> {
    pub fn new(kind: NormKind, channels: usize, device: &B::Device) -> Self {
        let running = match kind {
            NormKind::Instance => None,
            NormKind::Batch => Some(RunningStats { mean: RunningState::new(Tensor::zeros([channels], device)), var: RunningState::new(Tensor::ones([channels], device)) }),
        };
        ParamFreeNorm { running }
    }

    /// `x`: `[b, c, h, w]` → `[b, c, h, w]`, zero mean and unit variance per instance and
    /// channel (instance) or per channel (batch).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match &self.running {
            None => instance_norm(x),
            Some(RunningStats { mean, var }) => {
                let [b, c, h, w] = x.dims();
                if B::ad_enabled(&x.device()) {
                    let flat = x.swap_dims(0, 1).reshape([c, b * h * w]);
                    let m = flat.clone().mean_dim(1);
                    let centered = flat.sub(m.clone());
                    let v = centered.clone().square().mean_dim(1);
                    let new_mean = mean.value_sync().mul_scalar(1.0 - BATCH_MOMENTUM).add(m.detach().reshape([c]).mul_scalar(BATCH_MOMENTUM));
                    let new_var = var.value_sync().mul_scalar(1.0 - BATCH_MOMENTUM).add(v.clone().detach().reshape([c]).mul_scalar(BATCH_MOMENTUM));
                    mean.update(new_mean.detach());
                    var.update(new_var.detach());
                    centered.div(v.add_scalar(NORM_EPS).sqrt()).reshape([c, b, h, w]).swap_dims(0, 1)
                } else {
                    let m = mean.value().reshape([1, c, 1, 1]);
                    let s = var.value().add_scalar(NORM_EPS).sqrt().reshape([1, c, 1, 1]);
                    x.sub(m).div(s)
                }
            }
        }
    }
}

/// Instance normalisation without affine parameters: `[b, c, h, w]` → same shape.
pub fn instance_norm<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let flat = x.reshape([b * c, h * w]);
    let mean = flat.clone().mean_dim(1);
    let centered = flat.sub(mean);
    let var = centered.clone().square().mean_dim(1);
    centered.div(var.add_scalar(NORM_EPS).sqrt()).reshape([b, c, h, w])
}

/// Configuration of a SPADE normalisation layer.
#[derive(Config, Debug)]
pub struct SpadeConfig {
    /// Channels of the features being normalised.
    pub norm_nc: usize,
    /// Channels of the label input (one-hot classes).
    pub label_nc: usize,
    /// Hidden channels of the shared conv (128 in the paper).
    #[config(default = 128)]
    pub hidden: usize,
    #[config(default = "NormKind::Instance")]
    pub norm: NormKind,
}

impl SpadeConfig {
    /// # Panics
    /// If a channel count is 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Spade<B> {
        assert!(self.norm_nc > 0 && self.label_nc > 0 && self.hidden > 0, "SpadeConfig: channel counts must be positive: {self:?}");
        let conv = |i, o| SnConv2dConfig::new([i, o], 3).with_padding(1).with_spectral(false).init(device);
        Spade {
            norm: ParamFreeNorm::new(self.norm, self.norm_nc, device),
            shared: conv(self.label_nc, self.hidden),
            gamma_beta: conv(self.hidden, 2 * self.norm_nc),
            norm_nc: self.norm_nc,
        }
    }
}

/// SPADE: `norm(x) · (1 + γ(seg)) + β(seg)`, `γ`, `β` from the label map through a shared
/// conv 3×3 + ReLU and a conv 3×3 each (the two are one conv with `2·norm_nc` outputs
/// here: the same function and parameter count, one kernel launch fewer).
#[derive(Module, Debug)]
pub struct Spade<B: Backend> {
    pub norm: ParamFreeNorm<B>,
    pub shared: SnConv2d<B>,
    /// Output channels `0..norm_nc` are γ, `norm_nc..2·norm_nc` β.
    pub gamma_beta: SnConv2d<B>,
    #[module(skip)]
    norm_nc: usize,
}

impl<B: Backend> Spade<B> {
    /// `x`: `[b, norm_nc, h, w]`; `seg`: `[b, label_nc, h, w]`, the label map already
    /// nearest-resized to the feature size (the generator keeps one per resolution).
    /// Returns `[b, norm_nc, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>, seg: Tensor<B, 4>) -> Tensor<B, 4> {
        let normalized = self.norm.forward(x);
        let actv = relu(self.shared.forward(seg));
        let gb = self.gamma_beta.forward(actv);
        let gamma = gb.clone().narrow(1, 0, self.norm_nc);
        let beta = gb.narrow(1, self.norm_nc, self.norm_nc);
        normalized.mul(gamma.add_scalar(1.0)).add(beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    #[test]
    fn spade_instance_norm_is_zero_mean_unit_variance() {
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 4>::random([2, 3, 5, 5], burn::tensor::Distribution::Normal(3.0, 2.0), &device);
        let y = instance_norm(x).reshape([6, 25]);
        let mean: Vec<f32> = y.clone().mean_dim(1).into_data().to_vec().unwrap();
        let var: Vec<f32> = y.square().mean_dim(1).into_data().to_vec().unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-4), "means {mean:?}");
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-2), "variances {var:?}");
    }
}
