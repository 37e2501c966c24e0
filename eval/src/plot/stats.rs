//! Plots of two sets' [`LabelStats`] (what `labelgen-eval labels` writes).
//!
//! Everywhere the real set is drawn solid and the synthetic set hatched, each bar in its
//! class's preview colour (the colours of the colourised label previews).

use shared::ClassTable;
use shared::RgbImage;

use super::{bar_rect, canvas, fill, hatch_fill, heat, hline, legend, luminance, outline, put, size_label, text, text_width, truncate, vline, wrap};
use super::{CHAR_W, GRID, INK, LINE_H, MUTED, RED, WHITE};
use crate::stats::{compare, LabelStats};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StatsOptions;
    use shared::procedural::{generate_labels, ClassShares};
    use shared::LabelMap;

    #[test]
    fn stats_plots_have_the_expected_sizes_and_colours() {
        let classes = ClassTable::ai_hub();
        let maps: Vec<LabelMap> = (0..2).map(|i| generate_labels(i, 32, &ClassShares::default())).collect();
        let mut s = LabelStats::new(8, StatsOptions::default());
        for m in &maps {
            s.add(m);
        }
        let (a, b) = (PlotSet { name: "REAL", stats: &s }, PlotSet { name: "SYNTHETIC", stats: &s });
        for img in [share_plot(a, b, &classes), adjacency_plot(a, b, &classes), component_plot(a, b, &classes)] {
            assert!(img.width > 300 && img.height > 200, "{}×{}", img.width, img.height);
            assert_eq!(img.data.len(), (img.width * img.height * 3) as usize);
            let back = shared::RgbImage::from_png(&img.to_png(), "plot").unwrap();
            assert_eq!(back, img);
        }
        let bars = share_plot(a, b, &classes);
        let has = |c: [u8; 3]| bars.data.chunks(3).any(|p| p == c);
        for (i, class) in classes.classes.iter().enumerate() {
            if s.class_shares()[i] > 0.01 {
                assert!(has(class.color), "no bar of {}", class.name);
            }
        }
    }
}
