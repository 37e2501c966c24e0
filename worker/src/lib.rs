//! labelgen worker: the models, the pipeline that chains them, and the `worker` binary.
//! The job loop, the commit protocol and the queue live in `shared`; this crate supplies
//! the [`Factory`] that builds a run's pipeline, and the model commands.
//!
//! # Layout
//! - `backend.rs` — the Burn backends (CPU `flex`; `cuda` by feature) and the one
//!   backend dispatch ([`backend::dispatch`]).
//! - `device.rs` — `--device auto|cpu|cuda[:N]` and NVIDIA driver detection.
//! - `args.rs` — flag groups shared by several commands (dataset reading, device).
//! - `fused.rs` — normalisation, modulation and activation fused into one parallel pass
//!   on the CPU inference backend (GroupNorm + SiLU, SPADE + leaky ReLU).
//! - `ddpm/` — the DDPM label-map generator (UNet, schedules, samplers, training).
//! - `spade/` — the SPADE image generator (generator, discriminator, training).
//! - `weights.rs` — a network's weights as bytes (save, shape-checked load, sha256
//!   check), for both models and their checkpoints.
//! - `parallel.rs` — data-parallel training over several devices (batch shares, replicas,
//!   summed gradients).
//! - `sync_store.rs` — synchronous reads and writes of single files at a storage location
//!   (model artifacts, checkpoints, previews, the held-out test stems), and `block_on`.
//! - `tensors.rs` — Burn conversions between `shared`'s images and label maps and tensors
//!   (used by SPADE and by `eval`'s segmentation model).
//! - `pipelines/` — [`Factory`]: the pipeline a run spec asks for (`procedural`,
//!   `ddpm-spade`), with the model cache; the models' fetch and checks; the random
//!   full-size models of the benchmarks.
//! - `bench.rs` — measurements of the `ddpm-spade` pipeline (`worker bench`): per-stage
//!   times, images/s, CPU versus CUDA.
//! - `cli.rs` — the `worker` command line; `commands/` — one file per subcommand.

pub mod args;
pub mod backend;
pub mod bench;
pub mod cli;
mod commands;
pub mod cost;
pub mod cpu_conv;
pub mod ddpm;
pub mod device;
pub mod fused;
pub mod parallel;
pub mod pipelines;
pub mod precision;
pub mod spade;
pub mod sync_store;
pub mod tensors;
pub mod weights;

pub use pipelines::Factory;
