//! A training dataset on disk: `DIR/images/NAME.png` (RGB) and `DIR/labels/NAME.png`
//! (the class mask) sharing file stems — the layout `worker procedural` writes and the AI
//! Hub land-cover set uses.
//!
//! A mask holds either raw class codes (8-bit grayscale, or indexed with the codes as its
//! palette indices: [`MaskKind::Codes`], the default)
//! or the class table's preview colours (RGB, [`MaskKind::Palette`]). [`Dataset::open_with`]
//! reads every file once up front — labels decoded, images decoded and their sizes compared
//! — so bad data is an error naming the file before training starts, not halfway through.
//! Mask values outside the class table are an error, or (with [`UnknownCodes::Ignore`])
//! become [`IGNORE_INDEX`](crate::IGNORE_INDEX) and are counted in the [`DatasetSummary`].
//! The masks are read by [`decode_label`], the one label-PNG decoder (it lives in
//! `label.rs` with [`LabelMap`]; it and its option types are public here).
//!
//! The stems are split into train and test by a hash of each stem alone
//! ([`is_test_stem`]): the same stem always lands in the same split, and adding or removing
//! other files never moves it.
//!
//! Training reads pairs through [`PairSource`]; [`DatasetPairs`] is a dataset's train
//! split as one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classes::{ClassTable, IGNORE_INDEX};
use crate::error::{Error, Result};
use crate::label::{list_counts, plural, LabelMap, RgbImage};

/// The label decoder and its options live with [`LabelMap`] (`label.rs`); they are public
/// here, where the dataset reads its masks with them.
pub use crate::label::{decode_label, MaskKind, UnknownCodes, UnknownPixels, UnknownValue};

/// The file, beside a trained model, listing the held-out test stems (one a line, sorted).
pub const TEST_STEMS_FILE: &str = "test_stems.txt";

/// The training commands' default share of stems held out for testing.
pub const DEFAULT_TEST_FRACTION: f64 = 0.1;

/// How [`Dataset::open_with`] reads a dataset directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetOptions {
    pub mask: MaskKind,
    pub unknown: UnknownCodes,
    /// Share of the stems held out as the test split, in `[0, 1)`; 0: no test split.
    pub test_fraction: f64,
    /// Split by group rather than by stem: a regular expression whose first capture group
    /// (else its whole match) names a stem's group, e.g. a region or scene (see
    /// [`SplitGroups`]). `None`: each stem is its own group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_group: Option<String>,
    /// Read labels only: `images/` is neither needed nor checked.
    pub labels_only: bool,
}

impl Default for DatasetOptions {
    /// Raw codes, unknown codes an error, no test split, images required.
    fn default() -> Self {
        DatasetOptions { mask: MaskKind::Codes, unknown: UnknownCodes::Error, test_fraction: 0.0, split_group: None, labels_only: false }
    }
}

impl DatasetOptions {
    /// Checks `test_fraction` is in `[0, 1)` and `split_group` is a valid pattern, and
    /// returns the split's grouping of stems (without a test split there is nothing to
    /// keep together, so then each stem is its own group).
    pub fn validate(&self) -> Result<SplitGroups> {
        if !(self.test_fraction >= 0.0 && self.test_fraction < 1.0) {
            return Err(Error::Invalid {
                origin: "dataset options".into(),
                key: "test_fraction".into(),
                message: format!("{} is not in [0, 1): it is the share of files held out for testing (0: none)", self.test_fraction),
            });
        }
        let groups = SplitGroups::new(self.split_group.as_deref())?;
        Ok(if self.test_fraction > 0.0 { groups } else { SplitGroups(None) })
    }
}

/// How stems are grouped for the train/test split: every stem of a group falls on the same
/// side, so neighbouring tiles of one scene (which share a stem prefix) never end up on
/// both. A group is named by the first capture group of a regular expression's first
/// match in the stem, or by the whole match when the pattern has no group; without a
/// pattern each stem is its own group.
#[derive(Debug, Clone)]
pub struct SplitGroups(Option<regex::Regex>);

impl SplitGroups {
    /// `pattern`: e.g. `^(.*)_\d+$` (the stem without its last `_NUMBER`) or `^[^_]+`
    /// (up to the first `_`). An invalid pattern is an error naming it.
    pub fn new(pattern: Option<&str>) -> Result<SplitGroups> {
        let Some(p) = pattern else { return Ok(SplitGroups(None)) };
        let re = regex::Regex::new(p).map_err(|e| Error::Invalid {
            origin: "dataset options".into(),
            key: "split_group".into(),
            message: format!("'{p}' is not a regular expression: {e}"),
        })?;
        Ok(SplitGroups(Some(re)))
    }

    /// The group of `stem`: `None` when the pattern does not match it (or matches it
    /// empty, or its capture group did not take part).
    pub fn group<'a>(&self, stem: &'a str) -> Option<&'a str> {
        let Some(re) = &self.0 else { return Some(stem) };
        let c = re.captures(stem)?;
        let m = if re.captures_len() > 1 { c.get(1) } else { c.get(0) };
        m.map(|m| m.as_str()).filter(|g| !g.is_empty())
    }

    /// Whether stems are grouped (a pattern was given).
    pub fn grouped(&self) -> bool {
        self.0.is_some()
    }
}

/// Whether `stem` belongs to the test split for `test_fraction`: the first 8 bytes of
/// sha256(stem), as a big-endian u64 over 2^64, are below `test_fraction`. Depends on the
/// stem alone, so adding files never moves others between the splits, and a larger
/// fraction only moves stems from train to test.
pub fn is_test_stem(stem: &str, test_fraction: f64) -> bool {
    let h = Sha256::digest(stem.as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().expect("sha256 has 32 bytes"));
    (x as f64) < test_fraction * 18_446_744_073_709_551_616.0
}

