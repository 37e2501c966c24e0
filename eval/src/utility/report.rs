//! What the experiment reports: each run's scores, each arm's mean ± sd over the seeds,
//! the verdict, `report.md` and the bars of `iou.png`.

use serde::Serialize;
use shared::{ClassTable, RgbImage};

use super::Mix;
use crate::plot::{iou_chart, BarGroup, MeanSd};
use crate::seg::ConfusionMatrix;

/// The rule that decides whether a difference is more than seed noise.
pub const RULE: &str = "the difference of the mIoU means counts as real when |Δ| > sd_baseline + sd_synthetic (sample standard deviations over the seeds)";

/// One trained network's scores on the test split.
#[derive(Debug, Clone, Serialize)]
pub struct RunScore {
    pub seed: u64,
    pub train_pairs: usize,
    pub synthetic_pairs: usize,
    pub iou: Vec<Option<f64>>,
    pub miou: Option<f64>,
    pub pixel_accuracy: Option<f64>,
    pub seconds: f64,
    pub confusion: ConfusionMatrix,
}

/// An arm's summary over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    pub name: String,
    /// Per class: mean over the seeds where the IoU is defined (`null`: in none).
    pub iou_mean: Vec<Option<f64>>,
    /// Per class: sample standard deviation over those seeds (`null`: fewer than 2).
    pub iou_sd: Vec<Option<f64>>,
    pub miou_mean: Option<f64>,
    pub miou_sd: Option<f64>,
    pub runs: Vec<RunScore>,
}

/// Mean and sample standard deviation of the defined values.
pub(super) fn mean_sd(values: impl IntoIterator<Item = Option<f64>>) -> (Option<f64>, Option<f64>) {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    if v.is_empty() {
        return (None, None);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.len() >= 2).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(mean), sd)
}

/// `runs` of `k` classes as an arm.
pub(super) fn summarize(name: &str, runs: Vec<RunScore>, k: usize) -> Arm {
    let per_class: Vec<(Option<f64>, Option<f64>)> = (0..k).map(|c| mean_sd(runs.iter().map(|r| r.iou[c]))).collect();
    let (miou_mean, miou_sd) = mean_sd(runs.iter().map(|r| r.miou));
    Arm { name: name.into(), iou_mean: per_class.iter().map(|p| p.0).collect(), iou_sd: per_class.iter().map(|p| p.1).collect(), miou_mean, miou_sd, runs }
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub real: String,
    pub synthetic: String,
    pub test_split: String,
    /// Whether the test split was held out from every model that made the run, and how
    /// that was checked (see `leaks.rs`).
    pub leak_check: String,
    pub real_train_pairs: usize,
    pub test_pairs: usize,
    pub synthetic_pairs: usize,
    /// `--consistency-samples`: the run samples the consistency and KID score, at most
    /// (the count scored is each consistency run's `synthetic_pairs`).
    pub consistency_samples: usize,
    pub mix: Mix,
    pub seeds: Vec<u64>,
    /// The mixed arm's epochs.
    pub epochs: usize,
    pub budget: super::Budget,
    /// The baseline's epochs: `epochs`, or with `budget` steps as many as give the mixed
    /// arm's optimizer steps.
    pub baseline_epochs: usize,
    pub size: u32,
    pub width: usize,
    pub batch: usize,
    pub lr: f64,
    pub flips: bool,
}

/// Whether the difference is more than the seed-to-seed spread, and the paired estimate.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub rule: &'static str,
    /// mIoU mean with synthetic minus baseline.
    pub delta_miou: Option<f64>,
    /// sd_baseline + sd_synthetic.
    pub spread: Option<f64>,
    /// `null` when it cannot be told (fewer than 2 seeds, or no mIoU).
    pub exceeds_spread: Option<bool>,
    /// The paired design: each seed trains both arms from the same initialisation, so the
    /// per-seed differences cancel the seed's own luck. `null` with fewer than 2 seeds
    /// that have an mIoU in both arms.
    pub paired: Option<Paired>,
}

/// Mean of the per-seed mIoU differences (with synthetic − baseline, same seed) with a 95%
/// Student-t interval.
#[derive(Debug, Clone, Serialize)]
pub struct Paired {
    /// `(seed, difference)` for each seed with an mIoU in both arms.
    pub differences: Vec<(u64, f64)>,
    pub mean: f64,
    /// Sample standard deviation of the differences.
    pub sd: f64,
    /// 95% interval of the mean difference: mean ± t(0.975, n−1) · sd / √n.
    pub ci95: [f64; 2],
    /// Whether the interval leaves out 0 (the difference is real at the 5% level).
    pub excludes_zero: bool,
}

