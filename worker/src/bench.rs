//! Measurements of the `ddpm-spade` pipeline (what `worker bench` prints; used by
//! `scripts/gpu-check.sh`): per-stage time per image and images/s ([`PipelineBench`], run
//! on the backend [`crate::backend::dispatch`] picks), and a CPU-versus-CUDA comparison of
//! the same samples ([`compare`]; the one place two backends run side by side), and the
//! two ways of bringing label maps to full size side by side ([`UpscaleBench`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use bytes::Bytes;
use shared::cleanup::CleanupOptions;
use shared::spec::{LabelUpscale, PipelineKind, Precision, RunSpec, SamplerKind};
use shared::storage::Store;

use crate::backend::OnBackend;
use crate::ddpm::stage::LabelStage;
use crate::device::Resolved;
use crate::pipelines::{ddpm_spade_on, random_ddpm_spade, DdpmSpadePipeline, RandomSettings, StageSeconds};

/// A sampler setting to time: `ddim-N` (DDIM, N steps) or `ddpm` (all timesteps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    Ddpm,
    Ddim(usize),
}

impl std::str::FromStr for Sampler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "ddpm" {
            return Ok(Sampler::Ddpm);
        }
        match s.strip_prefix("ddim-").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n > 0 => Ok(Sampler::Ddim(n)),
            _ => Err(format!("expected ddim-N (N ≥ 1) or ddpm, found {s:?}")),
        }
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sampler::Ddpm => f.write_str("ddpm"),
            Sampler::Ddim(n) => write!(f, "ddim-{n}"),
        }
    }
}

/// Loads a run spec and checks that it is a `ddpm-spade` one.
pub fn load_spec(config: &Path) -> anyhow::Result<RunSpec> {
    let spec = RunSpec::load(config)?;
    if spec.pipeline.kind != PipelineKind::DdpmSpade {
        bail!("{}: pipeline.kind is not ddpm-spade; the bench measures the model pipeline", config.display());
    }
    Ok(spec)
}

/// `spec` with its label sampler replaced by `sampler`.
pub fn with_sampler(spec: &RunSpec, sampler: Sampler) -> anyhow::Result<RunSpec> {
    let mut spec = spec.clone();
    let labels = spec.pipeline.labels.as_mut().context("pipeline.labels")?;
    match sampler {
        Sampler::Ddpm => {
            labels.sampler = SamplerKind::Ddpm;
            labels.steps = None;
            labels.eta = 0.0;
        }
        Sampler::Ddim(n) => {
            labels.sampler = SamplerKind::Ddim;
            labels.steps = Some(n);
        }
    }
    Ok(spec)
}

/// What `spec` runs: its sampler (with its steps), precision and overlap.
pub fn spec_settings(spec: &RunSpec) -> anyhow::Result<(Sampler, shared::spec::Precision, bool)> {
    let labels = spec.pipeline.labels.as_ref().context("pipeline.labels")?;
    let sampler = match labels.sampler {
        SamplerKind::Ddpm => Sampler::Ddpm,
        SamplerKind::Ddim => Sampler::Ddim(labels.steps.unwrap_or(shared::spec::DEFAULT_DDIM_STEPS)),
    };
    Ok((sampler, spec.pipeline.precision, spec.pipeline.overlap))
}

/// Which models to time.
#[derive(Debug, Clone)]
pub enum Models {
    /// A ddpm-spade run spec's models, cleanup and image size.
    Spec(PathBuf),
    /// Randomly initialised full-size models at this image size ([`random_ddpm_spade`]).
    RandomFullSize(u32),
}

/// Times the pipeline for every sampler × precision × batch size × overlap setting:
/// `warmup` untimed batches, then `batches` timed ones, generated as one job's batches
/// ([`DdpmSpadePipeline::batches_timed`]), each PNG-encoded and written to a local
/// temporary store. Sample indices run on from batch to batch. A half-precision row's
/// first timed batch is compared with the f32 row's (when f32 runs first): label pixel
/// agreement and image mean absolute difference.
#[derive(Debug, Clone)]
pub struct PipelineBench {
    pub models: Models,
    pub samplers: Vec<Sampler>,
    pub precisions: Vec<Precision>,
    /// Samples per `generate` call.
    pub batch_sizes: Vec<usize>,
    /// Overrides of `pipeline.labels.batch_size` and `pipeline.images.batch_size`.
    pub label_batch: Option<usize>,
    pub image_batch: Option<usize>,
    /// `pipeline.overlap` settings to time (each batch size is timed with each).
    pub overlap: Vec<bool>,
    pub batches: usize,
    pub warmup: usize,
}

