//! The `ddpm-spade` pipeline: DDPM label maps → cleanup (and upscale, nearest or smooth:
//! `pipeline.labels.upscale`) → SPADE images.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use burn::tensor::backend::Backend;
use serde_json::json;
use shared::artifact;
use shared::job::{Pipeline, Sample};
use shared::spec::RunSpec;
use shared::{mix64, sample_seed, LabelMap};

use super::models::{fetch_models, ModelIds, Models};
use crate::ddpm::stage::{pad, LabelStage};
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

/// DDPM label maps → cleanup (and upscale) → SPADE images, each model in batches of its
/// own size (`pipeline.labels.batch_size`, `pipeline.images.batch_size`).
pub struct DdpmSpadePipeline<B: Backend> {
    models: Arc<Models<B>>,
    run_seed: u64,
    labels: LabelStage,
    steps: usize,
    label_batch: usize,
    image_batch: usize,
    /// Pad short batches to the full batch shape: on by default where kernels are
    /// compiled per shape (CUDA), off on the CPU, where padding is only extra work.
    pad: bool,
    /// The run's shard size: no call is longer, so padding never goes beyond it.
    shard_size: usize,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl<B: Backend> DdpmSpadePipeline<B> {
    pub(super) fn new(spec: &RunSpec, ids: &ModelIds, models: Arc<Models<B>>, resolved: Resolved) -> anyhow::Result<Self> {
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
        if !spec.pipeline.precision.is_f32() {
            extra.insert("precision".into(), json!(spec.pipeline.precision.to_string()));
        }
        tracing::debug!(device = %resolved, "ddpm-spade pipeline ready");
        // Cleanup sizes are in output pixels: the stage converts them to the label size.
        let labels = LabelStage::new(label_meta, sampler, ls.upscale, spec.pipeline.image_size, cs.open_radius_px, cs.min_island_px).context("pipeline.labels")?;
        let (label_batch, image_batch) = (spec.pipeline.label_batch(), spec.pipeline.image_batch());
        Ok(DdpmSpadePipeline {
            models,
            run_seed: spec.run.seed,
            labels,
            steps,
            label_batch,
            image_batch,
            pad: !crate::fused::on_host::<B>(),
            shard_size: spec.run.shard_size as usize,
            extra,
        })
    }

    /// Pads (or not) short batches to the batch shape; see the field.
    pub fn with_padding(self, pad: bool) -> Self {
        DdpmSpadePipeline { pad, ..self }
    }

    /// The same pipeline (same loaded models) with other model batch sizes.
    pub fn with_batches(&self, label_batch: usize, image_batch: usize) -> Self {
        DdpmSpadePipeline { models: self.models.clone(), extra: self.extra.clone(), label_batch: label_batch.max(1), image_batch: image_batch.max(1), ..*self }
    }

    /// Denoising steps per label map (network evaluations per sample).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Multiply-accumulates per sample ([`crate::cost`]): the label stage's (one UNet
    /// evaluation × steps) and SPADE's (one image).
    pub fn macs(&self) -> (u64, u64) {
        let ddpm = self.models.ddpm.lock().unwrap_or_else(|p| p.into_inner());
        let unet = ddpm.unet.macs(ddpm.size() as usize) * self.steps as u64;
        drop(ddpm);
        (unet, self.models.spade.lock().unwrap_or_else(|p| p.into_inner()).generator.macs())
    }

    /// [`Pipeline::generate`], also returning the time each stage took.
    pub fn generate_timed(&self, indices: &[u64]) -> (Vec<Sample>, StageSeconds) {
        let seeds: Vec<u64> = indices.iter().map(|&i| sample_seed(self.run_seed, i)).collect();
        let image_seeds: Vec<u64> = seeds.iter().map(|&s| mix64(s ^ IMAGE_NOISE_STREAM)).collect();
        // The batch shape: the model batch, or the shard size when shards are smaller (no
        // call is longer than a shard, so padding past it would be work for nothing).
        let shape = |batch: usize, n: usize| if self.pad { batch.min(self.shard_size).max(n) } else { n };
        let (mut cleaned, mut sample, mut cleanup) = (Vec::with_capacity(seeds.len()), Duration::ZERO, Duration::ZERO);
        for chunk in seeds.chunks(self.label_batch) {
            // Each model's lock is held only for its own forward passes (and the wait for
            // it is not counted as the stage's time).
            let ddpm = self.models.ddpm.lock().unwrap_or_else(|p| p.into_inner());
            let t0 = Instant::now();
            let raw = self.labels.sample(&ddpm, chunk, shape(self.label_batch, chunk.len()));
            sample += t0.elapsed();
            drop(ddpm);
            let (c, t) = self.labels.clean(&raw);
            cleaned.extend(c);
            cleanup += t;
        }
        let maps: Vec<LabelMap> = cleaned.iter().map(|(m, _)| m.clone()).collect();
        let mut synthesize = Duration::ZERO;
        let mut images = Vec::with_capacity(maps.len());
        for (m, s) in maps.chunks(self.image_batch).zip(image_seeds.chunks(self.image_batch)) {
            let n = shape(self.image_batch, m.len());
            let spade = self.models.spade.lock().unwrap_or_else(|p| p.into_inner());
            let t2 = Instant::now();
            let mut out = spade.synthesize(&pad(m, n), &pad(s, n));
            synthesize += t2.elapsed();
            drop(spade);
            out.truncate(m.len());
            images.extend(out);
        }
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
        (samples, StageSeconds { sample, cleanup, synthesize })
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
    let models = checked.load::<B>(&dev, spec.pipeline.precision)?;
    DdpmSpadePipeline::new(spec, &ids, Arc::new(models), resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    fn spec(extra: &str, labels: &str, images: &str) -> RunSpec {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo");
        RunSpec::parse(
            &format!(
                "[run]\ncount = 8\nshard_size = 8\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = 64\n{extra}\n\
                 [pipeline.labels]\nmodel = \"{models}/ddpm\"\nsteps = 5\nupscale = \"smooth\"\n{labels}\n[pipeline.images]\nmodel = \"{models}/spade\"\n{images}\n"
            ),
            "test spec",
        )
        .unwrap()
    }

    /// Labels in batches of 3 and images in batches of 2, short batches padded, give the
    /// samples one batch of 5 gives; a bf16 run says so in every sample.
    #[test]
    fn per_model_batches_and_padding_change_no_sample() {
        let indices: Vec<u64> = (0..5).collect();
        let one = ddpm_spade_on::<Cpu>(&spec("batch_size = 5", "", ""), CpuDevice::default(), Resolved::Cpu).unwrap().generate_timed(&indices).0;
        let split = ddpm_spade_on::<Cpu>(&spec("", "batch_size = 3", "batch_size = 2"), CpuDevice::default(), Resolved::Cpu).unwrap().with_padding(true);
        assert_eq!((split.label_batch, split.image_batch), (3, 2));
        let two = split.generate_timed(&indices).0;
        assert_eq!(two.len(), 5);
        let c = crate::bench::diff(&one, &two);
        assert_eq!(c.mean_label_agreement(), 1.0, "{c}");
        assert!(c.mean_image_mae() < 0.05, "{c}");
        assert_eq!(one.iter().map(|s| s.index).collect::<Vec<_>>(), two.iter().map(|s| s.index).collect::<Vec<_>>());
        assert!(!one[0].extra.contains_key("precision"));
        let bf16 = ddpm_spade_on::<Cpu>(&spec("precision = \"bf16\"", "", ""), CpuDevice::default(), Resolved::Cpu).unwrap().generate_timed(&indices[..2]).0;
        assert_eq!(bf16[0].extra["precision"], "bf16");
    }
}
