//! Every plot of the crate, drawn on [`RgbImage`] with a built-in 5×7 pixel font (upper
//! case, digits and a little punctuation): no plotting crate, no font files. This file
//! holds the canvas, the drawing primitives (lines, fills, hatching, outlined bars, a
//! colour ramp) and the font; the plots are built from them.
//!
//! # Layout
//! - `stats.rs` — plots of two sets' label statistics ([`share_plot`], [`adjacency_plot`],
//!   [`component_plot`]): the real set solid, the synthetic set hatched, each bar in its
//!   class's preview colour.
//! - `iou.rs` — [`iou_chart`]: the utility evaluation's per-class IoU, two arms side by side
//!   with ± sd whiskers.

mod iou;
mod stats;

pub use iou::{iou_chart, BarGroup, MeanSd};
pub use stats::{adjacency_plot, component_plot, share_plot, PlotSet};

use shared::RgbImage;

const WHITE: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [225, 225, 225];
const MUTED: [u8; 3] = [110, 110, 110];
const RED: [u8; 3] = [210, 30, 30];

/// Glyph cell: 5×7 pixels plus one column and two rows of spacing.
const CHAR_W: u32 = 6;
const LINE_H: u32 = 10;

fn canvas(w: u32, h: u32) -> RgbImage {
    let mut img = RgbImage::new(w, h);
    img.data.fill(255);
    img
}

/// `1`, `4`, `16`, …, `1K`, `4K`, …, `1M`.
fn size_label(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{}M", n >> 20),
        n if n >= 1 << 10 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

/// Splits `s` into lines of at most `max` characters at spaces (a longer word is cut).
fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split_whitespace() {
        let word = truncate(word, max);
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= max => {
                line.push(' ');
                line.push_str(&word);
            }
            _ => lines.push(word),
        }
    }
    lines
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Solid swatch = `a`, hatched swatch = `b`.
fn legend(img: &mut RgbImage, x: u32, y: u32, a: &str, b: &str) {
    bar_rect(img, x, y, 14, 10, MUTED, false);
    text(img, x + 20, y + 2, a, INK, 1);
    let x2 = x + 28 + text_width(a, 1);
    bar_rect(img, x2, y, 14, 10, MUTED, true);
    text(img, x2 + 20, y + 2, b, INK, 1);
}

/// A bar: `color`, hatched with white if `hatched`, outlined.
fn bar_rect(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, color: [u8; 3], hatched: bool) {
    if w == 0 || h == 0 {
        return;
    }
    if hatched {
        hatch_fill(img, x, y, w, h, color, WHITE);
    } else {
        fill(img, x, y, w, h, color);
    }
    outline(img, x, y, w, h, INK);
}

fn put(img: &mut RgbImage, x: u32, y: u32, c: [u8; 3]) {
    if x < img.width && y < img.height {
        img.put(x, y, c);
    }
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: [u8; 3]) {
    for yy in y..y + h {
        for xx in x..x + w {
            put(img, xx, yy, c);
        }
    }
}

/// Diagonal stripes: `a`, with every third diagonal `b`.
fn hatch_fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, a: [u8; 3], b: [u8; 3]) {
    for yy in y..y + h {
        for xx in x..x + w {
            put(img, xx, yy, if (xx + yy) % 5 < 2 { b } else { a });
        }
    }
}

fn outline(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: [u8; 3]) {
    let (x1, y1) = (x + w.max(1) - 1, y + h.max(1) - 1);
    hline(img, x, x1, y, c);
    hline(img, x, x1, y1, c);
    vline(img, x, y, y1, c);
    vline(img, x1, y, y1, c);
}

/// `x0..=x1` on row `y`.
fn hline(img: &mut RgbImage, x0: u32, x1: u32, y: u32, c: [u8; 3]) {
    for x in x0..=x1 {
        put(img, x, y, c);
    }
}

/// `y0..=y1` in column `x`.
fn vline(img: &mut RgbImage, x: u32, y0: u32, y1: u32, c: [u8; 3]) {
    for y in y0..=y1 {
        put(img, x, y, c);
    }
}

/// A viridis-like ramp, `t` in `[0, 1]`.
fn heat(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] = [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    std::array::from_fn(|j| (a[j] + (b[j] - a[j]) * f).round() as u8)
}

fn luminance(c: [u8; 3]) -> f64 {
    0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64
}

/// Width in pixels of `s` drawn at `scale`.
fn text_width(s: &str, scale: u32) -> u32 {
    (s.chars().count() as u32 * CHAR_W).saturating_sub(1) * scale
}

/// Draws `s` with its top-left corner at `(x, y)`; lower case is drawn as upper case,
/// characters without a glyph as `?`.
fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, c: [u8; 3], scale: u32) {
    for (i, ch) in s.chars().enumerate() {
        let rows = glyph(ch.to_ascii_uppercase());
        let gx = x + i as u32 * CHAR_W * scale;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) != 0 {
                    fill(img, gx + col * scale, y + r as u32 * scale, scale, scale, c);
                }
            }
        }
    }
}

/// 5×7 glyphs: 7 rows, bit 4 the leftmost column.
fn glyph(ch: char) -> [u8; 7] {
    match ch {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        ';' => [0, 0x0C, 0x0C, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '\'' => [0x04, 0x04, 0x08, 0, 0, 0, 0],
        '×' => [0, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_plot_text_draws_glyph_pixels() {
        let mut img = canvas(20, 10);
        text(&mut img, 0, 0, "1-", INK, 1);
        // '1': row 0 is 0x04, the middle column.
        assert_eq!(img.pixel(2, 0), INK);
        assert_eq!(img.pixel(0, 0), WHITE);
        // '-': row 3 all five columns, drawn from x = 6.
        assert!((6..11).all(|x| img.pixel(x, 3) == INK));
        assert_eq!(text_width("1-", 1), 11);
    }

    #[test]
    fn stats_plot_helpers_wrap_and_label() {
        assert_eq!(wrap("street trees", 13), vec!["street trees"]);
        assert_eq!(wrap("street trees", 8), vec!["street", "trees"]);
        assert_eq!(size_label(1), "1");
        assert_eq!(size_label(4096), "4K");
        assert_eq!(size_label(1 << 20), "1M");
        assert_eq!(heat(0.0), [68, 1, 84]);
        assert_eq!(heat(1.0), [253, 231, 37]);
    }
}
