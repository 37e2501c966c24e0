//! The label stage of the `ddpm-spade` pipeline as one unit: DDPM sampling, then the
//! cleanup and the upscale to the output size (`nearest`: classes decided and cleaned at
//! the model's size, then each pixel repeated; `smooth`: class probabilities upscaled
//! bilinearly, decided and cleaned at full size). The pipeline and `labelgen-eval
//! sampling` both go through [`LabelStage`], so what the evaluation measures is what a
//! run writes.

use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use rayon::prelude::*;
use shared::cleanup::{cleanup, CleanupOptions, CleanupReport};
use shared::job::{never_halted, Halted};
use shared::spec::LabelUpscale;
use shared::LabelMap;

use super::sampler::Step;
use super::{DdpmMeta, DdpmModel, Encoding, SamplerConfig};

/// Sampler, upscale and cleanup of the label stage, fixed for one label model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelStage {
    pub sampler: SamplerConfig,
    pub upscale: LabelUpscale,
    /// Side of the maps the stage returns (the pipeline's `image_size`).
    pub out_size: u32,
    /// Cleanup settings in output pixels; `out_size` is set.
    pub cleanup: CleanupOptions,
    classes: usize,
}

/// One batch through the stage.
#[derive(Debug, Clone)]
pub struct StageMaps {
    /// The sampler's maps before cleanup: at the model's size (`nearest`) or at the output
    /// size (`smooth`).
    pub raw: Vec<LabelMap>,
    /// The cleaned `out_size × out_size` maps, each with what the cleanup changed.
    pub cleaned: Vec<(LabelMap, CleanupReport)>,
    pub sample: Duration,
    pub cleanup: Duration,
}

impl LabelStage {
    /// The stage for a model with `meta`: `sampler` is checked against its timesteps,
    /// `smooth` needs a `onehot` model, and ramp strips are removed only for `gray` models
    /// (one-hot maps have no ramp edges by construction; stripping thin strips there would
    /// remove real one-pixel roads). Errors say which setting is wrong.
    pub fn new(meta: &DdpmMeta, sampler: SamplerConfig, upscale: LabelUpscale, out_size: u32, open_radius_px: u32, min_island_px: u32) -> anyhow::Result<Self> {
        sampler.validate(meta.timesteps).map_err(|e| anyhow::anyhow!(e))?;
        anyhow::ensure!(out_size > 0, "output size must be at least 1 pixel");
        if upscale == LabelUpscale::Smooth && meta.encoding != Encoding::OneHot {
            anyhow::bail!("upscale smooth needs a onehot label model; this one is {} (use nearest)", meta.encoding);
        }
        let cleanup = CleanupOptions { open_radius: open_radius_px, min_island: min_island_px, ramps: meta.encoding == Encoding::Gray, out_size: Some(out_size) };
        Ok(LabelStage { sampler, upscale, out_size, cleanup, classes: meta.classes.len() })
    }

    /// Network evaluations per map.
    pub fn steps(&self, timesteps: usize) -> usize {
        self.sampler.num_steps(timesteps)
    }

    /// Samples one map per seed as one batch, then cleans (in parallel) and upscales them.
    pub fn run<B: Backend>(&self, model: &DdpmModel<B>, seeds: &[u64]) -> StageMaps {
        let t0 = Instant::now();
        let raw = self.sample(model, seeds, seeds.len(), &never_halted);
        let sample = t0.elapsed();
        let (cleaned, cleanup) = self.clean(&raw);
        StageMaps { raw, cleaned, sample, cleanup }
    }

    /// The sampler's maps for `seeds`, as one batch of `shape` (≥ `seeds.len()`): a short
    /// batch is padded with copies of its last seed, whose maps are dropped, so a backend
    /// that compiles kernels per shape sees one shape all run long. A map depends only on
    /// its seed, so padding changes nothing else. Once `stop` says so the batch is abandoned
    /// at its next denoising step: no maps.
    pub fn sample<B: Backend>(&self, model: &DdpmModel<B>, seeds: &[u64], shape: usize, stop: Halted<'_>) -> Vec<LabelMap> {
        let padded = pad(seeds, shape);
        let mut on_step = |_, _| if stop() { Step::Break(()) } else { Step::Continue(()) };
        let mut raw = match self.upscale {
            LabelUpscale::Nearest => model.sample_with_progress(&padded, &self.sampler, &mut on_step),
            LabelUpscale::Smooth => model.sample_smooth(&padded, &self.sampler, self.out_size, &mut on_step),
        };
        raw.truncate(seeds.len());
        raw
    }

