//! Per-class surface colour and texture: what one pixel of each class looks like, given
//! the region it belongs to and its distance to the region's edge. Colours are RGB in
//! `0..=255` as `f32`; cast shadows, lighting and grain are applied by the caller.

use super::analysis::{Analysis, Region};
use super::Look;
use crate::mix64;
use crate::procedural::layout::{BARE, BUILDING, DRY, FOREST, PADDY, PARKING, ROAD, TREES};
use crate::procedural::noise::{fbm, hash, unit};

pub(crate) type Rgb = [f32; 3];

#[inline]
fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

#[inline]
fn mul(a: Rgb, k: f32) -> Rgb {
    [a[0] * k, a[1] * k, a[2] * k]
}

#[inline]
fn pick<const N: usize>(palette: [Rgb; N], key: u64) -> Rgb {
    palette[(key % N as u64) as usize]
}

/// Signed noise in `[-0.5, 0.5)` for one pixel.
#[inline]
fn grain(seed: u64, x: usize, y: usize, salt: u32) -> f32 {
    unit(hash(seed, x as i32, y as i32, salt)) - 0.5
}

/// One pixel to paint.
pub(crate) struct Px<'a> {
    pub x: usize,
    pub y: usize,
    pub i: usize,
    pub labels: &'a [u8],
    pub a: &'a Analysis,
    pub look: &'a Look,
}

impl Px<'_> {
    fn region(&self) -> &Region {
        &self.a.regions[self.a.region[self.i] as usize]
    }

    fn dist(&self) -> f32 {
        self.a.dist[self.i]
    }

    /// Coordinates in the region's frame: along its long axis, and across it.
    fn frame(&self) -> (f32, f32) {
        let r = self.region();
        let (dx, dy) = (self.x as f32 + 0.5 - r.centre.0, self.y as f32 + 0.5 - r.centre.1);
        (dx * r.axis.0 + dy * r.axis.1, -dx * r.axis.1 + dy * r.axis.0)
    }

    /// Gradient of the edge distance (points inward, away from the nearest edge).
    fn dist_gradient(&self) -> (f32, f32) {
        let (x, y) = (self.x as isize, self.y as isize);
        let a = self.a;
        let gx = a.dist_same(self.labels, self.i, x + 1, y) - a.dist_same(self.labels, self.i, x - 1, y);
        let gy = a.dist_same(self.labels, self.i, x, y + 1) - a.dist_same(self.labels, self.i, x, y - 1);
        (gx, gy)
    }
}

pub(crate) fn surface(p: &Px) -> Rgb {
    match p.labels[p.i] {
        BUILDING => building(p),
        PARKING => parking(p),
        ROAD => road(p),
        TREES => canopy_colour(p, true),
        PADDY => paddy(p),
        DRY => dry_field(p),
        FOREST => canopy_colour(p, false),
        BARE => bare(p),
        _ => [0.0, 0.0, 0.0],
    }
}

fn building(p: &Px) -> Rgb {
    let r = p.region();
    let s = p.look.scale;
    let key = mix64(r.key);
    let d = p.dist();
    let flat = unit(key) < 0.4 || r.count < (30.0 * s * s) as u32;
    if flat {
        let base = pick([[188.0, 186.0, 180.0], [160.0, 162.0, 160.0], [204.0, 198.0, 186.0], [140.0, 150.0, 152.0], [120.0, 146.0, 128.0]], key >> 8);
        let mut c = mul(base, 1.0 + 0.06 * grain(p.look.seed, p.x, p.y, 1));
        // Parapet: a bright rim with a thin shadow inside it on the sunward side.
        let rim = (1.2 * s).max(1.0);
        if d <= rim {
            c = mul(c, 1.12);
        } else if d <= rim + (1.2 * s).max(1.0) {
            let (gx, gy) = p.dist_gradient();
            // Inside the rim on the side facing the sun, the parapet shades the roof.
            if gx * p.look.light.0 + gy * p.look.light.1 < 0.0 {
                c = mul(c, 0.82);
            }
        }
        // Rooftop units: small boxes on a grid.
        let cell = (9.0 * s).max(3.0);
        let (u, v) = p.frame();
        let (cu, cv) = ((u / cell).floor(), (v / cell).floor());
        let h = hash(r.key, cu as i32, cv as i32, 7);
        if d > 3.0 * s + 1.0 && unit(h) < 0.22 {
            let (fu, fv) = (u / cell - cu, v / cell - cv);
            if (0.25..0.7).contains(&fu) && (0.3..0.75).contains(&fv) {
                c = [205.0, 205.0, 200.0];
            }
        }
        c
    } else {
        let base = pick([[152.0, 72.0, 56.0], [72.0, 98.0, 142.0], [96.0, 122.0, 108.0], [112.0, 112.0, 118.0], [168.0, 150.0, 118.0], [132.0, 86.0, 70.0]], key >> 8);
        // A hipped roof: the facet faces away from the nearest eave; sunward facets are lit.
        let ridge = (10.0 * s).max(2.0);
        let (gx, gy) = p.dist_gradient();
        let g = (gx * gx + gy * gy).sqrt();
        let facing = if g > 1e-3 && d < ridge { -(gx * p.look.light.0 + gy * p.look.light.1) / g } else { 0.0 };
        let mut c = mul(base, 1.0 + 0.3 * facing);
        // Corrugation / tile rows along the long axis.
        let (_, v) = p.frame();
        let period = (2.4 * s).max(1.5);
        c = mul(c, 1.0 + 0.05 * (v / period * std::f32::consts::TAU).sin());
        if d <= 1.0 {
            c = mul(c, 0.8); // eave
        }
        mul(c, 1.0 + 0.05 * grain(p.look.seed, p.x, p.y, 2))
    }
}

