//! Single-head spatial self-attention block (Ho et al.): `x + proj(softmax(qkᵀ/√C)·v)` over
//! the `H·W` positions of a GroupNorm-ed input.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::group_norm;

/// Config of [`Attention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    pub channels: usize,
    /// GroupNorm groups; must divide `channels`.
    pub groups: usize,
}

impl AttentionConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        assert!(self.channels.is_multiple_of(self.groups), "attention block: {} channels are not divisible by the {} GroupNorm groups", self.channels, self.groups);
        let c = self.channels;
        Attention {
            norm: GroupNormConfig::new(self.groups, c).init(device),
            // q, k and v as one 1×1 convolution (same parameters as three).
            qkv: Conv2dConfig::new([c, 3 * c], [1, 1]).init(device),
            proj: Conv2dConfig::new([c, c], [1, 1]).with_initializer(Initializer::Zeros).init(device),
        }
    }
}

/// See the module docs.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub norm: GroupNorm<B>,
    pub qkv: Conv2d<B>,
    pub proj: Conv2d<B>,
}

impl<B: Backend> Attention<B> {
    /// `x`: `[B, C, H, W]` → `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let qkv = self.qkv.forward(group_norm(&self.norm, x.clone(), false)).reshape([b, 3 * c, n]);
        let q = qkv.clone().narrow(1, 0, c).swap_dims(1, 2); // [B, N, C]
        let k = qkv.clone().narrow(1, c, c); // [B, C, N]
        let v = qkv.narrow(1, 2 * c, c).swap_dims(1, 2); // [B, N, C]
                                                         // q scaled before the product (an unscaled f16 dot product of C channels can
                                                         // overflow), the softmax in f32 whatever the precision ([`crate::precision`]).
        let dtype = q.dtype();
        let weights = softmax(crate::precision::f32((q * (1.0 / (c as f64).sqrt())).matmul(k)), 2).cast(dtype); // [B, N, N]
        let out = weights.matmul(v).swap_dims(1, 2).reshape([b, c, h, w]);
        x + self.proj.forward(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::tensor::Distribution;

    #[test]
    fn ddpm_attention_shape_and_identity_at_init() {
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 4>::random([2, 8, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let m = AttentionConfig::new(8, 4).init::<Cpu>(&device);
        let y = m.forward(x.clone());
        assert_eq!(y.dims(), [2, 8, 4, 4]);
        // The zero-initialised output projection makes a fresh block the identity.
        let diff = (y - x).abs().max().into_scalar();
        assert!(diff < 1e-6, "fresh attention block is not the identity: max |y - x| = {diff}");
    }
}
