//! The `ddpm-spade` pipeline: DDPM label maps → cleanup (and upscale, nearest or smooth:
//! `pipeline.labels.upscale`) → SPADE images.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use burn::tensor::backend::Backend;
use serde_json::json;
use shared::artifact;
use shared::job::{Pipeline, Sample};
use shared::spec::RunSpec;
use shared::{mix64, sample_seed, LabelMap};

use super::models::{fetch_models, ModelIds, Models};
use crate::ddpm::stage::LabelStage;
use crate::ddpm::SamplerConfig;
use crate::device::Resolved;

/// Seeds SPADE's noise from a sample's seed on a stream apart from the DDPM's.
const IMAGE_NOISE_STREAM: u64 = 0x5350_4144_455f_4e5a;

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
    labels: LabelStage,
    steps: usize,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl<B: Backend> DdpmSpadePipeline<B> {
    pub(super) fn new(spec: &RunSpec, ids: &ModelIds, models: Arc<Mutex<Models<B>>>, resolved: Resolved) -> anyhow::Result<Self> {
        let ls = spec.pipeline.labels.as_ref().context("pipeline.labels")?;
        let cs = spec.pipeline.cleanup.unwrap_or_default();
        let label_meta = &ids.label_meta;
        let steps = ls.check_sampler(label_meta.timesteps).map_err(|e| anyhow::anyhow!(e))?;
        let sampler = SamplerConfig::from_spec(ls.sampler, steps, ls.eta);
        let mut extra = serde_json::Map::new();
        extra.insert("sampler".into(), json!(sampler.kind().to_string()));
        extra.insert("steps".into(), json!(steps));
        if let SamplerConfig::Ddim { eta, .. } = sampler {
            extra.insert("eta".into(), json!(eta));
        }
        extra.insert("label_size".into(), json!(label_meta.size));
        extra.insert("upscale".into(), json!(ls.upscale.to_string()));
        extra.insert("label_model".into(), json!(ids.label_digest));
        extra.insert("image_model".into(), json!(ids.image_digest));
        tracing::debug!(device = %resolved, "ddpm-spade pipeline ready");
        // Cleanup sizes are in output pixels: the stage converts them to the label size.
        let labels = LabelStage::new(label_meta, sampler, ls.upscale, spec.pipeline.image_size, cs.open_radius_px, cs.min_island_px).context("pipeline.labels")?;
        Ok(DdpmSpadePipeline { models, run_seed: spec.run.seed, labels, steps, extra })
    }

    /// Denoising steps per label map (network evaluations per sample).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// [`Pipeline::generate`], also returning the time each stage took.
    pub fn generate_timed(&self, indices: &[u64]) -> (Vec<Sample>, StageSeconds) {
        let seeds: Vec<u64> = indices.iter().map(|&i| sample_seed(self.run_seed, i)).collect();
        let image_seeds: Vec<u64> = seeds.iter().map(|&s| mix64(s ^ IMAGE_NOISE_STREAM)).collect();
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let labels = self.labels.run(&models.ddpm, &seeds);
        let cleaned = labels.cleaned;
        let t2 = Instant::now();
        let maps: Vec<LabelMap> = cleaned.iter().map(|(m, _)| m.clone()).collect();
        let images = models.spade.synthesize(&maps, &image_seeds);
        let synthesize = t2.elapsed();
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
        (samples, StageSeconds { sample: labels.sample, cleanup: labels.cleanup, synthesize })
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
    let checked = crate::sync_store::block_on(fetch_models(spec, &artifact::default_cache_dir()))?;
    let ids = checked.ids();
    let models = checked.load::<B>(&dev)?;
    DdpmSpadePipeline::new(spec, &ids, Arc::new(Mutex::new(models)), resolved)
}