fn parking(p: &Px) -> Rgb {
    let r = p.region();
    let s = p.look.scale;
    let key = mix64(r.key ^ 0x9a4c);
    let concrete = unit(key) < 0.35;
    let base = if concrete { [160.0, 158.0, 150.0] } else { [p.look.asphalt * 0.95, p.look.asphalt * 0.95, p.look.asphalt] };
    let mut c = mul(base, 1.0 + 0.08 * grain(p.look.seed, p.x, p.y, 3) + 0.05 * (fbm(p.look.seed, 31, p.x as f32, p.y as f32, 0.08, 2) - 0.5));
    if p.dist() <= 1.0 {
        return mul([175.0, 172.0, 165.0], 1.0 + 0.05 * grain(p.look.seed, p.x, p.y, 4));
        // curb
    }
    let stall = (5.5 * s).max(2.0);
    let depth = (10.0 * s).max(3.0);
    let aisle = (12.0 * s).max(3.0);
    let period = depth + aisle;
    let (u, v) = p.frame();
    let (mut vu, mut vv) = (u + unit(key >> 3) * stall, v + unit(key >> 5) * period);
    // Rows run along the lot's long axis.
    if unit(key >> 7) < 0.25 {
        std::mem::swap(&mut vu, &mut vv);
    }
    let row = (vv / period).floor();
    let fv = vv - row * period;
    if fv < depth {
        let col = (vu / stall).floor();
        let fu = vu - col * stall;
        let line = (0.7 * s).max(0.6);
        if fu < line {
            return [228.0, 228.0, 220.0];
        }
        // A car in about half the stalls.
        let h = hash(r.key, col as i32, row as i32, 0xca7);
        if unit(h) < 0.55 {
            let (tu, tv) = (fu / stall, fv / depth);
            if (0.2..0.9).contains(&tu) && (0.08..0.92).contains(&tv) {
                let body = pick(
                    [[230.0, 230.0, 228.0], [30.0, 30.0, 34.0], [150.0, 152.0, 156.0], [190.0, 192.0, 196.0], [160.0, 40.0, 36.0], [40.0, 60.0, 120.0], [235.0, 235.0, 235.0]],
                    h >> 9,
                );
                let glass = (0.3..0.42).contains(&tv) || (0.75..0.84).contains(&tv);
                return if glass { mul(body, 0.45) } else { mul(body, 1.0 + 0.1 * (0.5 - (tu - 0.55).abs())) };
            }
        }
    } else {
        c = mul(c, 0.97);
    }
    c
}

