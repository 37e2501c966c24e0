//! The label layout: `(seed, size, class shares) → LabelMap`.
//!
//! Stages run in a fixed order on one [`canvas::Canvas`]; each claims only pixels no
//! earlier stage took, and aims at its class's share of the tile:
//!
//! 1. `roads.rs` — a connected road network of strips of varying width.
//! 2. `urban.rs` — buildings and parking lots on lots along the roads, in clusters.
//! 3. `vegetation.rs` — street trees lining some road sides.
//! 4. The classes left (forest, paddy, dry field, bare land) share what is still free in
//!    proportion to their targets, which absorbs any shortfall or overshoot of the stages
//!    above: `vegetation.rs` grows forest blobs, then `fields.rs` lays farmland plots.
//! 5. Any pixel still free takes a neighbour's class.
//!
//! Sizes are given for a 512 × 512 tile and scale with the tile, so a 128 tile looks like
//! a 512 tile shrunk.

mod canvas;
mod fields;
mod roads;
mod urban;
mod vegetation;

use super::noise::Draw;
use super::shares::{ClassShares, NUM_CLASSES};
use crate::label::LabelMap;

pub(crate) const BUILDING: u8 = 0;
pub(crate) const PARKING: u8 = 1;
pub(crate) const ROAD: u8 = 2;
pub(crate) const TREES: u8 = 3;
pub(crate) const PADDY: u8 = 4;
pub(crate) const DRY: u8 = 5;
pub(crate) const FOREST: u8 = 6;
pub(crate) const BARE: u8 = 7;

/// RNG stream of the layout (see [`crate::rng_for`]).
pub(crate) const LAYOUT_STREAM: u64 = 1;

