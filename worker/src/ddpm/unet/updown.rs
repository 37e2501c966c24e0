//! Resolution changes: [`Downsample`] (3×3 convolution, stride 2) and [`Upsample`]
//! (nearest ×2, then 3×3 convolution).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use crate::cpu_conv;

/// Config of [`Downsample`].
#[derive(Config, Debug)]
pub struct DownsampleConfig {
    pub channels: usize,
}

impl DownsampleConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Downsample<B> {
        let c = self.channels;
        Downsample { conv: Conv2dConfig::new([c, c], [3, 3]).with_stride([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device) }
    }
}

/// Halves the resolution with a strided convolution.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Downsample<B> {
    /// `x`: `[B, C, H, W]` (H, W even) → `[B, C, H/2, W/2]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        cpu_conv::forward(&self.conv, x)
    }
}

/// Config of [`Upsample`].
#[derive(Config, Debug)]
pub struct UpsampleConfig {
    pub channels: usize,
}

impl UpsampleConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Upsample<B> {
        let c = self.channels;
        Upsample { conv: Conv2dConfig::new([c, c], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device) }
    }
}

/// Doubles the resolution: nearest-neighbour ×2, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Upsample<B> {
    /// `x`: `[B, C, H, W]` → `[B, C, 2H, 2W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let up = interpolate(x, [2 * h, 2 * w], InterpolateOptions::new(InterpolateMode::Nearest));
        cpu_conv::forward(&self.conv, up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::tensor::Distribution;

    #[test]
    fn ddpm_updown_shapes() {
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 4>::random([2, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(DownsampleConfig::new(4).init::<Cpu>(&device).forward(x.clone()).dims(), [2, 4, 4, 4]);
        assert_eq!(UpsampleConfig::new(4).init::<Cpu>(&device).forward(x).dims(), [2, 4, 16, 16]);
    }
}
