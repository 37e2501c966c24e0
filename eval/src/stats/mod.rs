//! Label-quality statistics: how much a set of generated label maps looks like a set of
//! real ones, measured on the maps alone (no images, no model).
//!
//! ```
//! use eval::stats::{compare, LabelStats, StatsOptions};
//! use shared::LabelMap;
//! let opts = StatsOptions::default();
//! let mut real = LabelStats::new(2, opts);
//! let mut synthetic = LabelStats::new(2, opts);
//! real.add(&LabelMap { width: 2, height: 1, data: vec![0, 1] });
//! synthetic.add(&LabelMap { width: 2, height: 1, data: vec![0, 0] });
//! let d = compare(&real, &synthetic);
//! assert!((d.share_tv - 0.5).abs() < 1e-12);
//! ```
//!
//! # What is measured
//! A [`LabelStats`] is accumulated map by map ([`LabelStats::add`]; [`LabelStats::merge`]
//! joins partial sums from parallel workers), so a set of any size is measured without
//! holding its maps. It keeps integer counts only, so the result does not depend on the
//! order the maps came in. For `K` classes:
//! - **class pixel shares** — each class's share of the class pixels;
//! - **component sizes** — per class, a histogram of the sizes of its connected components
//!   over log2 bins (bin `b` holds sizes `2^b ..= 2^(b+1) - 1`), labelled by
//!   [`shared::cleanup::components_with`]; 8-connected by default, like
//!   [`shared::cleanup::components`], so that an "island" here is exactly what
//!   `worker cleanup --min-island-px` removes (at the maps' own size);
//! - **class adjacency** — for each ordered pair `(a, b)` of different classes, how many
//!   4-neighbour pixel pairs have `a` on one side and `b` on the other (each bordering pair
//!   counts for `(a, b)` and for `(b, a)`, so the matrix is symmetric), normalised to sum 1;
//! - **islands** — components smaller than `min_island` pixels: count, per class, per map;
//! - **ramp edges** — pixels in thin seams of a third class where two classes meet
//!   ([`shared::cleanup::ramp_pixel_share`]), as a share of the class pixels.
//!
//! Ignore pixels ([`shared::IGNORE_INDEX`], and any value `>= K`) take part in nothing:
//! they are no class's pixels, no component's, no border's and no ramp's, and they split
//! components. [`LabelStats::ignore_pixels`] counts them.
//!
//! [`compare`] turns two sets' statistics into a [`LabelComparison`]: total-variation
//! distances (half the L1 distance of two distributions, 0 identical, 1 disjoint) between
//! the class shares, between the adjacency matrices, and between each class's normalised
//! component-size histograms (averaged over the classes that either set has), and the two
//! sets' island and ramp figures side by side.
//!
//! # Layout
//! - `mod.rs` — [`LabelStats`], [`StatsOptions`], [`compare`], [`LabelComparison`].
//! - `tests.rs` — hand-computed examples.
//!
//! Their plots are drawn in [`crate::plot`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

/// Re-exported: the connectivity of components lives with them in `shared::cleanup`.
pub use shared::cleanup::Connectivity;
use shared::cleanup::{components_with, ramp_pixel_share, Component};
use shared::LabelMap;

/// Log2 size bins of the component-size histograms: bin `b` holds sizes
/// `2^b ..= 2^(b+1) - 1`, so 32 bins cover every `u32` size.
pub const SIZE_BINS: usize = 32;

/// The log2 bin of a component of `size` pixels (`size >= 1`).
pub fn size_bin(size: u64) -> usize {
    (63 - size.max(1).leading_zeros()) as usize
}

/// How [`LabelStats`] measures components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsOptions {
    /// Components with fewer pixels than this are islands (0 or 1: none are).
    pub min_island: u32,
    /// Connectivity of components (not of the adjacency, which is always 4-neighbour).
    pub connectivity: Connectivity,
}

impl Default for StatsOptions {
    /// `min_island` 16 and 8-connectivity.
    fn default() -> Self {
        StatsOptions { min_island: 16, connectivity: Connectivity::Eight }
    }
}