/// One timed setting.
#[derive(Debug, Clone)]
pub struct Row {
    /// The models and sampler.
    pub what: String,
    pub precision: Precision,
    pub batch: usize,
    /// Whether the label stage ran a batch ahead of SPADE (`pipeline.overlap`).
    pub overlap: bool,
    /// Denoising steps per label map.
    pub steps: usize,
    /// Images timed.
    pub images: usize,
    pub stages: StageSeconds,
    /// Wall time at least one model was running, and both were.
    pub busy: Duration,
    pub both: Duration,
    pub encode: Duration,
    pub upload: Duration,
    pub wall: Duration,
    /// Against the f32 row of the same setting: its first timed batch compared.
    pub vs_f32: Option<Comparison>,
    /// GFLOP per sample of the label stage (all steps) and of SPADE ([`crate::cost`]).
    pub gflop: (f64, f64),
    /// Samples of the run the estimate is for: the spec's `run.count`, a million for
    /// random models.
    pub run_count: u64,
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Dense peak rates in TFLOP/s, (bf16 tensor cores, f32 without tensor cores), from the
/// vendors' data sheets (SXM parts; no sparsity). docs/performance.md lists the same.
pub const PEAKS: [(&str, f64, f64); 4] = [("H100", 989.0, 67.0), ("H200", 989.0, 67.0), ("A100", 312.0, 19.5), ("L4", 121.0, 30.3)];

/// Seconds as `12.3 s`, `4.5 min` or `6.78 h`.
pub fn duration_text(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7200.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.2} h", secs / 3600.0)
    }
}

/// The end-to-end target of the mission: a million pairs in this many hours.
pub const TARGET_HOURS: f64 = 3.0;

impl Row {
    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.wall.as_secs_f64()
    }
}

/// What [`PipelineBench`] measured; displays as the device line and a Markdown table.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub device: Resolved,
    pub rows: Vec<Row>,
}

impl std::fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "device: {}", self.device)?;
        writeln!(
            f,
            "| pipeline | precision | batch | overlap | images/s | UNet ms/step | SPADE ms/batch | sample ms/img | cleanup ms/img | synthesize ms/img | encode ms/img | upload ms/img | models busy % | both busy % | sample GFLOP/s | synthesize GFLOP/s | labels = f32 | image MAE vs f32 |"
        )?;
        writeln!(f, "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")?;
        for r in &self.rows {
            let per = |d: Duration| d.as_secs_f64() * 1000.0 / r.images as f64;
            // Per batch: one network evaluation of the batch per denoising step.
            let per_batch = |d: Duration| per(d) * r.batch as f64;
            let (agree, mae) = match &r.vs_f32 {
                Some(c) => (format!("{:.4}", c.mean_label_agreement()), format!("{:.3}", c.mean_image_mae())),
                None => ("–".into(), "–".into()),
            };
            let rate = |gflop: f64, d: Duration| gflop * r.images as f64 / d.as_secs_f64();
            let share = |d: Duration| 100.0 * d.as_secs_f64() / r.wall.as_secs_f64();
            writeln!(
                f,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {:.1} | {agree} | {mae} |",
                r.what,
                r.precision,
                r.batch,
                on_off(r.overlap),
                r.images_per_sec(),
                per_batch(r.stages.sample()) / r.steps.max(1) as f64,
                per_batch(r.stages.synthesize()),
                per(r.stages.sample()),
                per(r.stages.cleanup),
                per(r.stages.synthesize()),
                per(r.encode),
                per(r.upload),
                share(r.busy),
                share(r.both),
                rate(r.gflop.0, r.stages.sample()),
                rate(r.gflop.1, r.stages.synthesize()),
            )?;
        }
        writeln!(
            f,
            "models busy %: share of wall time at least one model is in a forward pass (sampling or painting); the rest is cleanup, encoding, upload and the host. both busy %: share of wall time both are (overlap on: the DDPM sampling the next batch while SPADE paints this one)."
        )?;
        let mut seen = std::collections::BTreeSet::new();
        for r in self.rows.iter().filter(|r| seen.insert(r.what.clone())) {
            let per_pair = r.gflop.0 + r.gflop.1;
            let total = per_pair * r.run_count as f64;
            let needed = total / (TARGET_HOURS * 3600.0) / 1e3;
            let at_peak: Vec<String> =
                PEAKS.iter().map(|(gpu, bf16, f32)| format!("{gpu} {} bf16 / {} f32", duration_text(total / (bf16 * 1e3)), duration_text(total / (f32 * 1e3)))).collect();
            writeln!(
                f,
                "{}: {:.1} GFLOP per pair (sampling {:.1}, painting {:.1}); {} pairs = {:.4} PFLOP, at 100 % of the dense peak: {}; {TARGET_HOURS} h for them needs {needed:.3} TFLOP/s achieved.",
                r.what,
                per_pair,
                r.gflop.0,
                r.gflop.1,
                r.run_count,
                total / 1e6,
                at_peak.join(", ")
            )?;
        }
        Ok(())
    }
}

