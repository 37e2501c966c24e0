//! The pipelines this worker can run, chosen by the run spec's `pipeline.kind`:
//! `procedural` (from `shared`) and `ddpm-spade` (DDPM label maps → cleanup → SPADE
//! images), with the per-process model cache.
//!
//! # Layout
//! - `factory.rs` — [`Factory`]: builds a run's pipeline; the model cache (models are
//!   fetched, verified and loaded once per process and device).
//! - `models.rs` — [`fetch_models`]: a `ddpm-spade` spec's two artifacts fetched, verified
//!   and checked against the spec ([`CheckedModels`]), and their loading onto a device.
//! - `ddpm_spade.rs` — [`DdpmSpadePipeline`] (sample → cleanup → synthesize, with
//!   [`StageSeconds`]; across a job's batches the label stage runs one batch ahead) and
//!   [`ddpm_spade_on`], which builds one on a given backend.
//! - `random.rs` — [`random_ddpm_spade`]: the pipeline over randomly initialised
//!   full-size models, for benchmarks.
//! - `spread.rs` — [`Spread`]: one run's pipelines on every GPU (`--device cuda:all`),
//!   each shard to the least busy.

mod ddpm_spade;
mod factory;
mod models;
mod random;
mod spread;

pub use ddpm_spade::{ddpm_spade_on, DdpmSpadePipeline, StageSeconds};
pub use factory::Factory;
pub use models::{fetch_models, CheckedModels};
pub use random::{random_ddpm_spade, RandomSettings};
pub use spread::Spread;
