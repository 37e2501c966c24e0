//! Writing a procedural dataset to disk: `images/`, `labels/` and `previews/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::shares::{ClassShares, NUM_CLASSES};
use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::label::{LabelMap, RgbImage};

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetSummary {
    /// Tiles written.
    pub count: u64,
    /// Tile side in pixels.
    pub size: u32,
    /// Pixels of each class index over all tiles.
    pub class_pixels: [u64; NUM_CLASSES],
}

impl DatasetSummary {
    /// Each class's share of all pixels written.
    pub fn shares(&self) -> [f64; NUM_CLASSES] {
        let total: u64 = self.class_pixels.iter().sum();
        self.class_pixels.map(|c| if total == 0 { 0.0 } else { c as f64 / total as f64 })
    }
}

/// File stem of tile `index`: `000042`.
pub fn tile_name(index: u64) -> String {
    format!("{index:06}")
}

/// The image and its colourised label side by side, for people.
pub fn preview(image: &RgbImage, labels: &LabelMap, classes: &ClassTable) -> RgbImage {
    let mut out = RgbImage::new(image.width + labels.width, image.height.max(labels.height));
    out.blit(image, 0, 0);
    out.blit(&labels.colorize(classes), image.width, 0);
    out
}

/// Writes `count` tiles of `size × size` for run seed `seed`: `out/images/NAME.png` (RGB),
/// `out/labels/NAME.png` (8-bit gray, raw AI Hub codes) and `out/previews/NAME.png`
/// (image | colourised label), NAME = `{index:06}`. Tiles are made in parallel on the
/// current rayon pool; every file's bytes depend only on `(seed, index, size, shares)`.
/// Each file is written under a temporary name in its directory and then renamed, so no
/// reader sees half a file. `on_progress` is called once per finished tile with the
/// number finished so far (from any worker thread; calls may arrive slightly out of
/// order).
pub fn write_dataset(out: &Path, count: u64, size: u32, seed: u64, shares: &ClassShares, on_progress: impl Fn(u64) + Sync) -> Result<DatasetSummary> {
    if size == 0 {
        return Err(Error::Invalid { origin: "procedural dataset".into(), key: "size".into(), message: "tile size must be positive".into() });
    }
    let classes = ClassTable::ai_hub();
    let dirs = ["images", "labels", "previews"].map(|d| out.join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let done = AtomicU64::new(0);
    let counts = (0..count)
        .into_par_iter()
        .map(|index| -> Result<[u64; NUM_CLASSES]> {
            let (image, labels) = super::sample(seed, index, size, shares);
            let name = format!("{}.png", tile_name(index));
            write_atomic(&dirs[0].join(&name), &image.to_png())?;
            write_atomic(&dirs[1].join(&name), &labels.to_png(&classes))?;
            write_atomic(&dirs[2].join(&name), &preview(&image, &labels, &classes).to_png())?;
            on_progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            let c = labels.class_counts(NUM_CLASSES);
            Ok(std::array::from_fn(|k| c[k]))
        })
        .try_reduce(|| [0u64; NUM_CLASSES], |a, b| Ok(std::array::from_fn(|k| a[k] + b[k])))?;
    Ok(DatasetSummary { count, size, class_pixels: counts })
}

/// Writes `bytes` to `path` by way of a temporary file in the same directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