impl OnBackend for PipelineBench {
    type Output = PipelineReport;
    fn run<B: Backend>(self, dev: B::Device, resolved: Resolved) -> anyhow::Result<PipelineReport> {
        if self.batch_sizes.contains(&0) || self.batches == 0 {
            bail!("batch sizes and the number of batches must be at least 1");
        }
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let tmp = std::env::temp_dir().join(format!("labelgen-bench-{}", std::process::id()));
        let store = Store::open(tmp.to_str().context("temp dir path")?)?;
        let spec_base = match &self.models {
            Models::Spec(config) => Some(load_spec(config)?),
            Models::RandomFullSize(_) => None,
        };
        let mut rows = Vec::new();
        // The f32 rows' first timed batches, by (sampler, batch size).
        let mut reference: std::collections::HashMap<(String, usize), Vec<shared::job::Sample>> = Default::default();
        for (&sampler, &precision) in self.samplers.iter().flat_map(|s| self.precisions.iter().map(move |p| (s, p))) {
            let (pipe, classes, what): (DdpmSpadePipeline<B>, shared::ClassTable, String) = match (&self.models, &spec_base) {
                (Models::Spec(config), Some(spec)) => {
                    let mut spec = with_sampler(spec, sampler)?;
                    spec.pipeline.precision = precision;
                    if let Some(l) = spec.pipeline.labels.as_mut() {
                        l.batch_size = self.label_batch.or(l.batch_size);
                    }
                    if let Some(i) = spec.pipeline.images.as_mut() {
                        i.batch_size = self.image_batch.or(i.batch_size);
                    }
                    (ddpm_spade_on::<B>(&spec, dev.clone(), resolved)?, spec.classes.clone(), format!("{} {sampler}", config.display()))
                }
                (Models::RandomFullSize(size), _) => {
                    let steps = match sampler {
                        Sampler::Ddpm => None,
                        Sampler::Ddim(n) => Some(n),
                    };
                    (
                        random_ddpm_spade::<B>(
                            RandomSettings { size: *size, ddim_steps: steps, precision, label_batch: self.label_batch, image_batch: self.image_batch },
                            dev.clone(),
                            resolved,
                        )?,
                        shared::ClassTable::ai_hub(),
                        format!("random full-size {size}px {sampler}"),
                    )
                }
                (Models::Spec(_), None) => unreachable!("the spec was loaded above"),
            };
            let what = match (self.label_batch, self.image_batch) {
                (None, None) => what,
                (l, i) => format!("{what}, model batches {}/{}", l.map_or("–".into(), |b| b.to_string()), i.map_or("–".into(), |b| b.to_string())),
            };
            let (unet_macs, spade_macs) = pipe.macs();
            let gflop = (2.0 * unet_macs as f64 / 1e9, 2.0 * spade_macs as f64 / 1e9);
            let run_count = spec_base.as_ref().map_or(1_000_000, |s| s.run.count);
            let spec_batches =
                spec_base.as_ref().map_or((None, None), |s| (s.pipeline.labels.as_ref().and_then(|l| l.batch_size), s.pipeline.images.as_ref().and_then(|i| i.batch_size)));
            for (&batch, &overlap) in self.batch_sizes.iter().flat_map(|b| self.overlap.iter().map(move |o| (b, o))) {
                // Model batches: --label-batch / --image-batch, else the spec's, else the row's.
                // Calls of the row's batch: short model batches are padded to at most that.
                let pipe = pipe
                    .with_batches(self.label_batch.or(spec_batches.0).unwrap_or(batch), self.image_batch.or(spec_batches.1).unwrap_or(batch))
                    .with_overlap(overlap)
                    .with_call_max(batch);
                let mut row = Row {
                    what: what.clone(),
                    precision,
                    batch,
                    overlap,
                    steps: pipe.steps(),
                    images: 0,
                    stages: StageSeconds::default(),
                    busy: Duration::ZERO,
                    both: Duration::ZERO,
                    encode: Duration::ZERO,
                    upload: Duration::ZERO,
                    wall: Duration::ZERO,
                    vs_f32: None,
                    gflop,
                    run_count,
                };
                // One job's worth of batches, as a worker runs them: each batch is encoded
                // and stored here while (with overlap) the next one's labels are sampled.
                // A batch's wall time runs from the previous batch stored to this one.
                let indices: Vec<u64> = (0..((self.warmup + self.batches) * batch) as u64).collect();
                let (mut b, mut last, mut first) = (0, Instant::now(), None);
                let mut failed = None;
                pipe.batches_timed(&indices, batch, &shared::job::never_halted, &mut |samples, st| {
                    let t1 = Instant::now();
                    let encoded: Vec<(Vec<u8>, Vec<u8>)> = samples.iter().map(|s| (s.image.to_png(), s.label.to_png(&classes))).collect();
                    let t2 = Instant::now();
                    let stored = rt.block_on(async {
                        for (i, (img, lbl)) in encoded.into_iter().enumerate() {
                            store.put(&format!("{b}/{i}.png"), Bytes::from(img)).await?;
                            store.put(&format!("{b}/{i}.label.png"), Bytes::from(lbl)).await?;
                        }
                        anyhow::Ok(())
                    });
                    if let Err(e) = stored {
                        failed = Some(e);
                        return false;
                    }
                    let t3 = Instant::now();
                    if b >= self.warmup {
                        if b == self.warmup {
                            let key = (sampler.to_string(), batch);
                            if precision.is_f32() {
                                reference.insert(key, samples);
                            } else if let Some(f32_samples) = reference.get(&key) {
                                row.vs_f32 = Some(diff(f32_samples, &samples));
                            }
                        }
                        row.images += batch;
                        row.stages.add(st);
                        row.encode += t2 - t1;
                        row.upload += t3 - t2;
                        row.wall += t3 - last;
                        first.get_or_insert(last);
                    }
                    (b, last) = (b + 1, t3);
                    true
                });
                if let Some(e) = failed {
                    return Err(e.context("storing the bench's samples"));
                }
                if let Some(from) = first {
                    (row.busy, row.both) = row.stages.busy_within(from, last);
                }
                eprintln!("  {} {precision} batch {} overlap {}: {:.2} images/s", row.what, row.batch, on_off(overlap), row.images_per_sec());
                rows.push(row);
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(PipelineReport { device: resolved, rows })
    }
}

/// Label maps of one label model brought to `size` both ways ([`LabelUpscale`]), from the
/// same seeds, each cleaned with `cleanup` as the pipeline does: nearest (cleaned at the
/// model's size, then each pixel repeated) and smooth (probabilities upscaled, cleaned at
/// full size). Reports the staircase measure ([`shared::LabelMap::grid_boundary_share`])
/// and the time per map of each stage.
#[derive(Debug, Clone)]
pub struct UpscaleBench {
    /// The label model's location.
    pub model: String,
    pub size: u32,
    pub count: usize,
    pub batch: usize,
    pub sampler: crate::ddpm::SamplerConfig,
    /// Radius and island size in output pixels; the label stage sets the rest as the
    /// pipeline does.
    pub cleanup: CleanupOptions,
}

/// One upscale mode's figures.
#[derive(Debug, Clone)]
pub struct UpscaleRow {
    pub mode: LabelUpscale,
    pub maps: usize,
    pub sample: Duration,
    pub cleanup: Duration,
    /// Mean of the maps' staircase measure (maps without a boundary left out).
    pub staircase: f64,
    /// Mean islands removed per map (at the resolution the cleanup ran at).
    pub islands_removed: f64,
    pub maps_out: Vec<shared::LabelMap>,
}

/// What [`UpscaleBench`] measured; displays as a Markdown table.
#[derive(Debug, Clone)]
pub struct UpscaleReport {
    pub device: Resolved,
    pub model_size: u32,
    pub size: u32,
    pub rows: Vec<UpscaleRow>,
}

impl UpscaleReport {
    /// Share of pixels labelled alike by the two modes.
    pub fn agreement(&self) -> Option<f64> {
        let [a, b] = &self.rows[..] else { return None };
        let (same, all) =
            a.maps_out.iter().zip(&b.maps_out).fold((0usize, 0usize), |(s, n), (x, y)| (s + x.data.iter().zip(&y.data).filter(|(p, q)| p == q).count(), n + x.data.len()));
        (all > 0).then(|| same as f64 / all as f64)
    }
}

impl std::fmt::Display for UpscaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, s) = (self.model_size, self.size);
        writeln!(f, "device: {}; label model {m}×{m} → {s}×{s}", self.device)?;
        writeln!(f, "| upscale | maps | staircase share | sample ms/map | cleanup ms/map | islands removed/map |")?;
        writeln!(f, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
        for r in &self.rows {
            let per = |d: Duration| d.as_secs_f64() * 1000.0 / r.maps as f64;
            writeln!(f, "| {} | {} | {:.3} | {:.1} | {:.1} | {:.1} |", r.mode, r.maps, r.staircase, per(r.sample), per(r.cleanup), r.islands_removed)?;
        }
        if let Some(a) = self.agreement() {
            writeln!(
                f,
                "pixels labelled alike by both: {a:.4}; staircase share: of the class boundaries, the share on the {0}-px grid of the model's pixels (nearest: 1 by construction)",
                self.size / self.model_size.max(1)
            )?;
        }
        Ok(())
    }
}

