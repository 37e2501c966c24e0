//! The SPADE residual block.

use burn::module::Module;
use burn::prelude::*;

use super::norm::{NormKind, Spade, SpadeConfig};
use super::spectral::{SnConv2d, SnConv2dConfig};
use crate::fused::Act;

/// Slope of the LeakyReLU activations.
pub const LEAKY_SLOPE: f64 = 0.2;

/// Configuration of a SPADE residual block.
#[derive(Config, Debug)]
pub struct SpadeResBlockConfig {
    /// `[in, out]` channels.
    pub channels: [usize; 2],
    pub label_nc: usize,
    #[config(default = 128)]
    pub spade_hidden: usize,
    #[config(default = "NormKind::Instance")]
    pub norm: NormKind,
    /// Spectral norm on the block's convs (conv_0, conv_1, the shortcut).
    #[config(default = true)]
    pub spectral: bool,
}

impl SpadeResBlockConfig {
    /// # Panics
    /// If a channel count is 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpadeResBlock<B> {
        let [fin, fout] = self.channels;
        assert!(fin > 0 && fout > 0, "SpadeResBlockConfig: channels {:?} must be positive", self.channels);
        let fmid = fin.min(fout);
        let spade = |nc| SpadeConfig::new(nc, self.label_nc).with_hidden(self.spade_hidden).with_norm(self.norm).init(device);
        let conv = |i, o, k, bias| SnConv2dConfig::new([i, o], k).with_padding(k / 2).with_bias(bias).with_spectral(self.spectral).init(device);
        let shortcut = (fin != fout).then(|| Shortcut { norm: spade(fin), conv: conv(fin, fout, 1, false) });
        SpadeResBlock { norm_0: spade(fin), conv_0: conv(fin, fmid, 3, true), norm_1: spade(fmid), conv_1: conv(fmid, fout, 3, true), shortcut }
    }
}

/// The learned shortcut: SPADE then a 1×1 conv without bias.
#[derive(Module, Debug)]
pub struct Shortcut<B: Backend> {
    pub norm: Spade<B>,
    pub conv: SnConv2d<B>,
}

/// `x + conv_1(lrelu(spade_1(conv_0(lrelu(spade_0(x))))))`, with a learned shortcut when
/// the channel count changes.
#[derive(Module, Debug)]
pub struct SpadeResBlock<B: Backend> {
    pub norm_0: Spade<B>,
    pub conv_0: SnConv2d<B>,
    pub norm_1: Spade<B>,
    pub conv_1: SnConv2d<B>,
    pub shortcut: Option<Shortcut<B>>,
}

impl<B: Backend> SpadeResBlock<B> {
    /// Spectral norm folded into every conv's weight ([`SnConv2d::fold`]).
    pub fn fold(self) -> Self {
        SpadeResBlock {
            norm_0: self.norm_0.fold(),
            conv_0: self.conv_0.fold(),
            norm_1: self.norm_1.fold(),
            conv_1: self.conv_1.fold(),
            shortcut: self.shortcut.map(|s| Shortcut { norm: s.norm.fold(), conv: s.conv.fold() }),
        }
    }

    /// `x`: `[b, in, h, w]`; `seg`: `[b, label_nc, h, w]` → `[b, out, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>, seg: Tensor<B, 4>) -> Tensor<B, 4> {
        let x_s = match &self.shortcut {
            Some(s) => s.conv.forward(s.norm.forward(x.clone(), seg.clone())),
            None => x.clone(),
        };
        let act = Act::LeakyRelu(LEAKY_SLOPE as f32);
        let dx = self.conv_0.forward(self.norm_0.forward_act(x, seg.clone(), act));
        let dx = self.conv_1.forward(self.norm_1.forward_act(dx, seg, act));
        x_s.add(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    #[test]
    fn spade_res_block_shapes_and_shortcut() {
        let device = CpuDevice::default();
        let seg = Tensor::<Cpu, 4>::ones([2, 8, 8, 8], &device);
        let same = SpadeResBlockConfig::new([6, 6], 8).with_spade_hidden(4).init::<Cpu>(&device);
        assert!(same.shortcut.is_none());
        assert_eq!(same.forward(Tensor::ones([2, 6, 8, 8], &device), seg.clone()).dims(), [2, 6, 8, 8]);
        let down = SpadeResBlockConfig::new([6, 3], 8).with_spade_hidden(4).init::<Cpu>(&device);
        assert!(down.shortcut.as_ref().is_some_and(|s| s.conv.conv.bias.is_none()));
        assert_eq!(down.forward(Tensor::ones([2, 6, 8, 8], &device), seg).dims(), [2, 3, 8, 8]);
    }
}
