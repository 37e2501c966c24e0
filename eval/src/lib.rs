//! labelgen evaluation: does the generated data look like, and help like, real data?
//! Label statistics of a run against a real set, and the utility protocol of the paper's
//! Table 1 (a segmentation model trained with and without generated samples), with their
//! plots and reports. The `labelgen-eval` binary is its command line.
//!
//! It is a crate of its own, beside the worker, so the worker image that clusters deploy
//! carries no segmentation model, statistics or plotting; evaluation runs where the data
//! scientist is. It uses the worker's backends and data readers.
//!
//! # Layout
//! - `stats/` — label-quality statistics (class shares, component sizes, adjacency,
//!   islands, ramp edges), real-versus-synthetic distances, and plots.
//! - `seg/` — a BiSeNet V2-style segmentation network, its training and metrics (IoU, mIoU).
//! - `cli.rs` — the `labelgen-eval` command line; `commands/` — one file per subcommand.

pub mod cli;
mod commands;
pub mod seg;
pub mod stats;

pub use cli::{run, Cli};
