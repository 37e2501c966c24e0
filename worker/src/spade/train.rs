//! SPADE training: one step of both networks ([`SpadeTrainer::step`]), checkpoints of both
//! networks and both optimizers, and the loop ([`fit`]) with previews and the final
//! artifact.
//!
//! A step follows NVlabs `pix2pix_trainer`: a generator step (hinge G loss + 10 × feature
//! matching, the discriminator run once on `cat(fake, real)`), then a discriminator step
//! on the same fakes, detached (NVlabs regenerates them with the updated generator; reusing
//! them saves a generator forward per step). Adam with β = (0, 0.9), ε = 1e-8 (PyTorch's;
//! Burn's default is 1e-5), lr 1e-4 (G) and 4e-4 (D).
//!
//! With several devices (`--device cuda:all`) a step is data parallel
//! ([`SpadeTrainer::grads`], [`crate::parallel`]).

use crate::weights::{module_from_bytes, module_to_bytes};
use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use shared::dataset::{grid, PairSource};
use shared::{rng_for, sample_seed, ClassTable, LabelMap, RgbImage};

use super::discriminator::{SpadeDiscriminator, SpadeDiscriminatorConfig};
use super::generator::{SpadeGenerator, SpadeGeneratorConfig};
use super::input::noise;
use super::loss::{feature_matching, hinge_d, hinge_g, split_fake_real};
use super::model::{Losses, SpadeMeta, SpadeTrainSettings};
use super::vgg::Vgg19;
use crate::sync_store;
use crate::tensors::{images_to_tensor, one_hot};

type Rec = NamedMpkBytesRecorder<FullPrecisionSettings>;
type OptG<B> = OptimizerAdaptor<Adam, SpadeGenerator<B>, B>;
type OptD<B> = OptimizerAdaptor<Adam, SpadeDiscriminator<B>, B>;

/// Checkpoint files, under `URI/`.
pub const CHECKPOINT_DIR: &str = "checkpoint";
const SALT_NOISE: u64 = 0x5ADE_0001;
const SALT_ORDER: u64 = 0x5ADE_0002;

fn adam() -> AdamConfig {
    AdamConfig::new().with_beta_1(0.0).with_beta_2(0.9).with_epsilon(1e-8)
}

/// The losses of one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepLosses {
    /// Generator hinge loss.
    pub g_gan: f32,
    /// Feature matching, weighted.
    pub g_feat: f32,
    /// Discriminator hinge loss.
    pub d: f32,
    /// VGG perceptual loss, weighted (0 when off).
    #[serde(default)]
    pub g_vgg: f32,
}

/// Both networks, both optimisers and the step count.
pub struct SpadeTrainer<B: AutodiffBackend> {
    pub generator: SpadeGenerator<B>,
    pub discriminator: SpadeDiscriminator<B>,
    opt_g: OptG<B>,
    opt_d: OptD<B>,
    /// Steps done.
    pub step: u64,
    pub g_config: SpadeGeneratorConfig,
    pub d_config: SpadeDiscriminatorConfig,
    pub settings: SpadeTrainSettings,
    /// The frozen VGG19 of the perceptual loss, when on.
    pub vgg: Option<Vgg19<B>>,
    /// Compute precision of the steps; parameters, optimisers and running states stay f32
    /// ([`crate::precision::cast_for_training`]).
    pub precision: crate::precision::Precision,
    /// Where the steps run: one device, or several (data parallel; the first holds the
    /// networks and the optimizers).
    devices: Vec<B::Device>,
}

/// A step's gradients ([`SpadeTrainer::grads`]), on the trainer's first device.
pub struct StepGrads {
    pub generator: GradientsParams,
    pub discriminator: GradientsParams,
    pub losses: StepLosses,
}

/// What a checkpoint's `state.json` holds besides the weights.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    step: u64,
    #[serde(deserialize_with = "super::generator::deserialize_config")]
    generator: SpadeGeneratorConfig,
    discriminator: SpadeDiscriminatorConfig,
    settings: SpadeTrainSettings,
    losses: Losses,
    /// The training data's digest (`None` in checkpoints from before it was recorded):
    /// the data order is a permutation of the pairs, so a resume on other data (files
    /// added, removed or replaced) sees other batches than an uninterrupted run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_digest: Option<String>,
    /// The class table trained with (`None` in checkpoints from before it was recorded):
    /// the generator's input channels are its classes in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    classes: Option<ClassTable>,
    /// Where the weight files are (`None`: directly under `checkpoint/`, the old layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<sync_store::FileSet>,
}

impl<B: AutodiffBackend> SpadeTrainer<B> {
    /// Fresh networks.
    pub fn new(g_config: SpadeGeneratorConfig, d_config: SpadeDiscriminatorConfig, settings: SpadeTrainSettings, device: &B::Device) -> Self {
        assert_eq!(g_config.label_nc, d_config.label_nc, "generator and discriminator disagree on label_nc");
        SpadeTrainer {
            generator: g_config.init(device),
            discriminator: d_config.init(device),
            opt_g: adam().init(),
            opt_d: adam().init(),
            step: 0,
            g_config,
            d_config,
            settings,
            vgg: None,
            precision: crate::precision::Precision::F32,
            devices: vec![device.clone()],
        }
    }

