//! The UNet of Ho et al. (DDPM): predicts the noise `ε` in `x_t` given the timestep `t`.
//!
//! `conv_in` → per level: `num_res_blocks` res blocks (+ attention at the listed
//! resolutions), then a strided-conv downsample except at the last level → middle
//! (res, attention, res) → per level, deepest first: `num_res_blocks + 1` res blocks on the
//! concatenated skip activations (+ attention), then nearest-×2 upsample except at the top
//! → GroupNorm → SiLU → `conv_out`.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::cpu_conv;

use super::{group_norm, Attention, AttentionConfig, Downsample, DownsampleConfig, ResBlock, ResBlockConfig, TimeEmbedding, TimeEmbeddingConfig, Upsample, UpsampleConfig};

/// Architecture of a [`UNet`]. The output has `in_channels` channels (ε, or class logits
/// for the x0 objective).
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    /// Channels of the diffused image (the label encoding's channels).
    pub in_channels: usize,
    /// Channels at the top level (`ch` in Ho et al.); the time embedding is `4·ch` wide.
    pub base_channels: usize,
    /// Channel multiplier per level; one level per entry, halving the resolution between.
    pub channel_mult: Vec<usize>,
    /// Res blocks per level on the way down (one more on the way up).
    pub num_res_blocks: usize,
    /// Resolutions (side in pixels) at which self-attention follows each res block.
    pub attention_resolutions: Vec<usize>,
    /// Dropout inside the res blocks (training only).
    pub dropout: f64,
    /// Side of the (square) input, in pixels.
    pub image_size: usize,
    /// GroupNorm groups (32 in Ho et al.).
    #[config(default = 32)]
    pub groups: usize,
}

impl UNetConfig {
    /// Ho et al.'s CIFAR-10 model (≈35.7M parameters at 3 channels).
    pub fn cifar10(in_channels: usize) -> Self {
        UNetConfig::new(in_channels, 128, vec![1, 2, 2, 2], 2, vec![16], 0.1, 32)
    }

    /// The resolutions of the levels, top first (`image_size`, `image_size/2`, …).
    pub fn resolutions(&self) -> Vec<usize> {
        (0..self.channel_mult.len()).map(|i| self.image_size >> i).collect()
    }

