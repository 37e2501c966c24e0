//! Generating a shard and committing it; finalizing a run; the worker's job loop.
//!
//! # Layout
//! - `pipeline.rs` — the [`Pipeline`] trait (labels + images for a batch of indices) and
//!   the `procedural` pipeline.
//! - `execute.rs` — one shard: generate → encode → upload (attempt-scoped) → create-only commit.
//! - `output.rs` — the run directory and `run.json` (create-only).
//! - `contact.rs` — `contact_sheet.png`, the first samples as (label | image) pairs.
//! - `finalize.rs` — manifest.jsonl and manifest.json from the commit records; WebDataset
//!   tars published as `dataset/SHARD.tar`; cleanup of losing attempts.
//! - `finalize_lock.rs` — `finalize.lock`: one finalize of a run at a time.
//! - `verify.rs` — checks a finalized run against its manifest, streamed (`coordinator verify`).
//! - `runner.rs` — the worker loop: claim, heartbeat, execute, ack/fail/release; graceful stop.
//! - `faults.rs` — test hooks that inject failures and delays.

mod contact;
mod execute;
mod faults;
mod finalize;
mod finalize_lock;
mod output;
mod pipeline;
mod runner;
#[cfg(test)]
mod tests;
mod verify;

pub use execute::{execute_shard, Abort, ShardJob, ShardOutcome};
pub use finalize::{finalize, published_tars, FinalizeReport, ManifestSummary, PublishedShards, ShardFile};
pub use output::{prepare_output, run_store};
pub use pipeline::{never_halted, Halted, Pipeline, PipelineFactory, ProceduralPipeline, Sample, StandardFactory};
pub use runner::{default_owner, serve, RunCache, WorkerOptions, MAX_CACHED_PIPELINES};
pub use verify::{verify, VerifyReport};
