//! Training: ε-prediction with the MSE loss or `x0` class logits with cross-entropy (the
//! command's default for one-hot maps; see [`Objective`]), both masked so ignored pixels teach no class, Adam, global-norm gradient clipping, an EMA
//! of the weights, periodic checkpoints and preview grids.
//!
//! Each step's randomness (which maps, flips, timesteps, noise) comes from
//! [`shared::rng_for`] seeded by `(seed, step)`, and dropout's masks from the backend's RNG
//! seeded by `(seed, step)` at the step's start, so a resumed run draws exactly what an
//! uninterrupted run would have (on one device: see [`train_on`]).
//!
//! [`train_on`] trains data parallel over several devices (`worker train ddpm --device
//! cuda:all`, [`crate::parallel`]): each computes the gradients of its share of every batch.

pub mod checkpoint;
pub mod clip;
pub mod ema;
pub mod run;

use std::path::Path;

use anyhow::{bail, Context};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use rand::RngExt;
use rand_distr::StandardNormal;
use shared::dataset::{grid, Dataset};
use shared::{mix64, rng_for, sample_seed, ClassTable, LabelMap};

use super::encoding::Encoding;
use super::model::{DdpmMeta, DdpmModel, FORMAT_VERSION, MODEL_KIND, WEIGHTS_FILE};
use super::objective::Objective;
use super::sampler::SamplerConfig;
use super::schedule::{NoiseSchedule, ScheduleKind};
use super::unet::{UNet, UNetConfig};
use crate::weights::{module_from_bytes, module_to_bytes};
use checkpoint::CheckpointState;

/// RNG stream of the per-step training draws.
pub const TRAIN_STREAM: u64 = 0x7A41;
/// Sample index of the backend seed the initial weights are drawn with.
const INIT_STREAM: u64 = 0xDD9_1417;
/// Mixed into the run seed for the backend seed each step's dropout masks are drawn with.
const DROPOUT_STREAM: u64 = 0xD409_0117;
/// Run seed of the preview samples (the same seeds at every checkpoint).
pub const PREVIEW_SEED: u64 = 0x5052_4556;
/// `final_loss` in `model.json` is the mean loss of this many last steps.
pub const FINAL_LOSS_WINDOW: usize = 100;

/// Everything a training run needs besides the data. `unet.in_channels` must equal the
/// encoding's channels for the data's classes, `unet.image_size` the maps' size.
#[derive(Debug, Clone)]
pub struct DdpmTrainConfig {
    pub unet: UNetConfig,
    pub encoding: Encoding,
    pub objective: Objective,
    pub schedule: ScheduleKind,
    pub timesteps: usize,
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    /// EMA decay (with the warm-up of [`ema::decay_at`]).
    pub ema_decay: f64,
    /// Global gradient-norm limit; `None` for no clipping.
    pub clip: Option<f64>,
    /// Checkpoint (and preview) every this many steps; 0: only at the end.
    pub checkpoint_every: u64,
    /// Continue from `OUT/checkpoint/` if there is one.
    pub resume: bool,
    pub seed: u64,
    /// Samples in each preview grid (0: none).
    pub preview_count: usize,
    /// Random horizontal and vertical flips of the training maps.
    pub flip: bool,
    /// Precision of the forward and backward passes. The parameters, the optimizer and the
    /// EMA stay f32 (master weights): each step casts the f32 network ([`crate::precision`])
    /// and Burn's autodiff carries the gradients back through the cast to the f32
    /// parameters. Not saved in the model: it changes how it was trained, not what it is.
    pub precision: crate::precision::Precision,
}

/// Training label maps, all of one size.
#[derive(Debug, Clone)]
pub struct TrainData {
    pub maps: Vec<LabelMap>,
    pub classes: ClassTable,
    /// Digest of the training labels (goes into `model.json`).
    pub digest: String,
}

impl TrainData {
    /// Reads `DIR/labels/*.png` (AI Hub codes, all of them: no test split), resized to
    /// `size` ([`shared::dataset::Dataset::label`]: block mode down, nearest up).
    pub fn from_dir(dir: &Path, size: u32) -> anyhow::Result<TrainData> {
        Self::from_dataset(&Dataset::open(dir, ClassTable::ai_hub(), true)?, size)
    }

    /// The train split of an opened dataset, resized to `size` (block mode down, nearest up).
    pub fn from_dataset(ds: &Dataset, size: u32) -> anyhow::Result<TrainData> {
        let maps = ds.train.iter().map(|s| ds.label(s, Some(size))).collect::<Result<Vec<_>, _>>()?;
        let digest = ds.digest(true)?;
        Ok(TrainData { maps, classes: ds.classes.clone(), digest })
    }
}

/// Progress reports from [`train`].
#[derive(Debug, Clone, Copy)]
pub enum TrainEvent {
    /// Training starts at `step` (0, or the resumed checkpoint's) of `total`, on a network
    /// of `params` parameters.
    Started { step: u64, total: u64, params: usize },
    /// Step `step` (1-based) finished with this loss.
    Step { step: u64, loss: f32 },
    /// A checkpoint (and preview) was written after `step` steps.
    Checkpoint { step: u64 },
}

