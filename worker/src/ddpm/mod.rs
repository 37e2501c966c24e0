//! DDPM label-map generator: an unconditional diffusion model over encoded label maps.
//!
//! # Layout
//! - `unet/` — the UNet: `time_embedding.rs`, `res_block.rs`,
//!   `attention.rs`, `updown.rs` (down/upsample), `unet.rs` ([`UNetConfig`], [`UNet`]).
//! - `encoding.rs` — [`Encoding`]: label maps ↔ `[-1, 1]` images (`onehot`, `gray`).
//! - `objective.rs` — [`Objective`]: what the network predicts (`eps` with MSE, or `x0`
//!   class logits with cross-entropy) and how `x̂_0` follows from it.
//! - `schedule.rs` — [`NoiseSchedule`]: linear and cosine β, ᾱ.
//! - `sampler.rs` — [`SamplerConfig`]: DDPM ancestral and DDIM sampling, all noise drawn on
//!   the host from each sample's own seed.
//! - `model.rs` — [`DdpmModel`]: the artifact (weights + `model.json`), load, save, sample.
//! - `sample_dir.rs` — sampling label maps into a directory (`worker sample-labels`).
//! - `stage.rs` — [`stage::LabelStage`]: sampling, cleanup and upscale as the pipeline runs
//!   them (shared with `labelgen-eval sampling`).
//! - `train/` — training: `mod.rs` (the loop), `ema.rs`, `clip.rs` (global-norm gradient
//!   clipping), `checkpoint.rs`, `run.rs` (a run on a dataset's train split with progress
//!   reporting, as `worker train ddpm` starts it).

pub mod encoding;
pub mod model;
pub mod objective;
pub mod sample_dir;
pub mod sampler;
pub mod schedule;
pub mod stage;
pub mod train;
pub mod unet;

pub use encoding::Encoding;
pub use model::{DdpmMeta, DdpmModel};
pub use objective::Objective;
pub use sampler::SamplerConfig;
pub use schedule::{NoiseSchedule, ScheduleKind};
pub use train::{train, DdpmTrainConfig, TrainData, TrainEvent, TrainOutcome};
pub use unet::{UNet, UNetConfig};