impl OnBackend for UpscaleBench {
    type Output = UpscaleReport;
    fn run<B: Backend>(self, dev: B::Device, resolved: Resolved) -> anyhow::Result<UpscaleReport> {
        let model = crate::ddpm::DdpmModel::<B>::load(&self.model, &dev)?;
        let model_size = model.size();
        if self.count == 0 || self.batch == 0 {
            bail!("--count and --batch must be at least 1");
        }
        if self.size < model_size || !self.size.is_multiple_of(model_size) {
            bail!("--size {}: must be a whole multiple of the model's {model_size}×{model_size} maps", self.size);
        }
        let cell = self.size / model_size;
        let seeds: Vec<u64> = (0..self.count as u64).map(|i| shared::sample_seed(1, i)).collect();
        let mut rows = Vec::new();
        for mode in [LabelUpscale::Nearest, LabelUpscale::Smooth] {
            // The pipeline's own label stage (it refuses smooth for a gray model).
            let stage = LabelStage::new(&model.meta, self.sampler, mode, self.size, self.cleanup.open_radius, self.cleanup.min_island).with_context(|| self.model.clone())?;
            let mut row = UpscaleRow { mode, maps: 0, sample: Duration::ZERO, cleanup: Duration::ZERO, staircase: 0.0, islands_removed: 0.0, maps_out: Vec::new() };
            let (mut stairs, mut with_boundary, mut islands) = (0.0, 0usize, 0u64);
            for chunk in seeds.chunks(self.batch) {
                let out = stage.run(&model, chunk);
                row.cleanup += out.cleanup;
                row.sample += out.sample;
                for (m, report) in out.cleaned {
                    if let Some(share) = m.grid_boundary_share(cell) {
                        stairs += share;
                        with_boundary += 1;
                    }
                    islands += report.islands_removed;
                    row.maps_out.push(m);
                }
                row.maps += chunk.len();
                eprintln!("  {mode}: {}/{} maps", row.maps, self.count);
            }
            row.staircase = if with_boundary > 0 { stairs / with_boundary as f64 } else { f64::NAN };
            row.islands_removed = islands as f64 / row.maps as f64;
            rows.push(row);
        }
        Ok(UpscaleReport { device: resolved, model_size, size: self.size, rows })
    }
}

