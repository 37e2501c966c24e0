//! Bilateral guided aggregation (BiSeNet V2 "BGA"): each branch gates the other, then the
//! two are summed at the detail branch's resolution.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::{adaptive_avg_pool2d, interpolate};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::layers::{cbr, ConvBn, ConvBnConfig};

#[derive(Module, Debug)]
pub struct Aggregation<B: Backend> {
    /// Detail kept at 1/8: depthwise 3×3-BN, then 1×1 (no ReLU).
    pub detail_keep_dw: ConvBn<B>,
    pub detail_keep_pw: ConvBn<B>,
    /// Detail brought down to the semantic resolution: strided 3×3-BN, then average pooled.
    pub detail_down: ConvBn<B>,
    /// Semantic gate for the detail: 3×3-BN, upsampled, sigmoid.
    pub semantic_up: ConvBn<B>,
    /// Semantic kept at its resolution: depthwise 3×3-BN, then 1×1, sigmoid.
    pub semantic_keep_dw: ConvBn<B>,
    pub semantic_keep_pw: ConvBn<B>,
    /// After the sum: 3×3 conv-BN-ReLU.
    pub out: ConvBn<B>,
}

/// Both branches have `c` channels.
pub fn aggregation<B: Backend>(c: usize, device: &B::Device) -> Aggregation<B> {
    let plain = |k: usize, groups: usize, stride: usize| ConvBnConfig::new(c, c).with_kernel(k).with_groups(groups).with_stride(stride).with_relu(false).init(device);
    Aggregation {
        detail_keep_dw: plain(3, c, 1),
        detail_keep_pw: plain(1, 1, 1),
        detail_down: plain(3, 1, 2),
        semantic_up: plain(3, 1, 1),
        semantic_keep_dw: plain(3, c, 1),
        semantic_keep_pw: plain(1, 1, 1),
        out: cbr(c, c, 1).init(device),
    }
}

/// Bilinear resize of `[b, c, h, w]` to `[b, c, size[0], size[1]]` (half-pixel centres).
pub fn resize<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    interpolate(x, size, InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false))
}

impl<B: Backend> Aggregation<B> {
    /// `detail` `[b, c, h8, w8]`, `semantic` `[b, c, h32, w32]` → `[b, c, h8, w8]`.
    pub fn forward(&self, detail: Tensor<B, 4>, semantic: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, hd, wd] = detail.dims();
        let [_, _, hs, ws] = semantic.dims();
        let d_keep = self.detail_keep_pw.forward(self.detail_keep_dw.forward(detail.clone()));
        let d_down = adaptive_avg_pool2d(self.detail_down.forward(detail), [hs, ws]);
        let s_up = sigmoid(resize(self.semantic_up.forward(semantic.clone()), [hd, wd]));
        let s_keep = sigmoid(self.semantic_keep_pw.forward(self.semantic_keep_dw.forward(semantic)));
        let left = d_keep * s_up;
        let right = resize(d_down * s_keep, [hd, wd]);
        self.out.forward(left + right)
    }
}