fn road(p: &Px) -> Rgb {
    let s = p.look.scale;
    let seed = p.look.seed;
    let g = p.look.asphalt;
    let wear = fbm(seed, 41, p.x as f32, p.y as f32, 0.03, 3) - 0.5;
    let mut c = mul([g, g, g + 4.0], 1.0 + 0.1 * grain(seed, p.x, p.y, 5) + 0.12 * wear);
    let d = p.dist();
    if d <= 1.0 {
        return mul(c, 1.12); // kerb / dusty edge
    }
    // Centre line: a ridge of the edge distance on roads at least 8 px wide.
    let half = 4.0 * s.max(0.5);
    if d >= half {
        let (x, y) = (p.x as isize, p.y as isize);
        let a = p.a;
        let l = |dx, dy| a.dist_same(p.labels, p.i, x + dx, y + dy);
        let ridge_x = d >= l(-1, 0) && d >= l(1, 0);
        let ridge_y = d >= l(0, -1) && d >= l(0, 1);
        if ridge_x || ridge_y {
            let dash = (10.0 * s).max(3.0);
            let yellow = d >= 8.0 * s;
            let on = ((p.x + p.y) as f32 / dash).floor() as i64 % 2 == 0 || yellow;
            if on {
                return if yellow { [214.0, 184.0, 70.0] } else { [226.0, 226.0, 218.0] };
            }
        }
        // Edge lines on wide roads.
        if d >= 7.0 * s && (p.dist() - 2.0 * s.max(0.5)).abs() < 0.5 {
            c = [214.0, 214.0, 206.0];
        }
    }
    c
}

/// Tree crowns: dome-shaded discs on a jittered grid, dark in the gaps between them.
fn canopy_colour(p: &Px, street: bool) -> Rgb {
    let look = p.look;
    let s = look.scale;
    let cell = if street { (5.0 * s).max(1.6) } else { (5.5 * s).max(1.6) };
    let (x, y) = (p.x as f32 + 0.5, p.y as f32 + 0.5);
    let (gx, gy) = ((x / cell).floor() as i32, (y / cell).floor() as i32);
    let salt = if street { 91 } else { 92 };
    let (mut best, mut off, mut key) = (-1.0f32, (0.0f32, 0.0f32), 0u64);
    for dy in -1..=1 {
        for dx in -1..=1 {
            let (cx, cy) = (gx + dx, gy + dy);
            let h = hash(look.seed, cx, cy, salt);
            let h2 = mix64(h);
            let centre = ((cx as f32 + 0.15 + 0.7 * unit(h)) * cell, (cy as f32 + 0.15 + 0.7 * unit(h2)) * cell);
            let r = cell * (0.62 + 0.45 * unit(h2 >> 7));
            let (ox, oy) = ((x - centre.0) / r, (y - centre.1) / r);
            let v = 1.0 - (ox * ox + oy * oy);
            if v > best {
                best = v;
                off = (ox, oy);
                key = h;
            }
        }
    }
    let base: Rgb = if street {
        pick([[74.0, 112.0, 48.0], [62.0, 100.0, 44.0], [88.0, 120.0, 56.0]], key >> 5)
    } else {
        let autumn = look.season;
        let green = pick([[48.0, 78.0, 38.0], [60.0, 92.0, 44.0], [36.0, 62.0, 36.0], [70.0, 98.0, 50.0], [54.0, 84.0, 40.0]], key >> 5);
        let warm = pick([[118.0, 96.0, 48.0], [130.0, 74.0, 40.0], [90.0, 92.0, 44.0]], key >> 9);
        if unit(key >> 13) < autumn * 0.5 {
            mix(green, warm, 0.7)
        } else {
            green
        }
    };
    let patches = if street { 1.0 } else { 1.0 + 0.18 * (fbm(look.seed, 93, x, y, 0.02, 3) - 0.5) };
    if best <= 0.0 {
        return mul(base, 0.42 * patches); // gap between crowns
    }
    let nz = best.sqrt();
    let (lx, ly) = (look.light.0 * 0.6, look.light.1 * 0.6);
    let lambert = (off.0 * lx + off.1 * ly + nz * 0.8).max(0.0);
    let leaf = 1.0 + 0.12 * grain(look.seed, p.x, p.y, 6);
    mul(base, (0.45 + 0.6 * lambert) * leaf * patches)
}

