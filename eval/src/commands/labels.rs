//! `labelgen-eval labels`: label-quality statistics of a run's label maps against a real
//! dataset's (see [`shared::stats`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::{self, compare, Connectivity, LabelComparison, LabelStats, PlotSet, StatsOptions};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use shared::dataset::Dataset;
use shared::storage::{Store, StoreUrl};
use shared::{ClassTable, LabelMap};

/// Compare a run's label maps with a real dataset's: class shares, component sizes,
/// class adjacency, islands, ramp edges; writes labels.json and plots.
///
/// Do the generated maps have the real class mix, the real sizes of fields and buildings,
/// the real neighbourhoods, and no more specks or seams than real masks?
///
/// Reads every label map of --real (DIR/labels/*.png, raw AI Hub codes, as `worker
/// procedural` writes and the AI Hub set ships) and every label map listed in the run's
/// manifest.jsonl (plain PNGs or WebDataset tar members), streaming them rather than
/// holding them, and measures on each set, over all its maps (ignore pixels, code 100,
/// take part in nothing):
///
/// - class shares: each class's share of the class pixels;
///
/// - component sizes: per class, how many connected components fall in each size bin 1,
///   2-3, 4-7, 8-15, … pixels (log2 bins);
///
/// - class adjacency: per pair of classes, the share of 4-neighbour pixel pairs that have
///   one class on one side and the other on the other side;
///
/// - islands: components under --min-island pixels, per map;
///
/// - ramp edges: pixels in seams (1-2 px) of a third class where two classes meet, the
///   mark of a gray-encoded model's rounding, as a share of the class pixels.
///
/// Distances are total variation (TV: half the L1 distance of two distributions; 0 the
/// same, 1 nothing in common): of the class shares, of the adjacency matrices, and of each
/// class's component-size histogram (their mean over the classes either set has).
///
/// Component sizes scale with resolution, so both sets are measured at one size: with
/// --size S both are resized (nearest) to S × S; without it, synthetic maps whose size
/// differs from the real maps' (their most common size) are resized to it, and
/// labels.json says so.
///
/// Writes OUT/labels.json (both sets' counts and figures, the distances, notes),
/// OUT/shares.png (bar chart), OUT/adjacency.png (the two matrices as heat maps) and
/// OUT/components.png (size histograms per class; real solid, synthetic hatched), and
/// prints the distances.
///
/// Example: labelgen-eval labels --real data/aihub-val --synthetic s3://bucket/runs/ddpm-7 --out eval/ddpm-7
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The real dataset directory: DIR/labels/NAME.png, 8-bit gray PNGs of raw AI Hub codes
    /// (DIR/images is not needed).
    #[arg(long, value_name = "DIR")]
    pub real: PathBuf,

    /// The run to evaluate: its directory holding manifest.jsonl, as a local path,
    /// file:///absolute/path or s3://bucket/prefix/RUN (credentials from the AWS_*
    /// variables). Every label path in manifest.jsonl is read. A local directory without
    /// manifest.jsonl but with labels/*.png (`worker sample-labels` output) or *.png
    /// (`worker cleanup` output) is read as it is: that measures label maps before and
    /// after cleanup.
    #[arg(long, value_name = "RUN_URI")]
    pub synthetic: String,

    /// Output directory for labels.json and the plots (created if missing; files of the
    /// same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Components with fewer pixels than this count as islands (what `worker cleanup
    /// --min-island` removes; 0 or 1: none do). Counted after any resize.
    #[arg(long, value_name = "PX", default_value_t = 16)]
    pub min_island: u32,

    /// Resize both sets' maps to S × S (nearest) before measuring. Default: the real maps
    /// as they are, and the synthetic maps resized to the real maps' most common size
    /// where they differ.
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,

    /// Component connectivity: 8 (pixels touching at a corner join, as in `worker
    /// cleanup`) or 4 (sides only). The adjacency always uses the 4 side neighbours.
    #[arg(long, value_name = "4|8", default_value_t = Connectivity::Eight)]
    pub connectivity: Connectivity,
}

/// Maps decoded and measured at once (their bytes are held until then).
const BATCH: usize = 64;

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

