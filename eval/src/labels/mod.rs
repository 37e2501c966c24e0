//! Label statistics of a run against a real dataset (`labelgen-eval labels`): reads every
//! label map of both sets, measures them with [`crate::stats`], and writes `labels.json`
//! and the plots of [`crate::plot`].
//!
//! Component sizes scale with resolution, so both sets are measured at one size: with
//! [`LabelOptions::size`] both are resized to it (the most frequent label of each block
//! when shrinking, nearest when growing); without it, synthetic maps whose size differs
//! from the real maps' most common size are resized to that, and `labels.json` says so in
//! its notes.
//!
//! # Layout
//! - `mod.rs` — [`LabelOptions`], [`evaluate`] (measure, compare, write), [`Evaluation`].
//! - `read.rs` — reading and measuring both sets: the real dataset's labels in parallel,
//!   the run's label files (manifest.jsonl, or a directory of PNGs) streamed in batches.
//! - `report.rs` — `labels.json`, its notes about sizes, and the table printed for people.
//! - `tests.rs` — end-to-end runs on procedural maps: identical sets, planted islands,
//!   resizing, and errors.

pub(crate) mod read;
mod report;

use std::path::PathBuf;

use anyhow::Context;
use shared::files::write_atomic;
use shared::ClassTable;

use crate::plot::{adjacency_plot, component_plot, share_plot, PlotSet};
use crate::stats::{compare, Connectivity, LabelComparison, StatsOptions};

/// What to compare and how (the flags of `labelgen-eval labels`).
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// The real dataset directory (`DIR/labels/*.png`, raw codes of `classes`).
    pub real: PathBuf,
    /// The run: a directory holding manifest.jsonl as a local path, `file://` or `s3://`
    /// URI; or a local directory of `labels/*.png` or `*.png` without a manifest.
    pub synthetic: String,
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Components with fewer pixels count as islands.
    pub min_island: u32,
    /// Measure both sets resized (block mode shrinking, nearest growing) to `S × S`.
    pub size: Option<u32>,
    pub connectivity: Connectivity,
    /// The class table of both sets.
    pub classes: ClassTable,
}

/// What [`evaluate`] measured and wrote.
#[derive(Debug)]
pub struct Evaluation {
    pub distances: LabelComparison,
    /// What the reader should know about sizes (also in labels.json).
    pub notes: Vec<String>,
    /// The distances and the figures behind them, for people.
    pub table: String,
    /// `OUT/labels.json`.
    pub json: PathBuf,
    /// `OUT/shares.png`, `OUT/adjacency.png`, `OUT/components.png`.
    pub plots: Vec<PathBuf>,
}

/// Measures both sets, compares them, and writes `OUT/labels.json` and the plots. Errors
/// name the flag and the file (`--synthetic RUN: …/00000000.label.png: unreadable label map`).
pub fn evaluate(opts: &LabelOptions) -> anyhow::Result<Evaluation> {
    if let Some(s) = opts.size {
        if !(1..=8192).contains(&s) {
            anyhow::bail!("--size {s}: must be between 1 and 8192 pixels");
        }
    }
    let classes = &opts.classes;
    let m = read::measure(opts, classes, StatsOptions { min_island: opts.min_island, connectivity: opts.connectivity })?;
    let distances = compare(&m.real, &m.synthetic);
    let notes = report::notes(opts, &m);
    let json = report::labels_json(opts, &m, &distances, classes, &notes)?;

    std::fs::create_dir_all(&opts.out).with_context(|| format!("--out {}: cannot create the directory", opts.out.display()))?;
    let json_path = opts.out.join("labels.json");
    write(&json_path, &json)?;
    let (r, s) = (PlotSet { name: "REAL", stats: &m.real }, PlotSet { name: "SYNTHETIC", stats: &m.synthetic });
    let plots = [("shares.png", share_plot(r, s, classes)), ("adjacency.png", adjacency_plot(r, s, classes)), ("components.png", component_plot(r, s, classes))];
    let mut plot_paths = Vec::with_capacity(plots.len());
    for (name, img) in &plots {
        let path = opts.out.join(name);
        write(&path, &img.to_png())?;
        plot_paths.push(path);
    }
    let table = report::table(opts, &m, &distances, classes, &notes);
    Ok(Evaluation { distances, notes, table, json: json_path, plots: plot_paths })
}

fn write(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