/// One sample generated on both backends.
#[derive(Debug, Clone, Copy)]
pub struct SampleDiff {
    pub index: u64,
    /// Share of label pixels equal on both.
    pub label_agreement: f64,
    /// Mean absolute difference of the image bytes (0–255).
    pub image_mean_abs_diff: f64,
    /// The mean absolute difference over the CPU image's mean.
    pub image_relative_error: f64,
}

/// What [`compare`] found; displays as a Markdown table and a summary line.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub samples: Vec<SampleDiff>,
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| sample | label pixels equal | image mean abs diff (0-255) | image relative error |")?;
        writeln!(f, "| ---: | ---: | ---: | ---: |")?;
        for s in &self.samples {
            writeln!(f, "| {} | {:.4} | {:.3} | {:.4} |", s.index, s.label_agreement, s.image_mean_abs_diff, s.image_relative_error)?;
        }
        let n = self.samples.len().max(1) as f64;
        let rel = self.samples.iter().map(|s| s.image_relative_error).sum::<f64>() / n;
        writeln!(f, "mean label agreement {:.4}, mean image relative error {rel:.4} over {} samples", self.mean_label_agreement(), self.samples.len())
    }
}

impl Comparison {
    /// Mean over the samples of the share of label pixels equal.
    pub fn mean_label_agreement(&self) -> f64 {
        self.samples.iter().map(|s| s.label_agreement).sum::<f64>() / self.samples.len().max(1) as f64
    }

