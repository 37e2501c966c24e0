//! The pipelines this worker can run, chosen by the run spec's `pipeline.kind`:
//! `procedural` (from `shared`) and `ddpm-spade` (DDPM label maps → cleanup → SPADE
//! images), with the per-process model cache.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use rayon::prelude::*;
use serde_json::json;
use shared::artifact::{self, Artifact};
use shared::cleanup::{cleanup, CleanupOptions, CleanupReport};
use shared::job::{Pipeline, PipelineFactory, Sample, StandardFactory};
use shared::spec::{DeviceChoice, PipelineKind, RunSpec, SamplerKind};
use shared::{mix64, sample_seed, LabelMap};

use crate::backend::OnBackend;
use crate::ddpm::{DdpmModel, Encoding, ModelMeta, SamplerConfig};
use crate::device::Resolved;
use crate::spade::{SpadeMeta, SpadeModel};

/// Seeds SPADE's noise from a sample's seed on a stream apart from the DDPM's.
const IMAGE_NOISE_STREAM: u64 = 0x5350_4144_455f_4e5a;

/// Builds the pipeline of a run. Models are fetched, verified and loaded once per process
/// and shared by every run that names the same artifacts on the same device.
pub struct Factory {
    /// The worker's `--device`, overriding `pipeline.device` when set.
    device: Option<DeviceChoice>,
    cache_dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl Default for Factory {
    fn default() -> Self {
        Factory::new(None)
    }
}

impl Factory {
    /// `device` overrides every run spec's `pipeline.device` when given.
    pub fn new(device: Option<DeviceChoice>) -> Self {
        Factory { device, cache_dir: artifact::default_cache_dir(), loaded: Mutex::new(HashMap::new()) }
    }

    fn build_ddpm_spade(&self, spec: &RunSpec) -> anyhow::Result<Arc<dyn Pipeline>> {
        let checked = crate::artifact::block_on(fetch_models(spec, &self.cache_dir))?;
        let choice = self.device.unwrap_or(spec.pipeline.device);
        crate::backend::dispatch(choice, BuildOn { factory: self, spec, checked })
    }
}

/// [`Factory::build_ddpm_spade`] on the backend `--device` resolved to.
struct BuildOn<'a> {
    factory: &'a Factory,
    spec: &'a RunSpec,
    checked: CheckedModels,
}

impl OnBackend for BuildOn<'_> {
    type Output = Arc<dyn Pipeline>;
    fn run<B: Backend>(self, dev: B::Device, resolved: Resolved) -> anyhow::Result<Arc<dyn Pipeline>> {
        self.factory.build_on::<B>(self.spec, self.checked, dev, resolved)
    }
}

impl Factory {
    fn build_on<B: Backend>(&self, spec: &RunSpec, checked: CheckedModels, dev: B::Device, resolved: Resolved) -> anyhow::Result<Arc<dyn Pipeline>> {
        let key = format!("{}/{}/{resolved}", checked.labels.digest, checked.images.digest);
        // Held while loading, so concurrent job slots load a model once, not once each.
        let mut loaded_models = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let existing = loaded_models.get(&key).cloned();
        let models: Arc<Mutex<Models<B>>> = match existing.and_then(|a| a.downcast::<Mutex<Models<B>>>().ok()) {
            Some(m) => m,
            None => {
                let start = Instant::now();
                let (l, i) = (&checked.labels, &checked.images);
                // The CUDA backend panics (rather than erring) when it cannot start.
                let loaded = crate::backend::guard(resolved, || load_models::<B>(&checked, &dev)).context("loading the models")?;
                tracing::info!(
                    device = %resolved,
                    label_model = %l.uri, label_sha256 = %l.digest,
                    image_model = %i.uri, image_sha256 = %i.digest,
                    seconds = start.elapsed().as_secs_f64(),
                    "models loaded"
                );
                let m = Arc::new(Mutex::new(loaded));
                loaded_models.insert(key, m.clone());
                m
            }
        };
        drop(loaded_models);
        Ok(Arc::new(DdpmSpadePipeline::new(spec, &checked, models, resolved)?))
    }
}

impl PipelineFactory for Factory {
    fn build(&self, spec: &RunSpec) -> shared::Result<Arc<dyn Pipeline>> {
        match spec.pipeline.kind {
            PipelineKind::Procedural => StandardFactory.build(spec),
            PipelineKind::DdpmSpade => self.build_ddpm_spade(spec).map_err(|e| shared::Error::Job(format!("ddpm-spade pipeline: {e:#}"))),
        }
    }
}

/// Both artifacts of a `ddpm-spade` spec, fetched, verified and checked against it.
#[derive(Debug, Clone)]
pub struct CheckedModels {
    pub labels: Artifact,
    pub label_meta: ModelMeta,
    pub images: Artifact,
    pub image_meta: SpadeMeta,
}