/// What a run produced.
pub struct TrainOutcome<B: burn::tensor::backend::Backend> {
    /// The EMA model (what is written as the artifact).
    pub model: DdpmModel<B>,
    /// The raw (non-averaged) network.
    pub raw: UNet<B>,
    /// Loss of every step, from step 1 (including steps before a resume).
    pub losses: Vec<f32>,
}

impl DdpmTrainConfig {
    /// Checks the config against itself and the data (done again by [`train`]).
    pub fn validate(&self, data: &TrainData) -> anyhow::Result<()> {
        self.unet.validate().map_err(|e| anyhow::anyhow!("UNet: {e}"))?;
        let want = self.encoding.channels(data.classes.len());
        if self.unet.in_channels != want {
            bail!("UNet in_channels {} but encoding {} of {} classes needs {want}", self.unet.in_channels, self.encoding, data.classes.len());
        }
        self.objective.check(self.encoding).map_err(|e| anyhow::anyhow!(e))?;
        if data.maps.is_empty() {
            bail!("no training maps");
        }
        let s = self.unet.image_size as u32;
        if let Some(m) = data.maps.iter().find(|m| m.width != s || m.height != s) {
            bail!("training map of {}×{} pixels, expected {s}×{s}", m.width, m.height);
        }
        if self.batch == 0 || self.timesteps == 0 {
            bail!("batch and timesteps must be at least 1");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            bail!("EMA decay {} must be in [0, 1)", self.ema_decay);
        }
        Ok(())
    }

    fn meta(&self, data: &TrainData, test_fraction: Option<f64>, steps: u64, final_loss: f32) -> DdpmMeta {
        DdpmMeta {
            format_version: FORMAT_VERSION,
            kind: MODEL_KIND.into(),
            unet: self.unet.clone(),
            encoding: self.encoding,
            objective: self.objective,
            schedule: self.schedule,
            timesteps: self.timesteps,
            classes: data.classes.clone(),
            size: self.unet.image_size as u32,
            data_digest: data.digest.clone(),
            steps,
            final_loss,
            ema_decay: self.ema_decay,
            weights: WEIGHTS_FILE.into(),
            test_fraction,
            train_count: Some(data.maps.len() as u64),
            parameters: None,
            weights_sha256: None,
        }
    }

    fn state(&self, data: &TrainData, step: u64, losses: &[f32]) -> CheckpointState {
        CheckpointState {
            format_version: checkpoint::FORMAT_VERSION,
            step,
            unet: self.unet.clone(),
            encoding: self.encoding,
            objective: self.objective,
            schedule: self.schedule,
            timesteps: self.timesteps,
            seed: self.seed,
            batch: Some(self.batch),
            flip: Some(self.flip),
            data_digest: data.digest.clone(),
            classes: Some(data.classes.clone()),
            losses: losses.to_vec(),
            optimisation: Some(self.optimisation()),
            files: None,
        }
    }

    fn optimisation(&self) -> checkpoint::Optimisation {
        checkpoint::Optimisation { lr: self.lr, ema_decay: self.ema_decay, clip: self.clip, precision: self.precision }
    }
}

/// Mean of the last [`FINAL_LOSS_WINDOW`] losses.
pub fn recent_loss(losses: &[f32]) -> f32 {
    let tail = &losses[losses.len().saturating_sub(FINAL_LOSS_WINDOW)..];
    if tail.is_empty() {
        f32::NAN
    } else {
        tail.iter().sum::<f32>() / tail.len() as f32
    }
}

/// One step's batch, drawn on the host.
struct Batch {
    /// The noised maps `[B, C, H, W]`.
    xt: Vec<f32>,
    /// Per [`Objective::target`], `[B, C, H, W]`.
    target: Vec<f32>,
    /// 1 where the pixel has a class, 0 where it is ignored, `[B, 1, H, W]`.
    mask: Vec<f32>,
    /// Timesteps `[B]`.
    t: Vec<f32>,
}

/// Draws step `step`'s batch. Ignored pixels carry no class: their input is pure noise
/// (what any pixel looks like at `ᾱ = 0`, so nothing there looks like a class) and the mask
/// keeps them out of the loss.
/// Maps are encoded as they are drawn: the training set stays in memory as `u8` maps (an
/// f32 encoding of them all would take `4·(C+1)` times as much: 47 GB for 20,000 maps of 256²).
fn make_batch(cfg: &DdpmTrainConfig, maps: &[LabelMap], k: usize, size: usize, schedule: &NoiseSchedule, step: u64) -> Batch {
    let channels = cfg.encoding.channels(k);
    let mut rng = rng_for(mix64(cfg.seed) ^ mix64(step.wrapping_add(1)), TRAIN_STREAM);
    let (n, plane) = (channels * size * size, size * size);
    let mut out =
        Batch { xt: Vec::with_capacity(cfg.batch * n), target: Vec::with_capacity(cfg.batch * n), mask: Vec::with_capacity(cfg.batch * plane), t: Vec::with_capacity(cfg.batch) };
    for _ in 0..cfg.batch {
        let map = &maps[rng.random_range(0..maps.len())];
        let (x0, mask) = (cfg.encoding.encode(map, k), Encoding::mask(map, k));
        let (fh, fv) = if cfg.flip { (rng.random::<bool>(), rng.random::<bool>()) } else { (false, false) };
        let t = rng.random_range(0..schedule.len());
        let ab = schedule.alphas_cumprod[t];
        let (a, b) = (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32);
        let source = |y: usize, x: usize| (if fv { size - 1 - y } else { y }) * size + if fh { size - 1 - x } else { x };
        for c in 0..channels {
            for y in 0..size {
                for x in 0..size {
                    let p = source(y, x);
                    let e: f32 = rng.sample(StandardNormal);
                    let v = x0[c * plane + p];
                    out.xt.push(if mask[p] > 0.0 { a * v + b * e } else { e });
                    out.target.push(cfg.objective.target(v, e));
                }
            }
        }
        out.mask.extend((0..size).flat_map(|y| (0..size).map(move |x| (y, x))).map(|(y, x)| mask[source(y, x)]));
        out.t.push(t as f32);
    }
    out
}

