//! `dataset/SHARD.parquet`: a WebDataset shard's samples as a table, one row per sample,
//! beside its tar (as img2dataset writes them), so pandas, pyarrow or DuckDB can filter a
//! run by class share or model without opening a tar.
//!
//! Columns: `key`, `index`, `seed` (unsigned 64-bit: loss-free, unlike JSON numbers),
//! `shard`, `width`, `height`, `image`, `label` (paths as in `manifest.jsonl`),
//! `image_sha256`, `label_sha256`, `share_CLASS` per class (pixel share, `CLASS` the class
//! name with non-alphanumerics as `_`), then each pipeline field (`extra`: cleanup counts,
//! model digests, sampler…) as a nullable column typed from its values (integer, double,
//! boolean or string; anything else as JSON text). Snappy-compressed, one row group.

use std::collections::BTreeMap;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DataType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::types::Type;

use super::ManifestLine;
use crate::classes::ClassTable;
use crate::error::{Error, Result};

/// One column's values; `None` is a null (only in pipeline fields).
enum Values {
    I64(Vec<Option<i64>>),
    I32(Vec<Option<i32>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Str(Vec<Option<String>>),
}

struct Column {
    name: String,
    required: bool,
    /// `seed`: an unsigned 64-bit integer stored in INT64's bits.
    unsigned: bool,
    values: Values,
}

/// The Parquet file of one shard's lines. `origin` names the shard in errors.
pub fn shard_table(lines: &[ManifestLine], classes: &ClassTable, origin: &str) -> Result<Vec<u8>> {
    let req = |name: &str, values: Values| Column { name: name.into(), required: true, unsigned: false, values };
    let strs = |f: &dyn Fn(&ManifestLine) -> String| Values::Str(lines.iter().map(|l| Some(f(l))).collect());
    let mut cols = vec![
        req("key", strs(&|l| l.key.clone())),
        req("index", Values::I64(lines.iter().map(|l| Some(l.index as i64)).collect())),
        // The bits of the u64, read back as unsigned through the logical type.
        Column { name: "seed".into(), required: true, unsigned: true, values: Values::I64(lines.iter().map(|l| Some(l.seed as i64)).collect()) },
        req("shard", Values::I64(lines.iter().map(|l| Some(l.shard as i64)).collect())),
        req("width", Values::I32(lines.iter().map(|l| Some(l.width as i32)).collect())),
        req("height", Values::I32(lines.iter().map(|l| Some(l.height as i32)).collect())),
        req("image", strs(&|l| l.image.clone())),
        req("label", strs(&|l| l.label.clone())),
        req("image_sha256", strs(&|l| l.image_sha256.clone())),
        req("label_sha256", strs(&|l| l.label_sha256.clone())),
    ];
    for c in &classes.classes {
        let share = |l: &ManifestLine| {
            let total: u64 = l.class_pixels.values().sum();
            if total == 0 {
                0.0
            } else {
                l.class_pixels.get(&c.name).copied().unwrap_or(0) as f64 / total as f64
            }
        };
        cols.push(req(&crate::classes::share_column(&c.name), Values::F64(lines.iter().map(|l| Some(share(l))).collect())));
    }
    let mut extras: BTreeMap<&str, Vec<Option<&serde_json::Value>>> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        for (k, v) in &l.extra {
            extras.entry(k.as_str()).or_insert_with(|| vec![None; lines.len()])[i] = Some(v);
        }
    }
    for (name, vals) in extras {
        if cols.iter().any(|c| c.name == name) {
            return Err(Error::format(origin, format!("pipeline field {name:?} has the name of a standard column")));
        }
        let present = || vals.iter().flatten();
        // Integers beyond i64 (rare) go as text rather than wrap.
        let values = if present().all(|v| v.is_i64()) {
            Values::I64(vals.iter().map(|v| v.and_then(|v| v.as_i64())).collect())
        } else if present().any(|v| v.is_u64()) && present().all(|v| v.is_i64() || v.is_u64()) {
            Values::Str(vals.iter().map(|v| v.map(|v| v.to_string())).collect())
        } else if present().all(|v| v.is_number()) {
            Values::F64(vals.iter().map(|v| v.and_then(|v| v.as_f64())).collect())
        } else if present().all(|v| v.is_boolean()) {
            Values::Bool(vals.iter().map(|v| v.and_then(|v| v.as_bool())).collect())
        } else {
            Values::Str(vals.iter().map(|v| v.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect())
        };
        cols.push(Column { name: name.into(), required: false, unsigned: false, values });
    }
    write(&cols).map_err(|e| Error::format(origin, format!("cannot write the shard's Parquet table: {e}")))
}

/// What [`table_rows`] reads back from a shard's table: the columns that tie a row to its
/// manifest line.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub key: String,
    pub index: u64,
    pub image_sha256: String,
    pub label_sha256: String,
}