/// Two-sided 95% quantiles of Student's t for 1…30 degrees of freedom (beyond, [`t975`]).
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060,
    2.056, 2.052, 2.048, 2.045, 2.042,
];

/// t(0.975, df): the table up to 30; beyond, the value at the low end of each range
/// (t at 30, 40, 60, 120), so the interval errs wide, never narrow.
fn t975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1..=30 => T975[df - 1],
        31..=40 => 2.042,
        41..=60 => 2.021,
        61..=120 => 2.000,
        _ => 1.980,
    }
}

impl Paired {
    /// The paired differences of two arms' runs, matched by seed.
    pub fn of(baseline: &Arm, with_synthetic: &Arm) -> Option<Paired> {
        let differences: Vec<(u64, f64)> =
            baseline.runs.iter().filter_map(|b| with_synthetic.runs.iter().find(|s| s.seed == b.seed).and_then(|s| Some((b.seed, s.miou? - b.miou?)))).collect();
        let n = differences.len();
        if n < 2 {
            return None;
        }
        let (mean, sd) = mean_sd(differences.iter().map(|d| Some(d.1)));
        let (mean, sd) = (mean?, sd?);
        let half = t975(n - 1) * sd / (n as f64).sqrt();
        let ci95 = [mean - half, mean + half];
        Some(Paired { differences, mean, sd, ci95, excludes_zero: ci95[0] > 0.0 || ci95[1] < 0.0 })
    }
}

impl Verdict {
    /// [`RULE`] applied to the two arms, and their paired differences.
    pub fn of(baseline: &Arm, with_synthetic: &Arm) -> Verdict {
        let delta = baseline.miou_mean.zip(with_synthetic.miou_mean).map(|(a, b)| b - a);
        let spread = baseline.miou_sd.zip(with_synthetic.miou_sd).map(|(a, b)| a + b);
        Verdict { rule: RULE, delta_miou: delta, spread, exceeds_spread: delta.zip(spread).map(|(d, s)| d.abs() > s), paired: Paired::of(baseline, with_synthetic) }
    }
}

/// `report.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub classes: Vec<String>,
    pub settings: Settings,
    pub baseline: Arm,
    pub with_synthetic: Arm,
    pub verdict: Verdict,
    pub consistency: Consistency,
}

/// How well the run's images show their own labels, judged by the baseline networks
/// (trained on real pairs only): each seed's network scored on the run's samples, and the
/// KID between the real test images and the run's images in that network's features.
#[derive(Debug, Clone, Serialize)]
pub struct Consistency {
    /// The baseline networks on the run's samples (IoU of their predictions against the
    /// label maps the images were painted from).
    pub on_synthetic: Arm,
    /// Per seed: KID × 1000 between the real test images and the run's images, in the
    /// segmenter's pooled features (not Inception features); `null` under 2 images a side.
    pub kid_x1000: Vec<Option<f64>>,
    pub kid_x1000_mean: Option<f64>,
    pub kid_x1000_sd: Option<f64>,
    /// Length of a feature vector.
    pub feature_dim: usize,
}

/// "mean ± sd" in %, "–" when undefined.
fn cell(mean: Option<f64>, sd: Option<f64>) -> String {
    match (mean, sd) {
        (Some(m), Some(s)) => format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s),
        (Some(m), None) => format!("{:.1}", 100.0 * m),
        _ => "–".into(),
    }
}