    /// Turns the VGG perceptual loss on (`Some`, with `settings.vgg_weight`) or off.
    pub fn with_vgg(mut self, vgg: Option<Vgg19<B>>, weight: f64) -> Self {
        self.settings.vgg_weight = if vgg.is_some() { weight } else { 0.0 };
        self.vgg = vgg;
        self
    }

    /// Steps computed in precision `p` (mixed precision for bf16 and f16).
    pub fn with_precision(self, p: crate::precision::Precision) -> Self {
        SpadeTrainer { precision: p, ..self }
    }

    /// Noise seed of sample `i` of step `step`.
    pub fn noise_seed(&self, step: u64, i: usize) -> u64 {
        sample_seed(self.settings.seed ^ SALT_NOISE, step * self.settings.batch as u64 + i as u64)
    }

    /// Steps data parallel over `devices` (the first holds the networks and the
    /// optimizers; [`crate::parallel`]). Batch norm's statistics are each device's own
    /// share's, and the running statistics kept are the first device's.
    pub fn with_devices(self, devices: Vec<B::Device>) -> Self {
        SpadeTrainer { devices, ..self }
    }

    /// One generator step then one discriminator step on a batch of pairs (labels
    /// `size × size` class indices, images the same size), with [`Self::grads`].
    pub fn step(&mut self, labels: &[LabelMap], images: &[RgbImage]) -> anyhow::Result<StepLosses> {
        let StepGrads { generator, discriminator, losses } = self.grads(labels, images)?;
        self.generator = self.opt_g.step(self.settings.lr_g, self.generator.clone(), generator);
        self.discriminator = self.opt_d.step(self.settings.lr_d, self.discriminator.clone(), discriminator);
        self.step += 1;
        Ok(losses)
    }

