//! Majority fill: marked pixels take the most frequent label among their unmarked
//! 8-neighbours, one at a time, most confident first, until none is left.
//!
//! A marked pixel is a candidate once it touches an unmarked *class* pixel; its choice is
//! the label with the most votes among those neighbours (ties → the lowest class index).
//! Candidates are filled one at a time, front by front: the *layer* of a candidate is 0
//! if it touches an unmarked pixel at the start, else one more than that of the first
//! filled neighbour that made it a candidate. The lowest layer goes first, then the most
//! votes, then the lowest pixel index; a filled pixel becomes an ordinary neighbour and its
//! marked neighbours are re-evaluated. So fronts grow inward from the edges of a marked
//! region, both sides of a gap advance alike, and the result is a pure function of the map
//! and the marks.
//!
//! Filling one pixel at a time matters: with all candidates of a front updated at once,
//! two marked neighbours can swap labels on every pass and the passes never settle
//! (synchronous majority dynamics have 2-cycles; sequential ones do not).
//!
//! A marked pixel's own label is not a candidate — it was marked for not belonging there —
//! unless no other label is around, or the caller lets it stay (`own_may_stay`: pixels
//! marked by the opening alone) and it has strictly more votes than any other label.
//!
//! Ignore pixels are never chosen while a class is reachable: only when no marked pixel
//! touches an unmarked class pixel any more do the marked pixels left (whose regions are
//! then bordered by ignore only) become ignore. If every pixel is marked, the class pixels
//! keep their label and seed the fill; a map with no class pixel at all becomes ignore.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::classes::IGNORE_INDEX;

/// A heap entry: (lowest layer first, most votes, lowest index, stamp, label).
type Entry = (Reverse<u32>, u16, Reverse<usize>, u32, u8);

struct Grid {
    w: usize,
    h: usize,
    k: usize,
}

impl Grid {
    fn neighbours(&self, i: usize) -> impl Iterator<Item = usize> {
        let (w, h) = (self.w, self.h);
        let (x, y) = (i % w, i / w);
        let (x0, x1) = (x.saturating_sub(1), (x + 1).min(w - 1));
        let (y0, y1) = (y.saturating_sub(1), (y + 1).min(h - 1));
        (y0..=y1).flat_map(move |ny| (x0..=x1).map(move |nx| ny * w + nx)).filter(move |&j| j != i)
    }

    /// The label pixel `i` would take now and its votes; `None` if no unmarked class
    /// pixel touches it.
    fn choose(&self, i: usize, data: &[u8], marked: &[bool], own_may_stay: bool, counts: &mut [u16; 256]) -> Option<(u16, u8)> {
        let own = data[i];
        let mut best = (0u16, u8::MAX);
        let mut own_votes = 0u16;
        for j in self.neighbours(i) {
            let v = data[j];
            if !marked[j] && (v as usize) < self.k {
                if v == own {
                    own_votes += 1;
                    continue;
                }
                counts[v as usize] += 1;
                let c = counts[v as usize];
                if c > best.0 || (c == best.0 && v < best.1) {
                    best = (c, v);
                }
            }
        }
        for j in self.neighbours(i) {
            counts[data[j] as usize] = 0;
        }
        if best.0 == 0 && own_votes == 0 {
            None
        } else if best.0 == 0 || (own_may_stay && own_votes > best.0) {
            Some((own_votes, own))
        } else {
            Some(best)
        }
    }
}