/// Both sets' statistics and what was done to get them.
struct Measured {
    real: LabelStats,
    synthetic: LabelStats,
    real_resized: u64,
    synthetic_resized: u64,
    target: Option<(u32, u32)>,
    synthetic_source: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(s) = args.size {
        if !(1..=8192).contains(&s) {
            anyhow::bail!("--size {s}: must be between 1 and 8192 pixels");
        }
    }
    let classes = ClassTable::ai_hub();
    let opts = StatsOptions { min_island: args.min_island, connectivity: args.connectivity };
    let m = measure(&args, &classes, opts)?;
    let distances = compare(&m.real, &m.synthetic);
    let notes = notes(&args, &m);
    let report = Report {
        classes: classes.classes.iter().map(|c| c.name.as_str()).collect(),
        min_island: args.min_island,
        connectivity: args.connectivity,
        size: args.size,
        measured_at: m.target.map(|(w, h)| [w, h]),
        notes: notes.clone(),
        distances: &distances,
        real: SetReport { source: args.real.display().to_string(), maps_resized: m.real_resized, stats: &m.real },
        synthetic: SetReport { source: m.synthetic_source.clone(), maps_resized: m.synthetic_resized, stats: &m.synthetic },
    };

    std::fs::create_dir_all(&args.out).with_context(|| format!("--out {}: cannot create the directory", args.out.display()))?;
    let json = serde_json::to_vec_pretty(&report).context("serialising labels.json")?;
    write_atomic(&args.out.join("labels.json"), &json)?;
    let (r, s) = (PlotSet { name: "REAL", stats: &m.real }, PlotSet { name: "SYNTHETIC", stats: &m.synthetic });
    let plots =
        [("shares.png", stats::share_plot(r, s, &classes)), ("adjacency.png", stats::adjacency_plot(r, s, &classes)), ("components.png", stats::component_plot(r, s, &classes))];
    for (name, img) in &plots {
        write_atomic(&args.out.join(name), &img.to_png())?;
    }

