//! The canvas the layout paints on: a square class map where [`FREE`] marks pixels not
//! yet given a class, and the shapes (thick segments, oriented rectangles, discs) that are
//! painted onto it. Painting only ever claims free pixels, so a later stage never
//! overwrites an earlier one (roads stay roads).

/// Marks a pixel no stage has claimed yet.
pub(crate) const FREE: u8 = 254;

/// A point in pixel coordinates (pixel `(x, y)` has its centre at `(x + 0.5, y + 0.5)`).
pub(crate) type Pt = (f32, f32);

/// A shape to paint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// Points within `hw` of the segment `a`–`b` (a stroke with round caps).
    Seg { a: Pt, b: Pt, hw: f32 },
    /// A rectangle centred on `c` with unit axis `u` (and `v` = `u` turned a right angle),
    /// half extents `hu` along `u` and `hv` along `v`.
    Rect { c: Pt, u: Pt, hu: f32, hv: f32 },
    /// A disc.
    Disc { c: Pt, r: f32 },
}

impl Shape {
    /// A rectangle in the frame of a line through `o` with unit direction `u` and unit
    /// normal `n`: from `t0` to `t1` along `u` and from `v0` to `v1` along `n`.
    pub fn in_frame(o: Pt, u: Pt, n: Pt, t0: f32, t1: f32, v0: f32, v1: f32) -> Shape {
        let (tm, vm) = ((t0 + t1) / 2.0, (v0 + v1) / 2.0);
        let c = (o.0 + u.0 * tm + n.0 * vm, o.1 + u.1 * tm + n.1 * vm);
        // The rectangle's own `v` axis is `u` turned +90°; `n` may point either way, which
        // does not matter for a symmetric rectangle.
        Shape::Rect { c, u, hu: (t1 - t0).abs() / 2.0, hv: (v1 - v0).abs() / 2.0 }
    }

    fn bbox(&self) -> (f32, f32, f32, f32) {
        match *self {
            Shape::Seg { a, b, hw } => (a.0.min(b.0) - hw, a.1.min(b.1) - hw, a.0.max(b.0) + hw, a.1.max(b.1) + hw),
            Shape::Rect { c, u, hu, hv } => {
                let ex = u.0.abs() * hu + u.1.abs() * hv;
                let ey = u.1.abs() * hu + u.0.abs() * hv;
                (c.0 - ex, c.1 - ey, c.0 + ex, c.1 + ey)
            }
            Shape::Disc { c, r } => (c.0 - r, c.1 - r, c.0 + r, c.1 + r),
        }
    }

    #[inline]
    fn contains(&self, x: f32, y: f32) -> bool {
        match *self {
            Shape::Seg { a, b, hw } => seg_dist2((x, y), a, b) <= hw * hw,
            Shape::Rect { c, u, hu, hv } => {
                let (dx, dy) = (x - c.0, y - c.1);
                (dx * u.0 + dy * u.1).abs() <= hu && (-dx * u.1 + dy * u.0).abs() <= hv
            }
            Shape::Disc { c, r } => {
                let (dx, dy) = (x - c.0, y - c.1);
                dx * dx + dy * dy <= r * r
            }
        }
    }
}

/// Squared distance from `p` to the segment `a`–`b`.
#[inline]
pub(crate) fn seg_dist2(p: Pt, a: Pt, b: Pt) -> f32 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let (wx, wy) = (p.0 - a.0, p.1 - a.1);
    let l2 = vx * vx + vy * vy;
    let t = if l2 > 0.0 { ((wx * vx + wy * vy) / l2).clamp(0.0, 1.0) } else { 0.0 };
    let (dx, dy) = (wx - t * vx, wy - t * vy);
    dx * dx + dy * dy
}

/// A square class map under construction.
pub(crate) struct Canvas {
    pub size: i32,
    pub data: Vec<u8>,
    /// Pixels painted so far, by class index.
    pub counts: [u64; 8],
}

impl Canvas {
    pub fn new(size: u32) -> Self {
        Canvas { size: size as i32, data: vec![FREE; size as usize * size as usize], counts: [0; 8] }
    }

