//! The SPADE generator: a `16·ngf` feature map at `size / 2^n_up` ([`SpadeInput`]: from the
//! label map, NVlabs' default, or from noise through a linear layer), then SPADE residual
//! blocks with nearest ×2 upsampling, halving the channels down to `ngf`, then LeakyReLU →
//! conv 3×3 → tanh.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, tanh};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::{Deserialize, Serialize};
use shared::{LabelMap, RgbImage};

use super::input::noise;
use super::norm::NormKind;
use super::res_block::{SpadeResBlock, SpadeResBlockConfig, LEAKY_SLOPE};
use super::spectral::{SnConv2d, SnConv2dConfig};
use crate::tensors::{one_hot, tensor_to_images};

/// Where the generator's first feature map (`16·ngf × s0 × s0`) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpadeInput {
    /// Noise `z` → linear layer (the SPADE paper's noise-input variant; at 512 the layer
    /// alone is 67M parameters). What artifacts from before this option have.
    #[default]
    Noise,
    /// NVlabs' default: the label map nearest-downsampled to `s0 × s0` → conv 3×3. For
    /// per-sample variety `z` is broadcast over that map as `z_dim` extra input channels
    /// (noise injected at the input; no encoder or KL term).
    Label,
}

impl SpadeInput {
    pub const NAMES: [&'static str; 2] = ["label", "noise"];
}

impl std::str::FromStr for SpadeInput {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "label" => Ok(SpadeInput::Label),
            "noise" => Ok(SpadeInput::Noise),
            other => Err(format!("unknown SPADE input {other:?} (expected label or noise)")),
        }
    }
}

/// Architecture of the generator (stored in `model.json`).
#[derive(Config, Debug, PartialEq)]
pub struct SpadeGeneratorConfig {
    /// Label classes (one-hot input channels).
    pub label_nc: usize,
    /// Output side in pixels (square); divisible by `2^n_up`.
    pub size: usize,
    /// Base channel count: blocks run at `16·ngf` and halve down to `ngf`.
    #[config(default = 64)]
    pub ngf: usize,
    /// Number of nearest ×2 upsamplings (up-blocks); the first feature map is
    /// `size / 2^n_up` on a side.
    #[config(default = 5)]
    pub n_up: usize,
    /// Extra `16·ngf → 16·ngf` blocks after the first up-block (1 in the NVlabs "normal"
    /// layout, whose blocks are head, up, middle ×2, up, 4 × (up, halve)).
    #[config(default = 1)]
    pub n_middle: usize,
    /// Length of the noise vector.
    #[config(default = 256)]
    pub z_dim: usize,
    /// Hidden channels of each SPADE layer.
    #[config(default = 128)]
    pub spade_hidden: usize,
    #[config(default = "NormKind::Instance")]
    pub norm: NormKind,
    /// Spectral norm on the residual blocks' convs.
    #[config(default = true)]
    pub spectral: bool,
    /// The first feature map's source; `noise` in `model.json`s written before the option.
    #[config(default = "SpadeInput::Noise")]
    pub input: SpadeInput,
}

impl SpadeGeneratorConfig {
    /// A small generator for CPU training and tests: `ngf`, SPADE hidden `2·ngf`, and as
    /// many upsamplings (up to 5) as keep the first feature map at least 4×4.
    pub fn small(label_nc: usize, size: usize, ngf: usize) -> Self {
        Self::new(label_nc, size).with_ngf(ngf).with_spade_hidden(2 * ngf).with_n_up(default_n_up(size))
    }

    /// Side of the first feature map.
    pub fn start_size(&self) -> usize {
        self.size >> self.n_up
    }

    /// Channels after the head block and after each up-block (`n_up + 1` entries).
    pub fn channels(&self) -> Vec<usize> {
        let top = 16 * self.ngf;
        let mut ch = vec![top];
        for i in 0..self.n_up {
            ch.push(self.ngf << (self.n_up - 1 - i).min(4));
        }
        ch
    }

