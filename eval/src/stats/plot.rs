//! Plots of two sets' [`LabelStats`], drawn on [`RgbImage`] with a built-in 5×7 pixel font
//! (upper case, digits and a little punctuation): no plotting crate, no font files.
//!
//! Everywhere the real set is drawn solid and the synthetic set hatched, each bar in its
//! class's preview colour (the colours of the colourised label previews).

use super::{compare, LabelStats};
use shared::ClassTable;
use shared::RgbImage;

const WHITE: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [225, 225, 225];
const MUTED: [u8; 3] = [110, 110, 110];
const RED: [u8; 3] = [210, 30, 30];

/// Glyph cell: 5×7 pixels plus one column and two rows of spacing.
const CHAR_W: u32 = 6;
const LINE_H: u32 = 10;

/// One of the two sets, as the plots label it.
#[derive(Debug, Clone, Copy)]
pub struct PlotSet<'a> {
    /// Shown in legends (e.g. `REAL`).
    pub name: &'a str,
    pub stats: &'a LabelStats,
}

/// Class pixel shares of both sets as a bar chart: per class a solid bar (the first set)
/// and a hatched one (the second), with their percentages, and the TV distance in the
/// title.
///
/// # Panics
/// If the sets' class count differs from the table's.
pub fn share_plot(real: PlotSet, synthetic: PlotSet, classes: &ClassTable) -> RgbImage {
    let k = check(real, synthetic, classes);
    let (rs, ss) = (real.stats.class_shares(), synthetic.stats.class_shares());
    let top = rs.iter().chain(&ss).fold(0.0f64, |a, &b| a.max(b));
    let step = if top <= 0.25 { 0.05 } else { 0.1 };
    let ymax = ((top / step).ceil() * step).max(step);

    let (group, bar, left, top_m, plot_h) = (88u32, 32u32, 52u32, 64u32, 260u32);
    let width = left + group * k as u32 + 16;
    let height = top_m + plot_h + 8 + 3 * LINE_H + 8;
    let mut img = canvas(width, height);
    let d = compare(real.stats, synthetic.stats);
    text(&mut img, 12, 10, "CLASS PIXEL SHARES (% OF CLASS PIXELS)", INK, 2);
    text(&mut img, 12, 32, &format!("TV DISTANCE {:.4}   {} MAPS {}, {} MAPS {}", d.share_tv, real.stats.maps, real.name, synthetic.stats.maps, synthetic.name), MUTED, 1);
    legend(&mut img, width.saturating_sub(260), 46, real.name, synthetic.name);

    let y0 = top_m + plot_h; // the zero line
    let to_y = |v: f64| y0 - ((v / ymax).clamp(0.0, 1.0) * plot_h as f64).round() as u32;
    let mut t = 0.0;
    while t <= ymax + 1e-9 {
        let y = to_y(t);
        hline(&mut img, left, left + group * k as u32, y, GRID);
        let label = format!("{:.0}", t * 100.0);
        text(&mut img, left - 6 - text_width(&label, 1), y.saturating_sub(3), &label, MUTED, 1);
        t += step;
    }
    for c in 0..k {
        let gx = left + c as u32 * group;
        let color = classes.classes[c].color;
        for (j, (v, hatched)) in [(rs[c], false), (ss[c], true)].into_iter().enumerate() {
            let x = gx + (group - 2 * bar - 4) / 2 + j as u32 * (bar + 4);
            let y = to_y(v);
            bar_rect(&mut img, x, y, bar, y0 - y, color, hatched);
            let label = format!("{:.1}", v * 100.0);
            text(&mut img, x + bar / 2 - text_width(&label, 1) / 2, y.saturating_sub(LINE_H), &label, INK, 1);
        }
        for (i, line) in wrap(&classes.classes[c].name, (group / CHAR_W) as usize - 1).iter().enumerate().take(3) {
            text(&mut img, gx + group / 2 - text_width(line, 1) / 2, y0 + 8 + i as u32 * LINE_H, line, INK, 1);
        }
    }
    hline(&mut img, left, left + group * k as u32, y0, INK);
    vline(&mut img, left, top_m, y0, INK);
    img
}

