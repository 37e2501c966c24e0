//! The utility of generated data (`labelgen-eval utility`, the paper's Table 1): does
//! mixing a run's samples into the training set help a segmentation model?
//!
//! For each seed the same [`crate::seg`] network is trained (a) on the real training split
//! and (b) on it with a share replaced by (or added from) the run's samples — for the same
//! optimizer steps by default ([`Budget`]) — and both are evaluated on the real test split, which is never trained on. Per-class IoU and mIoU are
//! summarised as mean ± sample standard deviation over the seeds, and the difference of
//! the mIoU means counts as real when it exceeds the seed-to-seed spread
//! (`|Δ| > sd_baseline + sd_synthetic`).
//!
//! # Layout
//! - `mod.rs` — [`UtilityOptions`], [`Mix`], [`run`] (on the `--device` backend) and the
//!   files it writes ([`Outcome`]).
//! - `leaks.rs` — the test split checked against the held-out stems of every model the
//!   run's `run.json` names; a test stem a model trained on is an error naming it.
//! - `protocol.rs` — the real split (`--test-stems` or the hash split), each seed's two
//!   arms (which real pairs give way), training and scoring one network.
//! - `consistency.rs` — image–label consistency (the baseline network scored on the
//!   run's samples against their own labels) and KID in that network's feature space.
//! - `synthetic.rs` — fetching the run's samples from its manifest.jsonl (the mix's picks
//!   first, then the further picks only the consistency scores), resized, as a dataset
//!   directory under `OUT/synthetic/`.
//! - `report.rs` — [`Report`]: summary statistics per arm, the verdict, `report.md`, the
//!   bars of `iou.png` (drawn by [`crate::plot::iou_chart`]).
//! - `tests.rs` — end-to-end runs on procedural data, including that the verdict tells
//!   help (exact copies) from harm (wrong labels).

mod consistency;
mod leaks;
mod protocol;
mod report;
mod synthetic;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use shared::dataset::DatasetOptions;
use shared::spec::DeviceChoice;
use shared::ClassTable;

use crate::seg::SegNetConfig;

pub use report::{Arm, Consistency, Paired, Report, RunScore, Settings, Verdict, RULE};

/// Under `out`: the run's samples used, resized, as a dataset directory.
pub const SYNTHETIC_DIR: &str = "synthetic";

/// The default of [`UtilityOptions::consistency_samples`] (`--consistency-samples`).
pub const DEFAULT_CONSISTENCY_SAMPLES: usize = 256;

/// How the run's samples enter the training set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "share")]
pub enum Mix {
    /// This share of the real training split is replaced by run samples.
    Replace(f64),
    /// This many run samples per real training sample are added.
    Add(f64),
}

impl Mix {
    /// `replace 10%`, `add 100%`.
    pub fn describe(&self) -> String {
        match self {
            Mix::Replace(f) => format!("replace {}%", pct(*f)),
            Mix::Add(f) => format!("add {}%", pct(*f)),
        }
    }
}

/// `f` in per cent: whole numbers without decimals, else one.
fn pct(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round())
    } else {
        format!("{p:.1}")
    }
}

/// The experiment (the flags of `labelgen-eval utility`).
#[derive(Debug, Clone)]
pub struct UtilityOptions {
    /// The real dataset directory (images/ + labels/).
    pub real: PathBuf,
    /// How `real` is read and, without `test_stems`, split.
    pub dataset: DatasetOptions,
    /// The class table of `real` and of the run's labels (`--classes`).
    pub classes: ClassTable,
    /// The run: its directory holding manifest.jsonl, as a local path, `file://` or `s3://`.
    pub synthetic: String,
    pub mix: Mix,
    /// How many of the run's samples the image–label consistency and KID score: the mix's
    /// picks plus further seeded picks up to this many (at most the run's size; 0: the
    /// mix's picks only), so the score does not shrink with `--replace`/`--add`.
    pub consistency_samples: usize,
    /// The held-out test stems, one a line: overrides `dataset.test_fraction`.
    pub test_stems: Option<PathBuf>,
    /// Training runs per arm, seeds `seed`, `seed + 1`, ….
    pub seeds: usize,
    pub seed: u64,
    /// Passes over the mixed arm's set (and the baseline's, under [`Budget::Epochs`]).
    pub epochs: usize,
    pub budget: Budget,
    /// Side the pairs are resized to.
    pub size: u32,
    /// Network width.
    pub width: usize,
    pub batch: usize,
    /// Adam learning rate (poly decay).
    pub lr: f64,
    /// Output directory (created if missing).
    pub out: PathBuf,
}

