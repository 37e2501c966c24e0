//! Street trees and forest.
//!
//! - Street trees: rows of round crowns along road sides, touching the road edge. Sides
//!   are visited in a shuffled order and about half are skipped on the first pass, so
//!   some roads are lined and others are not; crowns are added one by one until the
//!   target is met (the last with the probability that makes the expectation exact).
//! - Forest: irregular blobs, the free pixels where a smooth fractal noise field is
//!   highest, exactly as many as the target asks for.

use super::canvas::{Canvas, Shape, FREE};
use super::roads::{dist, frame, Road};
use super::{BUILDING, FOREST, PARKING, TREES};
use crate::procedural::noise::{fbm, Draw};

pub(crate) fn line_trees(c: &mut Canvas, d: &mut Draw, guides: &[Road], target: f64, scale: f32) {
    if target < 1.0 {
        return;
    }
    let mut sides = Vec::new();
    for (gi, g) in guides.iter().enumerate() {
        for (si, _) in g.segments().enumerate() {
            sides.push((gi, si, 1.0f32));
            sides.push((gi, si, -1.0f32));
        }
    }
    d.shuffle(&mut sides);
    let k = TREES as usize;
    for pass in 0..3 {
        for &(gi, si, side) in &sides {
            if pass == 0 && d.chance(0.5) {
                continue;
            }
            let g = &guides[gi];
            let (a, b) = g.segments().nth(si).expect("segment index from enumerate");
            let (u, nrm) = frame(a, b);
            let len = dist(a, b);
            let r = (d.f(2.6, 4.6) * scale).max(1.2);
            let spacing = 2.0 * r * d.f(0.85, 1.2);
            let off = g.width / 2.0 + r * 0.9 + pass as f32 * 2.2 * r;
            let (t0, t1) = if d.chance(0.5) { (0.0, len) } else { (d.f(0.0, 0.4) * len, d.f(0.6, 1.0) * len) };
            let mut t = t0 + d.f(0.0, spacing);
            while t < t1 {
                let deficit = target - c.counts[k] as f64;
                if deficit <= 0.0 {
                    return;
                }
                let jitter = d.f(-0.15, 0.15) * r;
                let cr = r * d.f(0.85, 1.15);
                let p = (a.0 + u.0 * t + nrm.0 * side * (off + jitter), a.1 + u.1 * t + nrm.1 * side * (off + jitter));
                let disc = Shape::Disc { c: p, r: cr };
                let (free, _) = c.census(&disc);
                if free > 0 {
                    if free as f64 > deficit && !d.chance((deficit / free as f64) as f32) {
                        return;
                    }
                    c.fill(&disc, TREES);
                }
                t += spacing;
            }
        }
    }
}

/// Makes `target` free pixels forest: those where a smooth noise field is highest.
pub(crate) fn grow_forest(c: &mut Canvas, seed: u64, target: u64, scale: f32) {
    if target == 0 {
        return;
    }
    let n = c.size;
    // About three blobs across a 512 tile; the detail octaves fray the edges.
    let freq = 1.0 / (170.0 * scale.max(0.05));
    // Forest keeps away from settlements: cells of about 16 px next to a building or a
    // parking lot are less likely to become forest, so gaps between houses stay open land.
    let cell = ((16.0 * scale) as i32).max(2);
    let gw = (n + cell - 1) / cell;
    let mut built = vec![false; (gw * gw) as usize];
    for (i, &v) in c.data.iter().enumerate() {
        if v == BUILDING || v == PARKING {
            let (x, y) = (i as i32 % n, i as i32 / n);
            built[((y / cell) * gw + x / cell) as usize] = true;
        }
    }
    let near_built = |x: i32, y: i32| {
        let (cx, cy) = (x / cell, y / cell);
        (cy - 1..=cy + 1).any(|yy| (cx - 1..=cx + 1).any(|xx| xx >= 0 && yy >= 0 && xx < gw && yy < gw && built[(yy * gw + xx) as usize]))
    };
    let mut vals: Vec<(f32, u32)> = Vec::new();
    for y in 0..n {
        for x in 0..n {
            let i = (y * n + x) as usize;
            if c.data[i] == FREE {
                let v = fbm(seed, 11, x as f32, y as f32, freq, 5) - if near_built(x, y) { 0.2 } else { 0.0 };
                vals.push((v, i as u32));
            }
        }
    }
    let take = (target as usize).min(vals.len());
    if take == 0 {
        return;
    }
    let cut = vals.len() - take;
    vals.select_nth_unstable_by(cut, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for &(_, i) in &vals[cut..] {
        c.data[i as usize] = FOREST;
    }
    c.counts[FOREST as usize] += take as u64;
}
