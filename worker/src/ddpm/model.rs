//! The model artifact: `weights.mpk` (the UNet's EMA weights, Burn named MessagePack, full
//! precision) and `model.json` ([`DdpmMeta`]) under one location (path or `s3://`).

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};
use shared::{ClassTable, LabelMap};

use super::encoding::Encoding;
use super::objective::Objective;
use super::sampler::{go_on, sample_images, sample_tensor, SamplerConfig, Step};
use super::schedule::{NoiseSchedule, ScheduleKind};
use super::unet::{UNet, UNetConfig};
use crate::sync_store;
use crate::weights::{decode_checked, module_from_bytes, module_to_bytes, parameters_of};

/// Version of the `model.json` layout this worker reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The `kind` field of a DDPM label model's `model.json`.
pub const MODEL_KIND: &str = shared::artifact::LABEL_MODEL_KIND;
pub const MODEL_JSON: &str = "model.json";
pub const WEIGHTS_FILE: &str = "weights.mpk";

/// `model.json`: everything needed to rebuild and use the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdpmMeta {
    pub format_version: u32,
    pub kind: String,
    pub unet: UNetConfig,
    pub encoding: Encoding,
    /// What the network predicts; `eps` in artifacts written before it was recorded.
    #[serde(default)]
    pub objective: Objective,
    pub schedule: ScheduleKind,
    pub timesteps: usize,
    pub classes: ClassTable,
    /// Side of the generated label maps, in pixels.
    pub size: u32,
    /// [`shared::dataset::Dataset::digest`] of the training labels.
    pub data_digest: String,
    /// Training steps done.
    pub steps: u64,
    /// Mean training loss over the last steps (see the trainer).
    pub final_loss: f32,
    /// EMA decay of the weights (the weights file holds the EMA weights).
    pub ema_decay: f64,
    /// Name of the weights file beside `model.json`.
    pub weights: String,
    /// Share of the dataset held out as the test split (its stems are in
    /// `test_stems.txt` beside `model.json`); `None` in artifacts written before it was
    /// recorded.
    #[serde(default)]
    pub test_fraction: Option<f64>,
    /// Label maps trained on (the train split); `None` in older artifacts.
    #[serde(default)]
    pub train_count: Option<u64>,
    /// Elements in the weights file's tensors, set by [`DdpmModel::save`]: the coordinator
    /// checks a weights file against it at submit without loading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<u64>,
    /// sha256 (hex) of the weights file, set by the save that writes it: loading refuses
    /// weights that are not the ones this `model.json` was written with
    /// ([`shared::artifact::check_weights_sha256`]). `None` in older artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

impl DdpmMeta {
    /// The `model.json` of an untrained model (`data_digest` "random", no training steps),
    /// AI Hub classes, linear schedule: for timing runs and tests. The network comes from
    /// `unet.init`.
    pub fn untrained(unet: UNetConfig, encoding: Encoding, timesteps: usize, size: u32) -> DdpmMeta {
        DdpmMeta {
            format_version: FORMAT_VERSION,
            kind: MODEL_KIND.into(),
            unet,
            encoding,
            objective: Objective::default(),
            schedule: ScheduleKind::Linear,
            timesteps,
            classes: ClassTable::ai_hub(),
            size,
            data_digest: "random".into(),
            steps: 0,
            final_loss: 0.0,
            ema_decay: 0.9999,
            weights: WEIGHTS_FILE.into(),
            test_fraction: None,
            train_count: None,
            parameters: None,
            weights_sha256: None,
        }
    }

    /// Checks the fields agree with each other; `origin` names the file.
    pub fn validate(&self, origin: &str) -> anyhow::Result<()> {
        if self.kind != MODEL_KIND {
            bail!("{origin}: kind {:?} is not a DDPM label model (expected {MODEL_KIND:?})", self.kind);
        }
        self.classes.validate(origin).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.unet.validate().map_err(|e| anyhow::anyhow!("{origin}: unet: {e}"))?;
        let want = self.encoding.channels(self.classes.len());
        if self.unet.in_channels != want {
            bail!("{origin}: unet.in_channels is {}, but encoding {} of {} classes needs {want}", self.unet.in_channels, self.encoding, self.classes.len());
        }
        self.objective.check(self.encoding).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        if self.size as usize != self.unet.image_size {
            bail!("{origin}: size {} differs from unet.image_size {}", self.size, self.unet.image_size);
        }
        if self.timesteps == 0 {
            bail!("{origin}: timesteps must be at least 1");
        }
        Ok(())
    }

