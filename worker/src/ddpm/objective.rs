//! What the network predicts and the loss it is trained with.
//!
//! - `eps`: the noise `ε`, MSE loss — the DDPM paper's parameterisation, any encoding;
//!   `worker train ddpm`'s default for `gray` (and what a `model.json` that names no
//!   objective was trained with).
//! - `x0` (`onehot` only; `worker train ddpm`'s default there): per-pixel class logits of the clean map, cross-entropy loss
//!   against the true class. The sampler's `x̂_0` is `2·softmax(logits) − 1`, always inside
//!   the one-hot hull, and the loss carries as much signal at high noise as at low — where
//!   ε-prediction learns little about the layout (`ε ≈ x_t` there). For label maps this
//!   learns layouts in far fewer steps (figures in the README's DDPM section).

use std::fmt;
use std::str::FromStr;

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::encoding::Encoding;

/// The network's target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The noise ε, MSE loss.
    #[default]
    Eps,
    /// Class logits of the clean map, cross-entropy loss (`onehot` only).
    X0,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Eps => "eps",
            Objective::X0 => "x0",
        }
    }

    /// Whether the objective works with `encoding`.
    pub fn check(self, encoding: Encoding) -> Result<(), String> {
        match (self, encoding) {
            (Objective::X0, Encoding::Gray) => Err("objective x0 predicts class logits and needs the onehot encoding (gray has one channel); use --objective eps with gray".into()),
            _ => Ok(()),
        }
    }

    /// The training target for a clean encoded value `x0` and its noise `eps`: `ε` itself,
    /// or the class probability `(x0 + 1) / 2` (1 for the pixel's class, 0 elsewhere).
    /// Ignored pixels are left out of the loss by its mask ([`Self::loss`]).
    pub fn target(self, x0: f32, eps: f32) -> f32 {
        match self {
            Objective::Eps => eps,
            Objective::X0 => (x0 + 1.0) * 0.5,
        }
    }

    /// The loss of a batch of network outputs `[B, C, H, W]` against [`Self::target`]
    /// values, over the pixels whose `mask` (`[B, 1, H, W]`, 1 or 0) is 1: MSE averaged over
    /// those pixels and the channels, or cross-entropy summed over the class channel and
    /// averaged over those pixels. Ignored pixels (mask 0) add nothing and do not dilute
    /// the mean; a batch with no pixel left has loss 0.
    pub fn loss<B: Backend>(self, out: Tensor<B, 4>, target: Tensor<B, 4>, mask: Tensor<B, 4>) -> Tensor<B, 1> {
        let channels = out.dims()[1] as f64;
        let kept = mask.clone().sum().clamp_min(1.0);
        match self {
            Objective::Eps => {
                let diff = out - target;
                (diff.clone() * diff * mask).sum().div(kept.mul_scalar(channels))
            }
            Objective::X0 => (log_softmax(out, 1) * target).sum_dim(1).mul(mask).sum().div(kept).neg(),
        }
    }

    /// The clean estimate `x̂_0` in `[-1, 1]` from the network's output at `x_t` with
    /// `ᾱ_t = a_t`.
    pub fn x0<B: Backend>(self, out: Tensor<B, 4>, x_t: Tensor<B, 4>, a_t: f64) -> Tensor<B, 4> {
        match self {
            Objective::Eps => (x_t - out.mul_scalar((1.0 - a_t).sqrt())).div_scalar(a_t.sqrt()).clamp(-1.0, 1.0),
            Objective::X0 => softmax(out, 1).mul_scalar(2.0).sub_scalar(1.0),
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "eps" => Ok(Objective::Eps),
            "x0" => Ok(Objective::X0),
            other => Err(format!("unknown objective {other:?} (expected eps or x0)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::tensor::{ElementConversion, TensorData};

    fn t4(v: Vec<f32>, shape: [usize; 4]) -> Tensor<Cpu, 4> {
        Tensor::from_data(TensorData::new(v, shape), &CpuDevice::default())
    }

    #[test]
    fn ddpm_x0_objective_cross_entropy_and_estimate() {
        // Two pixels, three classes: logits (0, ln 2, 0) → p = (1/4, 1/2, 1/4).
        let l2 = 2f32.ln();
        let out = t4(vec![0.0, 0.0, l2, l2, 0.0, 0.0], [1, 3, 1, 2]);
        // Pixel 0 is class 1, pixel 1 is ignored (all -1 → target all 0).
        let x0 = [-1.0, -1.0, 1.0, -1.0, -1.0, -1.0];
        let target: Vec<f32> = x0.iter().map(|&v| Objective::X0.target(v, 9.0)).collect();
        assert_eq!(target, vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let loss: f32 = Objective::X0.loss(out.clone(), t4(target, [1, 3, 1, 2]), t4(vec![1.0, 0.0], [1, 1, 1, 2])).into_scalar().elem();
        // −ln(1/2) for pixel 0, averaged over the one pixel the mask keeps.
        assert!((loss - 2f32.ln()).abs() < 1e-5, "{loss}");
        let est = Objective::X0.x0(out, t4(vec![0.0; 6], [1, 3, 1, 2]), 0.5).into_data().to_vec::<f32>().unwrap();
        for (e, want) in est.iter().zip([-0.5, -0.5, 0.0, 0.0, -0.5, -0.5]) {
            assert!((e - want).abs() < 1e-5, "{est:?}");
        }
        assert_eq!(Objective::Eps.target(0.3, 9.0), 9.0);
        assert!(Objective::X0.check(Encoding::Gray).unwrap_err().contains("onehot"));
        assert_eq!("x0".parse::<Objective>().unwrap(), Objective::X0);
        assert!("v".parse::<Objective>().unwrap_err().contains("eps or x0"));
    }

    #[test]
    fn ddpm_eps_objective_estimate_inverts_the_forward_process() {
        // x_t = √ᾱ x0 + √(1-ᾱ) ε with the true ε gives back x0.
        let (a, x0, e) = (0.64f64, 0.5f32, -0.3f32);
        let xt = a.sqrt() as f32 * x0 + (1.0 - a).sqrt() as f32 * e;
        let est: f32 = Objective::Eps.x0(t4(vec![e], [1, 1, 1, 1]), t4(vec![xt], [1, 1, 1, 1]), a).into_scalar().elem();
        assert!((est - x0).abs() < 1e-5, "{est}");
        let loss: f32 = Objective::Eps.loss(t4(vec![1.0, 3.0], [1, 2, 1, 1]), t4(vec![0.0, 1.0], [1, 2, 1, 1]), t4(vec![1.0], [1, 1, 1, 1])).into_scalar().elem();
        assert!((loss - 2.5).abs() < 1e-6);
        // Two pixels, two channels; the second pixel is masked out, whatever its error.
        let out = t4(vec![1.0, 50.0, 3.0, -50.0], [1, 2, 1, 2]);
        let loss: f32 = Objective::Eps.loss(out.clone(), t4(vec![0.0; 4], [1, 2, 1, 2]), t4(vec![1.0, 0.0], [1, 1, 1, 2])).into_scalar().elem();
        assert!((loss - 5.0).abs() < 1e-5, "{loss}");
        // Nothing kept: loss 0, not NaN.
        let loss: f32 = Objective::Eps.loss(out, t4(vec![0.0; 4], [1, 2, 1, 2]), t4(vec![0.0, 0.0], [1, 1, 1, 2])).into_scalar().elem();
        assert_eq!(loss, 0.0);
    }
}