/// What [`Dataset::open_with`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetSummary {
    /// Stems (label files, each with its image unless labels only).
    pub pairs: usize,
    /// Stems in the train split.
    pub train: usize,
    /// Stems in the test split.
    pub test: usize,
    pub test_fraction: f64,
    /// Groups the split was made by (`split_group`); `None`: by stem.
    pub groups: Option<usize>,
    /// Pixels whose mask value is outside the class table (mapped to [`IGNORE_INDEX`](crate::IGNORE_INDEX); with
    /// [`UnknownCodes::Error`] opening fails instead, so this is 0).
    pub unknown_pixels: u64,
    /// Label files with at least one such pixel.
    pub unknown_files: usize,
    /// Label pixels of the train split that hold a class of the table (neither the ignore
    /// code nor an unknown value): 0 means a dataset that trains nothing (another class
    /// table's codes?).
    pub class_pixels: u64,
    /// Pixels per unknown value over all files.
    pub unknown_by_value: BTreeMap<UnknownValue, u64>,
    /// Label files that are not square, and the first of them (by stem) with its size:
    /// reading them resized to a square side is refused ([`Dataset::require_square`]).
    pub non_square_files: usize,
    pub first_non_square: Option<(PathBuf, u32, u32)>,
}

impl fmt::Display for DatasetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} files: {} for training, {} held out for testing (test fraction {}", self.pairs, self.train, self.test, self.test_fraction)?;
        match self.groups {
            Some(g) => write!(f, ", split by {})", plural(g as u64, "group"))?,
            None => write!(f, ")")?,
        }
        if self.unknown_pixels > 0 {
            write!(
                f,
                "; {} in {} hold values outside the class table and were mapped to ignore ({})",
                plural(self.unknown_pixels, "pixel"),
                plural(self.unknown_files as u64, "label file"),
                list_counts(&self.unknown_by_value)
            )?;
        }
        Ok(())
    }
}

/// What reading one stem's label found.
struct LabelCheck {
    unknown: UnknownPixels,
    /// Width and height.
    size: (u32, u32),
    /// Pixels of some class ([`DatasetSummary::class_pixels`]).
    class_pixels: u64,
}

/// The pairs of a dataset directory, by stem, checked and split.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    /// Every stem (sorted).
    pub stems: Vec<String>,
    /// The train split (sorted): what training reads.
    pub train: Vec<String>,
    /// The test split (sorted): held out, see [`is_test_stem`] and [`SplitGroups`].
    pub test: Vec<String>,
    pub classes: ClassTable,
    pub options: DatasetOptions,
    /// What the up-front scan found.
    pub summary: DatasetSummary,
}

impl Dataset {
    /// [`Dataset::open_with`] with raw codes, unknown codes an error and no test split.
    pub fn open(dir: &Path, classes: ClassTable, labels_only: bool) -> Result<Dataset> {
        Dataset::open_with(dir, classes, &DatasetOptions { labels_only, ..DatasetOptions::default() })
    }

