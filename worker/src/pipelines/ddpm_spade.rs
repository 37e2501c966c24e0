//! The `ddpm-spade` pipeline: DDPM label maps → cleanup (and upscale, nearest or smooth:
//! `pipeline.labels.upscale`) → SPADE images; across a job's batches the label stage runs
//! one batch ahead on a thread of its own (`pipeline.overlap`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use burn::tensor::backend::Backend;
use serde_json::json;
use shared::artifact;
use shared::cleanup::CleanupReport;
use shared::job::{never_halted, Halted, Pipeline, Sample};
use shared::spec::RunSpec;
use shared::{mix64, sample_seed, LabelMap};

use super::models::{fetch_models, ModelIds, Models};
use crate::ddpm::stage::{pad, LabelStage};
use crate::ddpm::SamplerConfig;
use crate::device::Resolved;

/// Seeds SPADE's noise from a sample's seed on a stream apart from the DDPM's.
const IMAGE_NOISE_STREAM: u64 = 0x5350_4144_455f_4e5a;

/// Time spent per stage on one batch (or, [`StageSeconds::add`]ed, on several).
#[derive(Debug, Clone, Default)]
pub struct StageSeconds {
    pub cleanup: Duration,
    /// When each forward pass ran (start, end): the DDPM's (sampling) and SPADE's.
    pub sample_spans: Vec<(Instant, Instant)>,
    pub synthesize_spans: Vec<(Instant, Instant)>,
}

