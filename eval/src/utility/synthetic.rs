//! The run's samples: a seeded pick from its manifest.jsonl, fetched once, resized and
//! written as a dataset directory (`images/`, `labels/` as raw codes) that every seed
//! trains from (the first picks) and the image–label consistency scores (all of them).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use rand::seq::SliceRandom;
use shared::dataset::{resize_rgb, Dataset};
use shared::manifest::layout::MANIFEST_JSONL;
use shared::storage::Store;
use shared::{rng_for, sample_seed, ClassTable, LabelMap, RgbImage};

use super::{write, Mix, UtilityOptions};

const SALT_PICK: u64 = 0x5E6_0101;

/// Fetches seeded picks of the run's manifest, resizes them to `--size` and writes them to
/// `dir` (replacing what was there, once all of it is fetched: a failed fetch leaves the
/// old `dir` as it was, and never a mix of two runs' files); returns it opened. Its first `n_mix` stems are the
/// samples mixed into training (the same picks whatever `--consistency-samples` says);
/// further picks follow, up to `--consistency-samples` in all and at most the run's size,
/// for the consistency alone. Errors name `--synthetic` and the file at fault.
pub(super) fn fetch(opts: &UtilityOptions, n_mix: usize, classes: &ClassTable, dir: &Path) -> anyhow::Result<Dataset> {
    let store = Store::open(&opts.synthetic).with_context(|| format!("--synthetic {}", opts.synthetic))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the I/O runtime")?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = dir.with_file_name(format!(".{name}.partial"));
    remove_dir(&partial)?;
    for sub in ["images", "labels"] {
        std::fs::create_dir_all(partial.join(sub)).with_context(|| format!("creating {}", partial.join(sub).display()))?;
    }
    let fetched = rt.block_on(async {
        let entries = shared::manifest::read_manifest(&store).await?;
        let (flag, f) = match opts.mix {
            Mix::Replace(f) => ("--replace", f),
            Mix::Add(f) => ("--add", f),
        };
        anyhow::ensure!(
            entries.len() >= n_mix,
            "{} lists {} samples, fewer than the {n_mix} that {flag} {f} of the real training split needs: lower {flag} or generate a larger run",
            store.describe(MANIFEST_JSONL),
            entries.len(),
        );
        let n = n_mix.max(opts.consistency_samples.min(entries.len()));
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.shuffle(&mut rng_for(sample_seed(opts.seed, SALT_PICK), 0));
        order.truncate(n);
        // Each part in manifest order; the mix's part first.
        order[..n_mix].sort_unstable();
        order[n_mix..].sort_unstable();
        // Where each fetched file goes: (picked position, is it the image).
        let mut paths = Vec::with_capacity(2 * n);
        let mut slot: HashMap<String, (usize, bool)> = HashMap::new();
        for (pos, &i) in order.iter().enumerate() {
            for (path, is_image) in [(&entries[i].image, true), (&entries[i].label, false)] {
                anyhow::ensure!(slot.insert(store.describe(path), (pos, is_image)).is_none(), "{}: {path} is listed twice", store.describe(MANIFEST_JSONL));
                paths.push(path.clone());
            }
        }
        let mut images: Vec<Option<RgbImage>> = vec![None; n];
        let mut labels: Vec<Option<LabelMap>> = vec![None; n];
        let bar = shared::progress::bar(2 * n as u64, "run files");
        shared::manifest::read_files(&store, &paths, |origin, bytes| -> anyhow::Result<()> {
            let &(pos, is_image) = slot.get(origin).ok_or_else(|| anyhow::anyhow!("{origin}: read but not asked for"))?;
            if is_image {
                images[pos] = Some(RgbImage::decode(&bytes, origin).context("unreadable image")?);
            } else {
                labels[pos] = Some(LabelMap::from_png(&bytes, classes, origin).context("unreadable label map")?);
            }
            bar.inc(1);
            Ok(())
        })
        .await?;
        bar.finish_and_clear();
        for (pos, &i) in order.iter().enumerate() {
            let e = &entries[i];
            let (Some(img), Some(lab)) = (images[pos].take(), labels[pos].take()) else {
                anyhow::bail!("{}: sample {}: its image or label was not read", store.describe(MANIFEST_JSONL), e.key);
            };
            anyhow::ensure!(
                (img.width, img.height) == (lab.width, lab.height),
                "{}: the image is {}×{} but its label {} is {}×{}",
                store.describe(&e.image),
                img.width,
                img.height,
                store.describe(&e.label),
                lab.width,
                lab.height
            );
            let s = opts.size;
            let img = if (img.width, img.height) == (s, s) { img } else { resize_rgb(&img, s, s) };
            // As the real pairs are read (`Dataset::label`): the mode of each block, so a
            // thin road stays a road in both arms.
            let lab = if (lab.width, lab.height) == (s, s) { lab } else { lab.resize_mode(s, s) };
            let stem = format!("{pos:08}");
            write(&partial.join("images").join(format!("{stem}.png")), &img.to_png())?;
            write(&partial.join("labels").join(format!("{stem}.png")), &lab.to_png(classes))?;
        }
        anyhow::Ok(())
    });
    if let Err(e) = fetched {
        // Nothing half-fetched stays behind; the error is the fetch's.
        let _ = remove_dir(&partial);
        return Err(e.context(format!("--synthetic {}", opts.synthetic)));
    }
    remove_dir(dir)?;
    std::fs::rename(&partial, dir).with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    Dataset::open(dir, classes.clone(), false).with_context(|| format!("reading back {}", dir.display()))
}

/// Removes `dir` and all it holds; nothing to do if it does not exist.
fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", dir.display())),
        _ => Ok(()),
    }
}