/// Statistics of a set of label maps with `k` classes, accumulated map by map. Integer
/// counts only; the normalised figures are methods. Serialises with both (see
/// [`LabelStats::serialize`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelStats {
    k: usize,
    options: StatsOptions,
    /// Maps added.
    pub maps: u64,
    /// Class pixels (values `< k`) over all maps.
    pub pixels: u64,
    /// Pixels with a value `>= k` (ignore) over all maps.
    pub ignore_pixels: u64,
    /// Pixels per class.
    pub class_pixels: Vec<u64>,
    /// Components per class.
    pub components: Vec<u64>,
    /// `component_bins[c][b]`: components of class `c` in size bin `b` (see [`size_bin`]).
    pub component_bins: Vec<[u64; SIZE_BINS]>,
    /// Islands (components under `min_island` pixels) per class.
    pub islands: Vec<u64>,
    /// `adjacency[a * k + b]`: 4-neighbour pixel pairs with `a` on one side, `b` on the
    /// other (`a != b`; the diagonal stays 0).
    pub adjacency: Vec<u64>,
    /// Ramp-edge pixels.
    pub ramp_pixels: u64,
    /// Maps per `(width, height)`.
    pub sizes: BTreeMap<(u32, u32), u64>,
}

impl LabelStats {
    /// Empty statistics for `k` classes.
    ///
    /// # Panics
    /// If `k` is 0 or over 254.
    pub fn new(k: usize, options: StatsOptions) -> Self {
        assert!((1..=254).contains(&k), "LabelStats: 1 to 254 classes, got {k}");
        LabelStats {
            k,
            options,
            maps: 0,
            pixels: 0,
            ignore_pixels: 0,
            class_pixels: vec![0; k],
            components: vec![0; k],
            component_bins: vec![[0; SIZE_BINS]; k],
            islands: vec![0; k],
            adjacency: vec![0; k * k],
            ramp_pixels: 0,
            sizes: BTreeMap::new(),
        }
    }

    /// Number of classes.
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn options(&self) -> StatsOptions {
        self.options
    }

    /// Adds one map.
    ///
    /// # Panics
    /// If `map.data` does not hold `width × height` values.
    pub fn add(&mut self, map: &LabelMap) {
        let (w, h, k) = (map.width as usize, map.height as usize, self.k);
        assert_eq!(map.data.len(), w * h, "LabelStats::add: {} values for a {w}×{h} map", map.data.len());
        let data = &map.data;
        self.maps += 1;
        *self.sizes.entry((map.width, map.height)).or_insert(0) += 1;
        let mut ignore = 0u64;
        for &v in data {
            if (v as usize) < k {
                self.class_pixels[v as usize] += 1;
            } else {
                ignore += 1;
            }
        }
        self.ignore_pixels += ignore;
        self.pixels += data.len() as u64 - ignore;

        // Adjacency: each pixel with its right and lower neighbour.
        for y in 0..h {
            for x in 0..w {
                let a = data[y * w + x];
                if a as usize >= k {
                    continue;
                }
                let mut border = |b: u8| {
                    if (b as usize) < k && b != a {
                        self.adjacency[a as usize * k + b as usize] += 1;
                        self.adjacency[b as usize * k + a as usize] += 1;
                    }
                };
                if x + 1 < w {
                    border(data[y * w + x + 1]);
                }
                if y + 1 < h {
                    border(data[(y + 1) * w + x]);
                }
            }
        }

        for Component { class, size } in components_with(map, k, self.options.connectivity) {
            let (c, size) = (class as usize, size as u64);
            self.components[c] += 1;
            self.component_bins[c][size_bin(size)] += 1;
            if size < self.options.min_island as u64 {
                self.islands[c] += 1;
            }
        }

        if !data.is_empty() {
            self.ramp_pixels += (ramp_pixel_share(map, k) * data.len() as f64).round() as u64;
        }
    }