    /// Cleans (in parallel, on the CPU) and upscales sampled maps; returns the time taken.
    pub fn clean(&self, raw: &[LabelMap]) -> (Vec<(LabelMap, CleanupReport)>, Duration) {
        let t0 = Instant::now();
        let cleaned = raw.par_iter().map(|m| cleanup(m, self.classes, &self.cleanup)).collect();
        (cleaned, t0.elapsed())
    }
}

/// `items` padded to `shape` with copies of its last element (unchanged when it is at
/// least that long or empty).
pub fn pad<T: Clone>(items: &[T], shape: usize) -> Vec<T> {
    let mut v = items.to_vec();
    if let Some(last) = items.last() {
        v.resize(shape.max(items.len()), last.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use crate::ddpm::UNetConfig;

    fn model(encoding: Encoding) -> DdpmModel<Cpu> {
        let device = CpuDevice::default();
        let classes = shared::ClassTable::ai_hub();
        let unet = UNetConfig::new(encoding.channels(classes.len()), 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4);
        let meta = DdpmMeta::untrained(unet, encoding, 20, 8);
        DdpmModel::new(meta.unet.init(&device), meta, device)
    }

    #[test]
    fn nearest_cleans_at_the_model_size_and_upscales_smooth_samples_full_size() {
        let m = model(Encoding::OneHot);
        let sampler = SamplerConfig::ddim(3, 0.0);
        let near = LabelStage::new(&m.meta, sampler, LabelUpscale::Nearest, 32, 0, 0).unwrap();
        assert!(!near.cleanup.ramps, "one-hot models keep thin strips");
        let out = near.run(&m, &[1, 2]);
        assert_eq!((out.raw.len(), out.raw[0].width, out.cleaned[0].0.width), (2, 8, 32));
        // With no cleanup rule on, the cleaned map is the raw one with each pixel repeated.
        assert_eq!(out.cleaned[1].0, out.raw[1].resize_nearest(32, 32));
        assert_eq!(out.raw, m.sample(&[1, 2], &sampler));

        let smooth = LabelStage::new(&m.meta, sampler, LabelUpscale::Smooth, 32, 0, 0).unwrap();
        let out = smooth.run(&m, &[1]);
        assert_eq!((out.raw[0].width, out.cleaned[0].0.width), (32, 32));
        // A short batch padded to 4 gives the same maps.
        assert_eq!(smooth.sample(&m, &[1], 4, &never_halted), out.raw);
        // A stop abandons the batch at its next step, either way of upscaling.
        assert!(smooth.sample(&m, &[1], 4, &|| true).is_empty());
        assert!(near.sample(&m, &[1, 2], 2, &|| true).is_empty());
        assert_eq!(pad(&[1, 2], 4), vec![1, 2, 2, 2]);
        assert_eq!(pad(&[1, 2, 3], 2), vec![1, 2, 3]);
        assert!(pad::<u8>(&[], 3).is_empty());
    }

    #[test]
    fn settings_are_checked_against_the_model() {
        let gray = model(Encoding::Gray);
        let e = LabelStage::new(&gray.meta, SamplerConfig::ddim(3, 0.0), LabelUpscale::Smooth, 32, 0, 0).unwrap_err();
        assert!(e.to_string().contains("smooth needs a onehot"), "{e}");
        let e = LabelStage::new(&gray.meta, SamplerConfig::ddim(50, 0.0), LabelUpscale::Nearest, 32, 0, 0).unwrap_err();
        assert!(e.to_string().contains("between 1 and the model's 20 timesteps"), "{e}");
        assert!(LabelStage::new(&gray.meta, SamplerConfig::ddpm(), LabelUpscale::Nearest, 32, 0, 0).unwrap().cleanup.ramps, "gray models get ramp removal");
    }
}