impl Report {
    /// `report.md`: the settings, a table (rows baseline and with synthetic, columns the
    /// classes and mIoU, cells "mean ± sd" in %), the verdict and the rule.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let s = &self.settings;
        let mut t = String::new();
        let _ = writeln!(t, "# Utility of synthetic data\n");
        let _ = writeln!(t, "- Real: `{}`: {} training pairs, {} test pairs ({}).", s.real, s.real_train_pairs, s.test_pairs, s.test_split);
        let _ = writeln!(t, "- Leak check: {}.", s.leak_check);
        let _ = writeln!(t, "- Synthetic: `{}`: {} samples ({}).", s.synthetic, s.synthetic_pairs, {
            let (verb, asked) = match s.mix {
                Mix::Replace(f) => ("replacing", f),
                Mix::Add(f) => ("adding", f),
            };
            // Whole pairs (at least one): on a small set the share taken can be far
            // from the one asked for.
            let taken = s.synthetic_pairs as f64 / s.real_train_pairs.max(1) as f64;
            if (taken - asked).abs() > 0.1 * asked {
                format!("{verb} {}% of the real training split; {}% asked for, rounded to whole pairs", super::pct(taken), super::pct(asked))
            } else {
                format!("{verb} {}% of the real training split", super::pct(asked))
            }
        });
        let _ = writeln!(
            t,
            "- Model: BiSeNet V2-style, width {}, {}×{} px, {}, batch {}, Adam lr {} (poly decay), random flips; seeds {}.\n",
            s.width,
            s.size,
            s.size,
            if s.baseline_epochs == s.epochs {
                format!("{} epoch(s) each arm", s.epochs)
            } else {
                format!("{} epoch(s) with synthetic and {} for the baseline, the same optimizer steps (--budget steps)", s.epochs, s.baseline_epochs)
            },
            s.batch,
            s.lr,
            s.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        );
        let n = s.seeds.len();
        let _ = writeln!(t, "IoU (%) on the real test split, mean ± sd over {n} seed{}:\n", if n == 1 { "" } else { "s" });
        let _ = writeln!(t, "| | {} | mIoU |", self.classes.join(" | "));
        let _ = writeln!(t, "|---|{}---|", "---|".repeat(self.classes.len()));
        for arm in [&self.baseline, &self.with_synthetic] {
            let cells: Vec<String> = arm.iou_mean.iter().zip(&arm.iou_sd).map(|(m, s)| cell(*m, *s)).collect();
            let name = if arm.name == "baseline" { "Baseline (real only)".to_string() } else { format!("With synthetic ({})", s.mix.describe()) };
            let _ = writeln!(t, "| {name} | {} | {} |", cells.join(" | "), cell(arm.miou_mean, arm.miou_sd));
        }
        let _ = writeln!(t);
        let v = &self.verdict;
        match (v.delta_miou, v.spread, v.exceeds_spread) {
            (Some(d), Some(sp), Some(e)) => {
                let _ = writeln!(
                    t,
                    "Δ mIoU = {:+.1} points; seed-to-seed spread sd_baseline + sd_synthetic = {:.1} points: the difference {} the spread.",
                    100.0 * d,
                    100.0 * sp,
                    if e { "exceeds" } else { "does not exceed" }
                );
            }
            (Some(d), _, _) => {
                let _ = writeln!(t, "Δ mIoU = {:+.1} points; with one seed there is no spread to compare it with (use --seeds 2 or more).", 100.0 * d);
            }
            _ => {
                let _ = writeln!(t, "No mIoU: the test split has no labelled pixel.");
            }
        }
        if let Some(p) = &v.paired {
            let _ = writeln!(
                t,
                "\nPaired over {} seeds (each seed trains both arms from the same initialisation): mean Δ mIoU = {:+.2} points, 95% interval [{:+.2}, {:+.2}] (Student t, {} df): {}.",
                p.differences.len(),
                100.0 * p.mean,
                100.0 * p.ci95[0],
                100.0 * p.ci95[1],
                p.differences.len() - 1,
                if p.excludes_zero { "the interval leaves out 0, a real difference at the 5% level" } else { "the interval includes 0, no difference shown" }
            );
        }
        let _ = writeln!(t, "\nRule: {}.", v.rule);
        let c = &self.consistency;
        let _ = writeln!(
            t,
            "\n## Image–label consistency\n\nThe baseline networks (real pairs only) label the run's {} images ({} of them were mixed in); IoU (%) against the label maps the images were painted from, beside the same networks on the real test split:\n",
            c.on_synthetic.runs.first().map_or(0, |r| r.synthetic_pairs),
            s.synthetic_pairs
        );
        let _ = writeln!(t, "| | {} | mIoU |", self.classes.join(" | "));
        let _ = writeln!(t, "|---|{}---|", "---|".repeat(self.classes.len()));
        for (name, arm) in [("Real test images", &self.baseline), ("Run's images vs their labels", &c.on_synthetic)] {
            let cells: Vec<String> = arm.iou_mean.iter().zip(&arm.iou_sd).map(|(m, s)| cell(*m, *s)).collect();
            let _ = writeln!(t, "| {name} | {} | {} |", cells.join(" | "), cell(arm.miou_mean, arm.miou_sd));
        }
        let kid = match (c.kid_x1000_mean, c.kid_x1000_sd) {
            (Some(m), Some(sd)) => format!("{m:.2} ± {sd:.2}"),
            (Some(m), None) => format!("{m:.2}"),
            _ => "– (needs 2 images a side)".into(),
        };
        let _ = writeln!(
            t,
            "\nKID × 1000 between the real test images and the run's images in the segmenter's {}-value pooled features: {kid}. This is not Inception-KID: it is comparable only between runs scored with the same settings.",
            c.feature_dim
        );
        t
    }

    /// `iou.png`: per class and mIoU, the baseline bar solid and the synthetic bar light in
    /// the class's preview colour (mIoU grey), whiskers ± sd; no text (the numbers are in
    /// report.md).
    pub fn chart(&self, classes: &ClassTable) -> RgbImage {
        let arms = [&self.baseline, &self.with_synthetic];
        let mut groups: Vec<BarGroup> =
            (0..self.classes.len()).map(|c| BarGroup { color: classes.color_of_index(c as u8), arms: arms.map(|a| MeanSd { mean: a.iou_mean[c], sd: a.iou_sd[c] }) }).collect();
        groups.push(BarGroup { color: [90, 90, 90], arms: arms.map(|a| MeanSd { mean: a.miou_mean, sd: a.miou_sd }) });
        iou_chart(&groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arm of one-class runs with these mIoUs, seeds 10, 11, ….
    fn arm(miou: &[f64]) -> Arm {
        let runs = miou
            .iter()
            .enumerate()
            .map(|(i, &v)| RunScore {
                seed: 10 + i as u64,
                train_pairs: 1,
                synthetic_pairs: 0,
                iou: vec![Some(v)],
                miou: Some(v),
                pixel_accuracy: None,
                seconds: 0.0,
                confusion: ConfusionMatrix::new(1),
            })
            .collect();
        summarize("arm", runs, 1)
    }

    #[test]
    fn utility_mean_sd_and_verdict() {
        assert_eq!(mean_sd([None, None]), (None, None));
        assert_eq!(mean_sd([Some(0.5), None]), (Some(0.5), None));
        let (m, s) = mean_sd([Some(0.1), Some(0.3), None]);
        assert!((m.unwrap() - 0.2).abs() < 1e-12 && (s.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        let (base, better) = (arm(&[0.40, 0.42]), arm(&[0.50, 0.52]));
        let v = Verdict::of(&base, &better);
        assert!((v.delta_miou.unwrap() - 0.10).abs() < 1e-12 && v.exceeds_spread == Some(true), "{v:?}");
        assert_eq!(Verdict::of(&base, &arm(&[0.41, 0.43])).exceeds_spread, Some(false));
    }

    #[test]
    fn utility_paired_differences_see_what_the_spread_hides() {
        // Seeds differ by a lot, but every seed gains 0.01 to 0.02 with synthetic data.
        let base = arm(&[0.30, 0.40, 0.50, 0.35, 0.45]);
        let syn = arm(&[0.31, 0.42, 0.51, 0.37, 0.46]);
        let v = Verdict::of(&base, &syn);
        assert_eq!(v.exceeds_spread, Some(false), "the spread rule cannot see it");
        let p = v.paired.unwrap();
        // Differences 0.01, 0.02, 0.01, 0.02, 0.01: mean 0.014, sd √0.00003, t(4) = 2.776.
        assert!((p.mean - 0.014).abs() < 1e-12, "{p:?}");
        let half = 2.776 * 0.00003f64.sqrt() / 5f64.sqrt();
        assert!((p.ci95[0] - (0.014 - half)).abs() < 1e-12 && (p.ci95[1] - (0.014 + half)).abs() < 1e-12, "{p:?}");
        assert!(p.excludes_zero);
        // No effect: differences around 0 give an interval that holds 0.
        let p = Paired::of(&base, &arm(&[0.31, 0.39, 0.51, 0.34, 0.45])).unwrap();
        assert!(!p.excludes_zero && p.ci95[0] < 0.0 && p.ci95[1] > 0.0, "{p:?}");
        // One seed: no interval.
        assert!(Paired::of(&arm(&[0.3]), &arm(&[0.4])).is_none());
    }
}
