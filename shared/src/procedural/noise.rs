//! Deterministic randomness for the generator and the renderer.
//!
//! - [`Draw`] wraps a seeded ChaCha stream with the few draws the layout needs
//!   (uniform floats, integers, coin flips, shuffles), so the layout depends on the
//!   stream alone.
//! - The hash noise functions ([`hash`], [`value_noise`], [`fbm`]) are pure functions of
//!   `(seed, coordinates)`: rendering gives the same bytes whatever the thread count or
//!   evaluation order.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::mix64;

/// Draws from one seeded RNG stream.
pub(crate) struct Draw(pub ChaCha8Rng);

impl Draw {
    pub fn new(seed: u64, stream: u64) -> Self {
        Draw(crate::rng_for(seed, stream))
    }

    /// A uniform `f32` in `[0, 1)` (24 random bits).
    #[inline]
    pub fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// A uniform `f32` in `[lo, hi)`.
    #[inline]
    pub fn f(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// A uniform integer in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }

    /// `true` with probability `p` (clamped to `[0, 1]`).
    #[inline]
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// `+1.0` or `-1.0`.
    #[inline]
    pub fn sign(&mut self) -> f32 {
        if self.0.next_u32() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// A fresh 64-bit value (to seed hash noise).
    #[inline]
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }

    /// An index drawn with probability proportional to `weights` (all ≥ 0); `None` when
    /// they sum to zero.
    pub fn weighted(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().map(|w| w.max(0.0)).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.unit() as f64 * total;
        for (i, w) in weights.iter().enumerate() {
            let w = w.max(0.0);
            if x < w {
                return Some(i);
            }
            x -= w;
        }
        weights.iter().rposition(|&w| w > 0.0)
    }
}

/// A 64-bit hash of `(seed, x, y, salt)`.
#[inline]
pub(crate) fn hash(seed: u64, x: i32, y: i32, salt: u32) -> u64 {
    let packed = (x as u32 as u64) | ((y as u32 as u64) << 32);
    mix64(seed ^ (salt as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ mix64(packed))
}

/// A hash mapped to `[0, 1)`.
#[inline]
pub(crate) fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / 16_777_216.0)
}

#[inline]
fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Value noise in `[0, 1]` on a unit lattice: smooth, with features about one unit wide.
pub(crate) fn value_noise(seed: u64, salt: u32, x: f32, y: f32) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (x0, y0) = (xf as i32, yf as i32);
    let (tx, ty) = (smooth(x - xf), smooth(y - yf));
    let v00 = unit(hash(seed, x0, y0, salt));
    let v10 = unit(hash(seed, x0 + 1, y0, salt));
    let v01 = unit(hash(seed, x0, y0 + 1, salt));
    let v11 = unit(hash(seed, x0 + 1, y0 + 1, salt));
    let a = v00 + (v10 - v00) * tx;
    let b = v01 + (v11 - v01) * tx;
    a + (b - a) * ty
}

/// Fractal value noise in `[0, 1]`: `octaves` layers, each twice the frequency and half
/// the amplitude of the one before; `freq` is the first layer's frequency (cycles a pixel).
pub(crate) fn fbm(seed: u64, salt: u32, x: f32, y: f32, freq: f32, octaves: u32) -> f32 {
    let (mut sum, mut norm, mut amp, mut f) = (0.0, 0.0, 1.0, freq);
    for o in 0..octaves {
        sum += amp * value_noise(seed, salt.wrapping_add(o * 7919), x * f + o as f32 * 17.3, y * f - o as f32 * 9.1);
        norm += amp;
        amp *= 0.5;
        f *= 2.0;
    }
    sum / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_bounded_and_pure() {
        for i in 0..2000 {
            let (x, y) = (i as f32 * 0.37, i as f32 * 0.11 - 40.0);
            let v = fbm(9, 3, x, y, 0.05, 4);
            assert!((0.0..=1.0).contains(&v), "{v}");
            assert_eq!(v.to_bits(), fbm(9, 3, x, y, 0.05, 4).to_bits());
        }
        assert_ne!(hash(1, 2, 3, 4), hash(2, 2, 3, 4));
    }

    #[test]
    fn draws_stay_in_range() {
        let mut d = Draw::new(5, 1);
        for _ in 0..1000 {
            let f = d.f(2.0, 3.0);
            assert!((2.0..3.0).contains(&f));
            assert!(d.below(7) < 7);
        }
        assert_eq!(d.weighted(&[0.0, 0.0]), None);
        assert_eq!(d.weighted(&[0.0, 1.0]), Some(1));
    }
}
