//! Building blocks and parking lots beside roads.
//!
//! Every road side is cut into lots (frontage, depth and setback drawn per lot, up to
//! three rows back from the road). Lots are tried nearest a few *village centres* first,
//! so buildings cluster into settlements along the roads rather than spreading evenly;
//! a lot is built only where all its pixels are free. Each class stops at its target: the
//! last lot is kept with the probability that makes the expected area equal the target.
//! Targets the road sides cannot hold are placed anywhere free, aligned with the nearest
//! road.

use super::canvas::{seg_dist2, Canvas, Pt, Shape};
use super::roads::{dist, frame, Road};
use super::{BUILDING, PARKING};
use crate::procedural::noise::Draw;

struct Lot {
    shape: Shape,
    class: u8,
    score: f32,
}

/// Places buildings and parking lots until their targets (pixels, by class index) are
/// met or no room is left.
pub(crate) fn place_urban(c: &mut Canvas, d: &mut Draw, guides: &[Road], targets: &[f64; 8], scale: f32) {
    if targets[BUILDING as usize] < 1.0 && targets[PARKING as usize] < 1.0 {
        return;
    }
    let n = c.size as f32;
    // Village centres: points on the roads.
    let villages: Vec<Pt> = (0..1 + d.below(3))
        .map(|_| {
            let g = &guides[d.below(guides.len())];
            let segs: Vec<(Pt, Pt)> = g.segments().collect();
            let (a, b) = segs[d.below(segs.len())];
            let t = d.f(0.0, 1.0);
            (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
        })
        .collect();
    let near = |p: Pt| villages.iter().map(|&v| dist(p, v)).fold(f32::INFINITY, f32::min);

    let mut lots = Vec::new();
    let row_step = 38.0 * scale;
    for g in guides {
        for (a, b) in g.segments() {
            let len = dist(a, b);
            let (u, nrm) = frame(a, b);
            for side in [-1.0f32, 1.0] {
                let nn = (nrm.0 * side, nrm.1 * side);
                let mut t = d.f(0.0, 10.0) * scale;
                while t < len {
                    let big = d.chance(0.12);
                    let grow = if big { d.f(1.5, 2.2) } else { 1.0 };
                    let front = d.f(11.0, 30.0) * scale * grow;
                    let depth = d.f(10.0, 24.0) * scale * grow;
                    for row in 0..3 {
                        let v0 = g.width / 2.0 + d.f(2.0, 6.0) * scale + row as f32 * row_step;
                        let shape = Shape::in_frame(a, u, nn, t, t + front, v0, v0 + depth);
                        let centre = (a.0 + u.0 * (t + front / 2.0) + nn.0 * v0, a.1 + u.1 * (t + front / 2.0) + nn.1 * v0);
                        let score = near(centre) + row as f32 * 15.0 * scale + d.f(0.0, 0.12) * n;
                        lots.push(Lot { shape, class: BUILDING, score });
                        let pf = front * d.f(0.9, 1.7);
                        let pd = d.f(14.0, 28.0) * scale;
                        let pv = g.width / 2.0 + d.f(1.0, 3.0) * scale + row as f32 * row_step;
                        let shape = Shape::in_frame(a, u, nn, t, t + pf, pv, pv + pd);
                        lots.push(Lot { shape, class: PARKING, score: score + d.f(0.0, 0.15) * n });
                    }
                    t += front + d.f(3.0, 9.0) * scale;
                }
            }
        }
    }
    lots.sort_by(|a, b| a.score.total_cmp(&b.score));
    let mut done = [false; 8];
    for lot in &lots {
        try_place(c, d, &lot.shape, lot.class, targets, &mut done);
        if done[BUILDING as usize] && done[PARKING as usize] {
            return;
        }
    }
    // Whatever the road sides could not hold goes anywhere free, aligned with the nearest
    // guide.
    for _ in 0..3000 {
        if done[BUILDING as usize] && done[PARKING as usize] {
            return;
        }
        let class = if !done[BUILDING as usize] && (done[PARKING as usize] || d.chance(0.6)) { BUILDING } else { PARKING };
        let p = (d.f(0.0, n), d.f(0.0, n));
        let mut best = (f32::INFINITY, (1.0, 0.0));
        for g in guides {
            for (a, b) in g.segments() {
                let d2 = seg_dist2(p, a, b);
                if d2 < best.0 {
                    best = (d2, frame(a, b).0);
                }
            }
        }
        let (hu, hv) = (d.f(6.0, 16.0) * scale, d.f(5.0, 12.0) * scale);
        let shape = Shape::Rect { c: p, u: best.1, hu: hu.max(1.5), hv: hv.max(1.5) };
        try_place(c, d, &shape, class, targets, &mut done);
    }
}

/// Paints `shape` with `class` if it is wholly free and the class is short of its target.
fn try_place(c: &mut Canvas, d: &mut Draw, shape: &Shape, class: u8, targets: &[f64; 8], done: &mut [bool; 8]) {
    let k = class as usize;
    let deficit = targets[k] - c.counts[k] as f64;
    if done[k] || deficit <= 0.0 {
        done[k] = true;
        return;
    }
    let (free, all) = c.census(shape);
    if all == 0 || free != all {
        return;
    }
    if all as f64 > deficit {
        // The last lot: keep it with the probability that makes the expectation exact.
        done[k] = true;
        if !d.chance((deficit / all as f64) as f32) {
            return;
        }
    }
    c.fill(shape, class);
}
