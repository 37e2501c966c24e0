//! labelgen worker library: the command line, pipelines and the job loop.
//!
//! # Layout
//! - `backend.rs` — the Burn backends (CPU `flex`; `cuda` by feature).
//! - `cli.rs` — the `worker` command line.
//! - `commands/` — one file per subcommand.
//! - `artifact.rs` — model artifacts at a path or `s3://` URI.
//! - `ddpm/` — the DDPM label-map generator (UNet, schedules, samplers, training).
//! - `spade/` — the SPADE image generator (generator, discriminator, training).
//! - `seg/` — a BiSeNet V2-style segmentation network, its training and metrics (IoU,
//!   mIoU) for `worker eval utility`.
//! - `pipelines.rs` — [`Factory`]: the pipeline a run spec asks for (`procedural`,
//!   `ddpm-spade`), and [`pipelines::prepare`]: model checks before submit.
//! - `device.rs` — `--device auto|cpu|cuda[:N]` and NVIDIA driver detection.

pub mod artifact;
pub mod backend;
pub mod cli;
mod commands;
pub mod ddpm;
pub mod seg;
pub mod spade;
pub mod device;
pub mod pipelines;

pub use pipelines::Factory;
