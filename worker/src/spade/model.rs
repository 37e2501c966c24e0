//! The SPADE model artifact: `generator.mpk` (named MessagePack, f32) and `model.json`
//! at a path or `s3://` URI, and the inference API the pipeline calls. What `model.json`
//! records ([`SpadeMeta`], with the [`SpadeTrainSettings`] and [`Losses`] of the run) is defined
//! here; `train.rs` builds on it (and not the other way round).

use anyhow::Context;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use shared::{ClassTable, LabelMap, RgbImage};

use super::discriminator::SpadeDiscriminatorConfig;
use super::generator::{SpadeGenerator, SpadeGeneratorConfig};
use super::loss::FEAT_WEIGHT;
use crate::sync_store;

/// Version of the artifact layout; [`SpadeModel::load`] refuses others.
pub const FORMAT_VERSION: u32 = 1;
/// The metadata file.
pub const META_FILE: &str = "model.json";
/// The generator weights.
pub const WEIGHTS_FILE: &str = "generator.mpk";
/// `model.json`'s `kind`.
pub const KIND: &str = shared::artifact::IMAGE_MODEL_KIND;

/// Smoothed training losses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    pub g_gan: f64,
    pub g_feat: f64,
    pub d: f64,
}

impl Losses {
    /// `self + alpha · (new − self)`.
    pub fn ema(&self, new: &Losses, alpha: f64) -> Losses {
        let f = |a: f64, b: f64| a + alpha * (b - a);
        Losses { g_gan: f(self.g_gan, new.g_gan), g_feat: f(self.g_feat, new.g_feat), d: f(self.d, new.d) }
    }
}

/// Optimiser and loss settings (saved in checkpoints and `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpadeTrainSettings {
    pub lr_g: f64,
    pub lr_d: f64,
    pub batch: usize,
    pub seed: u64,
    pub feat_weight: f64,
    /// Weight of the VGG19 perceptual loss (0: off; SPADE uses 10 when it is on).
    #[serde(default)]
    pub vgg_weight: f64,
}

impl Default for SpadeTrainSettings {
    fn default() -> Self {
        SpadeTrainSettings { lr_g: 1e-4, lr_d: 4e-4, batch: 4, seed: 0, feat_weight: FEAT_WEIGHT, vgg_weight: 0.0 }
    }
}

/// `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpadeMeta {
    pub format_version: u32,
    /// Always `"spade"`.
    pub kind: String,
    /// Generator architecture.
    #[serde(deserialize_with = "super::generator::deserialize_config")]
    pub architecture: SpadeGeneratorConfig,
    /// The discriminator it was trained against (informational).
    pub discriminator: SpadeDiscriminatorConfig,
    /// The classes, in one-hot channel order.
    pub classes: ClassTable,
    /// Image side in pixels (label maps must be resized to it).
    pub size: u32,
    /// sha256 of the training data ([`shared::dataset::Dataset::digest`]).
    pub data_digest: String,
    pub steps: u64,
    /// Smoothed losses at the last step.
    pub final_losses: Losses,
    pub train: SpadeTrainSettings,
    /// Weights file name, next to `model.json`.
    pub weights: String,
    /// How noise is drawn: stream and distribution (for other implementations).
    pub noise: String,
    /// Share of the dataset held out as the test split (its stems are in
    /// `test_stems.txt` beside `model.json`); `None` in artifacts written before it was
    /// recorded.
    #[serde(default)]
    pub test_fraction: Option<f64>,
    /// Pairs trained on (the train split); `None` in older artifacts.
    #[serde(default)]
    pub train_count: Option<u64>,
    /// Elements in the weights file's tensors, set by [`save`]: the coordinator checks a
    /// weights file against it at submit without loading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<u64>,
    /// sha256 (hex) of the weights file, set by the save that writes it: loading refuses
    /// weights that are not the ones this `model.json` was written with
    /// ([`shared::artifact::check_weights_sha256`]). `None` in older artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

impl SpadeMeta {
    pub fn new(
        architecture: SpadeGeneratorConfig,
        discriminator: SpadeDiscriminatorConfig,
        classes: ClassTable,
        data_digest: String,
        steps: u64,
        final_losses: Losses,
        train: SpadeTrainSettings,
    ) -> Self {
        SpadeMeta {
            format_version: FORMAT_VERSION,
            kind: KIND.to_string(),
            size: architecture.size as u32,
            architecture,
            discriminator,
            classes,
            data_digest,
            steps,
            final_losses,
            train,
            weights: WEIGHTS_FILE.to_string(),
            noise: format!("z[i] ~ N(0,1) f32 from ChaCha8 seed_from_u64(seed), stream {:#x}", super::input::NOISE_STREAM),
            test_fraction: None,
            train_count: None,
            parameters: None,
            weights_sha256: None,
        }
    }
}

/// Writes the generator's weights and `model.json` (last) under `uri`.
pub fn save<B: Backend>(generator: &SpadeGenerator<B>, meta: &SpadeMeta, uri: &str) -> anyhow::Result<()> {
    let bytes = crate::weights::module_to_bytes(generator.clone()).context("encoding the generator weights")?;
    let meta = SpadeMeta { parameters: Some(crate::weights::parameters_of(&bytes)?), weights_sha256: Some(shared::artifact::sha256_hex(&bytes)), ..meta.clone() };
    sync_store::write_file(uri, &meta.weights, bytes)?;
    sync_store::write_file(uri, META_FILE, serde_json::to_vec_pretty(&meta)?)
}

