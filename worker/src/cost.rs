//! Multiply-accumulates (MACs) of a forward pass, counted from the layers' weights and
//! strides, following each network's `forward`: convolutions, linear layers and
//! attention's two matrix products. Norms, activations and resizing are a few operations
//! per value and left out (the usual convention). FLOPs are 2 × MACs.
//!
//! `worker bench pipeline` turns these into GFLOP per sample per stage and achieved
//! GFLOP/s; `eval`'s segmentation cost ([`conv_macs`]) counts the same way.

use burn::nn::conv::Conv2d;
use burn::nn::Linear;
use burn::prelude::*;

use crate::ddpm::unet::{Attention, ResBlock, UNet};
use crate::spade::{Spade, SpadeGenerator, SpadeResBlock};

/// Output size of a convolution padded by `kernel / 2` (how every convolution of the
/// project is built).
fn out_size(n: usize, kernel: usize, stride: usize) -> usize {
    (n + 2 * (kernel / 2) - kernel) / stride + 1
}

/// MACs of `conv` on an `h`×`w` input, and its output size.
pub fn conv_macs<B: Backend>(conv: &Conv2d<B>, h: usize, w: usize) -> (u64, usize, usize) {
    let [out_c, in_per_group, kh, kw] = conv.weight.dims();
    let (oh, ow) = (out_size(h, kh, conv.stride[0]), out_size(w, kw, conv.stride[1]));
    ((oh * ow * out_c * in_per_group * kh * kw) as u64, oh, ow)
}

/// MACs of a linear layer on one input vector.
pub fn linear_macs<B: Backend>(l: &Linear<B>) -> u64 {
    let [i, o] = l.weight.dims();
    (i * o) as u64
}

impl<B: Backend> ResBlock<B> {
    /// MACs at `h`×`w` (the block keeps the size).
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        conv_macs(&self.conv1, h, w).0 + conv_macs(&self.conv2, h, w).0 + self.shortcut.as_ref().map_or(0, |c| conv_macs(c, h, w).0) + linear_macs(&self.temb_proj)
    }
}

impl<B: Backend> Attention<B> {
    /// MACs at `h`×`w`: the 1×1 projections and `q·kᵀ`, `softmax·v` (each `N²·C`).
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let c = self.proj.weight.dims()[0];
        let n = (h * w) as u64;
        conv_macs(&self.qkv, h, w).0 + conv_macs(&self.proj, h, w).0 + 2 * n * n * c as u64
    }
}

impl<B: Backend> UNet<B> {
    /// MACs of one network evaluation on one `size`×`size` sample.
    pub fn macs(&self, size: usize) -> u64 {
        let mut total = linear_macs(&self.time.dense0) + linear_macs(&self.time.dense1);
        let (m, mut h, mut w) = conv_macs(&self.conv_in, size, size);
        total += m;
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                total += block.macs(h, w) + level.attns.get(i).map_or(0, |a| a.macs(h, w));
            }
            if let Some(down) = &level.downsample {
                let (m, h2, w2) = conv_macs(&down.conv, h, w);
                (total, h, w) = (total + m, h2, w2);
            }
        }
        total += self.mid_block1.macs(h, w) + self.mid_attn.macs(h, w) + self.mid_block2.macs(h, w);
        for level in &self.up {
            for (i, block) in level.blocks.iter().enumerate() {
                total += block.macs(h, w) + level.attns.get(i).map_or(0, |a| a.macs(h, w));
            }
            if let Some(up) = &level.upsample {
                (h, w) = (2 * h, 2 * w);
                total += conv_macs(&up.conv, h, w).0;
            }
        }
        total + conv_macs(&self.conv_out, h, w).0
    }
}

impl<B: Backend> Spade<B> {
    /// MACs at `s`×`s`: the shared conv on the label map and the γβ conv.
    pub fn macs(&self, s: usize) -> u64 {
        conv_macs(&self.shared.conv, s, s).0 + conv_macs(&self.gamma_beta.conv, s, s).0
    }
}

impl<B: Backend> SpadeResBlock<B> {
    /// MACs at `s`×`s`.
    pub fn macs(&self, s: usize) -> u64 {
        let short = self.shortcut.as_ref().map_or(0, |sc| sc.norm.macs(s) + conv_macs(&sc.conv.conv, s, s).0);
        self.norm_0.macs(s) + conv_macs(&self.conv_0.conv, s, s).0 + self.norm_1.macs(s) + conv_macs(&self.conv_1.conv, s, s).0 + short
    }
}

