//! Sampling label maps into a directory, as `worker sample-labels` does:
//! `OUT/labels/{index:06}.png` (8-bit raw class codes, like training labels; at the model's size,
//! or full size made the smooth way),
//! `OUT/previews/{index:06}.png` (colourised) and `OUT/grid.png` (the first 256 previews);
//! maps of an earlier, larger sampling into the same `OUT` (it left a `grid.png`) are
//! removed.
//! Sample `i` has seed [`shared::sample_seed`]`(seed, i)`, so it is the same whatever the
//! batch size.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::Backend;
use shared::dataset::grid;
use shared::sample_seed;

use super::{DdpmModel, SamplerConfig};

/// Previews kept for `grid.png`.
pub const GRID_MAX: usize = 256;

/// What [`sample_to_dir`] did.
#[derive(Debug, Clone, Copy)]
pub struct Sampled {
    pub count: u64,
    /// Side of the maps.
    pub size: u32,
    /// Network evaluations per map.
    pub steps_per_sample: u64,
    pub seconds: f64,
}

impl Sampled {
    pub fn maps_per_sec(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }
}

/// Samples `count` maps with `sampler` (checked against the model by the caller), `batch`
/// at a time, into `out` (created if missing), with a progress bar counted in sampler
/// steps. With `smooth = Some(S)` the maps are `S × S`, made the way
/// `pipeline.labels.upscale = "smooth"` makes them ([`DdpmModel::sample_smooth`]; one-hot
/// models only). Errors name the file.
pub fn sample_to_dir<B: Backend>(model: &DdpmModel<B>, sampler: &SamplerConfig, count: u64, seed: u64, batch: usize, smooth: Option<u32>, out: &Path) -> anyhow::Result<Sampled> {
    anyhow::ensure!(count > 0 && batch > 0, "count and batch must be at least 1");
    if let Some(s) = smooth {
        anyhow::ensure!(model.meta.encoding == crate::ddpm::Encoding::OneHot, "the smooth upscale needs a onehot label model; this one is {}", model.meta.encoding);
        anyhow::ensure!((1..=8192).contains(&s), "smooth size {s}: must be between 1 and 8192 pixels");
    }
    let labels_dir = out.join("labels");
    let previews_dir = out.join("previews");
    for d in [&labels_dir, &previews_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let per_sample = sampler.num_steps(model.meta.timesteps) as u64;
    let bar = shared::progress::bar(count * per_sample, "steps");
    let start = Instant::now();
    let classes = model.classes().clone();
    let mut previews = Vec::new();
    let mut done = 0u64;
    let indices: Vec<u64> = (0..count).collect();
    for chunk in indices.chunks(batch) {
        let seeds: Vec<u64> = chunk.iter().map(|&i| sample_seed(seed, i)).collect();
        let base = bar.position();
        bar.set_message(format!("{done}/{count} maps"));
        let mut on_step = |step: usize, _| {
            bar.set_position(base + step as u64 * chunk.len() as u64);
            super::sampler::go_on(step, 0)
        };
        let maps = match smooth {
            None => model.sample_with_progress(&seeds, sampler, &mut on_step),
            Some(s) => model.sample_smooth(&seeds, sampler, s, &mut on_step),
        };
        for (&i, map) in chunk.iter().zip(&maps) {
            let name = format!("{i:06}.png");
            let p = labels_dir.join(&name);
            std::fs::write(&p, map.to_png(&classes)).with_context(|| format!("writing {}", p.display()))?;
            let rgb = map.colorize(&classes);
            let p = previews_dir.join(&name);
            std::fs::write(&p, rgb.to_png()).with_context(|| format!("writing {}", p.display()))?;
            if previews.len() < GRID_MAX {
                previews.push(rgb);
            }
        }
        done += chunk.len() as u64;
    }
    bar.finish_and_clear();
    let p = out.join("grid.png");
    if p.exists() {
        remove_stale(&[&labels_dir, &previews_dir], count)?;
    }
    let cols = (previews.len() as f64).sqrt().ceil() as usize;
    std::fs::write(&p, grid(&previews, cols).to_png()).with_context(|| format!("writing {}", p.display()))?;
    Ok(Sampled { count, size: smooth.unwrap_or(model.size()), steps_per_sample: per_sample, seconds: start.elapsed().as_secs_f64() })
}

/// Removes maps of an earlier, larger sampling into the same directories (`NNNNNN.png`,
/// six digits or more, with an index of `count` or more): otherwise `worker cleanup` and
/// `worker synthesize` would take them for this one's. Called once this sampling is done,
/// only where an earlier one left its `grid.png` (not in a dataset of the user's that
/// happens to use such names). Other files are left alone.
fn remove_stale(dirs: &[&Path], count: u64) -> anyhow::Result<()> {
    let mut removed = 0u64;
    for dir in dirs {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let ours = path.extension().is_some_and(|e| e == "png") && stem.len() >= 6 && stem.bytes().all(|b| b.is_ascii_digit());
            if ours && stem.parse::<u64>().is_ok_and(|i| i >= count) {
                std::fs::remove_file(&path).with_context(|| format!("removing {} (a map of an earlier sampling)", path.display()))?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} maps and previews of an earlier sampling of more maps from {}",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" and ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use crate::ddpm::{DdpmMeta, Encoding, UNetConfig};

    /// An untrained 8×8 model: enough to check the files and their seeds.
    fn tiny_model() -> DdpmModel<Cpu> {
        let device = CpuDevice::default();
        let classes = shared::ClassTable::ai_hub();
        let unet = UNetConfig::new(Encoding::OneHot.channels(classes.len()), 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4);
        let meta = DdpmMeta::untrained(unet, Encoding::OneHot, 20, 8);
        DdpmModel::new(meta.unet.init(&device), meta, device)
    }

    #[test]
    fn writes_labels_previews_and_a_grid() {
        let dir = std::env::temp_dir().join(format!("labelgen-sample-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let model = tiny_model();
        let sampler = SamplerConfig::ddim(4, 0.0);
        let done = sample_to_dir(&model, &sampler, 3, 7, 2, None, &dir.join("a")).unwrap();
        assert_eq!((done.count, done.size, done.steps_per_sample), (3, 8, 4));
        sample_to_dir(&model, &sampler, 3, 7, 2, None, &dir.join("b")).unwrap();
        for i in 0..3 {
            let name = format!("{i:06}.png");
            let a = std::fs::read(dir.join("a/labels").join(&name)).unwrap();
            let map = shared::LabelMap::from_png(&a, model.classes(), &name).unwrap();
            assert_eq!((map.width, map.height), (8, 8));
            assert_eq!(a, std::fs::read(dir.join("b/labels").join(&name)).unwrap(), "{name}: the same seeds give the same maps");
            assert!(dir.join("a/previews").join(&name).is_file());
        }
        assert!(dir.join("a/grid.png").is_file());
        // Sampling fewer into the same place leaves no map of the first run behind (a
        // file of the user's stays, and a directory no sampling wrote keeps its maps).
        std::fs::write(dir.join("a/labels/notes.png"), b"mine").unwrap();
        std::fs::write(dir.join("a/labels/1000000.png"), b"a 7-digit index").unwrap();
        sample_to_dir(&model, &sampler, 2, 7, 2, None, &dir.join("a")).unwrap();
        for sub in ["labels", "previews"] {
            assert!(dir.join("a").join(sub).join("000001.png").is_file() && !dir.join("a").join(sub).join("000002.png").exists(), "{sub}");
        }
        assert!(dir.join("a/labels/notes.png").is_file() && !dir.join("a/labels/1000000.png").exists());
        std::fs::remove_file(dir.join("b/grid.png")).unwrap();
        sample_to_dir(&model, &sampler, 1, 7, 2, None, &dir.join("b")).unwrap();
        assert!(dir.join("b/labels/000002.png").is_file(), "no grid.png: not a sampling's directory");

        // The smooth way: full-size maps, the same ones the pipeline's smooth stage makes.
        let done = sample_to_dir(&model, &sampler, 3, 7, 2, Some(24), &dir.join("s")).unwrap();
        assert_eq!(done.size, 24);
        let smooth = model.sample_smooth(&[sample_seed(7, 2)], &sampler, 24, &mut super::super::sampler::go_on);
        let name = "000002.png";
        let written = std::fs::read(dir.join("s/labels").join(name)).unwrap();
        assert_eq!(shared::LabelMap::from_png(&written, model.classes(), name).unwrap(), smooth[0]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
