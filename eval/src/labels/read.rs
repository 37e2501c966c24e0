//! Reading and measuring both sets: the real dataset's label maps in parallel, the run's
//! label files streamed in batches, each map resized to the size both are measured at.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use rayon::prelude::*;
use shared::dataset::Dataset;
use shared::progress;
use shared::storage::{Store, StoreUrl};
use shared::{ClassTable, LabelMap};

use super::LabelOptions;
use crate::stats::{LabelStats, StatsOptions};

/// Maps decoded and measured at once (their bytes are held until then).
const BATCH: usize = 64;

/// Both sets' statistics and what was done to get them.
pub(super) struct Measured {
    pub real: LabelStats,
    pub synthetic: LabelStats,
    pub real_resized: u64,
    pub synthetic_resized: u64,
    /// The size every synthetic map (and with `--size` every real map) was measured at.
    pub target: Option<(u32, u32)>,
    pub synthetic_source: String,
}

/// Reads and measures `--real` and `--synthetic`.
pub(super) fn measure(options: &LabelOptions, classes: &ClassTable, opts: StatsOptions) -> anyhow::Result<Measured> {
    let k = classes.len();
    let fixed = options.size.map(|s| (s, s));

    let (real, real_resized) = measure_real(&options.real, fixed, classes, opts).with_context(|| format!("--real {}", options.real.display()))?;
    let target = fixed.or_else(|| real.most_common_size());

    // Synthetic: the run's manifest (or a local directory's labels/*.png), then its label
    // files in batches.
    let mut listed: Option<Vec<String>> = None;
    if let Ok(StoreUrl::Local { dir }) = StoreUrl::parse(&options.synthetic) {
        if !dir.is_dir() {
            anyhow::bail!("--synthetic {}: no such directory (expected a run directory holding manifest.jsonl, or a directory with labels/*.png or *.png)", options.synthetic);
        }
        if !dir.join(shared::manifest::layout::MANIFEST_JSONL).exists() {
            if dir.join("labels").is_dir() {
                listed = Some(label_pngs(&dir, "labels").with_context(|| format!("--synthetic {}", options.synthetic))?);
            } else if let Ok(names) = label_pngs(&dir, "") {
                listed = Some(names);
            }
        }
    }
    let store = Store::open(&options.synthetic).with_context(|| format!("--synthetic {}", options.synthetic))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the I/O runtime")?;
    let resized = AtomicU64::new(0);
    let synthetic = rt
        .block_on(async {
            let paths = match listed {
                Some(paths) => paths,
                None => shared::manifest::read_manifest(&store).await?.into_iter().map(|l| l.label).collect(),
            };
            let bar = progress::bar(paths.len() as u64, "synthetic maps");
            let mut total = LabelStats::new(k, opts);
            let mut batch: Vec<(String, Vec<u8>)> = Vec::with_capacity(BATCH);
            shared::manifest::read_files(&store, &paths, |origin, bytes| -> anyhow::Result<()> {
                batch.push((origin.to_string(), bytes));
                if batch.len() >= BATCH {
                    add_batch(&mut total, &mut batch, classes, opts, target, &resized, &|| bar.inc(1))?;
                }
                Ok(())
            })
            .await?;
            add_batch(&mut total, &mut batch, classes, opts, target, &resized, &|| bar.inc(1))?;
            bar.finish_and_clear();
            anyhow::Ok(total)
        })
        .with_context(|| format!("--synthetic {}", options.synthetic))?;
    Ok(Measured { real, synthetic, real_resized, synthetic_resized: resized.into_inner(), target, synthetic_source: store.display().to_string() })
}

/// Measures a real dataset's label maps (`DIR/labels/*.png`) in parallel, one map per
/// task at a time, each resized (block mode shrinking, nearest growing) to `fixed` if given; also returns how many were
/// resized.
pub(crate) fn measure_real(dir: &Path, fixed: Option<(u32, u32)>, classes: &ClassTable, opts: StatsOptions) -> anyhow::Result<(LabelStats, u64)> {
    let k = classes.len();
    let ds = Dataset::open(dir, classes.clone(), true)?;
    let bar = progress::bar(ds.len() as u64, "real maps");
    let resized = AtomicU64::new(0);
    let real = ds
        .stems
        .par_iter()
        .map(|stem| -> anyhow::Result<LabelStats> {
            let map = fit(ds.label(stem, None)?, fixed, &resized);
            let mut s = LabelStats::new(k, opts);
            s.add(&map);
            bar.inc(1);
            Ok(s)
        })
        .try_reduce(
            || LabelStats::new(k, opts),
            |mut a, b| {
                a.merge(&b);
                Ok(a)
            },
        )?;
    bar.finish_and_clear();
    Ok((real, resized.into_inner()))
}

/// Decodes and measures `batch` (origin, PNG bytes) in parallel, adds it to `total`, and
/// empties it.
fn add_batch(
    total: &mut LabelStats,
    batch: &mut Vec<(String, Vec<u8>)>,
    classes: &ClassTable,
    opts: StatsOptions,
    target: Option<(u32, u32)>,
    resized: &AtomicU64,
    tick: &(impl Fn() + Sync),
) -> anyhow::Result<()> {
    let part = batch
        .par_iter()
        .map(|(origin, bytes)| -> anyhow::Result<LabelStats> {
            let map = LabelMap::from_png(bytes, classes, origin).context("unreadable label map")?;
            let mut s = LabelStats::new(classes.len(), opts);
            s.add(&fit(map, target, resized));
            tick();
            Ok(s)
        })
        .try_reduce(
            || LabelStats::new(classes.len(), opts),
            |mut a, b| {
                a.merge(&b);
                Ok(a)
            },
        )?;
    total.merge(&part);
    batch.clear();
    Ok(())
}

/// `map` resized to `target` if it differs (the most frequent label of each block when
/// shrinking, so thin roads and street trees keep their share; nearest when growing);
/// counts the resizes.
pub(crate) fn fit(map: LabelMap, target: Option<(u32, u32)>, resized: &AtomicU64) -> LabelMap {
    match target {
        Some((w, h)) if (w, h) != (map.width, map.height) => {
            resized.fetch_add(1, Ordering::Relaxed);
            map.resize_mode(w, h)
        }
        _ => map,
    }
}

/// `SUB/NAME.png` (or `NAME.png` when `sub` is empty) for every PNG in `dir/SUB` (the
/// `labels/` of a `worker sample-labels` output, or a `worker cleanup` output), sorted;
/// an error when there is none.
fn label_pngs(dir: &Path, sub: &str) -> anyhow::Result<Vec<String>> {
    let from = if sub.is_empty() { dir.to_path_buf() } else { dir.join(sub) };
    let mut names: Vec<String> = std::fs::read_dir(&from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".png"))
        .map(|n| if sub.is_empty() { n } else { format!("{sub}/{n}") })
        .collect();
    anyhow::ensure!(!names.is_empty(), "{}: no .png label maps (and no manifest.jsonl in {})", from.display(), dir.display());
    names.sort();
    Ok(names)
}