/// Generates the label map of one `size × size` tile: class indices `0..8`, every pixel
/// labelled. A pure function of its arguments.
///
/// # Panics
/// If `size` is 0.
pub fn generate_labels(seed: u64, size: u32, shares: &ClassShares) -> LabelMap {
    assert!(size > 0, "tile size must be positive");
    let mut d = Draw::new(seed, LAYOUT_STREAM);
    let pixels = size as f64 * size as f64;
    let targets: [f64; NUM_CLASSES] = shares.normalized().map(|s| s * pixels);
    let scale = size as f32 / 512.0;
    let mut c = canvas::Canvas::new(size);

    let roads = roads::lay_roads(&mut c, &mut d, targets[ROAD as usize], scale);
    let guides = if roads.is_empty() { roads::virtual_guides(&mut d, size) } else { roads.clone() };
    urban::place_urban(&mut c, &mut d, &guides, &targets, scale);
    vegetation::line_trees(&mut c, &mut d, &guides, targets[TREES as usize], scale);

    // The rest of the tile, split among the remaining classes by their targets.
    let free = c.free() as f64;
    let rest = [FOREST, PADDY, DRY, BARE];
    let wanted: f64 = rest.iter().map(|&k| targets[k as usize]).sum();
    let mut rest_targets = [0.0; NUM_CLASSES];
    if wanted > 0.0 {
        for k in rest {
            rest_targets[k as usize] = targets[k as usize] * free / wanted;
        }
    }
    let forest_seed = d.u64();
    vegetation::grow_forest(&mut c, forest_seed, rest_targets[FOREST as usize].round() as u64, scale);
    let (a, b) = (guides[0].pts[0], guides[0].pts[1]);
    let angle = (b.1 - a.1).atan2(b.0 - a.0) + d.f(-0.05, 0.05);
    fields::lay_fields(&mut c, &mut d, angle, &rest_targets, scale);

    let top = shares.normalized().iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u8).unwrap_or(0);
    c.fill_leftovers(top);
    LabelMap { width: size, height: size, data: c.data }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean per-class pixel share of `n` tiles.
    fn mean_shares(shares: &ClassShares, n: u64, size: u32) -> [f64; NUM_CLASSES] {
        let mut counts = [0u64; NUM_CLASSES];
        for i in 0..n {
            let m = generate_labels(crate::sample_seed(77, i), size, shares);
            assert!(m.data.iter().all(|&v| (v as usize) < NUM_CLASSES), "tile {i} has a pixel outside 0..8");
            for (k, c) in m.class_counts(NUM_CLASSES).into_iter().enumerate() {
                counts[k] += c;
            }
        }
        let total = counts.iter().sum::<u64>() as f64;
        assert_eq!(total, (n * size as u64 * size as u64) as f64, "every pixel gets a class 0..8");
        counts.map(|c| c as f64 / total)
    }

    /// Over 100 tiles of 128 × 128, every class's share is within ±0.02 (absolute) of the
    /// configured share, and every class with a positive share appears.
    fn check_shares(shares: &ClassShares) {
        const TOL: f64 = 0.02;
        let want = shares.normalized();
        let got = mean_shares(shares, 100, 128);
        let worst = (0..NUM_CLASSES).map(|k| (got[k] - want[k]).abs()).fold(0.0, f64::max);
        eprintln!("shares over 100 tiles: got {got:.4?}, configured {want:.4?}, worst deviation {worst:.4}");
        for k in 0..NUM_CLASSES {
            assert!((got[k] - want[k]).abs() <= TOL, "class {k}: share {:.4}, configured {:.4} (tolerance ±{TOL}); all: {got:?}", got[k], want[k]);
            assert!(want[k] == 0.0 || got[k] > 0.0, "class {k} never appears");
        }
    }

    #[test]
    fn default_shares_are_met_over_100_tiles() {
        check_shares(&ClassShares::default());
    }

    #[test]
    fn custom_shares_are_met_over_100_tiles() {
        // Urban-heavy: much more building, parking and road than the default.
        check_shares(&ClassShares::new([0.25, 0.12, 0.22, 0.06, 0.05, 0.10, 0.10, 0.10]).unwrap());
        // Rural: little built-up land.
        check_shares(&ClassShares::new([0.03, 0.01, 0.06, 0.02, 0.40, 0.18, 0.25, 0.05]).unwrap());
    }

    #[test]
    fn a_zero_share_class_never_appears() {
        let s = ClassShares::parse("street_trees=0,bare_land=0,parking_lot=0").unwrap();
        for i in 0..20 {
            let m = generate_labels(crate::sample_seed(5, i), 128, &s);
            let c = m.class_counts(NUM_CLASSES);
            assert_eq!((c[TREES as usize], c[BARE as usize], c[PARKING as usize]), (0, 0, 0), "tile {i}");
        }
    }

    #[test]
    fn same_seed_same_labels_and_different_seeds_differ() {
        let s = ClassShares::default();
        assert_eq!(generate_labels(3, 96, &s), generate_labels(3, 96, &s));
        assert_ne!(generate_labels(3, 96, &s), generate_labels(4, 96, &s));
    }

    /// 4-connected components of the road pixels of a label map.
    fn road_components(m: &LabelMap) -> usize {
        let (w, h) = (m.width as usize, m.height as usize);
        let mut seen = vec![false; w * h];
        let mut comps = 0;
        let mut stack = Vec::new();
        for s in 0..w * h {
            if seen[s] || m.data[s] != ROAD {
                continue;
            }
            comps += 1;
            seen[s] = true;
            stack.push(s);
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                for (ok, j) in [(x > 0, i.wrapping_sub(1)), (x + 1 < w, i + 1), (y > 0, i.wrapping_sub(w)), (y + 1 < h, i + w)] {
                    if ok && !seen[j] && m.data[j] == ROAD {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        comps
    }

    #[test]
    fn roads_form_few_connected_components() {
        // Measured: every tile's roads form one 4-connected component (100 tiles of 256).
        const BOUND: usize = 1;
        let s = ClassShares::default();
        let mut worst = 0;
        let mut hist = [0usize; 8];
        for i in 0..100 {
            let m = generate_labels(crate::sample_seed(11, i), 256, &s);
            let n = road_components(&m);
            hist[n.min(7)] += 1;
            worst = worst.max(n);
        }
        eprintln!("road components per tile (100 tiles of 256), tiles by count 0..7+: {hist:?}; worst {worst}");
        assert!(worst <= BOUND, "roads must form at most {BOUND} 4-connected components per tile; worst tile has {worst} (tiles by count 0..7+: {hist:?})");
        assert!(hist[0] < 5, "roads missing from {} tiles of 100", hist[0]);
    }
}