    /// Adds another set's counts to these (partial sums from parallel workers).
    ///
    /// # Panics
    /// If the class counts or options differ.
    pub fn merge(&mut self, other: &LabelStats) {
        assert_eq!((self.k, self.options), (other.k, other.options), "LabelStats::merge: different classes or options");
        self.maps += other.maps;
        self.pixels += other.pixels;
        self.ignore_pixels += other.ignore_pixels;
        let add = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.class_pixels, &other.class_pixels);
        add(&mut self.components, &other.components);
        add(&mut self.islands, &other.islands);
        add(&mut self.adjacency, &other.adjacency);
        for (a, b) in self.component_bins.iter_mut().zip(&other.component_bins) {
            add(a, b);
        }
        self.ramp_pixels += other.ramp_pixels;
        for (size, n) in &other.sizes {
            *self.sizes.entry(*size).or_insert(0) += n;
        }
    }

    /// Each class's share of the class pixels (all 0 for a set without class pixels).
    pub fn class_shares(&self) -> Vec<f64> {
        normalise(&self.class_pixels)
    }

    /// The adjacency matrix normalised to sum 1, row-major `k × k` (all 0 when no two
    /// classes border anywhere).
    pub fn adjacency_shares(&self) -> Vec<f64> {
        normalise(&self.adjacency)
    }

    /// Class `c`'s component-size histogram normalised to sum 1 ([`SIZE_BINS`] entries,
    /// all 0 if the class has no component).
    pub fn size_histogram(&self, c: usize) -> Vec<f64> {
        normalise(&self.component_bins[c])
    }

    /// Islands over all classes.
    pub fn island_count(&self) -> u64 {
        self.islands.iter().sum()
    }

    /// Islands per map (0 for an empty set).
    pub fn islands_per_map(&self) -> f64 {
        ratio(self.island_count(), self.maps)
    }

    /// Ramp-edge pixels as a share of the class pixels.
    pub fn ramp_share(&self) -> f64 {
        ratio(self.ramp_pixels, self.pixels)
    }

    /// Components of class `c` per map.
    pub fn components_per_map(&self, c: usize) -> f64 {
        ratio(self.components[c], self.maps)
    }

    /// One past the highest non-empty size bin of any class (at least 1).
    pub fn used_bins(&self) -> usize {
        self.component_bins.iter().map(|bins| bins.iter().rposition(|&n| n > 0).map_or(0, |b| b + 1)).max().unwrap_or(0).max(1)
    }

    /// The most common map size (the first in `(width, height)` order among equals).
    pub fn most_common_size(&self) -> Option<(u32, u32)> {
        self.sizes
            .iter()
            .fold(None, |best: Option<((u32, u32), u64)>, (&s, &n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((s, n)),
            })
            .map(|(s, _)| s)
    }
}

/// What `labels.json` holds for one set: the counts and the normalised figures.
#[derive(Serialize)]
struct StatsView<'a> {
    classes: usize,
    min_island: u32,
    connectivity: Connectivity,
    maps: u64,
    pixels: u64,
    ignore_pixels: u64,
    sizes: Vec<SizeCount>,
    class_pixels: &'a [u64],
    class_shares: Vec<f64>,
    /// `k × k`, rows: the pixel's class, columns: its neighbour's.
    adjacency_pairs: Vec<&'a [u64]>,
    adjacency: Vec<Vec<f64>>,
    components: &'a [u64],
    components_per_map: Vec<f64>,
    /// Lower bound of each size bin (`2^b`), up to the highest bin in use.
    size_bin_min: Vec<u64>,
    /// Per class, components per size bin.
    component_bins: Vec<&'a [u64]>,
    /// Per class, the same normalised to sum 1.
    component_size_histograms: Vec<Vec<f64>>,
    islands: u64,
    islands_per_class: &'a [u64],
    islands_per_map: f64,
    ramp_pixels: u64,
    ramp_share: f64,
}

#[derive(Serialize)]
struct SizeCount {
    width: u32,
    height: u32,
    maps: u64,
}