/// Trains a model on `data`. With `out`, writes checkpoints and previews while training
/// and the final artifact (EMA weights + `model.json`) at the end; without, writes nothing.
pub fn train<B: AutodiffBackend>(
    cfg: &DdpmTrainConfig,
    data: &TrainData,
    out: Option<&str>,
    device: &B::Device,
    observer: &mut dyn FnMut(TrainEvent),
) -> anyhow::Result<TrainOutcome<B::InnerBackend>> {
    train_split::<B>(cfg, data, None, out, device, observer)
}

/// [`train`] on the train split of a dataset that holds out `test_fraction` of its files
/// (recorded in `model.json`; `None`: not recorded).
pub fn train_split<B: AutodiffBackend>(
    cfg: &DdpmTrainConfig,
    data: &TrainData,
    test_fraction: Option<f64>,
    out: Option<&str>,
    device: &B::Device,
    observer: &mut dyn FnMut(TrainEvent),
) -> anyhow::Result<TrainOutcome<B::InnerBackend>> {
    train_on::<B>(cfg, data, test_fraction, out, std::slice::from_ref(device), observer)
}

/// [`train_split`], data parallel over `devices` (one or more; the first holds the
/// parameters, the optimizer and the EMA): each device computes the gradients of its
/// share of every batch ([`crate::parallel`]), each share's loss weighted by its share of
/// the batch's kept pixels, so a step is the one a single device takes on the whole batch
/// (same draws, same result up to rounding), dropout aside: its masks come from the
/// backend's one RNG, which the shares' threads draw from in no fixed order, so a
/// data-parallel run with dropout is not reproducible from its seed.
pub fn train_on<B: AutodiffBackend>(
    cfg: &DdpmTrainConfig,
    data: &TrainData,
    test_fraction: Option<f64>,
    out: Option<&str>,
    devices: &[B::Device],
    observer: &mut dyn FnMut(TrainEvent),
) -> anyhow::Result<TrainOutcome<B::InnerBackend>> {
    cfg.validate(data)?;
    crate::parallel::check_batch(cfg.batch, devices.len())?;
    let device = &devices[0];
    let out = out.map(|u| u.trim_end_matches('/'));
    let k = data.classes.len();
    let channels = cfg.encoding.channels(k);
    let size = cfg.unet.image_size;
    let schedule = NoiseSchedule::new(cfg.schedule, cfg.timesteps);

    // The initial weights follow the run's seed.
    B::seed(device, sample_seed(cfg.seed, INIT_STREAM));
    let mut model: UNet<B> = cfg.unet.init(device);
    let mut ema: UNet<B::InnerBackend> = model.valid();
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init::<B, UNet<B>>();
    let mut losses: Vec<f32> = Vec::new();
    let mut start = 0;

    if let (true, Some(uri)) = (cfg.resume, out) {
        if let Some(ck) = checkpoint::load(uri)? {
            let origin = format!("{uri}/{}", checkpoint::STATE);
            let s = &ck.state;
            // (key, same, the checkpoint's, this run's)
            let pair = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| (format!("{a:?}"), format!("{b:?}"));
            let same = [
                ("unet", s.unet == cfg.unet, pair(&s.unet, &cfg.unet)),
                ("encoding", s.encoding == cfg.encoding, pair(&s.encoding, &cfg.encoding)),
                ("objective", s.objective == cfg.objective, pair(&s.objective, &cfg.objective)),
                ("schedule", s.schedule == cfg.schedule, pair(&s.schedule, &cfg.schedule)),
                ("timesteps", s.timesteps == cfg.timesteps, pair(&s.timesteps, &cfg.timesteps)),
                // The batch, timestep and noise draws follow the seed, the batch size and
                // the flips.
                ("seed", s.seed == cfg.seed, pair(&s.seed, &cfg.seed)),
                ("batch", s.batch.is_none_or(|b| b == cfg.batch), pair(&s.batch.unwrap_or(cfg.batch), &cfg.batch)),
                ("flip", s.flip.is_none_or(|f| f == cfg.flip), pair(&s.flip.unwrap_or(cfg.flip), &cfg.flip)),
            ];
            if let Some((key, _, (was, now))) = same.iter().find(|(_, ok, _)| !ok) {
                bail!("{origin}: {key} differs from this run's arguments: the checkpoint has {was}, this run {now}; resume with the same architecture, encoding, objective, schedule, seed, batch and flips, or start again with --overwrite or a new --out");
            }
            crate::sync_store::check_resume(&origin, s.classes.as_ref(), &data.classes, s.step, cfg.steps)?;
            if let Some(was) = s.optimisation.as_ref().filter(|was| **was != cfg.optimisation()) {
                tracing::warn!(
                    "{origin}: the checkpoint's last steps (of {}) ran with {was:?}; the rest run with {:?} (model.json records only the last EMA decay)",
                    s.step,
                    cfg.optimisation()
                );
            }
            if s.data_digest != data.digest {
                tracing::warn!("{origin}: the checkpoint was trained on other data (digest {} vs {})", s.data_digest, data.digest);
            }
            model = module_from_bytes(model, ck.model, device, &format!("{uri}/{}", checkpoint::MODEL))?;
            ema = module_from_bytes(ema, ck.ema, device, &format!("{uri}/{}", checkpoint::EMA))?;
            let record =
                NamedMpkBytesRecorder::<FullPrecisionSettings>::default().load(ck.optimizer, device).map_err(|e| anyhow::anyhow!("{uri}/{}: {e}", checkpoint::OPTIMIZER))?;
            optim = optim.load_record(record);
            start = s.step;
            losses = s.losses.clone();
            tracing::info!("resuming from {origin} at step {start}");
        } else {
            tracing::info!("--resume: no checkpoint under {uri}; starting from step 0");
        }
    }

    observer(TrainEvent::Started { step: start, total: cfg.steps, params: burn::module::Module::num_params(&model) });
    let save_point = |done: u64| done == cfg.steps || (cfg.checkpoint_every > 0 && done.is_multiple_of(cfg.checkpoint_every));
    for step in start..cfg.steps {
        // Dropout's masks follow (seed, step), so a resumed run draws the ones an
        // uninterrupted run would have (the backend's RNG is one stream per process).
        B::seed(device, sample_seed(cfg.seed ^ DROPOUT_STREAM, step));
        let batch = make_batch(cfg, &data.maps, k, size, &schedule, step);
        let (mut grads, loss_value) = batch_grads(cfg, &model, &batch, channels, size, devices)?;
        if !loss_value.is_finite() {
            bail!("the loss became {loss_value} at step {}; try a lower --lr or --clip", step + 1);
        }
        // Non-finite gradients would reach the weights and the EMA before the loss showed
        // it: stop before the step, the last checkpoint intact (the norm is computed without
        // clipping too).
        let norm = match cfg.clip {
            Some(max) => clip::clip_global_norm(&model, &mut grads, max),
            None => clip::global_norm(&model, &grads),
        };
        if !norm.is_finite() {
            bail!("the gradient norm became {norm} at step {}; try a lower --lr", step + 1);
        }
        model = optim.step(cfg.lr, model, grads);
        ema = ema::update(ema, &model.valid(), ema::decay_at(cfg.ema_decay, step));
        losses.push(loss_value);
        let done = step + 1;
        observer(TrainEvent::Step { step: done, loss: loss_value });

        if let (true, Some(uri)) = (save_point(done), out) {
            let state = cfg.state(data, done, &losses);
            let optim_bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::default().record(optim.to_record(), ()).context("serialising the optimizer state")?;
            checkpoint::save(uri, &state, module_to_bytes(model.clone())?, module_to_bytes(ema.clone())?, optim_bytes)?;
            if cfg.preview_count > 0 {
                let m = DdpmModel::new(ema.clone(), cfg.meta(data, test_fraction, done, recent_loss(&losses)), device.clone());
                write_preview(&m, uri, done, cfg.preview_count)?;
            }
            observer(TrainEvent::Checkpoint { step: done });
        }
    }

    // (A checkpoint past cfg.steps was refused when it was loaded.)
    let done = cfg.steps;
    let model_out = DdpmModel::new(ema, cfg.meta(data, test_fraction, done, recent_loss(&losses)), device.clone());
    if let Some(uri) = out {
        model_out.save(uri)?;
    }
    Ok(TrainOutcome { model: model_out, raw: model.valid(), losses })
}

