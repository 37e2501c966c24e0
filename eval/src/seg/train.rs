//! Training ([`train`]: Adam, poly learning-rate decay, seeded shuffling and flips),
//! prediction and evaluation.

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::RngExt;
use rayon::prelude::*;
use shared::dataset::{prefetch_batches, PairSource};
use shared::{rng_for, sample_seed, LabelMap, RgbImage};

use super::loss::masked_cross_entropy;
use super::metrics::ConfusionMatrix;
use super::model::{SegNet, SegNetConfig};
use worker::tensors::{images_to_tensor, labels_to_tensor};

const SALT_ORDER: u64 = 0x5E6_0001;
const SALT_FLIP: u64 = 0x5E6_0002;
const SALT_INIT: u64 = 0x5E6_0003;

/// What [`train`] needs besides the model's config and the data.
#[derive(Debug, Clone, PartialEq)]
pub struct SegTrainOptions {
    /// Passes over the data.
    pub epochs: usize,
    pub batch: usize,
    /// Adam's initial learning rate; decays as `lr · (1 − step/steps)^0.9` ("poly").
    pub lr: f64,
    /// Seeds the initial weights, the order and the flips.
    pub seed: u64,
    /// Random horizontal and vertical flips (each with probability ½, per sample).
    pub flips: bool,
}

impl Default for SegTrainOptions {
    fn default() -> Self {
        SegTrainOptions { epochs: 10, batch: 8, lr: 1e-3, seed: 0, flips: true }
    }
}

/// Progress of [`train`], reported after every step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub step: u64,
    pub steps: u64,
    pub epoch: usize,
    pub loss: f32,
    /// Exponential moving average (α = 0.05) of the loss.
    pub smoothed: f64,
    pub images_per_sec: f64,
}

/// Steps of a run: `epochs · ⌈n / batch⌉` (the last batch of an epoch may be short).
pub fn steps(n: usize, opts: &SegTrainOptions) -> u64 {
    (opts.epochs * n.div_ceil(opts.batch.max(1))) as u64
}

/// Flips an image and its label map together.
pub fn flip_pair(img: &mut RgbImage, lab: &mut LabelMap, horizontal: bool, vertical: bool) {
    let (w, h) = (lab.width as usize, lab.height as usize);
    assert_eq!((img.width, img.height), (lab.width, lab.height), "flip_pair: image and label differ in size");
    if horizontal {
        for y in 0..h {
            lab.data[y * w..(y + 1) * w].reverse();
            for x in 0..w / 2 {
                for c in 0..3 {
                    img.data.swap((y * w + x) * 3 + c, (y * w + (w - 1 - x)) * 3 + c);
                }
            }
        }
    }
    if vertical {
        for y in 0..h / 2 {
            let (a, b) = (y * w, (h - 1 - y) * w);
            for x in 0..w {
                lab.data.swap(a + x, b + x);
                for c in 0..3 {
                    img.data.swap((a + x) * 3 + c, (b + x) * 3 + c);
                }
            }
        }
    }
}

