//! The renderer: `(label map, seed) → RgbImage`, a crude aerial photograph of the mask.
//!
//! - `analysis.rs` reads the mask: regions and their long axes, distance to the nearest
//!   other class, and cast shadows (buildings, trees, forest edges).
//! - `materials.rs` paints each class: roofs (flat with parapets and rooftop units, or
//!   hipped with sun-facing facets and eaves), parking lots with stall lines and cars,
//!   asphalt with centre and edge lines, dome-shaded tree crowns, paddies with levees
//!   and rows, dry fields with crop, mulch or furrow rows, gravel bare land.
//! - This file adds what is common to a tile — sun direction, season, exposure, colour
//!   cast, low-frequency lighting, sensor grain — and a slight blur, as a camera would.
//!
//! Every value is a pure function of the label map and the seed (per-pixel noise is a
//! hash of the coordinates), so the same inputs give the same bytes on any machine
//! thread count.

mod analysis;
mod materials;

use crate::label::{LabelMap, RgbImage};
use crate::procedural::noise::{fbm, hash, unit, Draw};

/// RNG stream of the renderer (see [`crate::rng_for`]).
pub(crate) const RENDER_STREAM: u64 = 2;

/// What is common to one tile's appearance.
pub(crate) struct Look {
    /// Seed of the hash noise.
    pub seed: u64,
    /// Tile size / 512: feature sizes are given for a 512 tile.
    pub scale: f32,
    /// Unit vector towards the sun, in the image plane (the sun is up-left-ish).
    pub light: (f32, f32),
    /// 0 = early season (flooded paddies, fresh green), 1 = late (golden, autumn).
    pub season: f32,
    /// Asphalt grey level.
    pub asphalt: f32,
    cast: [f32; 3],
    exposure: f32,
}

impl Look {
    fn draw(seed: u64, size: u32) -> Look {
        let mut d = Draw::new(seed, RENDER_STREAM);
        let angle = d.f(195.0, 255.0).to_radians(); // towards the upper left
        Look {
            seed: d.u64(),
            scale: size as f32 / 512.0,
            light: (angle.cos(), angle.sin()),
            season: d.f(0.0, 1.0),
            asphalt: d.f(82.0, 104.0),
            cast: [d.f(0.95, 1.04), d.f(0.97, 1.03), d.f(0.95, 1.06)],
            exposure: d.f(0.92, 1.08),
        }
    }
}

/// Renders a label map (class indices `0..8` of the AI Hub table; other values render
/// black) as an RGB image of the same size. A pure function of its inputs.
pub fn render(labels: &LabelMap, seed: u64) -> RgbImage {
    let (w, h) = (labels.width as usize, labels.height as usize);
    let look = Look::draw(seed, labels.width.max(labels.height));
    let a = analysis::analyse(labels, look.seed);
    let shadow = analysis::shadows(labels, &a, (-look.light.0, -look.light.1), look.scale);

    let mut buf = vec![[0f32; 3]; w * h];
    let light_freq = 1.0 / (200.0 * look.scale.max(0.1));
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let px = materials::Px { x, y, i, labels: &labels.data, a: &a, look: &look };
            let c = materials::surface(&px);
            let sh = shadow[i];
            let lit = look.exposure * (1.0 + 0.12 * (fbm(look.seed, 71, x as f32, y as f32, light_freq, 2) - 0.5));
            // Shadows are dark and slightly blue (lit by the sky only).
            let shade = [1.0 - 0.55 * sh, 1.0 - 0.52 * sh, 1.0 - 0.45 * sh];
            let g = 3.0 * (unit(hash(look.seed, x as i32, y as i32, 72)) - 0.5);
            for k in 0..3 {
                buf[i][k] = c[k] * shade[k] * look.cast[k] * lit + g;
            }
        }
    }
    // A slight blur: the optics soften hard label edges.
    let mut img = RgbImage::new(labels.width, labels.height);
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            let mut n = 0.0;
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    let wgt = if xx == x && yy == y {
                        4.0
                    } else if xx == x || yy == y {
                        1.0
                    } else {
                        0.5
                    };
                    let p = buf[yy * w + xx];
                    for k in 0..3 {
                        acc[k] += p[k] * wgt;
                    }
                    n += wgt;
                }
            }
            let o = (y * w + x) * 3;
            for (out, a) in img.data[o..o + 3].iter_mut().zip(acc) {
                *out = (a / n).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedural::{generate_labels, ClassShares, NUM_CLASSES};

    #[test]
    fn render_is_pure_and_seed_dependent() {
        let m = generate_labels(8, 128, &ClassShares::default());
        assert_eq!(render(&m, 8), render(&m, 8));
        assert_ne!(render(&m, 8), render(&m, 9));
    }

    /// Classes are told apart by texture, not only colour: inside every class present,
    /// neighbouring pixels differ (the image is not flat per class).
    #[test]
    fn every_class_is_textured() {
        let mut rough = [(0f64, 0u64); NUM_CLASSES];
        for seed in 0..6 {
            let m = generate_labels(seed, 256, &ClassShares::default());
            let img = render(&m, seed);
            for y in 0..256 {
                for x in 0..255 {
                    let k = m.get(x, y) as usize;
                    if m.get(x + 1, y) as usize == k {
                        let (a, b) = (img.pixel(x, y), img.pixel(x + 1, y));
                        let diff: i32 = (0..3).map(|c| (a[c] as i32 - b[c] as i32).abs()).sum();
                        rough[k].0 += diff as f64;
                        rough[k].1 += 1;
                    }
                }
            }
        }
        for (k, (sum, n)) in rough.iter().enumerate() {
            assert!(*n > 0, "class {k} absent from 6 tiles");
            let mean = sum / *n as f64;
            assert!(mean > 3.0, "class {k}: mean neighbour difference {mean:.2} — too flat");
        }
    }
}
