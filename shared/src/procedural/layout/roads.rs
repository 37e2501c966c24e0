//! The road network: a connected web of strips of varying width.
//!
//! Two *through roads* come first, one running across the tile and one down it (gently
//! bent polylines from edge to edge, which therefore cross); more through roads and
//! *side roads* follow. A side road starts on the centre line of an existing road and runs
//! at a right angle until it meets another road or leaves the tile (now and then it stops
//! short, a dead end), so every road touches the network. Roads are added until the road
//! share is met; the last one is narrowed to fit, or kept with the probability that makes
//! the expected road area equal the target.

use super::canvas::{Canvas, Pt, Shape, FREE};
use super::ROAD;
use crate::procedural::noise::Draw;

/// A road: a polyline centre line and a width, in pixels.
#[derive(Debug, Clone)]
pub(crate) struct Road {
    pub pts: Vec<Pt>,
    pub width: f32,
}

impl Road {
    pub fn segments(&self) -> impl Iterator<Item = (Pt, Pt)> + '_ {
        self.pts.windows(2).map(|w| (w[0], w[1]))
    }

    fn length(&self) -> f32 {
        self.segments().map(|(a, b)| dist(a, b)).sum()
    }
}

pub(crate) fn dist(a: Pt, b: Pt) -> f32 {
    ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
}

/// Unit direction and unit left normal of a segment.
pub(crate) fn frame(a: Pt, b: Pt) -> (Pt, Pt) {
    let l = dist(a, b).max(1e-6);
    let u = ((b.0 - a.0) / l, (b.1 - a.1) / l);
    (u, (-u.1, u.0))
}

/// A gently bent polyline across (`horizontal`) or down the tile, reaching past both
/// edges.
fn through_line(d: &mut Draw, n: f32, horizontal: bool, across: f32) -> Vec<Pt> {
    let drift = d.f(-0.22, 0.22) * n;
    let bends = d.below(3);
    let mut ts = vec![-0.06 * n, 1.06 * n];
    for _ in 0..bends {
        ts.push(d.f(0.2, 0.8) * n);
    }
    ts.sort_by(f32::total_cmp);
    ts.iter()
        .enumerate()
        .map(|(i, &t)| {
            let wobble = if i == 0 || i + 1 == ts.len() { 0.0 } else { d.f(-0.04, 0.04) * n };
            let c = across + drift * (t / n - 0.5) + wobble;
            if horizontal {
                (t, c)
            } else {
                (c, t)
            }
        })
        .collect()
}

/// Lines for stages that follow roads when the tile has none (no road share): they guide
/// building lots and tree rows but are not painted.
pub(crate) fn virtual_guides(d: &mut Draw, size: u32) -> Vec<Road> {
    let n = size as f32;
    let h = d.chance(0.5);
    [h, !h]
        .into_iter()
        .map(|horizontal| {
            let across = d.f(0.25, 0.75) * n;
            Road { pts: through_line(d, n, horizontal, across), width: 0.0 }
        })
        .collect()
}

/// A side road from a point on an existing road's centre line, at a right angle, to the
/// next road or the tile edge.
fn side_road(c: &Canvas, d: &mut Draw, roads: &[Road], width: f32, scale: f32) -> Option<Road> {
    let n = c.size as f32;
    let parent = &roads[d.below(roads.len())];
    let segs: Vec<(Pt, Pt)> = parent.segments().collect();
    let (a, b) = segs[d.below(segs.len())];
    let t = d.f(0.1, 0.9);
    let p = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
    if !(0.0..n).contains(&p.0) || !(0.0..n).contains(&p.1) {
        return None;
    }
    let (_, normal) = frame(a, b);
    let side = d.sign();
    // A slight skew keeps the grid from looking ruled.
    let skew = d.f(-0.12, 0.12);
    let dir = (normal.0 * side + normal.1 * skew * side, normal.1 * side - normal.0 * skew * side);
    let l = (dir.0 * dir.0 + dir.1 * dir.1).sqrt();
    let dir = (dir.0 / l, dir.1 / l);
    let start = parent.width / 2.0 + width / 2.0 + 2.0;
    let mut end = None;
    let mut s = start;
    while s < 1.6 * n {
        let q = (p.0 + dir.0 * s, p.1 + dir.1 * s);
        if q.0 < -0.05 * n || q.1 < -0.05 * n || q.0 > 1.05 * n || q.1 > 1.05 * n {
            end = Some(s);
            break;
        }
        if c.at(q.0 as i32, q.1 as i32) == Some(ROAD) {
            if s < start + 14.0 * scale {
                return None; // too close to a parallel road: a stub
            }
            end = Some(s + width / 2.0 + 1.0);
            break;
        }
        s += 1.0;
    }
    let mut len = end?;
    if len > 90.0 * scale && d.chance(0.2) {
        len *= d.f(0.4, 0.8); // a dead end
    }
    let q = (p.0 + dir.0 * len, p.1 + dir.1 * len);
    Some(Road { pts: vec![p, q], width })
}

/// Lays roads until about `target` pixels are road; returns them (none when the target
/// is below what one thin road would take and the draw says so).
pub(crate) fn lay_roads(c: &mut Canvas, d: &mut Draw, target: f64, scale: f32) -> Vec<Road> {
    let n = c.size as f32;
    let min_w = (4.0 * scale).max(2.0);
    let mut roads: Vec<Road> = Vec::new();
    let first_horizontal = d.chance(0.5);
    let mut across_used: Vec<(bool, f32)> = Vec::new();
    let mut tries = 0;
    while (c.counts[ROAD as usize] as f64) < target && tries < 80 {
        tries += 1;
        let deficit = target - c.counts[ROAD as usize] as f64;
        let k = roads.len();
        let mut road = if k < 2 || d.chance(0.2) {
            let horizontal = if k < 2 { first_horizontal ^ (k == 1) } else { d.chance(0.5) };
            let across = d.f(0.12, 0.88) * n;
            // Keep parallel through roads apart.
            if across_used.iter().any(|&(h, a)| h == horizontal && (a - across).abs() < 0.22 * n) {
                continue;
            }
            let width = if k < 2 { d.f(11.0, 20.0) } else { d.f(8.0, 13.0) } * scale;
            across_used.push((horizontal, across));
            Road { pts: through_line(d, n, horizontal, across), width: width.max(min_w) }
        } else {
            let width = (d.f(5.0, 9.0) * scale).max(min_w);
            match side_road(c, d, &roads, width, scale) {
                Some(r) => r,
                None => continue,
            }
        };
        // Narrow the road to what is left of the target when that keeps it a road.
        let est = road.length().min(1.2 * n) as f64 * road.width as f64;
        if est > deficit {
            let w = (deficit / road.length().min(1.2 * n) as f64) as f32;
            if w >= min_w {
                road.width = road.width.min(w);
            }
        }
        let mut log = Vec::new();
        for (a, b) in road.segments() {
            c.fill_logged(&Shape::Seg { a, b, hw: road.width / 2.0 }, ROAD, &mut log);
        }
        let new = log.len() as f64;
        if new == 0.0 {
            continue;
        }
        if new > deficit && !d.chance((deficit / new) as f32) {
            c.revert(&log, ROAD);
            break;
        }
        roads.push(road);
    }
    debug_assert!(c.data.iter().all(|&v| v == ROAD || v == FREE));
    roads
}
