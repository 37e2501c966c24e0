//! Per-class morphological opening with a square structuring element, in O(pixels)
//! whatever the radius and the number of classes.
//!
//! The opening of class `c` is the erosion of its mask followed by the dilation, both
//! with the `(2r+1) × (2r+1)` square. Outside the map counts as "another class", so a
//! feature narrower than `2r+1` is removed at the map's edge too, while a region at least
//! `2r+1` wide that touches the edge is kept whole.
//!
//! All classes are opened in one go: a pixel `q` is *eroded* when its whole window lies in
//! the map and holds a single label; a pixel `p` survives the opening of its own class iff
//! some eroded `q` lies within its window. (That `q`'s window contains `p`, so `q`'s label
//! is `p`'s: no per-class masks are needed.) Both steps are separable and computed with
//! run lengths, so the cost does not grow with the radius.

/// `removed[i]` is true where the opening of the pixel's own label removes it.
/// Every pixel is judged, ignore and unknown ones included; callers pick the ones they
/// care about. With `r == 0` nothing is removed.
#[allow(clippy::needless_range_loop)] // grid code reads best with indices
pub(crate) fn opening_removed(data: &[u8], w: usize, h: usize, r: usize) -> Vec<bool> {
    let n = w * h;
    debug_assert_eq!(data.len(), n);
    if r == 0 {
        return vec![false; n];
    }
    if w < 2 * r + 1 || h < 2 * r + 1 {
        // No window fits in the map: nothing is eroded, so nothing survives.
        return vec![true; n];
    }
    let r32 = r as u32;

    // Horizontal half of the erosion: the row window around x lies in the map and is
    // uniform. left/right = length of the run of equal labels ending/starting at x.
    let mut hu = vec![false; n];
    let mut right = vec![0u32; w];
    for y in 0..h {
        let row = &data[y * w..(y + 1) * w];
        right[w - 1] = 1;
        for x in (0..w - 1).rev() {
            right[x] = if row[x] == row[x + 1] { right[x + 1] + 1 } else { 1 };
        }
        let mut left = 0u32;
        for x in 0..w {
            left = if x > 0 && row[x] == row[x - 1] { left + 1 } else { 1 };
            hu[y * w + x] = left > r32 && right[x] > r32;
        }
    }

    // Vertical half: the column of `hu` pixels with equal labels around y covers the
    // window. up/down = run lengths of (hu && same label as the neighbour) per column.
    let mut up = vec![0u32; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            up[i] = if !hu[i] {
                0
            } else if y > 0 && hu[i - w] && data[i - w] == data[i] {
                up[i - w] + 1
            } else {
                1
            };
        }
    }
    let mut eroded = vec![false; n];
    let mut down = vec![0u32; w];
    for y in (0..h).rev() {
        for x in 0..w {
            let i = y * w + x;
            down[x] = if !hu[i] {
                0
            } else if y + 1 < h && hu[i + w] && data[i + w] == data[i] {
                down[x] + 1
            } else {
                1
            };
            eroded[i] = up[i] > r32 && down[x] > r32;
        }
    }

    // Dilation of `eroded` by the square, separable: horizontal then vertical, each as
    // "distance to the nearest true on either side ≤ r".
    let far = u32::MAX / 2;
    let mut dh = vec![false; n];
    let mut dist_right = vec![far; w];
    for y in 0..h {
        let row = &eroded[y * w..(y + 1) * w];
        let mut d = far;
        for x in (0..w).rev() {
            d = if row[x] { 0 } else { d.saturating_add(1) };
            dist_right[x] = d;
        }
        let mut d = far;
        for x in 0..w {
            d = if row[x] { 0 } else { d.saturating_add(1) };
            dh[y * w + x] = d <= r32 || dist_right[x] <= r32;
        }
    }
    let mut dist_down = vec![far; n];
    for y in (0..h).rev() {
        for x in 0..w {
            let i = y * w + x;
            dist_down[i] = if dh[i] {
                0
            } else if y + 1 < h {
                dist_down[i + w].saturating_add(1)
            } else {
                far
            };
        }
    }
    let mut removed = vec![false; n];
    let mut dist_up = vec![far; w];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            dist_up[x] = if dh[i] { 0 } else { dist_up[x].saturating_add(1) };
            removed[i] = !(dist_up[x] <= r32 || dist_down[i] <= r32);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force reference: per class, erode then dilate with the square.
    fn reference(data: &[u8], w: usize, h: usize, r: usize) -> Vec<bool> {
        let r = r as isize;
        let at = |x: isize, y: isize| -> Option<u8> { (x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h).then(|| data[y as usize * w + x as usize]) };
        let eroded = |x: isize, y: isize, c: u8| -> bool { (-r..=r).all(|dy| (-r..=r).all(|dx| at(x + dx, y + dy) == Some(c))) };
        let mut out = vec![false; w * h];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let c = data[y as usize * w + x as usize];
                let kept = (-r..=r).any(|dy| (-r..=r).any(|dx| at(x + dx, y + dy).is_some() && eroded(x + dx, y + dy, c)));
                out[y as usize * w + x as usize] = !kept;
            }
        }
        out
    }

    #[test]
    fn cleanup_opening_matches_brute_force_reference() {
        let (w, h) = (23, 17);
        for seed in 0..20u64 {
            // Blocky random labels so that some regions survive the opening.
            let data: Vec<u8> = (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    let block = crate::mix64(seed * 1000 + (x / 3 + (y / 4) * 10) as u64);
                    let noise = crate::mix64(seed * 7_777 + i as u64);
                    if noise.is_multiple_of(9) {
                        (noise % 4) as u8
                    } else {
                        (block % 4) as u8
                    }
                })
                .collect();
            for r in 0..=3 {
                assert_eq!(opening_removed(&data, w, h, r), reference(&data, w, h, r), "seed {seed} r {r}");
            }
        }
    }

    #[test]
    fn cleanup_opening_keeps_wide_regions_and_removes_thin_ones() {
        // Left 3 columns class 0, then a 2-wide strip of class 1, then class 2.
        let (w, h) = (8, 6);
        let data: Vec<u8> = (0..w * h)
            .map(|i| match i % w {
                0..=2 => 0,
                3..=4 => 1,
                _ => 2,
            })
            .collect();
        let removed = opening_removed(&data, w, h, 1);
        for i in 0..w * h {
            assert_eq!(removed[i], data[i] == 1, "pixel {i}");
        }
    }
}
