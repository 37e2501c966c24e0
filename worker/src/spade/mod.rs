//! The SPADE image generator (Park et al.): paints an RGB image for a label map.
//!
//! # Layout
//! - `spectral.rs` — [`SnConv2d`]: convolution with spectral norm by power iteration.
//! - `norm.rs` — [`Spade`]: parameter-free norm modulated by the label map.
//! - `res_block.rs` — [`SpadeResBlock`]: SPADE residual block, learned shortcut.
//! - `generator.rs` — [`SpadeGenerator`] and [`SpadeGeneratorConfig`] (noise → image).
//! - `discriminator.rs` — [`SpadeDiscriminator`]: multi-scale PatchGAN.
//! - `input.rs` — per-seed noise (label maps and images become tensors in
//!   `crate::tensors`).
//! - `loss.rs` — hinge GAN loss and feature matching.
//! - `train.rs` — [`SpadeTrainer`]: one training step, checkpoints, both optimizers;
//!   [`fit`] over a [`shared::dataset::PairSource`].
//! - `model.rs` — [`SpadeModel`]: the artifact (weights + `model.json`: [`SpadeMeta`],
//!   [`TrainSettings`]) and inference.

mod discriminator;
mod generator;
pub mod input;
pub mod loss;
mod model;
mod norm;
mod res_block;
pub mod spectral;
mod train;
pub mod vgg;

pub use discriminator::{PatchDiscriminator, SpadeDiscriminator, SpadeDiscriminatorConfig};
pub use generator::{default_n_up, SpadeGenerator, SpadeGeneratorConfig};
pub use model::{save, Losses, SpadeMeta, SpadeModel, TrainSettings, FORMAT_VERSION, META_FILE, WEIGHTS_FILE};
pub use norm::{NormKind, Spade, SpadeConfig};
pub use res_block::{SpadeResBlock, SpadeResBlockConfig};
pub use spectral::{SnConv2d, SnConv2dConfig};
pub use train::{fit, preview, FitOptions, Progress, SpadeTrainer, StepLosses, CHECKPOINT_DIR};
