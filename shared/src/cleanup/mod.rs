//! Label-map cleanup: removes the specks, thin strips, "ramp" seams and unknown codes that
//! a generative model leaves in its label maps, so that no component smaller than a
//! threshold survives.
//!
//! ```
//! use shared::cleanup::{cleanup, decode_raw, CleanupOptions};
//! use shared::ClassTable;
//! let classes = ClassTable::ai_hub();
//! // A 4×4 map of code 10 (building) with one stray code 33 (not a class).
//! let mut codes = vec![10u8; 16];
//! codes[5] = 33;
//! let raw = decode_raw(&codes, 4, 4, &classes);
//! let opts = CleanupOptions { min_island: 16, out_size: Some(8), ..Default::default() };
//! let (clean, report) = cleanup(&raw, classes.len(), &opts);
//! assert_eq!((clean.width, clean.data.iter().all(|&v| v == 0)), (8, true));
//! assert_eq!(report.unknown_fixed, 1);
//! ```
//!
//! # Algorithm
//! One *pass* marks pixels, then fills every marked pixel with the majority label of its
//! unmarked 8-neighbours (see `majority.rs`: fronts grow inward, ties go to the lowest
//! class index, ignore only where no class is reachable). A pixel is marked when
//! - its value is [`UNKNOWN_INDEX`] (any value `>= k` other than [`IGNORE_INDEX`] counts
//!   as unknown);
//! - the per-class opening (erosion then dilation, square `(2r+1)²` element,
//!   `r = open_radius`) removes it from its class (`morphology.rs`);
//! - with `ramps`, it lies in a strip of at most [`MAX_RAMP_WIDTH`] pixels of one class
//!   between two other classes along a row or a column, the strip's class lying between
//!   the two in gray (index) order (`ramps.rs`);
//! - its 8-connected component has fewer than `min_island` pixels (`components.rs`) —
//!   except that when *no* component reaches `min_island`, the largest one (first in
//!   raster order among equals) is kept, so that the fill has somewhere to start.
//!
//! `open_radius` and `min_island` are given in output pixels and converted to the map's
//! own first ([`CleanupOptions::scaled`]); everything above is in the map's pixels.
//!
//! Ignore pixels are never marked. Passes with all four rules repeat until one marks
//! nothing or changes nothing (at most [`MAX_FULL_PASSES`]); then passes with the island
//! rule alone repeat until no island is left.
//!
//! **Termination.** Components are 8-connected and the fill takes labels from
//! 8-neighbours, so every pixel filled with class `c` touches a pixel of `c` that was
//! unmarked or filled before it: every component after a pass contains an unmarked pixel
//! of the pass. In an island-only pass the unmarked class pixels are exactly the
//! components that were not islands, so each such pass lowers the number of components by
//! at least the number of islands it marked (≥ 1, or the loop has stopped). It stops at the
//! latest when one component is left, which then stays even if it is small.
//!
//! **Idempotence.** When the full passes settle (the usual case), the output is a
//! fixed point: cleaning it again marks nothing, or changes nothing.
//!
//! # Layout
//! - `mod.rs` — the public API: [`cleanup`], [`CleanupOptions`], [`decode_raw`],
//!   [`decode_raw_png`], [`encode_raw_png`], [`UNKNOWN_INDEX`]; the pass loop.
//! - `morphology.rs` — the per-class opening, O(pixels) for any radius.
//! - `components.rs` — connected components, 8- (cleanup's) or 4-connected:
//!   [`Component`], [`Connectivity`], [`components`], [`components_with`],
//!   [`island_count`]; the label statistics in `eval` use them too.
//! - `ramps.rs` — ramp strips: [`ramp_pixel_share`], [`MAX_RAMP_WIDTH`].
//! - `majority.rs` — the majority fill of marked pixels.
//! - `report.rs` — [`CleanupReport`].
//! - `directory.rs` — cleaning a directory of label PNGs into another ([`clean_dir`],
//!   [`list_pngs`], the `cleanup.json` report [`DirReport`]), as `worker cleanup` does.

mod components;
pub mod directory;
mod majority;
mod morphology;
mod ramps;
mod report;

pub use components::{components, components_with, island_count, Component, Connectivity};
pub use directory::{clean_dir, list_pngs, DirReport, MapEntry};
pub use ramps::{ramp_pixel_share, MAX_RAMP_WIDTH};
pub use report::CleanupReport;

use serde::{Deserialize, Serialize};

