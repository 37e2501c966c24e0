//! Paddies, dry fields and bare land: what is left after roads, buildings, trees and
//! forest is laid out as farmland.
//!
//! The farmland grid is turned to the angle of the main road. It is cut into *rows* of
//! varying height, and each row into rectangular *plots* of varying length, so fields
//! have straight edges and line up in rows. Where the bare-land target allows, 1–2 px farm
//! tracks (bare land) run between the rows. Plots are given a class in row order, each
//! drawn with weight equal to the class's remaining deficit, and often the class of the
//! plot before it, so paddies and dry fields come in patches; the last plots take
//! whatever is still short.

use super::canvas::{Canvas, FREE};
use super::{BARE, DRY, PADDY};
use crate::procedural::noise::Draw;

const NONE: u32 = u32::MAX;
const TRACK: u32 = 1 << 31;

pub(crate) fn lay_fields(c: &mut Canvas, d: &mut Draw, angle: f32, targets: &[f64; 8], scale: f32) {
    let n = c.size;
    let (cs, sn) = (angle.cos(), angle.sin());
    let to_uv = |x: f32, y: f32| (x * cs + y * sn, -x * sn + y * cs);
    let corners = [to_uv(0.0, 0.0), to_uv(n as f32, 0.0), to_uv(0.0, n as f32), to_uv(n as f32, n as f32)];
    let (umin, umax) = corners.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |m, p| (m.0.min(p.0), m.1.max(p.0)));
    let (vmin, vmax) = corners.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |m, p| (m.0.min(p.1), m.1.max(p.1)));

    // Rows and the plots in each.
    let mut vb = vec![vmin - d.f(0.0, 30.0) * scale];
    while *vb.last().unwrap() < vmax {
        let h = d.f(22.0, 46.0) * scale.max(0.1);
        vb.push(vb.last().unwrap() + h);
    }
    let rows = vb.len() - 1;
    let mut ub: Vec<Vec<f32>> = Vec::with_capacity(rows);
    let mut first_plot = Vec::with_capacity(rows + 1);
    let mut plots = 0usize;
    for _ in 0..rows {
        let mut b = vec![umin - d.f(0.0, 80.0) * scale];
        while *b.last().unwrap() < umax {
            let l = d.f(30.0, 110.0) * scale.max(0.1);
            b.push(b.last().unwrap() + l);
        }
        first_plot.push(plots);
        plots += b.len() - 1;
        ub.push(b);
    }
    let track_hw = (1.0 * scale).max(0.5);

    // Plot (and track flag) of every free pixel.
    let mut plot_of = vec![NONE; c.data.len()];
    let mut body = vec![0u64; plots];
    let mut track = vec![0u64; plots];
    for y in 0..n {
        for x in 0..n {
            let i = (y * n + x) as usize;
            if c.data[i] != FREE {
                continue;
            }
            let (u, v) = to_uv(x as f32 + 0.5, y as f32 + 0.5);
            let r = (vb.partition_point(|&b| b <= v).max(1) - 1).min(rows - 1);
            let row = &ub[r];
            let p = (row.partition_point(|&b| b <= u).max(1) - 1).min(row.len() - 2);
            let id = (first_plot[r] + p) as u32;
            let on_track = (v - vb[r]).min(vb[r + 1] - v) < track_hw && r > 0;
            if on_track {
                track[id as usize] += 1;
                plot_of[i] = id | TRACK;
            } else {
                body[id as usize] += 1;
                plot_of[i] = id;
            }
        }
    }
    let track_total: u64 = track.iter().sum();
    let farm = targets[PADDY as usize] + targets[DRY as usize];
    let tracks = track_total > 0 && farm > 0.0 && targets[BARE as usize] >= 1.3 * track_total as f64;

    let classes = [PADDY, DRY, BARE];
    let mut deficit = classes.map(|k| targets[k as usize]);
    if tracks {
        deficit[2] -= track_total as f64;
    }
    let mut class_of = vec![FREE; plots];
    let mut prev: Option<usize> = None;
    for r in 0..rows {
        for p in first_plot[r]..first_plot[r] + ub[r].len() - 1 {
            let size = body[p] + if tracks { 0 } else { track[p] };
            if size == 0 {
                continue;
            }
            let pick = match prev {
                Some(k) if deficit[k] > 0.0 && d.chance(0.55) => Some(k),
                _ => d.weighted(&deficit).or_else(|| d.weighted(&classes.map(|k| targets[k as usize]))),
            };
            if let Some(k) = pick {
                class_of[p] = classes[k];
                deficit[k] -= size as f64;
            }
            prev = pick;
        }
        prev = None;
    }
    for (i, &id) in plot_of.iter().enumerate() {
        if id == NONE {
            continue;
        }
        let class = if id & TRACK != 0 && tracks { BARE } else { class_of[(id & !TRACK) as usize] };
        if class != FREE {
            c.data[i] = class;
            c.counts[class as usize] += 1;
        }
    }
}
