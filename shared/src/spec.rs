//! The run spec: what to generate, how much, and where to put it (a TOML file).
//!
//! Parsing is two-stage: serde reads the raw TOML (unknown keys are errors), then
//! [`RunSpec::validate`] checks values. Every error names the file, the key and what was
//! expected. Credentials are never part of a spec: S3 settings come from the standard
//! `AWS_*` environment variables.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::procedural::ClassShares;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub run: RunSection,
    pub output: OutputSection,
    pub pipeline: PipelineSection,
    /// The class table; the AI Hub land-cover table when absent.
    #[serde(default = "ClassTable::ai_hub")]
    pub classes: ClassTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Number of samples in the dataset.
    pub count: u64,
    /// Samples per job (shard). The last shard may be smaller.
    pub shard_size: u64,
    /// Run seed: sample i's seed is a hash of (seed, i). In JSON (`run.json`) a number up
    /// to 2^53, a decimal string above, so no reader rounds it.
    #[serde(default, with = "crate::seed::json_safe")]
    pub seed: u64,
    /// Failed attempts after which a shard is dead.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Seconds a lease lasts without a heartbeat.
    #[serde(default = "defaults::lease_seconds")]
    pub lease_seconds: u64,
    /// Seconds before the first retry of a failed shard (doubles each time, at most 300).
    #[serde(default = "defaults::retry_backoff_seconds")]
    pub retry_backoff_seconds: f64,
    /// Higher runs are served first; equal priorities oldest first.
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// `s3://bucket/prefix`, `file:///abs/path`, or a path relative to the working directory.
    pub url: String,
    #[serde(default)]
    pub format: OutputFormat,
    /// How images are encoded: `png` (default, lossless), `jpeg` (lossy, `image_quality`)
    /// or `webp` (lossless WebP; smaller than PNG). Labels are always PNG.
    #[serde(default, skip_serializing_if = "ImageFormat::is_png")]
    pub image_format: ImageFormat,
    /// JPEG quality, 1–100 (default 90); only for `image_format = "jpeg"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_quality: Option<u8>,
}

/// The largest object S3 copies in one request (CopyObject): 5 GiB.
pub const MAX_TAR_BYTES: u64 = 5 << 30;

/// `output.image_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    #[default]
    Png,
    Jpeg,
    /// Lossless WebP (the pure-Rust encoder of `image` writes lossless only).
    Webp,
}

impl ImageFormat {
    pub fn is_png(&self) -> bool {
        *self == ImageFormat::Png
    }

    /// File extension of an image in this format (`png`, `jpg`, `webp`).
    pub fn extension(&self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Webp => "webp",
        }
    }
}

impl OutputSection {
    /// The default JPEG quality.
    pub const JPEG_QUALITY: u8 = 90;

    /// The image encoding this spec asks for.
    pub fn image_encoding(&self) -> crate::label::ImageEncoding {
        match self.image_format {
            ImageFormat::Png => crate::label::ImageEncoding::Png,
            ImageFormat::Jpeg => crate::label::ImageEncoding::Jpeg { quality: self.image_quality.unwrap_or(Self::JPEG_QUALITY) },
            ImageFormat::Webp => crate::label::ImageEncoding::WebpLossless,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `KEY.png` + `KEY.label.png` per sample.
    #[default]
    Png,
    /// One tar per shard holding `KEY.png`, `KEY.label.png`, `KEY.json`.
    Webdataset,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    pub kind: PipelineKind,
    /// Side of the square output images and labels, in pixels.
    pub image_size: u32,
    /// Samples generated per batch inside a job; the default of both models' batch sizes
    /// (`pipeline.labels.batch_size`, `pipeline.images.batch_size`).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Where the models run: `auto` (CUDA when a driver is present, else CPU), `cpu`,
    /// `cuda`, `cuda:N` or `cuda:all` (every GPU, one pipeline each). A worker's
    /// `--device` overrides it.
    #[serde(default, skip_serializing_if = "DeviceChoice::is_auto")]
    pub device: DeviceChoice,
    /// Float precision of the models' forward passes: `f32` (default), `bf16` or `f16`.
    /// Weights are cast once at load; norm statistics and attention's softmax stay in f32,
    /// the sampler's state too, and classes are still decided by argmax. Part of the run:
    /// every worker of a run uses it (`--precision` exists only on the standalone model
    /// commands).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// `ddpm-spade`: overlap the two models within a job (default `true`): while SPADE
    /// paints one batch, the DDPM samples the next (two threads, so two CUDA streams on a
    /// GPU). Samples are the same either way; `false` keeps one model's activations in
    /// memory at a time, for a GPU short of memory.
    #[serde(default = "defaults::overlap", skip_serializing_if = "defaults::is_true")]
    pub overlap: bool,
    /// Settings of the `procedural` pipeline.
    #[serde(default)]
    pub procedural: ProceduralSection,
    /// `ddpm-spade`: the DDPM label model and its sampler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelModelSection>,
    /// `ddpm-spade`: the cleanup between sampling and synthesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupSection>,
    /// `ddpm-spade`: the SPADE image model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageModelSection>,
}

/// `[pipeline.labels]`: the DDPM label model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelModelSection {
    /// Model artifact: a local path, `file:///abs/path` or `s3://bucket/prefix` holding
    /// `model.json` and its weights.
    pub model: String,
    /// The artifact's digest ([`crate::artifact`]); `coordinator submit` pins it when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `ddim` (default) or `ddpm` (ancestral, every timestep).
    #[serde(default)]
    pub sampler: SamplerKind,
    /// DDIM steps (default [`DEFAULT_DDIM_STEPS`], pinned into the spec at submit); for
    /// `ddpm`, must be the model's timesteps if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// DDIM η: 0 deterministic given the initial noise, 1 as noisy as DDPM.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eta: f64,
    /// Side of the sampled label maps; must match the model when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// How the sampled maps reach `pipeline.image_size`: `nearest` (default; decide the
    /// class at the model's size, clean there, repeat each pixel) or `smooth` (bilinear
    /// upscale of the model's class probabilities, argmax at full size, clean there: borders
    /// follow the probabilities instead of the model's pixel grid). `smooth` needs a
    /// `onehot` label model.
    #[serde(default, skip_serializing_if = "LabelUpscale::is_nearest")]
    pub upscale: LabelUpscale,
    /// Label maps sampled per DDPM batch (default `pipeline.batch_size`). A small UNet
    /// keeps a GPU busy only with large batches (128 and more at 64×64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// How label maps are brought to the output size ([`LabelModelSection::upscale`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelUpscale {
    /// Classes decided and cleaned at the model's size, then each pixel repeated.
    #[default]
    Nearest,
    /// Class probabilities upscaled bilinearly, classes decided and cleaned at full size.
    Smooth,
}

impl LabelUpscale {
    fn is_nearest(&self) -> bool {
        *self == LabelUpscale::Nearest
    }
}

impl std::fmt::Display for LabelUpscale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LabelUpscale::Nearest => "nearest",
            LabelUpscale::Smooth => "smooth",
        })
    }
}

