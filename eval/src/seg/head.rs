//! The segmentation head: 3×3 conv-BN-ReLU, a 1×1 conv to K class logits, and a bilinear
//! upsampling to the input size.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

use super::aggregation::resize;
use super::layers::{cbr, ConvBn};

#[derive(Module, Debug)]
pub struct SegHead<B: Backend> {
    pub conv: ConvBn<B>,
    pub classifier: Conv2d<B>,
}

pub fn seg_head<B: Backend>(in_channels: usize, hidden: usize, num_classes: usize, device: &B::Device) -> SegHead<B> {
    SegHead { conv: cbr(in_channels, hidden, 1).init(device), classifier: Conv2dConfig::new([hidden, num_classes], [1, 1]).init(device) }
}

impl<B: Backend> SegHead<B> {
    /// `[b, c, h', w']` → logits `[b, K, size[0], size[1]]`.
    pub fn forward(&self, x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
        resize(self.classifier.forward(self.conv.forward(x)), size)
    }
}