    /// Lists `DIR/labels/*.png` and (unless `labels_only`) `DIR/images/*.png`, then reads
    /// every file once: each label is decoded (unknown values are an error or counted, see
    /// [`decode_label`]), each image decoded and its size compared with its label's. Every
    /// label needs an image with the same stem and every image a label. Errors name the
    /// file and the problem; when several files are bad, the first (by stem) is reported
    /// with the count of the others. Splits the stems by [`is_test_stem`] of their group
    /// ([`SplitGroups`]; a stem without one is an error); an empty train split is an error.
    pub fn open_with(dir: &Path, classes: ClassTable, options: &DatasetOptions) -> Result<Dataset> {
        let groups = options.validate()?;
        if options.mask == MaskKind::Palette {
            classes.validate_palette("class table (palette masks)")?;
        }
        let labels_dir = dir.join("labels");
        let label_stems = png_stems(&labels_dir)?;
        if label_stems.is_empty() {
            return Err(Error::format(labels_dir.display(), "no .png label files found (expected DIR/labels/NAME.png and DIR/images/NAME.png)"));
        }
        if !options.labels_only {
            let images_dir = dir.join("images");
            let image_stems = png_stems(&images_dir)?;
            let orphans = |of: &BTreeSet<String>, missing_in: &BTreeSet<String>| of.difference(missing_in).cloned().collect::<Vec<_>>();
            let no_image = orphans(&label_stems, &image_stems);
            if let Some(first) = no_image.first() {
                return Err(Error::format(
                    images_dir.join(format!("{first}.png")).display(),
                    format!("missing: labels/{first}.png has no image with the same file stem{}", others(&no_image, "labels lack an image")),
                ));
            }
            let no_label = orphans(&image_stems, &label_stems);
            if let Some(first) = no_label.first() {
                return Err(Error::format(
                    labels_dir.join(format!("{first}.png")).display(),
                    format!("missing: images/{first}.png has no label with the same file stem{}", others(&no_label, "images lack a label")),
                ));
            }
        }
        let stems: Vec<String> = label_stems.into_iter().collect();
        let (mut test, mut train) = (Vec::new(), Vec::new());
        let mut group_names = BTreeSet::new();
        for s in &stems {
            let Some(group) = groups.group(s) else {
                return Err(Error::format(
                    labels_dir.join(format!("{s}.png")).display(),
                    format!(
                        "the split group pattern '{}' names no group in this file's stem (no match, an empty one, or its capture group took no part); every stem needs one",
                        options.split_group.as_deref().unwrap_or_default()
                    ),
                ));
            };
            group_names.insert(group);
            if is_test_stem(group, options.test_fraction) { &mut test } else { &mut train }.push(s.clone());
        }
        let group_count = groups.grouped().then_some(group_names.len());
        let mut ds = Dataset { dir: dir.to_path_buf(), stems, train, test, classes, options: options.clone(), summary: DatasetSummary::default() };

        let checks: Vec<Result<LabelCheck>> = ds.stems.par_iter().map(|s| ds.check(s)).collect();
        let mut summary = DatasetSummary {
            pairs: ds.stems.len(),
            train: ds.train.len(),
            test: ds.test.len(),
            test_fraction: options.test_fraction,
            groups: group_count,
            ..DatasetSummary::default()
        };
        let (mut first_error, mut bad) = (None, 0usize);
        let held_out: BTreeSet<&String> = ds.test.iter().collect();
        for (check, stem) in checks.into_iter().zip(&ds.stems) {
            match check {
                Ok(LabelCheck { unknown: u, size: (w, h), class_pixels }) => {
                    if !held_out.contains(stem) {
                        summary.class_pixels += class_pixels;
                    }
                    if w != h {
                        summary.non_square_files += 1;
                        summary.first_non_square.get_or_insert_with(|| (ds.label_path(stem), w, h));
                    }
                    if u.count > 0 {
                        summary.unknown_files += 1;
                        summary.unknown_pixels += u.count;
                        for (v, n) in u.by_value {
                            *summary.unknown_by_value.entry(v).or_insert(0) += n;
                        }
                    }
                }
                Err(e) => {
                    bad += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(with_others(e, bad - 1));
        }
        if ds.train.is_empty() {
            return Err(Error::format(
                dir.display(),
                format!("all {} files fall in the test split (test fraction {}); lower the test fraction or add files", ds.stems.len(), options.test_fraction),
            ));
        }
        ds.summary = summary;
        Ok(ds)
    }

    /// Reads and checks one stem's files (see [`Dataset::open_with`]).
    fn check(&self, stem: &str) -> Result<LabelCheck> {
        let lp = self.label_path(stem);
        let bytes = std::fs::read(&lp).map_err(|e| Error::io(&lp, e))?;
        let (map, unk) = decode_label(&bytes, &self.classes, self.options.mask, self.options.unknown, &lp.display().to_string())?;
        if !self.options.labels_only {
            let ip = self.image_path(stem);
            let bytes = std::fs::read(&ip).map_err(|e| Error::io(&ip, e))?;
            let img = RgbImage::from_png(&bytes, &ip.display().to_string())?;
            if (img.width, img.height) != (map.width, map.height) {
                return Err(Error::format(
                    ip.display(),
                    format!(
                        "the image is {}×{} pixels but its label {} is {}×{}; an image and its label must be the same size",
                        img.width,
                        img.height,
                        lp.display(),
                        map.width,
                        map.height
                    ),
                ));
            }
        }
        let class_pixels = map.data.iter().filter(|&&v| v != IGNORE_INDEX).count() as u64;
        Ok(LabelCheck { unknown: unk, size: (map.width, map.height), class_pixels })
    }

    /// An error naming the first tile that is not square (and how many others are not),
    /// for a reader that resizes every tile to a square side (training): found when the
    /// dataset is opened, not when a batch first reads the tile.
    pub fn require_square(&self) -> Result<()> {
        match &self.summary.first_non_square {
            Some((path, w, h)) => Err(with_others(check_square(path, *w, *h, Some(*w)).expect_err("not square"), self.summary.non_square_files - 1)),
            None => Ok(()),
        }
    }

    /// An error when no label pixel of the training split holds a class of the table
    /// (every pixel "ignore", or a value outside the table read as ignore): a model
    /// trained on it would learn nothing. Found when the dataset is opened.
    pub fn require_class_pixels(&self) -> Result<()> {
        if self.summary.class_pixels > 0 {
            return Ok(());
        }
        Err(Error::Format {
            path: self.dir.join("labels").display().to_string(),
            message: format!(
                "no label pixel of the training split holds a class of the table ({}): every pixel is \"ignore\"{}. Give the dataset's own class table with --classes FILE",
                self.classes.code_list(),
                if self.summary.unknown_pixels > 0 { " or a value outside the table (--unknown-codes ignore)" } else { "" }
            ),
        })
    }

    pub fn len(&self) -> usize {
        self.stems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stems.is_empty()
    }

    pub fn label_path(&self, stem: &str) -> PathBuf {
        self.dir.join("labels").join(format!("{stem}.png"))
    }

    pub fn image_path(&self, stem: &str) -> PathBuf {
        self.dir.join("images").join(format!("{stem}.png"))
    }

    /// The label map of `stem` (decoded as the options say), resized to `size × size` if
    /// given: by the mode of each block when shrinking ([`LabelMap::resize_mode`]), so thin
    /// classes survive; nearest when growing.
    pub fn label(&self, stem: &str, size: Option<u32>) -> Result<LabelMap> {
        let p = self.label_path(stem);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let (m, _) = decode_label(&bytes, &self.classes, self.options.mask, self.options.unknown, &p.display().to_string())?;
        check_square(&p, m.width, m.height, size)?;
        Ok(match size {
            Some(s) if s != m.width || s != m.height => m.resize_mode(s, s),
            _ => m,
        })
    }

    /// The image of `stem`, resized (box filter down, nearest up) to `size × size` if given.
    /// Its size must equal its label's.
    pub fn image(&self, stem: &str, size: Option<u32>) -> Result<RgbImage> {
        let p = self.image_path(stem);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let img = RgbImage::from_png(&bytes, &p.display().to_string())?;
        check_square(&p, img.width, img.height, size)?;
        Ok(match size {
            Some(s) if s != img.width || s != img.height => resize_rgb(&img, s, s),
            _ => img,
        })
    }

    /// The contents of [`TEST_STEMS_FILE`]: the test stems, sorted, one a line.
    pub fn test_stems_text(&self) -> String {
        self.test.iter().map(|s| format!("{s}\n")).collect()
    }

    /// sha256 over every train-split file's name and bytes (labels, and images unless
    /// `labels_only`), the class table when it is not the AI Hub one and the mask kind when
    /// not codes: the "digest of the training data" in a model's `model.json`.
    pub fn digest(&self, labels_only: bool) -> Result<String> {
        let mut h = Sha256::new();
        for stem in &self.train {
            let mut paths = vec![self.label_path(stem)];
            if !labels_only {
                paths.push(self.image_path(stem));
            }
            for p in paths {
                let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
                h.update(stem.as_bytes());
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
        // What the masks mean too, when not the default table or codes (so digests of AI
        // Hub code sets stay as they were): a resume with another table, or reading the
        // same indexed masks by colour, reads other classes.
        if self.classes != ClassTable::ai_hub() {
            h.update(b"classes");
            h.update(serde_json::to_vec(&self.classes).expect("a class table serialises"));
        }
        if self.options.mask != MaskKind::Codes {
            h.update(b"palette masks");
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// Training pairs by index: an image and its label map (class indices), the same size.
/// What model training reads (SPADE in the worker, the segmentation model in `eval`):
/// [`DatasetPairs`] reads a dataset directory; a `Vec` of pairs serves tests. Sources are
/// `Sync` so [`prefetch_batches`] can decode a batch's pairs in parallel.
pub trait PairSource: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Pair `index` (`< len()`); errors name the file that could not be read.
    fn get(&self, index: usize) -> Result<(RgbImage, LabelMap)>;
}

impl PairSource for Vec<(RgbImage, LabelMap)> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn get(&self, index: usize) -> Result<(RgbImage, LabelMap)> {
        Ok(self[index].clone())
    }
}

/// Hands batches of pairs to `consume` in order, reading them ahead: batch `b` is the pairs
/// `indices(b)`, decoded in parallel (rayon) on a background thread while `consume` works
/// on the batch before it, with at most `depth + 1` decoded batches held (`depth` ≥ 1 in the
/// channel, one more on its way in). Stops at
/// the first error of either side (a read error is returned as `E`); a failing `consume`
/// stops the reader too. What a training loop uses so that decoding never starves the step.
pub fn prefetch_batches<S, E>(
    source: &S,
    batches: std::ops::Range<u64>,
    depth: usize,
    indices: impl Fn(u64) -> Vec<usize> + Sync,
    mut consume: impl FnMut(u64, Vec<(RgbImage, LabelMap)>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    S: PairSource + ?Sized,
    E: From<Error>,
{
    use rayon::prelude::*;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        let indices = &indices;
        scope.spawn(move || {
            for b in batches {
                let batch: Result<Vec<_>> = indices(b).par_iter().map(|&i| source.get(i)).collect();
                let failed = batch.is_err();
                // A send fails once the consumer has stopped: stop reading too.
                if tx.send((b, batch)).is_err() || failed {
                    break;
                }
            }
        });
        // Ends when the reader is done (its sender dropped); returning early drops the
        // receiver, which ends the reader before the scope joins it.
        for (b, batch) in rx {
            consume(b, batch?)?;
        }
        Ok(())
    })
}

/// A dataset directory's train split, read pair by pair and resized to `size × size`.
pub struct DatasetPairs {
    pub dataset: Dataset,
    pub size: u32,
}

impl PairSource for DatasetPairs {
    /// The train split only: the test split is never trained on.
    fn len(&self) -> usize {
        self.dataset.train.len()
    }
    fn get(&self, index: usize) -> Result<(RgbImage, LabelMap)> {
        let stem = &self.dataset.train[index];
        Ok((self.dataset.image(stem, Some(self.size))?, self.dataset.label(stem, Some(self.size))?))
    }
}

/// Stems of the `*.png` files in `dir` (hidden files skipped). A PNG named with another
/// case (`NAME.PNG`) is an error naming it, not a file left out; other files are left out
/// with a warning that counts them.
fn png_stems(dir: &Path) -> Result<BTreeSet<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::format(dir.display(), format!("cannot list the directory: {e} (expected DIR/labels/NAME.png and DIR/images/NAME.png)")))?;
    let mut stems = BTreeSet::new();
    let mut skipped: Vec<String> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        match name.strip_suffix(".png") {
            Some(stem) => {
                stems.insert(stem.to_string());
            }
            None if name.to_ascii_lowercase().ends_with(".png") => {
                return Err(Error::format(dir.join(&name).display(), "a PNG whose extension is not lower-case: rename it to .png (labelgen pairs NAME.png files; a file it read under another name would be missed by the other folder)"));
            }
            None => skipped.push(name),
        }
    }
    if !skipped.is_empty() {
        skipped.sort();
        tracing::warn!(dir = %dir.display(), files = skipped.len(), first = %skipped[0], "left out: files that are not .png");
    }
    Ok(stems)
}

/// ` (3 labels lack an image in all: a, b, c)` when there is more than one.
fn others(stems: &[String], what: &str) -> String {
    if stems.len() < 2 {
        return String::new();
    }
    let shown: Vec<&str> = stems.iter().take(5).map(String::as_str).collect();
    format!(" ({} {what} in all: {}{})", stems.len(), shown.join(", "), if stems.len() > 5 { ", …" } else { "" })
}

/// Appends "(and N more files have problems)" to the first error of a scan.
/// Refuses to resize a non-square tile to a square side (it would be stretched).
fn check_square(path: &Path, width: u32, height: u32, size: Option<u32>) -> Result<()> {
    if size.is_some() && width != height {
        return Err(Error::format(
            path.display(),
            format!("the tile is {width}×{height} pixels; it is read resized to a square side, which would stretch it: crop or tile it square first"),
        ));
    }
    Ok(())
}

fn with_others(e: Error, more: usize) -> Error {
    if more == 0 {
        return e;
    }
    let tail = if more == 1 { " (and 1 more file has problems)".to_string() } else { format!(" (and {more} more files have problems)") };
    match e {
        Error::Format { path, message } => Error::Format { path, message: message + &tail },
        Error::Io { path, source } => Error::format(path.display(), format!("{source}{tail}")),
        other => other,
    }
}

/// Resizes an RGB image: area average when shrinking by an integer factor; a triangle
/// filter as wide as the scale (`image`'s resize) when shrinking by another factor, so
/// the result is neither aliased nor shifted against its label's block-mode resize; nearest
/// when growing.
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let integer = img.width.is_multiple_of(w) && img.height.is_multiple_of(h);
    if !integer && (w < img.width || h < img.height) {
        let buf = image::RgbImage::from_raw(img.width, img.height, img.data.clone()).expect("an RgbImage holds width × height × 3 bytes");
        let out = image::imageops::resize(&buf, w, h, image::imageops::FilterType::Triangle);
        return RgbImage { width: w, height: h, data: out.into_raw() };
    }
    if integer {
        let mut out = RgbImage::new(w, h);
        let (fx, fy) = (img.width / w, img.height / h);
        let n = fx * fy;
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0u32; 3];
                for dy in 0..fy {
                    for dx in 0..fx {
                        let p = img.pixel(x * fx + dx, y * fy + dy);
                        for c in 0..3 {
                            acc[c] += p[c] as u32;
                        }
                    }
                }
                out.put(x, y, [((acc[0] + n / 2) / n) as u8, ((acc[1] + n / 2) / n) as u8, ((acc[2] + n / 2) / n) as u8]);
            }
        }
        out
    } else {
        img.resize_nearest(w, h)
    }
}