    /// Parses `model.json`, checking the format version before anything else.
    pub fn from_json(bytes: &[u8], origin: &str) -> anyhow::Result<DdpmMeta> {
        let v: serde_json::Value = serde_json::from_slice(bytes).with_context(|| format!("{origin}: not valid JSON"))?;
        // Another model's file says so by its kind, before any field it lacks.
        if let Some(kind) = v.get("kind").and_then(serde_json::Value::as_str).filter(|k| *k != MODEL_KIND) {
            bail!("{origin}: kind {kind:?} is not a DDPM label model (expected {MODEL_KIND:?}; is this the image model?)");
        }
        match v.get("format_version").and_then(serde_json::Value::as_u64) {
            Some(n) if n == FORMAT_VERSION as u64 => {}
            Some(n) => bail!("{origin}: format_version {n}; this worker reads format_version {FORMAT_VERSION} (retrain or use a matching worker)"),
            None => bail!("{origin}: no numeric format_version (expected {FORMAT_VERSION}); is this a DDPM model.json?"),
        }
        let meta: DdpmMeta = serde_json::from_value(v).with_context(|| format!("{origin}: invalid model.json"))?;
        meta.validate(origin)?;
        Ok(meta)
    }
}

/// A trained DDPM label generator, ready to sample.
#[derive(Debug, Clone)]
pub struct DdpmModel<B: Backend> {
    pub unet: UNet<B>,
    pub meta: DdpmMeta,
    pub schedule: NoiseSchedule,
    pub device: B::Device,
}

impl<B: Backend> DdpmModel<B> {
    /// Wraps a network and its metadata.
    pub fn new(unet: UNet<B>, meta: DdpmMeta, device: B::Device) -> Self {
        let schedule = NoiseSchedule::new(meta.schedule, meta.timesteps);
        DdpmModel { unet, meta, schedule, device }
    }

    /// Loads `URI/model.json` and its weights. Errors name the file and what is wrong.
    pub fn load(uri: &str, device: &B::Device) -> anyhow::Result<Self> {
        let uri = uri.trim_end_matches('/');
        let json = sync_store::require_file(uri, MODEL_JSON)?;
        let meta = DdpmMeta::from_json(&json, &format!("{uri}/{MODEL_JSON}"))?;
        let weights = sync_store::require_file(uri, &meta.weights)?;
        let (declared, origin) = (meta.weights_sha256.clone(), format!("{uri}/{}", meta.weights));
        decode_checked(weights, declared.as_deref(), &origin, |w| Self::from_parts(meta, w, uri, device))
    }

    /// Builds the model from a parsed `model.json` and the weights' bytes (already fetched
    /// and verified, e.g. by [`shared::artifact::fetch`]); `uri` names them in errors.
    pub fn from_parts(meta: DdpmMeta, weights: Vec<u8>, uri: &str, device: &B::Device) -> anyhow::Result<Self> {
        let unet = meta.unet.init::<B>(device);
        let unet = module_from_bytes(unet, weights, device, &format!("{uri}/{}", meta.weights))?;
        Ok(Self::new(unet, meta, device.clone()))
    }

    /// The model computing in precision `p` (weights cast once; see [`crate::precision`]).
    pub fn with_precision(self, p: crate::precision::Precision) -> Self {
        DdpmModel { unet: crate::precision::cast_module(self.unet, p), ..self }
    }

    /// Writes the weights and `model.json` under `uri`.
    pub fn save(&self, uri: &str) -> anyhow::Result<()> {
        let uri = uri.trim_end_matches('/');
        let weights = module_to_bytes(self.unet.clone())?;
        let meta = DdpmMeta { parameters: Some(parameters_of(&weights)?), weights_sha256: Some(shared::artifact::sha256_hex(&weights)), ..self.meta.clone() };
        sync_store::write_file(uri, &meta.weights, weights)?;
        sync_store::write_file(uri, MODEL_JSON, serde_json::to_vec_pretty(&meta)?)?;
        Ok(())
    }

