//! Noise schedules: `β_t` for `t = 0…T-1` and `ᾱ_t = Π_{s≤t} (1 - β_s)`.
//!
//! - `linear` (Ho et al.): `β` evenly spaced from `1e-4` to `0.02` at `T = 1000`; for other
//!   `T` both ends are scaled by `1000/T` (as improved-DDPM does), so `ᾱ_{T-1}` stays near
//!   0 and sampling from pure noise stays right; β is capped at 0.999 (which binds for `T ≤ 20`).
//! - `cosine` (Nichol & Dhariwal): `ᾱ(t) = f(t)/f(0)`, `f(t) = cos²((t/T + s)/(1 + s)·π/2)`,
//!   `s = 0.008`, `β_t = min(1 - ᾱ(t+1)/ᾱ(t), 0.999)`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which β schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Linear,
    Cosine,
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduleKind::Linear => "linear",
            ScheduleKind::Cosine => "cosine",
        })
    }
}

impl FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(ScheduleKind::Linear),
            "cosine" => Ok(ScheduleKind::Cosine),
            other => Err(format!("unknown schedule {other:?} (expected linear or cosine)")),
        }
    }
}

/// The β schedule and its cumulative products, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub kind: ScheduleKind,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

pub const LINEAR_BETA_START: f64 = 1e-4;
pub const LINEAR_BETA_END: f64 = 0.02;
pub const COSINE_S: f64 = 0.008;
pub const COSINE_MAX_BETA: f64 = 0.999;

impl NoiseSchedule {
    /// # Panics
    /// If `timesteps` is 0.
    pub fn new(kind: ScheduleKind, timesteps: usize) -> Self {
        assert!(timesteps > 0, "a noise schedule needs at least one timestep");
        let t = timesteps;
        let betas: Vec<f64> = match kind {
            ScheduleKind::Linear if t == 1 => vec![COSINE_MAX_BETA],
            ScheduleKind::Linear => {
                let scale = 1000.0 / t as f64;
                let (start, end) = (LINEAR_BETA_START * scale, LINEAR_BETA_END * scale);
                (0..t).map(|i| (start + (end - start) * i as f64 / (t - 1) as f64).min(COSINE_MAX_BETA)).collect()
            }
            ScheduleKind::Cosine => {
                let f = |i: usize| ((i as f64 / t as f64 + COSINE_S) / (1.0 + COSINE_S) * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..t).map(|i| (1.0 - f(i + 1) / f(i)).min(COSINE_MAX_BETA)).collect()
            }
        };
        let mut alphas_cumprod = Vec::with_capacity(t);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alphas_cumprod.push(acc);
        }
        NoiseSchedule { kind, betas, alphas_cumprod }
    }

    /// `T`.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// `ᾱ_t`, with `ᾱ_{-1} = 1` for `t < 0`.
    pub fn alpha_bar(&self, t: isize) -> f64 {
        if t < 0 {
            1.0
        } else {
            self.alphas_cumprod[t as usize]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddpm_linear_schedule_closed_form() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 1000);
        assert_eq!(s.len(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-15 && (s.betas[999] - 0.02).abs() < 1e-15);
        assert!((s.betas[500] - (1e-4 + (0.02 - 1e-4) * 500.0 / 999.0)).abs() < 1e-15);
        // ᾱ is the cumulative product of 1 - β.
        let prod: f64 = s.betas[..=10].iter().map(|b| 1.0 - b).product();
        assert!((s.alphas_cumprod[10] - prod).abs() < 1e-12);
        // Known value from the DDPM code: ᾱ_999 ≈ 4.04e-5.
        assert!((s.alphas_cumprod[999] - 4.036e-5).abs() < 1e-7, "ᾱ_T = {}", s.alphas_cumprod[999]);
    }

    /// With T != 1000 the linear schedule is rescaled: at T = 100 unscaled β would leave
    /// ᾱ_{T-1} ≈ 0.37 while sampling starts from pure noise.
    #[test]
    fn ddpm_linear_schedule_scales_with_t() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 100);
        assert!((s.betas[0] - 1e-3).abs() < 1e-15 && (s.betas[99] - 0.2).abs() < 1e-15);
        assert!(s.alphas_cumprod[99] < 1e-4, "ᾱ_T = {}", s.alphas_cumprod[99]);
        for t in [1usize, 10, 20, 50, 250] {
            let s = NoiseSchedule::new(ScheduleKind::Linear, t);
            assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999), "T = {t}");
            assert!(s.alphas_cumprod[t - 1] < 2e-3, "T = {t}: ᾱ_T = {}", s.alphas_cumprod[t - 1]);
        }
    }

    #[test]
    fn ddpm_cosine_schedule_closed_form() {
        let t = 1000;
        let s = NoiseSchedule::new(ScheduleKind::Cosine, t);
        let f = |i: f64| ((i / t as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
        // Where β is not clipped, ᾱ_t = f(t+1)/f(0) exactly.
        for i in [0usize, 1, 10, 100, 500, 900, 990] {
            let want = f(i as f64 + 1.0) / f(0.0);
            assert!((s.alphas_cumprod[i] - want).abs() < 1e-9 * want.max(1e-3), "ᾱ_{i} = {} vs {want}", s.alphas_cumprod[i]);
        }
        assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
        assert_eq!(s.betas[999], 0.999, "the last β is clipped at 0.999");
        let prod: f64 = s.betas.iter().map(|b| 1.0 - b).product();
        assert!((s.alphas_cumprod[999] - prod).abs() < 1e-15);
    }
}
