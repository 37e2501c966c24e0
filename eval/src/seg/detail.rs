//! The detail branch: wide, shallow, strided 3×3 conv-BN-ReLU down to 1/8 resolution
//! (BiSeNet V2: three stages, channels C, C, 2C).

use burn::module::Module;
use burn::prelude::*;

use super::layers::{cbr, ConvBn};

#[derive(Module, Debug)]
pub struct DetailBranch<B: Backend> {
    pub layers: Vec<ConvBn<B>>,
}

/// Stage `s` (1/2, 1/4, 1/8): a stride-2 conv then one (stage 1) or two stride-1 convs.
pub fn detail_branch<B: Backend>(in_channels: usize, width: usize, device: &B::Device) -> DetailBranch<B> {
    let stages = [(width, 1), (width, 2), (2 * width, 2)];
    let mut layers = Vec::new();
    let mut c = in_channels;
    for (out, extra) in stages {
        layers.push(cbr(c, out, 2).init(device));
        for _ in 0..extra {
            layers.push(cbr(out, out, 1).init(device));
        }
        c = out;
    }
    DetailBranch { layers }
}

impl<B: Backend> DetailBranch<B> {
    /// `[b, 3, h, w]` → `[b, 2C, h/8, w/8]` (rounded up).
    pub fn forward(&self, mut x: Tensor<B, 4>) -> Tensor<B, 4> {
        for l in &self.layers {
            x = l.forward(x);
        }
        x
    }
}
