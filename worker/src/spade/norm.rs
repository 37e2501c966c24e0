//! SPADE normalisation: a parameter-free normalisation modulated per pixel by the label map.

use burn::module::{Module, RunningState};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

use super::spectral::{SnConv2d, SnConv2dConfig};
use crate::fused::{self, Act, Affine, NormAct, Stats};

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
                    // In f32 whatever the precision (the running statistics are f32).
                    let dtype = x.dtype();
                    let flat = crate::precision::f32(x).swap_dims(0, 1).reshape([c, b * h * w]);
                    let m = flat.clone().mean_dim(1);
                    let centered = flat.sub(m.clone());
                    let v = centered.clone().square().mean_dim(1);
                    // The stored statistics are read detached (see `SnConv2d::weight`).
                    let new_mean = mean.value_sync().detach().mul_scalar(1.0 - BATCH_MOMENTUM).add(m.detach().reshape([c]).mul_scalar(BATCH_MOMENTUM));
                    let new_var = var.value_sync().detach().mul_scalar(1.0 - BATCH_MOMENTUM).add(v.clone().detach().reshape([c]).mul_scalar(BATCH_MOMENTUM));
                    mean.update(new_mean.detach());
                    var.update(new_var.detach());
                    centered.div(v.add_scalar(NORM_EPS).sqrt()).reshape([c, b, h, w]).swap_dims(0, 1).cast(dtype)
                } else {
                    // In f32 whatever the precision, rounded back once.
                    use crate::precision::f32;
                    let dtype = x.dtype();
                    let m = f32(mean.value()).reshape([1, c, 1, 1]);
                    let s = f32(var.value()).add_scalar(NORM_EPS).sqrt().reshape([1, c, 1, 1]);
                    f32(x).sub(m).div(s).cast(dtype)
                }
            }
        }
    }
}

/// Instance normalisation without affine parameters: `[b, c, h, w]` → same shape. The
/// statistics in f32 whatever the precision ([`crate::precision`]).
pub fn instance_norm<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let dtype = x.dtype();
    let flat = crate::precision::f32(x).reshape([b * c, h * w]);
    let mean = flat.clone().mean_dim(1);
    let centered = flat.sub(mean);
    let var = centered.clone().square().mean_dim(1);
    centered.div(var.add_scalar(NORM_EPS).sqrt()).reshape([b, c, h, w]).cast(dtype)
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
    /// Spectral norm folded into the convs' weights ([`SnConv2d::fold`]).
    pub fn fold(self) -> Self {
        Spade { shared: self.shared.fold(), gamma_beta: self.gamma_beta.fold(), ..self }
    }

    /// `x`: `[b, norm_nc, h, w]`; `seg`: `[b, label_nc, h, w]`, the label map already
    /// nearest-resized to the feature size (the generator keeps one per resolution).
    /// Returns `[b, norm_nc, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>, seg: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_act(x, seg, Act::Identity)
    }

    /// `act(SPADE(x, seg))`: one fused pass on the CPU inference backend
    /// ([`crate::fused`]), tensor ops elsewhere.
    pub fn forward_act(&self, x: Tensor<B, 4>, seg: Tensor<B, 4>, act: Act) -> Tensor<B, 4> {
        let gb = self.gamma_beta.forward(relu(self.shared.forward(seg)));
        if fused::on_host::<B>() && matches!(x.dtype(), DType::F32 | DType::BF16 | DType::F16) {
            self.modulate_fused(x, gb, act)
        } else {
            self.modulate_ops(x, gb, act)
        }
    }

    /// `act(norm(x)·(1 + γ) + β)` in one pass over host memory; `gb`: γβ,
    /// `[b, 2·norm_nc, h, w]`. CPU inference backend; computed in f32 whatever the dtype.
    fn modulate_fused(&self, x: Tensor<B, 4>, gb: Tensor<B, 4>, act: Act) -> Tensor<B, 4> {
        let gbv = gb.into_data().convert::<f32>();
        let running = self.norm.running.as_ref().map(|r| (r.mean.value().into_data().convert::<f32>(), r.var.value().into_data().convert::<f32>()));
        let stats = match &running {
            None => Stats::Groups(self.norm_nc),
            Some((m, v)) => Stats::Running { mean: m.as_slice().expect("f32 running mean"), var: v.as_slice().expect("f32 running variance") },
        };
        let op = NormAct { stats, eps: NORM_EPS, affine: Affine::Spade(gbv.as_slice().expect("f32 γβ")), act };
        match op.apply(x) {
            Ok(y) => y,
            Err(_) => unreachable!("the caller checked: the CPU backend and a 16- or 32-bit float"),
        }
    }

    /// [`Self::modulate_fused`] with tensor ops (any backend, autodiff included).
    fn modulate_ops(&self, x: Tensor<B, 4>, gb: Tensor<B, 4>, act: Act) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let normalized = self.norm.forward(x);
        // γ and β as two contiguous tensors (one copy of γβ, `[b, 2c, …]` → `[2b, c, …]`):
        // slices along the channels would be strided, which CPU backends walk serially.
        let halves = gb.reshape([b, 2, c, h * w]).swap_dims(0, 1).reshape([2 * b, c, h, w]);
        let (gamma, beta) = (halves.clone().narrow(0, 0, b), halves.narrow(0, b, b));
        act.apply(normalized.mul(gamma.add_scalar(1.0)).add(beta))
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

    /// The fused modulation and the tensor ops agree (within 1e-5 relative), for instance
    /// norm and for batch norm's running statistics, with and without the activation.
    #[test]
    fn spade_fused_modulation_matches_the_tensor_ops() {
        use burn::tensor::Distribution::{Normal, Uniform};
        let device = CpuDevice::default();
        for norm in [NormKind::Instance, NormKind::Batch] {
            let mut spade = SpadeConfig::new(6, 4).with_hidden(5).with_norm(norm).init::<Cpu>(&device);
            if let Some(r) = &mut spade.norm.running {
                *r = RunningStats {
                    mean: RunningState::new(Tensor::random([6], Normal(0.3, 1.0), &device)),
                    var: RunningState::new(Tensor::random([6], Uniform(0.5, 2.0), &device)),
                };
            }
            let x = Tensor::<Cpu, 4>::random([3, 6, 7, 5], Normal(0.5, 2.0), &device);
            let seg = Tensor::<Cpu, 4>::random([3, 4, 7, 5], Uniform(0.0, 1.0), &device);
            for act in [Act::Identity, Act::LeakyRelu(0.2)] {
                let gb = spade.gamma_beta.forward(relu(spade.shared.forward(seg.clone())));
                let want: Vec<f32> = spade.modulate_ops(x.clone(), gb, act).into_data().to_vec().unwrap();
                let got: Vec<f32> = spade.forward_act(x.clone(), seg.clone(), act).into_data().to_vec().unwrap();
                let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0f32, f32::max);
                assert!(worst <= 1e-5, "{norm:?}, {act:?}: fused differs by {worst:e}");
            }
        }
    }
}
