//! The protocol: the real split, each seed's two arms (baseline, with synthetic), and
//! training and scoring one network per arm and seed.

use std::collections::BTreeSet;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use shared::dataset::PairSource;
use shared::dataset::{Dataset, DatasetOptions, TEST_STEMS_FILE};
use shared::{rng_for, sample_seed, ClassTable, LabelMap, RgbImage};
use worker::backend::OnTrainBackend;
use worker::device::Resolved;

use super::report::{summarize, Consistency, Report, RunScore, Settings, Verdict};
use super::{consistency, synthetic, Mix, UtilityOptions, SYNTHETIC_DIR};
use crate::seg::{evaluate, inference, train, SegNetConfig, SegTrainOptions};

const SALT_DROP: u64 = 0x5E6_0102;

/// The whole experiment, on the backend `--device` resolves to.
pub(super) struct Protocol<'a> {
    pub opts: &'a UtilityOptions,
    pub classes: &'a ClassTable,
}

impl OnTrainBackend for Protocol<'_> {
    type Output = Report;

    fn run<B: AutodiffBackend>(self, device: B::Device, _: Resolved) -> anyhow::Result<Report> {
        let Protocol { opts, classes } = self;
        let k = classes.len();
        let real = open_real(opts, classes)?;
        let n_train = real.train.len();
        let n_syn = match opts.mix {
            Mix::Replace(f) | Mix::Add(f) => ((f * n_train as f64).round() as usize).max(1),
        };
        anyhow::ensure!(!matches!(opts.mix, Mix::Replace(_)) || n_syn < n_train, "--replace: {n_syn} of {n_train} training pairs would be replaced, leaving no real one");
        tracing::info!(train = n_train, test = real.test.len(), synthetic = n_syn, split = %real.how, "real data from {}", opts.real.display());
        let run_store = shared::storage::Store::open(&opts.synthetic).with_context(|| format!("--synthetic {}", opts.synthetic))?;
        let leak_check = super::leaks::check(&run_store, &real.test).with_context(|| format!("--synthetic {}: the test split leaks into the run's models", opts.synthetic))?;
        tracing::info!("leak check: {leak_check}");
        std::fs::create_dir_all(&opts.out).with_context(|| format!("--out {}: cannot create the directory", opts.out.display()))?;
        let syn_ds = synthetic::fetch(opts, n_syn, classes, &opts.out.join(SYNTHETIC_DIR))?;
        // All fetched samples are scored for consistency; the first n_syn are mixed in.
        let scored: Vec<(bool, String)> = syn_ds.stems.iter().map(|s| (true, s.clone())).collect();
        let syn_stems = scored[..n_syn].to_vec();
        if scored.len() > n_syn {
            tracing::info!(mixed_in = n_syn, scored = scored.len(), "the consistency scores further run samples, never trained on (--consistency-samples)");
        }

        let config = SegNetConfig::new(k).with_width(opts.width);
        let test = Pairs { real: &real.ds, synthetic: None, items: real.test.iter().map(|s| (false, s.clone())).collect(), size: opts.size };
        let seeds: Vec<u64> = (0..opts.seeds as u64).map(|i| opts.seed + i).collect();
        let (mut base_runs, mut syn_runs, mut on_syn_runs, mut kids) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let on_synthetic = Pairs { real: &real.ds, synthetic: Some(&syn_ds), items: scored, size: opts.size };
        let mut feature_dim = 0;
        let mixed_len = match opts.mix {
            Mix::Replace(_) => n_train,
            Mix::Add(_) => n_train + syn_stems.len(),
        };
        let baseline_epochs = super::baseline_epochs(opts.budget, opts.epochs, opts.batch, n_train, mixed_len);
        for &seed in &seeds {
            let real_items: Vec<(bool, String)> = real.train.iter().map(|s| (false, s.clone())).collect();
            let mixed_items = mixed(opts.mix, &real_items, &syn_stems, seed);
            debug_assert_eq!(mixed_items.len(), mixed_len);
            for (arm, items, epochs) in [("baseline", real_items, baseline_epochs), ("with synthetic", mixed_items, opts.epochs)] {
                let pairs = Pairs { real: &real.ds, synthetic: Some(&syn_ds), items, size: opts.size };
                let train_opts = SegTrainOptions { epochs, batch: opts.batch, lr: opts.lr, seed, flips: true };
                let (score, model) = train_and_score::<B>(&config, &pairs, &test, &train_opts, arm, &device)?;
                tracing::info!(seed, arm, miou = ?score.miou, "trained and evaluated in {:.0} s", score.seconds);
                if arm == "baseline" {
                    // Image–label consistency: this network on the run's samples, and the
                    // distance between the two image sets in its features.
                    let m = evaluate(&model, &on_synthetic, k, opts.batch, &device).with_context(|| format!("scoring the run's samples (seed {seed})"))?;
                    let real_features = consistency::features(&model, &test, opts.batch, &device)?;
                    let run_features = consistency::features(&model, &on_synthetic, opts.batch, &device)?;
                    feature_dim = real_features.first().map_or(0, Vec::len);
                    let kid = consistency::kid(&real_features, &run_features).map(|v| 1000.0 * v);
                    tracing::info!(seed, consistency_miou = ?m.miou(), kid_x1000 = ?kid, "the baseline network on the run's samples");
                    kids.push(kid);
                    on_syn_runs.push(RunScore {
                        seed,
                        train_pairs: score.train_pairs,
                        synthetic_pairs: on_synthetic.len(),
                        iou: m.ious(),
                        miou: m.miou(),
                        pixel_accuracy: m.pixel_accuracy(),
                        seconds: 0.0,
                        confusion: m,
                    });
                    base_runs.push(score);
                } else {
                    syn_runs.push(score);
                }
            }
        }
        let baseline = summarize("baseline", base_runs, k);
        let with_synthetic = summarize(&format!("with synthetic ({})", opts.mix.describe()), syn_runs, k);
        let verdict = Verdict::of(&baseline, &with_synthetic);
        let (kid_x1000_mean, kid_x1000_sd) = super::report::mean_sd(kids.iter().copied());
        let consistency = Consistency { on_synthetic: summarize("baseline on the run's samples", on_syn_runs, k), kid_x1000: kids, kid_x1000_mean, kid_x1000_sd, feature_dim };
        Ok(Report {
            classes: classes.classes.iter().map(|c| c.name.clone()).collect(),
            settings: Settings {
                real: opts.real.display().to_string(),
                synthetic: opts.synthetic.clone(),
                test_split: real.how.clone(),
                leak_check,
                real_train_pairs: n_train,
                test_pairs: real.test.len(),
                synthetic_pairs: n_syn,
                consistency_samples: opts.consistency_samples,
                mix: opts.mix,
                seeds,
                epochs: opts.epochs,
                budget: opts.budget,
                baseline_epochs,
                size: opts.size,
                width: opts.width,
                batch: opts.batch,
                lr: opts.lr,
                flips: true,
            },
            baseline,
            with_synthetic,
            verdict,
            consistency,
        })
    }
}

