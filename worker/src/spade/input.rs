//! Host-side conversions between label maps, images, noise and tensors. Noise is drawn
//! here from each sample's seed (never from the backend's random ops), so a sample is the
//! same on any backend, batch and thread count.

use burn::prelude::*;
use burn::tensor::TensorData;
use rand_distr::{Distribution, StandardNormal};
use shared::{rng_for, LabelMap, RgbImage};

/// RNG stream of a sample's SPADE noise vector (procedural data uses streams 1 and 2).
pub const NOISE_STREAM: u64 = 0x5ADE;

/// One-hot label tensor `[b, k, h, w]` (1.0 on the pixel's class, 0.0 elsewhere; pixels
/// of no class, e.g. ignore, are all zero).
///
/// # Panics
/// If the maps differ in size or `labels` is empty.
pub fn one_hot<B: Backend>(labels: &[LabelMap], k: usize, device: &B::Device) -> Tensor<B, 4> {
    let first = labels.first().expect("one_hot: at least one label map");
    let (w, h) = (first.width as usize, first.height as usize);
    let plane = w * h;
    let mut data = vec![0f32; labels.len() * k * plane];
    for (i, m) in labels.iter().enumerate() {
        assert!(m.width as usize == w && m.height as usize == h, "one_hot: label map {i} is {}x{}, the first is {w}x{h}", m.width, m.height);
        let base = i * k * plane;
        for (p, &c) in m.data.iter().enumerate() {
            if (c as usize) < k {
                data[base + c as usize * plane + p] = 1.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [labels.len(), k, h, w]), device)
}

/// The noise vector of a sample: `z_dim` standard normal draws from stream
/// [`NOISE_STREAM`] of its seed.
pub fn noise_vector(seed: u64, z_dim: usize) -> Vec<f32> {
    let mut rng = rng_for(seed, NOISE_STREAM);
    (0..z_dim).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// Noise tensor `[b, z_dim]`, row `i` from `seeds[i]`.
pub fn noise<B: Backend>(seeds: &[u64], z_dim: usize, device: &B::Device) -> Tensor<B, 2> {
    let data: Vec<f32> = seeds.iter().flat_map(|&s| noise_vector(s, z_dim)).collect();
    Tensor::from_data(TensorData::new(data, [seeds.len(), z_dim]), device)
}

/// Images to `[b, 3, h, w]` in `[-1, 1]`.
///
/// # Panics
/// If the images differ in size or `images` is empty.
pub fn images_to_tensor<B: Backend>(images: &[RgbImage], device: &B::Device) -> Tensor<B, 4> {
    let first = images.first().expect("images_to_tensor: at least one image");
    let (w, h) = (first.width as usize, first.height as usize);
    let plane = w * h;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (i, img) in images.iter().enumerate() {
        assert!(img.width as usize == w && img.height as usize == h, "images_to_tensor: image {i} is {}x{}, the first is {w}x{h}", img.width, img.height);
        for p in 0..plane {
            for c in 0..3 {
                data[(i * 3 + c) * plane + p] = img.data[p * 3 + c] as f32 / 127.5 - 1.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [images.len(), 3, h, w]), device)
}

/// `[b, 3, h, w]` in `[-1, 1]` (clamped) to images.
pub fn tensor_to_images<B: Backend>(t: Tensor<B, 4>) -> Vec<RgbImage> {
    let [b, c, h, w] = t.dims();
    assert_eq!(c, 3, "tensor_to_images: expected 3 channels, got {c}");
    let data: Vec<f32> = t.into_data().convert::<f32>().to_vec().expect("f32 data");
    let plane = h * w;
    (0..b)
        .map(|i| {
            let mut img = RgbImage::new(w as u32, h as u32);
            for p in 0..plane {
                for ch in 0..3 {
                    let v = data[(i * 3 + ch) * plane + p];
                    img.data[p * 3 + ch] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                }
            }
            img
        })
        .collect()
}
