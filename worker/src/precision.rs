//! Inference precision ([`Precision`], `pipeline.precision`, `--precision`): a network's
//! weights are cast once, at load ([`cast_module`]); each forward casts its input to the
//! weights' dtype on entry and its output back to f32 ([`model_dtype`]), so samplers,
//! cleanup and encoders see f32 whatever the precision.
//!
//! Inside, what loses most in half precision stays in f32: GroupNorm's and SPADE's
//! normalisation statistics computed from the input (`ddpm::unet::norm`, `spade::norm`,
//! [`crate::fused`]), attention's softmax (`ddpm::unet::attention`) and the sinusoidal
//! timestep embedding. Classes are decided by argmax of f32 values. Stored statistics are
//! cast with the weights: a `--norm batch` SPADE's running mean and variance are read back
//! in f32 but keep the half precision's rounding (about 1% relative; the shipped models
//! use instance norm, which stores none).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

pub use shared::spec::Precision;

/// The tensor dtype of a precision.
pub fn float_dtype(p: Precision) -> FloatDType {
    match p {
        Precision::F32 => FloatDType::F32,
        Precision::Bf16 => FloatDType::BF16,
        Precision::F16 => FloatDType::F16,
    }
}

/// Casts a module's float tensors to a dtype: all of them, or only the trainable ones
/// (those that require a gradient: not running states or frozen tensors).
struct CastTo {
    dtype: FloatDType,
    trainable_only: bool,
}

impl<B: Backend> ModuleMapper<B> for CastTo {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        let t = if !self.trainable_only || t.is_require_grad() { t.cast(self.dtype) } else { t };
        Param::from_mapped_value(id, t, mapper)
    }
}

/// `module` with its weights in precision `p` (unchanged for f32 weights and `F32`).
///
/// Burn's `RunningState`s (spectral norm's `u`, batch norm's statistics) are shared
/// between a module and its clones and cast in place: casting a clone casts them in the
/// original too. Cast a module that is not kept in f32 beside it (the UNet has none).
pub fn cast_module<B: Backend, M: Module<B>>(module: M, p: Precision) -> M {
    module.map(&mut CastTo { dtype: float_dtype(p), trainable_only: false })
}

/// For a mixed-precision training step: `module`'s trainable parameters cast to `p`, as
/// a differentiable function of the f32 ones (the master weights: gradients come back
/// through the cast in f32). Running states (spectral norm's `u`, batch norm's
/// statistics) are not cast, so their updates during the step reach the master module
/// (which shares them) in f32.
pub fn cast_for_training<B: Backend, M: Module<B>>(module: M, p: Precision) -> M {
    if p.is_f32() {
        return module;
    }
    module.map(&mut CastTo { dtype: float_dtype(p), trainable_only: true })
}

/// The dtype a forward computes in: that of a weight of the network.
pub fn model_dtype<B: Backend, const D: usize>(weight: &Param<Tensor<B, D>>) -> DType {
    weight.val().dtype()
}