/// The "with synthetic" arm's training items for `seed`: with [`Mix::Replace`], a seeded
/// choice of the real pairs (as many as there are run samples) gives way to the run
/// samples; with [`Mix::Add`], the run samples join all real pairs.
fn mixed(mix: Mix, real_items: &[(bool, String)], syn_stems: &[(bool, String)], seed: u64) -> Vec<(bool, String)> {
    match mix {
        Mix::Replace(_) => {
            let mut kept = real_items.to_vec();
            kept.shuffle(&mut rng_for(sample_seed(seed, SALT_DROP), 0));
            kept.truncate(real_items.len() - syn_stems.len());
            kept.sort();
            kept.into_iter().chain(syn_stems.iter().cloned()).collect()
        }
        Mix::Add(_) => real_items.iter().chain(syn_stems).cloned().collect(),
    }
}

/// The real dataset and its split.
struct RealSplit {
    ds: Dataset,
    train: Vec<String>,
    test: Vec<String>,
    /// How it was split, for the report.
    how: String,
}

/// Opens `--real` and splits it: the stems of `--test-stems` when given, else the hash
/// split of `--test-fraction`. Errors name the flag and the stem or setting at fault.
fn open_real(opts: &UtilityOptions, classes: &ClassTable) -> anyhow::Result<RealSplit> {
    let ctx = || format!("--real {}", opts.real.display());
    let Some(file) = &opts.test_stems else {
        let ds = Dataset::open_with(&opts.real, classes.clone(), &DatasetOptions { labels_only: false, ..opts.dataset.clone() }).with_context(ctx)?;
        // Found now, not when the first odd tile is read after hours of training.
        ds.require_square().with_context(ctx)?;
        ds.require_class_pixels().with_context(ctx)?;
        anyhow::ensure!(
            !ds.test.is_empty(),
            "--real {}: the test split is empty ({} files, --test-fraction {}): raise --test-fraction or pass --test-stems",
            opts.real.display(),
            ds.len(),
            opts.dataset.test_fraction
        );
        let how = match &opts.dataset.split_group {
            Some(p) => format!("hash split by group, --test-fraction {} --split-group '{p}'", opts.dataset.test_fraction),
            None => format!("hash split, --test-fraction {}", opts.dataset.test_fraction),
        };
        return Ok(RealSplit { train: ds.train.clone(), test: ds.test.clone(), ds, how });
    };
    let ds = Dataset::open_with(&opts.real, classes.clone(), &DatasetOptions { test_fraction: 0.0, labels_only: false, ..opts.dataset.clone() }).with_context(ctx)?;
    ds.require_square().with_context(ctx)?;
    ds.require_class_pixels().with_context(ctx)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("--test-stems {}: cannot read", file.display()))?;
    let wanted: BTreeSet<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    anyhow::ensure!(!wanted.is_empty(), "--test-stems {}: lists no stems (expected one file stem a line, like {TEST_STEMS_FILE})", file.display());
    let have: BTreeSet<&String> = ds.stems.iter().collect();
    let missing: Vec<&String> = wanted.iter().filter(|s| !have.contains(s)).collect();
    if let Some(first) = missing.first() {
        anyhow::bail!(
            "--test-stems {}: stem {first:?} has no pair in --real {} (labels/{first}.png){}",
            file.display(),
            opts.real.display(),
            if missing.len() > 1 { format!("; {} more of the {} listed stems are missing too", missing.len() - 1, wanted.len()) } else { String::new() }
        );
    }
    let (test, train): (Vec<String>, Vec<String>) = ds.stems.iter().cloned().partition(|s| wanted.contains(s));
    anyhow::ensure!(!train.is_empty(), "--test-stems {}: lists every stem of --real {}; nothing is left to train on", file.display(), opts.real.display());
    Ok(RealSplit { ds, train, test, how: format!("the {} stems of --test-stems {}", wanted.len(), file.display()) })
}