    print!("{}", table(&args, &m, &distances, &classes, &notes));
    println!("wrote {} and {}", args.out.join("labels.json").display(), plots.iter().map(|(n, _)| args.out.join(n).display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &Args, classes: &ClassTable, opts: StatsOptions) -> anyhow::Result<Measured> {
    let k = classes.len();
    let fixed = args.size.map(|s| (s, s));

    // Real: the dataset's labels, in parallel, one map per task at a time.
    let ds = Dataset::open(&args.real, classes.clone(), true).with_context(|| format!("--real {}", args.real.display()))?;
    let bar = progress(ds.len() as u64, "real");
    let resized = AtomicU64::new(0);
    let real = ds
        .stems
        .par_iter()
        .map(|stem| -> anyhow::Result<LabelStats> {
            let map = fit(ds.label(stem, None)?, fixed, &resized);
            let mut s = LabelStats::new(k, opts);
            s.add(&map);
            bar.inc(1);
            Ok(s)
        })
        .try_reduce(
            || LabelStats::new(k, opts),
            |mut a, b| {
                a.merge(&b);
                Ok(a)
            },
        )
        .with_context(|| format!("--real {}", args.real.display()))?;
    bar.finish_and_clear();
    let real_resized = resized.into_inner();
    let target = fixed.or_else(|| real.most_common_size());

    // Synthetic: the run's manifest (or a local directory's labels/*.png), then its label
    // files in batches.
    let mut listed: Option<Vec<String>> = None;
    if let Ok(StoreUrl::Local { dir }) = StoreUrl::parse(&args.synthetic) {
        if !dir.is_dir() {
            anyhow::bail!("--synthetic {}: no such directory (expected a run directory holding manifest.jsonl, or a directory with labels/*.png or *.png)", args.synthetic);
        }
        if !dir.join(shared::manifest::layout::MANIFEST_JSONL).exists() {
            if dir.join("labels").is_dir() {
                listed = Some(label_pngs(&dir, "labels").with_context(|| format!("--synthetic {}", args.synthetic))?);
            } else if let Ok(names) = label_pngs(&dir, "") {
                listed = Some(names);
            }
        }
    }
    let store = Store::open(&args.synthetic).with_context(|| format!("--synthetic {}", args.synthetic))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the I/O runtime")?;
    let resized = AtomicU64::new(0);
    let synthetic = rt
        .block_on(async {
            let paths = match listed {
                Some(paths) => paths,
                None => shared::manifest::read_manifest(&store).await?.into_iter().map(|l| l.label).collect(),
            };
            let bar = progress(paths.len() as u64, "synthetic");
            let mut total = LabelStats::new(k, opts);
            let mut batch: Vec<(String, Vec<u8>)> = Vec::with_capacity(BATCH);
            shared::manifest::read_files(&store, &paths, |origin, bytes| -> anyhow::Result<()> {
                batch.push((origin.to_string(), bytes));
                if batch.len() >= BATCH {
                    add_batch(&mut total, &mut batch, classes, opts, target, &resized, &bar)?;
                }
                Ok(())
            })
            .await?;
            add_batch(&mut total, &mut batch, classes, opts, target, &resized, &bar)?;
            bar.finish_and_clear();
            anyhow::Ok(total)
        })
        .with_context(|| format!("--synthetic {}", args.synthetic))?;
    Ok(Measured { real, synthetic, real_resized, synthetic_resized: resized.into_inner(), target, synthetic_source: store.display().to_string() })
}

/// Decodes and measures `batch` (origin, PNG bytes) in parallel, adds it to `total`, and
/// empties it.
fn add_batch(
    total: &mut LabelStats,
    batch: &mut Vec<(String, Vec<u8>)>,
    classes: &ClassTable,
    opts: StatsOptions,
    target: Option<(u32, u32)>,
    resized: &AtomicU64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let part = batch
        .par_iter()
        .map(|(origin, bytes)| -> anyhow::Result<LabelStats> {
            let map = LabelMap::from_png(bytes, classes, origin).context("unreadable label map")?;
            let mut s = LabelStats::new(classes.len(), opts);
            s.add(&fit(map, target, resized));
            bar.inc(1);
            Ok(s)
        })
        .try_reduce(
            || LabelStats::new(classes.len(), opts),
            |mut a, b| {
                a.merge(&b);
                Ok(a)
            },
        )?;
    total.merge(&part);
    batch.clear();
    Ok(())
}

/// `map` resized (nearest) to `target` if it differs; counts the resizes.
fn fit(map: LabelMap, target: Option<(u32, u32)>, resized: &AtomicU64) -> LabelMap {
    match target {
        Some((w, h)) if (w, h) != (map.width, map.height) => {
            resized.fetch_add(1, Ordering::Relaxed);
            map.resize_nearest(w, h)
        }
        _ => map,
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} maps  {{per_sec}}  ETA {{eta}}"))
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// What the reader of labels.json should know about sizes.
fn notes(args: &Args, m: &Measured) -> Vec<String> {
    let mut notes = Vec::new();
    let sizes = |s: &LabelStats| s.sizes.keys().map(|(w, h)| format!("{w}×{h}")).collect::<Vec<_>>().join(", ");
    match (args.size, m.target) {
        (Some(s), _) => notes.push(format!(
            "both sets were measured at {s}×{s} (--size): {} of {} real and {} of {} synthetic maps were resized (nearest)",
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
                    "{} of {} synthetic maps were not {w}×{h} like the real maps and were resized (nearest) to it, because component sizes scale with resolution",
                    m.synthetic_resized, m.synthetic.maps
                ));
            }
        }
        (None, None) => {}
    }
    notes
}

/// The distances and the figures behind them, for people.
fn table(args: &Args, m: &Measured, d: &LabelComparison, classes: &ClassTable, notes: &[String]) -> String {
    use std::fmt::Write;
    let size = |s: &LabelStats| s.sizes.keys().map(|(w, h)| format!("{w}×{h}")).collect::<Vec<_>>().join(", ");
    let mut t = String::new();
    let _ = writeln!(t, "real:      {} maps ({}) from {}", m.real.maps, size(&m.real), args.real.display());
    let _ = writeln!(t, "synthetic: {} maps ({}) from {}", m.synthetic.maps, size(&m.synthetic), m.synthetic_source);
    for n in notes {
        let _ = writeln!(t, "note: {n}");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "distance (total variation: 0 same, 1 disjoint)      value");
    let _ = writeln!(t, "  class pixel shares                              {:>8.4}", d.share_tv);
    let _ = writeln!(t, "  component sizes ({}-conn., mean over classes)    {:>8.4}", args.connectivity, d.component_size_tv);
    let _ = writeln!(t, "  class adjacency (4-neighbour pairs)             {:>8.4}", d.adjacency_tv);
    let _ = writeln!(t);
    let _ = writeln!(t, "                                      real   synthetic");
    let islands = format!("islands (< {} px) per map", args.min_island);
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

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// `SUB/NAME.png` (or `NAME.png` when `sub` is empty) for every PNG in `dir/SUB` (the
/// `labels/` of a `worker sample-labels` output, or a `worker cleanup` output), sorted;
/// an error when there is none.
fn label_pngs(dir: &Path, sub: &str) -> anyhow::Result<Vec<String>> {
    let from = if sub.is_empty() { dir.to_path_buf() } else { dir.join(sub) };
    let mut names: Vec<String> = std::fs::read_dir(&from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".png"))
        .map(|n| if sub.is_empty() { n } else { format!("{sub}/{n}") })
        .collect();
    anyhow::ensure!(!names.is_empty(), "{}: no .png label maps (and no manifest.jsonl in {})", from.display(), dir.display());
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::procedural::{generate_labels, ClassShares};
    use shared::RgbImage;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("labelgen-eval-labels-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `dir/labels/NAME.png` for each map.
    fn write_dataset(dir: &Path, maps: &[LabelMap]) {
        let classes = ClassTable::ai_hub();
        std::fs::create_dir_all(dir.join("labels")).unwrap();
        for (i, m) in maps.iter().enumerate() {
            std::fs::write(dir.join(format!("labels/{i:06}.png")), m.to_png(&classes)).unwrap();
        }
    }

    /// A run directory: the maps as `data/000000/0/KEY.label.png` and a manifest.jsonl
    /// listing them.
    fn write_run(dir: &Path, maps: &[LabelMap]) {
        let classes = ClassTable::ai_hub();
        std::fs::create_dir_all(dir.join("data/000000/0")).unwrap();
        let mut manifest = String::new();
        for (i, m) in maps.iter().enumerate() {
            let rel = format!("data/000000/0/{i:08}.label.png");
            std::fs::write(dir.join(&rel), m.to_png(&classes)).unwrap();
            let image = rel.replace(".label", "");
            manifest.push_str(&shared::manifest::ManifestLine::for_files(i as u64, &format!("{i:08}"), &image, &rel).to_jsonl());
        }
        std::fs::write(dir.join("manifest.jsonl"), manifest).unwrap();
    }

    fn args(real: &Path, run: &Path, out: &Path) -> Args {
        Args { real: real.to_path_buf(), synthetic: run.display().to_string(), out: out.to_path_buf(), min_island: 16, size: None, connectivity: Connectivity::Eight }
    }

    fn read_json(out: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("labels.json")).unwrap()).unwrap()
    }

