//! GroupNorm (+ SiLU) with the affine folded into one per-(sample, channel) scale and
//! shift: `y = x·s + t` with `s = γ/σ_g`, `t = β - μ_g·s`, statistics from `E[x]` and
//! `E[x²]`. Same parameters and results as `burn::nn::GroupNorm` (up to float rounding),
//! but half the full-size passes, which is where Burn's CPU backends spend their time.
//! On the CPU inference backend the whole of it, SiLU included, is one fused pass
//! ([`crate::fused`]).

use burn::nn::GroupNorm;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::fused::{self, Act, Affine, NormAct, Stats};

/// `norm(x)`, then SiLU if `act`. `x`: `[B, C, H, W]` → `[B, C, H, W]`.
pub fn group_norm<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>, act: bool) -> Tensor<B, 4> {
    let c = x.dims()[1];
    let g = norm.num_groups;
    assert_eq!(c, norm.num_channels, "group norm of {} channels given {c}", norm.num_channels);
    let act = if act { Act::Silu } else { Act::Identity };
    if !fused::on_host::<B>() {
        return group_norm_ops(norm, x, act);
    }
    let values = |p: &burn::module::Param<Tensor<B, 1>>| p.val().into_data().convert::<f32>().to_vec::<f32>().ok();
    let (gamma, beta) = (norm.gamma.as_ref().and_then(values), norm.beta.as_ref().and_then(values));
    let affine = Affine::Channel { gamma: gamma.as_deref(), beta: beta.as_deref() };
    match (NormAct { stats: Stats::Groups(g), eps: norm.epsilon, affine, act }).apply(x) {
        Ok(y) => y,
        Err(x) => group_norm_ops(norm, x, act),
    }
}

/// [`group_norm`] with tensor ops (any backend, autodiff included). Statistics, scale and
/// shift in f32 whatever the precision; the full-size multiply-add in `x`'s dtype.
fn group_norm_ops<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>, act: Act) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let g = norm.num_groups;
    let per = c / g;
    let dtype = x.dtype();
    let xg = crate::precision::f32(x.clone()).reshape([b, g, per * h * w]);
    let mean = xg.clone().mean_dim(2); // [B, G, 1]
    let mean_sq = xg.square().mean_dim(2);
    let var = (mean_sq - mean.clone().square()).clamp_min(0.0);
    let inv = var.add_scalar(norm.epsilon).sqrt().recip();
    // Per channel: [B, G, 1] → [B, C].
    let to_channels = |t: Tensor<B, 3>| t.expand([b, g, per]).reshape([b, c]);
    let (mut scale, mean_c) = (to_channels(inv), to_channels(mean));
    if let Some(gamma) = &norm.gamma {
        scale = scale * crate::precision::f32(gamma.val()).reshape([1, c]);
    }
    let mut shift = -(mean_c * scale.clone());
    if let Some(beta) = &norm.beta {
        shift = shift + crate::precision::f32(beta.val()).reshape([1, c]);
    }
    act.apply(x * scale.cast(dtype).reshape([b, c, 1, 1]) + shift.cast(dtype).reshape([b, c, 1, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::module::{Module, ModuleMapper, Param};
    use burn::nn::GroupNormConfig;
    use burn::tensor::activation::silu;
    use burn::tensor::Distribution;

    struct Randomise;
    impl<B: Backend> ModuleMapper<B> for Randomise {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = param.consume();
            let r = t.random_like(Distribution::Normal(0.0, 0.5));
            Param::from_mapped_value(id, t + r, mapper)
        }
    }

    #[test]
    fn ddpm_folded_group_norm_matches_burn() {
        let device = CpuDevice::default();
        let norm = GroupNormConfig::new(4, 12).init::<Cpu>(&device).map(&mut Randomise);
        let x = Tensor::<Cpu, 4>::random([3, 12, 5, 6], Distribution::Normal(0.7, 2.0), &device);
        let want = norm.forward(x.clone());
        let err = (group_norm(&norm, x.clone(), false) - want.clone()).abs().max().into_scalar();
        assert!(err < 1e-4, "folded GroupNorm differs from burn's by {err}");
        let err = (group_norm(&norm, x.clone(), true) - silu(want.clone())).abs().max().into_scalar();
        assert!(err < 1e-4, "folded GroupNorm+SiLU differs by {err}");
        // The tensor-op version (what autodiff and CUDA run) against the fused one.
        let err = (group_norm_ops(&norm, x.clone(), Act::Identity) - want.clone()).abs().max().into_scalar();
        assert!(err < 1e-4, "folded GroupNorm (tensor ops) differs from burn's by {err}");
        let err = (group_norm_ops(&norm, x, Act::Silu) - silu(want)).abs().max().into_scalar();
        assert!(err < 1e-4, "folded GroupNorm+SiLU (tensor ops) differs by {err}");
    }
}
