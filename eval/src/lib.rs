//! labelgen evaluation: does the generated data look like, and help like, real data?
//! Label statistics of a run against a real set, and the utility protocol of the paper's
//! Table 1 (a segmentation model trained with and without generated samples), with their
//! plots and reports. The `labelgen-eval` binary is its command line.
//!
//! It is a crate of its own, beside the worker, so the worker image that clusters deploy
//! carries no segmentation model, statistics or plotting; evaluation runs where the data
//! scientist is. It uses the worker's backends (`--device`, [`worker::backend::dispatch_train`])
//! and data readers.
//!
//! # Layout
//! - `labels/` — `labelgen-eval labels`: reads a real set's and a run's label maps,
//!   measures both, writes `labels.json` and the plots.
//! - `utility/` — `labelgen-eval utility` (Table 1): the real split, the run's samples,
//!   training per seed with and without them, mean ± sd, the verdict, `report.md`.
//! - `sampling/` — `labelgen-eval sampling`: label quality by label model and sampler
//!   (the paper's setting beside the default, DDIM step counts, DDPM), through the
//!   pipeline's label stage.
//! - `bench.rs` — `labelgen-eval bench-seg`: the segmentation model's size and speed.
//! - `stats/` — label-quality statistics (class shares, component sizes, adjacency,
//!   islands, ramp edges) and real-versus-synthetic distances.
//! - `seg/` — a BiSeNet V2-style segmentation network, its training and metrics (IoU, mIoU).
//! - `plot/` — every plot (statistics plots, the IoU chart), drawn on `RgbImage` with the
//!   drawing primitives and the 5×7 pixel font kept there.
//! - `cli.rs` — the `labelgen-eval` command line; `commands/` — one file per subcommand:
//!   its flags and one call into the library.

pub mod bench;
pub mod cli;
mod commands;
pub mod labels;
pub mod plot;
pub mod sampling;
pub mod seg;
pub mod stats;
pub mod utility;

pub use cli::{run, Cli};