    /// Checks the invariants; the message names the offending field and value.
    pub fn validate(&self) -> Result<(), String> {
        let levels = self.channel_mult.len();
        if self.in_channels == 0 {
            return Err("in_channels must be at least 1".into());
        }
        if self.base_channels < 4 || !self.base_channels.is_multiple_of(2) {
            return Err(format!("base_channels {} must be even and at least 4 (it is the time sinusoid's width)", self.base_channels));
        }
        if levels == 0 || self.channel_mult.contains(&0) {
            return Err(format!("channel_mult {:?} must be non-empty with every multiplier at least 1", self.channel_mult));
        }
        if self.num_res_blocks == 0 {
            return Err("num_res_blocks must be at least 1".into());
        }
        if self.groups == 0 {
            return Err("groups must be at least 1".into());
        }
        for ch in std::iter::once(self.base_channels).chain(self.channel_mult.iter().map(|m| m * self.base_channels)) {
            if ch % self.groups != 0 {
                return Err(format!("{ch} channels (base_channels {} × channel_mult {:?}) are not divisible by groups {}", self.base_channels, self.channel_mult, self.groups));
            }
        }
        let factor = 1usize << (levels - 1);
        if self.image_size == 0 || !self.image_size.is_multiple_of(factor) {
            return Err(format!(
                "image_size {} must be a positive multiple of 2^(levels-1) = {factor} for {levels} levels (channel_mult {:?})",
                self.image_size, self.channel_mult
            ));
        }
        let res = self.resolutions();
        for a in &self.attention_resolutions {
            if !res.contains(a) {
                return Err(format!("attention resolution {a} is not one of the UNet's resolutions {res:?}"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Builds the UNet, or says which invariant fails.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<UNet<B>, String> {
        self.validate().map_err(|e| format!("invalid UNet config: {e}"))?;
        let ch = self.base_channels;
        let temb = 4 * ch;
        let g = self.groups;
        let levels = self.channel_mult.len();
        let res_block = |i, o| ResBlockConfig::new(i, o, temb, g).with_dropout(self.dropout).init(device);
        let attn = |c| AttentionConfig::new(c, g).init(device);
        let conv3 = |i, o| Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));

        let mut skip_channels = vec![ch];
        let mut cur = ch;
        let mut down = Vec::with_capacity(levels);
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            let res = self.image_size >> level;
            let with_attn = self.attention_resolutions.contains(&res);
            let (mut blocks, mut attns) = (Vec::new(), Vec::new());
            for _ in 0..self.num_res_blocks {
                blocks.push(res_block(cur, ch * mult));
                cur = ch * mult;
                if with_attn {
                    attns.push(attn(cur));
                }
                skip_channels.push(cur);
            }
            let downsample = (level + 1 < levels).then(|| DownsampleConfig::new(cur).init(device));
            if downsample.is_some() {
                skip_channels.push(cur);
            }
            down.push(DownLevel { blocks, attns, downsample });
        }

        let mid_block1 = res_block(cur, cur);
        let mid_attn = attn(cur);
        let mid_block2 = res_block(cur, cur);

        let mut up = Vec::with_capacity(levels);
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            let res = self.image_size >> level;
            let with_attn = self.attention_resolutions.contains(&res);
            let (mut blocks, mut attns) = (Vec::new(), Vec::new());
            for _ in 0..=self.num_res_blocks {
                let skip = skip_channels.pop().expect("one skip activation per block");
                blocks.push(res_block(cur + skip, ch * mult));
                cur = ch * mult;
                if with_attn {
                    attns.push(attn(cur));
                }
            }
            let upsample = (level > 0).then(|| UpsampleConfig::new(cur).init(device));
            up.push(UpLevel { blocks, attns, upsample });
        }
        debug_assert!(skip_channels.is_empty());

        Ok(UNet {
            time: TimeEmbeddingConfig::new(ch, temb).init(device),
            conv_in: conv3(self.in_channels, ch).init(device),
            down,
            mid_block1,
            mid_attn,
            mid_block2,
            up,
            norm_out: GroupNormConfig::new(g, cur).init(device),
            conv_out: conv3(cur, self.in_channels).with_initializer(Initializer::Zeros).init(device),
        })
    }

    /// Builds the UNet.
    ///
    /// # Panics
    /// If the config is invalid (see [`UNetConfig::validate`]); the message says why.
    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// One level on the way down.
#[derive(Module, Debug)]
pub struct DownLevel<B: Backend> {
    pub blocks: Vec<ResBlock<B>>,
    /// Empty, or one per block.
    pub attns: Vec<Attention<B>>,
    pub downsample: Option<Downsample<B>>,
}

/// One level on the way up.
#[derive(Module, Debug)]
pub struct UpLevel<B: Backend> {
    pub blocks: Vec<ResBlock<B>>,
    /// Empty, or one per block.
    pub attns: Vec<Attention<B>>,
    pub upsample: Option<Upsample<B>>,
}

/// See the module docs. Built by [`UNetConfig::init`].
#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    pub time: TimeEmbedding<B>,
    pub conv_in: Conv2d<B>,
    pub down: Vec<DownLevel<B>>,
    pub mid_block1: ResBlock<B>,
    pub mid_attn: Attention<B>,
    pub mid_block2: ResBlock<B>,
    /// Deepest level first.
    pub up: Vec<UpLevel<B>>,
    pub norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> UNet<B> {
    /// `x`: `[B, C, S, S]` noisy input, `t`: `[B]` timesteps (0-based, as floats) →
    /// predicted noise `[B, C, S, S]`.
    ///
    /// Computes in the weights' dtype ([`crate::precision`]); returns f32.
    pub fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let dtype = crate::precision::model_dtype(&self.conv_in.weight);
        let temb = self.time.forward(t);
        let mut h = cpu_conv::forward(&self.conv_in, x.cast(dtype));
        let mut skips = vec![h.clone()];
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(h, temb.clone());
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(h);
                }
                skips.push(h.clone());
            }
            if let Some(down) = &level.downsample {
                h = down.forward(h);
                skips.push(h.clone());
            }
        }
        h = self.mid_block1.forward(h, temb.clone());
        h = self.mid_attn.forward(h);
        h = self.mid_block2.forward(h, temb.clone());
        for level in &self.up {
            for (i, block) in level.blocks.iter().enumerate() {
                let skip = skips.pop().expect("one skip activation per block");
                h = block.forward(Tensor::cat(vec![h, skip], 1), temb.clone());
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(h);
                }
            }
            if let Some(up) = &level.upsample {
                h = up.forward(h);
            }
        }
        crate::precision::f32(cpu_conv::forward(&self.conv_out, group_norm(&self.norm_out, h, true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::tensor::{Distribution, TensorData};

    fn check_shape(cfg: &UNetConfig, batch: usize) {
        let device = CpuDevice::default();
        let unet = cfg.init::<Cpu>(&device);
        let s = cfg.image_size;
        let x = Tensor::<Cpu, 4>::random([batch, cfg.in_channels, s, s], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<Cpu, 1>::from_data(TensorData::new((0..batch).map(|i| i as f32 * 10.0).collect::<Vec<_>>(), [batch]), &device);
        assert_eq!(unet.forward(x, t).dims(), [batch, cfg.in_channels, s, s], "config {cfg:?}");
    }

    #[test]
    fn ddpm_unet_output_shape_matches_input() {
        // Three small configs: one level with attention; three levels, attention in the
        // middle and odd multipliers; two levels, one block, 8 one-hot channels.
        check_shape(&UNetConfig::new(1, 8, vec![1], 1, vec![8], 0.0, 8).with_groups(4), 2);
        check_shape(&UNetConfig::new(3, 8, vec![1, 3, 2], 2, vec![8], 0.1, 16).with_groups(4), 1);
        check_shape(&UNetConfig::new(8, 16, vec![1, 2], 1, vec![], 0.0, 16).with_groups(8), 2);
    }

    #[test]
    fn ddpm_unet_cifar_parameter_count() {
        // Ho et al. report 35.7M parameters for this model; allow ±2%.
        let device = CpuDevice::default();
        let n = UNetConfig::cifar10(3).init::<Cpu>(&device).num_params();
        let expected = 35.7e6;
        let rel = (n as f64 - expected).abs() / expected;
        assert!(rel < 0.02, "CIFAR UNet has {n} parameters, {:.2}% away from 35.7M (tolerance 2%)", rel * 100.0);
        eprintln!("CIFAR UNet: {n} parameters ({:+.2}% vs 35.7M)", (n as f64 - expected) / expected * 100.0);
    }

    #[test]
    fn ddpm_unet_config_errors_are_clear() {
        let device = CpuDevice::default();
        let e = UNetConfig::new(3, 24, vec![1, 2], 1, vec![], 0.0, 16).with_groups(32).try_init::<Cpu>(&device).unwrap_err();
        assert!(e.contains("not divisible by groups 32"), "{e}");
        let e = UNetConfig::new(3, 32, vec![1, 2, 2, 2], 1, vec![], 0.0, 20).try_init::<Cpu>(&device).unwrap_err();
        assert!(e.contains("image_size 20") && e.contains("2^(levels-1) = 8"), "{e}");
        let e = UNetConfig::new(3, 32, vec![1, 2], 1, vec![12], 0.0, 16).try_init::<Cpu>(&device).unwrap_err();
        assert!(e.contains("attention resolution 12"), "{e}");
    }
}