    #[test]
    fn eval_labels_identical_sets_are_at_zero_and_islands_are_found() {
        let dir = temp_dir("cmp");
        let maps: Vec<LabelMap> = (0..4).map(|i| generate_labels(40 + i, 48, &ClassShares::default())).collect();
        let (real, same, noisy) = (dir.join("real"), dir.join("run-same"), dir.join("run-noisy"));
        write_dataset(&real, &maps);
        write_run(&same, &maps);

        let out = dir.join("out-same");
        assert_eq!(run(args(&real, &same, &out)).unwrap(), ExitCode::SUCCESS);
        let j = read_json(&out);
        for key in ["share_tv", "component_size_tv", "adjacency_tv"] {
            assert_eq!(j["distances"][key], 0.0, "{key}: {}", j["distances"]);
        }
        assert_eq!(j["distances"]["islands_per_map"][0], j["distances"]["islands_per_map"][1]);
        assert_eq!((j["real"]["maps"].as_u64(), j["synthetic"]["maps"].as_u64()), (Some(4), Some(4)));
        assert_eq!(j["real"]["class_pixels"], j["synthetic"]["class_pixels"]);
        assert_eq!(j["classes"][0], "building");
        assert!(j["notes"].as_array().unwrap().is_empty(), "{}", j["notes"]);
        // The same maps as a `sample-labels` output (labels/*.png) and as a `cleanup`
        // output (*.png), without a manifest.
        let flat = dir.join("flat");
        std::fs::create_dir_all(&flat).unwrap();
        for (i, m) in maps.iter().enumerate() {
            std::fs::write(flat.join(format!("{i:06}.png")), m.to_png(&ClassTable::ai_hub())).unwrap();
        }
        for (tag, synthetic) in [("dataset", &real), ("flat", &flat)] {
            let out = dir.join(format!("out-{tag}"));
            run(args(&real, synthetic, &out)).unwrap();
            let j = read_json(&out);
            assert_eq!((j["distances"]["share_tv"].as_f64(), j["synthetic"]["maps"].as_u64()), (Some(0.0), Some(4)), "{tag}");
        }
        for name in ["shares.png", "adjacency.png", "components.png"] {
            let img = RgbImage::from_png(&std::fs::read(out.join(name)).unwrap(), name).unwrap();
            assert!(img.width > 300 && img.height > 200, "{name}: {}×{}", img.width, img.height);
        }

        // The same maps with 5 planted single-pixel islands each (building in forest-free
        // spots: on pixels whose 8 neighbours all share one other class).
        let mut planted = 0u64;
        let noisy_maps: Vec<LabelMap> = maps
            .iter()
            .map(|m| {
                let mut m = m.clone();
                let mut n = 0;
                'scan: for y in (2..46).step_by(7) {
                    for x in (2..46).step_by(5) {
                        let c = m.get(x, y);
                        let ring = [(x - 1, y - 1), (x, y - 1), (x + 1, y - 1), (x - 1, y), (x + 1, y), (x - 1, y + 1), (x, y + 1), (x + 1, y + 1)];
                        if ring.iter().all(|&(a, b)| m.get(a, b) == c) {
                            m.set(x, y, if c == 6 { 7 } else { 6 });
                            n += 1;
                            if n == 5 {
                                break 'scan;
                            }
                        }
                    }
                }
                planted += n;
                m
            })
            .collect();
        assert!(planted >= 10, "only {planted} islands planted");
        write_run(&noisy, &noisy_maps);
        let out = dir.join("out-noisy");
        run(args(&real, &noisy, &out)).unwrap();
        let j = read_json(&out);
        let d = &j["distances"];
        assert!(d["component_size_tv"].as_f64().unwrap() > 0.0 && d["adjacency_tv"].as_f64().unwrap() > 0.0 && d["share_tv"].as_f64().unwrap() > 0.0, "{d}");
        let islands = |set: &str| j[set]["islands"].as_u64().unwrap();
        assert!(islands("synthetic") >= islands("real") + planted, "{} real, {} synthetic, {planted} planted", islands("real"), islands("synthetic"));

