//! DDPM label-map generator: an unconditional diffusion model over encoded label maps.
//!
//! # Layout
//! - `unet/` — the ε-prediction UNet: `time_embedding.rs`, `res_block.rs`,
//!   `attention.rs`, `updown.rs` (down/upsample), `unet.rs` ([`UNetConfig`], [`UNet`]).
//! - `encoding.rs` — [`Encoding`]: label maps ↔ `[-1, 1]` images (`onehot`, `gray`).
//! - `schedule.rs` — [`NoiseSchedule`]: linear and cosine β, ᾱ.
//! - `sampler.rs` — [`SamplerConfig`]: DDPM ancestral and DDIM sampling, all noise drawn on
//!   the host from each sample's own seed.
//! - `model.rs` — [`DdpmModel`]: the artifact (weights + `model.json`), load, save, sample.
//! - `train/` — training: `mod.rs` (the loop), `ema.rs`, `clip.rs` (global-norm gradient
//!   clipping), `checkpoint.rs`.

pub mod encoding;
pub mod model;
pub mod sampler;
pub mod schedule;
pub mod train;
pub mod unet;

pub use encoding::Encoding;
pub use model::{DdpmModel, ModelMeta};
pub use sampler::{SamplerConfig, SamplerKind};
pub use schedule::{NoiseSchedule, ScheduleKind};
pub use train::{train, TrainConfig, TrainData, TrainEvent, TrainOutcome};
pub use unet::{UNet, UNetConfig};