    /// Checks the invariants; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.label_nc == 0 {
            return Err("label_nc must be at least 1".into());
        }
        if self.ngf == 0 || self.z_dim == 0 || self.spade_hidden == 0 {
            return Err(format!("ngf ({}), z_dim ({}) and spade_hidden ({}) must be positive", self.ngf, self.z_dim, self.spade_hidden));
        }
        if self.n_up == 0 || self.n_up > 10 {
            return Err(format!("n_up {} must be between 1 and 10", self.n_up));
        }
        if self.size == 0 || !self.size.is_multiple_of(1 << self.n_up) {
            return Err(format!("size {} must be a positive multiple of 2^n_up = {}", self.size, 1 << self.n_up));
        }
        Ok(())
    }

    /// # Panics
    /// If [`Self::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpadeGenerator<B> {
        if let Err(e) = self.validate() {
            panic!("SpadeGeneratorConfig: {e}");
        }
        let ch = self.channels();
        let s0 = self.start_size();
        let block =
            |fin, fout| SpadeResBlockConfig::new([fin, fout], self.label_nc).with_spade_hidden(self.spade_hidden).with_norm(self.norm).with_spectral(self.spectral).init(device);
        let (fc, conv_in) = match self.input {
            SpadeInput::Noise => (Some(LinearConfig::new(self.z_dim, ch[0] * s0 * s0).init(device)), None),
            SpadeInput::Label => (None, Some(SnConv2dConfig::new([self.label_nc + self.z_dim, ch[0]], 3).with_padding(1).with_spectral(false).init(device))),
        };
        SpadeGenerator {
            fc,
            conv_in,
            head: block(ch[0], ch[0]),
            middle: (0..self.n_middle).map(|_| block(ch[1], ch[1])).collect(),
            ups: (0..self.n_up).map(|i| block(ch[i], ch[i + 1])).collect(),
            conv_img: SnConv2dConfig::new([self.ngf, 3], 3).with_padding(1).with_spectral(false).init(device),
            c0: ch[0],
            s0,
            label_nc: self.label_nc,
            z_dim: self.z_dim,
        }
    }
}

/// Reads a stored [`SpadeGeneratorConfig`] (`model.json`, a checkpoint's `state.json`):
/// one written before [`SpadeInput`] existed has no `input` and is the noise generator it
/// was. (Burn's `Config` derive gives no serde default; `#[serde(deserialize_with)]` uses
/// this.)
pub fn deserialize_config<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SpadeGeneratorConfig, D::Error> {
    let mut v = serde_json::Value::deserialize(d)?;
    if let Some(obj) = v.as_object_mut() {
        obj.entry("input").or_insert_with(|| serde_json::json!(SpadeInput::Noise));
    }
    serde_json::from_value(v).map_err(serde::de::Error::custom)
}

/// Upsamplings for [`SpadeGeneratorConfig::small`]: at most 5, first map at least 4×4.
pub fn default_n_up(size: usize) -> usize {
    let mut n = 0;
    while n < 5 && size.is_multiple_of(1 << (n + 1)) && size >> (n + 1) >= 4 {
        n += 1;
    }
    n.max(1)
}

/// The SPADE generator.
#[derive(Module, Debug)]
pub struct SpadeGenerator<B: Backend> {
    /// `z → 16·ngf × s0 × s0` ([`SpadeInput::Noise`]).
    pub fc: Option<Linear<B>>,
    /// `[seg ↓ s0, z broadcast] → 16·ngf × s0 × s0` ([`SpadeInput::Label`]).
    pub conv_in: Option<SnConv2d<B>>,
    pub head: SpadeResBlock<B>,
    /// Run after the first up-block, at its resolution.
    pub middle: Vec<SpadeResBlock<B>>,
    /// Each runs after a nearest ×2 upsampling.
    pub ups: Vec<SpadeResBlock<B>>,
    pub conv_img: SnConv2d<B>,
    #[module(skip)]
    c0: usize,
    #[module(skip)]
    s0: usize,
    #[module(skip)]
    label_nc: usize,
    #[module(skip)]
    z_dim: usize,
}

impl<B: Backend> SpadeGenerator<B> {
    /// `seg`: one-hot labels `[b, label_nc, size, size]`; `z`: `[b, z_dim]`.
    /// Returns images `[b, 3, size, size]` in `[-1, 1]`, f32; computes in the weights'
    /// dtype ([`crate::precision`]).
    pub fn forward(&self, seg: Tensor<B, 4>, z: Tensor<B, 2>) -> Tensor<B, 4> {
        let dtype = crate::precision::model_dtype(&self.conv_img.conv.weight);
        let (seg, z) = (seg.cast(dtype), z.cast(dtype));
        let [b, k, h, w] = seg.dims();
        assert_eq!(k, self.label_nc, "SpadeGenerator: seg has {k} channels, the model {}", self.label_nc);
        let out = self.s0 << self.ups.len();
        assert!(h == out && w == out, "SpadeGenerator: seg is {h}x{w}, the model makes {out}x{out}");
        // The label map at every resolution, nearest-resized once per forward.
        let segs: Vec<Tensor<B, 4>> = (0..=self.ups.len())
            .map(|l| {
                let s = self.s0 << l;
                if s == out {
                    seg.clone()
                } else {
                    interpolate(seg.clone(), [s, s], InterpolateOptions::new(InterpolateMode::Nearest))
                }
            })
            .collect();
        let mut x = match (&self.fc, &self.conv_in) {
            (Some(fc), _) => fc.forward(z).reshape([b, self.c0, self.s0, self.s0]),
            (None, Some(conv)) => {
                let z = z.reshape([b, self.z_dim, 1, 1]).repeat_dim(2, self.s0).repeat_dim(3, self.s0);
                conv.forward(Tensor::cat(vec![segs[0].clone(), z], 1))
            }
            (None, None) => unreachable!("a generator has a linear or a conv input"),
        };
        x = self.head.forward(x, segs[0].clone());
        for (i, up) in self.ups.iter().enumerate() {
            x = upsample2(x);
            x = up.forward(x, segs[i + 1].clone());
            if i == 0 {
                for m in &self.middle {
                    x = m.forward(x, segs[1].clone());
                }
            }
        }
        crate::precision::f32(tanh(self.conv_img.forward(leaky_relu(x, LEAKY_SLOPE))))
    }