/// A trained SPADE generator and its metadata.
#[derive(Debug, Clone)]
pub struct SpadeModel<B: Backend> {
    pub generator: SpadeGenerator<B>,
    pub meta: SpadeMeta,
}

impl<B: Backend> SpadeModel<B> {
    /// Loads `URI/model.json` and its weights. Errors name the file and the problem
    /// (missing, not JSON, another kind or version, an inconsistent architecture,
    /// undecodable weights).
    pub fn load(uri: &str, device: &B::Device) -> anyhow::Result<Self> {
        let bytes = sync_store::require_file(uri, META_FILE)?;
        let meta = SpadeMeta::from_json(&bytes, uri)?;
        let weights = sync_store::require_file(uri, &meta.weights)?;
        let (declared, origin) = (meta.weights_sha256.clone(), format!("{uri}/{}", meta.weights));
        crate::weights::decode_checked(weights, declared.as_deref(), &origin, |w| Self::from_parts(meta, w, uri, device))
    }

    /// Builds the model from a checked `model.json` and the weights' bytes (already fetched
    /// and verified, e.g. by [`shared::artifact::fetch`]); `uri` names them in errors.
    pub fn from_parts(meta: SpadeMeta, weights: Vec<u8>, uri: &str, device: &B::Device) -> anyhow::Result<Self> {
        // Shape-checked: weights of another architecture are an error naming the file.
        let generator = crate::weights::module_from_bytes(meta.architecture.init::<B>(device), weights, device, &format!("{uri}/{}", meta.weights))?;
        Ok(SpadeModel { generator, meta })
    }
}

impl SpadeMeta {
    /// Parses and checks `model.json` (kind, version, architecture against classes and
    /// size); `uri` is the artifact location, named in errors.
    pub fn from_json(bytes: &[u8], uri: &str) -> anyhow::Result<SpadeMeta> {
        let file = |name: &str| format!("{uri}/{name}");
        // Another model's file says so by its kind, before any field it lacks.
        let v: serde_json::Value = serde_json::from_slice(bytes).with_context(|| format!("{}: not valid JSON", file(META_FILE)))?;
        if let Some(kind) = v.get("kind").and_then(serde_json::Value::as_str).filter(|k| *k != KIND) {
            anyhow::bail!("{}: kind is {kind:?}, expected {KIND:?} (is this the label model?)", file(META_FILE));
        }
        let meta: SpadeMeta = serde_json::from_value(v).with_context(|| format!("{}: not a SPADE model.json", file(META_FILE)))?;
        if meta.format_version != FORMAT_VERSION {
            anyhow::bail!("{}: format_version {} is not supported (this build reads {FORMAT_VERSION})", file(META_FILE), meta.format_version);
        }
        meta.architecture.validate().map_err(|e| anyhow::anyhow!("{}: architecture: {e}", file(META_FILE)))?;
        if meta.architecture.label_nc != meta.classes.len() {
            anyhow::bail!("{}: architecture.label_nc {} differs from the {} classes", file(META_FILE), meta.architecture.label_nc, meta.classes.len());
        }
        if meta.size as usize != meta.architecture.size {
            anyhow::bail!("{}: size {} differs from architecture.size {}", file(META_FILE), meta.size, meta.architecture.size);
        }
        Ok(meta)
    }
}

impl<B: Backend> SpadeModel<B> {
    /// The model computing in precision `p` (weights cast once; see [`crate::precision`]).
    pub fn with_precision(self, p: crate::precision::Precision) -> Self {
        SpadeModel { generator: crate::precision::cast_module(self.generator, p), ..self }
    }

    /// Ready to paint: spectral norm folded into the weights (in f32), then cast to `p`.
    /// Not for saving (the folded record has no power-iteration state).
    pub fn for_inference(self, p: crate::precision::Precision) -> Self {
        SpadeModel { generator: self.generator.fold_spectral_norm(), ..self }.with_precision(p)
    }

    /// Image side in pixels.
    pub fn size(&self) -> u32 {
        self.meta.size
    }

    pub fn classes(&self) -> &ClassTable {
        &self.meta.classes
    }

    /// One image per label map (class indices of [`Self::classes`]); image `i`'s noise is
    /// drawn from `seeds[i]`, so it does not depend on the batch. Maps not at the model's
    /// size are nearest-resized to it. One forward pass over the slice: callers batch.
    ///
    /// # Panics
    /// If `labels` and `seeds` differ in length.
    pub fn synthesize(&self, labels: &[LabelMap], seeds: &[u64]) -> Vec<RgbImage> {
        let s = self.meta.size;
        if labels.iter().all(|m| m.width == s && m.height == s) {
            return self.generator.synthesize(labels, seeds);
        }
        let resized: Vec<LabelMap> = labels.iter().map(|m| if m.width == s && m.height == s { m.clone() } else { m.resize_nearest(s, s) }).collect();
        self.generator.synthesize(&resized, seeds)
    }
}
