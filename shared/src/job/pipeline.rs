//! What a worker runs per batch: the [`Pipeline`] trait and the `procedural` pipeline.

use std::sync::Arc;

use rayon::prelude::*;

use crate::error::Result;
use crate::label::{LabelMap, RgbImage};
use crate::procedural::{self, ClassShares};
use crate::spec::{PipelineKind, RunSpec};

/// One generated sample, before encoding.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: u64,
    pub seed: u64,
    pub image: RgbImage,
    pub label: LabelMap,
    /// Pipeline-specific fields for the manifest line (sampler, model digests, …).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Generates samples. Implementations are CPU/GPU heavy and blocking: callers run them off
/// the async runtime. Sample `i` depends only on the run spec and `i`.
pub trait Pipeline: Send + Sync {
    /// Samples for `indices` (one batch), in the same order.
    fn generate(&self, indices: &[u64]) -> Result<Vec<Sample>>;

    /// Samples for `indices` in batches of `batch`, in order: each batch's result goes to
    /// `sink`, which returns `false` to stop (a stop asked for, nobody listening). A failed
    /// batch is the last one handed on. This calls [`Pipeline::generate`] once per batch; a
    /// pipeline of several stages overrides it to overlap them, starting the next batch's
    /// first stage while this one's last runs. Samples are the ones `generate` gives.
    ///
    /// `halted` turns true, from any thread, once nobody wants more (the job was stopped or
    /// lost, or took no more batches), and stays true: a pipeline whose batches are long
    /// asks it between steps (a DDPM's denoising steps, SPADE's image batches) and returns
    /// at once, handing nothing more on, so the device is free for the next job within a
    /// step rather than a whole batch.
    fn generate_batches(&self, indices: &[u64], batch: usize, halted: Halted<'_>, sink: &mut dyn FnMut(Result<Vec<Sample>>) -> bool) {
        for chunk in indices.chunks(batch.max(1)) {
            if halted() {
                return;
            }
            let result = self.generate(chunk);
            let failed = result.is_err();
            if !sink(result) || failed {
                return;
            }
        }
    }
}

/// Asked by a pipeline between the steps of a batch: true once its output is no longer
/// wanted (see [`Pipeline::generate_batches`]).
pub type Halted<'a> = &'a (dyn Fn() -> bool + Sync);

/// Never halted: for callers that want every batch.
pub fn never_halted() -> bool {
    false
}

/// Builds the pipeline a run spec asks for (once per run and process).
pub trait PipelineFactory: Send + Sync {
    fn build(&self, spec: &RunSpec) -> Result<Arc<dyn Pipeline>>;
}

/// The factory for the pipelines this library knows (`procedural`); the worker's factory
/// adds `ddpm-spade`.
pub struct StandardFactory;

impl PipelineFactory for StandardFactory {
    fn build(&self, spec: &RunSpec) -> Result<Arc<dyn Pipeline>> {
        match spec.pipeline.kind {
            PipelineKind::Procedural => Ok(Arc::new(ProceduralPipeline::new(spec))),
            PipelineKind::DdpmSpade => Err(crate::Error::Invalid {
                origin: "run spec".into(),
                key: "pipeline.kind".into(),
                message: "\"ddpm-spade\" runs models: it is built by the worker's pipeline factory (worker::Factory), not by shared".into(),
            }),
        }
    }
}

/// Procedural land-cover tiles, no models.
pub struct ProceduralPipeline {
    run_seed: u64,
    size: u32,
    shares: ClassShares,
}

impl ProceduralPipeline {
    pub fn new(spec: &RunSpec) -> Self {
        ProceduralPipeline { run_seed: spec.run.seed, size: spec.pipeline.image_size, shares: spec.pipeline.procedural.shares.clone().unwrap_or_default() }
    }
}

impl Pipeline for ProceduralPipeline {
    fn generate(&self, indices: &[u64]) -> Result<Vec<Sample>> {
        Ok(indices
            .par_iter()
            .map(|&index| {
                let (image, label) = procedural::sample(self.run_seed, index, self.size, &self.shares);
                Sample { index, seed: crate::sample_seed(self.run_seed, index), image, label, extra: Default::default() }
            })
            .collect())
    }
}
