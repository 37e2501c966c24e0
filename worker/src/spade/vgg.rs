//! The VGG19 perceptual loss of SPADE (pix2pixHD's "VGG loss"): L1 distances between the
//! VGG19 features of generated and real images at relu1_1, relu2_1, relu3_1, relu4_1 and
//! relu5_1, weighted 1/32, 1/16, 1/8, 1/4 and 1.
//!
//! No weights ship with labelgen: `--vgg FILE` loads torchvision's ImageNet VGG19 from a
//! local file — the PyTorch checkpoint (`vgg19-dcbb9e9d.pth`, keys `features.N.weight`
//! and `.bias`) or a safetensors file with the same keys. Only the 16 convolutions of
//! `features` are read (the classifier is ignored); their sparse indices 0, 2, 5, 7, …, 34
//! map in order onto this module's `convs.0` … `convs.15`. The network is frozen.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn_store::{ModuleSnapshot, PytorchStore, SafetensorsStore};

/// Output channels of VGG19's 16 convolutions (3×3, padding 1).
pub const CHANNELS: [usize; 16] = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512];
/// Convolutions followed by a 2×2 max pool (before the next block).
const POOL_AFTER: [usize; 4] = [1, 3, 7, 11];
/// Convolutions whose ReLU output is a loss tap (relu1_1 … relu5_1), and the taps' weights.
const TAPS: [usize; 5] = [0, 2, 4, 8, 12];
pub const TAP_WEIGHTS: [f64; 5] = [1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 1.0];
/// ImageNet normalisation of torchvision's models (inputs in [0, 1]).
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Module, Debug)]
pub struct Vgg19<B: Backend> {
    pub convs: Vec<Conv2d<B>>,
    pool: MaxPool2d,
}

