//! Cleaning a directory of raw label PNGs (what `worker cleanup` runs): every `*.png`
//! directly in the input directory is decoded with [`decode_raw_png`], cleaned with
//! [`cleanup`] and written to the output directory in the same format, with a
//! before | after preview under `previews/` and a report of every map in
//! [`REPORT_FILE`]. Maps are cleaned in parallel; every file is written to a temporary name
//! and renamed ([`write_atomic`]), so a reader never sees half a file.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{cleanup, decode_raw_png, CleanupOptions, CleanupReport, UNKNOWN_INDEX};
use crate::classes::ClassTable;
use crate::dataset::grid;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::label::{LabelMap, RgbImage};

/// The report of a directory cleanup, written to the output directory.
pub const REPORT_FILE: &str = "cleanup.json";
/// Directory of the before | after previews, under the output directory.
pub const PREVIEWS_DIR: &str = "previews";
/// Colour of unknown pixels in the previews.
pub const UNKNOWN_COLOR: [u8; 3] = [255, 0, 255];

/// One map's entry in [`REPORT_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    /// File name in the input (and output) directory.
    pub file: String,
    /// Size of the input map.
    pub width: u32,
    pub height: u32,
    #[serde(flatten)]
    pub report: CleanupReport,
}

/// [`REPORT_FILE`]: the options, a report per map and totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirReport {
    /// The input directory.
    pub input: String,
    pub options: CleanupOptions,
    /// Maps cleaned.
    pub count: usize,
    /// The maps' reports summed.
    pub totals: CleanupReport,
    /// Pixels at the input resolution, over all maps.
    pub pixels: u64,
    /// One entry per map, in file-name order.
    pub maps: Vec<MapEntry>,
}

impl DirReport {
    /// Share of the input pixels whose label changed, in percent.
    pub fn changed_percent(&self) -> f64 {
        100.0 * self.totals.pixels_changed as f64 / self.pixels.max(1) as f64
    }
}

/// The `*.png` file names (any case of the extension) directly in `dir`, sorted. No PNG
/// at all is an error naming the directory.
pub fn list_pngs(dir: &Path) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.to_ascii_lowercase().ends_with(".png") && entry.path().is_file() {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(Error::format(dir.display(), "no .png files found (expected raw label maps, 8-bit gray)"));
    }
    names.sort();
    Ok(names)
}

/// Maps [`clean_dir`] reads first to tell maps of another class table.
pub const TABLE_CHECK_MAPS: usize = 8;

/// Cleans `files` (names in `input`, e.g. from [`list_pngs`]; raw codes of `classes`)
/// into `out` (created if missing; files of the same names are replaced): writes `out/NAME` (raw codes, 8-bit
/// gray), `out/previews/NAME` (before | after, colourised, unknown pixels in
/// [`UNKNOWN_COLOR`]) and `out/cleanup.json`, and returns the report. `tick` is called
/// once per map done (from the worker threads). Errors name the file. Maps of another
/// table (no pixel of this one in any of the first [`TABLE_CHECK_MAPS`], so all their
/// pixels would be replaced) are refused before anything is written.
pub fn clean_dir(input: &Path, out: &Path, files: &[String], classes: &ClassTable, opts: &CleanupOptions, tick: impl Fn() + Sync) -> Result<DirReport> {
    let mut outside = 0;
    for name in files.iter().take(TABLE_CHECK_MAPS) {
        let path = input.join(name);
        let raw = decode_raw_png(&std::fs::read(&path).map_err(|e| Error::io(&path, e))?, classes, &path.display().to_string())?;
        if !raw.data.iter().all(|&v| v == UNKNOWN_INDEX) {
            break;
        }
        outside += 1;
    }
    if outside > 0 && outside == files.len().min(TABLE_CHECK_MAPS) {
        return Err(Error::format(
            input.join(&files[0]).display(),
            format!(
                "no pixel of this map{} holds a code of the class table ({}): cleaning would replace every pixel. Are these maps of another table? Give it with --classes FILE",
                if outside > 1 { format!(" or the next {}", outside - 1) } else { String::new() },
                classes.code_list()
            ),
        ));
    }
    let previews = out.join(PREVIEWS_DIR);
    std::fs::create_dir_all(&previews).map_err(|e| Error::io(&previews, e))?;
    let maps = files
        .par_iter()
        .map(|name| {
            let r = clean_file(&input.join(name), out, &previews, name, classes, opts);
            tick();
            r
        })
        .collect::<Result<Vec<MapEntry>>>()?;

    let mut totals = CleanupReport::default();
    let mut pixels = 0u64;
    for m in &maps {
        totals.add(&m.report);
        pixels += m.width as u64 * m.height as u64;
    }
    let report = DirReport { input: input.display().to_string(), options: *opts, count: maps.len(), totals, pixels, maps };
    let path = out.join(REPORT_FILE);
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::format(path.display(), format!("serialising the report: {e}")))?;
    // The maps first, then the report that lists them: the report survives a power loss
    // only with every map it names.
    for dir in [out, previews.as_path()] {
        crate::files::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(&path, &json)?;
    crate::files::sync_dir(out).map_err(|e| Error::io(out, e))?;
    Ok(report)
}

