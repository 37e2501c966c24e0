//! [`ClassShares`]: how much of a tile each class should cover, on average.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::classes::ClassTable;
use crate::error::{Error, Result};

/// Number of classes the generator knows (the AI Hub table).
pub const NUM_CLASSES: usize = 8;

/// Relative pixel shares of the 8 classes, by class index (building, parking lot, road,
/// street trees, paddy, dry field, forest, bare land). Weights need not sum to one: the
/// generator aims at `weight / sum` of each tile's pixels, on average over tiles.
///
/// Always valid: every weight finite and ≥ 0, and at least one positive. Serialises as
/// an array of 8 numbers; deserialising validates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "[f32; NUM_CLASSES]", into = "[f32; NUM_CLASSES]")]
pub struct ClassShares {
    weights: [f32; NUM_CLASSES],
}

impl Default for ClassShares {
    /// A suburban-rural mix where every class shows up in almost every 512 × 512 tile:
    /// building 12 %, parking lot 6 %, road 12 %, street trees 5 %, paddy 18 %,
    /// dry field 15 %, forest 22 %, bare land 10 %.
    fn default() -> Self {
        ClassShares { weights: [0.12, 0.06, 0.12, 0.05, 0.18, 0.15, 0.22, 0.10] }
    }
}

impl ClassShares {
    /// Shares from 8 weights by class index; an error names the class and the bad value.
    pub fn new(weights: [f32; NUM_CLASSES]) -> Result<Self> {
        let names = class_names();
        for (w, name) in weights.iter().zip(&names) {
            if !w.is_finite() || *w < 0.0 {
                return Err(invalid(name, format!("weight {w} must be a finite number ≥ 0")));
            }
        }
        let sum: f32 = weights.iter().sum();
        if sum <= 0.0 || !sum.is_finite() {
            return Err(invalid("weights", format!("the weights {weights:?} must have a positive, finite sum")));
        }
        Ok(ClassShares { weights })
    }

    /// The weights as given.
    pub fn weights(&self) -> [f32; NUM_CLASSES] {
        self.weights
    }

    /// The shares, summing to one.
    pub fn normalized(&self) -> [f64; NUM_CLASSES] {
        let sum: f64 = self.weights.iter().map(|&w| w as f64).sum();
        self.weights.map(|w| w as f64 / sum)
    }

    /// Parses `name=share,name=share,…` (class names of the AI Hub table; `_` or `-` may
    /// stand for a space, case is ignored). Listed classes get exactly their share; the
    /// rest of the tile is split among the unlisted classes in proportion to the
    /// defaults. When all 8 classes are listed the values are weights and are normalised.
    ///
    /// `building=0.3,road=0.2` → building 30 %, road 20 %, the other six share 50 %.
    pub fn parse(spec: &str) -> Result<Self> {
        let names = class_names();
        let mut given: [Option<f32>; NUM_CLASSES] = [None; NUM_CLASSES];
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(invalid(part, "expected `class=share`, e.g. `building=0.1`".to_string()));
            };
            let key = name.trim().to_lowercase().replace(['_', '-'], " ");
            let Some(i) = names.iter().position(|n| *n == key) else {
                return Err(invalid(name.trim(), format!("unknown class (known: {})", names.join(", "))));
            };
            let v: f32 = value.trim().parse().map_err(|_| invalid(&names[i], format!("`{}` is not a number", value.trim())))?;
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(&names[i], format!("share {v} must be a finite number ≥ 0")));
            }
            if given[i].replace(v).is_some() {
                return Err(invalid(&names[i], "given twice".to_string()));
            }
        }
        if given.iter().all(Option::is_none) {
            return Err(invalid(spec, "no `class=share` pairs".to_string()));
        }
        if given.iter().all(Option::is_some) {
            return ClassShares::new(given.map(|v| v.unwrap_or(0.0)));
        }
        let listed: f32 = given.iter().flatten().sum();
        if listed > 1.0 + 1e-4 {
            return Err(invalid(spec, format!("the listed shares sum to {listed}, more than 1 (list all 8 classes to give weights instead)")));
        }
        let defaults = ClassShares::default().weights;
        let rest: f32 = (0..NUM_CLASSES).filter(|&i| given[i].is_none()).map(|i| defaults[i]).sum();
        let left = (1.0 - listed).max(0.0);
        let mut w = [0.0; NUM_CLASSES];
        for i in 0..NUM_CLASSES {
            w[i] = given[i].unwrap_or(defaults[i] / rest * left);
        }
        ClassShares::new(w)
    }

    /// `building=0.120,parking lot=0.060,…` (normalised shares), the inverse of
    /// [`ClassShares::parse`].
    pub fn to_spec(&self) -> String {
        let names = class_names();
        self.normalized().iter().zip(&names).map(|(s, n)| format!("{n}={s:.3}")).collect::<Vec<_>>().join(",")
    }
}

