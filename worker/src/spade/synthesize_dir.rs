//! Painting an image for every label map in a directory, as `worker synthesize` does:
//! reads `DIR/*.png` (or `DIR/labels/*.png`), 8-bit grayscale raw class codes resized
//! nearest to the model's size, and writes `OUT/NAME.png`. Image `i` (in file-name order)
//! uses the noise seed [`shared::sample_seed`]`(seed, i)`, so the same inputs give the same
//! images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::Backend;
use shared::{sample_seed, LabelMap};

use super::SpadeModel;

/// The label maps of `dir`: `dir/labels/*.png` when `dir/labels` is a directory (a
/// dataset directory), else `dir/*.png`; sorted by name. None is an error naming the
/// directory.
pub fn label_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = if dir.join("labels").is_dir() { dir.join("labels") } else { dir.to_path_buf() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{}: no .png label maps found", dir.display());
    }
    Ok(files)
}

/// What [`synthesize_files`] did.
#[derive(Debug, Clone, Copy)]
pub struct Painted {
    pub count: usize,
    /// Side of the images.
    pub size: u32,
    pub seconds: f64,
}

impl Painted {
    pub fn images_per_sec(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }
}

/// Paints `files` (label PNGs, e.g. from [`label_files`]), `batch` at a time, into `out`
/// (created if missing) under their own names, with a progress bar. Errors name the file.
pub fn synthesize_files<B: Backend>(model: &SpadeModel<B>, files: &[PathBuf], seed: u64, batch: usize, out: &Path) -> anyhow::Result<Painted> {
    anyhow::ensure!(batch > 0, "batch must be at least 1");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let size = model.size();
    let bar = shared::progress::bar(files.len() as u64, "images");
    let start = Instant::now();
    for (c, chunk) in files.chunks(batch).enumerate() {
        let mut labels = Vec::with_capacity(chunk.len());
        for p in chunk {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let map = LabelMap::from_png(&bytes, model.classes(), &p.display().to_string())?;
            labels.push(if map.width == size && map.height == size { map } else { map.resize_nearest(size, size) });
        }
        let seeds: Vec<u64> = (0..chunk.len()).map(|i| sample_seed(seed, (c * batch + i) as u64)).collect();
        for (img, p) in model.synthesize(&labels, &seeds).into_iter().zip(chunk) {
            let dest = out.join(p.file_name().expect("a file name"));
            std::fs::write(&dest, img.to_png()).with_context(|| format!("writing {}", dest.display()))?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Painted { count: files.len(), size, seconds: start.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use crate::spade::{Losses, SpadeDiscriminatorConfig, SpadeGeneratorConfig, SpadeMeta, SpadeTrainSettings};

    #[test]
    fn paints_every_label_map_of_a_dataset_directory() {
        let dir = std::env::temp_dir().join(format!("labelgen-synthesize-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        let e = label_files(&data).unwrap_err().to_string();
        assert!(e.contains("data"), "{e}");
        shared::procedural::write_dataset(&data, 3, 16, 1, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
        let files = label_files(&data).unwrap();
        assert_eq!(files.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(), ["000000.png", "000001.png", "000002.png"]);
        assert!(files[0].starts_with(data.join("labels")));
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        let e = label_files(&dir.join("empty")).unwrap_err().to_string();
        assert!(e.contains("no .png label maps"), "{e}");

        let device = CpuDevice::default();
        let classes = shared::ClassTable::ai_hub();
        let k = classes.len();
        let arch = SpadeGeneratorConfig::small(k, 8, 4);
        let meta = SpadeMeta::new(arch.clone(), SpadeDiscriminatorConfig::new(k), classes, "random".into(), 0, Losses::default(), SpadeTrainSettings::default());
        let model = SpadeModel::<Cpu> { generator: arch.init(&device), meta };
        let done = synthesize_files(&model, &files, 5, 2, &dir.join("out")).unwrap();
        assert_eq!((done.count, done.size), (3, 8));
        for f in &files {
            let p = dir.join("out").join(f.file_name().unwrap());
            let img = shared::RgbImage::from_png(&std::fs::read(&p).unwrap(), "t").unwrap();
            assert_eq!((img.width, img.height), (8, 8), "{} resized to the model's size", p.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