    /// For inference: spectral norm folded into every conv's weight once
    /// ([`SnConv2d::fold`]) instead of estimated on every forward. Same outputs.
    pub fn fold_spectral_norm(self) -> Self {
        SpadeGenerator {
            conv_in: self.conv_in.map(SnConv2d::fold),
            head: self.head.fold(),
            middle: self.middle.into_iter().map(SpadeResBlock::fold).collect(),
            ups: self.ups.into_iter().map(SpadeResBlock::fold).collect(),
            conv_img: self.conv_img.fold(),
            ..self
        }
    }

    /// Output side in pixels.
    pub fn size(&self) -> usize {
        self.s0 << self.ups.len()
    }

    pub fn label_nc(&self) -> usize {
        self.label_nc
    }

    pub fn z_dim(&self) -> usize {
        self.z_dim
    }

    /// Paints one image per label map (class indices, already `size × size`), the noise of
    /// image `i` drawn from `seeds[i]`. One forward pass over the whole slice.
    ///
    /// # Panics
    /// If the slices differ in length or a map is not `size × size`.
    pub fn synthesize(&self, labels: &[LabelMap], seeds: &[u64]) -> Vec<RgbImage> {
        assert_eq!(labels.len(), seeds.len(), "synthesize: {} label maps but {} seeds", labels.len(), seeds.len());
        if labels.is_empty() {
            return Vec::new();
        }
        let device = self.conv_img.conv.weight.device();
        let seg = one_hot::<B>(labels, self.label_nc, &device);
        let z = noise::<B>(seeds, self.z_dim, &device);
        tensor_to_images(self.forward(seg, z))
    }
}

