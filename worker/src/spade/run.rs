//! A training run on a dataset directory's train split, as `worker train spade` starts it:
//! loads the VGG19 weights of the perceptual loss (when given), writes the held-out test
//! stems, and runs [`fit`] with a progress bar (on a terminal; elsewhere a log line every
//! 30 s). [`DatasetRun`] runs on whichever backend [`crate::backend::dispatch_train`]
//! picks.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::model::SpadeTrainSettings;
use super::train::{fit, SpadeFitOptions, SpadeTrainer};
use super::vgg::Vgg19;
use super::{SpadeDiscriminatorConfig, SpadeGeneratorConfig};
use crate::backend::OnTrainBackend;
use crate::device::Resolved;
use shared::dataset::{DatasetPairs, PairSource};

/// Training on a dataset's train split into `opts.out`; the dataset's test stems are
/// written to `OUT/test_stems.txt` once the VGG weights (if any) have loaded.
pub struct DatasetRun {
    pub g_config: SpadeGeneratorConfig,
    pub d_config: SpadeDiscriminatorConfig,
    pub settings: SpadeTrainSettings,
    /// torchvision's VGG19 weights (`.pth` or `.safetensors`): turns on the perceptual
    /// loss with weight `settings.vgg_weight`. `None`: the loss is off.
    pub vgg: Option<PathBuf>,
    pub pairs: DatasetPairs,
    pub opts: SpadeFitOptions,
}

impl OnTrainBackend for DatasetRun {
    /// The step the model reached.
    type Output = u64;
    const DATA_PARALLEL: bool = true;
    fn run<B: AutodiffBackend>(self, device: B::Device, resolved: Resolved) -> anyhow::Result<u64> {
        self.run_parallel::<B>(vec![device], resolved)
    }
    fn run_parallel<B: AutodiffBackend>(self, devices: Vec<B::Device>, _: Resolved) -> anyhow::Result<u64> {
        let device = devices.first().ok_or_else(|| anyhow::anyhow!("no device to train on"))?;
        let vgg = match &self.vgg {
            Some(path) => {
                let vgg = Vgg19::<B>::load(path, device)?;
                tracing::info!(weight = self.settings.vgg_weight, "VGG loss on (VGG19 from {})", path.display());
                Some(vgg)
            }
            None => {
                tracing::info!("VGG loss off (no --vgg weights)");
                None
            }
        };
        crate::sync_store::write_test_stems(&self.opts.out, &self.pairs.dataset, self.opts.resume)?;
        let trainer = fit_with_progress::<B>(self.g_config, self.d_config, self.settings, vgg, &self.pairs, &self.opts, &devices)?;
        Ok(trainer.step)
    }
}

/// [`fit`], reporting the smoothed losses and images/s on a bar (or, without a terminal,
/// in a log line every 30 s and at the last step).
pub fn fit_with_progress<B: AutodiffBackend>(
    g_config: SpadeGeneratorConfig,
    d_config: SpadeDiscriminatorConfig,
    settings: SpadeTrainSettings,
    vgg: Option<Vgg19<B>>,
    pairs: &dyn PairSource,
    opts: &SpadeFitOptions,
    devices: &[B::Device],
) -> anyhow::Result<SpadeTrainer<B>> {
    let bar = shared::progress::bar(opts.steps, "steps");
    let mut last_log = Instant::now();
    let mut first = true;
    let trainer = fit::<B>(g_config, d_config, settings, vgg, pairs, opts, devices, |p| {
        if std::mem::take(&mut first) {
            // A resumed run starts part way: the rate and ETA count from here.
            bar.set_position(p.step.saturating_sub(1));
            bar.reset_eta();
        }
        let vgg = if p.losses.g_vgg > 0.0 { format!(", vgg {:.3}", p.losses.g_vgg) } else { String::new() };
        let msg = format!("G {:.3} (feat {:.3}{vgg})  D {:.3}  {:.1} img/s", p.smoothed.g_gan, p.smoothed.g_feat, p.smoothed.d, p.images_per_sec);
        if bar.is_hidden() && (last_log.elapsed().as_secs() >= 30 || p.step == p.steps) {
            last_log = Instant::now();
            tracing::info!("step {}/{}: {msg}", p.step, p.steps);
        }
        bar.set_position(p.step);
        bar.set_message(msg);
    })?;
    bar.finish_and_clear();
    Ok(trainer)
}