use crate::classes::{ClassTable, IGNORE_INDEX};
use crate::dataset::MaskKind;
use crate::error::Result;
use crate::label::{self, LabelMap};

use components::{label_components, NO_COMPONENT};

/// Class index of a pixel whose raw code is not in the class table (see [`decode_raw`]).
/// Cleanup replaces every such pixel; it never appears in its output.
pub const UNKNOWN_INDEX: u8 = 254;

/// Passes with all rules before falling back to island-only passes.
pub const MAX_FULL_PASSES: u32 = 16;

/// How [`cleanup`] works. Sizes are in **output pixels**: pixels of the map as it comes
/// out (after the upscale to `out_size`, or the map's own when there is none), whatever
/// the resolution the cleanup runs at. A 64×64 map upscaled to 512 is cleaned with the
/// radius divided by 8 (rounded down) and the island size by 64 (rounded up)
/// ([`CleanupOptions::scaled`]), so the same settings keep the same roads and buildings at
/// any model resolution. A radius under one map pixel (2 at 64 → 512) turns the opening
/// off: the narrowest feature a map can hold is one map pixel (8 output pixels there),
/// which the opening should not remove. The island guarantee holds exactly for integer
/// scale factors; at others (64 → 100) a map pixel becomes one or two output pixels a
/// side, so a component may come out somewhat under `min_island` output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupOptions {
    /// Radius `r`, in output pixels, of the square `(2r+1) × (2r+1)` structuring element of
    /// the per-class opening; features narrower than `2r+1` output pixels are replaced. 0
    /// turns it off. Default 2: without a resize, a 6-px road stays and 4-px slivers go
    /// (with one, the radius is rounded down to whole map pixels: see above).
    #[serde(rename = "open_radius_px")]
    pub open_radius: u32,
    /// Components (8-connected) with fewer output pixels than this are merged into their
    /// surroundings. 0 or 1 turns it off. Default 100: a 12×12 building stays, specks up to
    /// 9×9 go; at 64 → 512 a single model pixel (64 output px) goes, 2×2 (256) stays.
    #[serde(rename = "min_island_px")]
    pub min_island: u32,
    /// Replace ramp strips (seams of at most [`MAX_RAMP_WIDTH`] pixels at the resolution the
    /// cleanup runs at, of a class whose gray level lies between its neighbours').
    pub ramps: bool,
    /// Nearest-neighbour upscale (or downscale) of the result to `size × size`.
    pub out_size: Option<u32>,
}

/// [`CleanupOptions::open_radius`]'s default, in output pixels.
pub const DEFAULT_OPEN_RADIUS: u32 = 2;
/// [`CleanupOptions::min_island`]'s default, in output pixels.
pub const DEFAULT_MIN_ISLAND: u32 = 100;

impl Default for CleanupOptions {
    fn default() -> Self {
        CleanupOptions { open_radius: DEFAULT_OPEN_RADIUS, min_island: DEFAULT_MIN_ISLAND, ramps: true, out_size: None }
    }
}

impl CleanupOptions {
    /// The same settings in pixels of a `width × height` map that is cleaned, then resized
    /// to `out_size × out_size`: radius `⌊r · min(width, height) / out⌋` (a map pixel's
    /// shorter side in output pixels, so no feature narrower than the radius asks is
    /// removed), island size `⌈m · (width / out) · (height / out)⌉` (a map pixel's area);
    /// `out_size` None (no resize needed afterwards).
    pub fn scaled(&self, width: u32, height: u32) -> CleanupOptions {
        // No resize asked: the map's pixels are the output's, whatever its shape.
        let Some(out) = self.out_size else { return *self };
        if (out == width && out == height) || width == 0 || height == 0 || out == 0 {
            return CleanupOptions { out_size: None, ..*self };
        }
        let (rx, ry) = (width as f64 / out as f64, height as f64 / out as f64);
        CleanupOptions {
            open_radius: (self.open_radius as f64 * rx.min(ry) + 1e-9).floor() as u32,
            min_island: (self.min_island as f64 * rx * ry - 1e-9).ceil().max(0.0) as u32,
            ramps: self.ramps,
            out_size: None,
        }
    }
}