/// Fetches both models of a `ddpm-spade` spec into memory (through the local cache for
/// `s3://`), verifies their pinned digests, checks them against the spec
/// ([`shared::artifact::check_spec`]) and parses their full `model.json`.
pub async fn fetch_models(spec: &RunSpec, cache_dir: &Path) -> anyhow::Result<CheckedModels> {
    let (Some(ls), Some(is)) = (&spec.pipeline.labels, &spec.pipeline.images) else {
        bail!("pipeline.labels and pipeline.images are required for ddpm-spade");
    };
    let labels = artifact::fetch(&ls.model, ls.sha256.as_deref(), cache_dir).await.with_context(|| format!("pipeline.labels.model = {:?}", ls.model))?;
    let images = artifact::fetch(&is.model, is.sha256.as_deref(), cache_dir).await.with_context(|| format!("pipeline.images.model = {:?}", is.model))?;
    artifact::check_spec(spec, (&labels.uri, &labels.info), (&images.uri, &images.info))?;
    let label_meta = ModelMeta::from_json(&labels.model_json, &format!("{}/model.json", labels.uri)).context("pipeline.labels.model")?;
    let image_meta = SpadeMeta::from_json(&images.model_json, &images.uri).context("pipeline.images.model")?;
    Ok(CheckedModels { labels, label_meta, images, image_meta })
}

fn sampler_config(ls: &shared::spec::LabelModelSection, timesteps: usize) -> anyhow::Result<SamplerConfig> {
    let steps = ls.check_sampler(timesteps).map_err(|e| anyhow::anyhow!(e))?;
    Ok(match ls.sampler {
        SamplerKind::Ddim => SamplerConfig::ddim(steps, ls.eta),
        SamplerKind::Ddpm => SamplerConfig::ddpm(),
    })
}

struct Models<B: Backend> {
    ddpm: DdpmModel<B>,
    spade: SpadeModel<B>,
}

fn load_models<B: Backend>(checked: &CheckedModels, dev: &B::Device) -> anyhow::Result<Models<B>> {
    let (l, i) = (&checked.labels, &checked.images);
    Ok(Models {
        ddpm: DdpmModel::from_parts(checked.label_meta.clone(), l.weights.clone(), &l.uri, dev)?,
        spade: SpadeModel::from_parts(checked.image_meta.clone(), i.weights.clone(), &i.uri, dev)?,
    })
}

/// Seconds spent per stage on one batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageSeconds {
    pub sample: Duration,
    pub cleanup: Duration,
    pub synthesize: Duration,
}

