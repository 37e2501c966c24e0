//! What `labelgen-eval sampling` writes: `sampling.json`, the Markdown table
//! (`sampling.md`, also printed) and a grid of each row's first cleaned maps.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use shared::dataset::grid;
use shared::files::write_atomic;
use shared::{ClassTable, LabelMap};

use super::{Figures, SamplingOptions, SamplingReport};

/// `OUT/sampling.json` and `OUT/sampling.md`.
pub(super) fn write(opts: &SamplingOptions, rep: &SamplingReport) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(rep).context("serialising sampling.json")?;
    for (name, bytes) in [("sampling.json", json), ("sampling.md", rep.table.clone().into_bytes())] {
        let p = opts.out.join(name);
        write_atomic(&p, &bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// A colourised grid of `maps` at `path`.
pub(super) fn write_grid(path: &Path, maps: &[LabelMap], classes: &ClassTable) -> anyhow::Result<()> {
    let images: Vec<_> = maps.iter().map(|m| m.colorize(classes)).collect();
    let cols = (images.len() as f64).sqrt().ceil().max(1.0) as usize;
    write_atomic(path, &grid(&images, cols).to_png()).with_context(|| format!("writing {}", path.display()))
}

/// The table for people: one line per row, each figure as `raw → cleaned`.
pub(super) fn markdown(rep: &SamplingReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} maps per row at {s}×{s} (upscale {}, cleanup open_radius_px {}, min_island_px {}), seed {}, against {} real maps in {}.",
        rep.count,
        rep.upscale,
        rep.open_radius_px,
        rep.min_island_px,
        rep.seed,
        rep.real_maps,
        rep.real.display(),
        s = rep.size
    );
    let _ = writeln!(t, "Real maps: {:.2} islands (< {} px) per map, {:.2} % ramp-edge pixels.", rep.real_islands_per_map, rep.min_island_px, rep.real_ramp_percent);
    let _ = writeln!(t, "Distances are total variation to the real set (0 same, 1 disjoint); each cell is raw → cleaned.");
    let _ = writeln!(t);
    let _ = writeln!(t, "| model | sampler | s/map | class shares | component sizes | adjacency | islands/map | ramp px % | staircase | changed by cleanup % |");
    let _ = writeln!(t, "|---|---|---:|---|---|---|---|---|---|---:|");
    for r in &rep.rows {
        let m = &rep.models[r.model];
        let pair = |f: fn(&Figures) -> String| format!("{} → {}", f(&r.raw), f(&r.cleaned));
        let _ = writeln!(
            t,
            "| {} ({} + {}, {}) | {} | {:.3} | {} | {} | {} | {} | {} | {} | {:.1} |",
            m.name,
            m.encoding,
            m.objective,
            m.schedule,
            r.sampler,
            r.sample_s_per_map,
            pair(|f| format!("{:.3}", f.share_tv)),
            pair(|f| format!("{:.3}", f.component_size_tv)),
            pair(|f| format!("{:.3}", f.adjacency_tv)),
            pair(|f| format!("{:.2}", f.islands_per_map)),
            pair(|f| format!("{:.2}", f.ramp_percent)),
            pair(|f| f.staircase.map_or("-".into(), |s| format!("{s:.2}"))),
            r.cleanup_changed_percent
        );
    }
    t
}
