//! The UNet of Ho et al. (DDPM), one block per file; it predicts ε or x0 class logits
//! (see [`crate::ddpm::Objective`]).

mod attention;
mod norm;
mod res_block;
mod time_embedding;
#[allow(clippy::module_inception)]
mod unet;
mod updown;

pub use attention::{Attention, AttentionConfig};
pub use norm::group_norm;
pub use res_block::{ResBlock, ResBlockConfig};
pub use time_embedding::{sinusoidal_embedding, TimeEmbedding, TimeEmbeddingConfig};
pub use unet::{UNet, UNetConfig};
pub use updown::{Downsample, DownsampleConfig, Upsample, UpsampleConfig};
