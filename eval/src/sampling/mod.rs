//! Label quality by label model and sampler (`labelgen-eval sampling`): each model listed
//! (e.g. the paper's gray + ε setting and the default one-hot + x₀, trained on the same
//! data) is sampled with each sampler listed (`ddim-N` at several step counts, and `ddpm`;
//! [`worker::bench::Sampler`], as `worker bench pipeline --samplers` names them),
//! through the pipeline's own label stage ([`worker::ddpm::stage::LabelStage`]: sampling,
//! cleanup with ramp removal for gray models, upscale), and both the raw and the cleaned
//! maps are measured against a real set with [`crate::stats`].
//!
//! Every row samples the same seeds (`shared::sample_seed(seed, i)`, `i < count`), so rows
//! differ only by model and sampler. Maps are measured batch by batch and not held.
//!
//! # Layout
//! - `mod.rs` — [`SamplingOptions`], [`evaluate`], the rows.
//! - `report.rs` — `sampling.json`, the Markdown table (`sampling.md`) and the grids.
//! - `tests.rs` — two tiny models on procedural maps: rows, pairing, errors.

mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use burn::tensor::backend::Backend;
use serde::Serialize;
use shared::spec::LabelUpscale;
use shared::{sample_seed, ClassTable, LabelMap};
use worker::bench::Sampler;
use worker::ddpm::stage::LabelStage;
use worker::ddpm::{DdpmModel, SamplerConfig};

use crate::labels::read::{fit, measure_real};
use crate::stats::{compare, Connectivity, LabelComparison, LabelStats, StatsOptions};

/// Cleaned maps kept per row for its grid.
pub const GRID_MAPS: usize = 64;

/// What to sample and how to measure it (the flags of `labelgen-eval sampling`).
#[derive(Debug, Clone)]
pub struct SamplingOptions {
    /// The real dataset directory (`DIR/labels/*.png`): the models' training data.
    pub real: PathBuf,
    /// (name, location) of each label model, in row order.
    pub models: Vec<(String, String)>,
    /// `ddim-N` (η from [`SamplingOptions::eta`]) or `ddpm` (all of the model's timesteps).
    pub samplers: Vec<Sampler>,
    /// Run `ddpm` for every model, not only the first (it costs `T` network evaluations
    /// per map).
    pub ddpm_all: bool,
    /// DDIM η.
    pub eta: f64,
    /// Maps per row.
    pub count: u64,
    /// Maps per network batch.
    pub batch: usize,
    pub seed: u64,
    pub upscale: LabelUpscale,
    /// Side the stage upscales to and everything is measured at; default the real maps'
    /// most common size.
    pub size: Option<u32>,
    /// The cleanup's settings (output pixels), as in `[pipeline.cleanup]`.
    pub open_radius_px: u32,
    /// Also the island threshold of the statistics, which are measured at the output size.
    pub min_island_px: u32,
    pub connectivity: Connectivity,
    /// The precision the models sample in (the spec's `pipeline.precision`): what is
    /// measured is what a run writes.
    pub precision: worker::precision::Precision,
    pub out: PathBuf,
}

/// The label model of a row.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub uri: String,
    pub encoding: String,
    pub objective: String,
    pub schedule: String,
    pub timesteps: usize,
    pub size: u32,
    pub train_steps: u64,
}

/// The figures of one set of maps against the real set.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub share_tv: f64,
    pub component_size_tv: f64,
    pub adjacency_tv: f64,
    pub islands_per_map: f64,
    /// Ramp-edge pixels, % of the class pixels.
    pub ramp_percent: f64,
    /// Share of class boundaries on the model's pixel grid (1.0: every border a staircase
    /// step of the upscale); `None` when the output is not a whole multiple (2 or more) of
    /// the model's size, or no map has a border.
    pub staircase: Option<f64>,
}

/// One (model, sampler) row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Index into [`SamplingReport::models`].
    pub model: usize,
    /// `ddim-10` … `ddpm-1000`.
    pub sampler: String,
    /// Network evaluations per map.
    pub steps: usize,
    /// Sampling seconds per map (network and host-side noise).
    pub sample_s_per_map: f64,
    /// Cleanup milliseconds per map (with `nearest`, the upscale too; with `smooth` it is
    /// part of sampling).
    pub cleanup_ms_per_map: f64,
    /// Pixels the cleanup changed, % of the raw maps' pixels.
    pub cleanup_changed_percent: f64,
    /// The sampler's maps (nearest-upscaled to the output size when they are smaller).
    pub raw: Figures,
    /// After the cleanup.
    pub cleaned: Figures,
    #[serde(skip)]
    pub distances: LabelComparison,
}

