//! What the renderer reads off a label map before painting: connected regions with their
//! orientation, each pixel's distance to the nearest other class, and cast shadows.
//! Everything here is a function of the label map (and the sun), so textures follow the
//! shapes in the mask.

use crate::label::LabelMap;
use crate::procedural::layout::{BUILDING, FOREST, TREES};
use crate::procedural::noise::{hash, unit};

/// A 4-connected region of one class.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub count: u32,
    /// Centroid.
    pub centre: (f32, f32),
    /// Unit vector along the region's long axis (principal axis of its pixels).
    pub axis: (f32, f32),
    /// A per-region random key, from the render seed and the region's first pixel.
    pub key: u64,
}

pub(crate) struct Analysis {
    pub width: usize,
    pub height: usize,
    /// Region index of every pixel.
    pub region: Vec<u32>,
    pub regions: Vec<Region>,
    /// Chamfer distance (px) to the nearest pixel of another class; pixels next to one
    /// have 1. Tile edges do not count as a boundary.
    pub dist: Vec<f32>,
}

const FAR: f32 = 1.0e4;

pub(crate) fn analyse(labels: &LabelMap, seed: u64) -> Analysis {
    let (w, h) = (labels.width as usize, labels.height as usize);
    let data = &labels.data;
    // Regions by flood fill.
    let mut region = vec![u32::MAX; w * h];
    let mut regions = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if region[start] != u32::MAX {
            continue;
        }
        let id = regions.len() as u32;
        let class = data[start];
        let (mut n, mut sx, mut sy, mut sxx, mut sxy, mut syy) = (0u32, 0f64, 0f64, 0f64, 0f64, 0f64);
        region[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let (fx, fy) = (x as f64, y as f64);
            n += 1;
            sx += fx;
            sy += fy;
            sxx += fx * fx;
            sxy += fx * fy;
            syy += fy * fy;
            let mut visit = |j: usize| {
                if region[j] == u32::MAX && data[j] == class {
                    region[j] = id;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        let nf = n as f64;
        let (mx, my) = (sx / nf, sy / nf);
        let (cxx, cxy, cyy) = (sxx / nf - mx * mx, sxy / nf - mx * my, syy / nf - my * my);
        let theta = 0.5 * (2.0 * cxy).atan2(cxx - cyy);
        regions.push(Region {
            count: n,
            centre: (mx as f32, my as f32),
            axis: (theta.cos() as f32, theta.sin() as f32),
            key: hash(seed, start as i32, (start >> 31) as i32, 0x5e61),
        });
    }

    // Distance to the nearest other class: two chamfer passes within each class.
    let mut dist = vec![FAR; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let c = data[i];
            let edge = (x > 0 && data[i - 1] != c) || (x + 1 < w && data[i + 1] != c) || (y > 0 && data[i - w] != c) || (y + 1 < h && data[i + w] != c);
            if edge {
                dist[i] = 1.0;
            }
        }
    }
    const D: f32 = std::f32::consts::SQRT_2;
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let c = data[i];
            let mut best = dist[i];
            let mut relax = |j: usize, step: f32| {
                if data[j] == c {
                    best = best.min(dist[j] + step);
                }
            };
            if x > 0 {
                relax(i - 1, 1.0);
            }
            if y > 0 {
                relax(i - w, 1.0);
                if x > 0 {
                    relax(i - w - 1, D);
                }
                if x + 1 < w {
                    relax(i - w + 1, D);
                }
            }
            dist[i] = best;
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let i = y * w + x;
            let c = data[i];
            let mut best = dist[i];
            let mut relax = |j: usize, step: f32| {
                if data[j] == c {
                    best = best.min(dist[j] + step);
                }
            };
            if x + 1 < w {
                relax(i + 1, 1.0);
            }
            if y + 1 < h {
                relax(i + w, 1.0);
                if x + 1 < w {
                    relax(i + w + 1, D);
                }
                if x > 0 {
                    relax(i + w - 1, D);
                }
            }
            dist[i] = best;
        }
    }
    Analysis { width: w, height: h, region, regions, dist }
}

impl Analysis {
    /// Distance at `(x, y)` if it lies in the tile and in the same class as pixel `i`,
    /// else 0 (the edge of the shape).
    #[inline]
    pub fn dist_same(&self, labels: &[u8], i: usize, x: isize, y: isize) -> f32 {
        if x < 0 || y < 0 || x >= self.width as isize || y >= self.height as isize {
            return self.dist[i];
        }
        let j = y as usize * self.width + x as usize;
        if labels[j] == labels[i] {
            self.dist[j]
        } else {
            0.0
        }
    }
}

/// Cast shadows, 0 (lit) to 1 (full shadow), softened. Buildings cast the longest
/// (their height drawn per building), trees and forest edges shorter ones; a shadow
/// falls on other classes only, never on roofs.
pub(crate) fn shadows(labels: &LabelMap, a: &Analysis, sun_dir: (f32, f32), scale: f32) -> Vec<f32> {
    let (w, h) = (a.width, a.height);
    let data = &labels.data;
    let mut sh = vec![0f32; w * h];
    for i in 0..w * h {
        let c = data[i];
        let len = match c {
            BUILDING => {
                let r = &a.regions[a.region[i] as usize];
                (4.0 + 10.0 * unit(r.key ^ 0x4e16)) * scale
            }
            TREES => 4.0 * scale,
            FOREST => 6.0 * scale,
            _ => continue,
        };
        if c != BUILDING && a.dist[i] > len + 1.0 {
            continue; // interior canopy: its shadow stays inside
        }
        let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
        let steps = len.ceil() as i32;
        for k in 1..=steps {
            let (qx, qy) = (x + sun_dir.0 * k as f32, y + sun_dir.1 * k as f32);
            if qx < 0.0 || qy < 0.0 || qx >= w as f32 || qy >= h as f32 {
                break;
            }
            let j = qy as usize * w + qx as usize;
            let t = data[j];
            if t == c || t == BUILDING {
                continue;
            }
            // Fade out over the last pixel of the shadow.
            let v = (len - k as f32 + 1.0).clamp(0.0, 1.0);
            if v > sh[j] {
                sh[j] = v;
            }
        }
    }
    // Soften with a 3 × 3 box.
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (mut s, mut n) = (0.0, 0.0);
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    s += sh[yy * w + xx];
                    n += 1.0;
                }
            }
            out[y * w + x] = s / n;
        }
    }
    out
}