impl std::str::FromStr for LabelUpscale {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "nearest" => Ok(LabelUpscale::Nearest),
            "smooth" => Ok(LabelUpscale::Smooth),
            other => Err(format!("unknown upscale {other:?} (expected nearest or smooth)")),
        }
    }
}

/// Float precision of inference ([`PipelineSection::precision`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere.
    #[default]
    F32,
    /// bfloat16 weights and activations (8-bit mantissa, f32's range).
    Bf16,
    /// IEEE half floats (10-bit mantissa, range ±65504).
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The name in specs and on the command line (serde's too).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Precision::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| format!("unknown precision {s:?} (expected f32, bf16 or f16)"))
    }
}

/// DDPM sampling algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    #[default]
    Ddim,
    Ddpm,
}

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SamplerKind::Ddim => "ddim",
            SamplerKind::Ddpm => "ddpm",
        })
    }
}

/// Default DDIM steps. Chosen from `labelgen-eval sampling` (README, "The paper's setting
/// beside ours"): after the cleanup, DDIM-20 maps are within 0.003 of DDIM-50's on every
/// distance to the real maps, at 2.5× fewer network evaluations; DDIM-10 falls behind.
/// (50 before 2026-12-06; runs submitted since carry their steps in `run.json`.)
pub const DEFAULT_DDIM_STEPS: usize = 20;

/// Bounds of the spec's counts and durations: every value is checked against one, and the
/// error says it (a bound also keeps milliseconds and backoff shifts from overflowing).
pub const MAX_ATTEMPTS: u32 = 1000;
/// Most samples in one run. The queue's cost does not grow with the shard count (it keeps
/// nothing per pending shard), so the limit is the coordinator's: finalize holds 8 bytes
/// per shard, and for WebDataset one entry per tar for `manifest.json`.
pub const MAX_SAMPLES: u64 = 1_000_000_000;
/// A day.
pub const MAX_LEASE_SECONDS: u64 = 86_400;
pub const MAX_SAMPLING_STEPS: usize = 100_000;
pub const MAX_OPEN_RADIUS: u32 = 64;

/// DDIM's default steps for a label model of `timesteps` diffusion steps:
/// [`DEFAULT_DDIM_STEPS`], or all of them when it has fewer.
pub fn default_ddim_steps(timesteps: usize) -> usize {
    DEFAULT_DDIM_STEPS.min(timesteps)
}

impl LabelModelSection {
    /// Sampling steps: the given ones, else [`default_ddim_steps`] for DDIM and
    /// `timesteps` for DDPM.
    pub fn steps_for(&self, timesteps: usize) -> usize {
        match self.sampler {
            SamplerKind::Ddim => self.steps.unwrap_or(default_ddim_steps(timesteps)),
            SamplerKind::Ddpm => self.steps.unwrap_or(timesteps),
        }
    }

    /// Checks the sampler settings against a label model with `timesteps` diffusion steps
    /// and returns the sampling steps. The message names the key and what was expected.
    pub fn check_sampler(&self, timesteps: usize) -> std::result::Result<usize, String> {
        let steps = self.steps_for(timesteps);
        match self.sampler {
            SamplerKind::Ddpm if steps != timesteps => {
                Err(format!("pipeline.labels.steps is {steps}, but the ddpm sampler runs every one of the model's {timesteps} timesteps (remove steps or use sampler = \"ddim\")"))
            }
            SamplerKind::Ddim if steps == 0 || steps > timesteps => {
                Err(format!("pipeline.labels.steps {steps}: DDIM steps must be between 1 and the model's {timesteps} timesteps"))
            }
            SamplerKind::Ddim if !(0.0..=1.0).contains(&self.eta) => Err(format!("pipeline.labels.eta {}: must be between 0 and 1", self.eta)),
            _ => Ok(steps),
        }
    }
}

/// `[pipeline.cleanup]`: label cleanup after sampling (see `shared::cleanup`). Both sizes
/// are in output pixels (`pipeline.image_size`), whatever size the label model samples at;
/// the cleanup converts them to the label map's own pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupSection {
    /// Radius of the per-class morphological opening in output pixels (0: none). Default 2.
    #[serde(default = "defaults::open_radius_px")]
    pub open_radius_px: u32,
    /// Components smaller than this many output pixels are merged into their
    /// surroundings. Default 100.
    #[serde(default = "defaults::min_island_px")]
    pub min_island_px: u32,
}

