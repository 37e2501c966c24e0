//! `worker cleanup`: cleans a directory of raw label maps (see [`shared::cleanup`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use shared::cleanup::{cleanup, decode_raw_png, CleanupOptions, CleanupReport, UNKNOWN_INDEX};
use shared::dataset::grid;
use shared::{ClassTable, LabelMap, RgbImage};

/// Clean up generated label maps: replace unknown codes, thin strips, "ramp" seams and
/// small islands, then optionally upscale.
///
/// Reads every `*.png` in --in: 8-bit grayscale PNGs of raw AI Hub codes (10 building,
/// 20 parking lot, 30 road, 40 street trees, 50 paddy, 60 dry field, 70 forest, 80 bare
/// land, 100 ignore). Any other value — what a model with the gray encoding produces
/// between two class levels — is "unknown" and gets replaced.
///
/// Each map goes through passes of: mark (unknown pixels; pixels the per-class opening
/// removes; ramp strips of at most 2 pixels of one class between two others; 8-connected
/// components under --min-island pixels), then fill every marked pixel with the most
/// frequent label among its unmarked 8-neighbours, fronts growing inward (ties: the lower
/// class index; ignore only where no class is reachable). Passes repeat until the map
/// settles and no component under --min-island is left (a map holding a single component
/// keeps it). The result is deterministic, and cleaning it again changes nothing.
///
/// Writes, for each input NAME.png:
///   OUT/NAME.png            the cleaned map (same format: raw codes, 8-bit gray)
///   OUT/previews/NAME.png   before | after, colourised (unknown pixels magenta)
/// and OUT/cleanup.json: the options, a report per map and totals. Files are written to a
/// temporary name and renamed, so a reader never sees half a file.
///
/// Example: worker cleanup --in samples/raw --out samples/clean --size 512
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Directory of raw label PNGs (every *.png directly inside it is read).
    #[arg(long = "in", value_name = "DIR")]
    pub input: PathBuf,

    /// Output directory (created if missing; files of the same names are replaced). Must
    /// not be --in, whose raw maps would be overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Upscale the cleaned maps to S × S pixels, nearest neighbour (e.g. 512 for the image
    /// generator). Default: keep each map's size.
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,

    /// Radius R of the opening's square structuring element, (2R+1) × (2R+1): features
    /// narrower than 2R+1 pixels are replaced. 0 turns the opening off.
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub open_radius: u32,

    /// Components (8-connected) with fewer pixels than this are merged into their
    /// surroundings. 0 or 1 turns the island rule off.
    #[arg(long, value_name = "PX", default_value_t = 16)]
    pub min_island: u32,

    /// Keep ramp strips (seams of a third class, at most 2 pixels wide, where two classes
    /// meet) unless another rule removes them.
    #[arg(long)]
    pub no_ramps: bool,
}

/// Per-map entry of `cleanup.json`.
#[derive(Debug, Serialize)]
struct MapEntry {
    file: String,
    width: u32,
    height: u32,
    #[serde(flatten)]
    report: CleanupReport,
}

/// `cleanup.json`.
#[derive(Debug, Serialize)]
struct Summary {
    input: String,
    options: CleanupOptions,
    count: usize,
    totals: CleanupReport,
    /// Pixels at the input resolution, over all maps.
    pixels: u64,
    maps: Vec<MapEntry>,
}

