//! The class table: which raw mask codes mean which land-cover class.
//!
//! Label PNGs hold raw codes (the AI Hub convention: 10, 20, … 80, and 100 for "not a
//! target"); models and statistics work on dense class indices `0..K`. The table maps
//! between the two and carries a preview colour per class.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Class index used in a [`crate::LabelMap`] for pixels that belong to no class
/// (the raw "ignore" code, 100 in the AI Hub masks).
pub const IGNORE_INDEX: u8 = 255;

/// The column of class `name`'s pixel share in a shard's Parquet side table
/// (`dataset/SHARD.parquet`): `share_` and the name lowercased, every character but
/// ASCII letters and digits as `_` (`parking lot` → `share_parking_lot`).
pub fn share_column(name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    format!("share_{clean}")
}

/// One land-cover class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassDef {
    /// Human-readable name, e.g. `building`.
    pub name: String,
    /// Raw value of this class in a label PNG.
    pub code: u8,
    /// Preview colour (RGB).
    pub color: [u8; 3],
}

/// The ordered list of classes plus the raw code for "ignore".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassTable {
    pub classes: Vec<ClassDef>,
    /// Raw code meaning "not a target"; such pixels carry [`IGNORE_INDEX`].
    pub ignore_code: u8,
}

impl Default for ClassTable {
    fn default() -> Self {
        Self::ai_hub()
    }
}

impl ClassTable {
    /// How `other` differs from this table, at the first place it does (`None` when they
    /// are the same), for an error that shows a user what to change; `names` say whose the
    /// tables are: "class 2 is urban (code 1, colour [200, 0, 0]) in the model, vegetation
    /// (code 2, colour [0, 180, 0]) in the run spec", "ignore_code 0 in …, 255 in …",
    /// "3 classes in … (…), 4 in … (…)".
    pub fn difference(&self, other: &ClassTable, (this, that): (&str, &str)) -> Option<String> {
        let show = |c: &ClassDef| format!("{} (code {}, colour {:?})", c.name, c.code, c.color);
        if let Some((i, (a, b))) = self.classes.iter().zip(&other.classes).enumerate().find(|(_, (a, b))| a != b) {
            return Some(format!("class {i} is {} in {this}, {} in {that}", show(a), show(b)));
        }
        if self.classes.len() != other.classes.len() {
            let names = |t: &ClassTable| t.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
            return Some(format!("{} classes in {this} ({}), {} in {that} ({})", self.classes.len(), names(self), other.classes.len(), names(other)));
        }
        (self.ignore_code != other.ignore_code).then(|| format!("ignore_code {} in {this}, {} in {that}", self.ignore_code, other.ignore_code))
    }

    /// The codes with their names, then the ignore code: "10 building, 20 parking lot, …,
    /// 100 ignore" (what an error about codes lists as valid).
    pub fn code_list(&self) -> String {
        let mut all: Vec<String> = self.classes.iter().map(|c| format!("{} {}", c.code, c.name)).collect();
        all.push(format!("{} ignore", self.ignore_code));
        all.join(", ")
    }

    /// The AI Hub aerial land-cover table (8 classes, ignore code 100).
    pub fn ai_hub() -> Self {
        let c = |name: &str, code, color| ClassDef { name: name.to_string(), code, color };
        ClassTable {
            classes: vec![
                c("building", 10, [220, 60, 50]),
                c("parking lot", 20, [250, 170, 40]),
                c("road", 30, [128, 128, 128]),
                c("street trees", 40, [40, 200, 120]),
                c("paddy", 50, [90, 170, 230]),
                c("dry field", 60, [210, 200, 90]),
                c("forest", 70, [20, 110, 40]),
                c("bare land", 80, [160, 110, 70]),
            ],
            ignore_code: 100,
        }
    }