    pub fn classes(&self) -> &ClassTable {
        &self.meta.classes
    }

    /// Side of the generated maps.
    pub fn size(&self) -> u32 {
        self.meta.size
    }

    /// One label map per seed, sampled as one batch (callers choose the batch size by how
    /// many seeds they pass). A map depends only on its seed and the sampler.
    ///
    /// # Panics
    /// If `sampler` is invalid for this model (check with [`SamplerConfig::validate`]
    /// against `meta.timesteps` first).
    pub fn sample(&self, seeds: &[u64], sampler: &SamplerConfig) -> Vec<LabelMap> {
        self.sample_with_progress(seeds, sampler, &mut go_on)
    }

    /// [`Self::sample`], calling `on_step(done, total)` after each network evaluation (no
    /// maps when it answers stop).
    pub fn sample_with_progress(&self, seeds: &[u64], sampler: &SamplerConfig, on_step: &mut dyn FnMut(usize, usize) -> Step) -> Vec<LabelMap> {
        let k = self.meta.classes.len();
        let c = self.meta.encoding.channels(k);
        let s = self.meta.size;
        sample_images(&self.unet, self.meta.objective, &self.schedule, c, s as usize, seeds, sampler, &self.device, on_step)
            .iter()
            .map(|x| self.meta.encoding.decode(x, k, s, s))
            .collect()
    }

    /// One `out × out` label map per seed, the *smooth* way: the final class probabilities
    /// `x̂_0` are upscaled bilinearly (half-pixel centres, like the nearest upscale's block
    /// geometry) on the device and the class is the argmax of each output pixel, so borders
    /// follow the probabilities rather than the model's pixel grid. Only the `u8`-sized
    /// indices come back to the host. The same seeds give the same maps as
    /// [`Self::sample`] wherever the model was sure.
    ///
    /// # Panics
    /// If the model's encoding is not `onehot` (gray values have no class probabilities;
    /// `shared::artifact::check_spec` refuses the spec first), or as [`Self::sample`].
    pub fn sample_smooth(&self, seeds: &[u64], sampler: &SamplerConfig, out: u32, on_step: &mut dyn FnMut(usize, usize) -> Step) -> Vec<LabelMap> {
        assert_eq!(self.meta.encoding, Encoding::OneHot, "smooth upscale needs a onehot label model");
        let k = self.meta.classes.len();
        let s = self.meta.size as usize;
        let Some(x) = sample_tensor(&self.unet, self.meta.objective, &self.schedule, k, s, seeds, sampler, &self.device, on_step) else { return Vec::new() };
        upscale_argmax(x, out, SMOOTH_UPSCALE_ELEMENTS)
    }
}

/// Most f32 elements of upscaled class probabilities on the device at once (1 GiB): the
/// smooth upscale works through a batch in groups of samples under it, so a large image
/// size with a large label batch (8192² × 8 classes is 2 GiB a sample) does not need the
/// whole batch's probabilities at full size at once.
const SMOOTH_UPSCALE_ELEMENTS: usize = 1 << 28;

