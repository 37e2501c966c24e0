//! The utility evaluation's IoU chart (`labelgen-eval utility`'s `iou.png`).

use shared::RgbImage;

use super::{canvas, fill, hline, vline};

/// A mean and a sample standard deviation, either missing where undefined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanSd {
    pub mean: Option<f64>,
    pub sd: Option<f64>,
}

/// One group of bars: a class (or mIoU), its colour, and its two arms (baseline, with
/// synthetic data) as fractions in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarGroup {
    pub color: [u8; 3],
    pub arms: [MeanSd; 2],
}

const WHISKER: [u8; 3] = [20, 20, 20];
const AXIS: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [225, 225, 225];

/// Per group: the first arm's bar solid, the second's light, in the group's colour; a
/// whisker of ± sd on each; grid lines every 10 % of a 0-100 % axis. A missing mean draws
/// no bar. No text (the numbers are in the report beside it).
pub fn iou_chart(groups: &[BarGroup]) -> RgbImage {
    let (bar_w, gap, plot_h, margin) = (18u32, 14u32, 300u32, 20u32);
    let w = margin * 2 + groups.len() as u32 * (2 * bar_w + gap);
    let h = plot_h + 2 * margin;
    let mut img = canvas(w, h);
    let base_y = margin + plot_h;
    let y_of = |v: f64| base_y - (v.clamp(0.0, 1.0) * plot_h as f64).round() as u32;
    for step in 0..=10 {
        hline(&mut img, margin, w - margin - 1, y_of(step as f64 / 10.0), if step == 0 { AXIS } else { GRID });
    }
    let light = |c: [u8; 3]| c.map(|v| (v as u16 + 2 * 255).div_ceil(3) as u8);
    for (g, group) in groups.iter().enumerate() {
        for (j, arm) in group.arms.iter().enumerate() {
            let Some(mean) = arm.mean else { continue };
            let x0 = margin + gap / 2 + g as u32 * (2 * bar_w + gap) + j as u32 * bar_w;
            let top = y_of(mean);
            fill(&mut img, x0 + 1, top, bar_w - 2, base_y - top, if j == 0 { group.color } else { light(group.color) });
            if let Some(sd) = arm.sd {
                let (lo, hi) = (y_of(mean - sd), y_of(mean + sd));
                let xm = x0 + bar_w / 2;
                vline(&mut img, xm, hi, lo, WHISKER);
                hline(&mut img, xm - 3, xm + 3, hi, WHISKER);
                hline(&mut img, xm - 3, xm + 3, lo, WHISKER);
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_chart_draws_solid_and_light_bars_with_whiskers() {
        let red = [200, 0, 0];
        let groups = [
            BarGroup { color: red, arms: [MeanSd { mean: Some(0.5), sd: Some(0.1) }, MeanSd { mean: Some(0.25), sd: None }] },
            BarGroup { color: [90, 90, 90], arms: [MeanSd { mean: None, sd: None }, MeanSd { mean: Some(1.0), sd: None }] },
        ];
        let img = iou_chart(&groups);
        assert_eq!((img.width, img.height), (20 * 2 + 2 * (2 * 18 + 14), 340));
        // Group 0, arm 0: x 28..44, from y 170 (50 %) down to the axis at 320.
        assert_eq!(img.pixel(30, 200), red);
        assert_eq!(img.pixel(30, 140), GRID, "the 60 % grid line above the bar");
        // Its whisker: x 36, from 140 (60 %) to 200 (40 %).
        assert_eq!(img.pixel(36, 141), WHISKER);
        // Arm 1 is light: (200 + 510) / 3 rounded up, (0 + 510) / 3.
        assert_eq!(img.pixel(50, 300), [237, 170, 170]);
        assert_eq!(img.pixel(50, 240), [255, 255, 255], "25 % ends at y 245");
        // Group 1 draws no baseline bar (no mean) and a full-height second bar.
        assert_eq!(img.pixel(80, 300), [255, 255, 255]);
        assert_eq!(img.pixel(100, 21), [200, 200, 200]);
    }
}
