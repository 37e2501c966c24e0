//! SPADE losses: hinge GAN loss and discriminator feature matching, averaged over scales.

use burn::prelude::*;
use burn::tensor::activation::relu;

use super::discriminator::ScaleOutputs;

/// Weight of the feature-matching loss (NVlabs `lambda_feat`).
pub const FEAT_WEIGHT: f64 = 10.0;

fn scores<B: Backend>(scale: &ScaleOutputs<B>) -> Tensor<B, 4> {
    scale.last().expect("a discriminator scale has outputs").clone()
}

/// Discriminator hinge loss: mean over scales of `mean(relu(1 − real)) + mean(relu(1 + fake))`.
pub fn hinge_d<B: Backend>(real: &[ScaleOutputs<B>], fake: &[ScaleOutputs<B>]) -> Tensor<B, 1> {
    let n = real.len() as f64;
    let mut total: Option<Tensor<B, 1>> = None;
    for (r, f) in real.iter().zip(fake) {
        let l = relu(scores(r).neg().add_scalar(1.0)).mean() + relu(scores(f).add_scalar(1.0)).mean();
        total = Some(match total {
            Some(t) => t + l,
            None => l,
        });
    }
    total.expect("at least one scale").div_scalar(n)
}

/// Generator hinge loss: mean over scales of `−mean(fake)`.
pub fn hinge_g<B: Backend>(fake: &[ScaleOutputs<B>]) -> Tensor<B, 1> {
    let n = fake.len() as f64;
    let mut total: Option<Tensor<B, 1>> = None;
    for f in fake {
        let l = scores(f).mean().neg();
        total = Some(match total {
            Some(t) => t + l,
            None => l,
        });
    }
    total.expect("at least one scale").div_scalar(n)
}

/// Feature matching: `Σ_scales Σ_layers L1(fake, real.detach()) / num_scales`, over every
/// output but the scores (unweighted; multiply by [`FEAT_WEIGHT`]).
pub fn feature_matching<B: Backend>(fake: &[ScaleOutputs<B>], real: &[ScaleOutputs<B>]) -> Tensor<B, 1> {
    let n = fake.len() as f64;
    let mut total: Option<Tensor<B, 1>> = None;
    for (f, r) in fake.iter().zip(real) {
        for (ff, rf) in f.iter().zip(r).take(f.len().saturating_sub(1)) {
            let l = (ff.clone() - rf.clone().detach()).abs().mean();
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
    }
    total.expect("at least one feature layer").div_scalar(n)
}

/// Splits each output of a discriminator run on `cat([fake, real])` (batch dim) into the
/// fake half and the real half.
pub fn split_fake_real<B: Backend>(outputs: Vec<ScaleOutputs<B>>, fake_len: usize) -> (Vec<ScaleOutputs<B>>, Vec<ScaleOutputs<B>>) {
    let mut fake = Vec::with_capacity(outputs.len());
    let mut real = Vec::with_capacity(outputs.len());
    for scale in outputs {
        let (mut f, mut r) = (Vec::with_capacity(scale.len()), Vec::with_capacity(scale.len()));
        for t in scale {
            let b = t.dims()[0];
            f.push(t.clone().narrow(0, 0, fake_len));
            r.push(t.narrow(0, fake_len, b - fake_len));
        }
        fake.push(f);
        real.push(r);
    }
    (fake, real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    fn scale(v: f32, device: &CpuDevice) -> ScaleOutputs<Cpu> {
        vec![Tensor::full([1, 2, 2, 2], v, device), Tensor::full([1, 1, 2, 2], v, device)]
    }

    #[test]
    fn spade_hinge_and_feature_matching_values() {
        let device = CpuDevice::default();
        let real = vec![scale(0.5, &device), scale(2.0, &device)];
        let fake = vec![scale(-0.5, &device), scale(-2.0, &device)];
        // D: scale 0: relu(0.5) + relu(0.5) = 1; scale 1: 0 + 0 = 0 → mean 0.5.
        let d = hinge_d(&real, &fake).into_scalar().elem::<f32>();
        assert!((d - 0.5).abs() < 1e-6, "hinge D {d}");
        // G: −(−0.5 − 2)/2 = 1.25.
        let g = hinge_g(&fake).into_scalar().elem::<f32>();
        assert!((g - 1.25).abs() < 1e-6, "hinge G {g}");
        // FM: (|−0.5 − 0.5| + |−2 − 2|) / 2 = 2.5.
        let fm = feature_matching(&fake, &real).into_scalar().elem::<f32>();
        assert!((fm - 2.5).abs() < 1e-6, "feature matching {fm}");
    }
}