impl TryFrom<[f32; NUM_CLASSES]> for ClassShares {
    type Error = Error;
    fn try_from(w: [f32; NUM_CLASSES]) -> Result<Self> {
        ClassShares::new(w)
    }
}

impl From<ClassShares> for [f32; NUM_CLASSES] {
    fn from(s: ClassShares) -> Self {
        s.weights
    }
}

impl FromStr for ClassShares {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ClassShares::parse(s)
    }
}

fn class_names() -> Vec<String> {
    ClassTable::ai_hub().classes.into_iter().map(|c| c.name).collect()
}

fn invalid(key: &str, message: String) -> Error {
    Error::Invalid { origin: "class shares".into(), key: key.to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_shares_are_valid_and_cover_every_class() {
        let d = ClassShares::default();
        assert_eq!(ClassShares::new(d.weights()).unwrap(), d);
        assert!(d.normalized().iter().all(|&s| s > 0.02));
        assert!((d.normalized().iter().sum::<f64>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bad_weights_are_named() {
        let mut w = ClassShares::default().weights();
        w[3] = -0.5;
        let e = ClassShares::new(w).unwrap_err().to_string();
        assert!(e.contains("street trees") && e.contains("-0.5"), "{e}");
        w[3] = f32::NAN;
        assert!(ClassShares::new(w).unwrap_err().to_string().contains("NaN"));
        assert!(ClassShares::new([0.0; 8]).is_err());
    }

    #[test]
    fn parse_gives_listed_shares_and_splits_the_rest() {
        let s = ClassShares::parse("building=0.3, road=0.2").unwrap().normalized();
        assert!((s[0] - 0.3).abs() < 1e-6 && (s[2] - 0.2).abs() < 1e-6, "{s:?}");
        let d = ClassShares::default().normalized();
        // The others keep their default ratios.
        assert!((s[6] / s[4] - d[6] / d[4]).abs() < 1e-5);
        let p = ClassShares::parse("Parking_Lot=0.1,street-trees=0").unwrap().normalized();
        assert!((p[1] - 0.1).abs() < 1e-6 && p[3] == 0.0);
        let back = ClassShares::parse(&ClassShares::default().to_spec()).unwrap().normalized();
        for i in 0..8 {
            assert!((back[i] - d[i]).abs() < 1e-3);
        }
    }

    #[test]
    fn parse_errors_name_the_value() {
        for (spec, needle) in [("buildng=0.1", "buildng"), ("road=abc", "abc"), ("road=-1", "-1"), ("road", "road"), ("road=0.7,forest=0.6", "1.3"), ("road=0.1,road=0.2", "twice")]
        {
            let e = ClassShares::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let s = ClassShares::default();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ClassShares>(&j).unwrap(), s);
        let bad = "[0.1,0.1,0.1,-0.1,0.1,0.1,0.1,0.1]";
        assert!(serde_json::from_str::<ClassShares>(bad).unwrap_err().to_string().contains("-0.1"));
    }
}
