//! A compact real-time semantic segmentation network (BiSeNet V2 style) and its metrics,
//! for measuring how much generated data helps a downstream model (`labelgen-eval utility`).
//!
//! # Layout
//! - `layers.rs` — [`ConvBn`] (conv-BN-ReLU) and [`DwBlock`] (depthwise-separable block).
//! - `detail.rs` — [`DetailBranch`]: wide, shallow, 1/8 resolution.
//! - `semantic.rs` — [`SemanticBranch`]: narrow, deep, 1/32, context block (global pooling).
//! - `aggregation.rs` — [`Aggregation`]: bilateral guided aggregation of both branches.
//! - `head.rs` — [`SegHead`]: class logits upsampled (bilinear) to the input size.
//! - `cost.rs` — multiply-accumulates of a forward pass (`SegNet::macs`).
//! - `init.rs` — [`init::seeded_init`]: initial weights from the run's seed, not the backend RNG.
//! - `model.rs` — [`SegNet`] and [`SegNetConfig`] (class count, width).
//! - `loss.rs` — [`masked_cross_entropy`]: cross-entropy leaving out ignore pixels.
//! - `metrics.rs` — [`ConfusionMatrix`]: per-class IoU, mIoU, pixel accuracy.
//! - `train.rs` — [`train`] (Adam, seeded order and flips), [`predict`], [`evaluate`].

mod aggregation;
pub mod cost;
mod detail;
mod head;
pub mod init;
mod layers;
pub mod loss;
pub mod metrics;
mod model;
mod semantic;
pub mod train;

pub use aggregation::Aggregation;
pub use detail::DetailBranch;
pub use head::SegHead;
pub use layers::{ConvBn, ConvBnConfig, DwBlock, DwBlockConfig};
pub use loss::masked_cross_entropy;
pub use metrics::{constant_prediction, majority_class, ConfusionMatrix};
pub use model::{SegNet, SegNetConfig};
pub use semantic::SemanticBranch;
pub use train::{evaluate, flip_pair, inference, predict, train, Progress, SegTrainOptions};

#[cfg(test)]
mod tests;