/// One step's gradients of `batch`'s loss with respect to `model`'s parameters (on the
/// first device), and the loss; data parallel over several devices ([`crate::parallel`]).
fn batch_grads<B: AutodiffBackend>(
    cfg: &DdpmTrainConfig,
    model: &UNet<B>,
    batch: &Batch,
    channels: usize,
    size: usize,
    devices: &[B::Device],
) -> anyhow::Result<(GradientsParams, f32)> {
    let (n, plane) = (channels * size * size, size * size);
    let kept_total = batch.mask.iter().sum::<f32>().max(1.0);
    // The masked mean loss of rows `r` (over their kept pixels, at least 1; rows without
    // any have loss 0), scaled by their share of the batch's kept pixels.
    let results = crate::parallel::each_share(vec![model.clone(); devices.len()], devices, batch.t.len(), |i, replica, r, device| {
        let replica = crate::parallel::replica(replica, i, device);
        let b = r.len();
        let x = Tensor::<B, 4>::from_data(TensorData::new(batch.xt[r.start * n..r.end * n].to_vec(), [b, channels, size, size]), device);
        let target = Tensor::<B, 4>::from_data(TensorData::new(batch.target[r.start * n..r.end * n].to_vec(), [b, channels, size, size]), device);
        let mask_rows = &batch.mask[r.start * plane..r.end * plane];
        let weight = mask_rows.iter().sum::<f32>().max(1.0) / kept_total;
        let mask = Tensor::<B, 4>::from_data(TensorData::new(mask_rows.to_vec(), [b, 1, size, size]), device);
        let t = Tensor::<B, 1>::from_data(TensorData::new(batch.t[r].to_vec(), [b]), device);
        // f32: the replica itself; half precision: a cast of it, differentiable back to
        // the f32 parameters.
        let compute = crate::precision::cast_for_training(replica.clone(), cfg.precision);
        // (The weight is 1 on one device: an exact no-op.)
        let loss = cfg.objective.loss(compute.forward(x, t), target, mask).mul_scalar(weight);
        let value: f32 = loss.clone().into_scalar().elem();
        (GradientsParams::from_grads(loss.backward(), &replica).to_device(&devices[0], &replica), value)
    })?;
    let loss = results.iter().map(|(_, v)| v).sum();
    Ok((crate::parallel::sum_grads(model, results.into_iter().map(|(g, _)| g).collect()), loss))
}