    /// Mean over the samples of the images' mean absolute difference (0–255).
    pub fn mean_image_mae(&self) -> f64 {
        self.samples.iter().map(|s| s.image_mean_abs_diff).sum::<f64>() / self.samples.len().max(1) as f64
    }
}

/// The differences between two generations of the same samples (`a` the reference).
pub fn diff(a: &[shared::job::Sample], b: &[shared::job::Sample]) -> Comparison {
    let samples = a
        .iter()
        .zip(b)
        .map(|(c, g)| {
            let agree = c.label.data.iter().zip(&g.label.data).filter(|(x, y)| x == y).count() as f64 / c.label.data.len() as f64;
            let diff: f64 = c.image.data.iter().zip(&g.image.data).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / c.image.data.len() as f64;
            let norm: f64 = c.image.data.iter().map(|&x| x as f64).sum::<f64>() / c.image.data.len() as f64;
            SampleDiff { index: c.index, label_agreement: agree, image_mean_abs_diff: diff, image_relative_error: diff / norm.max(1e-9) }
        })
        .collect();
    Comparison { samples }
}

/// Generates samples `0..count` of `spec` on the CPU in f32 and on CUDA device `cuda` in
/// each of `precisions`, and compares each with the CPU's.
#[cfg(feature = "cuda")]
pub fn compare(spec: &RunSpec, count: u64, cuda: usize, precisions: &[Precision]) -> anyhow::Result<Vec<(Precision, Comparison)>> {
    let indices: Vec<u64> = (0..count).collect();
    let reference = RunSpec { pipeline: shared::spec::PipelineSection { precision: Precision::F32, ..spec.pipeline.clone() }, ..spec.clone() };
    let cpu = ddpm_spade_on::<crate::backend::Cpu>(&reference, crate::backend::CpuDevice::default(), Resolved::Cpu)?.generate_timed(&indices).0;
    precisions
        .iter()
        .map(|&p| {
            let spec = RunSpec { pipeline: shared::spec::PipelineSection { precision: p, ..spec.pipeline.clone() }, ..spec.clone() };
            let gpu = ddpm_spade_on::<crate::backend::Gpu>(&spec, burn::backend::cuda::CudaDevice { index: cuda }, Resolved::Cuda(cuda))?.generate_timed(&indices).0;
            Ok((p, diff(&cpu, &gpu)))
        })
        .collect()
}