    /// The gradients of a step's generator and discriminator losses (the discriminator's
    /// on the same fakes, detached, before the generator step changes anything it sees)
    /// and the losses. Data parallel over the trainer's devices, each share's losses
    /// weighted by its share of the batch (every loss is a mean over samples), so the
    /// gradients are those one device computes on the whole batch. Advances the running
    /// states (spectral norm's `u`, batch-norm statistics) as a step does.
    pub fn grads(&self, labels: &[LabelMap], images: &[RgbImage]) -> anyhow::Result<StepGrads> {
        anyhow::ensure!(labels.len() == images.len(), "step: {} labels but {} images", labels.len(), images.len());
        let b = labels.len();
        let seeds: Vec<u64> = (0..b).map(|i| self.noise_seed(self.step, i)).collect();
        // The networks on each device: the trainer's own on the first; on the others,
        // copies with running states of their own (spectral norm's `u`, batch-norm
        // statistics; a fork would share them), made here on this thread.
        let inputs: Vec<_> = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, device)| match i {
                0 => (self.generator.clone(), self.discriminator.clone(), self.vgg.clone()),
                // (`fork`: autodiff leaves of their own, apart from the trainer's.)
                _ => (
                    self.g_config.init::<B>(device).load_record(self.generator.clone().into_record()).fork(device),
                    self.d_config.init::<B>(device).load_record(self.discriminator.clone().into_record()).fork(device),
                    self.vgg.clone().map(|v| v.fork(device)),
                ),
            })
            .collect();
        let (first, this) = (&self.devices[0], self);
        let shares = crate::parallel::each_share(inputs, &self.devices, b, |_, (generator, discriminator, vgg), r, device| {
            let weight = r.len() as f64 / b as f64;
            // (1 on one device: an exact no-op.)
            let weighted = |loss: Tensor<B, 1>| loss.mul_scalar(weight);
            let n = r.len();
            let seg = one_hot::<B>(&labels[r.clone()], this.g_config.label_nc, device);
            let real = images_to_tensor::<B>(&images[r.clone()], device);
            let z = noise::<B>(&seeds[r], this.g_config.z_dim, device);
            let seg2 = Tensor::cat(vec![seg.clone(), seg.clone()], 0);

            // The networks this step computes with: f32, or a cast differentiable back to
            // the f32 parameters.
            let (g, d) = (crate::precision::cast_for_training(generator.clone(), this.precision), crate::precision::cast_for_training(discriminator.clone(), this.precision));

            // Generator.
            let fake = g.forward(seg, z);
            let fake_d = fake.clone().detach();
            let g_vgg = match &vgg {
                Some(vgg) if this.settings.vgg_weight > 0.0 => Some(weighted(vgg.loss(fake.clone(), real.clone()).mul_scalar(this.settings.vgg_weight))),
                _ => None,
            };
            let out = d.forward(seg2.clone(), Tensor::cat(vec![fake, real.clone()], 0));
            let (pf, pr) = split_fake_real(out, n);
            let g_gan = weighted(hinge_g(&pf));
            let g_feat = weighted(feature_matching(&pf, &pr).mul_scalar(this.settings.feat_weight));
            let g_loss = match g_vgg.clone() {
                Some(v) => g_gan.clone() + g_feat.clone() + v,
                None => g_gan.clone() + g_feat.clone(),
            };
            let grads_g = GradientsParams::from_grads(g_loss.backward(), &generator).to_device(first, &generator);

            // Discriminator, on the same fakes (detached); the generator step left it as it was.
            let d = crate::precision::cast_for_training(discriminator.clone(), this.precision);
            let out = d.forward(seg2, Tensor::cat(vec![fake_d, real], 0));
            let (pf, pr) = split_fake_real(out, n);
            let d_loss = weighted(hinge_d(&pr, &pf));
            let d_val = d_loss.clone().into_scalar().elem::<f32>();
            let grads_d = GradientsParams::from_grads(d_loss.backward(), &discriminator).to_device(first, &discriminator);
            let value = |t: Tensor<B, 1>| t.into_scalar().elem::<f32>();
            (grads_g, grads_d, StepLosses { g_gan: value(g_gan), g_feat: value(g_feat), d: d_val, g_vgg: g_vgg.map_or(0.0, value) })
        })?;
        let mut losses = StepLosses::default();
        let (mut grads_g, mut grads_d) = (Vec::new(), Vec::new());
        for (g, d, l) in shares {
            grads_g.push(g);
            grads_d.push(d);
            losses = StepLosses { g_gan: losses.g_gan + l.g_gan, g_feat: losses.g_feat + l.g_feat, d: losses.d + l.d, g_vgg: losses.g_vgg + l.g_vgg };
        }
        Ok(StepGrads { generator: crate::parallel::sum_grads(&self.generator, grads_g), discriminator: crate::parallel::sum_grads(&self.discriminator, grads_d), losses })
    }

    /// Whether every weight of both networks is finite. The losses are checked each
    /// step, but they come from the weights before the step: an overflowing gradient (f16
    /// has no loss scaling) makes the weights non-finite while that step's losses look
    /// fine, so a checkpoint checks the weights it would write.
    pub fn weights_finite(&self) -> bool {
        struct Finite(bool);
        impl<B: Backend> burn::module::ModuleVisitor<B> for Finite {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
                // A sum of magnitudes is NaN or inf if any element is (the weights are
                // far too small to overflow it).
                self.0 = self.0 && param.val().abs().sum().into_scalar().elem::<f32>().is_finite();
            }
        }
        let mut finite = Finite(true);
        self.generator.visit(&mut finite);
        self.discriminator.visit(&mut finite);
        finite.0
    }

    /// The generator for inference (no autodiff).
    pub fn inference_generator(&self) -> SpadeGenerator<B::InnerBackend> {
        self.generator.valid()
    }

    /// Writes both networks and both optimisers as a new set under `URI/checkpoint/step-N/`,
    /// then `state.json` naming it, then removes the previous set
    /// ([`sync_store::FileSet`]: a kill mid-save leaves the previous checkpoint whole).
    /// `data_digest`: the digest of the data the run trains on.
    pub fn save_checkpoint(&self, uri: &str, losses: Losses, data_digest: &str, classes: &ClassTable) -> anyhow::Result<()> {
        let rec = Rec::default();
        let files = vec![
            ("generator.mpk", module_to_bytes(self.generator.clone()).context("encoding the generator")?),
            ("discriminator.mpk", module_to_bytes(self.discriminator.clone()).context("encoding the discriminator")?),
            ("optim_g.mpk", rec.record(self.opt_g.to_record(), ()).context("encoding the generator's optimiser")?),
            ("optim_d.mpk", rec.record(self.opt_d.to_record(), ()).context("encoding the discriminator's optimiser")?),
        ];
        let set = sync_store::write_set(uri, CHECKPOINT_DIR, self.step, files)?;
        let state = CheckpointState {
            step: self.step,
            generator: self.g_config.clone(),
            discriminator: self.d_config.clone(),
            settings: self.settings.clone(),
            losses,
            data_digest: Some(data_digest.to_string()),
            classes: Some(classes.clone()),
            files: Some(set.clone()),
        };
        sync_store::write_file(uri, sync_store::CHECKPOINT_STATE, serde_json::to_vec_pretty(&state)?)?;
        sync_store::prune_sets(uri, CHECKPOINT_DIR, "state.json", &set)
    }

    /// Loads `URI/checkpoint/` if there is one (`None` if not), with its smoothed losses and
    /// the digest of the data its run trained on (if recorded). Errors name the file and say what is
    /// wrong, e.g. an architecture that differs from `g_config`, a class table other than
    /// `classes` or a step past `steps` ([`sync_store::check_resume`]), found before any
    /// weights are read.
    pub fn load_checkpoint(
        uri: &str,
        g_config: &SpadeGeneratorConfig,
        d_config: &SpadeDiscriminatorConfig,
        (classes, steps): (&ClassTable, u64),
        device: &B::Device,
    ) -> anyhow::Result<Option<(Self, Losses, Option<String>)>> {
        let Some(state) = sync_store::read_file(uri, sync_store::CHECKPOINT_STATE)? else { return Ok(None) };
        let where_ = |name: &str| format!("{uri}/{CHECKPOINT_DIR}/{name}");
        let state: CheckpointState = serde_json::from_slice(&state).with_context(|| format!("{}: not a SPADE checkpoint state", where_("state.json")))?;
        if &state.generator != g_config {
            anyhow::bail!("{}: the checkpoint's generator is {:?}, this run asks for {:?} (same --size, --ngf, --input and --z-dim needed to --resume; a checkpoint from before --input existed is --input noise)", where_("state.json"), state.generator, g_config);
        }
        if &state.discriminator != d_config {
            anyhow::bail!("{}: the checkpoint's discriminator is {:?}, this run asks for {:?}", where_("state.json"), state.discriminator, d_config);
        }
        sync_store::check_resume(&where_("state.json"), state.classes.as_ref(), classes, state.step, steps)?;
        let rec = Rec::default();
        let get = |name: &str| sync_store::read_set_file(uri, CHECKPOINT_DIR, state.files.as_ref(), name);
        let mut t = Self::new(state.generator, state.discriminator, state.settings, device);
        // Shape-checked: a damaged or foreign file is an error naming it, not a panic.
        t.generator = module_from_bytes(t.generator, get("generator.mpk")?, device, &where_("generator.mpk"))?;
        t.discriminator = module_from_bytes(t.discriminator, get("discriminator.mpk")?, device, &where_("discriminator.mpk"))?;
        let og = rec.load(get("optim_g.mpk")?, device).with_context(|| format!("{}: decoding", where_("optim_g.mpk")))?;
        t.opt_g = t.opt_g.load_record(og);
        let od = rec.load(get("optim_d.mpk")?, device).with_context(|| format!("{}: decoding", where_("optim_d.mpk")))?;
        t.opt_d = t.opt_d.load_record(od);
        t.step = state.step;
        Ok(Some((t, state.losses, state.data_digest)))
    }
}

