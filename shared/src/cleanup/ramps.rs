//! "Ramp" pixels: thin strips of one class between two other classes.
//!
//! A label map decoded from a gray encoding (class → gray level) that was blurred or
//! interpolated shows, where class `a` meets class `c`, a seam of the classes whose levels
//! lie between theirs: the rounding passes through `b` on its way from `a` to `c`. Such a
//! seam is a run of at most [`MAX_RAMP_WIDTH`] pixels of `b`, along a row or a column,
//! with `a` on one side and `c` on the other, and `b`'s gray level strictly between `a`'s
//! and `c`'s. The gray encoding orders levels by class index, so that is
//! `min(a, c) < b < max(a, c)`. A thin strip of a class *outside* that range (a 2-px road
//! between a building and a parking lot) cannot come from the rounding and stays; a thin
//! line of `b` inside a single class (`a == c`) is not a ramp either (the opening and the
//! island rule deal with that).

use crate::label::LabelMap;

/// Widest run (pixels) that counts as a ramp.
pub const MAX_RAMP_WIDTH: usize = 2;

/// `mask[i]` is true where pixel `i` belongs to a ramp. Only values `< k` take part,
/// as the strip and as its flanks.
pub(crate) fn ramp_mask(data: &[u8], w: usize, h: usize, k: usize) -> Vec<bool> {
    let mut mask = vec![false; w * h];
    // Rows: pixel (x, y) is data[y*w + x]; step 1. Columns: step w.
    for y in 0..h {
        mark_runs(data, &mut mask, y * w, 1, w, k);
    }
    for x in 0..w {
        mark_runs(data, &mut mask, x, w, h, k);
    }
    mask
}

/// Scans the line `start, start+step, …` (`len` pixels) for flanked short runs.
fn mark_runs(data: &[u8], mask: &mut [bool], start: usize, step: usize, len: usize, k: usize) {
    let at = |t: usize| data[start + t * step];
    let mut s = 0;
    while s < len {
        let b = at(s);
        let mut e = s;
        while e + 1 < len && at(e + 1) == b {
            e += 1;
        }
        if s > 0 && e + 1 < len && e - s < MAX_RAMP_WIDTH && (b as usize) < k {
            let (a, c) = (at(s - 1), at(e + 1));
            if (a as usize) < k && (c as usize) < k && a.min(c) < b && b < a.max(c) {
                for t in s..=e {
                    mask[start + t * step] = true;
                }
            }
        }
        s = e + 1;
    }
}

/// Share of the pixels of `map` (0.0 to 1.0) that are ramp pixels (see the module doc);
/// 0.0 for an empty map.
pub fn ramp_pixel_share(map: &LabelMap, k: usize) -> f64 {
    let n = map.data.len();
    if n == 0 {
        return 0.0;
    }
    let mask = ramp_mask(&map.data, map.width as usize, map.height as usize, k);
    mask.iter().filter(|&&m| m).count() as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_ramps_need_two_distinct_flanking_classes() {
        // One-row maps, so that only row runs matter.
        let row = |data: Vec<u8>| ramp_mask(&data, data.len(), 1, 3);
        assert_eq!(row(vec![0, 0, 1, 2, 2]), vec![false, false, true, false, false], "1 between 0 and 2");
        assert_eq!(row(vec![0, 0, 1, 0, 0]), vec![false; 5], "a line inside class 0 is no ramp");
        assert_eq!(row(vec![0, 1, 1, 1, 2]), vec![false; 5], "a run of 3 is too wide");
        assert_eq!(row(vec![0, 1, 1, 2, 2]), vec![false, true, true, false, false], "a run of 2 is a ramp");
        assert_eq!(row(vec![1, 1, 2, 0, 0]), vec![false; 5], "2 is not between 1 and 0 in gray order: no ramp");
        assert_eq!(row(vec![2, 0, 0, 1, 1]), vec![false; 5], "0 is below both flanks: no ramp");
        assert_eq!(row(vec![1, 1, 2, 2]), vec![false; 4], "a run at the edge has one flank only");
        assert_eq!(row(vec![0, 255, 2]), vec![false; 3], "ignore is never a ramp");
        assert_eq!(row(vec![255, 1, 2]), vec![false; 3], "ignore is never a flank");

        let map = LabelMap { width: 5, height: 1, data: vec![0, 1, 1, 2, 2] };
        assert!((ramp_pixel_share(&map, 3) - 2.0 / 5.0).abs() < 1e-12);
        // With k = 2, value 2 is not a class: no second flank.
        assert_eq!(ramp_pixel_share(&map, 2), 0.0);
    }

    #[test]
    fn cleanup_ramps_are_found_in_columns() {
        // Transposed row 0 of the test above.
        let data = vec![0, 0, 1, 2, 2];
        let mask = ramp_mask(&data, 1, 5, 3);
        assert_eq!(mask, vec![false, false, true, false, false]);
    }
}