impl<B: Backend> SpadeGenerator<B> {
    /// MACs of painting one image.
    pub fn macs(&self) -> u64 {
        let s0 = self.size() >> self.ups.len();
        let input = match (&self.fc, &self.conv_in) {
            (Some(fc), _) => linear_macs(fc),
            (None, Some(conv)) => conv_macs(&conv.conv, s0, s0).0,
            (None, None) => 0,
        };
        let mut total = input + self.head.macs(s0);
        for (i, up) in self.ups.iter().enumerate() {
            let s = s0 << (i + 1);
            total += up.macs(s);
            if i == 0 {
                total += self.middle.iter().map(|m| m.macs(s)).sum::<u64>();
            }
        }
        total + conv_macs(&self.conv_img.conv, self.size(), self.size()).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use crate::ddpm::UNetConfig;
    use crate::spade::{SpadeGeneratorConfig, SpadeInput};
    use burn::module::{ModuleVisitor, Param};

    /// Sums the elements of the rank-4 (conv) and rank-2 (linear) weights.
    #[derive(Default)]
    struct Weights {
        conv: u64,
        linear: u64,
    }
    impl<B: Backend> ModuleVisitor<B> for Weights {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let n = param.val().dims().iter().product::<usize>() as u64;
            match D {
                4 => self.conv += n,
                2 => self.linear += n,
                _ => {}
            }
        }
    }

    /// A one-level UNet without attention runs every conv at the input size, so its MACs
    /// are the conv weights × pixels plus the linear weights: an independent count.
    #[test]
    fn unet_macs_match_an_independent_count_and_grow_with_the_pixels() {
        let device = CpuDevice::default();
        let unet = UNetConfig::new(8, 16, vec![1], 2, vec![], 0.0, 8).with_groups(4).init::<Cpu>(&device);
        let mut wts = Weights::default();
        unet.visit(&mut wts);
        // Plus the middle attention's two products, 2·N²·C with N = 64 and 256.
        assert_eq!(unet.macs(8), wts.conv * 64 + wts.linear + 2 * 64 * 64 * 16);
        assert_eq!(unet.macs(16), wts.conv * 256 + wts.linear + 2 * 256 * 256 * 16);

        // With two levels: every term but the linear ones and the middle attention's N²
        // (at half the side, 32 channels) grows ×4 with twice the side.
        let unet = UNetConfig::new(8, 16, vec![1, 2], 1, vec![], 0.0, 16).with_groups(4).init::<Cpu>(&device);
        let mut wts = Weights::default();
        unet.visit(&mut wts);
        let rest = |s: u64| unet.macs(s as usize) - wts.linear - 2 * (s / 2).pow(4) * 32;
        assert_eq!(rest(32), 4 * rest(16));
        assert!(UNetConfig::cifar10(8).init::<Cpu>(&device).macs(64) > 20_000_000_000, "the CIFAR UNet at 64² is tens of GMAC");
    }

    /// SPADE's convolutions are all stride 1 with same padding, so each block's MACs are
    /// its conv weights × its pixels: an independent count, block by block. With the label
    /// input (no linear layer) the total also grows exactly ×4 with twice the side.
    #[test]
    fn spade_macs_match_an_independent_count_and_grow_with_the_pixels() {
        let device = CpuDevice::default();
        let cfg = |s| SpadeGeneratorConfig::new(8, s).with_ngf(2).with_n_up(2).with_spade_hidden(8).with_z_dim(4).with_input(SpadeInput::Label);
        let (a, b) = (cfg(16).init::<Cpu>(&device), cfg(32).init::<Cpu>(&device));
        assert_eq!(b.macs(), 4 * a.macs());
        let weights = |m: &dyn Fn(&mut Weights)| {
            let mut w = Weights::default();
            m(&mut w);
            w.conv
        };
        let (s0, s1, s2) = (4u64, 8u64, 16u64);
        let want = weights(&|w| a.conv_in.as_ref().unwrap().visit(w)) * s0 * s0
            + weights(&|w| a.head.visit(w)) * s0 * s0
            + weights(&|w| a.ups[0].visit(w)) * s1 * s1
            + a.middle.iter().map(|m| weights(&|w| m.visit(w)) * s1 * s1).sum::<u64>()
            + weights(&|w| a.ups[1].visit(w)) * s2 * s2
            + weights(&|w| a.conv_img.visit(w)) * s2 * s2;
        assert_eq!(a.macs(), want);
    }
}