/// The two sets' normalised class adjacency matrices as heat maps side by side (rows: a
/// pixel's class, columns: its 4-neighbour's; the values in % of all bordering pairs) on
/// one colour scale, with the TV distance in the title.
///
/// # Panics
/// If the sets' class count differs from the table's.
pub fn adjacency_plot(real: PlotSet, synthetic: PlotSet, classes: &ClassTable) -> RgbImage {
    let k = check(real, synthetic, classes) as u32;
    let (ra, sa) = (real.stats.adjacency_shares(), synthetic.stats.adjacency_shares());
    let vmax = ra.iter().chain(&sa).fold(0.0f64, |a, &b| a.max(b)).max(1e-12);
    let names_w = 14 * CHAR_W + 24;
    let cell = 44u32;
    let side = cell * k;
    let (top_m, gap, scale_w) = (108u32, 24u32, 70u32);
    let width = 12 + 2 * (names_w + side) + gap + scale_w;
    let height = top_m + side + 20;
    let mut img = canvas(width, height);
    let d = compare(real.stats, synthetic.stats);
    text(&mut img, 12, 10, "CLASS ADJACENCY", INK, 2);
    text(&mut img, 12, 32, "% OF BORDERING 4-NEIGHBOUR PIXEL PAIRS: ROW = A PIXEL'S CLASS, COLUMN = ITS NEIGHBOUR'S", MUTED, 1);
    text(&mut img, 12, 32 + LINE_H, &format!("TV DISTANCE {:.4}", d.adjacency_tv), MUTED, 1);

    for (m, (set, values)) in [(real, &ra), (synthetic, &sa)].into_iter().enumerate() {
        let x0 = 12 + m as u32 * (names_w + side + gap) + names_w;
        let y0 = top_m;
        text(&mut img, x0, y0 - 54, set.name, INK, 2);
        for c in 0..k {
            // Column heads: the class's colour and index; row heads: index and name.
            let cx = x0 + c * cell;
            fill(&mut img, cx + 4, y0 - 16, cell - 8, 10, classes.classes[c as usize].color);
            let idx = c.to_string();
            text(&mut img, cx + cell / 2 - text_width(&idx, 1) / 2, y0 - 28, &idx, MUTED, 1);
            let name = format!("{c} {}", truncate(&classes.classes[c as usize].name, 12));
            let ry = y0 + c * cell + cell / 2 - 3;
            fill(&mut img, x0 - names_w + 2, ry - 1, 8, 9, classes.classes[c as usize].color);
            text(&mut img, x0 - names_w + 14, ry, &name, INK, 1);
        }
        for r in 0..k {
            for c in 0..k {
                let (x, y) = (x0 + c * cell, y0 + r * cell);
                if r == c {
                    hatch_fill(&mut img, x, y, cell, cell, GRID, WHITE);
                    continue;
                }
                let v = values[(r * k + c) as usize];
                let color = heat(v / vmax);
                fill(&mut img, x, y, cell, cell, color);
                let label = format!("{:.1}", v * 100.0);
                let ink = if luminance(color) > 140.0 { INK } else { WHITE };
                text(&mut img, x + cell / 2 - text_width(&label, 1) / 2, y + cell / 2 - 3, &label, ink, 1);
            }
        }
        outline(&mut img, x0, y0, side, side, INK);
    }
    // Colour scale.
    let sx = width - scale_w + 8;
    for i in 0..side {
        let v = 1.0 - i as f64 / side.saturating_sub(1).max(1) as f64;
        hline(&mut img, sx, sx + 14, top_m + i, heat(v));
    }
    outline(&mut img, sx, top_m, 14, side, INK);
    text(&mut img, sx + 18, top_m, &format!("{:.1}", vmax * 100.0), INK, 1);
    text(&mut img, sx + 18, top_m + side - 7, "0", INK, 1);
    img
}