/// Everything [`evaluate`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct SamplingReport {
    pub real: PathBuf,
    pub real_maps: u64,
    pub real_islands_per_map: f64,
    pub real_ramp_percent: f64,
    pub size: u32,
    pub count: u64,
    pub seed: u64,
    pub eta: f64,
    pub upscale: String,
    pub precision: String,
    pub open_radius_px: u32,
    pub min_island_px: u32,
    pub models: Vec<ModelInfo>,
    pub rows: Vec<Row>,
    #[serde(skip)]
    pub grids: Vec<PathBuf>,
    #[serde(skip)]
    pub table: String,
}

/// Checks the options that need no model (flags, before any work).
pub fn check(opts: &SamplingOptions) -> anyhow::Result<()> {
    anyhow::ensure!(!opts.models.is_empty(), "--model: give at least one label model");
    anyhow::ensure!(!opts.samplers.is_empty(), "--samplers: give at least one (e.g. ddim-10,ddim-20,ddim-50,ddpm)");
    worker::args::at_least_one(&[("--count", opts.count), ("--batch", opts.batch as u64)])?;
    anyhow::ensure!((0.0..=1.0).contains(&opts.eta), "--eta {}: must be between 0 and 1", opts.eta);
    if let Some(s) = opts.size {
        anyhow::ensure!((1..=8192).contains(&s), "--size {s}: must be between 1 and 8192 pixels");
    }
    let mut names: Vec<&str> = opts.models.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!("--model: the name {:?} is given twice (use NAME=URI to name them apart)", w[0]);
    }
    Ok(())
}