/// DDPM label maps → cleanup (and upscale) → SPADE images.
pub struct DdpmSpadePipeline<B: Backend> {
    models: Arc<Mutex<Models<B>>>,
    run_seed: u64,
    sampler: SamplerConfig,
    cleanup: CleanupOptions,
    classes: usize,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl<B: Backend> DdpmSpadePipeline<B> {
    fn new(spec: &RunSpec, checked: &CheckedModels, models: Arc<Mutex<Models<B>>>, resolved: Resolved) -> anyhow::Result<Self> {
        Self::with_models(spec, &checked.label_meta, &checked.labels.digest, &checked.images.digest, models, resolved)
    }

    fn with_models(spec: &RunSpec, label_meta: &ModelMeta, label_digest: &str, image_digest: &str, models: Arc<Mutex<Models<B>>>, resolved: Resolved) -> anyhow::Result<Self> {
        let ls = spec.pipeline.labels.as_ref().context("pipeline.labels")?;
        let cs = spec.pipeline.cleanup.unwrap_or_default();
        let sampler = sampler_config(ls, label_meta.timesteps)?;
        let steps = ls.steps_for(label_meta.timesteps);
        let mut extra = serde_json::Map::new();
        extra.insert("sampler".into(), json!(ls.sampler.to_string()));
        extra.insert("steps".into(), json!(steps));
        if ls.sampler == SamplerKind::Ddim {
            extra.insert("eta".into(), json!(ls.eta));
        }
        extra.insert("label_size".into(), json!(label_meta.size));
        extra.insert("label_model".into(), json!(label_digest));
        extra.insert("image_model".into(), json!(image_digest));
        tracing::debug!(device = %resolved, "ddpm-spade pipeline ready");
        Ok(DdpmSpadePipeline {
            models,
            run_seed: spec.run.seed,
            sampler,
            cleanup: CleanupOptions {
                open_radius: cs.open_radius,
                min_island: cs.min_island,
                // One-hot maps have no ramp edges by construction; stripping thin strips
                // there would remove real one-pixel roads.
                ramps: label_meta.encoding == Encoding::Gray,
                out_size: Some(spec.pipeline.image_size),
            },
            classes: spec.classes.len(),
            extra,
        })
    }

    /// [`Pipeline::generate`], also returning the time each stage took.
    pub fn generate_timed(&self, indices: &[u64]) -> (Vec<Sample>, StageSeconds) {
        let seeds: Vec<u64> = indices.iter().map(|&i| sample_seed(self.run_seed, i)).collect();
        let image_seeds: Vec<u64> = seeds.iter().map(|&s| mix64(s ^ IMAGE_NOISE_STREAM)).collect();
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let t0 = Instant::now();
        let raw = models.ddpm.sample(&seeds, &self.sampler);
        let t1 = Instant::now();
        let cleaned: Vec<(LabelMap, CleanupReport)> = raw.par_iter().map(|m| cleanup(m, self.classes, &self.cleanup)).collect();
        let t2 = Instant::now();
        let maps: Vec<LabelMap> = cleaned.iter().map(|(m, _)| m.clone()).collect();
        let images = models.spade.synthesize(&maps, &image_seeds);
        let t3 = Instant::now();
        drop(models);
        let samples = indices
            .iter()
            .zip(seeds)
            .zip(cleaned.into_iter().zip(images))
            .map(|((&index, seed), ((label, report), image))| {
                let mut extra = self.extra.clone();
                extra.insert("islands_removed".into(), json!(report.islands_removed));
                extra.insert("pixels_changed".into(), json!(report.pixels_changed));
                Sample { index, seed, image, label, extra }
            })
            .collect();
        (samples, StageSeconds { sample: t1 - t0, cleanup: t2 - t1, synthesize: t3 - t2 })
    }
}

impl<B: Backend> Pipeline for DdpmSpadePipeline<B> {
    fn generate(&self, indices: &[u64]) -> shared::Result<Vec<Sample>> {
        let (samples, t) = self.generate_timed(indices);
        tracing::debug!(n = indices.len(), sample_s = t.sample.as_secs_f64(), cleanup_s = t.cleanup.as_secs_f64(), synthesize_s = t.synthesize.as_secs_f64(), "ddpm-spade batch");
        Ok(samples)
    }
}

/// Builds a `ddpm-spade` pipeline on a given backend and device, bypassing the factory's
/// device choice (benchmarks and the GPU check compare backends with it).
pub fn ddpm_spade_on<B: Backend>(spec: &RunSpec, dev: B::Device, resolved: Resolved) -> anyhow::Result<DdpmSpadePipeline<B>> {
    let checked = crate::artifact::block_on(fetch_models(spec, &artifact::default_cache_dir()))?;
    let models = load_models::<B>(&checked, &dev)?;
    DdpmSpadePipeline::new(spec, &checked, Arc::new(Mutex::new(models)), resolved)
}

/// A `ddpm-spade` pipeline over randomly initialised full-size models: Ho et al.'s CIFAR
/// UNet (≈35.7M parameters) on 64×64 one-hot label maps (or `size`, if smaller) and the
/// full SPADE generator (ngf 64, ≈92M) at `size`. For timing only: the samples are noise.
/// `ddim_steps`: DDIM with that many steps; `None`: DDPM over all 1000 timesteps.
pub fn random_ddpm_spade<B: Backend>(size: u32, ddim_steps: Option<usize>, dev: B::Device, resolved: Resolved) -> anyhow::Result<DdpmSpadePipeline<B>> {
    use crate::ddpm::UNetConfig;
    use crate::spade::{Losses, SpadeDiscriminatorConfig, SpadeGeneratorConfig, TrainSettings};
    let classes = shared::ClassTable::ai_hub();
    let k = classes.len();
    let label_size = 64.min(size);
    let mut unet = UNetConfig::cifar10(k);
    unet.image_size = label_size as usize;
    let meta: ModelMeta = serde_json::from_value(json!({
        "format_version": crate::ddpm::model::FORMAT_VERSION,
        "kind": crate::ddpm::model::MODEL_KIND,
        "unet": unet,
        "encoding": Encoding::OneHot,
        "schedule": crate::ddpm::ScheduleKind::Linear,
        "timesteps": 1000,
        "classes": classes,
        "size": label_size,
        "data_digest": "random",
        "steps": 0,
        "final_loss": 0.0,
        "ema_decay": 0.9999,
        "weights": crate::ddpm::model::WEIGHTS_FILE,
    }))
    .context("building a random DDPM model.json")?;
    meta.validate("random full-size DDPM")?;
    let arch = SpadeGeneratorConfig::new(k, size as usize);
    arch.validate().map_err(|e| anyhow::anyhow!("random full-size SPADE at {size}: {e}"))?;
    let image_meta = SpadeMeta::new(arch.clone(), SpadeDiscriminatorConfig::new(k), classes.clone(), "random".into(), 0, Losses::default(), TrainSettings::default());
    let models = Models { ddpm: DdpmModel::new(meta.unet.init::<B>(&dev), meta.clone(), dev.clone()), spade: SpadeModel { generator: arch.init::<B>(&dev), meta: image_meta } };
    let sampler = match ddim_steps {
        Some(n) => format!("sampler = \"ddim\"\nsteps = {n}"),
        None => "sampler = \"ddpm\"".to_string(),
    };
    let spec = RunSpec::parse(
        &format!("[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = {size}\n[pipeline.labels]\nmodel = \"random\"\n{sampler}\n[pipeline.images]\nmodel = \"random\"\n"),
        "random full-size spec",
    )?;
    DdpmSpadePipeline::with_models(&spec, &meta, "random", "random", Arc::new(Mutex::new(models)), resolved)
}