    /// Number of classes `K`.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Checks the table's invariants: 1..=254 classes, unique codes and names, the ignore
    /// code distinct from every class code. `origin` names where the table came from.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid { origin: origin.to_string(), key: "classes".into(), message: msg });
        if self.classes.is_empty() || self.classes.len() > 254 {
            return bad(format!("expected 1 to 254 classes, found {}", self.classes.len()));
        }
        for (i, a) in self.classes.iter().enumerate() {
            if a.code == self.ignore_code {
                return bad(format!("class {:?} uses code {}, which is the ignore code", a.name, a.code));
            }
            for b in &self.classes[i + 1..] {
                if a.code == b.code {
                    return bad(format!("classes {:?} and {:?} share code {}", a.name, b.name, a.code));
                }
                if a.name == b.name {
                    return bad(format!("class name {:?} appears twice", a.name));
                }
                if share_column(&a.name) == share_column(&b.name) {
                    return bad(format!(
                        "class names {:?} and {:?} both become the Parquet column {} (names are lowercased, other characters than a-z and 0-9 become _)",
                        a.name,
                        b.name,
                        share_column(&a.name)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Class index of a raw code: `Some(i)`, `Some(IGNORE_INDEX)` for the ignore code,
    /// `None` for a code that is not in the table.
    pub fn index_of_code(&self, code: u8) -> Option<u8> {
        if code == self.ignore_code {
            return Some(IGNORE_INDEX);
        }
        self.classes.iter().position(|c| c.code == code).map(|i| i as u8)
    }

    /// Raw code of a class index (the ignore code for [`IGNORE_INDEX`]).
    pub fn code_of_index(&self, index: u8) -> u8 {
        if index == IGNORE_INDEX {
            self.ignore_code
        } else {
            self.classes[index as usize].code
        }
    }

    /// A 256-entry lookup table raw code → class index, `None` for unknown codes.
    pub fn code_lut(&self) -> [Option<u8>; 256] {
        let mut lut = [None; 256];
        for (code, slot) in lut.iter_mut().enumerate() {
            *slot = self.index_of_code(code as u8);
        }
        lut
    }

    /// Preview colour of a class index (black for ignore).
    pub fn color_of_index(&self, index: u8) -> [u8; 3] {
        self.classes.get(index as usize).map(|c| c.color).unwrap_or([0, 0, 0])
    }

    /// Colour of "ignore" in a palette-coloured mask: black, what
    /// [`crate::LabelMap::colorize`] paints for [`IGNORE_INDEX`].
    pub const IGNORE_COLOR: [u8; 3] = [0, 0, 0];

    /// Class index of a palette colour: `Some(i)` for class `i`'s colour,
    /// `Some(IGNORE_INDEX)` for [`Self::IGNORE_COLOR`], `None` for any other colour.
    pub fn index_of_color(&self, rgb: [u8; 3]) -> Option<u8> {
        if rgb == Self::IGNORE_COLOR {
            return Some(IGNORE_INDEX);
        }
        self.classes.iter().position(|c| c.color == rgb).map(|i| i as u8)
    }

    /// The `[classes]` table of a TOML file: a run spec, or a file holding only that table
    /// (`ignore_code`, then one `[[classes.classes]]` with `name`, `code` and `color` per
    /// class), checked ([`Self::validate`]). Errors name the file and the key.
    pub fn from_toml_file(path: &std::path::Path) -> Result<ClassTable> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// [`Self::from_toml_file`] of TOML text; `origin` names where it came from.
    pub fn from_toml(text: &str, origin: &str) -> Result<ClassTable> {
        /// Any TOML with a `[classes]` table; its other tables (a run spec's) are not read.
        #[derive(Deserialize)]
        struct WithClasses {
            classes: Option<ClassTable>,
        }
        let file: WithClasses = toml::from_str(text).map_err(|e| crate::spec::toml_invalid(text, &e, origin))?;
        let table = file.classes.ok_or_else(|| Error::Invalid {
            origin: origin.to_string(),
            key: "classes".into(),
            message: "missing: expected a [classes] table (ignore_code = N, then one [[classes.classes]] with name, code and color per class), as in a run spec (a run spec without one uses the AI Hub table, the default)".into(),
        })?;
        table.validate(origin)?;
        Ok(table)
    }

    /// Checks the colours can serve as a palette for masks: every class colour distinct
    /// and none equal to [`Self::IGNORE_COLOR`]. `origin` names where the table came from.
    pub fn validate_palette(&self, origin: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid { origin: origin.to_string(), key: "classes".into(), message: msg });
        for (i, a) in self.classes.iter().enumerate() {
            if a.color == Self::IGNORE_COLOR {
                return bad(format!("class {:?} has colour {:?}, the ignore colour of palette masks", a.name, a.color));
            }
            if let Some(b) = self.classes[i + 1..].iter().find(|b| b.color == a.color) {
                return bad(format!("classes {:?} and {:?} share colour {:?}, so a palette mask cannot tell them apart", a.name, b.name, a.color));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_of_two_tables_is_named() {
        let t = ClassTable::ai_hub();
        let d = |other: &ClassTable| t.difference(other, ("a", "b")).unwrap_or_default();
        assert_eq!(t.difference(&t.clone(), ("a", "b")), None);
        let mut swapped = t.clone();
        swapped.classes.swap(1, 2);
        assert_eq!(d(&swapped), "class 1 is parking lot (code 20, colour [250, 170, 40]) in a, road (code 30, colour [128, 128, 128]) in b");
        let mut colour = t.clone();
        colour.classes[7].color[0] += 1;
        assert!(d(&colour).starts_with("class 7 is bare land (code 80, colour ["), "{}", d(&colour));
        let mut fewer = t.clone();
        fewer.classes.pop();
        assert!(d(&fewer).starts_with("8 classes in a (building, ") && d(&fewer).ends_with(", forest)"), "{}", d(&fewer));
        let ignore = ClassTable { ignore_code: 255, ..t.clone() };
        assert_eq!(d(&ignore), "ignore_code 100 in a, 255 in b");
    }

    /// A `[classes]` table read from a run spec or a file of its own; errors name the file
    /// and the key.
    #[test]
    fn class_tables_read_from_toml_name_the_file_and_key() {
        let table = "[classes]\nignore_code = 255\n\
            [[classes.classes]]\nname = \"water\"\ncode = 1\ncolor = [0, 0, 255]\n\
            [[classes.classes]]\nname = \"land\"\ncode = 2\ncolor = [0, 255, 0]\n";
        let read = ClassTable::from_toml(table, "t.toml").unwrap();
        assert_eq!((read.len(), read.ignore_code, read.classes[1].code, read.classes[1].name.as_str()), (2, 255, 2, "land"));
        let spec = format!("[run]\ncount = 4\n[output]\nurl = \"memory://\"\n{table}");
        assert_eq!(ClassTable::from_toml(&spec, "spec.toml").unwrap(), read, "a run spec's own table");
        let e = ClassTable::from_toml("[run]\ncount = 4\n", "spec.toml").unwrap_err().to_string();
        assert!(e.starts_with("spec.toml: classes: missing"), "{e}");
        let e = ClassTable::from_toml(&table.replacen("code = 2\n", "code = \"two\"\n", 1), "t.toml").unwrap_err().to_string();
        assert!(e.starts_with("t.toml: classes.classes") && e.contains("line 9"), "{e}");
        let e = ClassTable::from_toml(&table.replacen("code = 2\n", "code = 1\n", 1), "t.toml").unwrap_err().to_string();
        assert!(e.contains("share code 1"), "{e}");
        let e = ClassTable::from_toml_file(std::path::Path::new("/no/such/classes.toml")).unwrap_err().to_string();
        assert!(e.contains("/no/such/classes.toml"), "{e}");
    }

    #[test]
    fn ai_hub_table_round_trips_codes() {
        let t = ClassTable::ai_hub();
        t.validate("test").unwrap();
        assert_eq!(t.len(), 8);
        for i in 0..8u8 {
            assert_eq!(t.index_of_code(t.code_of_index(i)), Some(i));
        }
        assert_eq!(t.index_of_code(100), Some(IGNORE_INDEX));
        assert_eq!(t.code_of_index(IGNORE_INDEX), 100);
        assert_eq!(t.index_of_code(11), None);
    }

    #[test]
    fn duplicate_codes_are_rejected_with_names() {
        let mut t = ClassTable::ai_hub();
        t.classes[1].code = 10;
        let err = t.validate("spec.toml").unwrap_err().to_string();
        assert!(err.contains("spec.toml") && err.contains("building") && err.contains("parking lot"), "{err}");
    }

    #[test]
    fn names_that_share_a_parquet_column_are_rejected() {
        assert_eq!(share_column("parking lot"), "share_parking_lot");
        let mut t = ClassTable::ai_hub();
        t.classes[5].name = "Parking-Lot".into();
        let err = t.validate("spec.toml").unwrap_err().to_string();
        assert!(err.contains("share_parking_lot") && err.contains("Parking-Lot"), "{err}");
    }
}
