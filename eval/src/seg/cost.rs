//! Multiply-accumulates of a forward pass, counted from the layers' weights and strides,
//! following each block's `forward`. Convolutions only (the usual MAC convention): batch
//! norm, activations, pooling and bilinear resizing are a few operations per pixel and
//! left out.

use burn::prelude::*;

use super::semantic::ContextBlock;
use super::{Aggregation, ConvBn, DetailBranch, DwBlock, SegHead, SegNet, SemanticBranch};

/// MACs of one convolution: the worker's count, the one home of it.
pub use worker::cost::conv_macs;

impl<B: Backend> ConvBn<B> {
    pub fn macs(&self, h: usize, w: usize) -> (u64, usize, usize) {
        conv_macs(&self.conv, h, w)
    }
}

impl<B: Backend> DwBlock<B> {
    pub fn macs(&self, h: usize, w: usize) -> (u64, usize, usize) {
        let (a, h2, w2) = self.depthwise.macs(h, w);
        let (b, h3, w3) = self.pointwise.macs(h2, w2);
        let c = self.shortcut.as_ref().map_or(0, |s| s.macs(h, w).0);
        (a + b + c, h3, w3)
    }
}

/// Chains `layers` from `h`×`w`.
fn chain(layers: impl IntoIterator<Item = impl Fn(usize, usize) -> (u64, usize, usize)>, h: usize, w: usize) -> (u64, usize, usize) {
    layers.into_iter().fold((0, h, w), |(m, h, w), f| {
        let (n, h, w) = f(h, w);
        (m + n, h, w)
    })
}

impl<B: Backend> DetailBranch<B> {
    pub fn macs(&self, h: usize, w: usize) -> (u64, usize, usize) {
        chain(self.layers.iter().map(|l| move |h, w| l.macs(h, w)), h, w)
    }
}

impl<B: Backend> ContextBlock<B> {
    pub fn macs(&self, h: usize, w: usize) -> (u64, usize, usize) {
        let (g, _, _) = conv_macs(&self.gap_conv, 1, 1);
        let (o, h, w) = self.out.macs(h, w);
        (g + o, h, w)
    }
}

impl<B: Backend> SemanticBranch<B> {
    pub fn macs(&self, h: usize, w: usize) -> (u64, usize, usize) {
        let (a, h, w) = chain(self.stem.iter().map(|l| move |h, w| l.macs(h, w)), h, w);
        let (b, h, w) = chain(self.stages.iter().map(|s| move |h, w| s.macs(h, w)), h, w);
        let (c, h, w) = self.context.macs(h, w);
        (a + b + c, h, w)
    }
}

impl<B: Backend> Aggregation<B> {
    /// Detail at `hd`×`wd`, semantic at `hs`×`ws`.
    pub fn macs(&self, (hd, wd): (usize, usize), (hs, ws): (usize, usize)) -> u64 {
        let keep_d = self.detail_keep_dw.macs(hd, wd).0 + self.detail_keep_pw.macs(hd, wd).0;
        let down = self.detail_down.macs(hd, wd).0;
        let up = self.semantic_up.macs(hs, ws).0;
        let keep_s = self.semantic_keep_dw.macs(hs, ws).0 + self.semantic_keep_pw.macs(hs, ws).0;
        keep_d + down + up + keep_s + self.out.macs(hd, wd).0
    }
}

impl<B: Backend> SegHead<B> {
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let (a, h, w) = self.conv.macs(h, w);
        a + conv_macs(&self.classifier, h, w).0
    }
}

impl<B: Backend> SegNet<B> {
    /// Multiply-accumulates of one forward pass on an `h`×`w` image (convolutions only).
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let (d, hd, wd) = self.detail.macs(h, w);
        let (s, hs, ws) = self.semantic.macs(h, w);
        d + s + self.aggregation.macs((hd, wd), (hs, ws)) + self.head.macs(hd, wd)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::PaddingConfig2d;

    use super::*;
    use crate::seg::{ConvBnConfig, SegNetConfig};
    use worker::backend::{Cpu, CpuDevice};

    #[test]
    fn seg_macs_hand_counted() {
        let device = CpuDevice::default();
        // 3→8, 3×3, stride 2 on 16×16: 8×8 outputs × 8 channels × 3·9 → 13,824.
        let conv = Conv2dConfig::new([3, 8], [3, 3]).with_stride([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init::<Cpu>(&device);
        assert_eq!(conv_macs(&conv, 16, 16), (13_824, 8, 8));
        // Depthwise 8 channels 3×3 on 15×15, stride 2 → 8×8 × 8 × 1·9.
        let dw = ConvBnConfig::new(8, 8).with_stride(2).with_groups(8).init::<Cpu>(&device);
        assert_eq!(dw.macs(15, 15), (8 * 8 * 8 * 9, 8, 8));

        // The whole network: the count matches a forward pass's output sizes, and grows
        // with the pixel count (×4 for twice the side, up to the 1×1 context conv).
        let net = SegNetConfig::new(8).with_width(8).init::<Cpu>(&device);
        let (m64, m128) = (net.macs(64, 64), net.macs(128, 128));
        let gap = conv_macs(&net.semantic.context.gap_conv, 1, 1).0;
        assert_eq!(m128 - gap, 4 * (m64 - gap));
        assert_eq!(net.detail.macs(64, 64).1, net.detail.forward(Tensor::zeros([1, 3, 64, 64], &device)).dims()[2]);
        assert_eq!(net.semantic.macs(64, 64).1, net.semantic.forward(Tensor::zeros([1, 3, 64, 64], &device)).dims()[2]);
    }
}
