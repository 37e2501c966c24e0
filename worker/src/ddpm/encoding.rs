//! Label maps ↔ the continuous images the diffusion model works on.
//!
//! - `onehot`: K channels, `+1` for the pixel's class and `-1` elsewhere; decoded by argmax.
//! - `gray`: one channel, class index `i` mapped linearly to `-1 + 2i/(K-1)`; decoded by
//!   rounding to the nearest class. This is the paper-like encoding: between two classes the
//!   model can pass through the ones in between, which makes "ramp edges".
//!
//! Pixels marked [`shared::IGNORE_INDEX`] have no class: `onehot` encodes them as all `-1`,
//! `gray` as class 0, and [`Encoding::mask`] marks them so training leaves them out of the
//! loss and feeds pure noise there (see `train::make_batch`). Decoding never yields ignore.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use shared::LabelMap;

/// How a label map is encoded as a `[C, H, W]` image in `[-1, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    OneHot,
    Gray,
}

impl Encoding {
    /// Channels for `k` classes.
    pub fn channels(self, k: usize) -> usize {
        match self {
            Encoding::OneHot => k,
            Encoding::Gray => 1,
        }
    }

    /// `map` as a `[C, H, W]` row-major buffer for `k` classes.
    pub fn encode(self, map: &LabelMap, k: usize) -> Vec<f32> {
        let n = map.data.len();
        match self {
            Encoding::OneHot => {
                let mut out = vec![-1.0f32; k * n];
                for (p, &c) in map.data.iter().enumerate() {
                    if (c as usize) < k {
                        out[c as usize * n + p] = 1.0;
                    }
                }
                out
            }
            Encoding::Gray => {
                let step = if k > 1 { 2.0 / (k - 1) as f32 } else { 0.0 };
                map.data.iter().map(|&c| if (c as usize) < k { -1.0 + step * c as f32 } else { -1.0 }).collect()
            }
        }
    }

    /// `1` for each pixel with a class (`< k`), `0` for ignored ones: the loss mask.
    pub fn mask(map: &LabelMap, k: usize) -> Vec<f32> {
        map.data.iter().map(|&c| if (c as usize) < k { 1.0 } else { 0.0 }).collect()
    }

    /// The label map of a `[C, H, W]` buffer (`width × height` pixels, `k` classes).
    pub fn decode(self, x: &[f32], k: usize, width: u32, height: u32) -> LabelMap {
        let n = width as usize * height as usize;
        assert_eq!(x.len(), self.channels(k) * n, "decode: buffer of {} values for {}×{}×{}", x.len(), self.channels(k), height, width);
        let data = match self {
            Encoding::OneHot => (0..n)
                .map(|p| {
                    let mut best = 0;
                    for c in 1..k {
                        if x[c * n + p] > x[best * n + p] {
                            best = c;
                        }
                    }
                    best as u8
                })
                .collect(),
            Encoding::Gray => {
                let top = (k.max(1) - 1) as f32;
                x.iter().map(|&v| ((v.clamp(-1.0, 1.0) + 1.0) * 0.5 * top).round().clamp(0.0, top) as u8).collect()
            }
        };
        LabelMap { width, height, data }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::OneHot => "onehot",
            Encoding::Gray => "gray",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "onehot" => Ok(Encoding::OneHot),
            "gray" => Ok(Encoding::Gray),
            other => Err(format!("unknown encoding {other:?} (expected onehot or gray)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::procedural::{generate_labels, ClassShares};

    #[test]
    fn ddpm_encodings_round_trip() {
        let map = generate_labels(5, 32, &ClassShares::default());
        for enc in [Encoding::OneHot, Encoding::Gray] {
            let x = enc.encode(&map, 8);
            assert_eq!(x.len(), enc.channels(8) * 32 * 32);
            assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)), "{enc}: values outside [-1, 1]");
            assert_eq!(enc.decode(&x, 8, 32, 32), map, "{enc}: exact round trip");
            // Small perturbations decode to the same map.
            let noisy: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + if i % 2 == 0 { 0.1 } else { -0.1 }).collect();
            assert_eq!(enc.decode(&noisy, 8, 32, 32), map, "{enc}: round trip under ±0.1 noise");
        }
    }

    #[test]
    fn ddpm_gray_levels_are_linear() {
        let map = LabelMap { width: 8, height: 1, data: (0..8).collect() };
        let x = Encoding::Gray.encode(&map, 8);
        for (i, v) in x.iter().enumerate() {
            assert!((v - (-1.0 + 2.0 * i as f32 / 7.0)).abs() < 1e-6);
        }
        // Halfway between class 2 and 3 rounds up; values beyond ±1 clamp.
        let d = Encoding::Gray.decode(&[-1.0 + 2.5 * 2.0 / 7.0 + 1e-4, -3.0, 7.0], 8, 3, 1);
        assert_eq!(d.data, vec![3, 0, 7]);
        assert_eq!("gray".parse::<Encoding>().unwrap(), Encoding::Gray);
        assert!("bits".parse::<Encoding>().unwrap_err().contains("onehot or gray"));
    }
}
