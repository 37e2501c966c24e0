//! A training run on a dataset directory's train split, as `worker train ddpm` starts it:
//! checks the config against the data, writes the held-out test stems, trains with a
//! progress bar (on a terminal; elsewhere a log line every 30 s) and says what it did.
//! [`DatasetRun`] runs on whichever backend [`crate::backend::dispatch_train`] picks.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use shared::dataset::Dataset;

use super::{recent_loss, train_on, DdpmTrainConfig, TrainData, TrainEvent};
use crate::backend::OnTrainBackend;
use crate::device::Resolved;

/// Losses averaged for the progress bar and the log lines.
const LOSS_WINDOW: usize = 50;

/// Training `cfg` on `data`, the train split of `dataset`, into the artifact location
/// `out`: `dataset`'s test share is recorded in `model.json` and its test stems are written
/// to `OUT/test_stems.txt`. Nothing is written when `cfg` does not fit the data.
pub struct DatasetRun<'a> {
    pub cfg: &'a DdpmTrainConfig,
    pub data: &'a TrainData,
    pub dataset: &'a Dataset,
    pub out: &'a str,
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Trained {
    /// Steps run now (without those of a resumed checkpoint).
    pub steps: u64,
    pub seconds: f64,
    /// Mean loss of the last steps ([`recent_loss`]).
    pub final_loss: f32,
}

impl Trained {
    pub fn steps_per_sec(&self) -> f64 {
        self.steps as f64 / self.seconds.max(1e-9)
    }
}

impl OnTrainBackend for DatasetRun<'_> {
    type Output = Trained;
    const DATA_PARALLEL: bool = true;
    fn run<B: AutodiffBackend>(self, device: B::Device, resolved: Resolved) -> anyhow::Result<Trained> {
        self.run_parallel::<B>(vec![device], resolved)
    }
    fn run_parallel<B: AutodiffBackend>(self, devices: Vec<B::Device>, _: Resolved) -> anyhow::Result<Trained> {
        // Refuse a bad combination (e.g. x0 with gray) before writing anything under `out`.
        self.cfg.validate(self.data)?;
        crate::sync_store::write_test_stems(self.out, self.dataset, self.cfg.resume)?;
        train_with_progress::<B>(self.cfg, self.data, Some(self.dataset.options.test_fraction), self.out, &devices)
    }
}

/// [`train_on`] `devices` (data parallel when there are several) into `out`, reporting
/// progress on a bar (or, without a terminal, in a log line every 30 s) and checkpoints
/// above it.
pub fn train_with_progress<B: AutodiffBackend>(cfg: &DdpmTrainConfig, data: &TrainData, test_fraction: Option<f64>, out: &str, devices: &[B::Device]) -> anyhow::Result<Trained> {
    let bar = shared::progress::bar(cfg.steps, "steps");
    let start = Instant::now();
    let mut recent: Vec<f32> = Vec::new();
    let mut first_step = 0;
    let mut last_log = Instant::now();
    let outcome = train_on::<B>(cfg, data, test_fraction, Some(out), devices, &mut |e| match e {
        TrainEvent::Started { step, params, .. } => {
            let parallel = match devices.len() {
                1 => String::new(),
                n => format!(", data parallel over {n} devices ({} maps per device per step at most)", cfg.batch.div_ceil(n)),
            };
            tracing::info!(
                "training on {} maps of {}×{}: {params} parameters, encoding {}, objective {}, {} schedule, T = {}{parallel}",
                data.maps.len(),
                cfg.unet.image_size,
                cfg.unet.image_size,
                cfg.encoding,
                cfg.objective,
                cfg.schedule,
                cfg.timesteps,
            );
            first_step = step;
            bar.set_position(step);
            bar.reset_eta();
        }
        TrainEvent::Step { step, loss } => {
            recent.push(loss);
            if recent.len() > LOSS_WINDOW {
                recent.remove(0);
            }
            let mean = recent.iter().sum::<f32>() / recent.len() as f32;
            bar.set_message(format!("loss {mean:.4}"));
            bar.set_position(step);
            // Without a terminal the bar is hidden: log a line every 30 s instead.
            if bar.is_hidden() && last_log.elapsed().as_secs() >= 30 {
                last_log = Instant::now();
                let rate = (step - first_step) as f64 / start.elapsed().as_secs_f64().max(1e-9);
                tracing::info!("step {step}/{}: loss {mean:.4} (mean of the last {}), {rate:.2} steps/s", cfg.steps, recent.len());
            }
        }
        TrainEvent::Checkpoint { step } => bar.println(format!("step {step}: checkpoint and preview written to {out}")),
    })?;
    bar.finish_and_clear();
    Ok(Trained { steps: cfg.steps.saturating_sub(first_step), seconds: start.elapsed().as_secs_f64(), final_loss: recent_loss(&outcome.losses) })
}