/// Without CUDA there is nothing to compare against: an error that says how to build it.
#[cfg(not(feature = "cuda"))]
pub fn compare(spec: &RunSpec, count: u64, cuda: usize, precisions: &[Precision]) -> anyhow::Result<Vec<(Precision, Comparison)>> {
    let _ = (spec, count, cuda, precisions);
    bail!("worker bench compare needs a CUDA build (cargo build --release -p worker --features cuda)")
}

/// The bounds a comparison must meet: mean label agreement at least `min_agreement`, mean
/// image difference at most `max_mae` (0–255). Returns what fell short, one line each.
pub fn check_comparison(p: Precision, c: &Comparison, min_agreement: f64, max_mae: f64) -> Vec<String> {
    let mut bad = Vec::new();
    if c.mean_label_agreement() < min_agreement {
        bad.push(format!("{p}: label agreement {:.4} is under {min_agreement}", c.mean_label_agreement()));
    }
    if c.mean_image_mae() > max_mae {
        bad.push(format!("{p}: image mean absolute difference {:.3} is over {max_mae}", c.mean_image_mae()));
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_parse_and_print() {
        assert_eq!("ddpm".parse::<Sampler>(), Ok(Sampler::Ddpm));
        assert_eq!("ddim-50".parse::<Sampler>(), Ok(Sampler::Ddim(50)));
        for bad in ["ddim", "ddim-0", "ddim-x", "plms"] {
            let e = bad.parse::<Sampler>().unwrap_err();
            assert!(e.contains("ddim-N") && e.contains(bad), "{e}");
        }
        assert_eq!(Sampler::Ddim(25).to_string(), "ddim-25");
    }

    /// `bench pipeline CONFIG` times what the spec runs unless told otherwise.
    #[test]
    fn spec_settings_are_what_the_spec_runs() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/local.toml");
        let mut spec = load_spec(&config).unwrap();
        let steps = spec.pipeline.labels.as_ref().unwrap().steps_for(1000);
        assert_eq!(spec_settings(&spec).unwrap(), (Sampler::Ddim(steps), Precision::F32, spec.pipeline.overlap));
        let labels = spec.pipeline.labels.as_mut().unwrap();
        (labels.sampler, labels.steps) = (SamplerKind::Ddim, None);
        assert_eq!(spec_settings(&spec).unwrap().0, Sampler::Ddim(shared::spec::DEFAULT_DDIM_STEPS));
        spec.pipeline.labels.as_mut().unwrap().sampler = SamplerKind::Ddpm;
        (spec.pipeline.precision, spec.pipeline.overlap) = (Precision::Bf16, !spec.pipeline.overlap);
        assert_eq!(spec_settings(&spec).unwrap(), (Sampler::Ddpm, Precision::Bf16, spec.pipeline.overlap));
    }

    #[test]
    fn diff_counts_label_and_image_differences() {
        let s = shared::job::Sample { index: 3, seed: 1, image: shared::RgbImage::new(2, 2), label: shared::LabelMap::new(2, 2, 1), extra: Default::default() };
        let mut other = s.clone();
        other.label.data[0] = 0;
        other.image.data[0] = 8;
        let c = diff(std::slice::from_ref(&s), &[other]);
        assert_eq!(c.samples[0].index, 3);
        assert_eq!(c.samples[0].label_agreement, 0.75);
        assert!((c.samples[0].image_mean_abs_diff - 8.0 / 12.0).abs() < 1e-12);
        let text = c.to_string();
        assert!(text.contains("| 3 | 0.7500 |") && text.contains("over 1 samples"), "{text}");
        let same = diff(std::slice::from_ref(&s), std::slice::from_ref(&s));
        assert_eq!((same.samples[0].label_agreement, same.samples[0].image_mean_abs_diff), (1.0, 0.0));
        // The bounds of `bench compare`: 0.75 agreement and 8/12 MAE.
        assert!(check_comparison(Precision::Bf16, &same, 0.995, 2.0).is_empty());
        let bad = check_comparison(Precision::Bf16, &c, 0.995, 0.5);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].contains("bf16: label agreement 0.7500 is under 0.995") && bad[1].contains("0.667 is over 0.5"), "{bad:?}");
    }
}