/// Trains a fresh [`SegNet`] on `pairs` (all the same size; a batch's pairs are read in
/// parallel, one batch ahead of the step, by [`prefetch_batches`]) and returns it. The initial weights come from the seed
/// ([`super::init::seeded_init`], not the backend's RNG); epoch `e`'s order is a
/// permutation seeded by `(seed, e)`; the `i`-th sample drawn in epoch `e` is flipped by its own stream
/// of the same seed. So a run repeats for a seed as far as the backend's kernels are
/// deterministic.
pub fn train<B: AutodiffBackend>(
    config: &SegNetConfig,
    pairs: &(dyn PairSource + Sync),
    opts: &SegTrainOptions,
    device: &B::Device,
    mut on_progress: impl FnMut(&Progress),
) -> anyhow::Result<SegNet<B>> {
    config.validate().map_err(|e| anyhow::anyhow!("segmentation model: {e}"))?;
    anyhow::ensure!(opts.batch > 0, "batch 0: must be at least 1");
    anyhow::ensure!(opts.lr > 0.0 && opts.lr.is_finite(), "learning rate {}: must be positive", opts.lr);
    let n = pairs.len();
    anyhow::ensure!(n > 0, "no training pairs");
    let mut model: Option<SegNet<B>> = Some(super::init::seeded_init(config.init(device), sample_seed(opts.seed, SALT_INIT)));
    let mut optim = AdamConfig::new().init();
    let total = steps(n, opts);
    let start = std::time::Instant::now();
    let (mut step, mut seen, mut smoothed) = (0u64, 0u64, 0f64);
    // Every epoch's order up front, so batch b's pairs are known to the reader.
    let orders: Vec<Vec<usize>> = (0..opts.epochs)
        .map(|epoch| {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng_for(sample_seed(opts.seed ^ SALT_ORDER, epoch as u64), 0));
            order
        })
        .collect();
    let per_epoch = n.div_ceil(opts.batch) as u64;
    let chunk_of = |b: u64| -> (usize, &[usize]) {
        let (epoch, k) = ((b / per_epoch) as usize, (b % per_epoch) as usize);
        let from = k * opts.batch;
        (epoch, &orders[epoch][from..(from + opts.batch).min(n)])
    };
    // Batches are decoded and resized in parallel on a reader thread, one ahead of the
    // step (at 512 px this is what a GPU would wait for), in the same order as before.
    prefetch_batches::<_, anyhow::Error>(
        pairs,
        0..total,
        2,
        |b| chunk_of(b).1.to_vec(),
        |b, read| {
            let (epoch, chunk) = chunk_of(b);
            let mut images = Vec::with_capacity(chunk.len());
            let mut labels = Vec::with_capacity(chunk.len());
            for (j, (&i, (mut img, mut lab))) in chunk.iter().zip(read).enumerate() {
                if opts.flips {
                    let mut rng = rng_for(sample_seed(opts.seed ^ SALT_FLIP, epoch as u64), (step * opts.batch as u64) + j as u64);
                    let (h, v) = (rng.random_bool(0.5), rng.random_bool(0.5));
                    flip_pair(&mut img, &mut lab, h, v);
                }
                if let Some(first) = labels.first() {
                    let first: &LabelMap = first;
                    anyhow::ensure!(
                        (lab.width, lab.height) == (first.width, first.height),
                        "training pair {i} is {}×{}, pair {} is {}×{}: resize the pairs to one size",
                        lab.width,
                        lab.height,
                        chunk[0],
                        first.width,
                        first.height
                    );
                }
                images.push(img);
                labels.push(lab);
            }
            let m = model.take().expect("the model is put back after every step");
            let x = images_to_tensor::<B>(&images, device);
            let t = labels_to_tensor::<B>(&labels, device);
            let loss = masked_cross_entropy(m.forward(x), t);
            let value = loss.clone().into_scalar().elem::<f32>();
            anyhow::ensure!(value.is_finite(), "the loss diverged ({value}) at step {step}: lower the learning rate");
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            let lr = opts.lr * (1.0 - step as f64 / total as f64).max(0.0).powf(0.9);
            model = Some(optim.step(lr, m, grads));
            step += 1;
            seen += chunk.len() as u64;
            smoothed = if step == 1 { value as f64 } else { 0.95 * smoothed + 0.05 * value as f64 };
            on_progress(&Progress { step, steps: total, epoch, loss: value, smoothed, images_per_sec: seen as f64 / start.elapsed().as_secs_f64().max(1e-9) });
            Ok(())
        },
    )?;
    Ok(model.expect("the model is put back after every step"))
}

/// The most likely class of every pixel.
pub fn predict<B: Backend>(model: &SegNet<B>, images: &[RgbImage], device: &B::Device) -> Vec<LabelMap> {
    if images.is_empty() {
        return Vec::new();
    }
    let logits = model.forward(images_to_tensor::<B>(images, device));
    let [b, _, h, w] = logits.dims();
    let idx: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().to_vec().expect("int data");
    idx.chunks(h * w).take(b).map(|c| LabelMap { width: w as u32, height: h as u32, data: c.iter().map(|&v| v as u8).collect() }).collect()
}

/// The confusion matrix of `model`'s predictions on every pair, `batch` at a time.
pub fn evaluate<B: Backend>(model: &SegNet<B>, pairs: &(dyn PairSource + Sync), k: usize, batch: usize, device: &B::Device) -> anyhow::Result<ConfusionMatrix> {
    let mut m = ConfusionMatrix::new(k);
    let idx: Vec<usize> = (0..pairs.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let (images, labels): (Vec<RgbImage>, Vec<LabelMap>) = chunk.par_iter().map(|&i| pairs.get(i)).collect::<shared::Result<Vec<_>>>()?.into_iter().unzip();
        for (p, t) in predict(model, &images, device).iter().zip(&labels) {
            m.add(t, p);
        }
    }
    Ok(m)
}

/// [`train`]'s model for inference (no autodiff; batch norm uses running statistics).
pub fn inference<B: AutodiffBackend>(model: &SegNet<B>) -> SegNet<B::InnerBackend> {
    model.valid()
}