    #[inline]
    pub fn at(&self, x: i32, y: i32) -> Option<u8> {
        (x >= 0 && y >= 0 && x < self.size && y < self.size).then(|| self.data[(y * self.size + x) as usize])
    }

    /// Calls `f` with the index of every in-tile pixel whose centre lies in `s`.
    pub fn for_each(&self, s: &Shape, mut f: impl FnMut(usize)) {
        let (x0, y0, x1, y1) = s.bbox();
        let n = self.size;
        let (xa, xb) = ((x0.floor() as i32).max(0), (x1.ceil() as i32).min(n - 1));
        let (ya, yb) = ((y0.floor() as i32).max(0), (y1.ceil() as i32).min(n - 1));
        for y in ya..=yb {
            for x in xa..=xb {
                if s.contains(x as f32 + 0.5, y as f32 + 0.5) {
                    f((y * n + x) as usize);
                }
            }
        }
    }

    /// `(free pixels, all in-tile pixels)` of a shape.
    pub fn census(&self, s: &Shape) -> (u64, u64) {
        let (mut free, mut all) = (0, 0);
        self.for_each(s, |i| {
            all += 1;
            free += (self.data[i] == FREE) as u64;
        });
        (free, all)
    }

    /// Paints the free pixels of `s` with class `c`; returns how many it painted.
    pub fn fill(&mut self, s: &Shape, c: u8) -> u64 {
        let mut idx = Vec::new();
        self.fill_logged(s, c, &mut idx);
        idx.len() as u64
    }

    /// As [`Canvas::fill`], appending the painted indices to `log` (for [`Canvas::revert`]).
    pub fn fill_logged(&mut self, s: &Shape, c: u8, log: &mut Vec<u32>) {
        let start = log.len();
        self.for_each(s, |i| {
            if self.data[i] == FREE {
                log.push(i as u32);
            }
        });
        for &i in &log[start..] {
            self.data[i as usize] = c;
        }
        self.counts[c as usize] += (log.len() - start) as u64;
    }

    /// Frees again the pixels a logged fill painted with class `c`.
    pub fn revert(&mut self, log: &[u32], c: u8) {
        for &i in log {
            self.data[i as usize] = FREE;
        }
        self.counts[c as usize] -= log.len() as u64;
    }

    /// Number of free pixels left.
    pub fn free(&self) -> u64 {
        self.data.iter().filter(|&&v| v == FREE).count() as u64
    }

    /// Gives every free pixel the class of a painted neighbour, growing painted regions
    /// until none is free; `fallback` if nothing at all was painted.
    pub fn fill_leftovers(&mut self, fallback: u8) {
        let n = self.size as usize;
        if self.data.iter().all(|&v| v == FREE) {
            self.data.fill(fallback);
            self.counts[fallback as usize] = self.data.len() as u64;
            return;
        }
        loop {
            let prev = self.data.clone();
            let mut changed = false;
            for y in 0..n {
                for x in 0..n {
                    let i = y * n + x;
                    if prev[i] != FREE {
                        continue;
                    }
                    let mut pick = FREE;
                    for (ok, j) in [(x > 0, i.wrapping_sub(1)), (y > 0, i.wrapping_sub(n)), (x + 1 < n, i + 1), (y + 1 < n, i + n)] {
                        if ok && prev[j] != FREE {
                            pick = prev[j];
                            break;
                        }
                    }
                    if pick != FREE {
                        self.data[i] = pick;
                        self.counts[pick as usize] += 1;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_paint_only_free_pixels_and_count() {
        let mut c = Canvas::new(32);
        let road = Shape::Seg { a: (0.0, 16.0), b: (32.0, 16.0), hw: 2.0 };
        let n = c.fill(&road, 2);
        assert_eq!(n, 32 * 4);
        let r = Shape::in_frame((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), 4.0, 12.0, 10.0, 20.0);
        let (free, all) = c.census(&r);
        assert!(free < all, "the rectangle overlaps the road");
        assert_eq!(c.fill(&r, 0), free);
        assert_eq!(c.census(&r).0, 0);
        assert_eq!(c.counts[2], 32 * 4, "a later fill must not overwrite the road");
        c.fill_leftovers(7);
        assert_eq!(c.free(), 0);
        assert_eq!(c.counts.iter().sum::<u64>(), 32 * 32);
    }
}
