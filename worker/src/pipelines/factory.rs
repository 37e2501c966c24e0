//! [`Factory`]: the pipeline a run spec asks for, with the per-process model cache.

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::Backend;
use shared::artifact;
use shared::job::{Pipeline, PipelineFactory, StandardFactory};
use shared::spec::{DeviceChoice, PipelineKind, RunSpec};

use super::ddpm_spade::DdpmSpadePipeline;
use super::models::{fetch_models, CheckedModels, Models};
use crate::backend::OnBackend;
use crate::device::Resolved;

/// Builds the pipeline of a run. Models are fetched, verified and loaded once per process
/// and shared by every run that names the same artifacts on the same device, for as long
/// as a pipeline holds them (the cache keeps weak references: the worker's cache of runs'
/// pipelines decides what stays loaded).
pub struct Factory {
    /// The worker's `--device`, overriding `pipeline.device` when set.
    device: Option<DeviceChoice>,
    /// The worker's batch sizes and overlap, overriding the run's.
    fit: crate::args::FitArgs,
    cache_dir: PathBuf,
    loaded: Mutex<HashMap<String, Weak<dyn Any + Send + Sync>>>,
}

impl Default for Factory {
    fn default() -> Self {
        Factory::new(None)
    }
}

impl Factory {
    /// `device` overrides every run spec's `pipeline.device` when given.
    pub fn new(device: Option<DeviceChoice>) -> Self {
        Factory { device, fit: Default::default(), loaded: Mutex::new(HashMap::new()), cache_dir: artifact::default_cache_dir() }
    }

    /// The same factory, building `ddpm-spade` pipelines with the batch sizes and overlap
    /// of `fit` where set (the worker's `--label-batch`, `--image-batch`, `--no-overlap`).
    pub fn with_fit(self, fit: crate::args::FitArgs) -> Self {
        Factory { fit, ..self }
    }

    fn build_ddpm_spade(&self, spec: &RunSpec) -> anyhow::Result<Arc<dyn Pipeline>> {
        let fitted;
        let spec = if self.fit.any() {
            fitted = self.fit.apply(spec);
            tracing::info!(
                label_batch = fitted.pipeline.label_batch(),
                image_batch = fitted.pipeline.image_batch(),
                overlap = fitted.pipeline.overlap,
                "this worker's --label-batch / --image-batch / --no-overlap replace the run's (samples are the same)"
            );
            &fitted
        } else {
            spec
        };
        let checked = crate::sync_store::block_on(fetch_models(spec, &self.cache_dir))?;
        let choice = self.device.unwrap_or(spec.pipeline.device);
        let devices = crate::device::resolve_all(choice, &crate::device::DriverProbe::detect())?;
        // Each device as a single-device choice: `dispatch` takes no cuda:all (which is
        // one device on a one-GPU machine).
        let one = |d: &Resolved| match d {
            Resolved::Cuda(n) => DeviceChoice::Cuda(*n),
            Resolved::Cpu => DeviceChoice::Cpu,
        };
        if let [device] = devices.as_slice() {
            return crate::backend::dispatch(one(device), BuildOn { factory: self, spec, checked });
        }
        // cuda:all: one pipeline per GPU (models loaded on each), one process; a GPU it
        // does not build on is left out while another builds.
        let (pipes, failed) =
            super::spread::build_each(&devices, |d| d.to_string(), |d| crate::backend::dispatch(one(d), BuildOn { factory: self, spec, checked: checked.clone() }))?;
        for why in &failed {
            tracing::error!(cause = %why, "left out of cuda:all: the run's pipeline does not build on this GPU; the others carry on without it");
        }
        tracing::info!(devices = pipes.len(), left_out = failed.len(), "ddpm-spade pipeline on every GPU");
        Ok(Arc::new(super::Spread::new(pipes)))
    }
}

/// [`Factory::build_ddpm_spade`] on the backend `--device` resolved to.
struct BuildOn<'a> {
    factory: &'a Factory,
    spec: &'a RunSpec,
    checked: CheckedModels,
}

impl OnBackend for BuildOn<'_> {
    type Output = Arc<dyn Pipeline>;
    fn run<B: Backend>(self, dev: B::Device, resolved: Resolved) -> anyhow::Result<Arc<dyn Pipeline>> {
        self.factory.build_on::<B>(self.spec, self.checked, dev, resolved)
    }
}

impl Factory {
    fn build_on<B: Backend>(&self, spec: &RunSpec, checked: CheckedModels, dev: B::Device, resolved: Resolved) -> anyhow::Result<Arc<dyn Pipeline>> {
        let ids = checked.ids();
        let precision = spec.pipeline.precision;
        let key = format!("{}/{}/{resolved}/{precision}", ids.label_digest, ids.image_digest);
        // Held while loading, so concurrent job slots load a model once, not once each.
        let mut loaded_models = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        // Drop the entries whose models are gone.
        loaded_models.retain(|_, m| m.strong_count() > 0);
        let existing = loaded_models.get(&key).and_then(Weak::upgrade);
        let models: Arc<Models<B>> = match existing.and_then(|a| a.downcast::<Models<B>>().ok()) {
            Some(m) => {
                // Still loaded for another pipeline: a device that failed since (a panic
                // dropped the run's pipeline) is found by this small read-back, not by the
                // next job's attempt. The CUDA backend panics rather than erring.
                crate::backend::guard(resolved, || Ok(burn::tensor::Tensor::<B, 1>::zeros([1], &dev).into_data())).context("checking the device the loaded models are on")?;
                m
            }
            None => {
                let start = Instant::now();
                let (label_uri, image_uri) = (checked.labels.uri.clone(), checked.images.uri.clone());
                // The CUDA backend panics (rather than erring) when it cannot start.
                let loaded = crate::backend::guard(resolved, || checked.load::<B>(&dev, precision)).context("loading the models")?;
                tracing::info!(
                    device = %resolved,
                    %precision,
                    label_model = %label_uri, label_sha256 = %ids.label_digest,
                    image_model = %image_uri, image_sha256 = %ids.image_digest,
                    seconds = start.elapsed().as_secs_f64(),
                    "models loaded"
                );
                let m = Arc::new(loaded);
                let any: Arc<dyn Any + Send + Sync> = m.clone();
                loaded_models.insert(key, Arc::downgrade(&any));
                m
            }
        };
        drop(loaded_models);
        Ok(Arc::new(DdpmSpadePipeline::new(spec, &ids, models, resolved)?))
    }
}

