//! labelgen's core, with no Burn: everything the coordinator and the workers share.
//!
//! # Layout
//! - `classes.rs` — the class table (raw mask codes ↔ class indices, preview colours).
//! - `label.rs` — [`LabelMap`], [`RgbImage`] and their PNG forms.
//! - `seed.rs` — per-sample seeds and RNG streams.
//! - `dataset.rs` — a dataset directory (images/ + labels/), preview grids.
//! - `procedural/` — the procedural land-cover generator and renderer.
//! - `cleanup/` — label-map cleanup (opening, islands, ramps, unknown codes) and label statistics.
//! - `stats/` — label-quality statistics of a set of label maps (class shares, component
//!   sizes, class adjacency, islands, ramp edges), real-versus-synthetic distances, plots.
//! - `queue/` — the [`JobQueue`] trait, its in-memory and Redis implementations, and the
//!   conformance suite both pass.
//! - `spec.rs` — the run spec (TOML) and its validation.
//! - `artifact.rs` — model artifacts: fetch, sha256 digest, local cache.
//! - `storage.rs` — [`storage::Store`]: S3, local directory or memory, with create-only puts.
//! - `metrics.rs` — Prometheus metrics and their HTTP endpoint.
//! - `job/` — shard execution, the commit protocol, finalize and the worker loop.
//! - `error.rs` — the library's [`Error`].

mod classes;
mod error;
mod label;
mod seed;

pub mod artifact;
pub mod cleanup;
pub mod dataset;
pub mod job;
pub mod metrics;
pub mod spec;
pub mod stats;
pub mod storage;

pub mod procedural;
pub mod queue;

pub use classes::{ClassDef, ClassTable, IGNORE_INDEX};
pub use error::{Error, Result};
pub use label::{decode_png, encode_png, LabelMap, RgbImage};
pub use queue::JobQueue;
pub use seed::{mix64, rng_for, sample_seed};
