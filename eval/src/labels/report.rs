//! What `labelgen-eval labels` reports: `labels.json`, its notes about sizes, and the
//! table printed for people.

use anyhow::Context;
use serde::Serialize;
use shared::ClassTable;

use super::read::Measured;
use super::LabelOptions;
use crate::stats::{Connectivity, LabelComparison, LabelStats};

/// One set in `labels.json`.
#[derive(Debug, Serialize)]
struct SetReport<'a> {
    /// Where the maps came from.
    source: String,
    /// Maps that were resized before measuring.
    maps_resized: u64,
    #[serde(flatten)]
    stats: &'a LabelStats,
}

/// `labels.json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    classes: Vec<&'a str>,
    min_island: u32,
    connectivity: Connectivity,
    /// `--size`, if given.
    size: Option<u32>,
    /// The size every synthetic map (and with --size every real map) was measured at.
    measured_at: Option<[u32; 2]>,
    notes: Vec<String>,
    distances: &'a LabelComparison,
    real: SetReport<'a>,
    synthetic: SetReport<'a>,
}

/// `labels.json`: both sets' counts and figures, the distances, the notes.
pub(super) fn labels_json(options: &LabelOptions, m: &Measured, distances: &LabelComparison, classes: &ClassTable, notes: &[String]) -> anyhow::Result<Vec<u8>> {
    let report = Report {
        classes: classes.classes.iter().map(|c| c.name.as_str()).collect(),
        min_island: options.min_island,
        connectivity: options.connectivity,
        size: options.size,
        measured_at: m.target.map(|(w, h)| [w, h]),
        notes: notes.to_vec(),
        distances,
        real: SetReport { source: options.real.display().to_string(), maps_resized: m.real_resized, stats: &m.real },
        synthetic: SetReport { source: m.synthetic_source.clone(), maps_resized: m.synthetic_resized, stats: &m.synthetic },
    };
    serde_json::to_vec_pretty(&report).context("serialising labels.json")
}

/// What the reader of labels.json should know about sizes.
pub(super) fn notes(options: &LabelOptions, m: &Measured) -> Vec<String> {
    let mut notes = Vec::new();
    let sizes = |s: &LabelStats| s.sizes.keys().map(|(w, h)| format!("{w}×{h}")).collect::<Vec<_>>().join(", ");
    match (options.size, m.target) {
        (Some(s), _) => notes.push(format!(
            "both sets were measured at {s}×{s} (--size): {} of {} real and {} of {} synthetic maps were resized (block mode shrinking, nearest growing)",
            m.real_resized, m.real.maps, m.synthetic_resized, m.synthetic.maps
        )),
        (None, Some((w, h))) => {
            if m.real.sizes.len() > 1 {
                notes.push(format!(
                    "the real maps come in {} sizes ({}) and were measured as they are; synthetic maps were resized to the most common, {w}×{h}. Pass --size S to measure both at one size",
                    m.real.sizes.len(),
                    sizes(&m.real)
                ));
            }
            if m.synthetic_resized > 0 {
                notes.push(format!(
                    "{} of {} synthetic maps were not {w}×{h} like the real maps and were resized (block mode shrinking, nearest growing) to it, because component sizes scale with resolution",
                    m.synthetic_resized, m.synthetic.maps
                ));
            }
        }
        (None, None) => {}
    }
    notes
}

/// The distances and the figures behind them, for people.
pub(super) fn table(options: &LabelOptions, m: &Measured, d: &LabelComparison, classes: &ClassTable, notes: &[String]) -> String {
    use std::fmt::Write;
    let size = |s: &LabelStats| s.sizes.keys().map(|(w, h)| format!("{w}×{h}")).collect::<Vec<_>>().join(", ");
    let mut t = String::new();
    let _ = writeln!(t, "real:      {} maps ({}) from {}", m.real.maps, size(&m.real), options.real.display());
    let _ = writeln!(t, "synthetic: {} maps ({}) from {}", m.synthetic.maps, size(&m.synthetic), m.synthetic_source);
    for n in notes {
        let _ = writeln!(t, "note: {n}");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "distance (total variation: 0 same, 1 disjoint)      value");
    let _ = writeln!(t, "  class pixel shares                              {:>8.4}", d.share_tv);
    let _ = writeln!(t, "  component sizes ({}-conn., mean over classes)    {:>8.4}", options.connectivity, d.component_size_tv);
    let _ = writeln!(t, "  class adjacency (4-neighbour pairs)             {:>8.4}", d.adjacency_tv);
    let _ = writeln!(t);
    let _ = writeln!(t, "                                      real   synthetic");
    let islands = format!("islands (< {} px) per map", options.min_island);
    let _ = writeln!(t, "  {islands:<30} {:>10.3}  {:>10.3}", d.islands_per_map[0], d.islands_per_map[1]);
    let _ = writeln!(t, "  {:<30} {:>10.3}  {:>10.3}", "ramp-edge pixels (%)", 100.0 * d.ramp_share[0], 100.0 * d.ramp_share[1]);
    let _ = writeln!(t);
    let _ = writeln!(t, "  class            share % real  synthetic   comps/map real  synthetic   size TV");
    let (rs, ss) = (m.real.class_shares(), m.synthetic.class_shares());
    for (c, class) in classes.classes.iter().enumerate() {
        let tv = d.component_size_tv_per_class[c].map_or("-".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            t,
            "  {:<16} {:>12.2}  {:>9.2}   {:>14.2}  {:>9.2}   {:>7}",
            class.name,
            100.0 * rs[c],
            100.0 * ss[c],
            m.real.components_per_map(c),
            m.synthetic.components_per_map(c),
            tv
        );
    }
    t
}