/// The sampler previews use: DDIM, 50 steps (or T), η = 0.
pub fn preview_sampler(timesteps: usize) -> SamplerConfig {
    SamplerConfig::ddim(50.min(timesteps), 0.0)
}

/// Samples `count` maps from fixed seeds and writes their colourised grid to
/// `URI/previews/step-N.png`.
pub fn write_preview<B: burn::tensor::backend::Backend>(model: &DdpmModel<B>, uri: &str, step: u64, count: usize) -> anyhow::Result<()> {
    let seeds: Vec<u64> = (0..count as u64).map(|i| sample_seed(PREVIEW_SEED, i)).collect();
    let maps = model.sample(&seeds, &preview_sampler(model.meta.timesteps));
    let images: Vec<_> = maps.iter().map(|m| m.colorize(&model.meta.classes)).collect();
    let cols = (count as f64).sqrt().ceil() as usize;
    crate::sync_store::write_file(uri, &format!("previews/step-{step}.png"), grid(&images, cols).to_png())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice, CpuTrain};
    use shared::procedural::{generate_labels, ClassShares};

    fn data(count: u64, size: u32) -> TrainData {
        let maps = (0..count).map(|i| generate_labels(sample_seed(3, i), size, &ClassShares::default())).collect();
        TrainData { maps, classes: ClassTable::ai_hub(), digest: "procedural-3".into() }
    }

    fn config(unet: UNetConfig, encoding: Encoding, steps: u64) -> DdpmTrainConfig {
        DdpmTrainConfig {
            unet,
            encoding,
            objective: Objective::Eps,
            schedule: ScheduleKind::Cosine,
            timesteps: 100,
            steps,
            batch: 8,
            lr: 2e-3,
            ema_decay: 0.99,
            clip: Some(1.0),
            checkpoint_every: 0,
            resume: false,
            seed: 1,
            preview_count: 4,
            flip: true,
            precision: crate::precision::Precision::F32,
        }
    }

    /// Class histogram of a set of maps, normalised.
    fn histogram(maps: &[LabelMap], k: usize) -> Vec<f64> {
        let mut h = vec![0u64; k];
        for m in maps {
            for (a, b) in h.iter_mut().zip(m.class_counts(k)) {
                *a += b;
            }
        }
        let total: u64 = h.iter().sum();
        h.iter().map(|&c| c as f64 / total as f64).collect()
    }

    fn tv(a: &[f64], b: &[f64]) -> f64 {
        0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
    }

    /// Mixed precision: forward and backward in bf16, f32 master weights. The loss falls as
    /// in f32, and the trained parameters are f32. (The two runs start from different random
    /// weights: the CPU backend's generator is shared by the tests running beside this one,
    /// so the bound on the final losses leaves room for that.)
    #[test]
    fn ddpm_mixed_precision_training_learns_with_f32_master_weights() {
        let device = CpuDevice::default();
        let data = data(32, 16);
        let unet = UNetConfig::new(8, 8, vec![1, 2], 1, vec![8], 0.0, 16).with_groups(4);
        let (mut finals, mut runs) = (Vec::new(), Vec::new());
        for precision in [crate::precision::Precision::F32, crate::precision::Precision::Bf16] {
            let cfg = DdpmTrainConfig { objective: Objective::X0, precision, preview_count: 0, ..config(unet.clone(), Encoding::OneHot, 80) };
            let out = train::<CpuTrain>(&cfg, &data, None, &device, &mut |_| {}).unwrap();
            let first = out.losses[..10].iter().sum::<f32>() / 10.0;
            let last = out.losses[70..].iter().sum::<f32>() / 10.0;
            eprintln!("{precision}: loss {first:.4} → {last:.4}");
            assert!(last < 0.8 * first, "{precision}: loss fell only from {first:.4} to {last:.4}");
            // The EMA follows the master weights: f32 throughout.
            assert_eq!(out.model.unet.conv_in.weight.val().dtype(), burn::tensor::DType::F32, "{precision}: master weights");
            finals.push(last);
            runs.push(out.losses);
        }
        // (The first loss is ln 8 in both: the output layer starts at zero.)
        assert_ne!(runs[0], runs[1], "the bf16 run computed exactly what f32 did: the cast did nothing");
        assert!((finals[1] - finals[0]).abs() < 0.25 * finals[0], "bf16 ended at {:.4}, f32 at {:.4}", finals[1], finals[0]);
    }

    /// Data parallel: the same draws split over two replicas (two CPU devices here, each
    /// in its own thread; 3 and 2 rows, with ignored pixels) take the steps one device
    /// takes on the whole batch.
    #[test]
    fn ddpm_data_parallel_steps_match_one_device() {
        let device = CpuDevice::default();
        let mut data = data(12, 16);
        for (i, m) in data.maps.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
            for y in 0..4 + i as u32 % 5 {
                for x in 0..10 {
                    m.set(x, y, shared::IGNORE_INDEX);
                }
            }
        }
        let unet = UNetConfig::new(8, 8, vec![1, 2], 1, vec![8], 0.0, 16).with_groups(4);
        // Both continue one checkpoint of step 1 (the backend's seed is global, shared with
        // the tests running beside this one) to step 4.
        let cfg = DdpmTrainConfig { objective: Objective::X0, batch: 5, preview_count: 0, ..config(unet, Encoding::OneHot, 1) };
        let dir = std::env::temp_dir().join(format!("ddpm-dp-{}", std::process::id()));
        let (a, b) = (dir.join("one").to_string_lossy().into_owned(), dir.join("two").to_string_lossy().into_owned());
        train::<CpuTrain>(&cfg, &data, Some(&a), &device, &mut |_| {}).unwrap();
        // The checkpoint: state.json and its set of files (step-1/).
        for sub in ["", "step-1"] {
            std::fs::create_dir_all(dir.join("two/checkpoint").join(sub)).unwrap();
            for f in std::fs::read_dir(dir.join("one/checkpoint").join(sub)).unwrap() {
                let f = f.unwrap().path();
                if f.is_file() {
                    std::fs::copy(&f, dir.join("two/checkpoint").join(sub).join(f.file_name().unwrap())).unwrap();
                }
            }
        }
        let cfg = DdpmTrainConfig { steps: 4, resume: true, ..cfg };
        let one = train::<CpuTrain>(&cfg, &data, Some(&a), &device, &mut |_| {}).unwrap();
        let two = train_on::<CpuTrain>(&cfg, &data, None, Some(&b), &[device, device], &mut |_| {}).unwrap();
        assert_eq!(one.losses.len(), 4);
        for (step, (a, b)) in one.losses.iter().zip(&two.losses).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "step {}: loss {a} on one device, {b} over two", step + 1);
        }
        let _ = std::fs::remove_dir_all(&dir);
        // The trained networks agree on a fixed input.
        let x = Tensor::<Cpu, 4>::random([2, 8, 16, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![3.0f32, 70.0], [2]), &device);
        let (ya, yb) = (one.raw.forward(x.clone(), t.clone()), two.raw.forward(x, t));
        let scale: f32 = ya.clone().abs().max().into_scalar().elem();
        let diff: f32 = (ya - yb).abs().max().into_scalar().elem();
        eprintln!("data parallel: max output difference {diff:.2e} of {scale:.3}");
        assert!(scale > 0.0 && diff <= 1e-4 * scale, "outputs differ by {diff} (scale {scale})");
        let e = train_on::<CpuTrain>(&DdpmTrainConfig { batch: 1, ..cfg }, &data, None, None, &[device, device], &mut |_| {}).err().unwrap().to_string();
        assert!(e.contains("--batch 1 is smaller than the 2 devices"), "{e}");
    }

    #[test]
    fn ddpm_tiny_training_learns() {
        // 16×16 one-hot maps, base 16 channels, two levels, attention at 8×8; cosine
        // schedule with T = 100; 300 steps of batch 8 (about a minute on 2 CPU threads),
        // once for each objective.
        let device = CpuDevice::default();
        let data = data(64, 16);
        let unet = UNetConfig::new(8, 16, vec![1, 2], 1, vec![8], 0.0, 16).with_groups(8);
        let seeds: Vec<u64> = (0..24).map(|i| sample_seed(77, i)).collect();
        let sampler = SamplerConfig::ddim(25, 0.0);
        let want = histogram(&data.maps, 8);
        let islands_in = |maps: &[LabelMap]| maps.iter().map(|m| shared::cleanup::island_count(m, 8, 4)).sum::<usize>() as f64 / maps.len() as f64;
        let mut islands = Vec::new();
        for objective in [Objective::Eps, Objective::X0] {
            let cfg = DdpmTrainConfig { objective, ..config(unet.clone(), Encoding::OneHot, 300) };
            let started = std::time::Instant::now();
            let out = train::<CpuTrain>(&cfg, &data, None, &device, &mut |_| {}).unwrap();
            let secs = started.elapsed().as_secs_f64();
            let first = out.losses[..20].iter().sum::<f32>() / 20.0;
            let last = recent_loss(&out.losses);
            // The cross-entropy keeps a floor (at high noise the class is uncertain), so x0's
            // loss cannot fall as far as ε's MSE (0.44× its start here, against 0.31×).
            let factor = if objective == Objective::X0 { 0.6 } else { 0.5 };
            assert!(last < factor * first, "{objective}: loss fell only from {first:.4} (first 20 steps) to {last:.4} (last 100) in {secs:.0} s");

            let maps = out.model.sample(&seeds, &sampler);
            let fresh = DdpmModel::<Cpu>::new(unet.init(&device), out.model.meta.clone(), device);
            let untrained = histogram(&fresh.sample(&seeds, &sampler), 8);
            let (tv_trained, tv_untrained) = (tv(&histogram(&maps, 8), &want), tv(&untrained, &want));
            assert!(
                tv_trained < tv_untrained,
                "{objective}: class histogram TV distance to the data: trained {tv_trained:.3} vs untrained {tv_untrained:.3} (loss {first:.4} → {last:.4}, {secs:.0} s)"
            );
            islands.push(islands_in(&maps));
            eprintln!(
                "tiny training, {objective}: loss {first:.4} → {last:.4}; TV trained {tv_trained:.3}, untrained {tv_untrained:.3}; islands < 4 px per map {:.1} (data {:.1}); {secs:.1} s",
                islands[islands.len() - 1],
                islands_in(&data.maps)
            );
        }
        // The reason x0 is the default for onehot: at the same small budget its maps are
        // regions, where ε-prediction's are still speckle.
        assert!(islands[1] < 0.5 * islands[0], "islands < 4 px per map: x0 {:.1} vs eps {:.1}", islands[1], islands[0]);
    }

    #[test]
    fn ddpm_ignored_pixels_teach_no_class() {
        // Maps without a single building pixel, each with an 8×8 ignore square (a quarter
        // of the map). Gray encodes ignore like building (−1): trained on it unmasked, the
        // model paints the squares as buildings (a quarter of its pixels). Masked, it learns
        // only the classes it was shown.
        let device = CpuDevice::default();
        let shares = ClassShares::new([0.0, 0.1, 0.15, 0.05, 0.2, 0.15, 0.25, 0.1]).unwrap();
        let maps: Vec<LabelMap> = (0..64)
            .map(|i| {
                let mut m = generate_labels(sample_seed(5, i), 16, &shares);
                let (ox, oy) = ((i as u32 * 5) % 9, (i as u32 * 3) % 9);
                for y in oy..oy + 8 {
                    for x in ox..ox + 8 {
                        m.set(x, y, shared::IGNORE_INDEX);
                    }
                }
                m
            })
            .collect();
        assert!(maps.iter().all(|m| m.class_counts(8)[0] == 0));
        let data = TrainData { maps, classes: ClassTable::ai_hub(), digest: "ignore-squares".into() };
        let unet = UNetConfig::new(1, 16, vec![1, 2], 1, vec![8], 0.0, 16).with_groups(8);
        let out = train::<CpuTrain>(&config(unet, Encoding::Gray, 300), &data, None, &device, &mut |_| {}).unwrap();
        let seeds: Vec<u64> = (0..24).map(|i| sample_seed(78, i)).collect();
        let sampled = out.model.sample(&seeds, &SamplerConfig::ddim(25, 0.0));
        assert!(sampled.iter().all(|m| m.data.iter().all(|&c| c < 8)), "a sampled code outside the 8 classes");
        let building = histogram(&sampled, 8)[0];
        // A few building pixels come from the sampler's clamp at gray's extreme (0.014
        // measured); with the ignore squares learnt as buildings (no mask, no noise input)
        // the same training gave 0.176.
        assert!(building < 0.05, "building share {building:.3} in samples of a model that never saw a building");
        eprintln!("ignore squares (25% of each map, no building): sampled building share {building:.4}");
    }

    #[test]
    fn ddpm_meta_records_the_split_and_older_model_json_still_loads() {
        let unet = UNetConfig::new(1, 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4);
        let meta = config(unet, Encoding::Gray, 1).meta(&data(5, 8), Some(0.25), 1, 0.5);
        assert_eq!((meta.test_fraction, meta.train_count), (Some(0.25), Some(5)));
        let mut v = serde_json::to_value(&meta).unwrap();
        let obj = v.as_object_mut().unwrap();
        assert!(obj.remove("test_fraction").is_some() && obj.remove("train_count").is_some() && obj.remove("objective").is_some());
        let old: DdpmMeta = serde_json::from_value(v).unwrap();
        assert_eq!((old.test_fraction, old.train_count, old.objective), (None, None, Objective::Eps));
        assert_eq!(old.data_digest, meta.data_digest);
    }

    /// With dropout, a run resumed from a checkpoint takes the steps an uninterrupted run
    /// takes: dropout's masks follow (seed, step). The backend's RNG is one per process,
    /// drawn by every test running beside this one, so the check runs in a child process
    /// of this test binary running only it.
    #[test]
    fn ddpm_resume_with_dropout_takes_the_uninterrupted_steps() {
        if std::env::var_os("LABELGEN_ALONE").is_none() {
            let name = "ddpm::train::tests::ddpm_resume_with_dropout_takes_the_uninterrupted_steps";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--test-threads", "1", "--nocapture"])
                .env("LABELGEN_ALONE", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "the child process failed:\n{text}");
            return;
        }
        let device = CpuDevice::default();
        let data = data(8, 8);
        let unet = UNetConfig::new(1, 8, vec![1, 2], 1, vec![], 0.5, 8).with_groups(4);
        let dir = std::env::temp_dir().join(format!("labelgen-ddpm-dropout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (dir.join("a").to_string_lossy().into_owned(), dir.join("b").to_string_lossy().into_owned());
        let cfg = DdpmTrainConfig { checkpoint_every: 2, preview_count: 0, ..config(unet, Encoding::Gray, 4) };
        let whole = train::<CpuTrain>(&cfg, &data, Some(&a), &device, &mut |_| {}).unwrap();
        train::<CpuTrain>(&DdpmTrainConfig { steps: 2, ..cfg.clone() }, &data, Some(&b), &device, &mut |_| {}).unwrap();
        let resumed = train::<CpuTrain>(&DdpmTrainConfig { resume: true, ..cfg }, &data, Some(&b), &device, &mut |_| {}).unwrap();
        assert_eq!(resumed.losses, whole.losses);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ddpm_checkpoint_resume_continues() {
        let device = CpuDevice::default();
        let data = data(8, 8);
        let unet = UNetConfig::new(1, 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4);
        let dir = std::env::temp_dir().join(format!("labelgen-ddpm-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let uri = dir.to_str().unwrap().to_string();

        let mut cfg = config(unet, Encoding::Gray, 4);
        cfg.checkpoint_every = 2;
        let a = train::<CpuTrain>(&cfg, &data, Some(&uri), &device, &mut |_| {}).unwrap();
        assert!(dir.join("previews/step-2.png").exists() && dir.join("previews/step-4.png").exists());
        assert!(dir.join("checkpoint/step-4/optimizer.mpk").exists() && dir.join("model.json").exists());
        assert!(!dir.join("checkpoint/step-2").exists(), "the previous set is removed once the next one is committed");
        // A save killed before its state.json: its set is never read, and is removed later.
        std::fs::create_dir_all(dir.join("checkpoint/step-5")).unwrap();
        std::fs::write(dir.join("checkpoint/step-5/model.mpk"), b"half a model").unwrap();

        cfg.steps = 6;
        cfg.resume = true;
        let mut started_at = None;
        let b = train::<CpuTrain>(&cfg, &data, Some(&uri), &device, &mut |e| {
            if let TrainEvent::Started { step, .. } = e {
                started_at = Some(step)
            }
        })
        .unwrap();
        assert_eq!(started_at, Some(4));
        assert!(!dir.join("checkpoint/step-5").exists() && dir.join("checkpoint/step-6/model.mpk").exists());
        assert_eq!(b.losses.len(), 6);
        assert_eq!(&b.losses[..4], &a.losses[..]);
        let loaded = DdpmModel::<Cpu>::load(&uri, &device).unwrap();
        assert_eq!(loaded.meta.steps, 6);
        assert_eq!(loaded.sample(&[5], &SamplerConfig::ddim(5, 0.0)), b.model.sample(&[5], &SamplerConfig::ddim(5, 0.0)));

        // A different architecture refuses to resume, naming the key.
        let same = cfg.unet.clone();
        cfg.unet = UNetConfig::new(1, 8, vec![1], 1, vec![], 0.0, 8).with_groups(4);
        let e = train::<CpuTrain>(&cfg, &data, Some(&uri), &device, &mut |_| {}).err().unwrap().to_string();
        assert!(e.contains("state.json: unet differs"), "{e}");
        cfg.unet = same;
        // So does another seed or batch (the draws follow them).
        for (key, change) in [("seed", DdpmTrainConfig { seed: cfg.seed + 1, ..cfg.clone() }), ("batch", DdpmTrainConfig { batch: cfg.batch + 1, ..cfg.clone() })] {
            let e = train::<CpuTrain>(&change, &data, Some(&uri), &device, &mut |_| {}).err().unwrap().to_string();
            let (was, now) = if key == "seed" { (cfg.seed, change.seed) } else { (cfg.batch as u64, change.batch as u64) };
            assert!(e.contains(&format!("state.json: {key} differs")) && e.contains(&format!("the checkpoint has {was}, this run {now}")), "{e}");
        }
        // So does a class table with the same classes in another order (the channels
        // would change meaning), naming the first class that differs.
        let mut swapped = data.clone();
        swapped.classes.classes.swap(0, 1);
        let e = train::<CpuTrain>(&cfg, &swapped, Some(&uri), &device, &mut |_| {}).err().unwrap().to_string();
        assert!(
            e.contains("state.json: the class table differs: class 0 is building") && e.contains("parking lot (code 20, colour [250, 170, 40]) in this run's --classes"),
            "{e}"
        );
        // Fewer steps than the checkpoint has: nothing to do, said so.
        let e = train::<CpuTrain>(&DdpmTrainConfig { steps: 5, ..cfg.clone() }, &data, Some(&uri), &device, &mut |_| {}).err().unwrap().to_string();
        assert!(e.contains("the checkpoint is at step 6, past --steps 5"), "{e}");
        // A damaged weight file is an error naming it, not weights of another step.
        std::fs::write(dir.join("checkpoint/step-6/ema.mpk"), b"not the ema").unwrap();
        let e = train::<CpuTrain>(&cfg, &data, Some(&uri), &device, &mut |_| {}).err().unwrap().to_string();
        assert!(e.contains("checkpoint/step-6/ema.mpk") && e.contains("damaged"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