/// Colour of unknown pixels in the previews.
const UNKNOWN_COLOR: [u8; 3] = [255, 0, 255];

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let files = list_pngs(&args.input)?;
    let bar = ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} maps  {per_sec}  ETA {eta}").expect("a valid template").progress_chars("=> "));
    let start = Instant::now();
    let summary = clean_dir(&args.input, &args.out, &files, &opts, || bar.inc(1))?;
    bar.finish_and_clear();

    let t = &summary.totals;
    println!(
        "cleaned {} maps from {} into {} in {:.1} s: {} islands removed, {} pixels changed ({:.2}%), {} unknown pixels fixed, {} ramp pixels fixed; report in {}",
        summary.count,
        args.input.display(),
        args.out.display(),
        start.elapsed().as_secs_f64(),
        t.islands_removed,
        t.pixels_changed,
        100.0 * t.pixels_changed as f64 / summary.pixels.max(1) as f64,
        t.unknown_fixed,
        t.ramp_pixels_fixed,
        args.out.join("cleanup.json").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn options(args: &Args) -> anyhow::Result<CleanupOptions> {
    if let Some(s) = args.size {
        if !(1..=8192).contains(&s) {
            anyhow::bail!("--size {s}: must be between 1 and 8192 pixels");
        }
    }
    if args.open_radius > 64 {
        anyhow::bail!("--open-radius {}: at most 64 (1 or 2 is usual)", args.open_radius);
    }
    let same = match (args.input.canonicalize(), args.out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        anyhow::bail!("--out {}: must differ from --in (the raw maps would be overwritten)", args.out.display());
    }
    Ok(CleanupOptions { open_radius: args.open_radius, min_island: args.min_island, ramps: !args.no_ramps, out_size: args.size })
}

/// The `*.png` file names directly in `dir`, sorted.
fn list_pngs(dir: &Path) -> anyhow::Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("--in {}: cannot list the directory", dir.display()))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("--in {}: cannot list the directory", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.to_ascii_lowercase().ends_with(".png") && entry.path().is_file() {
            names.push(name);
        }
    }
    if names.is_empty() {
        anyhow::bail!("--in {}: no .png files found (expected raw label maps, 8-bit gray)", dir.display());
    }
    names.sort();
    Ok(names)
}

/// Cleans `files` (names in `input`) into `out`, writes the previews and `cleanup.json`,
/// and returns the summary. `tick` is called once per map done.
fn clean_dir(input: &Path, out: &Path, files: &[String], opts: &CleanupOptions, tick: impl Fn() + Sync) -> anyhow::Result<Summary> {
    let previews = out.join("previews");
    std::fs::create_dir_all(&previews).with_context(|| format!("--out {}: cannot create the directory", previews.display()))?;
    let classes = ClassTable::ai_hub();
    let maps = files
        .par_iter()
        .map(|name| {
            let r = clean_one(&input.join(name), out, &previews, name, &classes, opts);
            tick();
            r
        })
        .collect::<anyhow::Result<Vec<MapEntry>>>()?;

    let mut totals = CleanupReport::default();
    let mut pixels = 0u64;
    for m in &maps {
        totals.add(&m.report);
        pixels += m.width as u64 * m.height as u64;
    }
    let summary = Summary { input: input.display().to_string(), options: *opts, count: maps.len(), totals, pixels, maps };
    let json = serde_json::to_vec_pretty(&summary).context("serialising cleanup.json")?;
    write_atomic(&out.join("cleanup.json"), &json)?;
    Ok(summary)
}

fn clean_one(path: &Path, out: &Path, previews: &Path, name: &str, classes: &ClassTable, opts: &CleanupOptions) -> anyhow::Result<MapEntry> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{origin}: cannot read"))?;
    let raw = decode_raw_png(&bytes, classes, &origin)?;
    if raw.width == 0 || raw.height == 0 {
        anyhow::bail!("{origin}: empty image ({}×{})", raw.width, raw.height);
    }
    let (clean, report) = cleanup(&raw, classes.len(), opts);
    write_atomic(&out.join(name), &clean.to_png(classes))?;

    let before = preview_of(&raw.resize_nearest(clean.width, clean.height), classes);
    let after = clean.colorize(classes);
    write_atomic(&previews.join(name), &grid(&[before, after], 2).to_png())?;
    Ok(MapEntry { file: name.to_string(), width: raw.width, height: raw.height, report })
}

