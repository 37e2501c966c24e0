//! The semantic branch: fast downsampling to 1/32 with narrow depthwise-separable blocks,
//! then a context embedding block (global average pooling added back to every pixel).

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;

use super::layers::{cbr, ConvBn, DwBlock, DwBlockConfig};

#[derive(Module, Debug)]
pub struct SemanticBranch<B: Backend> {
    /// Stride-2 conv then a stride-2 conv: 1/4 resolution.
    pub stem: Vec<ConvBn<B>>,
    /// Stages at 1/8, 1/16 and 1/32: a stride-2 block then a stride-1 block each.
    pub stages: Vec<DwBlock<B>>,
    pub context: ContextBlock<B>,
}

/// Channels: stem C/4 (at least 4), stages C/2, C, 2C (C = width, each at least 4).
pub fn semantic_branch<B: Backend>(in_channels: usize, width: usize, device: &B::Device) -> SemanticBranch<B> {
    let stem_c = (width / 4).max(4);
    let stem = vec![cbr(in_channels, stem_c, 2).init(device), cbr(stem_c, stem_c, 2).init(device)];
    let mut stages = Vec::new();
    let mut c = stem_c;
    for out in [(width / 2).max(4), width.max(4), (2 * width).max(4)] {
        stages.push(DwBlockConfig::new(c, out).with_stride(2).init(device));
        stages.push(DwBlockConfig::new(out, out).init(device));
        c = out;
    }
    SemanticBranch { stem, stages, context: context_block(c, device) }
}

impl<B: Backend> SemanticBranch<B> {
    /// Output channels of a branch built for `width`.
    pub fn out_channels(width: usize) -> usize {
        (2 * width).max(4)
    }

    /// `[b, 3, h, w]` → `[b, 2C, h/32, w/32]` (rounded up).
    pub fn forward(&self, mut x: Tensor<B, 4>) -> Tensor<B, 4> {
        for l in &self.stem {
            x = l.forward(x);
        }
        for s in &self.stages {
            x = s.forward(x);
        }
        self.context.forward(x)
    }
}

/// Context embedding (BiSeNet V2 "CE"): GAP → 1×1 conv (with bias) → ReLU, broadcast-added
/// to the input, then a 3×3 conv-BN-ReLU. (No batch norm on the pooled vector: over a
/// small batch of 1×1 maps its statistics are noise.)
#[derive(Module, Debug)]
pub struct ContextBlock<B: Backend> {
    pub gap_conv: Conv2d<B>,
    pub out: ConvBn<B>,
}

fn context_block<B: Backend>(c: usize, device: &B::Device) -> ContextBlock<B> {
    ContextBlock { gap_conv: Conv2dConfig::new([c, c], [1, 1]).init(device), out: cbr(c, c, 1).init(device) }
}

impl<B: Backend> ContextBlock<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let g = relu(self.gap_conv.forward(adaptive_avg_pool2d(x.clone(), [1, 1])));
        self.out.forward(x + g)
    }
}