/// What [`fit`] needs besides the data.
#[derive(Debug, Clone)]
pub struct SpadeFitOptions {
    /// Artifact location: `model.json`, weights, `checkpoint/`, `previews/`.
    pub out: String,
    /// Total steps (including those of a resumed checkpoint).
    pub steps: u64,
    /// Checkpoint and preview every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    pub resume: bool,
    pub classes: ClassTable,
    /// `model.json`'s data digest.
    pub data_digest: String,
    /// `model.json`'s `test_fraction`: the share of the dataset held out (`None`: not
    /// recorded, e.g. pairs that are not a dataset directory).
    pub test_fraction: Option<f64>,
    /// Compute precision of the steps ([`SpadeTrainer::precision`]).
    pub precision: crate::precision::Precision,
}

/// Progress of [`fit`], reported after every step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub step: u64,
    pub steps: u64,
    pub losses: StepLosses,
    /// Exponential moving average (α = 0.05) of the losses.
    pub smoothed: Losses,
    pub images_per_sec: f64,
}

/// The preview grid: one row per pair, `label | generated | real`.
pub fn preview<B: Backend>(generator: &SpadeGenerator<B>, pairs: &[(RgbImage, LabelMap)], seeds: &[u64], classes: &ClassTable) -> RgbImage {
    let labels: Vec<LabelMap> = pairs.iter().map(|p| p.1.clone()).collect();
    let fakes = generator.synthesize(&labels, seeds);
    let mut cells = Vec::with_capacity(pairs.len() * 3);
    for ((img, lab), fake) in pairs.iter().zip(fakes) {
        cells.push(lab.colorize(classes));
        cells.push(fake);
        cells.push(img.clone());
    }
    grid(&cells, 3)
}

/// Decoded batches waiting for the training step.
pub const PREFETCH_BATCHES: usize = 2;