#[cfg(test)]
mod tests {
    use shared::dataset::{is_test_stem, Dataset, DatasetOptions, TEST_STEMS_FILE};
    use shared::spec::DeviceChoice;
    use shared::ClassTable;

    use super::*;

    fn open(dir: &std::path::Path, test_fraction: f64) -> shared::Result<Dataset> {
        Dataset::open_with(dir, ClassTable::ai_hub(), &DatasetOptions { test_fraction, ..Default::default() })
    }

    /// Trains a tiny generator on `data` to `steps` steps into `out`.
    fn train(data: &std::path::Path, out: &std::path::Path, test_fraction: f64, steps: u64, resume: bool) -> anyhow::Result<u64> {
        let dataset = open(data, test_fraction).unwrap();
        let classes = ClassTable::ai_hub();
        let k = classes.len();
        let opts = SpadeFitOptions {
            out: out.to_str().unwrap().into(),
            steps,
            checkpoint_every: 500,
            resume,
            classes,
            data_digest: dataset.digest(false).unwrap(),
            test_fraction: Some(test_fraction),
            precision: crate::precision::Precision::F32,
        };
        let run = DatasetRun {
            g_config: SpadeGeneratorConfig::small(k, 16, 4),
            d_config: SpadeDiscriminatorConfig::new(k).with_ndf(4),
            settings: SpadeTrainSettings { batch: 2, ..SpadeTrainSettings::default() },
            vgg: None,
            pairs: DatasetPairs { dataset, size: 16 },
            opts,
        };
        crate::backend::dispatch_train(DeviceChoice::Cpu, run)
    }

    /// One step on a procedural dataset: the artifact records the split and lists the test
    /// stems; a resume that would hold out other files is refused and leaves the list as
    /// it was; a missing image stops the run before training, naming the file.
    #[test]
    fn dataset_run_holds_out_the_test_split() {
        let dir = std::env::temp_dir().join(format!("labelgen-train-spade-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (data, out) = (dir.join("data"), dir.join("model"));
        shared::procedural::write_dataset(&data, 16, 16, 7, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
        assert_eq!(train(&data, &out, 0.4, 1, false).unwrap(), 1);
        let stems: Vec<String> = (0..16).map(shared::procedural::tile_name).collect();
        let want: Vec<&str> = stems.iter().filter(|s| is_test_stem(s, 0.4)).map(String::as_str).collect();
        assert!(!want.is_empty() && want.len() < 16, "{} of 16 held out", want.len());
        assert_eq!(std::fs::read_to_string(out.join(TEST_STEMS_FILE)).unwrap().lines().collect::<Vec<_>>(), want);
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        assert_eq!((meta["test_fraction"].as_f64(), meta["train_count"].as_u64()), (Some(0.4), Some(16 - want.len() as u64)));
        let weights = std::fs::read(out.join("generator.mpk")).unwrap();
        let counted = shared::artifact::weights::check(&weights[..]).unwrap().parameters;
        assert!(counted > 1000 && meta["parameters"].as_u64() == Some(counted), "{} vs {counted}", meta["parameters"]);

        let listed = std::fs::read(out.join(TEST_STEMS_FILE)).unwrap();
        let e = format!("{:#}", train(&data, &out, 0.2, 2, true).unwrap_err());
        assert!(e.contains("split.json") && e.contains("0.4") && e.contains("--test-fraction"), "{e}");
        assert_eq!(std::fs::read(out.join(TEST_STEMS_FILE)).unwrap(), listed, "a refused resume leaves the list alone");
        // An OUT from before split.json: the list decides; a file it held out may not be
        // trained on now.
        std::fs::remove_file(out.join(crate::sync_store::SPLIT_FILE)).unwrap();
        let e = format!("{:#}", train(&data, &out, 0.2, 2, true).unwrap_err());
        let moved = want.iter().find(|s| !is_test_stem(s, 0.2)).expect("a stem held out at 0.4 but not at 0.2");
        assert!(e.contains(&format!("held out {moved},")), "{e}");
        assert_eq!(train(&data, &out, 0.4, 2, true).unwrap(), 2, "the same split resumes");
        assert!(out.join(crate::sync_store::SPLIT_FILE).exists());

        std::fs::remove_file(data.join("images/000005.png")).unwrap();
        let e = format!("{:#}", open(&data, 0.4).unwrap_err());
        assert!(e.contains("images/000005.png") && e.contains("missing"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
