//! The SPADE image generator (Park et al.): paints an RGB image for a label map.
//!
//! # Layout
//! - `spectral.rs` — [`SnConv2d`]: convolution with spectral norm by power iteration.
//! - `norm.rs` — [`Spade`]: parameter-free norm modulated by the label map.
//! - `res_block.rs` — [`SpadeResBlock`]: SPADE residual block, learned shortcut.
//! - `generator.rs` — [`SpadeGenerator`] and [`SpadeGeneratorConfig`] (label map, or noise, → image;
//!   [`SpadeInput`]).
//! - `discriminator.rs` — [`SpadeDiscriminator`]: multi-scale PatchGAN.
//! - `input.rs` — per-seed noise (label maps and images become tensors in
//!   `crate::tensors`).
//! - `loss.rs` — hinge GAN loss and feature matching.
//! - `train.rs` — [`SpadeTrainer`]: one training step, checkpoints, both optimizers;
//!   [`fit`] over a [`shared::dataset::PairSource`].
//! - `model.rs` — [`SpadeModel`]: the artifact (weights + `model.json`: [`SpadeMeta`],
//!   [`SpadeTrainSettings`]) and inference.
//! - `vgg.rs` — the VGG19 perceptual loss (torchvision weights from a local file).
//! - `run.rs` — a training run on a dataset's train split with progress reporting, as
//!   `worker train spade` starts it.
//! - `synthesize_dir.rs` — painting an image for every label map of a directory
//!   (`worker synthesize`).

mod discriminator;
mod generator;
pub mod input;
pub mod loss;
mod model;
mod norm;
mod res_block;
pub mod run;
pub mod spectral;
pub mod synthesize_dir;
mod train;
pub mod vgg;

pub use discriminator::{PatchDiscriminator, SpadeDiscriminator, SpadeDiscriminatorConfig};
pub use generator::{default_n_up, SpadeGenerator, SpadeGeneratorConfig, SpadeInput};
pub use model::{save, Losses, SpadeMeta, SpadeModel, SpadeTrainSettings, FORMAT_VERSION, META_FILE, WEIGHTS_FILE};
pub use norm::{NormKind, ParamFreeNorm, Spade, SpadeConfig};
pub use res_block::{SpadeResBlock, SpadeResBlockConfig};
pub use spectral::{SnConv2d, SnConv2dConfig};
pub use train::{fit, preview, Progress, SpadeFitOptions, SpadeTrainer, StepLosses, CHECKPOINT_DIR, PREFETCH_BATCHES};
