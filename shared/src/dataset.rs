//! A training dataset on disk: `DIR/images/NAME.png` (RGB) and `DIR/labels/NAME.png`
//! (8-bit grayscale raw class codes) sharing file stems — the layout `worker procedural`
//! writes and the AI Hub land-cover set uses.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::label::{LabelMap, RgbImage};

/// The pairs of a dataset directory, by stem (sorted).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub stems: Vec<String>,
    pub classes: ClassTable,
}

impl Dataset {
    /// Lists `DIR/labels/*.png`; every label needs its image (`DIR/images/STEM.png`) unless
    /// `labels_only`. Errors name the directory or the file.
    pub fn open(dir: &Path, classes: ClassTable, labels_only: bool) -> Result<Dataset> {
        let labels = dir.join("labels");
        let rd = std::fs::read_dir(&labels).map_err(|e| Error::io(&labels, e))?;
        let mut stems = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&labels, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".png") {
                if !labels_only && !dir.join("images").join(&name).exists() {
                    return Err(Error::format(dir.join("images").join(&name).display(), "missing: every label needs an image with the same file name"));
                }
                stems.push(stem.to_string());
            }
        }
        if stems.is_empty() {
            return Err(Error::format(labels.display(), "no .png label files found (expected DIR/labels/NAME.png and DIR/images/NAME.png)"));
        }
        stems.sort();
        Ok(Dataset { dir: dir.to_path_buf(), stems, classes })
    }

    pub fn len(&self) -> usize {
        self.stems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stems.is_empty()
    }

    pub fn label_path(&self, stem: &str) -> PathBuf {
        self.dir.join("labels").join(format!("{stem}.png"))
    }

    pub fn image_path(&self, stem: &str) -> PathBuf {
        self.dir.join("images").join(format!("{stem}.png"))
    }

    /// The label map of `stem`, nearest-resized to `size × size` if given.
    pub fn label(&self, stem: &str, size: Option<u32>) -> Result<LabelMap> {
        let p = self.label_path(stem);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let m = LabelMap::from_png(&bytes, &self.classes, &p.display().to_string())?;
        Ok(match size {
            Some(s) if s != m.width || s != m.height => m.resize_nearest(s, s),
            _ => m,
        })
    }

    /// The image of `stem`, resized (box filter down, nearest up) to `size × size` if given.
    /// Its size must equal its label's.
    pub fn image(&self, stem: &str, size: Option<u32>) -> Result<RgbImage> {
        let p = self.image_path(stem);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let img = RgbImage::from_png(&bytes, &p.display().to_string())?;
        Ok(match size {
            Some(s) if s != img.width || s != img.height => resize_rgb(&img, s, s),
            _ => img,
        })
    }

    /// sha256 over every file's name and bytes (labels, and images unless `labels_only`):
    /// the "digest of the training data" in a model's `model.json`.
    pub fn digest(&self, labels_only: bool) -> Result<String> {
        let mut h = Sha256::new();
        for stem in &self.stems {
            let mut paths = vec![self.label_path(stem)];
            if !labels_only {
                paths.push(self.image_path(stem));
            }
            for p in paths {
                let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
                h.update(stem.as_bytes());
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// Resizes an RGB image: area average when shrinking by an integer factor, nearest
/// otherwise.
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.width % w == 0 && img.height % h == 0 {
        let mut out = RgbImage::new(w, h);
        let (fx, fy) = (img.width / w, img.height / h);
        let n = fx * fy;
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0u32; 3];
                for dy in 0..fy {
                    for dx in 0..fx {
                        let p = img.pixel(x * fx + dx, y * fy + dy);
                        for c in 0..3 {
                            acc[c] += p[c] as u32;
                        }
                    }
                }
                out.put(x, y, [((acc[0] + n / 2) / n) as u8, ((acc[1] + n / 2) / n) as u8, ((acc[2] + n / 2) / n) as u8]);
            }
        }
        out
    } else {
        img.resize_nearest(w, h)
    }
}

/// Tiles equally sized images into a grid with `cols` columns and a 2-pixel gap.
pub fn grid(images: &[RgbImage], cols: usize) -> RgbImage {
    let cols = cols.max(1);
    let Some(first) = images.first() else { return RgbImage::new(1, 1) };
    let (w, h) = (first.width, first.height);
    let rows = images.len().div_ceil(cols);
    let gap = 2;
    let mut out = RgbImage::new(cols as u32 * (w + gap) + gap, rows as u32 * (h + gap) + gap);
    out.data.fill(255);
    for (i, img) in images.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        out.blit(img, gap + c * (w + gap), gap + r * (h + gap));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_shrink_averages_and_other_sizes_use_nearest() {
        let img = RgbImage { width: 2, height: 2, data: vec![0, 0, 0, 10, 20, 30, 20, 40, 60, 30, 60, 90] };
        assert_eq!(resize_rgb(&img, 1, 1).data, vec![15, 30, 45]);
        assert_eq!(resize_rgb(&img, 3, 3), img.resize_nearest(3, 3));
    }
}