impl Default for CleanupSection {
    fn default() -> Self {
        CleanupSection { open_radius_px: defaults::open_radius_px(), min_island_px: defaults::min_island_px() }
    }
}

/// `[pipeline.images]`: the SPADE image model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageModelSection {
    /// Model artifact location (as `pipeline.labels.model`).
    pub model: String,
    /// The artifact's digest; pinned at submit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Images painted per SPADE batch (default `pipeline.batch_size`); 16–32 at 512×512
    /// on one GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

impl PipelineSection {
    /// Label maps per DDPM batch: `pipeline.labels.batch_size`, else `pipeline.batch_size`.
    pub fn label_batch(&self) -> usize {
        self.labels.as_ref().and_then(|l| l.batch_size).unwrap_or(self.batch_size)
    }

    /// Images per SPADE batch: `pipeline.images.batch_size`, else `pipeline.batch_size`.
    pub fn image_batch(&self) -> usize {
        self.images.as_ref().and_then(|i| i.batch_size).unwrap_or(self.batch_size)
    }

    /// Samples handed to the pipeline at once, for shards of `shard_size`: the larger
    /// model batch when the smaller divides it; else their least common multiple, so
    /// each model sees whole batches (labels 128 and images 24: 384, not 128 = 5 × 24 + 8
    /// with the 8 padded to 24 on every call), when it is at most 4 times the larger and
    /// leaves at least two calls a shard (the models overlap across calls); else the
    /// larger.
    pub fn generate_batch(&self, shard_size: u64) -> usize {
        let (a, b) = (self.label_batch().max(1), self.image_batch().max(1));
        let (mut x, mut y) = (a, b);
        while y != 0 {
            (x, y) = (y, x % y);
        }
        let lcm = a / x * b;
        if lcm <= 4 * a.max(b) && 2 * lcm as u64 <= shard_size {
            lcm
        } else {
            a.max(b)
        }
    }
}

/// Where models run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// CUDA device 0 when an NVIDIA driver is present (and the build has CUDA), else CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA device N.
    Cuda(usize),
    /// Every GPU of the machine, one pipeline each, in one worker process (`worker run` and
    /// the queue worker; `run-shard` and the standalone model commands take one device).
    CudaAll,
}