/// The rows of a shard's table (`key`, `index`, `image_sha256`, `label_sha256`), for
/// `coordinator verify`. Errors name `origin`: not a Parquet file, a column missing or of
/// another type.
pub fn table_rows(data: bytes::Bytes, origin: &str) -> Result<Vec<TableRow>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let bad = |m: String| Error::format(origin, m);
    let reader = SerializedFileReader::new(data).map_err(|e| bad(format!("not a Parquet file: {e}")))?;
    let rows = reader.get_row_iter(None).map_err(|e| bad(format!("cannot read its rows: {e}")))?;
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        let row = row.map_err(|e| bad(format!("row {n}: {e}")))?;
        let (mut key, mut index, mut image, mut label) = (None, None, None, None);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("key", Field::Str(v)) => key = Some(v.clone()),
                ("index", Field::Long(v)) => index = u64::try_from(*v).ok(),
                ("image_sha256", Field::Str(v)) => image = Some(v.clone()),
                ("label_sha256", Field::Str(v)) => label = Some(v.clone()),
                _ => {}
            }
        }
        match (key, index, image, label) {
            (Some(key), Some(index), Some(image_sha256), Some(label_sha256)) => out.push(TableRow { key, index, image_sha256, label_sha256 }),
            (key, index, image, label) => {
                let absent: Vec<&str> = [("key", key.is_none()), ("index", index.is_none()), ("image_sha256", image.is_none()), ("label_sha256", label.is_none())]
                    .into_iter()
                    .filter(|(_, a)| *a)
                    .map(|(c, _)| c)
                    .collect();
                return Err(bad(format!("row {n}: no usable {} (expected key, image_sha256 and label_sha256 as text, index as a non-negative integer)", absent.join(", "))));
            }
        }
    }
    Ok(out)
}

fn write(cols: &[Column]) -> parquet::errors::Result<Vec<u8>> {
    let mut fields = Vec::with_capacity(cols.len());
    for c in cols {
        let (physical, logical) = match &c.values {
            Values::I64(_) => (Physical::INT64, Some(LogicalType::integer(64, !c.unsigned))),
            Values::I32(_) => (Physical::INT32, Some(LogicalType::integer(32, true))),
            Values::F64(_) => (Physical::DOUBLE, None),
            Values::Bool(_) => (Physical::BOOLEAN, None),
            Values::Str(_) => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
        };
        let repetition = if c.required { Repetition::REQUIRED } else { Repetition::OPTIONAL };
        fields.push(Arc::new(Type::primitive_type_builder(&c.name, physical).with_repetition(repetition).with_logical_type(logical).build()?));
    }
    let schema = Arc::new(Type::group_type_builder("sample").with_fields(fields).build()?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props)?;
    let mut group = writer.next_row_group()?;
    for c in cols {
        let mut col = group.next_column()?.expect("one column writer per schema field");
        match &c.values {
            Values::I64(v) => write_values::<Int64Type, _>(&mut col, c.required, v, |x| x),
            Values::I32(v) => write_values::<Int32Type, _>(&mut col, c.required, v, |x| x),
            Values::F64(v) => write_values::<DoubleType, _>(&mut col, c.required, v, |x| x),
            Values::Bool(v) => write_values::<BoolType, _>(&mut col, c.required, v, |x| x),
            Values::Str(v) => write_values::<ByteArrayType, _>(&mut col, c.required, v, |s| ByteArray::from(s.into_bytes())),
        }?;
        col.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(out)
}

/// Writes one column's values, `None` as a null: definition level 1 where a value is
/// present (nullable columns only).
fn write_values<T: DataType, V: Clone>(col: &mut SerializedColumnWriter<'_>, required: bool, v: &[Option<V>], convert: impl Fn(V) -> T::T) -> parquet::errors::Result<()> {
    let vals: Vec<T::T> = v.iter().flatten().cloned().map(convert).collect();
    let levels: Option<Vec<i16>> = (!required).then(|| v.iter().map(|x| i16::from(x.is_some())).collect());
    col.typed::<T>().write_batch(&vals, levels.as_deref(), None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    use super::*;

    #[test]
    fn a_shard_table_reads_back_row_by_row() {
        let classes = ClassTable::ai_hub();
        let mut lines = Vec::new();
        for i in 0..3u64 {
            let mut l = ManifestLine::for_files(8 + i, &format!("{:08}", 8 + i), "dataset/000002.tar#x.png", "dataset/000002.tar#x.label.png");
            l.seed = u64::MAX - i;
            l.shard = 2;
            l.class_pixels = [("building".to_string(), 3), ("parking lot".to_string(), 1)].into_iter().collect();
            l.extra.insert("islands_removed".into(), serde_json::json!(i));
            if i != 1 {
                l.extra.insert("label_model".into(), serde_json::json!("abc"));
            }
            lines.push(l);
        }
        let bytes = shard_table(&lines, &classes, "shard 2").unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        assert_eq!(&names[..3], &["key", "index", "seed"]);
        assert!(names.contains(&"share_parking_lot") && names.contains(&"islands_removed") && names.contains(&"label_model"), "{names:?}");
        let rows: Vec<_> = reader.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 3);
        let field = |r: &parquet::record::Row, name: &str| r.get_column_iter().find(|(n, _)| n.as_str() == name).map(|(_, f)| f.clone()).unwrap();
        assert_eq!(field(&rows[1], "key"), Field::Str("00000009".into()));
        assert_eq!(field(&rows[1], "seed"), Field::ULong(u64::MAX - 1), "the seed is exact and unsigned");
        assert_eq!(field(&rows[2], "share_building"), Field::Double(0.75));
        assert_eq!(field(&rows[2], "islands_removed"), Field::Long(2));
        assert_eq!(field(&rows[1], "label_model"), Field::Null);
        assert_eq!(field(&rows[0], "label_model"), Field::Str("abc".into()));
        let back = table_rows(bytes::Bytes::from(shard_table(&lines, &classes, "shard 2").unwrap()), "t").unwrap();
        assert_eq!(back.iter().map(|r| (r.key.as_str(), r.index)).collect::<Vec<_>>(), [("00000008", 8), ("00000009", 9), ("00000010", 10)]);
        let e = table_rows(bytes::Bytes::from_static(b"PAR1 not a table"), "dataset/000002.parquet").unwrap_err().to_string();
        assert!(e.contains("dataset/000002.parquet") && e.contains("not a Parquet file"), "{e}");
    }
}
