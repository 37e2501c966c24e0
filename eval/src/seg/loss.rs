//! Pixel-wise cross-entropy that leaves out ignore pixels.
//!
//! Burn's `CrossEntropyLoss` takes pad tokens, but it gathers the log-probability at the
//! target index first, and [`shared::IGNORE_INDEX`] (255) is no logit channel; so the mask
//! is applied here: targets `>= K` become class 0 for the gather and weigh 0 in the mean.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean of `-log p(target)` over the pixels whose target is a class (`< K`); pixels with
/// any other target (ignore) take no part, so their logits get no gradient. With no valid
/// pixel at all the loss is 0.
///
/// `logits` `[b, K, h, w]`, `targets` `[b, h, w]` → `[1]`.
pub fn masked_cross_entropy<B: Backend>(logits: Tensor<B, 4>, targets: Tensor<B, 3, Int>) -> Tensor<B, 1> {
    let k = logits.dims()[1];
    let valid = targets.clone().lower_elem(k as i64);
    let safe = targets.mask_fill(valid.clone().bool_not(), 0);
    let picked: Tensor<B, 3> = log_softmax(logits, 1).gather(1, safe.unsqueeze_dim(1)).squeeze_dim(1);
    let weight = valid.float();
    let n = weight.clone().sum().clamp_min(1.0);
    picked.mul(weight).sum().neg().div(n)
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use worker::backend::{Cpu, CpuDevice};

    fn loss(logits: Vec<f32>, k: usize, targets: Vec<i64>, hw: [usize; 2]) -> f32 {
        let d = CpuDevice::default();
        let l = Tensor::<Cpu, 4>::from_data(TensorData::new(logits, [1, k, hw[0], hw[1]]), &d);
        let t = Tensor::<Cpu, 3, Int>::from_data(TensorData::new(targets, [1, hw[0], hw[1]]), &d);
        masked_cross_entropy(l, t).into_scalar().elem::<f32>()
    }

    /// Two classes, 1×3 pixels; the last pixel is ignore (255). Logits are channel-major.
    #[test]
    fn seg_loss_ignores_ignore_pixels() {
        let targets = vec![0, 1, 255];
        // Labelled pixels right (pixel 0 → class 0, pixel 1 → class 1), ignore pixel's
        // logits either way.
        let right_a = loss(vec![3.0, -3.0, 9.0, -3.0, 3.0, -9.0], 2, targets.clone(), [1, 3]);
        let right_b = loss(vec![3.0, -3.0, -9.0, -3.0, 3.0, 9.0], 2, targets.clone(), [1, 3]);
        let wrong = loss(vec![-3.0, 3.0, 9.0, 3.0, -3.0, -9.0], 2, targets.clone(), [1, 3]);
        assert!((right_a - right_b).abs() < 1e-6, "ignore pixel's logits changed the loss: {right_a} vs {right_b}");
        assert!(right_a < wrong, "right {right_a} should be below wrong {wrong}");
        // The mean is over the 2 labelled pixels: -ln(softmax(6)) each.
        let want = (1.0f32 + (-6.0f32).exp()).ln();
        assert!((right_a - want).abs() < 1e-5, "{right_a} vs {want}");
        // All ignore: zero, not NaN.
        assert_eq!(loss(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, vec![255, 255, 255], [1, 3]), 0.0);
    }
}
