//! Building blocks: conv-BN(-ReLU) and the depthwise-separable block.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// A convolution (no bias) followed by batch norm and, if `relu`, a ReLU.
#[derive(Config, Debug)]
pub struct ConvBnConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    #[config(default = 3)]
    pub kernel: usize,
    #[config(default = 1)]
    pub stride: usize,
    /// Convolution groups (`in_channels` = `out_channels` = `groups`: depthwise).
    #[config(default = 1)]
    pub groups: usize,
    #[config(default = true)]
    pub relu: bool,
}

#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
    pub relu: bool,
}

impl ConvBnConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvBn<B> {
        let pad = self.kernel / 2;
        let conv = Conv2dConfig::new([self.in_channels, self.out_channels], [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_groups(self.groups)
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(device);
        ConvBn { conv, bn: BatchNormConfig::new(self.out_channels).init(device), relu: self.relu }
    }
}

impl<B: Backend> ConvBn<B> {
    /// `[b, in, h, w]` → `[b, out, ⌈h/stride⌉, ⌈w/stride⌉]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.bn.forward(self.conv.forward(x));
        if self.relu {
            relu(y)
        } else {
            y
        }
    }
}

/// Conv-BN-ReLU with a 3×3 kernel.
pub fn cbr(in_channels: usize, out_channels: usize, stride: usize) -> ConvBnConfig {
    ConvBnConfig::new(in_channels, out_channels).with_stride(stride)
}

/// Depthwise-separable residual block: depthwise 3×3 (stride 1 or 2) + BN + ReLU, then
/// pointwise 1×1 + BN; the shortcut is the input (stride 1, same channels) or a strided
/// 1×1 conv-BN; ReLU after the sum.
#[derive(Config, Debug)]
pub struct DwBlockConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    #[config(default = 1)]
    pub stride: usize,
}

#[derive(Module, Debug)]
pub struct DwBlock<B: Backend> {
    pub depthwise: ConvBn<B>,
    pub pointwise: ConvBn<B>,
    pub shortcut: Option<ConvBn<B>>,
}

impl DwBlockConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> DwBlock<B> {
        let (i, o) = (self.in_channels, self.out_channels);
        let shortcut = (self.stride != 1 || i != o).then(|| ConvBnConfig::new(i, o).with_kernel(1).with_stride(self.stride).with_relu(false).init(device));
        DwBlock {
            depthwise: ConvBnConfig::new(i, i).with_stride(self.stride).with_groups(i).init(device),
            pointwise: ConvBnConfig::new(i, o).with_kernel(1).with_relu(false).init(device),
            shortcut,
        }
    }
}

impl<B: Backend> DwBlock<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let skip = match &self.shortcut {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        relu(self.pointwise.forward(self.depthwise.forward(x)) + skip)
    }
}
