//! Writing a procedural dataset to disk: `images/`, `labels/` and `previews/`.

use std::path::Path;
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
            crate::files::write_atomic(&dirs[0].join(&name), &image.to_png())?;
            crate::files::write_atomic(&dirs[1].join(&name), &labels.to_png(&classes))?;
            crate::files::write_atomic(&dirs[2].join(&name), &preview(&image, &labels, &classes).to_png())?;
            on_progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            let c = labels.class_counts(NUM_CLASSES);
            Ok(std::array::from_fn(|k| c[k]))
        })
        .try_reduce(|| [0u64; NUM_CLASSES], |a, b| Ok(std::array::from_fn(|k| a[k] + b[k])))?;
    Ok(DatasetSummary { count, size, class_pixels: counts })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("labelgen-procedural-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `(relative path, bytes)` of every file under `dir`, sorted.
    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for sub in ["images", "labels", "previews"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let p = e.unwrap().path();
                out.push((format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn same_seed_gives_identical_files_on_any_thread_count() {
        let (a, b, c) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("c"));
        let s = ClassShares::default();
        let progress = AtomicU64::new(0);
        let sum = write_dataset(&a.0, 6, 96, 42, &s, |_| {
            progress.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), 6, "one progress call per tile");
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let sum_b = one.install(|| write_dataset(&b.0, 6, 96, 42, &s, |_| {})).unwrap();
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        three.install(|| write_dataset(&c.0, 6, 96, 42, &s, |_| {})).unwrap();
        let (fa, fb, fc) = (files(&a.0), files(&b.0), files(&c.0));
        assert_eq!(fa.len(), 18, "3 files per tile, and no temporary files left: {:?}", fa.iter().map(|f| &f.0).collect::<Vec<_>>());
        assert!(fa.iter().any(|f| f.0 == "labels/000005.png"));
        assert!(fa == fb && fa == fc, "the same seed must give byte-identical files");
        assert_eq!(sum, sum_b);
        assert_eq!(sum.class_pixels.iter().sum::<u64>(), 6 * 96 * 96);
    }

    #[test]
    fn different_seeds_give_different_tiles() {
        let s = ClassShares::default();
        let (i1, l1) = super::super::sample(1, 0, 96, &s);
        let (i2, l2) = super::super::sample(2, 0, 96, &s);
        let (i3, l3) = super::super::sample(1, 1, 96, &s);
        assert_ne!(l1, l2);
        assert_ne!(l1, l3);
        assert_ne!(i1, i2);
        assert_ne!(i1, i3);
    }

    #[test]
    fn written_files_decode_to_the_generated_tiles() {
        let d = TempDir::new("rt");
        let s = ClassShares::default();
        let classes = ClassTable::ai_hub();
        write_dataset(&d.0, 3, 80, 9, &s, |_| {}).unwrap();
        for i in 0..3 {
            let (image, labels) = super::super::sample(9, i, 80, &s);
            let name = format!("{}.png", tile_name(i));
            let lbytes = std::fs::read(d.0.join("labels").join(&name)).unwrap();
            let back = LabelMap::from_png(&lbytes, &classes, &name).unwrap();
            assert_eq!(back, labels, "label PNG round trip of tile {i}");
            // The PNG holds raw codes of the table: 10, 20, …, 80.
            let (_, _, color, raw) = crate::label::decode_png(&lbytes, &name).unwrap();
            assert_eq!(color, png::ColorType::Grayscale);
            assert!(raw.iter().all(|&c| c % 10 == 0 && (10..=80).contains(&c)));
            let ibytes = std::fs::read(d.0.join("images").join(&name)).unwrap();
            assert_eq!(RgbImage::from_png(&ibytes, &name).unwrap(), image);
            let pv = RgbImage::from_png(&std::fs::read(d.0.join("previews").join(&name)).unwrap(), &name).unwrap();
            assert_eq!((pv.width, pv.height), (160, 80));
            assert_eq!(pv.pixel(80 + 5, 7), classes.color_of_index(labels.get(5, 7)));
        }
    }

    #[test]
    fn io_errors_name_the_path() {
        let d = TempDir::new("io");
        std::fs::create_dir_all(&d.0).unwrap();
        let blocker = d.0.join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = write_dataset(&blocker, 1, 32, 0, &ClassShares::default(), |_| {}).unwrap_err().to_string();
        assert!(err.contains("file"), "{err}");
    }
}
