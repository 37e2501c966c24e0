//! Connected components of class pixels, 4- or 8-connected ([`Connectivity`]).
//!
//! Cleanup uses 8-connectivity (diagonal neighbours join) to match the majority fill,
//! which takes labels from all 8 neighbours: a pixel filled with label `c` always touches
//! a pixel of `c`, so filling never creates a new component — the fact the termination
//! argument in `mod.rs` rests on. The label statistics (`eval`'s `stats`) measure with
//! either. Ignore and unknown pixels (any value `>= k`) belong to no component.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::label::LabelMap;

/// Which pixels touch: 4 (sides) or 8 (sides and corners). Parses from and displays as
/// `4` / `8`; serialises as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connectivity {
    Four,
    /// What [`cleanup`](super::cleanup) uses.
    #[default]
    Eight,
}

impl FromStr for Connectivity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "4" => Ok(Connectivity::Four),
            "8" => Ok(Connectivity::Eight),
            _ => Err(format!("{s:?}: expected 4 (sides) or 8 (sides and corners)")),
        }
    }
}

impl fmt::Display for Connectivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connectivity::Four => "4",
            Connectivity::Eight => "8",
        })
    }
}

impl Serialize for Connectivity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            Connectivity::Four => 4,
            Connectivity::Eight => 8,
        })
    }
}

impl<'de> Deserialize<'de> for Connectivity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            4 => Ok(Connectivity::Four),
            8 => Ok(Connectivity::Eight),
            n => Err(serde::de::Error::custom(format!("connectivity {n}: expected 4 or 8"))),
        }
    }
}

/// One connected component of a class.
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

/// Labels the connected components of the pixels with a value `< k` in a `w × h` grid,
/// numbered in raster order of their first pixel.
pub(crate) fn label_components(data: &[u8], w: usize, h: usize, k: usize, conn: Connectivity) -> Labelled {
    let n = w * h;
    let mut ids = vec![NO_COMPONENT; n];
    let mut comps = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let diagonals = conn == Connectivity::Eight;
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
                    if !diagonals && nx != x && ny != y {
                        continue;
                    }
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
    components_with(map, k, Connectivity::Eight)
}

/// Like [`components`], with the given connectivity.
///
/// # Panics
/// If `map.data` does not hold `width × height` values.
pub fn components_with(map: &LabelMap, k: usize, conn: Connectivity) -> Vec<Component> {
    let (w, h) = (map.width as usize, map.height as usize);
    assert_eq!(map.data.len(), w * h, "components: {} values for a {w}×{h} map", map.data.len());
    label_components(&map.data, w, h, k, conn).comps
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

    #[test]
    fn four_connectivity_splits_diagonals() {
        // Same map: 4-connected, class 0's (2,2) is apart from the other three.
        let map = LabelMap { width: 3, height: 3, data: vec![0, 0, 1, 1, 0, 255, 1, 1, 0] };
        let comps = components_with(&map, 2, Connectivity::Four);
        assert_eq!(comps, vec![Component { class: 0, size: 3 }, Component { class: 1, size: 1 }, Component { class: 1, size: 3 }, Component { class: 0, size: 1 }]);
    }

    #[test]
    fn connectivity_parses_displays_and_serialises_as_its_number() {
        for (s, c) in [("4", Connectivity::Four), ("8", Connectivity::Eight)] {
            assert_eq!(s.parse::<Connectivity>().unwrap(), c);
            assert_eq!(c.to_string(), s);
            assert_eq!(serde_json::to_string(&c).unwrap(), s);
            assert_eq!(serde_json::from_str::<Connectivity>(s).unwrap(), c);
        }
        assert!("6".parse::<Connectivity>().is_err());
        assert!(serde_json::from_str::<Connectivity>("6").is_err());
    }
}