impl PipelineFactory for Factory {
    fn build(&self, spec: &RunSpec) -> shared::Result<Arc<dyn Pipeline>> {
        match spec.pipeline.kind {
            PipelineKind::Procedural => StandardFactory.build(spec),
            PipelineKind::DdpmSpade => self.build_ddpm_spade(spec).map_err(|e| {
                let message = format!("ddpm-spade pipeline: {e:#}");
                // A model changed since submit stays the run's (see `Error::ModelChanged`).
                if e.chain().any(|c| matches!(c.downcast_ref::<shared::Error>(), Some(shared::Error::ModelChanged(_)))) {
                    shared::Error::ModelChanged(message)
                } else {
                    shared::Error::Job(message)
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs naming the same models on one device share one load while a pipeline holds
    /// them; once none does, the models are freed (the cache holds weak references) and
    /// the next build loads them again.
    #[test]
    fn loaded_models_are_shared_while_held_and_freed_after() {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo");
        let text = format!(
            "[run]\ncount = 4\nshard_size = 4\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = 64\n\
             [pipeline.labels]\nmodel = \"{models}/ddpm\"\nsteps = 2\n[pipeline.images]\nmodel = \"{models}/spade\"\n"
        );
        let spec = RunSpec::parse(&text, "test spec").unwrap();
        let factory = Factory::new(Some(DeviceChoice::Cpu));
        let held = |f: &Factory| f.loaded.lock().unwrap().values().map(Weak::strong_count).collect::<Vec<_>>();
        let one = factory.build(&spec).unwrap();
        let two = factory.build(&spec).unwrap();
        assert_eq!(held(&factory), vec![2], "one load, held by both pipelines");
        drop((one, two));
        assert_eq!(held(&factory), vec![0], "freed with the last pipeline");
        let three = factory.build(&spec).unwrap();
        assert_eq!(held(&factory), vec![1], "loaded again");
        assert_eq!(three.generate(&[0]).unwrap().len(), 1);

        // A worker's --label-batch / --image-batch / --no-overlap change how it runs the
        // run, not what it makes: the run's samples (labels exactly, images to rounding).
        // Each batch lowered to the largest divisor of the run's call (8 samples) up to N,
        // never raised.
        let fit = crate::args::FitArgs { label_batch: Some(3), image_batch: Some(1), no_overlap: true };
        let fitted_spec = fit.apply(&spec);
        assert_eq!((fitted_spec.pipeline.label_batch(), fitted_spec.pipeline.image_batch(), fitted_spec.pipeline.overlap), (2, 1, false));
        let raised = crate::args::FitArgs { label_batch: Some(100), ..Default::default() }.apply(&spec);
        assert_eq!((raised.pipeline.label_batch(), raised.pipeline.overlap), (8, true));
        // Labels 128 and images 24 in shards of 256: calls of 128 samples, so 16 images a
        // batch (not 12, which would pad each call's last 8 to 12).
        let uneven = RunSpec::parse(
            &text.replace("steps = 2\n", "steps = 2\nbatch_size = 128\n").replace("spade\"\n", "spade\"\nbatch_size = 24\n").replace("shard_size = 4", "shard_size = 256"),
            "test spec",
        )
        .unwrap();
        assert_eq!(uneven.pipeline.generate_batch(256), 128);
        let fitted_uneven = crate::args::FitArgs { image_batch: Some(16), ..Default::default() }.apply(&uneven);
        assert_eq!((fitted_uneven.pipeline.label_batch(), fitted_uneven.pipeline.image_batch()), (128, 16));
        // Handed the run's calls, as a job does, the fitted pipeline makes the same samples.
        let fitted = Factory::new(Some(DeviceChoice::Cpu)).with_fit(fit).build(&spec).unwrap();
        let indices = [0, 1, 2, 3];
        let mut made = Vec::new();
        fitted.generate_batches(&indices, spec.pipeline.generate_batch(spec.run.shard_size), &shared::job::never_halted, &mut |r| {
            made.extend(r.unwrap());
            true
        });
        let c = crate::bench::diff(&three.generate(&indices).unwrap(), &made);
        assert_eq!(c.mean_label_agreement(), 1.0, "{c}");
        assert!(c.mean_image_mae() < 0.05, "{c}");
    }

    /// The flags parse on the commands that build pipelines, and a batch of 0 is refused.
    #[test]
    fn fit_flags_parse() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["worker", "run", "c.toml", "--label-batch", "64", "--no-overlap"]).unwrap();
        let Some(crate::cli::Command::Run(a)) = cli.command else { panic!("not run") };
        assert_eq!((a.fit.label_batch, a.fit.image_batch, a.fit.no_overlap), (Some(64), None, true));
        assert!(crate::cli::Cli::try_parse_from(["worker", "run-shard", "c.toml", "--image-batch", "0"]).is_err());
        let cli = crate::cli::Cli::try_parse_from(["worker", "--image-batch", "4"]).unwrap();
        assert_eq!(cli.serve.fit.image_batch, Some(4));
    }
}