/// DDPM label maps → cleanup (and upscale) → SPADE images, each model in batches of its
/// own size (`pipeline.labels.batch_size`, `pipeline.images.batch_size`).
pub struct DdpmSpadePipeline<B: Backend> {
    models: Arc<Models<B>>,
    run_seed: u64,
    labels: LabelStage,
    steps: usize,
    label_batch: usize,
    image_batch: usize,
    /// Pad short batches to the full batch shape: on by default where kernels are
    /// compiled per shape (CUDA), off on the CPU, where padding is only extra work.
    pad: bool,
    /// The most samples one call holds (a run's shard size; a bench row's batch): padding
    /// never goes beyond it.
    call_max: usize,
    /// Overlap the two models across batches (`pipeline.overlap`); see [`Self::batches_timed`].
    overlap: bool,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl<B: Backend> DdpmSpadePipeline<B> {
    pub(super) fn new(spec: &RunSpec, ids: &ModelIds, models: Arc<Models<B>>, resolved: Resolved) -> anyhow::Result<Self> {
        let ls = spec.pipeline.labels.as_ref().context("pipeline.labels")?;
        let cs = spec.pipeline.cleanup.unwrap_or_default();
        let label_meta = &ids.label_meta;
        let steps = ls.check_sampler(label_meta.timesteps).map_err(|e| anyhow::anyhow!(e))?;
        let sampler = SamplerConfig::from_spec(ls.sampler, steps, ls.eta);
        let mut extra = serde_json::Map::new();
        extra.insert("sampler".into(), json!(sampler.kind().to_string()));
        extra.insert("steps".into(), json!(steps));
        if let SamplerConfig::Ddim { eta, .. } = sampler {
            extra.insert("eta".into(), json!(eta));
        }
        extra.insert("label_size".into(), json!(label_meta.size));
        extra.insert("upscale".into(), json!(ls.upscale.to_string()));
        extra.insert("label_model".into(), json!(ids.label_digest));
        extra.insert("image_model".into(), json!(ids.image_digest));
        if !spec.pipeline.precision.is_f32() {
            extra.insert("precision".into(), json!(spec.pipeline.precision.to_string()));
        }
        tracing::debug!(device = %resolved, "ddpm-spade pipeline ready");
        // Cleanup sizes are in output pixels: the stage converts them to the label size.
        let labels = LabelStage::new(label_meta, sampler, ls.upscale, spec.pipeline.image_size, cs.open_radius_px, cs.min_island_px).context("pipeline.labels")?;
        let (label_batch, image_batch) = (spec.pipeline.label_batch(), spec.pipeline.image_batch());
        Ok(DdpmSpadePipeline {
            models,
            run_seed: spec.run.seed,
            labels,
            steps,
            label_batch,
            image_batch,
            pad: !crate::fused::on_host::<B>(),
            call_max: spec.run.shard_size as usize,
            overlap: spec.pipeline.overlap,
            extra,
        })
    }

    /// Pads (or not) short batches to the batch shape; see the field.
    pub fn with_padding(self, pad: bool) -> Self {
        DdpmSpadePipeline { pad, ..self }
    }

    /// Calls hold at most `n` samples (a bench row's batch), so short batches are padded
    /// to at most `n`; see the field.
    pub fn with_call_max(self, n: usize) -> Self {
        DdpmSpadePipeline { call_max: n.max(1), ..self }
    }

    /// Overlaps the models across batches (or not); see [`Self::batches_timed`].
    pub fn with_overlap(self, overlap: bool) -> Self {
        DdpmSpadePipeline { overlap, ..self }
    }

    /// The same pipeline (same loaded models) with other model batch sizes.
    pub fn with_batches(&self, label_batch: usize, image_batch: usize) -> Self {
        DdpmSpadePipeline { models: self.models.clone(), extra: self.extra.clone(), label_batch: label_batch.max(1), image_batch: image_batch.max(1), ..*self }
    }

    /// Denoising steps per label map (network evaluations per sample).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Multiply-accumulates per sample ([`crate::cost`]): the label stage's (one UNet
    /// evaluation × steps) and SPADE's (one image).
    pub fn macs(&self) -> (u64, u64) {
        let ddpm = self.models.ddpm.lock().unwrap_or_else(|p| p.into_inner());
        let unet = ddpm.unet.macs(ddpm.size() as usize) * self.steps as u64;
        drop(ddpm);
        (unet, self.models.spade.lock().unwrap_or_else(|p| p.into_inner()).generator.macs())
    }

    /// The batch shape of a model: its batch, or the longest call when calls are shorter
    /// (padding past it would be work for nothing); `n` itself when not padding.
    fn shape(&self, batch: usize, n: usize) -> usize {
        if self.pad {
            batch.min(self.call_max).max(n)
        } else {
            n
        }
    }

    /// The label stage of one call: DDPM sampling in label batches, then cleanup. Once
    /// `stop` says so it ends at the next denoising step, with fewer maps than seeds.
    fn labels_of(&self, seeds: &[u64], stop: Halted<'_>) -> Labelled {
        let mut out = Labelled { cleaned: Vec::with_capacity(seeds.len()), cleanup: Duration::ZERO, spans: Vec::new() };
        for chunk in seeds.chunks(self.label_batch) {
            if stop() {
                break;
            }
            // Each model's lock is held only for its own forward passes (and the wait for
            // it is not counted as the stage's time).
            let ddpm = self.models.ddpm.lock().unwrap_or_else(|p| p.into_inner());
            let t0 = Instant::now();
            let raw = self.labels.sample(&ddpm, chunk, self.shape(self.label_batch, chunk.len()), stop);
            let t1 = Instant::now();
            drop(ddpm);
            out.spans.push((t0, t1));
            let (c, t) = self.labels.clean(&raw);
            out.cleaned.extend(c);
            out.cleanup += t;
        }
        out
    }

    /// The image stage of one call: SPADE in image batches, then the samples; `seeds` are
    /// the samples' seeds. Once `halted` says so it ends before its next image batch, with
    /// fewer samples than indices.
    fn paint(&self, indices: &[u64], seeds: &[u64], labelled: Labelled, halted: Halted<'_>) -> (Vec<Sample>, StageSeconds) {
        let Labelled { cleaned, cleanup, spans: sample_spans } = labelled;
        let mut synthesize_spans = Vec::new();
        let image_seeds: Vec<u64> = seeds.iter().map(|&s| mix64(s ^ IMAGE_NOISE_STREAM)).collect();
        let maps: Vec<LabelMap> = cleaned.iter().map(|(m, _)| m.clone()).collect();
        let mut images = Vec::with_capacity(maps.len());
        for (m, s) in maps.chunks(self.image_batch).zip(image_seeds.chunks(self.image_batch)) {
            if halted() {
                break;
            }
            let n = self.shape(self.image_batch, m.len());
            let spade = self.models.spade.lock().unwrap_or_else(|p| p.into_inner());
            let t0 = Instant::now();
            let mut out = spade.synthesize(&pad(m, n), &pad(s, n));
            let t1 = Instant::now();
            drop(spade);
            synthesize_spans.push((t0, t1));
            out.truncate(m.len());
            images.extend(out);
        }
        let samples = indices
            .iter()
            .zip(seeds)
            .zip(cleaned.into_iter().zip(images))
            .map(|((&index, &seed), ((label, report), image))| {
                let mut extra = self.extra.clone();
                extra.insert("islands_removed".into(), json!(report.islands_removed));
                extra.insert("pixels_changed".into(), json!(report.pixels_changed));
                Sample { index, seed, image, label, extra }
            })
            .collect();
        (samples, StageSeconds { cleanup, sample_spans, synthesize_spans })
    }

    fn seeds(&self, indices: &[u64]) -> Vec<u64> {
        indices.iter().map(|&i| sample_seed(self.run_seed, i)).collect()
    }

    /// [`Pipeline::generate`], also returning the time each stage took: labels, then
    /// images, one after the other.
    pub fn generate_timed(&self, indices: &[u64]) -> (Vec<Sample>, StageSeconds) {
        self.generate_until(indices, &never_halted)
    }

    /// [`Self::generate_timed`], ending early once `halted` says so (fewer samples).
    fn generate_until(&self, indices: &[u64], halted: Halted<'_>) -> (Vec<Sample>, StageSeconds) {
        let seeds = self.seeds(indices);
        let labelled = self.labels_of(&seeds, halted);
        self.paint(indices, &seeds, labelled, halted)
    }

    /// [`Pipeline::generate_batches`] with each batch's stage times. With `overlap` (the
    /// default, `pipeline.overlap`) the label stage runs on a thread of its own one batch
    /// ahead: while SPADE paints batch k on this thread, the DDPM samples (and the CPU
    /// cleans) batch k+1. Each batch is made exactly as [`Self::generate_timed`] makes it,
    /// so the samples are the same either way. Once `halted` says so both stages end at
    /// their next step (a denoising step, an image batch) and nothing more reaches `sink`.
    pub fn batches_timed(&self, indices: &[u64], batch: usize, halted: Halted<'_>, sink: &mut dyn FnMut(Vec<Sample>, StageSeconds) -> bool) {
        let batch = batch.max(1);
        if !self.overlap {
            for chunk in indices.chunks(batch) {
                let (samples, t) = self.generate_until(chunk, halted);
                if halted() || !sink(samples, t) {
                    return;
                }
            }
            return;
        }
        // A rendezvous channel: the label thread finishes batch k+1 while this one paints
        // batch k, then waits; at most one batch of label maps is in hand besides.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u64>, Labelled)>(0);
        // Set when the painting ends early (a stop): the label thread abandons its batch
        // at the next denoising step instead of finishing it for nothing.
        let stop = AtomicBool::new(false);
        let stop = &stop;
        let label_stop = move || stop.load(Ordering::Relaxed) || halted();
        std::thread::scope(|scope| {
            let labels = std::thread::Builder::new()
                .name("ddpm-labels".into())
                .spawn_scoped(scope, move || {
                    for chunk in indices.chunks(batch) {
                        let seeds = self.seeds(chunk);
                        let labelled = self.labels_of(&seeds, &label_stop);
                        if label_stop() || tx.send((seeds, labelled)).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawning the label thread");
            // Stops the label thread at its next denoising step once the painting ends, by a
            // stop or by a panic (then the scope joins the thread while unwinding), or lets
            // it end (it panicked).
            let _stop = StopOnDrop(stop);
            for (chunk, (seeds, labelled)) in indices.chunks(batch).zip(rx.iter()) {
                let (samples, t) = self.paint(chunk, &seeds, labelled, halted);
                if halted() || !sink(samples, t) {
                    break;
                }
            }
            drop(_stop);
            drop(rx);
            if let Err(panic) = labels.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }
}

/// Sets its flag when dropped (see [`DdpmSpadePipeline::batches_timed`]).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One call's label maps, cleaned, and the time they took.
struct Labelled {
    cleaned: Vec<(LabelMap, CleanupReport)>,
    cleanup: Duration,
    spans: Vec<(Instant, Instant)>,
}

impl<B: Backend> Pipeline for DdpmSpadePipeline<B> {
    fn generate(&self, indices: &[u64]) -> shared::Result<Vec<Sample>> {
        let (samples, t) = self.generate_timed(indices);
        t.log(indices.len());
        Ok(samples)
    }

    fn generate_batches(&self, indices: &[u64], batch: usize, halted: Halted<'_>, sink: &mut dyn FnMut(shared::Result<Vec<Sample>>) -> bool) {
        self.batches_timed(indices, batch, halted, &mut |samples, t| {
            t.log(samples.len());
            sink(Ok(samples))
        })
    }
}

impl StageSeconds {
    /// Time in the DDPM's forward passes (sampling).
    pub fn sample(&self) -> Duration {
        self.sample_spans.iter().map(|(a, b)| *b - *a).sum()
    }

    /// Time in SPADE's forward passes (painting).
    pub fn synthesize(&self) -> Duration {
        self.synthesize_spans.iter().map(|(a, b)| *b - *a).sum()
    }

    /// Adds another batch's times to these.
    pub fn add(&mut self, other: StageSeconds) {
        self.cleanup += other.cleanup;
        self.sample_spans.extend(other.sample_spans);
        self.synthesize_spans.extend(other.synthesize_spans);
    }

    fn log(&self, n: usize) {
        tracing::debug!(n, sample_s = self.sample().as_secs_f64(), cleanup_s = self.cleanup.as_secs_f64(), synthesize_s = self.synthesize().as_secs_f64(), "ddpm-spade batch");
    }

    /// Within `[from, to]`, the time at least one model ran and the time both did (with
    /// overlap, the DDPM's and SPADE's passes meet).
    pub fn busy_within(&self, from: Instant, to: Instant) -> (Duration, Duration) {
        let ddpm = union_within(self.sample_spans.iter().copied(), from, to);
        let spade = union_within(self.synthesize_spans.iter().copied(), from, to);
        let either = union_within(self.sample_spans.iter().chain(&self.synthesize_spans).copied(), from, to);
        (either, (ddpm + spade).saturating_sub(either))
    }
}

/// The length of the union of `spans`, each clipped to `[from, to]`.
fn union_within(spans: impl Iterator<Item = (Instant, Instant)>, from: Instant, to: Instant) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = spans.map(|(a, b)| (a.max(from), b.min(to))).filter(|(a, b)| a < b).collect();
    spans.sort();
    let (mut busy, mut end) = (Duration::ZERO, from);
    for (a, b) in spans {
        if b > end {
            busy += b - a.max(end);
            end = b;
        }
    }
    busy
}

/// Builds a `ddpm-spade` pipeline on a given backend and device, bypassing the factory's
/// device choice (benchmarks and the GPU check compare backends with it).
pub fn ddpm_spade_on<B: Backend>(spec: &RunSpec, dev: B::Device, resolved: Resolved) -> anyhow::Result<DdpmSpadePipeline<B>> {
    let checked = crate::sync_store::block_on(fetch_models(spec, &artifact::default_cache_dir()))?;
    let ids = checked.ids();
    let models = checked.load::<B>(&dev, spec.pipeline.precision)?;
    DdpmSpadePipeline::new(spec, &ids, Arc::new(models), resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    fn spec(extra: &str, labels: &str, images: &str) -> RunSpec {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo");
        RunSpec::parse(
            &format!(
                "[run]\ncount = 8\nshard_size = 8\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = 64\n{extra}\n\
                 [pipeline.labels]\nmodel = \"{models}/ddpm\"\nsteps = 5\nupscale = \"smooth\"\n{labels}\n[pipeline.images]\nmodel = \"{models}/spade\"\n{images}\n"
            ),
            "test spec",
        )
        .unwrap()
    }

    /// Labels in batches of 3 and images in batches of 2, short batches padded, give the
    /// samples one batch of 5 gives; a bf16 run says so in every sample.
    #[test]
    fn per_model_batches_and_padding_change_no_sample() {
        let indices: Vec<u64> = (0..5).collect();
        let one = ddpm_spade_on::<Cpu>(&spec("batch_size = 5", "", ""), CpuDevice::default(), Resolved::Cpu).unwrap().generate_timed(&indices).0;
        let split = ddpm_spade_on::<Cpu>(&spec("", "batch_size = 3", "batch_size = 2"), CpuDevice::default(), Resolved::Cpu).unwrap().with_padding(true);
        assert_eq!((split.label_batch, split.image_batch), (3, 2));
        let two = split.generate_timed(&indices).0;
        assert_eq!(two.len(), 5);
        let c = crate::bench::diff(&one, &two);
        assert_eq!(c.mean_label_agreement(), 1.0, "{c}");
        assert!(c.mean_image_mae() < 0.05, "{c}");
        assert_eq!(one.iter().map(|s| s.index).collect::<Vec<_>>(), two.iter().map(|s| s.index).collect::<Vec<_>>());
        assert!(!one[0].extra.contains_key("precision"));
        let bf16 = ddpm_spade_on::<Cpu>(&spec("precision = \"bf16\"", "", ""), CpuDevice::default(), Resolved::Cpu).unwrap().generate_timed(&indices[..2]).0;
        assert_eq!(bf16[0].extra["precision"], "bf16");
    }

    /// A job's batches with the label stage a batch ahead on its own thread are the ones
    /// made one after the other, which are `generate`'s; a stop after the first batch ends
    /// the label thread (the call returns).
    #[test]
    fn overlapped_batches_are_the_sequential_ones() {
        let indices: Vec<u64> = (0..5).collect();
        let pipe = ddpm_spade_on::<Cpu>(&spec("batch_size = 2", "", ""), CpuDevice::default(), Resolved::Cpu).unwrap();
        assert!(pipe.overlap, "pipeline.overlap defaults to on");
        let run = |pipe: &DdpmSpadePipeline<Cpu>| {
            let (mut samples, mut sizes, mut passes) = (Vec::new(), Vec::new(), 0);
            pipe.generate_batches(&indices, 2, &never_halted, &mut |r| {
                let batch = r.unwrap();
                sizes.push(batch.len());
                samples.extend(batch);
                true
            });
            pipe.batches_timed(&indices, 2, &never_halted, &mut |_, t| {
                passes += t.sample_spans.len() + t.synthesize_spans.len();
                true
            });
            (samples, sizes, passes)
        };
        let (overlapped, sizes, passes) = run(&pipe);
        // Batches of 2, 2 and 1; one DDPM and one SPADE pass each.
        assert_eq!((sizes, passes), (vec![2, 2, 1], 6));
        let pipe = pipe.with_overlap(false);
        let (apart, _, _) = run(&pipe);
        let one_call = pipe.generate(&indices).unwrap();
        for other in [&apart, &one_call] {
            let c = crate::bench::diff(&overlapped, other);
            assert_eq!(c.mean_label_agreement(), 1.0, "{c}");
            assert!(c.mean_image_mae() < 1e-3, "{c}");
        }
        assert_eq!(overlapped.iter().map(|s| s.index).collect::<Vec<_>>(), indices);
        let mut calls = 0;
        pipe.with_overlap(true).batches_timed(&indices, 1, &never_halted, &mut |_, _| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1);
    }

    /// A halt (the job stopped or lost) ends a batch at its next denoising step, with or
    /// without the overlap: nothing reaches the sink and the call returns after a few
    /// checks, not after the 4 batches × 5 steps it was asked for.
    #[test]
    fn a_halt_ends_the_batch_at_the_next_denoising_step() {
        let indices: Vec<u64> = (0..8).collect();
        for overlap in [true, false] {
            let pipe = ddpm_spade_on::<Cpu>(&spec("batch_size = 2", "", ""), CpuDevice::default(), Resolved::Cpu).unwrap().with_overlap(overlap);
            // Halted from its third question on: inside the first batch's 5 steps.
            let asked = std::sync::atomic::AtomicUsize::new(0);
            let halted = || asked.fetch_add(1, Ordering::SeqCst) >= 2;
            let mut handed = 0;
            pipe.generate_batches(&indices, 2, &halted, &mut |r| {
                r.unwrap();
                handed += 1;
                true
            });
            let asked = asked.load(Ordering::SeqCst);
            assert_eq!(handed, 0, "overlap {overlap}: a halted batch reached the sink");
            assert!((3..=6).contains(&asked), "overlap {overlap}: asked {asked} times, expected to stop at the third");
        }
    }

    /// Busy time is the union of both models' passes inside the window; "both" the time
    /// the DDPM's and SPADE's passes overlap there.
    #[test]
    fn busy_time_is_the_union_of_the_passes() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut st = StageSeconds { sample_spans: vec![(ms(0), ms(10)), (ms(30), ms(40))], ..Default::default() };
        st.add(StageSeconds { synthesize_spans: vec![(ms(5), ms(20)), (ms(32), ms(35)), (ms(50), ms(70))], ..Default::default() });
        let d = Duration::from_millis;
        assert_eq!((st.sample(), st.synthesize()), (d(20), d(38)));
        // Either: [0,20] + [30,40] + [50,60] within [0, 60]; both: [5,10] + [32,35].
        assert_eq!(st.busy_within(ms(0), ms(60)), (d(40), d(8)));
        assert_eq!(st.busy_within(ms(8), ms(33)), (d(15), d(3)));
        // DDPM passes outside the window count for neither.
        assert_eq!(st.busy_within(ms(12), ms(25)), (d(8), d(0)));
        assert_eq!(StageSeconds::default().busy_within(ms(0), ms(60)), (d(0), d(0)));
    }
}