/// `x` in f32 (a no-op when it is).
pub fn f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.cast(FloatDType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::nn::LinearConfig;

    #[test]
    fn cast_module_casts_every_weight_and_parses_names() {
        let lin = LinearConfig::new(3, 2).init::<Cpu>(&CpuDevice::default());
        for p in Precision::ALL {
            let cast = cast_module(lin.clone(), p);
            assert_eq!(model_dtype(&cast.weight), DType::from(float_dtype(p)), "{p}");
            assert_eq!(cast.bias.as_ref().unwrap().val().dtype(), DType::from(float_dtype(p)), "{p}: bias");
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert!("fp8".parse::<Precision>().unwrap_err().contains("expected f32, bf16 or f16"));
    }

    /// Share of pixels equal in two lists of maps.
    pub(crate) fn label_agreement(a: &[shared::LabelMap], b: &[shared::LabelMap]) -> f64 {
        let (same, all) = a.iter().zip(b).fold((0usize, 0usize), |(s, n), (x, y)| (s + x.data.iter().zip(&y.data).filter(|(p, q)| p == q).count(), n + x.data.len()));
        same as f64 / all.max(1) as f64
    }

    /// Mean absolute difference of image bytes (0–255).
    pub(crate) fn image_mae(a: &[shared::RgbImage], b: &[shared::RgbImage]) -> f64 {
        let (sum, n) =
            a.iter().zip(b).fold((0f64, 0usize), |(s, n), (x, y)| (s + x.data.iter().zip(&y.data).map(|(&p, &q)| (p as f64 - q as f64).abs()).sum::<f64>(), n + x.data.len()));
        sum / n.max(1) as f64
    }

    /// The demo models in bf16 and f16 against f32: the DDPM's maps (DDIM-20, the
    /// pipeline's default) agree on ≥ 99.5 % of pixels, SPADE's images painted from the
    /// same maps differ by ≤ 2/255 on average.
    #[test]
    fn half_precision_matches_f32_on_the_demo_models() {
        let device = CpuDevice::default();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo");
        let ddpm = crate::ddpm::DdpmModel::<Cpu>::load(&format!("{root}/ddpm"), &device).unwrap();
        let spade = crate::spade::SpadeModel::<Cpu>::load(&format!("{root}/spade"), &device).unwrap();
        let seeds: Vec<u64> = (0..16).map(|i| shared::sample_seed(5, i)).collect();
        let sampler = crate::ddpm::SamplerConfig::ddim(20, 0.0);
        let maps = ddpm.sample(&seeds, &sampler);
        let images = spade.synthesize(&maps, &seeds);
        for p in [Precision::Bf16, Precision::F16] {
            let m = ddpm.clone().with_precision(p).sample(&seeds, &sampler);
            let agree = label_agreement(&maps, &m);
            let im = spade.clone().for_inference(p).synthesize(&maps, &seeds);
            let mae = image_mae(&images, &im);
            eprintln!("{p}: label agreement {agree:.5}, image MAE {mae:.3}/255");
            assert!(agree >= 0.995, "{p}: label maps agree with f32 on {agree:.4} of pixels (want ≥ 0.995)");
            assert!(mae <= 2.0, "{p}: images differ from f32 by {mae:.3}/255 on average (want ≤ 2)");
            assert!(mae > 0.0 || agree < 1.0, "{p}: identical to f32: the cast did nothing");
        }
    }

    /// The full-size architectures (Ho et al.'s CIFAR UNet, 35.7M parameters; SPADE with
    /// ngf 64), randomly initialised and jittered so no output layer is zero, at small
    /// spatial size: the UNet's output within 4 % (bf16) or 1 % (f16) relative RMS of f32,
    /// SPADE's images within 2/255.
    #[test]
    fn half_precision_matches_f32_on_random_full_size_models() {
        use crate::ddpm::{DdpmMeta, DdpmModel, Encoding, UNetConfig};
        use crate::spade::{SpadeGeneratorConfig, SpadeInput};
        let device = CpuDevice::default();
        let k = shared::ClassTable::ai_hub().len();
        let mut unet = UNetConfig::cifar10(k);
        unet.image_size = 16;
        let meta = DdpmMeta::untrained(unet, Encoding::OneHot, 1000, 16);
        let net = meta.unet.init::<Cpu>(&device).map(&mut crate::ddpm::sampler::tests::Jitter);
        let ddpm = DdpmModel::new(net, meta, device);
        let spade = SpadeGeneratorConfig::new(k, 64).with_input(SpadeInput::Label).init::<Cpu>(&device).map(&mut crate::ddpm::sampler::tests::Jitter);
        let seeds: Vec<u64> = (0..4).map(|i| shared::sample_seed(6, i)).collect();
        let sampler = crate::ddpm::SamplerConfig::ddim(20, 0.0);
        let maps = ddpm.sample(&seeds, &sampler);
        let big: Vec<shared::LabelMap> = maps.iter().map(|m| m.resize_nearest(64, 64)).collect();
        let images = spade.synthesize(&big, &seeds);
        // One network evaluation, on noise at t = 500.
        let x = Tensor::<Cpu, 4>::random([4, k, 16, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<Cpu, 1>::from_data(burn::tensor::TensorData::new(vec![500f32; 4], [4]), &device);
        let eps = ddpm.unet.forward(x.clone(), t.clone());
        let rms = |v: Tensor<Cpu, 4>| v.square().mean().sqrt().into_scalar();
        for p in [Precision::Bf16, Precision::F16] {
            let half = ddpm.clone().with_precision(p);
            let rel = rms(half.unet.forward(x.clone(), t.clone()) - eps.clone()) / rms(eps.clone());
            let m = half.sample(&seeds, &sampler);
            let agree = label_agreement(&maps, &m);
            let im = cast_module(spade.clone().fold_spectral_norm(), p).synthesize(&big, &seeds);
            let mae = image_mae(&images, &im);
            eprintln!("{p}: UNet output relative RMS error {rel:.5}, label agreement {agree:.5}, image MAE {mae:.3}/255");
            // A random network's argmax margins are near-ties, so its maps say little (0.986
            // to 0.993 for bf16 in trials); the network's own output error is the measure.
            let bound = if p == Precision::Bf16 { 0.04 } else { 0.01 };
            assert!(rel <= bound && rel > 0.0, "{p}: UNet output differs from f32 by {rel:.4} relative RMS (want ≤ {bound}, and not 0)");
            assert!(mae <= 2.0, "{p}: images differ from f32 by {mae:.3}/255 on average (want ≤ 2)");
        }
    }

    /// The tensor-op path GPUs take (the CPU inference backend fuses norms instead), on
    /// the autodiff CPU backend: SPADE (instance norm) in bf16 against f32; and batch
    /// norm's inference branch (running statistics), which is tensor ops on any backend.
    #[test]
    fn half_precision_spade_through_the_tensor_ops() {
        use crate::backend::CpuTrain;
        use crate::spade::{NormKind, SpadeGeneratorConfig, SpadeInput};
        let device = CpuDevice::default();
        let maps: Vec<shared::LabelMap> = (0..2).map(|i| shared::procedural::sample(4, i, 32, &shared::procedural::ClassShares::default()).1).collect();
        let g = SpadeGeneratorConfig::new(8, 32).with_ngf(4).with_n_up(3).with_spade_hidden(16).with_z_dim(8).with_input(SpadeInput::Label);
        let g = g.init::<CpuTrain>(&device).map(&mut crate::ddpm::sampler::tests::Jitter).fold_spectral_norm();
        let want = g.synthesize(&maps, &[1, 2]);
        let got = cast_module(g, Precision::Bf16).synthesize(&maps, &[1, 2]);
        let mae = image_mae(&want, &got);
        assert!(mae <= 2.0 && mae > 0.0, "bf16 differs from f32 by {mae:.3}/255 (want ≤ 2, and not 0)");

        let norm = crate::spade::ParamFreeNorm::<Cpu>::new(NormKind::Batch, 6, &device).map(&mut crate::ddpm::sampler::tests::Jitter);
        let x = Tensor::<Cpu, 4>::random([2, 6, 5, 5], burn::tensor::Distribution::Normal(0.5, 2.0), &device);
        let want = norm.forward(x.clone());
        let got = f32(cast_module(norm, Precision::Bf16).forward(x.cast(FloatDType::BF16)));
        let rms = |v: Tensor<Cpu, 4>| v.square().mean().sqrt().into_scalar();
        let rel = rms(got - want.clone()) / rms(want);
        assert!(rel < 0.01, "batch norm's running-statistics branch in bf16: relative RMS error {rel}");
    }
}