        // Synthetic maps of another size are measured at the real size, and a note says so.
        let big: Vec<LabelMap> = maps.iter().map(|m| m.resize_nearest(96, 96)).collect();
        let run_big = dir.join("run-big");
        write_run(&run_big, &big);
        let out = dir.join("out-big");
        run(args(&real, &run_big, &out)).unwrap();
        let j = read_json(&out);
        assert_eq!(j["distances"]["share_tv"], 0.0, "a 2× nearest upscale shrinks back exactly");
        assert_eq!(j["synthetic"]["maps_resized"], 4);
        assert_eq!(j["measured_at"], serde_json::json!([48, 48]));
        assert!(j["notes"][0].as_str().unwrap().contains("resized"), "{}", j["notes"]);
        // With --size both are brought to it.
        let mut a = args(&real, &run_big, &dir.join("out-size"));
        a.size = Some(24);
        run(a).unwrap();
        let j = read_json(&dir.join("out-size"));
        assert_eq!((j["real"]["maps_resized"].as_u64(), j["synthetic"]["maps_resized"].as_u64()), (Some(4), Some(4)));
        assert_eq!(j["real"]["sizes"], serde_json::json!([{"width": 24, "height": 24, "maps": 4}]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn eval_labels_errors_name_the_file_and_the_problem() {
        let dir = temp_dir("err");
        let maps = vec![generate_labels(1, 16, &ClassShares::default())];
        let (real, run_dir, out) = (dir.join("real"), dir.join("run"), dir.join("out"));
        write_dataset(&real, &maps);
        std::fs::create_dir_all(&run_dir).unwrap();

        let e = format!("{:#}", run(args(&real, &run_dir, &out)).unwrap_err());
        assert!(e.contains("manifest.jsonl") && e.contains("missing") && e.contains("not a finished run directory"), "{e}");

        let e = format!("{:#}", run(args(&real, &dir.join("nope"), &out)).unwrap_err());
        assert!(e.contains("nope") && e.contains("no such directory"), "{e}");

        write_run(&run_dir, &maps);
        std::fs::write(run_dir.join("data/000000/0/00000000.label.png"), b"garbage").unwrap();
        let e = format!("{:#}", run(args(&real, &run_dir, &out)).unwrap_err());
        assert!(e.contains("00000000.label.png") && e.contains("unreadable label map") && e.contains("PNG"), "{e}");

        std::fs::remove_file(run_dir.join("data/000000/0/00000000.label.png")).unwrap();
        let e = format!("{:#}", run(args(&real, &run_dir, &out)).unwrap_err());
        assert!(e.contains("00000000.label.png") && e.contains("missing"), "{e}");

        let e = format!("{:#}", run(args(&dir.join("no-real"), &run_dir, &out)).unwrap_err());
        assert!(e.contains("--real") && e.contains("no-real"), "{e}");

        let mut a = args(&real, &run_dir, &out);
        a.size = Some(0);
        assert!(run(a).unwrap_err().to_string().contains("--size 0"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