impl<B: Backend> Vgg19<B> {
    /// Untrained weights (tests; [`Vgg19::load`] for the real ones).
    pub fn init(device: &B::Device) -> Self {
        let mut c_in = 3;
        let convs = CHANNELS
            .iter()
            .map(|&c| {
                let conv = Conv2dConfig::new([c_in, c], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
                c_in = c;
                conv
            })
            .collect();
        Vgg19 { convs, pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init() }
    }

    /// torchvision's VGG19 from `path` (`.pth`/`.pt` PyTorch checkpoint or
    /// `.safetensors`), frozen. Errors name the file and what is wrong with it.
    pub fn load(path: &Path, device: &B::Device) -> anyhow::Result<Self> {
        anyhow::ensure!(path.is_file(), "--vgg {}: no such file (expected torchvision's VGG19 weights, e.g. vgg19-dcbb9e9d.pth)", path.display());
        let mut model = Self::init(device);
        // torchvision's `features.N.*` onto `convs.i.*` (N sparse, i contiguous); the
        // classifier's tensors are left out.
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let result = match ext.as_str() {
            "pth" | "pt" => model
                .load_from(&mut PytorchStore::from_file(path).with_key_remapping(r"^features\.", "convs.").map_indices_contiguous(true).allow_partial(true))
                .map_err(|e| e.to_string()),
            "safetensors" => model
                .load_from(&mut SafetensorsStore::from_file(path).with_key_remapping(r"^features\.", "convs.").map_indices_contiguous(true).allow_partial(true))
                .map_err(|e| e.to_string()),
            _ => anyhow::bail!("--vgg {}: expected a .pth, .pt or .safetensors file", path.display()),
        }
        .map_err(|e| anyhow::anyhow!("--vgg {}: not readable as torchvision VGG19 weights ({ext}): {e}", path.display()))?;
        if let Some(e) = result.errors.first() {
            anyhow::bail!("--vgg {}: {e} (is it VGG19? VGG16 and other variants have other shapes)", path.display());
        }
        if !result.missing.is_empty() {
            let missing: Vec<&str> = result.missing.iter().map(|m| m.0.as_str()).collect();
            anyhow::bail!(
                "--vgg {}: {} of VGG19's 32 convolution tensors are missing ({}…): expected keys features.0.weight, features.0.bias, … features.34.bias as torchvision names them",
                path.display(),
                missing.len(),
                missing.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(model.no_grad())
    }

    /// The five tap features of images in `[-1, 1]` (`[b, 3, h, w]`).
    pub fn taps(&self, images: Tensor<B, 4>) -> Vec<Tensor<B, 4>> {
        let device = images.device();
        let mean = Tensor::<B, 1>::from_floats(MEAN, &device).reshape([1, 3, 1, 1]);
        let std = Tensor::<B, 1>::from_floats(STD, &device).reshape([1, 3, 1, 1]);
        let mut x = (images.add_scalar(1.0).mul_scalar(0.5) - mean) / std;
        let mut out = Vec::with_capacity(TAPS.len());
        for (i, conv) in self.convs.iter().enumerate().take(TAPS[TAPS.len() - 1] + 1) {
            x = relu(conv.forward(x));
            if TAPS.contains(&i) {
                out.push(x.clone());
            }
            if POOL_AFTER.contains(&i) {
                x = self.pool.forward(x);
            }
        }
        out
    }

    /// Σ weight · mean |VGG(fake) − VGG(real)| over the taps (the real features carry no
    /// gradient).
    pub fn loss(&self, fake: Tensor<B, 4>, real: Tensor<B, 4>) -> Tensor<B, 1> {
        let device = fake.device();
        let (f, r) = (self.taps(fake), self.taps(real.detach()));
        f.into_iter().zip(r).zip(TAP_WEIGHTS).fold(Tensor::zeros([1], &device), |acc, ((a, b), w)| acc + (a - b).abs().mean().mul_scalar(w))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    /// torchvision's key for conv `i` of `features` (ReLUs and pools take indices too).
    fn torch_index(i: usize) -> usize {
        [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34][i]
    }

    /// Writes a safetensors file shaped like torchvision's VGG19 (conv `i`'s weights all
    /// `i / 100`, biases `-i / 100`), leaving out the convolutions in `skip`.
    fn write_vgg(path: &Path, skip: &[usize]) {
        let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut c_in = 3;
        for (i, &c) in CHANNELS.iter().enumerate() {
            let v = i as f32 / 100.0;
            if !skip.contains(&i) {
                let w: Vec<u8> = std::iter::repeat_n(v, c * c_in * 9).flat_map(f32::to_le_bytes).collect();
                let b: Vec<u8> = std::iter::repeat_n(-v, c).flat_map(f32::to_le_bytes).collect();
                bufs.push((format!("features.{}.weight", torch_index(i)), vec![c, c_in, 3, 3], w));
                bufs.push((format!("features.{}.bias", torch_index(i)), vec![c], b));
            }
            c_in = c;
        }
        bufs.push(("classifier.0.bias".into(), vec![4], vec![0; 16]));
        let views: HashMap<String, safetensors::tensor::TensorView> =
            bufs.iter().map(|(k, shape, data)| (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap())).collect();
        std::fs::write(path, safetensors::serialize(&views, None).unwrap()).unwrap();
    }

    #[test]
    fn spade_vgg_loads_torchvision_keys_and_measures_distance() {
        let dir = std::env::temp_dir().join(format!("labelgen-vgg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let device = CpuDevice::default();
        let file = dir.join("vgg19.safetensors");
        write_vgg(&file, &[]);
        let vgg = Vgg19::<Cpu>::load(&file, &device).unwrap();
        for i in [0usize, 4, 15] {
            let w: Vec<f32> = vgg.convs[i].weight.val().into_data().to_vec().unwrap();
            let b: Vec<f32> = vgg.convs[i].bias.as_ref().unwrap().val().into_data().to_vec().unwrap();
            assert!(w.iter().all(|&x| x == i as f32 / 100.0) && b.iter().all(|&x| x == -(i as f32) / 100.0), "conv {i} got features.{}'s values", torch_index(i));
        }

        // The loss: zero for identical images, positive and growing with the difference.
        let vgg = Vgg19::<Cpu>::init(&device);
        let a = Tensor::<Cpu, 4>::random([2, 3, 32, 32], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
        let same: f32 = vgg.loss(a.clone(), a.clone()).into_scalar();
        let near: f32 = vgg.loss(a.clone().add_scalar(0.05), a.clone()).into_scalar();
        let far: f32 = vgg.loss(a.clone().mul_scalar(-1.0), a.clone()).into_scalar();
        assert_eq!(same, 0.0);
        assert!(near > 0.0 && far > near, "same {same}, near {near}, far {far}");
        assert_eq!(vgg.taps(a).iter().map(|t| t.dims()[1]).collect::<Vec<_>>(), vec![64, 128, 256, 512, 512]);

        // Files that are not VGG19 are refused with the reason.
        let partial = dir.join("partial.safetensors");
        write_vgg(&partial, &[15]);
        let e = format!("{:#}", Vgg19::<Cpu>::load(&partial, &device).unwrap_err());
        assert!(e.contains("partial.safetensors") && e.contains("2 of VGG19's 32") && e.contains("features.0.weight"), "{e}");
        // A gap shifts the later convolutions onto wrong shapes.
        write_vgg(&partial, &[3]);
        let e = format!("{:#}", Vgg19::<Cpu>::load(&partial, &device).unwrap_err());
        assert!(e.contains("partial.safetensors") && e.contains("VGG19"), "{e}");
        let e = format!("{:#}", Vgg19::<Cpu>::load(&dir.join("nope.pth"), &device).unwrap_err());
        assert!(e.contains("nope.pth") && e.contains("no such file"), "{e}");
        std::fs::write(dir.join("w.bin"), b"x").unwrap();
        let e = format!("{:#}", Vgg19::<Cpu>::load(&dir.join("w.bin"), &device).unwrap_err());
        assert!(e.contains(".safetensors"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// With the loss on, a training step reports it and the generator's loss includes it.
    #[test]
    fn spade_vgg_loss_enters_the_generator_step() {
        use shared::procedural::{sample, ClassShares};

        use crate::backend::CpuTrain;
        use crate::spade::{SpadeDiscriminatorConfig, SpadeGeneratorConfig, SpadeTrainSettings, SpadeTrainer};
        let device = CpuDevice::default();
        let (labels, images): (Vec<_>, Vec<_>) = (0..2)
            .map(|i| {
                let (img, lab) = sample(3, i, 32, &ClassShares::default());
                (lab, img)
            })
            .unzip();
        let make = || {
            SpadeTrainer::<CpuTrain>::new(
                SpadeGeneratorConfig::small(8, 32, 8),
                SpadeDiscriminatorConfig::new(8).with_ndf(8),
                SpadeTrainSettings { batch: 2, ..SpadeTrainSettings::default() },
                &device,
            )
        };
        let off = make().step(&labels, &images).unwrap();
        let mut on = make().with_vgg(Some(Vgg19::init(&device)), 10.0);
        assert_eq!(on.settings.vgg_weight, 10.0);
        let l = on.step(&labels, &images).unwrap();
        assert_eq!(off.g_vgg, 0.0);
        assert!(l.g_vgg > 0.0 && l.g_vgg.is_finite(), "VGG loss {}", l.g_vgg);
        assert_eq!(make().with_vgg(None, 10.0).settings.vgg_weight, 0.0, "no network, no weight");
    }
}
