//! The multi-scale PatchGAN discriminator: `num_d` PatchGANs, scale `i + 1` seeing the
//! input average-pooled (3×3, stride 2) `i + 1` times. Input: one-hot labels concatenated
//! with the image.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::leaky_relu;
use burn::tensor::module::avg_pool2d;

use super::norm::instance_norm;
use super::res_block::LEAKY_SLOPE;
use super::spectral::{SnConv2d, SnConv2dConfig};

/// Architecture of the discriminator.
#[derive(Config, Debug, PartialEq)]
pub struct SpadeDiscriminatorConfig {
    /// Label classes (one-hot channels; the input has `label_nc + 3`).
    pub label_nc: usize,
    /// Channels of the first conv; doubled per layer up to `max_channels`.
    #[config(default = 64)]
    pub ndf: usize,
    #[config(default = 512)]
    pub max_channels: usize,
    /// Kernel-4 conv layers before the 1-channel output conv (NVlabs `n_layers_D`).
    #[config(default = 4)]
    pub n_layers: usize,
    /// Scales.
    #[config(default = 2)]
    pub num_d: usize,
    /// Spectral norm on the normalised convs (all but the first and the output conv, as
    /// in the NVlabs "spectralinstance" discriminator).
    #[config(default = true)]
    pub spectral: bool,
}

impl SpadeDiscriminatorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.label_nc == 0 || self.ndf == 0 || self.n_layers == 0 || self.num_d == 0 {
            return Err(format!("label_nc ({}), ndf ({}), n_layers ({}) and num_d ({}) must be positive", self.label_nc, self.ndf, self.n_layers, self.num_d));
        }
        if self.max_channels < self.ndf {
            return Err(format!("max_channels {} is below ndf {}", self.max_channels, self.ndf));
        }
        Ok(())
    }

    /// # Panics
    /// If [`Self::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpadeDiscriminator<B> {
        if let Err(e) = self.validate() {
            panic!("SpadeDiscriminatorConfig: {e}");
        }
        SpadeDiscriminator { scales: (0..self.num_d).map(|_| self.init_patch(device)).collect() }
    }

    fn init_patch<B: Backend>(&self, device: &B::Device) -> PatchDiscriminator<B> {
        let input = self.label_nc + 3;
        let mut layers = vec![PatchLayer { conv: SnConv2dConfig::new([input, self.ndf], 4).with_stride(2).with_padding(2).with_spectral(false).init(device), norm: false }];
        let mut nf = self.ndf;
        for n in 1..self.n_layers {
            let prev = nf;
            nf = (nf * 2).min(self.max_channels);
            let stride = if n == self.n_layers - 1 { 1 } else { 2 };
            // Instance norm follows, so the conv has no bias.
            let conv = SnConv2dConfig::new([prev, nf], 4).with_stride(stride).with_padding(2).with_bias(false).with_spectral(self.spectral).init(device);
            layers.push(PatchLayer { conv, norm: true });
        }
        let out = SnConv2dConfig::new([nf, 1], 4).with_padding(2).with_spectral(false).init(device);
        PatchDiscriminator { layers, out }
    }
}

/// Conv (kernel 4) → instance norm (all but the first) → LeakyReLU(0.2).
#[derive(Module, Debug)]
pub struct PatchLayer<B: Backend> {
    pub conv: SnConv2d<B>,
    #[module(skip)]
    norm: bool,
}

/// One PatchGAN.
#[derive(Module, Debug)]
pub struct PatchDiscriminator<B: Backend> {
    pub layers: Vec<PatchLayer<B>>,
    /// `→ 1` channel: a real/fake score per patch.
    pub out: SnConv2d<B>,
}

impl<B: Backend> PatchDiscriminator<B> {
    /// `x`: `[b, label_nc + 3, h, w]` → every layer's output, the last being the patch
    /// scores `[b, 1, h', w']`.
    ///
    /// Computes in the weights' dtype ([`crate::precision`]); the outputs are f32.
    pub fn forward(&self, x: Tensor<B, 4>) -> Vec<Tensor<B, 4>> {
        use crate::precision::f32;
        let mut feats = Vec::with_capacity(self.layers.len() + 1);
        let mut x = x.cast(crate::precision::model_dtype(&self.out.conv.weight));
        for layer in &self.layers {
            x = layer.conv.forward(x);
            if layer.norm {
                x = instance_norm(x);
            }
            x = leaky_relu(x, LEAKY_SLOPE);
            feats.push(f32(x.clone()));
        }
        feats.push(f32(self.out.forward(x)));
        feats
    }
}

/// The multi-scale discriminator.
#[derive(Module, Debug)]
pub struct SpadeDiscriminator<B: Backend> {
    pub scales: Vec<PatchDiscriminator<B>>,
}

/// One scale's outputs: intermediate features (for feature matching) then the patch scores.
pub type ScaleOutputs<B> = Vec<Tensor<B, 4>>;

impl<B: Backend> SpadeDiscriminator<B> {
    /// `seg`: one-hot labels `[b, label_nc, h, w]`; `image`: `[b, 3, h, w]`.
    /// Returns, per scale, every layer's output (the last is the `[b, 1, h', w']` score map).
    pub fn forward(&self, seg: Tensor<B, 4>, image: Tensor<B, 4>) -> Vec<ScaleOutputs<B>> {
        let mut x = Tensor::cat(vec![seg, image], 1);
        let mut out = Vec::with_capacity(self.scales.len());
        for (i, d) in self.scales.iter().enumerate() {
            if i > 0 {
                x = avg_pool2d(x, [3, 3], [2, 2], [1, 1], false, false);
            }
            out.push(d.forward(x.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    #[test]
    fn spade_discriminator_scales_and_features() {
        let device = CpuDevice::default();
        let d = SpadeDiscriminatorConfig::new(8).with_ndf(4).init::<Cpu>(&device);
        let out = d.forward(Tensor::zeros([2, 8, 32, 32], &device), Tensor::ones([2, 3, 32, 32], &device));
        assert_eq!(out.len(), 2);
        // kernel 4, padding 2: stride 2 → h/2 + 1; stride 1 → h + 1.
        let dims: Vec<Vec<[usize; 4]>> = out.iter().map(|s| s.iter().map(|t| t.dims()).collect()).collect();
        assert_eq!(dims[0], vec![[2, 4, 17, 17], [2, 8, 9, 9], [2, 16, 5, 5], [2, 32, 6, 6], [2, 1, 7, 7]]);
        assert_eq!(dims[1], vec![[2, 4, 9, 9], [2, 8, 5, 5], [2, 16, 3, 3], [2, 32, 4, 4], [2, 1, 5, 5]]);
        assert!(SpadeDiscriminatorConfig::new(8).with_ndf(600).validate().is_err());
    }
}
