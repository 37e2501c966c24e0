//! Residual block with timestep conditioning (Ho et al.):
//! `GN → SiLU → conv3×3 → + dense(SiLU(temb)) → GN → SiLU → dropout → conv3×3`, plus a
//! 1×1 shortcut when the channel count changes.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::cpu_conv;

use super::group_norm;

/// Config of [`ResBlock`].
#[derive(Config, Debug)]
pub struct ResBlockConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding.
    pub temb_channels: usize,
    /// GroupNorm groups; must divide both channel counts.
    pub groups: usize,
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl ResBlockConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResBlock<B> {
        assert!(
            self.in_channels.is_multiple_of(self.groups) && self.out_channels.is_multiple_of(self.groups),
            "res block {}→{}: channels must be divisible by the {} GroupNorm groups",
            self.in_channels,
            self.out_channels,
            self.groups
        );
        let conv3 = |i, o| Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
        ResBlock {
            norm1: GroupNormConfig::new(self.groups, self.in_channels).init(device),
            conv1: conv3(self.in_channels, self.out_channels).init(device),
            temb_proj: LinearConfig::new(self.temb_channels, self.out_channels).init(device),
            norm2: GroupNormConfig::new(self.groups, self.out_channels).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            // Zero-initialised like the reference code, so each block starts as the identity.
            conv2: conv3(self.out_channels, self.out_channels).with_initializer(Initializer::Zeros).init(device),
            shortcut: (self.in_channels != self.out_channels).then(|| Conv2dConfig::new([self.in_channels, self.out_channels], [1, 1]).init(device)),
        }
    }
}

/// See the module docs.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub norm1: GroupNorm<B>,
    pub conv1: Conv2d<B>,
    pub temb_proj: Linear<B>,
    pub norm2: GroupNorm<B>,
    pub dropout: Dropout,
    pub conv2: Conv2d<B>,
    pub shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResBlock<B> {
    /// `x`: `[B, C_in, H, W]`, `temb`: `[B, T]` → `[B, C_out, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = cpu_conv::forward(&self.conv1, group_norm(&self.norm1, x.clone(), true));
        let [b, c, _, _] = h.dims();
        let h = h + self.temb_proj.forward(silu(temb)).reshape([b, c, 1, 1]);
        let h = cpu_conv::forward(&self.conv2, self.dropout.forward(group_norm(&self.norm2, h, true)));
        let skip = match &self.shortcut {
            Some(conv) => cpu_conv::forward(conv, x),
            None => x,
        };
        skip + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::tensor::Distribution;

    #[test]
    fn ddpm_res_block_shapes() {
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 4>::random([2, 8, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let temb = Tensor::<Cpu, 2>::random([2, 16], Distribution::Normal(0.0, 1.0), &device);
        let same = ResBlockConfig::new(8, 8, 16, 4).init::<Cpu>(&device);
        assert_eq!(same.forward(x.clone(), temb.clone()).dims(), [2, 8, 4, 4]);
        let wider = ResBlockConfig::new(8, 12, 16, 4).init::<Cpu>(&device);
        assert_eq!(wider.forward(x, temb).dims(), [2, 12, 4, 4]);
    }
}
