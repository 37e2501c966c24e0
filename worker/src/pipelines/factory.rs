//! [`Factory`]: the pipeline a run spec asks for, with the per-process model cache.

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::Backend;
use shared::artifact;
use shared::job::{Pipeline, PipelineFactory, StandardFactory};
use shared::spec::{DeviceChoice, PipelineKind, RunSpec};

use super::ddpm_spade::DdpmSpadePipeline;
use super::models::{fetch_models, CheckedModels, Models};
use crate::backend::OnBackend;
use crate::device::Resolved;

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
        let checked = crate::sync_store::block_on(fetch_models(spec, &self.cache_dir))?;
        let choice = self.device.unwrap_or(spec.pipeline.device);
        let devices = crate::device::resolve_all(choice, &crate::device::DriverProbe::detect())?;
        if devices.len() == 1 {
            return crate::backend::dispatch(choice, BuildOn { factory: self, spec, checked });
        }
        // cuda:all: one pipeline per GPU (models loaded on each), one process.
        let pipes = devices
            .iter()
            .map(|d| {
                let one = match d {
                    Resolved::Cuda(n) => DeviceChoice::Cuda(*n),
                    Resolved::Cpu => DeviceChoice::Cpu,
                };
                crate::backend::dispatch(one, BuildOn { factory: self, spec, checked: checked.clone() })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(devices = pipes.len(), "ddpm-spade pipeline on every GPU");
        Ok(Arc::new(super::Spread::new(pipes)))
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
        let ids = checked.ids();
        let precision = spec.pipeline.precision;
        let key = format!("{}/{}/{resolved}/{precision}", ids.label_digest, ids.image_digest);
        // Held while loading, so concurrent job slots load a model once, not once each.
        let mut loaded_models = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let existing = loaded_models.get(&key).cloned();
        let models: Arc<Models<B>> = match existing.and_then(|a| a.downcast::<Models<B>>().ok()) {
            Some(m) => m,
            None => {
                let start = Instant::now();
                let (label_uri, image_uri) = (checked.labels.uri.clone(), checked.images.uri.clone());
                // The CUDA backend panics (rather than erring) when it cannot start.
                let loaded = crate::backend::guard(resolved, || checked.load::<B>(&dev, precision)).context("loading the models")?;
                tracing::info!(
                    device = %resolved,
                    %precision,
                    label_model = %label_uri, label_sha256 = %ids.label_digest,
                    image_model = %image_uri, image_sha256 = %ids.image_digest,
                    seconds = start.elapsed().as_secs_f64(),
                    "models loaded"
                );
                let m = Arc::new(loaded);
                loaded_models.insert(key, m.clone());
                m
            }
        };
        drop(loaded_models);
        Ok(Arc::new(DdpmSpadePipeline::new(spec, &ids, models, resolved)?))
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