#[cfg(test)]
mod tests {
    use shared::dataset::{is_test_stem, DatasetOptions, UnknownCodes, TEST_STEMS_FILE};
    use shared::spec::DeviceChoice;
    use shared::ClassTable;

    use super::*;
    use crate::ddpm::{Encoding, Objective, ScheduleKind, UNetConfig};

    fn tiny(encoding: Encoding, objective: Objective, k: usize) -> DdpmTrainConfig {
        DdpmTrainConfig {
            precision: crate::precision::Precision::F32,
            unet: UNetConfig::new(encoding.channels(k), 8, vec![1, 2], 1, vec![], 0.1, 8).with_groups(4),
            encoding,
            objective,
            schedule: ScheduleKind::Linear,
            timesteps: 1000,
            steps: 1,
            batch: 2,
            lr: 2e-4,
            ema_decay: 0.9999,
            clip: Some(1.0),
            checkpoint_every: 500,
            resume: false,
            seed: 0,
            preview_count: 0,
            flip: true,
        }
    }

    fn open(dir: &std::path::Path, unknown: UnknownCodes) -> shared::Result<Dataset> {
        Dataset::open_with(dir, ClassTable::ai_hub(), &DatasetOptions { unknown, test_fraction: 0.3, labels_only: true, ..Default::default() })
    }

    /// A tiny run on a procedural dataset: trains on the train split only and writes the
    /// test stems and the split into the artifact; a config that does not fit the data
    /// writes nothing.
    #[test]
    fn dataset_run_holds_out_the_test_split() {
        let dir = std::env::temp_dir().join(format!("labelgen-train-ddpm-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (data_dir, out) = (dir.join("data"), dir.join("model"));
        shared::procedural::write_dataset(&data_dir, 24, 8, 5, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
        let o = out.to_str().unwrap();
        let train = |ds: &Dataset, cfg: &DdpmTrainConfig| {
            let data = TrainData::from_dataset(ds, 8).unwrap();
            crate::backend::dispatch_train(DeviceChoice::Cpu, DatasetRun { cfg, data: &data, dataset: ds, out: o })
        };
        let ds = open(&data_dir, UnknownCodes::Error).unwrap();
        let done = train(&ds, &tiny(Encoding::OneHot, Objective::X0, 8)).unwrap();
        assert_eq!(done.steps, 1);
        let stems: Vec<String> = (0..24).map(shared::procedural::tile_name).collect();
        let want: Vec<&String> = stems.iter().filter(|s| is_test_stem(s, 0.3)).collect();
        assert!(!want.is_empty() && want.len() < 24, "{} of 24 held out", want.len());
        let text = std::fs::read_to_string(out.join(TEST_STEMS_FILE)).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), want.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        assert_eq!((meta["test_fraction"].as_f64(), meta["train_count"].as_u64()), (Some(0.3), Some(24 - want.len() as u64)));
        assert_eq!(meta["objective"], "x0");
        // model.json states the weights' element count, which the coordinator checks at submit.
        let weights = std::fs::read(out.join("weights.mpk")).unwrap();
        let counted = shared::artifact::weights::check(&weights[..]).unwrap().parameters;
        assert!(counted > 1000 && meta["parameters"].as_u64() == Some(counted), "{} vs {counted}", meta["parameters"]);

        // An unknown code stops the run before training, naming the file and the code …
        // (`to_png` writes an index outside the table as code 0, which no class has.)
        let bad = data_dir.join("labels/000003.png");
        let classes = ClassTable::ai_hub();
        let mut map = shared::LabelMap::from_png(&std::fs::read(&bad).unwrap(), &classes, "t").unwrap();
        map.set(1, 1, 200);
        std::fs::write(&bad, map.to_png(&classes)).unwrap();
        let e = format!("{:#}", open(&data_dir, UnknownCodes::Error).unwrap_err());
        assert!(e.contains("labels/000003.png") && e.contains("pixel (1, 1)") && e.contains("code 0,"), "{e}");
        // … unless unknown codes are ignored.
        let _ = std::fs::remove_dir_all(&out);
        let ds = open(&data_dir, UnknownCodes::Ignore).unwrap();
        train(&ds, &tiny(Encoding::OneHot, Objective::X0, 8)).unwrap();
        assert!(out.join("model.json").exists());

        // x0 with gray is refused before anything is written under `out`.
        let _ = std::fs::remove_dir_all(&out);
        let e = format!("{:#}", train(&ds, &tiny(Encoding::Gray, Objective::X0, 8)).unwrap_err());
        assert!(e.contains("needs the onehot encoding"), "{e}");
        assert!(!out.exists(), "`out` was created for a refused run");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