impl DeviceChoice {
    pub fn is_auto(&self) -> bool {
        *self == DeviceChoice::Auto
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            "cuda:all" => Ok(DeviceChoice::CudaAll),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!("expected auto, cpu, cuda, cuda:N (N a device index) or cuda:all, found {s:?}")),
            },
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::CudaAll => f.write_str("cuda:all"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PipelineKind {
    /// Procedural land-cover tiles (no models): for smoke tests and demos.
    Procedural,
    /// DDPM label maps → cleanup → SPADE images.
    DdpmSpade,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProceduralSection {
    /// Relative pixel shares of the 8 classes, in class-table order (building, parking lot,
    /// road, street trees, paddy, dry field, forest, bare land); the generator's defaults
    /// when absent. Checked when read.
    #[serde(default)]
    pub shares: Option<ClassShares>,
}

mod defaults {
    pub fn max_attempts() -> u32 {
        3
    }
    pub fn lease_seconds() -> u64 {
        60
    }
    pub fn retry_backoff_seconds() -> f64 {
        2.0
    }
    pub fn batch_size() -> usize {
        8
    }
    pub fn overlap() -> bool {
        true
    }
    pub fn is_true(b: &bool) -> bool {
        *b
    }
    pub fn open_radius_px() -> u32 {
        crate::cleanup::DEFAULT_OPEN_RADIUS
    }
    pub fn min_island_px() -> u32 {
        crate::cleanup::DEFAULT_MIN_ISLAND
    }
}

impl RunSpec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<RunSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RunSpec::parse(&text, &path.display().to_string())
    }

    /// Parses and validates spec text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<RunSpec> {
        let spec: RunSpec = toml::from_str(text).map_err(|e| toml_invalid(text, &e, origin))?;
        spec.validate(origin)?;
        for key in spec.unused_model_keys() {
            // A warning, not an error: runs submitted with such a key must stay readable,
            // and removing it from a static run's config would change the run's id.
            tracing::warn!("{origin}: {key}: only the ddpm-spade pipeline runs models; the procedural pipeline ignores it (it changes the run's digest, not a sample)");
        }
        Ok(spec)
    }

    /// Model settings a `procedural` spec sets, which it ignores: `pipeline.device`,
    /// `pipeline.precision`, `pipeline.overlap` away from their defaults.
    pub fn unused_model_keys(&self) -> Vec<&'static str> {
        if self.pipeline.kind != PipelineKind::Procedural {
            return Vec::new();
        }
        [("pipeline.device", !self.pipeline.device.is_auto()), ("pipeline.precision", !self.pipeline.precision.is_f32()), ("pipeline.overlap", !self.pipeline.overlap)]
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect()
    }

    /// Parses the canonical JSON form stored in the queue.
    pub fn from_json(json: &str, origin: &str) -> Result<RunSpec> {
        let spec: RunSpec = serde_json::from_str(json).map_err(|e| Error::format(origin, format!("run spec JSON: {e}")))?;
        spec.validate(origin)?;
        Ok(spec)
    }

    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |key: &str, message: String| Err(Error::Invalid { origin: origin.to_string(), key: key.to_string(), message });
        if self.run.count == 0 {
            return bad("run.count", "expected a positive number of samples, found 0".into());
        }
        if self.run.count > MAX_SAMPLES {
            return bad("run.count", format!("expected at most {MAX_SAMPLES} samples, found {}", self.run.count));
        }
        if self.run.shard_size == 0 || self.run.shard_size > 100_000 {
            return bad("run.shard_size", format!("expected 1 to 100000 samples per shard, found {}", self.run.shard_size));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.run.max_attempts) {
            return bad("run.max_attempts", format!("expected 1 to {MAX_ATTEMPTS} attempts, found {}", self.run.max_attempts));
        }
        if !(1..=MAX_LEASE_SECONDS).contains(&self.run.lease_seconds) {
            return bad("run.lease_seconds", format!("expected 1 to {MAX_LEASE_SECONDS} seconds (a day), found {}", self.run.lease_seconds));
        }
        if !(self.run.retry_backoff_seconds >= 0.0 && self.run.retry_backoff_seconds <= 3600.0) {
            return bad("run.retry_backoff_seconds", format!("expected 0 to 3600 seconds, found {}", self.run.retry_backoff_seconds));
        }
        if let Err(msg) = crate::storage::StoreUrl::parse(&self.output.url) {
            return bad("output.url", msg);
        }
        // Finalize publishes each tar with one server-side copy, which S3 caps at 5 GiB.
        // Bound a shard's tar per sample by its raw pixels (3 bytes image + 1 label per
        // pixel), plus 1/64 of that for what incompressible PNGs add (row filters, zlib
        // blocks, chunks), plus 4 KiB for the tar's headers and padding and KEY.json.
        let pixels = u64::from(self.pipeline.image_size).pow(2);
        let per_sample = pixels * 4 + pixels * 4 / 64 + 4096;
        let tar_bound = self.run.shard_size.saturating_mul(per_sample);
        if self.output.format == OutputFormat::Webdataset && tar_bound > MAX_TAR_BYTES {
            let most = MAX_TAR_BYTES / per_sample;
            return bad(
                "run.shard_size",
                format!(
                    "a WebDataset shard of {} samples at {}² could reach {:.1} GiB, over the 5 GiB an S3 server-side copy (how finalize publishes dataset/SHARD.tar) allows; expected at most {most} samples per shard at this size",
                    self.run.shard_size,
                    self.pipeline.image_size,
                    tar_bound as f64 / f64::from(1u32 << 30)
                ),
            );
        }
        match (self.output.image_format, self.output.image_quality) {
            (ImageFormat::Jpeg, Some(q)) if !(1..=100).contains(&q) => return bad("output.image_quality", format!("expected a JPEG quality of 1 to 100, found {q}")),
            (ImageFormat::Png | ImageFormat::Webp, Some(q)) => {
                return bad(
                    "output.image_quality",
                    format!("found {q}, but image_format = \"{}\" is lossless; expected image_quality only with image_format = \"jpeg\"", self.output.image_format.extension()),
                )
            }
            _ => {}
        }
        if !(8..=8192).contains(&self.pipeline.image_size) {
            return bad("pipeline.image_size", format!("expected 8 to 8192 pixels, found {}", self.pipeline.image_size));
        }
        if self.pipeline.batch_size == 0 || self.pipeline.batch_size > 4096 {
            return bad("pipeline.batch_size", format!("expected 1 to 4096, found {}", self.pipeline.batch_size));
        }
        self.classes.validate(origin)?;
        match self.pipeline.kind {
            PipelineKind::Procedural => {
                if self.classes != ClassTable::ai_hub() {
                    return bad("classes", "the procedural pipeline draws the AI Hub land-cover classes; remove the [classes] table".into());
                }
                for (key, present) in [
                    ("pipeline.labels", self.pipeline.labels.is_some()),
                    ("pipeline.cleanup", self.pipeline.cleanup.is_some()),
                    ("pipeline.images", self.pipeline.images.is_some()),
                ] {
                    if present {
                        return bad(key, "only the ddpm-spade pipeline uses models; remove this table or set pipeline.kind = \"ddpm-spade\"".into());
                    }
                }
            }
            PipelineKind::DdpmSpade => {
                if self.pipeline.procedural.shares.is_some() {
                    return bad("pipeline.procedural.shares", "only the procedural pipeline draws class shares; remove this table or set pipeline.kind = \"procedural\"".into());
                }
                let Some(labels) = &self.pipeline.labels else {
                    return bad("pipeline.labels", "ddpm-spade needs a [pipeline.labels] table with model = \"PATH or s3://…\" (the DDPM label model)".into());
                };
                let Some(images) = &self.pipeline.images else {
                    return bad("pipeline.images", "ddpm-spade needs a [pipeline.images] table with model = \"PATH or s3://…\" (the SPADE image model)".into());
                };
                for (key, uri, pin) in [("pipeline.labels", &labels.model, &labels.sha256), ("pipeline.images", &images.model, &images.sha256)] {
                    if let Err(msg) = crate::storage::StoreUrl::parse(uri) {
                        return bad(&format!("{key}.model"), msg);
                    }
                    if let Some(pin) = pin {
                        if !crate::artifact::is_digest(pin) {
                            return bad(&format!("{key}.sha256"), format!("expected 64 lowercase hex digits, found {pin:?}"));
                        }
                    }
                }
                for (key, size) in [("pipeline.labels.batch_size", labels.batch_size), ("pipeline.images.batch_size", images.batch_size)] {
                    if let Some(b) = size.filter(|b| !(1..=4096).contains(b)) {
                        return bad(key, format!("expected 1 to 4096, found {b}"));
                    }
                }
                if let Some(steps) = labels.steps {
                    if !(1..=MAX_SAMPLING_STEPS).contains(&steps) {
                        return bad("pipeline.labels.steps", format!("expected 1 to {MAX_SAMPLING_STEPS} sampling steps, found {steps}"));
                    }
                }
                if let Some(c) = &self.pipeline.cleanup {
                    if c.open_radius_px > MAX_OPEN_RADIUS {
                        return bad("pipeline.cleanup.open_radius_px", format!("expected 0 to {MAX_OPEN_RADIUS} output pixels, found {}", c.open_radius_px));
                    }
                    let pixels = (self.pipeline.image_size as u64).pow(2);
                    if c.min_island_px as u64 > pixels {
                        return bad("pipeline.cleanup.min_island_px", format!("expected at most the pixels of one image ({pixels}), found {}", c.min_island_px));
                    }
                }
                if !(0.0..=1.0).contains(&labels.eta) {
                    return bad("pipeline.labels.eta", format!("expected 0 to 1, found {}", labels.eta));
                }
                if labels.sampler == SamplerKind::Ddpm && labels.eta != 0.0 {
                    return bad("pipeline.labels.eta", "eta is a DDIM setting; remove it or use sampler = \"ddim\"".into());
                }
                if let Some(size) = labels.size {
                    if !(8..=self.pipeline.image_size).contains(&size) || !self.pipeline.image_size.is_multiple_of(size) {
                        return bad(
                            "pipeline.labels.size",
                            format!("expected a divisor of pipeline.image_size {} of at least 8 (maps are upscaled by an integer factor), found {size}", self.pipeline.image_size),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Number of shards (jobs).
    pub fn shards(&self) -> u64 {
        self.run.count.div_ceil(self.run.shard_size)
    }

    /// Sample indices of a shard.
    pub fn shard_range(&self, shard: u64) -> std::ops::Range<u64> {
        let start = shard * self.run.shard_size;
        start..(start + self.run.shard_size).min(self.run.count)
    }

    /// The canonical JSON form (what the queue stores and the digest covers).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serialises")
    }

    /// sha256 of the canonical JSON, hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

/// The dotted key a TOML error is about: the field toml names (unknown or missing), within
/// the table whose header comes before the error's line; else the key assigned on that
/// line (a value of the wrong type or out of a list); else `(syntax)`.
/// A TOML error of `text` (from `origin`) as [`Error::Invalid`], naming the key and the line.
pub(crate) fn toml_invalid(text: &str, e: &toml::de::Error, origin: &str) -> Error {
    Error::Invalid { origin: origin.to_string(), key: toml_error_key(text, e), message: e.message().to_string() + &toml_error_location(text, e) }
}

fn toml_error_key(text: &str, e: &toml::de::Error) -> String {
    // A missing top-level table has an empty span at the start; one missing from a table
    // points at the table's header.
    let at = e.span().filter(|s| !s.is_empty()).map(|s| s.start.min(text.len()));
    let table = at.map(|at| table_before(text, at)).unwrap_or_default();
    let within = |key: &str| if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
    let msg = e.message();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("?");
        // A misspelled table header (`[pipelin]`, `[pipeline.labelz]`): the span is on the
        // header, which names the key in full.
        if table == field || table.ends_with(&format!(".{field}")) {
            return table;
        }
        return within(field);
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        return within(rest.split('`').next().unwrap_or("?"));
    }
    let Some(at) = at else { return "(syntax)".to_string() };
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() && !key.trim_start().starts_with('[') => within(key.trim().trim_matches('"')),
        _ => "(syntax)".to_string(),
    }
}

/// The table (`a.b` of a `[a.b]` or `[[a.b]]` header) in force at byte `at` of `text`:
/// the last header on a line that starts before it; empty at the top level.
fn table_before(text: &str, at: usize) -> String {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    // The error's own line counts when it is a header (a missing field points at it).
    let upto = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    text[..upto].lines().rev().map(str::trim).find(|l| l.starts_with('[')).map(|h| h.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string()).unwrap_or_default()
}

fn toml_error_location(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[run]
count = 10
shard_size = 4
seed = 7
[output]
url = "out/x"
[pipeline]
kind = "procedural"
image_size = 64
"#;

    #[test]
    fn parses_defaults_and_counts_shards() {
        let s = RunSpec::parse(GOOD, "good.toml").unwrap();
        assert_eq!(s.shards(), 3);
        assert_eq!(s.shard_range(2), 8..10);
        assert_eq!(s.output.format, OutputFormat::Png);
        assert_eq!(s.classes, ClassTable::ai_hub());
        assert_eq!(s.digest().len(), 64);
        let back = RunSpec::from_json(&s.canonical_json(), "json").unwrap();
        assert_eq!(back, s);
        assert_eq!(back.digest(), s.digest());
    }

    /// Model settings on a procedural run change its digest and nothing else: named (parse
    /// warns), not refused, so runs submitted with them stay readable.
    #[test]
    fn a_procedural_run_names_the_model_settings_it_ignores() {
        for (line, key) in [("device = \"cuda\"", "pipeline.device"), ("precision = \"bf16\"", "pipeline.precision"), ("overlap = false", "pipeline.overlap")] {
            let s = RunSpec::parse(&GOOD.replace("image_size = 64", &format!("image_size = 64\n{line}")), "p.toml").unwrap();
            assert_eq!(s.unused_model_keys(), [key]);
            assert_eq!(RunSpec::from_json(&s.canonical_json(), "stored").unwrap(), s, "a stored spec stays readable");
        }
        assert!(RunSpec::parse(&GOOD.replace("image_size = 64", "image_size = 64\ndevice = \"auto\"\noverlap = true"), "p.toml").unwrap().unused_model_keys().is_empty());
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let e = RunSpec::parse(&GOOD.replace("count = 10", "count = 0"), "a.toml").unwrap_err().to_string();
        assert!(e.starts_with("a.toml: run.count: expected a positive"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("count = 10", "cout = 10"), "b.toml").unwrap_err().to_string();
        assert!(e.contains("b.toml") && e.contains("cout"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("\"out/x\"", "\"ftp://x\""), "c.toml").unwrap_err().to_string();
        assert!(e.contains("c.toml: output.url") && e.contains("ftp"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("image_size = 64", "image_size = \"big\""), "d.toml").unwrap_err().to_string();
        assert!(e.starts_with("d.toml: pipeline.image_size: ") && e.contains("line 10"), "{e}");
        // Every kind of TOML error names the dotted key (or says it is the syntax).
        for (from, to, key) in [
            ("count = 10", "cout = 10", "run.cout"),
            ("shard_size = 4\n", "", "run.shard_size"),
            ("[output]\nurl = \"out/x\"\n", "", "output"),
            ("kind = \"procedural\"", "kind = \"gan\"", "pipeline.kind"),
            ("seed = 7", "seed = -1", "run.seed"),
            ("url = \"out/x\"", "url = [1]", "output.url"),
            ("seed = 7", "seed = = 7", "run.seed"),
            ("[pipeline]", "[pipeline", "(syntax)"),
            ("[pipeline]", "[pipelin]", "pipelin"),
            ("image_size = 64", "image_size = 64\n[pipeline.labelz]\nmodel = \"x\"", "pipeline.labelz"),
            ("image_size = 64", "image_size = 64\nlabels.model = 1", "pipeline.labels.model"),
            ("\n[run]\ncount = 10\nshard_size = 4\nseed = 7\n", "", "run"),
        ] {
            let e = RunSpec::parse(&GOOD.replace(from, to), "e.toml").unwrap_err().to_string();
            assert!(e.starts_with(&format!("e.toml: {key}: ")), "{from:?} → {to:?}: {e}");
        }
        // A top-level table missing, the file starting with another's header.
        let e = RunSpec::parse(&GOOD.trim_start().replace("[output]\nurl = \"out/x\"\n", ""), "e.toml").unwrap_err().to_string();
        assert!(e.starts_with("e.toml: output: "), "{e}");
    }

    #[test]
    fn a_large_run_seed_is_a_string_in_json_and_a_small_one_a_number() {
        let small = RunSpec::parse(GOOD, "g.toml").unwrap();
        assert!(small.canonical_json().contains(r#""seed":7"#), "{}", small.canonical_json());
        let big = RunSpec::parse(&GOOD.replace("seed = 7", "seed = 1152921504606846977"), "b.toml").unwrap();
        assert_eq!(big.run.seed, (1 << 60) + 1);
        assert!(big.canonical_json().contains(r#""seed":"1152921504606846977""#), "{}", big.canonical_json());
        assert_eq!(RunSpec::from_json(&big.canonical_json(), "run.json").unwrap(), big);
        let e = RunSpec::parse(&GOOD.replace("seed = 7", "seed = -1"), "n.toml").unwrap_err().to_string();
        assert!(e.contains("n.toml") && e.contains("unsigned"), "{e}");
    }

    #[test]
    fn webdataset_shards_stay_under_the_copy_limit() {
        let wds = |shard: u64, size: u32| {
            GOOD.replace("shard_size = 4", &format!("shard_size = {shard}"))
                .replace("url = \"out/x\"", "url = \"out/x\"\nformat = \"webdataset\"")
                .replace("image_size = 64", &format!("image_size = {size}"))
        };
        RunSpec::parse(&wds(256, 512), "ok.toml").unwrap();
        // 4 B of pixels a pixel at 512², 1/64 of that for PNG overhead, 4 KiB of tar and
        // JSON a sample: 5 GiB / 1,069,056 B.
        RunSpec::parse(&wds(5021, 512), "edge.toml").unwrap();
        let e = RunSpec::parse(&wds(5022, 512), "big.toml").unwrap_err().to_string();
        assert!(e.contains("big.toml: run.shard_size") && e.contains("5 GiB") && e.contains("at most 5021 samples"), "{e}");
        // PNG runs have no tar to copy.
        RunSpec::parse(&wds(50000, 512).replace("format = \"webdataset\"", "format = \"png\""), "png.toml").unwrap();
    }

    #[test]
    fn image_format_and_quality() {
        let s = RunSpec::parse(&GOOD.replace("url = \"out/x\"", "url = \"out/x\"\nimage_format = \"jpeg\""), "j.toml").unwrap();
        assert_eq!(s.output.image_encoding(), crate::ImageEncoding::Jpeg { quality: 90 });
        assert_ne!(s.digest(), RunSpec::parse(GOOD, "g.toml").unwrap().digest(), "the format is part of the spec");
        let s = RunSpec::parse(&GOOD.replace("url = \"out/x\"", "url = \"out/x\"\nimage_format = \"jpeg\"\nimage_quality = 75"), "j.toml").unwrap();
        assert_eq!(s.output.image_encoding(), crate::ImageEncoding::Jpeg { quality: 75 });
        let s = RunSpec::parse(&GOOD.replace("url = \"out/x\"", "url = \"out/x\"\nimage_format = \"webp\""), "w.toml").unwrap();
        assert_eq!((s.output.image_encoding(), s.output.image_format.extension()), (crate::ImageEncoding::WebpLossless, "webp"));
        // A PNG spec's canonical JSON (and so its digest) is what it was before the keys.
        assert!(!RunSpec::parse(GOOD, "g.toml").unwrap().canonical_json().contains("image_format"));
        let e = RunSpec::parse(&GOOD.replace("url = \"out/x\"", "url = \"out/x\"\nimage_format = \"jpeg\"\nimage_quality = 0"), "q.toml").unwrap_err().to_string();
        assert!(e.contains("q.toml: output.image_quality: expected a JPEG quality of 1 to 100, found 0"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("url = \"out/x\"", "url = \"out/x\"\nimage_quality = 80"), "q.toml").unwrap_err().to_string();
        assert!(e.contains("output.image_quality") && e.contains("lossless") && e.contains("jpeg"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("url = \"out/x\"", "url = \"out/x\"\nimage_format = \"gif\""), "f.toml").unwrap_err().to_string();
        assert!(e.contains("f.toml") && e.contains("gif"), "{e}");
    }

    /// Every count and duration has a bound, said in the error: the lease that used to
    /// overflow into 384 ms is refused.
    #[test]
    fn a_billion_samples_is_the_limit() {
        let spec = |count: u64| {
            RunSpec::parse(&format!("[run]\ncount = {count}\nshard_size = 256\n\n[output]\nurl = \"out\"\n\n[pipeline]\nkind = \"procedural\"\nimage_size = 32\n"), "t.toml")
        };
        assert_eq!(spec(MAX_SAMPLES).unwrap().shards(), 3_906_250);
        let e = spec(MAX_SAMPLES + 1).unwrap_err().to_string();
        assert!(e.contains("run.count") && e.contains("at most 1000000000"), "{e}");
        // Keys are zero-padded to 8 digits and take a ninth past 99,999,999.
        assert_eq!((crate::manifest::layout::key(7), crate::manifest::layout::key(123_456_789)), ("00000007".to_string(), "123456789".to_string()));
    }

    #[test]
    fn durations_and_counts_are_bounded() {
        let err = |text: String| RunSpec::parse(&text, "b.toml").unwrap_err().to_string();
        let e = err(GOOD.replace("seed = 7", "seed = 7\nlease_seconds = 18446744073709552"));
        assert!(e.contains("b.toml: run.lease_seconds: expected 1 to 86400 seconds"), "{e}");
        let e = err(GOOD.replace("seed = 7", "seed = 7\nmax_attempts = 5000"));
        assert!(e.contains("run.max_attempts: expected 1 to 1000"), "{e}");
        let e = err(MODELS.replace("model = \"models/demo/ddpm\"", "model = \"models/demo/ddpm\"\nsteps = 1000000000"));
        assert!(e.contains("pipeline.labels.steps: expected 1 to 100000"), "{e}");
        let e = err(MODELS.replace("image_size = 64", "image_size = 64\n[pipeline.cleanup]\nopen_radius_px = 100000"));
        assert!(e.contains("pipeline.cleanup.open_radius_px"), "{e}");
        // The keys before they said their unit are refused, naming the new ones.
        let e = err(MODELS.replace("image_size = 64", "image_size = 64\n[pipeline.cleanup]\nopen_radius = 1"));
        assert!(e.contains("open_radius") && e.contains("open_radius_px"), "{e}");
        let ok = RunSpec::parse(&GOOD.replace("seed = 7", "seed = 7\nlease_seconds = 86400"), "b.toml").unwrap();
        assert_eq!(crate::lifecycle::ops::run_record(&ok, "r").lease_ms, 86_400_000);
    }

    const MODELS: &str = r#"
[run]
count = 10
shard_size = 4
[output]
url = "out/x"
[pipeline]
kind = "ddpm-spade"
image_size = 64
[pipeline.labels]
model = "models/demo/ddpm"
[pipeline.images]
model = "s3://bucket/models/spade"
"#;

    #[test]
    fn ddpm_spade_defaults_and_a_procedural_digest_that_did_not_change() {
        let s = RunSpec::parse(MODELS, "m.toml").unwrap();
        let l = s.pipeline.labels.as_ref().unwrap();
        assert_eq!((l.sampler, l.steps_for(1000), l.eta, l.sha256.as_deref()), (SamplerKind::Ddim, 20, 0.0, None));
        // A model with fewer timesteps than the default DDIM steps samples with all of them.
        assert_eq!((l.steps_for(10), l.check_sampler(10)), (10, Ok(10)));
        assert_eq!(s.pipeline.device, DeviceChoice::Auto);
        assert_eq!(s.pipeline.cleanup.unwrap_or_default(), CleanupSection { open_radius_px: 2, min_island_px: 100 });
        let back = RunSpec::from_json(&s.canonical_json(), "json").unwrap();
        assert_eq!(back, s);
        // Keys at their defaults stay out of the canonical form: procedural specs written
        // before the model keys existed keep their digest (and their run ids).
        let p = RunSpec::parse(GOOD, "good.toml").unwrap();
        assert!(!p.canonical_json().contains("device") && !p.canonical_json().contains("labels"), "{}", p.canonical_json());
        let ddpm = MODELS.replace("model = \"models/demo/ddpm\"", "model = \"models/demo/ddpm\"\nsampler = \"ddpm\"");
        assert_eq!(RunSpec::parse(&ddpm, "m.toml").unwrap().pipeline.labels.unwrap().steps_for(1000), 1000);
        assert_eq!((s.pipeline.precision, s.pipeline.label_batch(), s.pipeline.image_batch(), s.pipeline.generate_batch(s.run.shard_size)), (Precision::F32, 8, 8, 8));
        assert!(!s.canonical_json().contains("precision") && !s.canonical_json().contains("batch_size\":null"), "{}", s.canonical_json());
        assert!(s.pipeline.overlap && !s.canonical_json().contains("overlap"), "{}", s.canonical_json());
        let apart = RunSpec::parse(&MODELS.replace("image_size = 64", "image_size = 64\noverlap = false"), "o.toml").unwrap();
        assert!(!apart.pipeline.overlap);
        assert_eq!(RunSpec::from_json(&apart.canonical_json(), "json").unwrap(), apart);
    }

    #[test]
    fn per_model_batch_sizes_and_precision() {
        let text = MODELS
            .replace("image_size = 64", "image_size = 64\nprecision = \"bf16\"\nbatch_size = 4")
            .replace("model = \"models/demo/ddpm\"", "model = \"models/demo/ddpm\"\nbatch_size = 128")
            .replace("model = \"s3://bucket/models/spade\"", "model = \"s3://bucket/models/spade\"\nbatch_size = 16");
        let s = RunSpec::parse(&text, "b.toml").unwrap();
        assert_eq!((s.pipeline.precision, s.pipeline.label_batch(), s.pipeline.image_batch(), s.pipeline.generate_batch(s.run.shard_size)), (Precision::Bf16, 128, 16, 128));
        assert_eq!(RunSpec::from_json(&s.canonical_json(), "json").unwrap(), s);
        let only_images = MODELS.replace("model = \"s3://bucket/models/spade\"", "model = \"s3://bucket/models/spade\"\nbatch_size = 32");
        let s = RunSpec::parse(&only_images, "i.toml").unwrap();
        assert_eq!((s.pipeline.label_batch(), s.pipeline.image_batch(), s.pipeline.generate_batch(s.run.shard_size)), (8, 32, 32));
        // Batches that do not divide: a common multiple, within 4 times the larger and
        // half a shard.
        let with = |labels: usize, images: usize| PipelineSection {
            labels: Some(LabelModelSection { batch_size: Some(labels), ..s.pipeline.labels.clone().unwrap() }),
            images: Some(ImageModelSection { batch_size: Some(images), ..s.pipeline.images.clone().unwrap() }),
            ..s.pipeline.clone()
        };
        assert_eq!([(128, 24), (24, 128), (6, 16), (127, 128), (16, 16)].map(|(l, i)| with(l, i).generate_batch(1024)), [384, 384, 48, 128, 16]);
        assert_eq!([(128, 24), (6, 16)].map(|(l, i)| with(l, i).generate_batch(256)), [128, 48], "384 would make a 256-sample shard one call");
        let e = RunSpec::parse(&only_images.replace("batch_size = 32", "batch_size = 0"), "z.toml").unwrap_err().to_string();
        assert!(e.contains("z.toml: pipeline.images.batch_size: expected 1 to 4096, found 0"), "{e}");
        let e = RunSpec::parse(&MODELS.replace("image_size = 64", "image_size = 64\nprecision = \"fp8\""), "p.toml").unwrap_err().to_string();
        assert!(e.contains("p.toml") && e.contains("fp8"), "{e}");
    }

    #[test]
    fn ddpm_spade_errors_name_the_key() {
        let err = |text: &str| RunSpec::parse(text, "m.toml").unwrap_err().to_string();
        let e = err(&MODELS.replace("[pipeline.images]\nmodel = \"s3://bucket/models/spade\"\n", ""));
        assert!(e.contains("m.toml: pipeline.images:") && e.contains("SPADE"), "{e}");
        let e = err(&MODELS.replace("[pipeline.labels]\nmodel = \"models/demo/ddpm\"\n", ""));
        assert!(e.contains("pipeline.labels:") && e.contains("DDPM"), "{e}");
        let e = err(&MODELS.replace("model = \"models/demo/ddpm\"", "model = \"models/demo/ddpm\"\nsha256 = \"ABC\""));
        assert!(e.contains("pipeline.labels.sha256") && e.contains("64 lowercase hex"), "{e}");
        let e = err(&MODELS.replace("model = \"models/demo/ddpm\"", "model = \"models/demo/ddpm\"\nsteps = 0"));
        assert!(e.contains("pipeline.labels.steps"), "{e}");
        let e = err(&MODELS.replace("model = \"models/demo/ddpm\"", "model = \"models/demo/ddpm\"\nsampler = \"ddpm\"\neta = 0.5"));
        assert!(e.contains("pipeline.labels.eta") && e.contains("DDIM"), "{e}");
        let e = err(&MODELS.replace("model = \"models/demo/ddpm\"", "model = \"models/demo/ddpm\"\nsize = 24"));
        assert!(e.contains("pipeline.labels.size") && e.contains("divisor"), "{e}");
        let e = err(&MODELS.replace("image_size = 64", "image_size = 64\ndevice = \"gpu\""));
        assert!(e.contains("m.toml") && e.contains("cuda:N"), "{e}");
        let e = err(&MODELS.replace("model = \"s3://bucket/models/spade\"", "model = \"ftp://x\""));
        assert!(e.contains("pipeline.images.model"), "{e}");
        let e = err(&MODELS.replace("ddpm-spade", "procedural"));
        assert!(e.contains("pipeline.labels") && e.contains("only the ddpm-spade pipeline"), "{e}");
        let e = err(&MODELS.replace("image_size = 64", "image_size = 64\n[pipeline.procedural]\nshares = [1, 1, 1, 1, 1, 1, 1, 1]"));
        assert!(e.contains("m.toml: pipeline.procedural.shares") && e.contains("only the procedural pipeline"), "{e}");
        let e = err(&MODELS.replace("image_size = 64", "image_size = 64\ndevice = \"gpu\""));
        assert!(e.contains("m.toml: pipeline.device: "), "{e}");
        // The class table refuses keys it does not know, as every other table does.
        let e = err(&format!("{MODELS}\n[classes]\nignore_code = 100\nignor = 1\n"));
        assert!(e.contains("m.toml: classes.ignor: unknown field"), "{e}");
    }

    #[test]
    fn device_choices_parse_and_print() {
        for (text, d) in
            [("auto", DeviceChoice::Auto), ("cpu", DeviceChoice::Cpu), ("cuda", DeviceChoice::Cuda(0)), ("cuda:3", DeviceChoice::Cuda(3)), ("cuda:all", DeviceChoice::CudaAll)]
        {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), d);
            assert_eq!(d.to_string().parse::<DeviceChoice>().unwrap(), d);
        }
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }
}