impl Serialize for LabelStats {
    /// The counts and, beside them, the normalised figures (`class_shares`, `adjacency`,
    /// `component_size_histograms`, `islands_per_map`, `ramp_share`); histograms are cut
    /// after the highest size bin in use.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let k = self.k;
        let bins = self.used_bins();
        let adjacency = self.adjacency_shares();
        StatsView {
            classes: k,
            min_island: self.options.min_island,
            connectivity: self.options.connectivity,
            maps: self.maps,
            pixels: self.pixels,
            ignore_pixels: self.ignore_pixels,
            sizes: self.sizes.iter().map(|(&(width, height), &maps)| SizeCount { width, height, maps }).collect(),
            class_pixels: &self.class_pixels,
            class_shares: self.class_shares(),
            adjacency_pairs: self.adjacency.chunks(k).collect(),
            adjacency: adjacency.chunks(k).map(<[f64]>::to_vec).collect(),
            components: &self.components,
            components_per_map: (0..k).map(|c| self.components_per_map(c)).collect(),
            size_bin_min: (0..bins).map(|b| 1u64 << b).collect(),
            component_bins: self.component_bins.iter().map(|h| &h[..bins]).collect(),
            component_size_histograms: (0..k).map(|c| self.size_histogram(c)[..bins].to_vec()).collect(),
            islands: self.island_count(),
            islands_per_class: &self.islands,
            islands_per_map: self.islands_per_map(),
            ramp_pixels: self.ramp_pixels,
            ramp_share: self.ramp_share(),
        }
        .serialize(s)
    }
}

/// How far a synthetic set's statistics are from a real set's. Distances are total
/// variation (0: identical, 1: disjoint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelComparison {
    /// TV distance between the class pixel shares.
    pub share_tv: f64,
    /// Per class, synthetic share minus real share.
    pub share_diff: Vec<f64>,
    /// Mean of `component_size_tv` over the classes that either set has.
    pub component_size_tv: f64,
    /// Per class, TV distance between the normalised component-size histograms: 1 when
    /// only one set has the class, `None` when neither has it.
    pub component_size_tv_per_class: Vec<Option<f64>>,
    /// TV distance between the normalised adjacency matrices.
    pub adjacency_tv: f64,
    /// Islands per map: real, synthetic.
    pub islands_per_map: [f64; 2],
    /// Ramp-edge pixel share: real, synthetic.
    pub ramp_share: [f64; 2],
}

/// Compares two sets' statistics (see [`LabelComparison`]).
///
/// # Panics
/// If the sets have different class counts.
pub fn compare(real: &LabelStats, synthetic: &LabelStats) -> LabelComparison {
    assert_eq!(real.k, synthetic.k, "compare: {} classes against {}", real.k, synthetic.k);
    let (rs, ss) = (real.class_shares(), synthetic.class_shares());
    let per_class: Vec<Option<f64>> = (0..real.k)
        .map(|c| match (real.components[c] > 0, synthetic.components[c] > 0) {
            (false, false) => None,
            (true, true) => Some(tv(&real.size_histogram(c), &synthetic.size_histogram(c))),
            _ => Some(1.0),
        })
        .collect();
    let present: Vec<f64> = per_class.iter().flatten().copied().collect();
    LabelComparison {
        share_tv: tv(&rs, &ss),
        share_diff: ss.iter().zip(&rs).map(|(s, r)| s - r).collect(),
        component_size_tv: if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 },
        component_size_tv_per_class: per_class,
        adjacency_tv: tv(&real.adjacency_shares(), &synthetic.adjacency_shares()),
        islands_per_map: [real.islands_per_map(), synthetic.islands_per_map()],
        ramp_share: [real.ramp_share(), synthetic.ramp_share()],
    }
}

/// Total-variation distance `½ Σ |p_i − q_i|` of two distributions of equal length.
pub fn tv(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "tv: distributions of {} and {} entries", p.len(), q.len());
    0.5 * p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>()
}

/// Counts divided by their sum (all 0 when the sum is 0).
fn normalise(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts.iter().map(|&n| ratio(n, total)).collect()
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

#[cfg(test)]
mod tests;