fn paddy(p: &Px) -> Rgb {
    let r = p.region();
    let look = p.look;
    let s = look.scale;
    let key = mix64(r.key ^ 0x7add);
    let (u, v) = p.frame();
    // Plots divided by levees on a grid in the field's frame.
    let lu = (44.0 + 44.0 * unit(key >> 3)) * s.max(0.25);
    let lv = (24.0 + 20.0 * unit(key >> 11)) * s.max(0.25);
    let (su, sv) = (u / lu + unit(key >> 17), v / lv + unit(key >> 23));
    let (cu, cv) = (su.floor(), sv.floor());
    let cell = hash(r.key, cu as i32, cv as i32, 0x1e);
    let stage = (look.season + 0.35 * (unit(cell) - 0.5) + 0.3 * (unit(key) - 0.5)).clamp(0.0, 1.0);
    // Early: flooded, grey-green water; mid: green rice; late: golden.
    let base = if stage < 0.3 {
        mix([86.0, 104.0, 100.0], [88.0, 122.0, 64.0], stage / 0.3)
    } else if stage < 0.7 {
        mix([88.0, 128.0, 56.0], [104.0, 134.0, 58.0], (stage - 0.3) / 0.4)
    } else {
        mix([126.0, 134.0, 66.0], [176.0, 156.0, 88.0], (stage - 0.7) / 0.3)
    };
    let line = (0.9 * s).max(0.7);
    let levee = ((su - cu) * lu).min((cu + 1.0 - su) * lu) < line || ((sv - cv) * lv).min((cv + 1.0 - sv) * lv) < line || p.dist() <= 1.0;
    if levee {
        return mul([150.0, 146.0, 110.0], 1.0 + 0.1 * grain(look.seed, p.x, p.y, 7));
    }
    // Rows of rice plants along the plot.
    let period = (3.0 * s).max(1.6);
    let rows = (v / period * std::f32::consts::TAU).sin();
    mul(base, 1.0 + 0.07 * rows + 0.06 * grain(look.seed, p.x, p.y, 8) + 0.06 * (unit(cell >> 7) - 0.5))
}

fn dry_field(p: &Px) -> Rgb {
    let r = p.region();
    let look = p.look;
    let s = look.scale;
    let key = mix64(r.key ^ 0xd27);
    let (u, v) = p.frame();
    let across = if unit(key >> 29) < 0.3 { u } else { v };
    let soil = pick([[150.0, 118.0, 86.0], [166.0, 136.0, 100.0], [128.0, 104.0, 80.0], [172.0, 150.0, 118.0]], key >> 3);
    let kind = unit(key >> 37);
    let period = (6.0 * s * (0.7 + 0.8 * unit(key >> 41))).max(2.0);
    let t = (across / period).rem_euclid(1.0);
    let noise = 0.08 * grain(look.seed, p.x, p.y, 9) + 0.08 * (fbm(look.seed, 51, p.x as f32, p.y as f32, 0.06, 2) - 0.5);
    let c = if kind < 0.45 {
        // Crop rows.
        let crop = pick([[84.0, 118.0, 52.0], [106.0, 132.0, 60.0], [70.0, 104.0, 58.0]], key >> 45);
        let cover = 0.25 + 0.45 * unit(key >> 49);
        let edge = ((t - cover).abs() * period).min(1.0);
        if t < cover {
            mix(soil, crop, edge.max(0.6))
        } else {
            mul(soil, 0.94)
        }
    } else if kind < 0.65 {
        // Black mulch film rows.
        if t < 0.55 {
            mul([70.0, 70.0, 76.0], 1.0 + 0.3 * (t / 0.55 - 0.5).abs())
        } else {
            soil
        }
    } else {
        // Ploughed soil: furrows.
        mul(soil, 1.0 + 0.1 * (t * std::f32::consts::TAU).sin())
    };
    mul(c, 1.0 + noise)
}

fn bare(p: &Px) -> Rgb {
    let r = p.region();
    let look = p.look;
    let key = mix64(r.key ^ 0xba7e);
    let base = pick([[178.0, 164.0, 138.0], [156.0, 140.0, 118.0], [190.0, 180.0, 160.0], [146.0, 128.0, 104.0]], key);
    let (x, y) = (p.x as f32, p.y as f32);
    let gravel = 0.22 * grain(look.seed, p.x, p.y, 10) + 0.1 * (fbm(look.seed, 61, x, y, 0.35, 2) - 0.5);
    let patches = 0.2 * (fbm(look.seed, 62, x, y, 0.025, 3) - 0.5);
    let c = mul(base, 1.0 + gravel + patches);
    // Sparse weeds.
    let weeds = fbm(look.seed, 63, x, y, 0.08, 2);
    if weeds > 0.68 {
        mix(c, [100.0, 116.0, 62.0], ((weeds - 0.68) * 4.0).min(0.6))
    } else {
        c
    }
}
