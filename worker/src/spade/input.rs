//! SPADE's noise input, drawn on the host from each sample's seed (never from the
//! backend's random ops), so a sample is the same on any backend, batch and thread count.
//! The image and label-map tensors are `crate::tensors`.

use burn::prelude::*;
use burn::tensor::TensorData;
use rand_distr::{Distribution, StandardNormal};
use shared::rng_for;

/// RNG stream of a sample's SPADE noise vector (procedural data uses streams 1 and 2).
pub const NOISE_STREAM: u64 = 0x5ADE;

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