/// Fills every `marked` pixel of `data` (row-major, `w × h`, classes `0..k`); on return
/// nothing is marked. Where `own_may_stay[i]`, pixel `i` keeps its label if that label
/// alone has the most votes.
pub(crate) fn fill(data: &mut [u8], marked: &mut [bool], own_may_stay: &[bool], w: usize, h: usize, k: usize) {
    let n = w * h;
    let mut remaining = marked.iter().filter(|&&m| m).count();
    if remaining == 0 {
        return;
    }
    let g = Grid { w, h, k };
    let mut counts = [0u16; 256];
    // Entries: (lowest layer first, most votes, lowest index, stamp, label); an entry whose
    // stamp is not the pixel's current one is stale.
    let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
    let mut stamp = vec![0u32; n];
    let mut layer = vec![u32::MAX; n];
    let seed = |heap: &mut BinaryHeap<_>, layer: &mut [u32], data: &[u8], marked: &[bool], counts: &mut [u16; 256]| {
        for i in 0..n {
            if marked[i] {
                if let Some((votes, label)) = g.choose(i, data, marked, own_may_stay[i], counts) {
                    layer[i] = 0;
                    heap.push((Reverse(0), votes, Reverse(i), 0u32, label));
                }
            }
        }
    };
    seed(&mut heap, &mut layer, data, marked, &mut counts);

    loop {
        while let Some((Reverse(li), _, Reverse(i), st, label)) = heap.pop() {
            if !marked[i] || st != stamp[i] {
                continue;
            }
            data[i] = label;
            marked[i] = false;
            remaining -= 1;
            for j in g.neighbours(i) {
                if marked[j] {
                    stamp[j] += 1;
                    layer[j] = layer[j].min(li + 1);
                    if let Some((votes, label)) = g.choose(j, data, marked, own_may_stay[j], &mut counts) {
                        heap.push((Reverse(layer[j]), votes, Reverse(j), stamp[j], label));
                    }
                }
            }
        }
        if remaining == 0 {
            return;
        }
        if remaining < n {
            // No marked pixel touches a class any more: what is left is bordered by ignore
            // only.
            for i in 0..n {
                if marked[i] {
                    marked[i] = false;
                    data[i] = IGNORE_INDEX;
                }
            }
            return;
        }
        // Everything is marked: class pixels keep their label and seed the fill.
        for i in 0..n {
            if (data[i] as usize) < k {
                marked[i] = false;
                remaining -= 1;
            }
        }
        if remaining == n {
            data.fill(IGNORE_INDEX);
            marked.fill(false);
            return;
        }
        stamp.fill(0);
        layer.fill(u32::MAX);
        seed(&mut heap, &mut layer, data, marked, &mut counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_fill_takes_the_majority_and_breaks_ties_low() {
        // 1 1 1
        // 2 X 2     X marked: neighbours 1,1,1,2,2,2,2,2 → 2 (five) wins.
        // 2 2 2
        let mut data = vec![1, 1, 1, 2, 0, 2, 2, 2, 2];
        let mut marked = vec![false; 9];
        marked[4] = true;
        fill(&mut data, &mut marked, &[false; 9], 3, 3, 3);
        assert_eq!(data[4], 2);
        // The pixel's own label (2) loses to any other: 1 with three votes.
        let mut data = vec![1, 1, 1, 2, 2, 2, 2, 2, 2];
        let mut marked = vec![false; 9];
        marked[4] = true;
        fill(&mut data, &mut marked, &[false; 9], 3, 3, 3);
        assert_eq!(data[4], 1);
        // Allowed to stay, its own label needs strictly more votes than any other.
        let mut data = vec![1, 1, 1, 2, 2, 2, 2, 2, 2];
        let mut marked = vec![false; 9];
        marked[4] = true;
        let mut may_stay = vec![false; 9];
        may_stay[4] = true;
        fill(&mut data, &mut marked, &may_stay, 3, 3, 3);
        assert_eq!(data[4], 2);
        let mut data = vec![1, 1, 1, 1, 2, 2, 2, 2, 0];
        let mut marked = vec![false; 9];
        marked[4] = true;
        fill(&mut data, &mut marked, &may_stay, 3, 3, 3);
        assert_eq!(data[4], 1, "a tie goes against the own label");
        // Four of each: the lower index wins.
        let mut data = vec![1, 1, 1, 1, 0, 2, 2, 2, 2];
        let mut marked = vec![false; 9];
        marked[4] = true;
        fill(&mut data, &mut marked, &[false; 9], 3, 3, 3);
        assert_eq!(data[4], 1);
    }

    #[test]
    fn cleanup_fill_grows_inward_and_prefers_classes_over_ignore() {
        // A 3-wide run of marked pixels between 0 and 1 (seven of each above and below):
        // filled one at a time from the ends, most votes first.
        let mut data = vec![0, 9, 9, 9, 1];
        let mut marked = vec![false, true, true, true, false];
        fill(&mut data, &mut marked, &[false; 5], 5, 1, 3);
        assert_eq!(data, vec![0, 0, 0, 1, 1], "layer 0 (pixels 1 and 3) first, then pixel 2 (a tie: the lower class)");
        // A 5-wide row: class 0 on the left, ignore on the right, three marked pixels.
        let mut data = vec![0, 9, 9, 9, IGNORE_INDEX];
        let mut marked = vec![false, true, true, true, false];
        fill(&mut data, &mut marked, &[false; 5], 5, 1, 3);
        assert_eq!(data, vec![0, 0, 0, 0, IGNORE_INDEX]);
        assert!(marked.iter().all(|&m| !m));
        // Only ignore around: ignore.
        let mut data = vec![IGNORE_INDEX, 1, IGNORE_INDEX];
        let mut marked = vec![false, true, false];
        fill(&mut data, &mut marked, &[false; 3], 3, 1, 3);
        assert_eq!(data, vec![IGNORE_INDEX; 3]);
        // Only its own label around: it stays.
        let mut data = vec![1, 1, 1];
        let mut marked = vec![false, true, false];
        fill(&mut data, &mut marked, &[false; 3], 3, 1, 3);
        assert_eq!(data, vec![1, 1, 1]);
        // Everything marked: classes stay and fill the rest.
        let mut data = vec![1, 254, 254];
        let mut marked = vec![true, true, true];
        fill(&mut data, &mut marked, &[false; 3], 3, 1, 3);
        assert_eq!(data, vec![1, 1, 1]);
        // Nothing but unknown: ignore.
        let mut data = vec![254, 254];
        let mut marked = vec![true, true];
        fill(&mut data, &mut marked, &[false; 2], 2, 1, 3);
        assert_eq!(data, vec![IGNORE_INDEX; 2]);
    }
}
