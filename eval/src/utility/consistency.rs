//! Image–label consistency, SPADE's own measure of a generator: the baseline segmenter
//! (trained on the real training split only) labels the run's images, scored against the
//! label maps they were painted from, beside the same network on the real test images;
//! and a distribution distance between the two image sets in that network's feature space:
//! the kernel inception distance computed on the segmenter's pooled aggregation features
//! instead of Inception's (so it is *not* Inception-KID and is comparable only between
//! runs scored with the same settings).
//!
//! KID (Bińkowski et al., 2018) is the unbiased estimate of the squared maximum mean
//! discrepancy with the cubic polynomial kernel `k(x, y) = (xᵀy / d + 1)³`. It needs no
//! matrix square root (FID does) and is unbiased at the small sample counts of a test
//! split.

use burn::prelude::*;
use rayon::prelude::*;
use shared::dataset::PairSource;

use crate::seg::SegNet;
use worker::tensors::images_to_tensor;

/// Each image's features from `model`, `batch` at a time: the aggregation output averaged
/// over the pixels (`2·width` values).
pub fn features<B: Backend>(model: &SegNet<B>, pairs: &(dyn PairSource + Sync), batch: usize, device: &B::Device) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut out = Vec::with_capacity(pairs.len());
    let idx: Vec<usize> = (0..pairs.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let images: Vec<shared::RgbImage> = chunk.par_iter().map(|&i| pairs.get(i).map(|p| p.0)).collect::<shared::Result<_>>()?;
        let f = model.features(images_to_tensor::<B>(&images, device));
        let [b, d] = f.dims();
        let values: Vec<f32> = f.into_data().convert::<f32>().to_vec().expect("f32 features");
        out.extend(values.chunks(d).take(b).map(|row| row.iter().map(|&v| v as f64).collect()));
    }
    Ok(out)
}

/// The unbiased KID estimate between two feature sets (rows of equal length `d`); `None`
/// when either has fewer than two rows.
pub fn kid(x: &[Vec<f64>], y: &[Vec<f64>]) -> Option<f64> {
    let (n, m) = (x.len(), y.len());
    if n < 2 || m < 2 {
        return None;
    }
    let d = x[0].len() as f64;
    let k = |a: &[f64], b: &[f64]| (a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / d + 1.0).powi(3);
    let within = |s: &[Vec<f64>]| {
        let total: f64 = (0..s.len()).flat_map(|i| (0..s.len()).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| k(&s[i], &s[j])).sum();
        total / (s.len() * (s.len() - 1)) as f64
    };
    let across: f64 = x.iter().flat_map(|a| y.iter().map(move |b| k(a, b))).sum::<f64>() / (n * m) as f64;
    Some(within(x) + within(y) - 2.0 * across)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand, in one dimension: k(a, b) = (ab + 1)³. x = {0, 1}, y = {1, 2}:
    /// within x: k(0,1) = 1 (twice) → 1; within y: k(1,2) = 27 → 27;
    /// across: k(0,1) = 1, k(0,2) = 1, k(1,1) = 8, k(1,2) = 27 → 37/4.
    /// KID = 1 + 27 − 2·37/4 = 9.5.
    #[test]
    fn kid_matches_the_hand_computed_value_and_tells_shifted_sets_apart() {
        let x = vec![vec![0.0], vec![1.0]];
        let y = vec![vec![1.0], vec![2.0]];
        assert!((kid(&x, &y).unwrap() - 9.5).abs() < 1e-12);
        assert_eq!(kid(&x, &y[..1]), None);
        // Two samples of one distribution score near 0; a shifted one clearly above.
        let draw = |seed: u64, shift: f64| -> Vec<Vec<f64>> {
            let mut rng = shared::rng_for(seed, 0);
            (0..200).map(|_| (0..4).map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0) + shift).collect::<Vec<f64>>()).collect()
        };
        let same = kid(&draw(1, 0.0), &draw(2, 0.0)).unwrap();
        let shifted = kid(&draw(1, 0.0), &draw(3, 0.5)).unwrap();
        assert!(same.abs() < 0.02 && shifted > 10.0 * same.abs().max(1e-3), "same {same}, shifted {shifted}");
    }
}