/// Samples and measures every row on backend `B`, and writes `OUT/sampling.json`,
/// `OUT/sampling.md` and one grid per row under `OUT/grids/`. `on_row(done, total)` after
/// each row.
pub fn evaluate<B: Backend>(opts: &SamplingOptions, device: &B::Device, on_row: &mut dyn FnMut(usize, usize)) -> anyhow::Result<SamplingReport> {
    check(opts)?;
    // Load every model first, so a bad location fails before hours of sampling. The real
    // maps are read with the models' class table (model.json records it), so they must
    // share one.
    let mut models = Vec::with_capacity(opts.models.len());
    for (name, uri) in &opts.models {
        let m = DdpmModel::<B>::load(uri, device).with_context(|| format!("--model {name}={uri}"))?.with_precision(opts.precision);
        let codes = |t: &ClassTable| t.classes.iter().map(|c| c.code).collect::<Vec<_>>();
        if let Some((first, first_uri, f)) = models.first() {
            let f: &DdpmModel<B> = f;
            anyhow::ensure!(
                codes(m.classes()) == codes(f.classes()),
                "--model {name}={uri}: its class codes {:?} are not those of --model {first}={first_uri} {:?} (the models are compared on one real set, read with their class table)",
                codes(m.classes()),
                codes(f.classes())
            );
        }
        models.push((name.clone(), uri.clone(), m));
    }
    let classes = models.first().map(|(_, _, m)| m.classes().clone()).context("no --model given")?;
    let k = classes.len();
    let stats_opts = StatsOptions { min_island: opts.min_island_px, connectivity: opts.connectivity };
    let fixed = opts.size.map(|s| (s, s));
    let (real, _) = measure_real(&opts.real, fixed, &classes, stats_opts).with_context(|| format!("--real {} (read with the models' class table)", opts.real.display()))?;
    let size = match opts.size {
        Some(s) => s,
        None => match real.most_common_size() {
            Some((w, h)) if w == h => w,
            Some((w, h)) => anyhow::bail!("--real {}: the maps are {w}×{h}, not square; pass --size S", opts.real.display()),
            None => anyhow::bail!("--real {}: no label maps", opts.real.display()),
        },
    };
    let mut plan = Vec::new();
    for (mi, (name, uri, m)) in models.iter().enumerate() {
        for &s in &opts.samplers {
            if s == Sampler::Ddpm && mi > 0 && !opts.ddpm_all {
                continue;
            }
            let sampler = match s {
                Sampler::Ddim(n) => SamplerConfig::ddim(n, opts.eta),
                Sampler::Ddpm => SamplerConfig::ddpm(),
            };
            let stage = LabelStage::new(&m.meta, sampler, opts.upscale, size, opts.open_radius_px, opts.min_island_px)
                .with_context(|| format!("--model {name}={uri} with --samplers {s}, --upscale {}, --size {size}", opts.upscale))?;
            plan.push((mi, s, stage));
        }
    }

    let grid_dir = opts.out.join("grids");
    std::fs::create_dir_all(&grid_dir).with_context(|| format!("--out {}: cannot create {}", opts.out.display(), grid_dir.display()))?;
    let mut rows = Vec::with_capacity(plan.len());
    let mut grids = Vec::with_capacity(plan.len());
    for (done, (mi, choice, stage)) in plan.iter().enumerate() {
        let model = &models[*mi].2;
        let steps = stage.steps(model.meta.timesteps);
        let sampler = match choice {
            Sampler::Ddim(_) => format!("ddim-{steps}"),
            Sampler::Ddpm => format!("ddpm-{steps}"),
        };
        let bar = shared::progress::bar(opts.count, "maps");
        bar.set_message(format!("{} {sampler}", models[*mi].0));
        let (mut raw, mut cleaned) = (LabelStats::new(k, stats_opts), LabelStats::new(k, stats_opts));
        let (mut raw_stairs, mut clean_stairs) = (Staircase::default(), Staircase::default());
        let (mut sample_t, mut cleanup_t) = (Duration::ZERO, Duration::ZERO);
        let (mut changed, mut pixels) = (0u64, 0u64);
        let mut kept: Vec<LabelMap> = Vec::new();
        let indices: Vec<u64> = (0..opts.count).collect();
        for chunk in indices.chunks(opts.batch) {
            let seeds: Vec<u64> = chunk.iter().map(|&i| sample_seed(opts.seed, i)).collect();
            let out = stage.run(model, &seeds);
            sample_t += out.sample;
            cleanup_t += out.cleanup;
            for (r, (c, rep)) in out.raw.iter().zip(&out.cleaned) {
                // The cleanup's report counts pixels of the map it was given.
                pixels += u64::from(r.width) * u64::from(r.height);
                let r = fit(r.clone(), Some((size, size)), &Default::default());
                raw.add(&r);
                cleaned.add(c);
                raw_stairs.add(&r, model.size(), size);
                clean_stairs.add(c, model.size(), size);
                changed += rep.pixels_changed;
                if kept.len() < GRID_MAPS {
                    kept.push(c.clone());
                }
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let n = opts.count as f64;
        let (dr, dc) = (compare(&real, &raw), compare(&real, &cleaned));
        let grid_path = grid_dir.join(format!("{}-{sampler}.png", models[*mi].0));
        report::write_grid(&grid_path, &kept, &classes)?;
        grids.push(grid_path);
        rows.push(Row {
            model: *mi,
            sampler,
            steps,
            sample_s_per_map: sample_t.as_secs_f64() / n,
            cleanup_ms_per_map: 1e3 * cleanup_t.as_secs_f64() / n,
            cleanup_changed_percent: 100.0 * changed as f64 / pixels.max(1) as f64,
            raw: figures(&dr, raw_stairs.share()),
            cleaned: figures(&dc, clean_stairs.share()),
            distances: dc,
        });
        on_row(done + 1, plan.len());
    }

    let infos = models
        .iter()
        .map(|(name, uri, m)| ModelInfo {
            name: name.clone(),
            uri: uri.clone(),
            encoding: m.meta.encoding.to_string(),
            objective: m.meta.objective.to_string(),
            schedule: m.meta.schedule.to_string(),
            timesteps: m.meta.timesteps,
            size: m.size(),
            train_steps: m.meta.steps,
        })
        .collect();
    let mut rep = SamplingReport {
        real: opts.real.clone(),
        real_maps: real.maps,
        real_islands_per_map: real.islands_per_map(),
        real_ramp_percent: 100.0 * real.ramp_share(),
        size,
        count: opts.count,
        seed: opts.seed,
        eta: opts.eta,
        upscale: opts.upscale.to_string(),
        precision: opts.precision.to_string(),
        open_radius_px: opts.open_radius_px,
        min_island_px: opts.min_island_px,
        models: infos,
        rows,
        grids,
        table: String::new(),
    };
    rep.table = report::markdown(&rep);
    report::write(opts, &rep)?;
    Ok(rep)
}

fn figures(d: &LabelComparison, staircase: Option<f64>) -> Figures {
    Figures {
        share_tv: d.share_tv,
        component_size_tv: d.component_size_tv,
        adjacency_tv: d.adjacency_tv,
        islands_per_map: d.islands_per_map[1],
        ramp_percent: 100.0 * d.ramp_share[1],
        staircase,
    }
}

/// Mean [`LabelMap::grid_boundary_share`] over the maps that have a boundary, on the grid
/// of the model's pixels (`out / model` output pixels each).
#[derive(Debug, Default)]
struct Staircase {
    sum: f64,
    maps: u64,
}

impl Staircase {
    fn add(&mut self, map: &LabelMap, model: u32, out: u32) {
        // Only a whole upscale factor puts the model's pixels on a grid of output pixels.
        if model == 0 || !out.is_multiple_of(model) {
            return;
        }
        if let Some(s) = map.grid_boundary_share(out / model) {
            self.sum += s;
            self.maps += 1;
        }
    }

    fn share(&self) -> Option<f64> {
        (self.maps > 0).then(|| self.sum / self.maps as f64)
    }
}

#[cfg(test)]
mod tests;