impl UtilityOptions {
    /// Checks the settings; errors name the flag, its value and what was expected.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.mix {
            Mix::Replace(f) => anyhow::ensure!(f > 0.0 && f < 1.0, "--replace {f}: must be above 0 and below 1 (the share of the real training split replaced)"),
            Mix::Add(f) => anyhow::ensure!(f > 0.0 && f.is_finite(), "--add {f}: must be above 0 (run samples per real training sample)"),
        }
        anyhow::ensure!(self.seeds >= 1, "--seeds 0: at least 1 needed (2 or more for a spread)");
        worker::args::at_least_one(&[("--epochs", self.epochs as u64), ("--batch", self.batch as u64)])?;
        anyhow::ensure!((8..=8192).contains(&self.size), "--size {}: must be between 8 and 8192", self.size);
        anyhow::ensure!(self.lr > 0.0 && self.lr.is_finite(), "--lr {}: must be positive", self.lr);
        SegNetConfig::new(self.classes.len()).with_width(self.width).validate().map_err(|e| anyhow::anyhow!("--width: {e}"))?;
        Ok(())
    }

    /// `--real` and a local `--synthetic` exist: checked before an earlier run's report is
    /// removed, so a mistyped path leaves it.
    pub fn check_paths(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.real.is_dir(), "--real {}: no such directory (expected a dataset directory with images/ and labels/)", self.real.display());
        if let Ok(shared::storage::StoreUrl::Local { dir }) = shared::storage::StoreUrl::parse(&self.synthetic) {
            anyhow::ensure!(dir.is_dir(), "--synthetic {}: no such directory (expected a run directory holding manifest.jsonl)", self.synthetic);
        }
        Ok(())
    }
}

/// How long each arm trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Both arms take (as nearly as whole epochs allow) the same optimizer steps: with
    /// `--add` the baseline runs more epochs over its smaller set, so a gain is the data's
    /// and not the longer training's.
    #[default]
    Steps,
    /// Both arms run `--epochs` passes: with `--add` the mixed arm takes more steps.
    Epochs,
}

/// The baseline's epochs under `budget` for a real training split of `real` pairs and a
/// mixed one of `mixed` pairs, the mixed arm running `epochs`: with [`Budget::Steps`] the
/// whole number of epochs whose steps come closest to the mixed arm's (ties: more).
pub fn baseline_epochs(budget: Budget, epochs: usize, batch: usize, real: usize, mixed: usize) -> usize {
    match budget {
        Budget::Epochs => epochs,
        Budget::Steps => {
            let per_epoch = real.div_ceil(batch.max(1)).max(1);
            let target = epochs * mixed.div_ceil(batch.max(1));
            ((target + per_epoch / 2) / per_epoch).max(1)
        }
    }
}

/// What [`run`] wrote.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// `report.md`'s text: the settings, the table of IoUs and the verdict.
    pub markdown: String,
    /// `OUT/report.json`: the settings, every run's confusion matrix and IoUs, the summary.
    pub json: PathBuf,
    /// `OUT/report.md`.
    pub markdown_path: PathBuf,
    /// `OUT/iou.png`: per class and mIoU, baseline solid, synthetic light, whiskers ± sd.
    pub chart: PathBuf,
}

/// Runs the experiment on `device` (the training on its backend) and writes
/// `OUT/report.json`, `OUT/report.md` and `OUT/iou.png`, and the run's samples used under
/// `OUT/synthetic/`. An earlier run's report in OUT is removed once the options pass
/// their checks (settings and paths), so a run that fails after that leaves none.
pub fn run(opts: &UtilityOptions, device: DeviceChoice) -> anyhow::Result<Outcome> {
    opts.check()?;
    opts.check_paths()?;
    let (json, markdown_path, chart) = (opts.out.join("report.json"), opts.out.join("report.md"), opts.out.join("iou.png"));
    // An earlier run's report goes first: were this run to fail, OUT would otherwise hold
    // a report that reads as this run's.
    for old in [&json, &markdown_path, &chart] {
        match std::fs::remove_file(old) {
            Ok(()) => eprintln!("removed {} (an earlier run's report)", old.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing an earlier run's {}", old.display())),
        }
    }
    let classes = &opts.classes;
    let report = worker::backend::dispatch_train(device, protocol::Protocol { opts, classes })?;
    write(&json, &serde_json::to_vec_pretty(&report).context("serialising report.json")?)?;
    let markdown = report.markdown();
    write(&markdown_path, markdown.as_bytes())?;
    write(&chart, &report.chart(classes).to_png())?;
    Ok(Outcome { report, markdown, json, markdown_path, chart })
}

/// Writes a whole file (never half of one); errors name it.
fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    shared::files::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