/// Cleans one file into `out/name` and `previews/name`.
fn clean_file(path: &Path, out: &Path, previews: &Path, name: &str, classes: &ClassTable, opts: &CleanupOptions) -> Result<MapEntry> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let raw = decode_raw_png(&bytes, classes, &origin)?;
    if raw.width == 0 || raw.height == 0 {
        return Err(Error::format(&origin, format!("empty image ({}×{})", raw.width, raw.height)));
    }
    let (clean, report) = cleanup(&raw, classes.len(), opts);
    write_atomic(&out.join(name), &clean.to_png(classes))?;

    let before = preview(&raw.resize_nearest(clean.width, clean.height), classes);
    let after = clean.colorize(classes);
    write_atomic(&previews.join(name), &grid(&[before, after], 2).to_png())?;
    Ok(MapEntry { file: name.to_string(), width: raw.width, height: raw.height, report })
}

/// A raw map colourised, with unknown pixels in [`UNKNOWN_COLOR`].
pub fn preview(map: &LabelMap, classes: &ClassTable) -> RgbImage {
    let mut img = map.colorize(classes);
    for (i, &v) in map.data.iter().enumerate() {
        if v == UNKNOWN_INDEX {
            img.data[i * 3..i * 3 + 3].copy_from_slice(&UNKNOWN_COLOR);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cleanup::encode_raw_png;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("labelgen-cleanup-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// In output pixels: at 32 → 64 the maps are cleaned with radius 1 and islands under 16.
    fn opts(size: Option<u32>) -> CleanupOptions {
        CleanupOptions { open_radius: 2, min_island: 64, ramps: true, out_size: size }
    }

    fn clean(input: &Path, out: &Path, size: Option<u32>) -> Result<DirReport> {
        clean_dir(input, out, &list_pngs(input)?, &ClassTable::ai_hub(), &opts(size), || {})
    }

    #[test]
    fn cleans_a_directory_round_trip() {
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

        assert_eq!(list_pngs(&input).unwrap(), ["a.png", "b.png"]);
        let report = clean(&input, &out, Some(64)).unwrap();
        assert_eq!((report.count, report.pixels, report.totals.pixels_changed), (2, 2 * 32 * 32, 13 + 32));

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
            let p = out.join(PREVIEWS_DIR).join(name);
            let img = RgbImage::from_png(&std::fs::read(&p).unwrap(), "preview").unwrap();
            assert_eq!((img.width, img.height), (2 * 64 + 6, 64 + 4), "{name}: before | after with gaps");
        }
        assert_eq!(RgbImage::from_png(&std::fs::read(out.join("previews/a.png")).unwrap(), "p").unwrap().pixel(2 + 41, 2 + 41), UNKNOWN_COLOR);

        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(REPORT_FILE)).unwrap()).unwrap();
        assert_eq!(json["count"], 2);
        assert_eq!(json["maps"][0]["file"], "a.png");
        assert_eq!(json["maps"][0]["unknown_fixed"], 9);
        assert_eq!(json["maps"][0]["pixels_changed"], 13);
        assert_eq!(json["maps"][1]["ramp_pixels_fixed"], 32);
        assert_eq!(json["totals"]["pixels_changed"], 13 + 32);
        assert_eq!(json["options"]["min_island_px"], 64, "the options as given, in output pixels");
        let back: DirReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        // No temporary files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with('.')).collect();
        assert!(leftovers.is_empty());

        // Cleaning the output again changes nothing.
        let again = dir.join("again");
        clean(&out, &again, None).unwrap();
        assert_eq!(read(again.join("a.png")), ca);
        assert_eq!(read(again.join("b.png")), cb);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Maps of another class table are read with it: its codes are classes, not unknown.
    #[test]
    fn cleans_maps_of_its_own_class_table() {
        let dir = temp_dir("own");
        let (input, out) = (dir.join("raw"), dir.join("clean"));
        std::fs::create_dir_all(&input).unwrap();
        let table = "[classes]\nignore_code = 255\n\
            [[classes.classes]]\nname = \"water\"\ncode = 1\ncolor = [0, 0, 255]\n\
            [[classes.classes]]\nname = \"land\"\ncode = 2\ncolor = [0, 255, 0]\n";
        let classes = ClassTable::from_toml(table, "t.toml").unwrap();
        // Water with a 2×2 speck of land.
        let mut raw = vec![1u8; 32 * 32];
        for (x, y) in [(5, 5), (6, 5), (5, 6), (6, 6)] {
            raw[y * 32 + x] = 2;
        }
        std::fs::write(input.join("m.png"), encode_raw_png(&raw, 32, 32)).unwrap();
        let report = clean_dir(&input, &out, &list_pngs(&input).unwrap(), &classes, &opts(None), || {}).unwrap();
        assert_eq!((report.totals.unknown_fixed, report.totals.pixels_changed), (0, 4), "{report:?}");
        let clean = LabelMap::from_png(&std::fs::read(out.join("m.png")).unwrap(), &classes, "m.png").unwrap();
        assert!(clean.data.iter().all(|&v| v == 0), "all water");
        // Read with the AI Hub table, every pixel is unknown: refused, nothing written.
        let e = clean_dir(&input, &dir.join("hub"), &list_pngs(&input).unwrap(), &ClassTable::ai_hub(), &opts(None), || {}).unwrap_err().to_string();
        assert!(e.contains("m.png: no pixel of this map holds a code of the class table (10 building") && e.contains("--classes FILE"), "{e}");
        assert!(!dir.join("hub").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = temp_dir("err");
        let (input, out) = (dir.join("raw"), dir.join("clean"));
        let err = list_pngs(&input).unwrap_err().to_string();
        assert!(err.contains("raw"), "{err}");
        std::fs::create_dir_all(&input).unwrap();
        let err = list_pngs(&input).unwrap_err().to_string();
        assert!(err.contains("no .png files") && err.contains("raw"), "{err}");

        std::fs::write(input.join("rgb.png"), RgbImage::new(2, 2).to_png()).unwrap();
        let err = clean(&input, &out, None).unwrap_err().to_string();
        assert!(err.contains("rgb.png") && err.contains("grayscale"), "{err}");

        std::fs::write(input.join("rgb.png"), b"garbage").unwrap();
        let err = clean(&input, &out, None).unwrap_err().to_string();
        assert!(err.contains("rgb.png") && err.contains("PNG"), "{err}");
        assert!(!out.join(REPORT_FILE).exists(), "no report for a failed run");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
