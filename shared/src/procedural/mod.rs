//! Procedural land-cover data: label maps with a plausible layout, rendered as crude
//! aerial photographs, for training and testing without real imagery.
//!
//! ```no_run
//! use shared::procedural::{sample, ClassShares};
//! let (image, labels) = sample(1, 0, 512, &ClassShares::default());
//! ```
//!
//! # Layout
//! - `mod.rs` — the public API: [`sample`], [`generate_labels`], [`render`],
//!   [`write_dataset`], [`ClassShares`].
//! - `shares.rs` — [`ClassShares`]: per-class pixel shares, validation, `name=share`
//!   parsing.
//! - `noise.rs` — seeded draws for the layout and hash noise for the renderer.
//! - `layout/` — `(seed, size, shares) → LabelMap`: `canvas.rs` (shapes and the class map
//!   being painted), `roads.rs`, `urban.rs` (buildings, parking lots), `vegetation.rs`
//!   (street trees, forest), `fields.rs` (paddies, dry fields, bare land); `mod.rs` runs
//!   the stages in order.
//! - `render/` — `(LabelMap, seed) → RgbImage`: `analysis.rs` (regions, edge distance,
//!   shadows), `materials.rs` (per-class colour and texture), `mod.rs` (lighting, camera).
//! - `dataset.rs` — [`write_dataset`]: images, labels and previews on disk, in parallel.
//!
//! # Determinism
//! A tile is a pure function of `(run seed, index, size, shares)`: its seed is
//! [`crate::sample_seed`]`(run_seed, index)`, the layout draws from RNG stream 1 of that
//! seed and the renderer from stream 2, and the renderer's per-pixel noise is a hash of
//! the coordinates. The same arguments give the same bytes whatever the thread count.

mod dataset;
mod layout;
mod noise;
mod render;
mod shares;

pub use dataset::{preview, tile_name, write_dataset, DatasetSummary};
pub use layout::generate_labels;
pub use render::render;
pub use shares::{ClassShares, NUM_CLASSES};

use crate::label::{LabelMap, RgbImage};

/// Tile `index` of the run seeded `run_seed`: its image and its label map (class indices
/// `0..8` of [`crate::ClassTable::ai_hub`]), `size × size`.
///
/// # Panics
/// If `size` is 0.
pub fn sample(run_seed: u64, index: u64, size: u32, shares: &ClassShares) -> (RgbImage, LabelMap) {
    let seed = crate::sample_seed(run_seed, index);
    let labels = generate_labels(seed, size, shares);
    let image = render(&labels, seed);
    (image, labels)
}
