//! The pipelines this worker can run, chosen by the run spec's `pipeline.kind`.

use std::sync::Arc;

use shared::job::{Pipeline, PipelineFactory, StandardFactory};
use shared::spec::RunSpec;

/// Builds the pipeline of a run: `procedural` from `shared`; `ddpm-spade` comes with the
/// models.
pub struct Factory;

impl PipelineFactory for Factory {
    fn build(&self, spec: &RunSpec) -> shared::Result<Arc<dyn Pipeline>> {
        StandardFactory.build(spec)
    }
}
