//! 8-connected components of class pixels.
//!
//! Connectivity is 8 (diagonal neighbours join) to match the majority fill, which takes
//! labels from all 8 neighbours: a pixel filled with label `c` always touches a pixel of
//! `c`, so filling never creates a new component — the fact the termination argument in
//! `mod.rs` rests on. Ignore and unknown pixels belong to no component.

use serde::{Deserialize, Serialize};

use crate::label::LabelMap;

/// One 8-connected component of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Class index `0..k`.
    pub class: u8,
    /// Pixels.
    pub size: u32,
}

/// `ids[i]` is the component of pixel `i` (an index into `comps`), or [`NO_COMPONENT`].
pub(crate) struct Labelled {
    pub ids: Vec<u32>,
    pub comps: Vec<Component>,
}

pub(crate) const NO_COMPONENT: u32 = u32::MAX;

/// Labels the 8-connected components of the pixels with a value `< k`, numbered in
/// raster order of their first pixel.
pub(crate) fn label_components(data: &[u8], w: usize, h: usize, k: usize) -> Labelled {
    let n = w * h;
    let mut ids = vec![NO_COMPONENT; n];
    let mut comps = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..n {
        let c = data[start];
        if ids[start] != NO_COMPONENT || c as usize >= k {
            continue;
        }
        let id = comps.len() as u32;
        let mut size = 0u32;
        ids[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % w, i / w);
            let (x0, x1) = (x.saturating_sub(1), (x + 1).min(w - 1));
            let (y0, y1) = (y.saturating_sub(1), (y + 1).min(h - 1));
            for ny in y0..=y1 {
                for nx in x0..=x1 {
                    let j = ny * w + nx;
                    if ids[j] == NO_COMPONENT && data[j] == c {
                        ids[j] = id;
                        stack.push(j);
                    }
                }
            }
        }
        comps.push(Component { class: c, size });
    }
    Labelled { ids, comps }
}

/// The 8-connected components of every class `0..k` in `map`, in raster order of their
/// first pixel. Ignore pixels and values `>= k` belong to none.
pub fn components(map: &LabelMap, k: usize) -> Vec<Component> {
    label_components(&map.data, map.width as usize, map.height as usize, k).comps
}

/// How many 8-connected class components of `map` have fewer than `min_island` pixels.
pub fn island_count(map: &LabelMap, k: usize, min_island: u32) -> usize {
    components(map, k).iter().filter(|c| c.size < min_island).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_components_are_8_connected_and_skip_ignore() {
        // 0 0 1
        // 1 0 255
        // 1 1 0      -> class 0: {(0,0),(1,0),(1,1),(2,2)} one component (diagonal);
        //               class 1: {(2,0)} and {(0,1),(0,2),(1,2)}.
        let map = LabelMap { width: 3, height: 3, data: vec![0, 0, 1, 1, 0, 255, 1, 1, 0] };
        let comps = components(&map, 2);
        assert_eq!(comps, vec![Component { class: 0, size: 4 }, Component { class: 1, size: 1 }, Component { class: 1, size: 3 }]);
        assert_eq!(island_count(&map, 2, 2), 1);
        assert_eq!(island_count(&map, 2, 4), 2);
        assert_eq!(island_count(&map, 2, 5), 3);
    }
}