/// Trains (or resumes) to `opts.steps` steps on `pairs`, writing checkpoints, previews
/// (`previews/step-N.png`) and finally the artifact (weights + `model.json`) to
/// `opts.out`. Returns the final trainer.
#[allow(clippy::too_many_arguments)] // the run's parts; a struct would only rename them
pub fn fit<B: AutodiffBackend>(
    g_config: SpadeGeneratorConfig,
    d_config: SpadeDiscriminatorConfig,
    settings: SpadeTrainSettings,
    vgg: Option<Vgg19<B>>,
    pairs: &dyn PairSource,
    opts: &SpadeFitOptions,
    devices: &[B::Device],
    mut on_progress: impl FnMut(&Progress),
) -> anyhow::Result<SpadeTrainer<B>> {
    let n = pairs.len();
    anyhow::ensure!(n > 0, "no training pairs");
    let Some(device) = devices.first() else { anyhow::bail!("training needs at least one device") };
    let mut smoothed = Losses::default();
    // Initial weights come from the backend's random ops: seed them (reproducible on one
    // machine and thread count; per-sample noise does not depend on this).
    B::seed(device, sample_seed(settings.seed, 0x5ADE_0003));
    let trainer = match opts.resume {
        true => match SpadeTrainer::<B>::load_checkpoint(&opts.out, &g_config, &d_config, (&opts.classes, opts.steps), device)? {
            Some((mut t, losses, then_digest)) => {
                // The data order and the noise follow the batch and the seed: a resume
                // with others would not continue the same run. Learning rates and loss
                // weights follow this run's flags (lowering them after a divergence is
                // what resuming is for), said in the log.
                let (was, origin) = (&t.settings, format!("{}/{}", opts.out, sync_store::CHECKPOINT_STATE));
                for (flag, then, now) in [("--batch", was.batch as u64, settings.batch as u64), ("--seed", was.seed, settings.seed)] {
                    if then != now {
                        anyhow::bail!("{origin}: the checkpoint was trained with {flag} {then}, this run asks for {now}; resume with {flag} {then} (the data order depends on it), or start again with --overwrite");
                    }
                }
                if let Some(then) = then_digest.filter(|then| *then != opts.data_digest) {
                    tracing::warn!("{origin}: the checkpoint was trained on other data (digest {then} vs {}): the data order is a permutation of the pairs, so the batches from here on are not those of an uninterrupted run", opts.data_digest);
                }
                if (was.lr_g, was.lr_d, was.feat_weight) != (settings.lr_g, settings.lr_d, settings.feat_weight) {
                    tracing::warn!(
                        lr_g = settings.lr_g,
                        lr_d = settings.lr_d,
                        was_lr_g = was.lr_g,
                        was_lr_d = was.lr_d,
                        "resuming with other learning rates or loss weights than the checkpoint's"
                    );
                }
                t.settings = SpadeTrainSettings { vgg_weight: t.settings.vgg_weight, ..settings.clone() };
                tracing::info!(step = t.step, "resumed from {}/{CHECKPOINT_DIR}", opts.out);
                smoothed = losses;
                t
            }
            None => {
                tracing::warn!("--resume: no checkpoint under {}/{CHECKPOINT_DIR}; starting fresh", opts.out);
                SpadeTrainer::new(g_config, d_config, settings.clone(), device)
            }
        },
        false => SpadeTrainer::new(g_config, d_config, settings.clone(), device),
    };
    // The perceptual loss follows this run's flags, also when resuming.
    let mut trainer = trainer.with_vgg(vgg, settings.vgg_weight).with_precision(opts.precision).with_devices(devices.to_vec());
    // The batch a resumed run steps with is its checkpoint's.
    crate::parallel::check_batch(trainer.settings.batch, devices.len())?;
    if devices.len() > 1 {
        tracing::info!("data parallel over {} devices ({} pairs per device per step at most)", devices.len(), trainer.settings.batch.div_ceil(devices.len()));
    }
    let batch = trainer.settings.batch;
    let seed = trainer.settings.seed;
    let preview_pairs: Vec<(RgbImage, LabelMap)> = (0..n.min(4)).map(|i| pairs.get(i)).collect::<shared::Result<_>>()?;
    let preview_seeds: Vec<u64> = (0..preview_pairs.len() as u64).map(|i| sample_seed(seed ^ SALT_NOISE, u64::MAX - i)).collect();

    // Sample order: epoch e is a permutation seeded by (seed, e); position p of the whole
    // run is sample p % n of epoch p / n, so a resumed run sees the same order. Batches
    // are decoded in parallel ahead of the step (`prefetch_batches`).
    // The last two epochs' permutations are kept (a batch spans at most two while the
    // batch is at most the pairs; a larger one recomputes them, same result).
    let perms: std::sync::Mutex<Vec<(u64, std::sync::Arc<Vec<usize>>)>> = Default::default();
    let perm_of = |epoch: u64| -> std::sync::Arc<Vec<usize>> {
        let mut cache = perms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, perm)) = cache.iter().find(|(e, _)| *e == epoch) {
            return perm.clone();
        }
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng_for(sample_seed(seed ^ SALT_ORDER, epoch), 0));
        let perm = std::sync::Arc::new(perm);
        cache.push((epoch, perm.clone()));
        if cache.len() > 2 {
            cache.remove(0);
        }
        perm
    };
    let order = |step: u64| -> Vec<usize> {
        (0..batch as u64)
            .map(|i| {
                let p = step * batch as u64 + i;
                perm_of(p / n as u64)[(p % n as u64) as usize]
            })
            .collect()
    };
    let start = std::time::Instant::now();
    let first_step = trainer.step;
    shared::dataset::prefetch_batches::<_, anyhow::Error>(pairs, first_step..opts.steps, PREFETCH_BATCHES, order, |_, pairs| {
        let (images, labels): (Vec<RgbImage>, Vec<LabelMap>) = pairs.into_iter().unzip();
        let losses = trainer.step(&labels, &images)?;
        // A diverged GAN stops here, before its weights reach a checkpoint (the last one
        // stays good for --resume with a lower learning rate).
        if ![losses.g_gan, losses.g_feat, losses.d, losses.g_vgg].iter().all(|v| v.is_finite()) {
            anyhow::bail!(
                "the losses became non-finite at step {} (G {}, feature {}, D {}, VGG {}); resume from the last checkpoint with a lower --lr-g / --lr-d, or in f32",
                trainer.step,
                losses.g_gan,
                losses.g_feat,
                losses.d,
                losses.g_vgg
            );
        }
        let l = Losses { g_gan: losses.g_gan as f64, g_feat: losses.g_feat as f64, d: losses.d as f64 };
        smoothed = if trainer.step == 1 { l } else { smoothed.ema(&l, 0.05) };
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        on_progress(&Progress { step: trainer.step, steps: opts.steps, losses, smoothed, images_per_sec: (trainer.step - first_step) as f64 * batch as f64 / secs });
        let at_checkpoint = opts.checkpoint_every > 0 && trainer.step % opts.checkpoint_every == 0;
        if at_checkpoint || trainer.step == opts.steps {
            if !trainer.weights_finite() {
                anyhow::bail!(
                    "the weights became non-finite by step {} (a gradient overflowed; its losses were still finite); nothing was saved, so the last checkpoint stays good: resume from it with a lower --lr-g / --lr-d, or in f32",
                    trainer.step
                );
            }
            trainer.save_checkpoint(&opts.out, smoothed, &opts.data_digest, &opts.classes)?;
            let g = trainer.inference_generator();
            let png = preview(&g, &preview_pairs, &preview_seeds, &opts.classes).to_png();
            sync_store::write_file(&opts.out, &format!("previews/step-{}.png", trainer.step), png)?;
        }
        Ok(())
    })?;
    let mut meta =
        SpadeMeta::new(trainer.g_config.clone(), trainer.d_config.clone(), opts.classes.clone(), opts.data_digest.clone(), trainer.step, smoothed, trainer.settings.clone());
    meta.test_fraction = opts.test_fraction;
    meta.train_count = Some(n as u64);
    super::model::save(&trainer.inference_generator(), &meta, &opts.out)?;
    Ok(trainer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{CpuDevice, CpuTrain};
    use crate::spade::SpadeModel;
    use shared::procedural::{sample, ClassShares};

    /// Mean colour of each class's pixels over a set of images (`None` where absent).
    fn class_means(images: &[RgbImage], labels: &[LabelMap], k: usize) -> Vec<Option<[f64; 3]>> {
        let mut acc = vec![([0f64; 3], 0u64); k];
        for (img, lab) in images.iter().zip(labels) {
            for (p, &c) in lab.data.iter().enumerate() {
                if (c as usize) < k {
                    for ch in 0..3 {
                        acc[c as usize].0[ch] += img.data[p * 3 + ch] as f64;
                    }
                    acc[c as usize].1 += 1;
                }
            }
        }
        acc.into_iter().map(|(s, n)| (n > 0).then(|| s.map(|v| v / n as f64))).collect()
    }

    fn l1(a: &[RgbImage], b: &[RgbImage]) -> f64 {
        let (mut s, mut n) = (0f64, 0usize);
        for (x, y) in a.iter().zip(b) {
            s += x.data.iter().zip(&y.data).map(|(&p, &q)| (p as f64 - q as f64).abs()).sum::<f64>();
            n += x.data.len();
        }
        s / n as f64
    }

    fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
        a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn spade_meta_without_split_fields_still_loads() {
        let (g, d) = (SpadeGeneratorConfig::small(8, 32, 8), SpadeDiscriminatorConfig::new(8));
        let mut meta = SpadeMeta::new(g, d, ClassTable::ai_hub(), "x".into(), 3, Losses::default(), SpadeTrainSettings::default());
        meta.test_fraction = Some(0.1);
        meta.train_count = Some(9);
        let mut v = serde_json::to_value(&meta).unwrap();
        assert_eq!((v["test_fraction"].as_f64(), v["train_count"].as_u64()), (Some(0.1), Some(9)));
        let obj = v.as_object_mut().unwrap();
        obj.remove("test_fraction");
        obj.remove("train_count");
        let old: SpadeMeta = serde_json::from_value(v).unwrap();
        assert_eq!((old.test_fraction, old.train_count, old.steps), (None, None, 3));
    }

    /// Mixed precision: both networks step in bf16 with finite losses; the parameters, and
    /// spectral norm's power-iteration vector (which the bf16 steps advance), stay f32;
    /// the network a bf16 step computes with is really cast.
    #[test]
    fn spade_mixed_precision_steps_keep_f32_masters() {
        use crate::precision::Precision;
        let device = CpuDevice::default();
        let pairs: Vec<(RgbImage, LabelMap)> = (0..4).map(|i| sample(5, i, 16, &ClassShares::default())).collect();
        let (images, labels): (Vec<RgbImage>, Vec<LabelMap>) = pairs.into_iter().unzip();
        for p in [Precision::F32, Precision::Bf16] {
            let g = SpadeGeneratorConfig::small(8, 16, 4).with_norm(super::super::NormKind::Batch);
            let mut t =
                SpadeTrainer::<CpuTrain>::new(g, SpadeDiscriminatorConfig::new(8).with_ndf(4).with_n_layers(2), SpadeTrainSettings { batch: 4, ..Default::default() }, &device)
                    .with_precision(p);
            let u0: Vec<f32> = t.generator.head.conv_0.u.as_ref().expect("spectral norm on").value().into_data().to_vec().unwrap();
            let losses: Vec<StepLosses> = (0..3).map(|_| t.step(&labels, &images).unwrap()).collect();
            for l in &losses {
                assert!(l.g_gan.is_finite() && l.g_feat.is_finite() && l.d.is_finite(), "{p}: {l:?}");
            }
            let u = t.generator.head.conv_0.u.as_ref().unwrap().value();
            assert_eq!(
                (u.dtype(), t.generator.conv_img.conv.weight.val().dtype(), t.discriminator.scales[0].out.conv.weight.val().dtype()),
                (burn::tensor::DType::F32, burn::tensor::DType::F32, burn::tensor::DType::F32),
                "{p}"
            );
            assert_ne!(u.into_data().to_vec::<f32>().unwrap(), u0, "{p}: the power iteration did not advance");
            if p == Precision::Bf16 {
                // What the step computed with: the generator cast on the autodiff backend
                // (its parameters require gradients, so they are cast), close to f32.
                let seg = crate::tensors::one_hot::<CpuTrain>(&labels, 8, &device);
                let z = crate::spade::input::noise::<CpuTrain>(&[1, 2, 3, 4], t.g_config.z_dim, &device);
                let want = t.generator.forward(seg.clone(), z.clone());
                let got = crate::precision::cast_for_training(t.generator.clone(), p).forward(seg, z);
                // The mean, not the largest, difference: after a few GAN steps with batch
                // statistics one pixel of the random network can move by 0.18. Over 46 runs
                // the mean was 0.0045 to 0.026 (median 0.0075; outputs in [-1, 1]).
                let diff = (got - want).abs();
                let (mean, max) = (diff.clone().mean().into_scalar().elem::<f32>(), diff.max().into_scalar().elem::<f32>());
                eprintln!("bf16 vs f32 generator: mean |diff| {mean}, max {max}");
                assert!(mean > 0.0 && mean < 0.05, "bf16 generator differs from f32 by {mean} on average (max {max})");
            }
        }
    }

    /// Data parallel: a batch of 5 split over two replicas (two CPU devices, 3 and 2
    /// pairs, the second in its own thread) gives the gradients and losses one device
    /// computes on the whole batch, for both networks. (Instance norm: batch norm's
    /// statistics would be each share's own.) Then steps run.
    #[test]
    fn spade_data_parallel_gradients_match_one_device() {
        use burn::module::{ModuleVisitor, Param};
        /// Largest gradient and largest difference between two sets of gradients.
        struct Diff<'a>(&'a GradientsParams, &'a GradientsParams, f32, f32, usize);
        impl<B: AutodiffBackend> ModuleVisitor<B> for Diff<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let (a, b) = (self.0.get::<B::InnerBackend, D>(param.id), self.1.get::<B::InnerBackend, D>(param.id));
                let (Some(a), Some(b)) = (a, b) else { return };
                self.2 = self.2.max(a.clone().abs().max().into_scalar().elem());
                self.3 = self.3.max((a - b).abs().max().into_scalar().elem());
                self.4 += 1;
            }
        }
        let device = CpuDevice::default();
        let pairs: Vec<(RgbImage, LabelMap)> = (0..5).map(|i| sample(6, i, 16, &ClassShares::default())).collect();
        let (images, labels): (Vec<RgbImage>, Vec<LabelMap>) = pairs.into_iter().unzip();
        // Both load one checkpoint (the backend's seed is global, shared with the tests
        // running beside this one).
        let (g, d) = (SpadeGeneratorConfig::small(8, 16, 4), SpadeDiscriminatorConfig::new(8).with_ndf(4).with_n_layers(2));
        let dir = std::env::temp_dir().join(format!("spade-dp-{}", std::process::id()));
        let uri = dir.to_string_lossy().into_owned();
        SpadeTrainer::<CpuTrain>::new(g.clone(), d.clone(), SpadeTrainSettings { batch: 5, ..Default::default() }, &device)
            .save_checkpoint(&uri, Losses::default(), "test", &ClassTable::ai_hub())
            .unwrap();
        let load =
            |devices: Vec<CpuDevice>| SpadeTrainer::<CpuTrain>::load_checkpoint(&uri, &g, &d, (&ClassTable::ai_hub(), u64::MAX), &device).unwrap().unwrap().0.with_devices(devices);
        let (one, mut two) = (load(vec![device]), load(vec![device, device]));
        let (a, b) = (one.grads(&labels, &images).unwrap(), two.grads(&labels, &images).unwrap());
        for (name, x, y) in [("G", a.losses.g_gan, b.losses.g_gan), ("feat", a.losses.g_feat, b.losses.g_feat), ("D", a.losses.d, b.losses.d)] {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-3), "{name} loss {x} on one device, {y} over two");
        }
        let mut diff = Diff(&a.generator, &b.generator, 0.0, 0.0, 0);
        one.generator.visit(&mut diff);
        let mut diff_d = Diff(&a.discriminator, &b.discriminator, 0.0, 0.0, 0);
        one.discriminator.visit(&mut diff_d);
        for (name, Diff(_, _, max, worst, n)) in [("generator", diff), ("discriminator", diff_d)] {
            eprintln!("{name}: {n} gradients, largest {max:.3e}, largest difference {worst:.2e}");
            assert!(n > 5 && max > 0.0 && worst <= 1e-4 * max, "{name}: gradients differ by up to {worst} (largest {max}, {n} compared)");
        }
        for _ in 0..2 {
            let l = two.step(&labels, &images).unwrap();
            assert!(l.g_gan.is_finite() && l.d.is_finite(), "{l:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A weight made NaN (what an overflowing gradient leaves) is found before a
    /// checkpoint would write it.
    #[test]
    fn non_finite_weights_are_found() {
        let device = CpuDevice::default();
        let mut t = SpadeTrainer::<CpuTrain>::new(SpadeGeneratorConfig::small(8, 16, 4), SpadeDiscriminatorConfig::new(8).with_ndf(4), SpadeTrainSettings::default(), &device);
        assert!(t.weights_finite());
        let w = t.discriminator.scales[0].out.conv.weight.clone();
        t.discriminator.scales[0].out.conv.weight = w.map(|w| w.mul_scalar(f32::NAN));
        assert!(!t.weights_finite());
    }

    /// A tiny run on procedural pairs (32×32, ngf 8, batch 4) learns: on held-out labels
    /// the L1 to the real images falls clearly, and the class mean colours move toward
    /// the real ones. Also checks checkpoint → resume and the artifact round trip.
    #[test]
    fn spade_tiny_training_run_learns() {
        let device = CpuDevice::default();
        let size = 32u32;
        let train: Vec<(RgbImage, LabelMap)> = (0..48).map(|i| sample(3, i, size, &ClassShares::default())).collect();
        let held: Vec<(RgbImage, LabelMap)> = (0..8).map(|i| sample(99, i, size, &ClassShares::default())).collect();
        let held_labels: Vec<LabelMap> = held.iter().map(|p| p.1.clone()).collect();
        let held_images: Vec<RgbImage> = held.iter().map(|p| p.0.clone()).collect();
        let seeds: Vec<u64> = (0..8).collect();
        let k = 8;

        let g_cfg = SpadeGeneratorConfig::small(k, size as usize, 8);
        let d_cfg = SpadeDiscriminatorConfig::new(k).with_ndf(8).with_n_layers(3);
        let settings = SpadeTrainSettings { batch: 4, seed: 1, ..SpadeTrainSettings::default() };
        let dir = std::env::temp_dir().join(format!("spade-fit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.to_string_lossy().into_owned();
        let opts = SpadeFitOptions {
            out: out.clone(),
            steps: 200,
            checkpoint_every: 100,
            resume: false,
            classes: ClassTable::ai_hub(),
            data_digest: "test".into(),
            test_fraction: None,
            precision: crate::precision::Precision::F32,
        };

        let untrained = SpadeTrainer::<CpuTrain>::new(g_cfg.clone(), d_cfg.clone(), settings.clone(), &device).inference_generator();
        let before = untrained.synthesize(&held_labels, &seeds);

        let start = std::time::Instant::now();
        let mut stop_at_100 = opts.clone();
        stop_at_100.steps = 100;
        fit::<CpuTrain>(g_cfg.clone(), d_cfg.clone(), settings.clone(), None, &train, &stop_at_100, &[device], |_| {}).unwrap();
        let resumed = SpadeFitOptions { resume: true, ..opts.clone() };
        let trainer = fit::<CpuTrain>(g_cfg.clone(), d_cfg.clone(), settings.clone(), None, &train, &resumed, &[device], |_| {}).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(trainer.step, 200);
        // The checkpoint records the digest of the data the order is a permutation of.
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("checkpoint/state.json")).unwrap()).unwrap();
        assert_eq!(state["data_digest"], serde_json::json!(opts.data_digest));
        // A resume with another seed or batch would not continue the same run: refused,
        // naming the flag and the checkpoint's value.
        for (other, flag) in [(SpadeTrainSettings { seed: 2, ..settings.clone() }, "--seed 1"), (SpadeTrainSettings { batch: 2, ..settings.clone() }, "--batch 4")] {
            let longer = SpadeFitOptions { steps: 210, ..resumed.clone() };
            let err = fit::<CpuTrain>(g_cfg.clone(), d_cfg.clone(), other, None, &train, &longer, &[device], |_| {}).err().expect("refused");
            assert!(err.to_string().contains(&format!("the checkpoint was trained with {flag}")), "{err}");
        }
        // So does a class table with the same classes in another order.
        let mut swapped = ClassTable::ai_hub();
        swapped.classes.swap(2, 3);
        let err =
            fit::<CpuTrain>(g_cfg.clone(), d_cfg.clone(), settings.clone(), None, &train, &SpadeFitOptions { steps: 210, classes: swapped, ..resumed.clone() }, &[device], |_| {})
                .err()
                .expect("refused");
        assert!(err.to_string().contains("the class table differs: class 2 is road"), "{err}");
        let err = fit::<CpuTrain>(g_cfg.clone(), d_cfg.clone(), settings.clone(), None, &train, &SpadeFitOptions { steps: 150, ..resumed.clone() }, &[device], |_| {})
            .err()
            .expect("refused");
        assert!(err.to_string().contains("the checkpoint is at step 200, past --steps 150"), "{err}");

        let model = SpadeModel::<crate::backend::Cpu>::load(&out, &device).unwrap();
        let after = model.synthesize(&held_labels, &seeds);
        assert_eq!(after, trainer.inference_generator().synthesize(&held_labels, &seeds), "the loaded artifact paints what the trainer paints");
        assert!(dir.join("previews/step-100.png").exists() && dir.join("previews/step-200.png").exists());

        let (l1_before, l1_after) = (l1(&before, &held_images), l1(&after, &held_images));
        assert!(l1_after < 0.75 * l1_before, "held-out L1 to real (grey levels): untrained {l1_before:.1}, after 200 steps {l1_after:.1} ({secs:.0} s); expected below 75%");

        let real_m = class_means(&held_images, &held_labels, k);
        let before_m = class_means(&before, &held_labels, k);
        let after_m = class_means(&after, &held_labels, k);
        let mut report = Vec::new();
        let mut closer = 0;
        let mut present = 0;
        for c in 0..k {
            if let (Some(r), Some(b), Some(a)) = (real_m[c], before_m[c], after_m[c]) {
                let (db, da) = (dist(b, r), dist(a, r));
                report.push(format!("class {c}: {db:.0} → {da:.0}"));
                present += 1;
                if da < db {
                    closer += 1;
                }
            }
        }
        // Every class present but one (rare classes, e.g. parking lots, learn last) is
        // closer, and the average distance falls below 60%.
        let (sum_b, sum_a) = (0..k).filter_map(|c| Some((dist(before_m[c]?, real_m[c]?), dist(after_m[c]?, real_m[c]?)))).fold((0.0, 0.0), |(x, y), (b, a)| (x + b, y + a));
        assert!(
            closer + 1 >= present && sum_a < 0.6 * sum_b,
            "class mean colour distance to real (untrained → trained, RGB levels): {}; {closer} of {present} closer (need {}), mean {:.1} → {:.1} (need < 60%)",
            report.join(", "),
            present - 1,
            sum_b / present as f64,
            sum_a / present as f64
        );
        eprintln!("tiny run: {secs:.0} s; L1 {l1_before:.1} → {l1_after:.1}; {}", report.join(", "));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
