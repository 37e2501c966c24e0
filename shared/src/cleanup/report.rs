//! What a cleanup changed.

use serde::{Deserialize, Serialize};

/// Counts for one map (or, summed with [`CleanupReport::add`], for many). Pixel counts are
/// at the input resolution, before any upscale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Components smaller than `min_island` that were merged into their surroundings,
    /// summed over the passes.
    pub islands_removed: u64,
    /// Pixels whose final label differs from the input (unknown pixels included).
    pub pixels_changed: u64,
    /// Unknown pixels (codes not in the class table) replaced; always all of them.
    pub unknown_fixed: u64,
    /// Pixels found in a ramp strip whose label changed.
    pub ramp_pixels_fixed: u64,
    /// Pixels removed by the opening whose label changed.
    pub opened_pixels_fixed: u64,
    /// Components still under `min_island` in the output: 0 unless the map holds a single
    /// class component and it is that small.
    pub islands_left: u64,
    /// Mark-and-fill passes run (0 for a map that was already clean).
    pub passes: u64,
}

impl CleanupReport {
    /// Adds `other`'s counts to these (for totals over many maps).
    pub fn add(&mut self, other: &CleanupReport) {
        self.islands_removed += other.islands_removed;
        self.pixels_changed += other.pixels_changed;
        self.unknown_fixed += other.unknown_fixed;
        self.ramp_pixels_fixed += other.ramp_pixels_fixed;
        self.opened_pixels_fixed += other.opened_pixels_fixed;
        self.islands_left += other.islands_left;
        self.passes += other.passes;
    }
}