/// Builds a map from raw codes, like [`LabelMap::from_codes`], but a code that is not in
/// the table becomes [`UNKNOWN_INDEX`] instead of an error (the ignore code becomes
/// [`IGNORE_INDEX`]).
///
/// # Panics
/// If `codes.len() != w * h`.
pub fn decode_raw(codes: &[u8], w: u32, h: u32, classes: &ClassTable) -> LabelMap {
    assert_eq!(codes.len(), w as usize * h as usize, "decode_raw: {} codes for a {w}×{h} map", codes.len());
    LabelMap { width: w, height: h, data: label::map_codes(codes, w, classes, UNKNOWN_INDEX).0 }
}

/// Decodes a label PNG of raw codes (8-bit grayscale, or indexed by the codes) like
/// [`decode_raw`] (the shared label decoder, unknown codes kept as [`UNKNOWN_INDEX`]).
/// Errors name `origin` and say what is wrong with the file.
pub fn decode_raw_png(bytes: &[u8], classes: &ClassTable, origin: &str) -> Result<LabelMap> {
    let on_unknown = label::OnUnknown::Replace(UNKNOWN_INDEX);
    label::decode_label_with(bytes, classes, MaskKind::Codes, on_unknown, label::Hints::None, origin).map(|(m, _)| m)
}

/// Encodes raw codes (any byte values, e.g. a model's output before cleanup) as an 8-bit
/// grayscale PNG, the format [`decode_raw_png`] reads.
///
/// # Panics
/// If `codes.len() != w * h`.
pub fn encode_raw_png(codes: &[u8], w: u32, h: u32) -> Vec<u8> {
    assert_eq!(codes.len(), w as usize * h as usize, "encode_raw_png: {} codes for a {w}×{h} map", codes.len());
    crate::label::encode_png(w, h, png::ColorType::Grayscale, codes)
}

const WHY_UNKNOWN: u8 = 1;
const WHY_OPENED: u8 = 2;
const WHY_RAMP: u8 = 4;
const WHY_ISLAND: u8 = 8;

/// Cleans `map` (class indices `0..k`, [`IGNORE_INDEX`], [`UNKNOWN_INDEX`]); see the
/// module doc. The output holds only `0..k` and [`IGNORE_INDEX`], has no component under
/// `opts.min_island` output pixels (unless it has a single component), and is upscaled to
/// `opts.out_size` if given. Deterministic. The report counts pixels of `map`.
///
/// # Panics
/// If `k > 254`, if `map.data` does not hold `width × height` values, or if
/// `opts.out_size == Some(0)`.
pub fn cleanup(map: &LabelMap, k: usize, opts: &CleanupOptions) -> (LabelMap, CleanupReport) {
    assert!(k <= UNKNOWN_INDEX as usize, "cleanup: at most {UNKNOWN_INDEX} classes, got {k}");
    let out_size = opts.out_size;
    // Everything below works in pixels of `map`.
    let opts = &opts.scaled(map.width, map.height);
    let (w, h) = (map.width as usize, map.height as usize);
    assert_eq!(map.data.len(), w * h, "cleanup: {} values for a {w}×{h} map", map.data.len());
    let n = w * h;

    let input: Vec<u8> = map.data.iter().map(|&v| if (v as usize) < k || v == IGNORE_INDEX { v } else { UNKNOWN_INDEX }).collect();
    let mut data = input.clone();
    let mut why = vec![0u8; n];
    let mut report = CleanupReport { unknown_fixed: input.iter().filter(|&&v| v == UNKNOWN_INDEX).count() as u64, ..Default::default() };

    if n > 0 {
        // Each entry: a state at the start of a full pass, its mark count, its islands, and
        // the islands removed on the way to it.
        let mut seen: Vec<(Vec<u8>, usize, u64, u64)> = Vec::new();
        for _ in 0..MAX_FULL_PASSES {
            let Marks { mut marked, own_may_stay, islands } = mark(&data, w, h, k, opts, true, &mut why);
            let count = marked.iter().filter(|&&m| m).count();
            if count == 0 {
                break;
            }
            seen.push((data.clone(), count, islands, report.islands_removed));
            majority::fill(&mut data, &mut marked, &own_may_stay, w, h, k);
            report.passes += 1;
            report.islands_removed += islands;
            if let Some(j) = seen.iter().position(|(s, _, _, _)| *s == data) {
                // A cycle (length 1: nothing changed). Settle on the member with no
                // island, fewest marks, smallest data: a choice that does not depend on
                // where the cycle was entered, so cleaning the result again ends there too.
                // The report counts the islands removed on the way to it, not around the cycle.
                let best = seen[j..].iter().min_by(|a, b| (a.2 > 0, a.1, &a.0).cmp(&(b.2 > 0, b.1, &b.0))).expect("non-empty");
                data.clone_from(&best.0);
                report.islands_removed = best.3;
                break;
            }
        }
        // Island-only passes: each lowers the component count (see the module doc), so at
        // most one per component; the bound is a backstop.
        for _ in 0..=n {
            let Marks { mut marked, own_may_stay, islands } = mark(&data, w, h, k, opts, false, &mut why);
            if !marked.contains(&true) {
                break;
            }
            majority::fill(&mut data, &mut marked, &own_may_stay, w, h, k);
            report.passes += 1;
            report.islands_removed += islands;
        }
    }

    let changed = |bit: u8| (0..n).filter(|&i| why[i] & bit != 0 && data[i] != input[i]).count() as u64;
    report.pixels_changed = (0..n).filter(|&i| data[i] != input[i]).count() as u64;
    report.ramp_pixels_fixed = changed(WHY_RAMP);
    report.opened_pixels_fixed = changed(WHY_OPENED);
    let mut out = LabelMap { width: map.width, height: map.height, data };
    report.islands_left = island_count(&out, k, opts.min_island) as u64;

    if let Some(s) = out_size {
        assert!(s > 0, "cleanup: out_size must be positive");
        if n == 0 {
            out = LabelMap::new(s, s, IGNORE_INDEX);
        } else if s != out.width || s != out.height {
            out = out.resize_nearest(s, s);
        }
    }
    (out, report)
}