/// Per class, the two sets' component-size histograms (share of the class's components
/// in each log2 size bin) as paired bars, with the TV distance per class; a red line marks
/// the island threshold.
///
/// # Panics
/// If the sets' class count differs from the table's.
pub fn component_plot(real: PlotSet, synthetic: PlotSet, classes: &ClassTable) -> RgbImage {
    let k = check(real, synthetic, classes);
    let d = compare(real.stats, synthetic.stats);
    let bins = real.stats.used_bins().max(synthetic.stats.used_bins()) as u32;
    let (bin_w, bar) = (14u32, 6u32);
    let plot_w = bins * bin_w;
    let (pad_l, panel_h, plot_h) = (36u32, 200u32, 130u32);
    let panel_w = (pad_l + plot_w + 16).max(24 * CHAR_W);
    let cols = k.min(4) as u32;
    let rows = k.div_ceil(cols as usize) as u32;
    let top_m = 72u32;
    let width = 12 + cols * panel_w;
    let height = top_m + rows * panel_h + 8;
    let mut img = canvas(width, height);
    let opts = real.stats.options();
    text(&mut img, 12, 10, "COMPONENT SIZES PER CLASS", INK, 2);
    text(
        &mut img,
        12,
        32,
        &format!("SHARE OF A CLASS'S COMPONENTS ({}-CONNECTED) PER SIZE BIN (PIXELS, LOG2 BINS); MEAN TV DISTANCE {:.4}", opts.connectivity, d.component_size_tv),
        MUTED,
        1,
    );
    text(&mut img, 12, 32 + LINE_H, &format!("RED LINE: ISLAND THRESHOLD, {} PX", opts.min_island), RED, 1);
    legend(&mut img, width.saturating_sub(260), 56, real.name, synthetic.name);

    for c in 0..k {
        let (col, row) = (c as u32 % cols, c as u32 / cols);
        let px = 12 + col * panel_w;
        let py = top_m + row * panel_h;
        let color = classes.classes[c].color;
        fill(&mut img, px, py + 4, 8, 8, color);
        text(&mut img, px + 12, py + 5, &truncate(&classes.classes[c].name, 16), INK, 1);
        let tv = match d.component_size_tv_per_class[c] {
            Some(tv) => format!("TV {tv:.3}"),
            None => "NO COMPONENTS".to_string(),
        };
        text(&mut img, px + 12, py + 5 + LINE_H, &tv, MUTED, 1);

        let (rh, sh) = (real.stats.size_histogram(c), synthetic.stats.size_histogram(c));
        let top = rh.iter().chain(&sh).fold(0.0f64, |a, &b| a.max(b));
        let ymax = ((top * 10.0).ceil() / 10.0).max(0.1);
        let x0 = px + pad_l;
        let y0 = py + 32 + plot_h;
        let to_y = |v: f64| y0 - ((v / ymax).clamp(0.0, 1.0) * plot_h as f64).round() as u32;
        for t in [ymax / 2.0, ymax] {
            hline(&mut img, x0, x0 + plot_w, to_y(t), GRID);
        }
        for (t, label) in [(0.0, "0".to_string()), (ymax, format!("{ymax:.1}"))] {
            text(&mut img, x0 - 4 - text_width(&label, 1), to_y(t).saturating_sub(3), &label, MUTED, 1);
        }
        for b in 0..bins {
            let bx = x0 + b * bin_w + 1;
            for (j, (v, hatched)) in [(rh[b as usize], false), (sh[b as usize], true)].into_iter().enumerate() {
                let y = to_y(v);
                if y0 > y {
                    bar_rect(&mut img, bx + j as u32 * bar, y, bar, y0 - y, color, hatched);
                }
            }
            if b % 2 == 0 {
                let label = size_label(1u64 << b);
                text(&mut img, x0 + b * bin_w + bin_w / 2 - text_width(&label, 1) / 2, y0 + 4, &label, MUTED, 1);
            }
        }
        if opts.min_island > 1 {
            let x = x0 + ((opts.min_island as f64).log2() * bin_w as f64).round() as u32;
            if x <= x0 + plot_w {
                for y in (py + 30..=y0).step_by(2) {
                    put(&mut img, x, y, RED);
                }
            }
        }
        hline(&mut img, x0, x0 + plot_w, y0, INK);
        vline(&mut img, x0, y0 - plot_h, y0, INK);
    }
    img
}

fn check(real: PlotSet, synthetic: PlotSet, classes: &ClassTable) -> usize {
    let k = classes.len();
    assert!(real.stats.k() == k && synthetic.stats.k() == k, "plot: statistics of {} and {} classes for a table of {k}", real.stats.k(), synthetic.stats.k());
    k
}

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