/// Colourised map with unknown pixels in [`UNKNOWN_COLOR`].
fn preview_of(map: &LabelMap, classes: &ClassTable) -> RgbImage {
    let mut img = map.colorize(classes);
    for (i, &v) in map.data.iter().enumerate() {
        if v == UNKNOWN_INDEX {
            img.data[i * 3..i * 3 + 3].copy_from_slice(&UNKNOWN_COLOR);
        }
    }
    img
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::cleanup::encode_raw_png;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("labelgen-cleanup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn args(input: &Path, out: &Path) -> Args {
        Args { input: input.to_path_buf(), out: out.to_path_buf(), size: Some(64), open_radius: 1, min_island: 16, no_ramps: false }
    }

    #[test]
    fn cleanup_cli_round_trip() {
        let dir = temp_dir("rt");
        let (input, out) = (dir.join("raw"), dir.join("clean"));
        std::fs::create_dir_all(&input).unwrap();
        // a.png: road (30) with a 2×2 speck of forest (70) and a 3×3 blob of code 37;
        // b.png: paddy (50) left, forest (70) right, a seam of dry field (60) between them,
        // as a gray encoding rounds it.
        let mut a = vec![30u8; 32 * 32];
        for (x, y) in [(5, 5), (6, 5), (5, 6), (6, 6)] {
            a[y * 32 + x] = 70;
        }
        for y in 20..23 {
            for x in 20..23 {
                a[y * 32 + x] = 37;
            }
        }
        let b: Vec<u8> = (0..32 * 32)
            .map(|i| match i % 32 {
                0..=15 => 50,
                16 => 60,
                _ => 70,
            })
            .collect();
        std::fs::write(input.join("a.png"), encode_raw_png(&a, 32, 32)).unwrap();
        std::fs::write(input.join("b.png"), encode_raw_png(&b, 32, 32)).unwrap();
        std::fs::write(input.join("notes.txt"), "not a map").unwrap();

        assert_eq!(run(args(&input, &out)).unwrap(), ExitCode::SUCCESS);

        let classes = ClassTable::ai_hub();
        let read = |p: PathBuf| LabelMap::from_png(&std::fs::read(&p).unwrap(), &classes, &p.display().to_string()).unwrap();
        let ca = read(out.join("a.png"));
        assert_eq!((ca.width, ca.height), (64, 64));
        assert!(ca.data.iter().all(|&v| v == 2), "a.png: all road");
        let cb = read(out.join("b.png"));
        for y in 0..64 {
            for x in 0..64 {
                assert_eq!(cb.get(x, y), if x < 34 { 4 } else { 6 }, "b.png ({x}, {y})");
            }
        }
        for name in ["a.png", "b.png"] {
            let p = out.join("previews").join(name);
            let img = RgbImage::from_png(&std::fs::read(&p).unwrap(), "preview").unwrap();
            assert_eq!((img.width, img.height), (2 * 64 + 6, 64 + 4), "{name}: before | after with gaps");
        }
        assert_eq!(RgbImage::from_png(&std::fs::read(out.join("previews/a.png")).unwrap(), "p").unwrap().pixel(2 + 41, 2 + 41), UNKNOWN_COLOR);

        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("cleanup.json")).unwrap()).unwrap();
        assert_eq!(json["count"], 2);
        assert_eq!(json["maps"][0]["file"], "a.png");
        assert_eq!(json["maps"][0]["unknown_fixed"], 9);
        assert_eq!(json["maps"][0]["pixels_changed"], 13);
        assert_eq!(json["maps"][1]["ramp_pixels_fixed"], 32);
        assert_eq!(json["totals"]["pixels_changed"], 13 + 32);
        assert_eq!(json["options"]["min_island"], 16);
        // No temporary files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with('.')).collect();
        assert!(leftovers.is_empty());

        // Cleaning the output again changes nothing.
        let again = dir.join("again");
        let mut a2 = args(&out, &again);
        a2.size = None;
        run(a2).unwrap();
        assert_eq!(read(again.join("a.png")), ca);
        assert_eq!(read(again.join("b.png")), cb);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cleanup_cli_errors_name_the_file_and_the_problem() {
        let dir = temp_dir("err");
        let (input, out) = (dir.join("raw"), dir.join("clean"));
        std::fs::create_dir_all(&input).unwrap();
        let err = run(args(&input, &out)).unwrap_err().to_string();
        assert!(err.contains("no .png files") && err.contains("raw"), "{err}");

        std::fs::write(input.join("rgb.png"), RgbImage::new(2, 2).to_png()).unwrap();
        let err = format!("{:#}", run(args(&input, &out)).unwrap_err());
        assert!(err.contains("rgb.png") && err.contains("grayscale"), "{err}");

        std::fs::write(input.join("rgb.png"), b"garbage").unwrap();
        let err = format!("{:#}", run(args(&input, &out)).unwrap_err());
        assert!(err.contains("rgb.png") && err.contains("PNG"), "{err}");

        let err = run(args(&input, &input)).unwrap_err().to_string();
        assert!(err.contains("must differ from --in"), "{err}");
        let mut bad = args(&input, &out);
        bad.size = Some(0);
        assert!(run(bad).unwrap_err().to_string().contains("--size 0"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
