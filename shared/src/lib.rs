//! labelgen's core, with no Burn: everything the coordinator, the workers and the
//! evaluation share.
//!
//! # Layout
//! - `classes.rs` — the class table (raw mask codes ↔ class indices, preview colours).
//! - `label.rs` — [`LabelMap`], [`RgbImage`] and their PNG forms (images also JPEG and
//!   WebP, [`ImageEncoding`]); the one label-PNG
//!   decoder (raw-code or palette masks, unknown values an error, ignore or kept).
//! - `seed.rs` — per-sample seeds and RNG streams; seeds' JSON forms (decimal strings).
//! - `dataset.rs` — a dataset directory (images/ + labels/), resizing, preview grids.
//! - `procedural/` — the procedural land-cover generator and renderer.
//! - `cleanup/` — label-map cleanup: opening, islands, ramp edges, upscaling; connected
//!   components (4- or 8-connected, also for `eval`'s label statistics).
//! - `spec.rs` — the run spec (TOML) and its validation.
//! - `artifact.rs` — model artifacts: `model.json` metadata, sha256 digest (streamed),
//!   fetch, local cache, and the checks of a spec's models that need no model code.
//! - `storage/` — [`storage::Store`]: S3, local directory or memory, with create-only
//!   puts; its conformance suite.
//! - `queue/` — the [`JobQueue`] trait, its in-memory and Redis implementations, and the
//!   conformance suite both pass.
//! - `manifest/` — a run's files: object layout, commit records, manifest lines, and the
//!   one reader of a finished run directory.
//! - `job/` — shard execution, the commit protocol, finalize, the contact sheet and the
//!   worker's job loop.
//! - `lifecycle/` — run ids, submit, watch, status figures and the embedded mode.
//! - `metrics.rs` — Prometheus metrics and their HTTP endpoint.
//! - `retry.rs` — the one retry policy (exponential backoff with jitter, `backon`).
//! - `files.rs`, `progress.rs`, `logging.rs` — atomic local writes, progress bars and the
//!   logging set-up every binary uses.
//! - `error.rs` — the library's [`Error`].

mod classes;
mod error;
mod label;
mod seed;

pub mod artifact;
pub mod cleanup;
pub mod dataset;
pub mod files;
pub mod job;
pub mod lifecycle;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod progress;
pub mod retry;
pub mod spec;
pub mod storage;

pub mod procedural;
pub mod queue;

pub use classes::{share_column, ClassDef, ClassTable, IGNORE_INDEX};
pub use error::{Error, Result};
pub use label::{decode_png, encode_png, ImageEncoding, LabelMap, RgbImage};
pub use queue::JobQueue;
pub use seed::{mix64, rng_for, sample_seed};