/// Nearest ×2 upsampling: `[b, c, h, w]` → `[b, c, 2h, 2w]`.
pub fn upsample2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    interpolate(x, [2 * h, 2 * w], InterpolateOptions::new(InterpolateMode::Nearest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use shared::procedural::{sample, ClassShares};

    fn labels(size: u32, n: u64) -> Vec<LabelMap> {
        (0..n).map(|i| sample(11, i, size, &ClassShares::default()).1).collect()
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        a.data.iter().zip(&b.data).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.data.len() as f64
    }

    /// Folding spectral norm into the weights changes no output.
    #[test]
    fn spade_folded_spectral_norm_paints_the_same() {
        let device = CpuDevice::default();
        let cfg = SpadeGeneratorConfig::new(8, 16).with_ngf(2).with_n_up(2).with_spade_hidden(8).with_z_dim(16).with_spectral(true);
        let g = cfg.init::<Cpu>(&device).map(&mut crate::ddpm::sampler::tests::Jitter);
        assert!(g.head.conv_0.u.is_some(), "the test needs spectral norm on");
        let (seg, z) = (one_hot::<Cpu>(&labels(16, 2), 8, &device), noise::<Cpu>(&[1, 2], 16, &device));
        let want: Vec<f32> = g.forward(seg.clone(), z.clone()).into_data().to_vec().unwrap();
        let folded = g.fold_spectral_norm();
        assert!(folded.head.conv_0.u.is_none() && folded.ups.iter().all(|b| b.conv_1.u.is_none()));
        let got: Vec<f32> = folded.forward(seg, z).into_data().to_vec().unwrap();
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "folded generator differs by {worst}");
    }

    #[test]
    fn spade_generator_shapes_and_range() {
        let device = CpuDevice::default();
        for (size, ngf, n_up) in [(16usize, 2usize, 2usize), (32, 4, 3), (64, 2, 4), (48, 3, 3)] {
            let cfg = SpadeGeneratorConfig::new(8, size).with_ngf(ngf).with_n_up(n_up).with_spade_hidden(8).with_z_dim(16);
            let g = cfg.init::<Cpu>(&device);
            assert_eq!(g.size(), size);
            let seg = one_hot::<Cpu>(&labels(size as u32, 2), 8, &device);
            let z = noise::<Cpu>(&[1, 2], 16, &device);
            let y = g.forward(seg, z);
            assert_eq!(y.dims(), [2, 3, size, size], "size {size} ngf {ngf}");
            let v: Vec<f32> = y.into_data().to_vec().unwrap();
            assert!(v.iter().all(|x| x.is_finite() && (-1.0..=1.0).contains(x)), "size {size} ngf {ngf}: output outside [-1, 1]");
        }
    }

    #[test]
    fn spade_generator_config_checks_invariants() {
        assert!(SpadeGeneratorConfig::new(8, 64).with_n_up(4).validate().is_ok());
        assert!(SpadeGeneratorConfig::new(8, 48).with_n_up(5).validate().unwrap_err().contains("multiple of 2^n_up"));
        assert!(SpadeGeneratorConfig::new(0, 64).validate().is_err());
        assert!(SpadeGeneratorConfig::new(8, 64).with_ngf(0).validate().is_err());
        assert_eq!(SpadeGeneratorConfig::new(8, 512).channels(), vec![1024, 1024, 512, 256, 128, 64]);
        assert_eq!(default_n_up(64), 4);
        assert_eq!(default_n_up(512), 5);
        assert_eq!(default_n_up(32), 3);
    }

    #[test]
    fn spade_generator_same_seed_same_image_alone_or_in_a_batch() {
        let device = CpuDevice::default();
        let g = SpadeGeneratorConfig::small(8, 32, 4).init::<Cpu>(&device);
        let maps = labels(32, 3);
        let batch = g.synthesize(&maps, &[10, 11, 12]);
        let alone = g.synthesize(&maps[1..2], &[11]);
        let d = mean_abs_diff(&batch[1], &alone[0]);
        assert!(d < 0.01, "sample 1 alone vs in a batch of 3: mean |Δ| = {d} (levels 0..255)");
        let again = g.synthesize(&maps[1..2], &[11]);
        assert_eq!(alone[0], again[0]);
    }

    #[test]
    fn spade_generator_label_input_follows_nvlabs_and_keeps_variety() {
        let device = CpuDevice::default();
        // Full size at 512: the label conv replaces the 67M-parameter linear layer.
        let count = |input| {
            let g = SpadeGeneratorConfig::new(8, 512).with_input(input).init::<Cpu>(&device);
            (g.num_params(), g.fc.num_params() + g.conv_in.num_params())
        };
        let ((noise_total, linear), (label_total, conv)) = (count(SpadeInput::Noise), count(SpadeInput::Label));
        assert_eq!(linear, 256 * 1024 * 16 * 16 + 1024 * 16 * 16);
        assert_eq!(conv, (8 + 256) * 1024 * 9 + 1024);
        assert_eq!(noise_total - linear, label_total - conv, "the rest of the network is the same");
        eprintln!("SPADE 512 parameters: noise input {:.1}M, label input {:.1}M", noise_total as f64 / 1e6, label_total as f64 / 1e6);

        let g = SpadeGeneratorConfig::small(8, 32, 4).with_input(SpadeInput::Label).init::<Cpu>(&device);
        let maps = labels(32, 2);
        let out = g.synthesize(&[maps[0].clone(), maps[0].clone(), maps[1].clone()], &[1, 2, 1]);
        assert_eq!((out[0].width, out[0].height), (32, 32));
        assert!(mean_abs_diff(&out[0], &out[1]) > 2.0, "same label, other noise: the injected noise must change the image");
        assert!(mean_abs_diff(&out[0], &out[2]) > 2.0, "same noise, other label: the label must change the image");
        assert_eq!(g.synthesize(&maps[..1], &[1])[0], out[0], "deterministic per (label, seed)");
        // A model.json from before the option has no `input`: it is the noise generator.
        let mut v = serde_json::to_value(SpadeGeneratorConfig::small(8, 32, 4)).unwrap();
        v.as_object_mut().unwrap().remove("input");
        let old = deserialize_config(v).unwrap();
        assert_eq!(old, SpadeGeneratorConfig::small(8, 32, 4));
        assert_eq!(old.input, SpadeInput::Noise);
    }

    #[test]
    fn spade_generator_different_noise_different_images() {
        let device = CpuDevice::default();
        let g = SpadeGeneratorConfig::small(8, 32, 4).init::<Cpu>(&device);
        let map = labels(32, 1).remove(0);
        let out = g.synthesize(&[map.clone(), map], &[1, 2]);
        let d = mean_abs_diff(&out[0], &out[1]);
        // Floor: 2 grey levels of 255 on average (an untrained generator gives ~10+).
        assert!(d > 2.0, "same label, seeds 1 and 2: mean |Δ| = {d:.2} grey levels, expected > 2");
    }
}