/// Pairs from the real dataset and (optionally) the fetched run samples, resized to `size`.
struct Pairs<'a> {
    real: &'a Dataset,
    synthetic: Option<&'a Dataset>,
    /// `(from the run, stem)`.
    items: Vec<(bool, String)>,
    size: u32,
}

impl PairSource for Pairs<'_> {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn get(&self, index: usize) -> shared::Result<(RgbImage, LabelMap)> {
        let (from_run, stem) = &self.items[index];
        let ds = if *from_run { self.synthetic.expect("run samples were fetched") } else { self.real };
        Ok((ds.image(stem, Some(self.size))?, ds.label(stem, Some(self.size))?))
    }
}

/// Trains one network on `pairs` (a progress bar on a terminal, a log line every 30 s
/// elsewhere) and scores it on `test`; returns the scores and the network.
fn train_and_score<B: AutodiffBackend>(
    config: &SegNetConfig,
    pairs: &Pairs,
    test: &Pairs,
    train_opts: &SegTrainOptions,
    arm: &str,
    device: &B::Device,
) -> anyhow::Result<(RunScore, crate::seg::SegNet<B::InnerBackend>)> {
    let seed = train_opts.seed;
    let steps = crate::seg::train::steps(pairs.len(), train_opts);
    let bar = shared::progress::styled(Some(steps), &format!("{{spinner}} [{{elapsed_precise}}] {arm}, seed {seed}: {{wide_bar}} {{pos}}/{{len}} steps  {{msg}}  ETA {{eta}}"));
    let mut last_log = std::time::Instant::now();
    let start = std::time::Instant::now();
    let model = train::<B>(config, pairs, train_opts, device, |p| {
        let msg = format!("loss {:.3}  {:.1} img/s", p.smoothed, p.images_per_sec);
        if bar.is_hidden() && (last_log.elapsed().as_secs() >= 30 || p.step == p.steps) {
            last_log = std::time::Instant::now();
            tracing::info!("{arm}, seed {seed}: step {}/{} (epoch {}): {msg}", p.step, p.steps, p.epoch + 1);
        }
        bar.set_position(p.step);
        bar.set_message(msg);
    })
    .with_context(|| format!("training ({arm}, seed {seed})"))?;
    bar.finish_and_clear();
    let model = inference(&model);
    let m = evaluate(&model, test, config.num_classes, train_opts.batch, device).with_context(|| format!("evaluating ({arm}, seed {seed})"))?;
    let score = RunScore {
        seed,
        train_pairs: pairs.len(),
        synthetic_pairs: pairs.items.iter().filter(|i| i.0).count(),
        iou: m.ious(),
        miou: m.miou(),
        pixel_accuracy: m.pixel_accuracy(),
        seconds: start.elapsed().as_secs_f64(),
        confusion: m,
    };
    Ok((score, model))
}