/// Marks the pixels of one pass; returns the marks and the number of islands marked.
/// `full` applies all rules, otherwise unknown pixels and islands only. `why` collects the
/// reasons per pixel over the passes.
#[allow(clippy::needless_range_loop)] // grid code reads best with indices
fn mark(data: &[u8], w: usize, h: usize, k: usize, opts: &CleanupOptions, full: bool, why: &mut [u8]) -> Marks {
    let n = w * h;
    let is_class = |v: u8| (v as usize) < k;
    // This pass's reasons per pixel.
    let mut now = vec![0u8; n];
    for i in 0..n {
        if data[i] == UNKNOWN_INDEX {
            now[i] |= WHY_UNKNOWN;
        }
    }
    if full && opts.open_radius > 0 {
        let removed = morphology::opening_removed(data, w, h, opts.open_radius as usize);
        for i in 0..n {
            if removed[i] && is_class(data[i]) {
                now[i] |= WHY_OPENED;
            }
        }
    }
    if full && opts.ramps {
        let ramp = ramps::ramp_mask(data, w, h, k);
        for i in 0..n {
            if ramp[i] {
                now[i] |= WHY_RAMP;
            }
        }
    }

    let lab = label_components(data, w, h, k, Connectivity::Eight);
    // The largest component, first in raster order among equals.
    let largest = lab.comps.iter().enumerate().fold(None, |best: Option<(usize, u32)>, (id, c)| match best {
        Some((_, size)) if size >= c.size => best,
        _ => Some((id, c.size)),
    });
    let keep = match largest {
        Some((id, size)) if size < opts.min_island => Some(id as u32),
        _ => None,
    };
    let islands = lab.comps.iter().enumerate().filter(|&(id, c)| c.size < opts.min_island && keep != Some(id as u32)).count();
    if islands > 0 {
        for i in 0..n {
            let id = lab.ids[i];
            if id != NO_COMPONENT && lab.comps[id as usize].size < opts.min_island && keep != Some(id) {
                now[i] |= WHY_ISLAND;
            }
        }
    }
    // The fill needs an unmarked class pixel to start from: if every class pixel is
    // marked, the largest component stays. (Ignore pixels are never marked but give the
    // fill nothing: one of them must not turn the whole map to ignore.)
    if !(0..n).any(|i| now[i] == 0 && is_class(data[i])) {
        if let Some((id, _)) = largest {
            for i in 0..n {
                if lab.ids[i] == id as u32 {
                    now[i] = 0;
                }
            }
        }
    }
    for i in 0..n {
        why[i] |= now[i];
    }
    Marks { marked: now.iter().map(|&b| b != 0).collect(), own_may_stay: now.iter().map(|&b| b == WHY_OPENED).collect(), islands: islands as u64 }
}

/// One pass's marks (see [`majority::fill`]).
struct Marks {
    marked: Vec<bool>,
    /// Marked by the opening alone: may keep its label with a strict majority.
    own_may_stay: Vec<bool>,
    islands: u64,
}

#[cfg(test)]
mod tests;