/// Class probabilities `[B, K, s, s]` upscaled bilinearly to `out × out` and decided by
/// argmax, in groups of samples holding at most `budget` elements upscaled (at least one
/// sample a group). Every sample's map is computed on its own, so grouping changes nothing.
fn upscale_argmax<B: Backend>(x: Tensor<B, 4>, out: u32, budget: usize) -> Vec<LabelMap> {
    let [b, k, _, _] = x.dims();
    let n = out as usize * out as usize;
    let group = (budget / (k * n).max(1)).max(1);
    let mut maps = Vec::with_capacity(b);
    for start in (0..b).step_by(group) {
        let part = x.clone().narrow(0, start, group.min(b - start));
        let up = interpolate(part, [out as usize, out as usize], InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false));
        let classes: Tensor<B, 4, Int> = up.argmax(1);
        let flat = classes.into_data().convert::<i32>().to_vec::<i32>().expect("i32 class indices");
        maps.extend(flat.chunks(n).map(|c| LabelMap { width: out, height: out, data: c.iter().map(|&v| v as u8).collect() }));
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    fn tiny_meta() -> DdpmMeta {
        DdpmMeta {
            format_version: FORMAT_VERSION,
            kind: MODEL_KIND.into(),
            unet: UNetConfig::new(1, 8, vec![1, 2], 1, vec![4], 0.0, 8).with_groups(4),
            encoding: Encoding::Gray,
            objective: Objective::Eps,
            schedule: ScheduleKind::Linear,
            timesteps: 20,
            classes: ClassTable::ai_hub(),
            size: 8,
            data_digest: "test".into(),
            steps: 0,
            final_loss: 1.0,
            ema_decay: 0.9999,
            weights: WEIGHTS_FILE.into(),
            test_fraction: None,
            train_count: None,
            parameters: None,
            weights_sha256: None,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("labelgen-ddpm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn ddpm_model_save_load_round_trip() {
        let device = CpuDevice::default();
        let meta = tiny_meta();
        let model = DdpmModel::<Cpu>::new(meta.unet.init(&device), meta.clone(), device);
        let dir = temp_dir("roundtrip");
        let uri = dir.to_str().unwrap();
        model.save(uri).unwrap();
        let loaded = DdpmModel::<Cpu>::load(uri, &device).unwrap();
        // Saving adds the weights' element count, for the coordinator's check at submit.
        assert!(loaded.meta.parameters.is_some_and(|n| n > 100), "{:?}", loaded.meta.parameters);
        assert_eq!(DdpmMeta { parameters: None, weights_sha256: None, ..loaded.meta.clone() }, meta);
        let sampler = SamplerConfig::ddim(5, 0.0);
        assert_eq!(model.sample(&[1, 2], &sampler), loaded.sample(&[1, 2], &sampler));
        // A save stopped between its two files (new weights, the old model.json): the
        // weights, same architecture and size, are refused, naming the file.
        let other = DdpmModel::<Cpu>::new(meta.unet.init(&device), meta.clone(), device);
        std::fs::write(dir.join(&meta.weights), module_to_bytes(other.unet).unwrap()).unwrap();
        let e = DdpmModel::<Cpu>::load(uri, &device).err().unwrap().to_string();
        assert!(e.contains(&meta.weights) && e.contains("model.json declares") && e.contains("save stopped"), "{e}");
        // Truncated weights are named as such, not only by their sha256.
        let bytes = std::fs::read(dir.join(&meta.weights)).unwrap();
        std::fs::write(dir.join(&meta.weights), &bytes[..bytes.len() / 2]).unwrap();
        let e = format!("{:#}", DdpmModel::<Cpu>::load(uri, &device).err().unwrap());
        assert!(!e.contains("model.json declares"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ddpm_smooth_upscale_decides_classes_at_full_size() {
        use burn::module::Module;
        let device = CpuDevice::default();
        let meta = DdpmMeta { unet: UNetConfig::new(8, 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4), encoding: Encoding::OneHot, ..tiny_meta() };
        let model = DdpmModel::<Cpu>::new(meta.unet.init(&device).map(&mut crate::ddpm::sampler::tests::Jitter), meta, device);
        let (seeds, sampler) = ([1u64, 2, 3, 4, 5, 6, 7, 8], SamplerConfig::ddim(5, 0.0));
        let nearest: Vec<LabelMap> = model.sample(&seeds, &sampler).iter().map(|m| m.resize_nearest(32, 32)).collect();
        let smooth = model.sample_smooth(&seeds, &sampler, 32, &mut go_on);
        let mean_share = |maps: &[LabelMap]| maps.iter().filter_map(|m| m.grid_boundary_share(4)).sum::<f64>() / maps.len() as f64;
        assert_eq!(smooth.len(), seeds.len());
        assert!(smooth.iter().all(|m| (m.width, m.height) == (32, 32) && m.data.iter().all(|&c| c < 8)));
        // Nearest borders all lie on the 4-px grid; smooth ones cross it.
        assert_eq!(mean_share(&nearest), 1.0);
        let share = mean_share(&smooth);
        assert!(share < 0.6, "smooth maps keep {share:.2} of their borders on the model's grid");
        // The same maps: more pixels agree than chance (≈ 1/8 for 8 classes), though this
        // untrained model's speckle is where the two differ most (0.38 measured on 3 maps of
        // one random network; the weights are random each run, hence 8 maps and a low bound).
        let agree = nearest.iter().zip(&smooth).map(|(a, b)| a.data.iter().zip(&b.data).filter(|(x, y)| x == y).count()).sum::<usize>() as f64 / (seeds.len() as f64 * 1024.0);
        eprintln!("border share on the grid {share:.2}, agreement {agree:.2}");
        assert!(agree > 0.2, "nearest and smooth agree on only {agree:.2} of the pixels");
    }

    /// The smooth upscale in groups of samples (a budget of one sample's probabilities, or
    /// of two) gives the maps the whole batch at once gives.
    #[test]
    fn smooth_upscale_in_groups_gives_the_same_maps() {
        use burn::tensor::Distribution;
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 4>::random([5, 8, 6, 6], Distribution::Uniform(0.0, 1.0), &device);
        let whole = super::upscale_argmax(x.clone(), 24, usize::MAX);
        assert_eq!(whole.len(), 5);
        for budget in [1, 8 * 24 * 24, 2 * 8 * 24 * 24 + 1] {
            assert_eq!(super::upscale_argmax(x.clone(), 24, budget), whole, "budget {budget}");
        }
    }

    #[test]
    fn ddpm_model_load_errors_name_the_file() {
        let device = CpuDevice::default();
        let dir = temp_dir("errors");
        let uri = dir.to_str().unwrap();
        let e = DdpmModel::<Cpu>::load(uri, &device).unwrap_err().to_string();
        assert!(e.contains("model.json") && e.contains("does not exist"), "{e}");

        let mut v = serde_json::to_value(tiny_meta()).unwrap();
        v["format_version"] = 2.into();
        std::fs::write(dir.join(MODEL_JSON), serde_json::to_vec(&v).unwrap()).unwrap();
        let e = format!("{:#}", DdpmModel::<Cpu>::load(uri, &device).unwrap_err());
        assert!(e.contains("model.json: format_version 2") && e.contains("reads format_version 1"), "{e}");

        let mut m = tiny_meta();
        m.unet.in_channels = 8;
        std::fs::write(dir.join(MODEL_JSON), serde_json::to_vec(&m).unwrap()).unwrap();
        let e = format!("{:#}", DdpmModel::<Cpu>::load(uri, &device).unwrap_err());
        assert!(e.contains("unet.in_channels is 8") && e.contains("needs 1"), "{e}");

        // Weights of another architecture.
        let other = UNetConfig::new(1, 8, vec![1], 1, vec![], 0.0, 8).with_groups(4).init::<Cpu>(&device);
        std::fs::write(dir.join(MODEL_JSON), serde_json::to_vec(&tiny_meta()).unwrap()).unwrap();
        std::fs::write(dir.join(WEIGHTS_FILE), module_to_bytes(other).unwrap()).unwrap();
        let e = format!("{:#}", DdpmModel::<Cpu>::load(uri, &device).unwrap_err());
        assert!(e.contains("weights.mpk"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Each model's model.json given to the other's loader says which it is, not which
    /// field it lacks.
    #[test]
    fn a_model_of_the_other_kind_is_named_by_its_kind() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo");
        let spade = std::fs::read(root.join("spade/model.json")).unwrap();
        let e = DdpmMeta::from_json(&spade, "models/demo/spade/model.json").unwrap_err().to_string();
        assert!(e.contains("models/demo/spade/model.json") && e.contains("is not a DDPM label model") && e.contains("image model"), "{e}");
        let ddpm = std::fs::read(root.join("ddpm/model.json")).unwrap();
        let e = crate::spade::SpadeMeta::from_json(&ddpm, "models/demo/ddpm").unwrap_err().to_string();
        assert!(e.contains("models/demo/ddpm/model.json") && e.contains("kind is") && e.contains("label model"), "{e}");
    }
}