/// Tiles equally sized images into a grid with `cols` columns and a 2-pixel gap.
pub fn grid(images: &[RgbImage], cols: usize) -> RgbImage {
    let cols = cols.max(1);
    let Some(first) = images.first() else { return RgbImage::new(1, 1) };
    let (w, h) = (first.width, first.height);
    let rows = images.len().div_ceil(cols);
    let gap = 2;
    let mut out = RgbImage::new(cols as u32 * (w + gap) + gap, rows as u32 * (h + gap) + gap);
    out.data.fill(255);
    for (i, img) in images.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        out.blit(img, gap + c * (w + gap), gap + r * (h + gap));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::IGNORE_INDEX;
    use crate::label::encode_png;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("labelgen-dataset-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(p.join("images")).unwrap();
            std::fs::create_dir_all(p.join("labels")).unwrap();
            TempDir(p)
        }
        fn write(&self, rel: &str, bytes: &[u8]) {
            std::fs::write(self.0.join(rel), bytes).unwrap();
        }
        /// `images/STEM.png` (w×h RGB) and `labels/STEM.png` (the given raw codes).
        fn pair(&self, stem: &str, w: u32, h: u32, codes: &[u8]) {
            self.write(&format!("images/{stem}.png"), &RgbImage::new(w, h).to_png());
            self.write(&format!("labels/{stem}.png"), &encode_png(w, h, png::ColorType::Grayscale, codes));
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn err(r: Result<Dataset>) -> String {
        r.expect_err("opening should fail").to_string()
    }

    fn opts(mask: MaskKind, unknown: UnknownCodes) -> DatasetOptions {
        DatasetOptions { mask, unknown, ..DatasetOptions::default() }
    }

    #[test]
    fn prefetch_batches_keeps_the_order_and_stops_on_errors() {
        struct Failing(Vec<(RgbImage, LabelMap)>);
        impl PairSource for Failing {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn get(&self, index: usize) -> Result<(RgbImage, LabelMap)> {
                if index == 7 {
                    return Err(Error::format("pair 7", "unreadable"));
                }
                Ok(self.0[index].clone())
            }
        }
        let pairs: Vec<(RgbImage, LabelMap)> = (0..10).map(|i| (RgbImage::new(1, 1), LabelMap::new(1, 1, i as u8))).collect();
        let order = |b: u64| vec![(2 * b as usize + 3) % 10, (2 * b as usize + 4) % 10];
        let mut seen = Vec::new();
        prefetch_batches::<_, Error>(&pairs, 0..5, 2, order, |b, batch| {
            seen.push((b, batch.iter().map(|p| p.1.data[0]).collect::<Vec<_>>()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..5u64).map(|b| (b, order(b).iter().map(|&i| i as u8).collect())).collect::<Vec<_>>());
        // A read error reaches the caller after the batches before it.
        let mut done = Vec::new();
        let e = prefetch_batches::<_, Error>(&Failing(pairs.clone()), 0..5, 1, order, |b, _| {
            done.push(b);
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("pair 7"), "{e}");
        assert_eq!(done, vec![0, 1], "batch 2 holds pair 7");
        // The consumer stopping ends the reader (no hang on a full channel).
        let e = prefetch_batches::<_, Error>(&pairs, 0..1000, 1, order, |b, _| if b == 3 { Err(Error::format("step", "stop")) } else { Ok(()) }).unwrap_err();
        assert!(e.to_string().contains("stop"));
    }

    #[test]
    fn dataset_opens_valid_pairs_and_reads_classes() {
        let d = TempDir::new("ok");
        d.pair("a", 2, 2, &[10, 20, 100, 80]);
        d.pair("b", 2, 2, &[30; 4]);
        let ds = Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions::default()).unwrap();
        assert_eq!((ds.stems.clone(), ds.train.clone(), ds.test.len()), (vec!["a".to_string(), "b".into()], vec!["a".to_string(), "b".into()], 0));
        assert_eq!(ds.label("a", None).unwrap().data, vec![0, 1, IGNORE_INDEX, 7]);
        assert_eq!((ds.summary.pairs, ds.summary.train, ds.summary.unknown_pixels, ds.summary.class_pixels), (2, 2, 0, 7));
        // Another table for the same files is other training data.
        let mut swapped = ClassTable::ai_hub();
        swapped.classes.swap(0, 1);
        let other = Dataset::open_with(&d.0, swapped, &DatasetOptions::default()).unwrap();
        assert_ne!(ds.digest(false).unwrap(), other.digest(false).unwrap());
        // Other files are left out; a PNG named in upper case is named, not left out.
        d.write("labels/notes.txt", b"x");
        d.write("images/Thumbs.db", b"x");
        assert_eq!(Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions::default()).unwrap().stems.len(), 2);
        d.pair("c", 2, 2, &[30; 4]);
        std::fs::rename(d.0.join("images/c.png"), d.0.join("images/c.PNG")).unwrap();
        let e = err(Dataset::open(&d.0, ClassTable::ai_hub(), false));
        assert!(e.contains(&d.0.join("images/c.PNG").display().to_string()) && e.contains("rename it to .png"), "{e}");
    }

    #[test]
    fn dataset_size_mismatch_names_the_image_and_both_sizes() {
        let d = TempDir::new("size");
        d.pair("a", 2, 2, &[10; 4]);
        d.write("images/b.png", &RgbImage::new(3, 2).to_png());
        d.write("labels/b.png", &encode_png(2, 2, png::ColorType::Grayscale, &[10; 4]));
        let e = err(Dataset::open(&d.0, ClassTable::ai_hub(), false));
        assert!(e.contains(&d.0.join("images/b.png").display().to_string()) && e.contains("3×2") && e.contains("2×2") && e.contains("same size"), "{e}");
        // Labels only: the image is not read, so the mismatch does not matter.
        assert!(Dataset::open(&d.0, ClassTable::ai_hub(), true).is_ok());
    }

    /// A non-square tile is read as it is, but refused by name where it would be resized
    /// to a square side (training, the utility protocol), not stretched.
    #[test]
    fn dataset_refuses_to_stretch_a_non_square_tile() {
        let d = TempDir::new("square");
        d.pair("a", 2, 2, &[10; 4]);
        d.pair("wide", 4, 2, &[10; 8]);
        let ds = Dataset::open(&d.0, ClassTable::ai_hub(), false).unwrap();
        assert_eq!(ds.label("wide", None).unwrap().width, 4);
        let e = ds.label("wide", Some(2)).unwrap_err().to_string();
        assert!(e.contains(&d.0.join("labels/wide.png").display().to_string()) && e.contains("4×2") && e.contains("square"), "{e}");
        let e = ds.image("wide", Some(2)).unwrap_err().to_string();
        assert!(e.contains("images/wide.png") && e.contains("stretch"), "{e}");
        assert_eq!(ds.label("a", Some(2)).unwrap().width, 2);
        // Found when the dataset is opened, for training to refuse before its first step.
        d.pair("wider", 6, 2, &[10; 12]);
        let ds = Dataset::open(&d.0, ClassTable::ai_hub(), false).unwrap();
        assert_eq!(ds.summary.non_square_files, 2);
        let e = ds.require_square().unwrap_err().to_string();
        assert!(e.contains("labels/wide.png") && e.contains("4×2") && e.contains("1 more file"), "{e}");
        std::fs::remove_file(d.0.join("labels/wide.png")).unwrap();
        std::fs::remove_file(d.0.join("images/wide.png")).unwrap();
        std::fs::remove_file(d.0.join("labels/wider.png")).unwrap();
        std::fs::remove_file(d.0.join("images/wider.png")).unwrap();
        Dataset::open(&d.0, ClassTable::ai_hub(), false).unwrap().require_square().unwrap();
    }

    #[test]
    fn a_dataset_of_ignore_pixels_only_is_refused_for_training() {
        let d = TempDir::new("noclass");
        d.pair("a", 2, 2, &[100; 4]);
        let ds = Dataset::open(&d.0, ClassTable::ai_hub(), false).unwrap();
        let e = ds.require_class_pixels().unwrap_err().to_string();
        assert!(e.contains(&d.0.join("labels").display().to_string()) && e.contains("80 bare land, 100 ignore)") && e.contains("--classes FILE"), "{e}");
        assert!(!e.contains("--unknown-codes"), "{e}");
        // Values outside the table read as ignore: the hint names that too.
        d.pair("b", 2, 2, &[7; 4]);
        let ds = Dataset::open_with(&d.0, ClassTable::ai_hub(), &opts(MaskKind::Codes, UnknownCodes::Ignore)).unwrap();
        assert!(ds.require_class_pixels().unwrap_err().to_string().contains("--unknown-codes ignore"));
        d.pair("c", 2, 2, &[100, 100, 100, 10]);
        Dataset::open_with(&d.0, ClassTable::ai_hub(), &opts(MaskKind::Codes, UnknownCodes::Ignore)).unwrap().require_class_pixels().unwrap();
    }

    #[test]
    fn dataset_unknown_code_names_file_code_pixel_and_valid_codes() {
        let d = TempDir::new("unknown");
        d.pair("a", 2, 2, &[10; 4]);
        d.pair("b", 3, 3, &[10, 20, 30, 40, 7, 7, 10, 10, 10]);
        let e = err(Dataset::open(&d.0, ClassTable::ai_hub(), false));
        let file = d.0.join("labels/b.png").display().to_string();
        assert!(e.contains(&file) && e.contains("pixel (1, 1)") && e.contains("code 7") && e.contains("2 pixels of this file hold"), "{e}");
        assert!(e.contains("10 building") && e.contains("80 bare land") && e.contains("100 ignore") && e.contains("--unknown-codes ignore"), "{e}");
    }

    #[test]
    fn dataset_ignore_mode_maps_unknown_codes_to_ignore_and_counts_them() {
        let d = TempDir::new("ignore");
        d.pair("a", 2, 2, &[10, 0, 0, 255]);
        d.pair("b", 2, 2, &[20, 30, 40, 50]);
        d.pair("c", 2, 2, &[0, 60, 70, 100]);
        let ds = Dataset::open_with(&d.0, ClassTable::ai_hub(), &opts(MaskKind::Codes, UnknownCodes::Ignore)).unwrap();
        let s = &ds.summary;
        assert_eq!((s.unknown_pixels, s.unknown_files), (4, 2));
        assert_eq!(s.unknown_by_value, BTreeMap::from([(UnknownValue::Code(0), 3), (UnknownValue::Code(255), 1)]));
        assert_eq!(ds.label("a", None).unwrap().data, vec![0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]);
        assert_eq!(ds.label("c", None).unwrap().data, vec![IGNORE_INDEX, 5, 6, IGNORE_INDEX]);
        assert_eq!(ds.label("b", None).unwrap().data, vec![1, 2, 3, 4]);
        let text = s.to_string();
        assert!(text.contains("4 pixels in 2 label files") && text.contains("code 0: 3") && text.contains("code 255: 1"), "{text}");
    }

    #[test]
    fn dataset_palette_masks_decode_to_classes() {
        let classes = ClassTable::ai_hub();
        let map = LabelMap { width: 3, height: 3, data: vec![0, 1, 7, IGNORE_INDEX, 4, 2, 3, 5, 6] };
        let d = TempDir::new("palette");
        d.write("images/a.png", &RgbImage::new(3, 3).to_png());
        d.write("labels/a.png", &map.colorize(&classes).to_png());
        let ds = Dataset::open_with(&d.0, classes.clone(), &opts(MaskKind::Palette, UnknownCodes::Error)).unwrap();
        assert_eq!(ds.label("a", None).unwrap(), map);

        // RGBA works too (alpha is not read).
        let rgba: Vec<u8> = map.colorize(&classes).data.chunks(3).flat_map(|p| [p[0], p[1], p[2], 128]).collect();
        d.write("labels/a.png", &encode_png(3, 3, png::ColorType::Rgba, &rgba));
        assert_eq!(Dataset::open_with(&d.0, classes.clone(), &opts(MaskKind::Palette, UnknownCodes::Error)).unwrap().label("a", None).unwrap(), map);

        // A colour no class has: an error naming the file, the colour and the pixel, or ignore.
        let mut img = map.colorize(&classes);
        img.put(2, 1, [1, 2, 3]);
        d.write("labels/a.png", &img.to_png());
        let e = err(Dataset::open_with(&d.0, classes.clone(), &opts(MaskKind::Palette, UnknownCodes::Error)));
        assert!(e.contains("labels/a.png") && e.contains("#010203") && e.contains("pixel (2, 1)") && e.contains("#dc3c32 building"), "{e}");
        let ds = Dataset::open_with(&d.0, classes.clone(), &opts(MaskKind::Palette, UnknownCodes::Ignore)).unwrap();
        assert_eq!(ds.label("a", None).unwrap().data, vec![0, 1, 7, IGNORE_INDEX, 4, IGNORE_INDEX, 3, 5, 6]);
        assert_eq!(ds.summary.unknown_by_value, BTreeMap::from([(UnknownValue::Color([1, 2, 3]), 1)]));

        // The mask kinds do not read each other's files, and say which to use.
        let e = err(Dataset::open(&d.0, classes.clone(), false));
        assert!(e.contains("labels/a.png") && e.contains("grayscale") && e.contains("--mask palette"), "{e}");
        d.write("labels/a.png", &map.to_png(&classes));
        let e = err(Dataset::open_with(&d.0, classes.clone(), &opts(MaskKind::Palette, UnknownCodes::Error)));
        assert!(e.contains("labels/a.png") && e.contains("must be RGB") && e.contains("--mask codes"), "{e}");

        // A table whose colours cannot serve as a palette is refused.
        let mut bad = classes.clone();
        bad.classes[3].color = bad.classes[1].color;
        let e = err(Dataset::open_with(&d.0, bad, &opts(MaskKind::Palette, UnknownCodes::Error)));
        assert!(e.contains("street trees") && e.contains("parking lot") && e.contains("share colour"), "{e}");
    }

    #[test]
    fn dataset_missing_partner_files_are_named() {
        let d = TempDir::new("partner");
        d.pair("a", 2, 2, &[10; 4]);
        d.write("labels/b.png", &encode_png(2, 2, png::ColorType::Grayscale, &[10; 4]));
        let e = err(Dataset::open(&d.0, ClassTable::ai_hub(), false));
        assert!(e.contains(&d.0.join("images/b.png").display().to_string()) && e.contains("missing") && e.contains("labels/b.png has no image"), "{e}");
        assert!(Dataset::open(&d.0, ClassTable::ai_hub(), true).is_ok(), "labels only needs no images");

        std::fs::remove_file(d.0.join("labels/b.png")).unwrap();
        d.write("images/c.png", &RgbImage::new(2, 2).to_png());
        let e = err(Dataset::open(&d.0, ClassTable::ai_hub(), false));
        assert!(e.contains(&d.0.join("labels/c.png").display().to_string()) && e.contains("images/c.png has no label"), "{e}");
    }

    #[test]
    fn dataset_undecodable_files_are_named_with_the_count_of_others() {
        let d = TempDir::new("garbage");
        d.pair("a", 2, 2, &[10; 4]);
        d.pair("b", 2, 2, &[10; 4]);
        d.pair("c", 2, 2, &[10; 4]);
        d.write("labels/b.png", b"not a png");
        d.write("images/c.png", b"\x89PNG truncated");
        let e = err(Dataset::open(&d.0, ClassTable::ai_hub(), false));
        assert!(e.contains("labels/b.png") && e.contains("not a readable PNG") && e.contains("1 more file has problems"), "{e}");
        std::fs::remove_file(d.0.join("labels/b.png")).unwrap();
        std::fs::remove_file(d.0.join("images/b.png")).unwrap();
        let e = err(Dataset::open(&d.0, ClassTable::ai_hub(), false));
        assert!(e.contains("images/c.png") && e.contains("not a readable PNG") && !e.contains("more file"), "{e}");
    }

    #[test]
    fn split_is_deterministic_by_stem_and_near_the_fraction() {
        let stems: Vec<String> = (0..200).map(|i| format!("tile_{i:04}")).collect();
        let test: Vec<&String> = stems.iter().filter(|s| is_test_stem(s, 0.1)).collect();
        assert!((10..=30).contains(&test.len()), "{} of 200 stems in the test split at fraction 0.1", test.len());
        let test_half = stems.iter().filter(|s| is_test_stem(s, 0.5)).count();
        assert!((80..=120).contains(&test_half), "{test_half} of 200 at fraction 0.5");
        // A larger fraction only moves stems from train to test; 0 holds nothing out.
        assert!(test.iter().all(|s| is_test_stem(s, 0.5)));
        assert!(stems.iter().all(|s| !is_test_stem(s, 0.0)));
        // The same stems give the same split.
        let again: Vec<&String> = stems.iter().filter(|s| is_test_stem(s, 0.1)).collect();
        assert_eq!(test, again);
    }

    #[test]
    fn dataset_split_is_stable_when_files_are_added() {
        let d = TempDir::new("split");
        for i in 0..40 {
            d.pair(&format!("{i:03}"), 1, 1, &[10]);
        }
        let o = DatasetOptions { test_fraction: 0.3, ..DatasetOptions::default() };
        let a = Dataset::open_with(&d.0, ClassTable::ai_hub(), &o).unwrap();
        assert!(!a.test.is_empty() && !a.train.is_empty(), "{} test, {} train", a.test.len(), a.train.len());
        assert_eq!(a.test.len() + a.train.len(), 40);
        assert!(a.test.iter().all(|s| is_test_stem(s, 0.3)) && a.train.iter().all(|s| !is_test_stem(s, 0.3)));
        assert_eq!(a.test_stems_text(), a.test.iter().map(|s| format!("{s}\n")).collect::<String>());
        assert!(a.test.windows(2).all(|w| w[0] < w[1]), "sorted");
        for i in 40..70 {
            d.pair(&format!("{i:03}"), 1, 1, &[10]);
        }
        let b = Dataset::open_with(&d.0, ClassTable::ai_hub(), &o).unwrap();
        assert_eq!(b.stems.len(), 70);
        let old: BTreeSet<&String> = a.stems.iter().collect();
        assert_eq!(b.test.iter().filter(|s| old.contains(s)).collect::<Vec<_>>(), a.test.iter().collect::<Vec<_>>());
        assert_eq!(b.train.iter().filter(|s| old.contains(s)).collect::<Vec<_>>(), a.train.iter().collect::<Vec<_>>());
        // The digest covers the training split only.
        let all = Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions::default()).unwrap();
        assert_ne!(all.digest(false).unwrap(), b.digest(false).unwrap());
        assert_eq!(b.summary.to_string(), format!("70 files: {} for training, {} held out for testing (test fraction 0.3)", b.train.len(), b.test.len()));
    }

    /// With a group pattern every tile of a scene falls on one side; the share of groups
    /// held out follows the fraction; a stem the pattern misses and a bad pattern are
    /// errors naming them.
    #[test]
    fn split_by_group_keeps_a_scene_on_one_side() {
        let d = TempDir::new("groups");
        for scene in 0..30 {
            for tile in 0..3 {
                d.pair(&format!("scene{scene:02}_{tile}"), 1, 1, &[10]);
            }
        }
        let o = DatasetOptions { test_fraction: 0.3, split_group: Some(r"^(.*)_\d+$".into()), ..DatasetOptions::default() };
        let ds = Dataset::open_with(&d.0, ClassTable::ai_hub(), &o).unwrap();
        let scene = |s: &String| s.split('_').next().unwrap().to_string();
        let test: BTreeSet<String> = ds.test.iter().map(scene).collect();
        let train: BTreeSet<String> = ds.train.iter().map(scene).collect();
        assert!(test.is_disjoint(&train), "a scene on both sides: {:?}", test.intersection(&train).collect::<Vec<_>>());
        assert_eq!(ds.test.len(), 3 * test.len());
        assert!(!test.is_empty() && !train.is_empty());
        assert!(test.iter().all(|g| is_test_stem(g, 0.3)) && train.iter().all(|g| !is_test_stem(g, 0.3)));
        assert!(ds.summary.to_string().ends_with("(test fraction 0.3, split by 30 groups)"), "{}", ds.summary);
        // Without a capture group the whole match names the group.
        let prefix = Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions { split_group: Some("^scene[0-9]+".into()), ..o.clone() }).unwrap();
        assert_eq!(prefix.test, ds.test);
        d.pair("loose", 1, 1, &[10]);
        // Without a test split nothing is grouped, so such a stem is no error.
        assert_eq!(Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions { test_fraction: 0.0, ..o.clone() }).unwrap().stems.len(), 91);
        let e = err(Dataset::open_with(&d.0, ClassTable::ai_hub(), &o));
        assert!(e.contains("labels/loose.png") && e.contains(r"^(.*)_\d+$") && e.contains("names no group"), "{e}");
        let e = err(Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions { split_group: Some("(".into()), ..o }));
        assert!(e.contains("split_group") && e.contains("'(' is not a regular expression"), "{e}");
    }

    #[test]
    fn dataset_test_fraction_must_be_in_range_and_leave_training_data() {
        let d = TempDir::new("fraction");
        d.pair("a", 1, 1, &[10]);
        for f in [-0.1, 1.0, f64::NAN] {
            let e = err(Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions { test_fraction: f, ..DatasetOptions::default() }));
            assert!(e.contains("test_fraction"), "{f}: {e}");
        }
        // One stem, a fraction that holds it out: no training data left.
        let f = if is_test_stem("a", 0.5) { 0.5 } else { 0.999 };
        assert!(is_test_stem("a", f));
        let e = err(Dataset::open_with(&d.0, ClassTable::ai_hub(), &DatasetOptions { test_fraction: f, ..DatasetOptions::default() }));
        assert!(e.contains("all 1 files fall in the test split"), "{e}");
    }

    #[test]
    fn integer_shrink_averages_other_shrinks_filter_and_growth_uses_nearest() {
        let img = RgbImage { width: 2, height: 2, data: vec![0, 0, 0, 10, 20, 30, 20, 40, 60, 30, 60, 90] };
        assert_eq!(resize_rgb(&img, 1, 1).data, vec![15, 30, 45]);
        assert_eq!(resize_rgb(&img, 3, 3), img.resize_nearest(3, 3));
        // Columns black, white, black, white, black shrunk 5 → 2: nearest sampling would
        // keep two black columns; the filter gives the grey of the area.
        let stripes = RgbImage { width: 5, height: 1, data: [0u8, 255, 0, 255, 0].iter().flat_map(|&v| [v; 3]).collect() };
        assert_eq!(stripes.resize_nearest(2, 1).data, [0; 6]);
        let out = resize_rgb(&stripes, 2, 1);
        assert_eq!((out.width, out.height), (2, 1));
        assert!(out.data.iter().all(|&v| (80..=175).contains(&v)), "{:?}", out.data);
    }
}
