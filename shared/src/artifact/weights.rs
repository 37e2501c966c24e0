//! A streaming check of a weights file as Burn writes it (`NamedMpk…Recorder`: one
//! MessagePack map `{metadata, item}` whose tensors are maps `{bytes, shape, dtype}`),
//! without Burn and without holding the file: the coordinator runs it at submit while the
//! bytes go through sha256, so a truncated or corrupt file is refused before any job
//! exists rather than killing every shard.
//!
//! What it proves: the file is one complete MessagePack value with nothing after it, the
//! top level is a Burn record, every tensor's byte length is its shape's element count
//! times its dtype's size, and (when `model.json` states `parameters`) the element counts
//! add up to it — the declared architecture's size. What only Burn can check (each
//! tensor's name and shape against the module) the worker checks when it loads.

use std::io::{self, Read};

use rmp::Marker;

/// What a well-formed weights file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Tensors found (maps with `bytes`, `shape` and `dtype`).
    pub tensors: u64,
    /// Their elements, summed.
    pub parameters: u64,
}

/// Deepest nesting accepted (Burn's records are a few levels deep per module level).
const MAX_DEPTH: usize = 128;
/// Strings longer than this are skipped, not kept (keys and dtypes are short).
const KEEP_STR: u64 = 256;
/// Arrays longer than this are not kept (shapes have a handful of dimensions).
const KEEP_ARRAY: u64 = 16;

/// Reads a whole weights file from `r` and checks it (see the module docs). The error
/// says what is wrong and at which byte.
pub fn check(r: impl Read) -> Result<Summary, String> {
    let mut w = Walker { r: Counting { inner: r, pos: 0 }, summary: Summary { tensors: 0, parameters: 0 } };
    let top = w.value(0).map_err(|e| w.explain(e))?;
    let mut rest = [0u8; 1];
    match w.r.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => return Err(format!("{} byte(s) of one record, then more bytes: not a single Burn record", w.r.pos - 1)),
        Err(e) => return Err(w.explain(Bad::Io(e))),
    }
    if !matches!(top, Value::Record) {
        return Err("not a Burn record (expected a MessagePack map with `metadata` and `item`)".into());
    }
    if w.summary.tensors == 0 {
        return Err("a Burn record with no tensors".into());
    }
    Ok(w.summary)
}

/// Checks `summary` against the parameter count `model.json` declares, if any.
pub fn check_parameters(summary: &Summary, declared: Option<u64>) -> Result<(), String> {
    match declared {
        Some(n) if n != summary.parameters => Err(format!(
            "holds {} parameters in {} tensors, model.json declares {n} (weights of another architecture, or the wrong model.json)",
            summary.parameters, summary.tensors
        )),
        _ => Ok(()),
    }
}

enum Bad {
    Io(io::Error),
    Format(String),
}

impl From<io::Error> for Bad {
    fn from(e: io::Error) -> Bad {
        Bad::Io(e)
    }
}

/// What the walker keeps of a value: enough to recognise tensors and records.
enum Value {
    UInt(u64),
    Str(String),
    Bin(u64),
    Array(Vec<Value>),
    Tensor,
    Record,
    Other,
}

struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct Walker<R> {
    r: Counting<R>,
    summary: Summary,
}

impl<R: Read> Walker<R> {
    fn explain(&self, e: Bad) -> String {
        match e {
            Bad::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => format!("truncated: the file ends after {} bytes, inside the record", self.r.pos),
            Bad::Io(e) => format!("reading byte {}: {e}", self.r.pos),
            Bad::Format(m) => format!("corrupt at byte {}: {m}", self.r.pos),
        }
    }

    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }

    fn len(&mut self, width: u8) -> io::Result<u64> {
        Ok(match width {
            1 => self.bytes::<1>()?[0] as u64,
            2 => u16::from_be_bytes(self.bytes()?) as u64,
            _ => u32::from_be_bytes(self.bytes()?) as u64,
        })
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    fn string(&mut self, n: u64) -> Result<Value, Bad> {
        if n > KEEP_STR {
            self.skip(n)?;
            return Ok(Value::Other);
        }
        let mut s = vec![0u8; n as usize];
        self.r.read_exact(&mut s)?;
        Ok(String::from_utf8(s).map(Value::Str).unwrap_or(Value::Other))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Bad> {
        if depth > MAX_DEPTH {
            return Err(Bad::Format(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let byte = self.bytes::<1>()?[0];
        Ok(match Marker::from_u8(byte) {
            Marker::FixPos(v) => Value::UInt(v as u64),
            Marker::U8 => Value::UInt(self.len(1)?),
            Marker::U16 => Value::UInt(self.len(2)?),
            Marker::U32 => Value::UInt(self.len(4)?),
            Marker::U64 => Value::UInt(u64::from_be_bytes(self.bytes()?)),
            Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => Value::Other,
            Marker::I8 => self.skip(1).map(|_| Value::Other)?,
            Marker::I16 => self.skip(2).map(|_| Value::Other)?,
            Marker::I32 | Marker::F32 => self.skip(4).map(|_| Value::Other)?,
            Marker::I64 | Marker::F64 => self.skip(8).map(|_| Value::Other)?,
            Marker::FixStr(n) => self.string(n as u64)?,
            m @ (Marker::Str8 | Marker::Str16 | Marker::Str32) => {
                let n = self.len(width(m))?;
                self.string(n)?
            }
            m @ (Marker::Bin8 | Marker::Bin16 | Marker::Bin32) => {
                let n = self.len(width(m))?;
                self.skip(n)?;
                Value::Bin(n)
            }
            Marker::FixExt1 => self.skip(2).map(|_| Value::Other)?,
            Marker::FixExt2 => self.skip(3).map(|_| Value::Other)?,
            Marker::FixExt4 => self.skip(5).map(|_| Value::Other)?,
            Marker::FixExt8 => self.skip(9).map(|_| Value::Other)?,
            Marker::FixExt16 => self.skip(17).map(|_| Value::Other)?,
            m @ (Marker::Ext8 | Marker::Ext16 | Marker::Ext32) => {
                // The length, then a type byte, then the data.
                let n = self.len(width(m))?;
                self.skip(n + 1)?;
                Value::Other
            }
            Marker::FixArray(n) => self.array(n as u64, depth)?,
            m @ (Marker::Array16 | Marker::Array32) => {
                let n = self.len(width(m))?;
                self.array(n, depth)?
            }
            Marker::FixMap(n) => self.map(n as u64, depth)?,
            m @ (Marker::Map16 | Marker::Map32) => {
                let n = self.len(width(m))?;
                self.map(n, depth)?
            }
            Marker::Reserved => return Err(Bad::Format("byte 0xc1 is never used in MessagePack".into())),
        })
    }

    fn array(&mut self, n: u64, depth: usize) -> Result<Value, Bad> {
        let keep = n <= KEEP_ARRAY;
        let mut items = Vec::new();
        for _ in 0..n {
            let v = self.value(depth + 1)?;
            if keep {
                items.push(v);
            }
        }
        Ok(if keep { Value::Array(items) } else { Value::Other })
    }

    fn map(&mut self, n: u64, depth: usize) -> Result<Value, Bad> {
        let (mut bytes, mut shape, mut dtype) = (None, None, None);
        let (mut metadata, mut item) = (false, false);
        for _ in 0..n {
            let key = match self.value(depth + 1)? {
                Value::Str(s) => Some(s),
                _ => None,
            };
            let v = self.value(depth + 1)?;
            match (key.as_deref(), v) {
                (Some("bytes"), Value::Bin(len)) => bytes = Some(len),
                (Some("shape"), Value::Array(dims)) => shape = Some(dims),
                (Some("dtype"), Value::Str(d)) => dtype = Some(d),
                (Some("dtype"), _) => dtype = Some(String::new()),
                (Some("metadata"), _) => metadata = true,
                (Some("item"), _) => item = true,
                _ => {}
            }
        }
        let (Some(len), Some(dims), Some(dtype)) = (bytes, shape, dtype) else {
            return Ok(if metadata && item { Value::Record } else { Value::Other });
        };
        let mut elements: u64 = 1;
        for d in &dims {
            let Value::UInt(d) = d else { return Err(Bad::Format("a tensor shape holds a value that is not a dimension".into())) };
            elements = elements.checked_mul(*d).ok_or_else(|| Bad::Format("a tensor shape overflows".into()))?;
        }
        if let Some(size) = dtype_size(&dtype) {
            if elements.checked_mul(size) != Some(len) {
                return Err(Bad::Format(format!(
                    "tensor {} has shape {:?} of {dtype} ({} bytes) but {len} bytes of data",
                    self.summary.tensors,
                    dims.iter().map(|d| if let Value::UInt(d) = d { *d } else { 0 }).collect::<Vec<_>>(),
                    elements.saturating_mul(size)
                )));
            }
        }
        self.summary.tensors += 1;
        self.summary.parameters += elements;
        Ok(Value::Tensor)
    }
}

/// Bytes of the length that follows a sized marker (str, bin, ext, array, map).
fn width(m: Marker) -> u8 {
    match m {
        Marker::Str8 | Marker::Bin8 | Marker::Ext8 => 1,
        Marker::Str16 | Marker::Bin16 | Marker::Ext16 | Marker::Array16 | Marker::Map16 => 2,
        _ => 4,
    }
}

/// Bytes per element of Burn's plain dtypes; None for the ones with a layout of their own
/// (quantized), whose length is not checked.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "Flex32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "Bool" => 1,
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Burn-shaped record with one tensor per `(shape, bytes of data)`.
    pub(crate) fn record(tensors: &[(&[u32], usize)]) -> Vec<u8> {
        use rmp::encode::*;
        let mut b = Vec::new();
        write_map_len(&mut b, 2).unwrap();
        write_str(&mut b, "metadata").unwrap();
        write_map_len(&mut b, 1).unwrap();
        write_str(&mut b, "version").unwrap();
        write_str(&mut b, "0.21.0").unwrap();
        write_str(&mut b, "item").unwrap();
        write_map_len(&mut b, tensors.len() as u32).unwrap();
        for (i, (shape, len)) in tensors.iter().enumerate() {
            write_str(&mut b, &format!("layer{i}")).unwrap();
            write_map_len(&mut b, 2).unwrap();
            write_str(&mut b, "id").unwrap();
            write_str(&mut b, "abc").unwrap();
            write_str(&mut b, "param").unwrap();
            write_map_len(&mut b, 3).unwrap();
            write_str(&mut b, "bytes").unwrap();
            write_bin(&mut b, &vec![7u8; *len]).unwrap();
            write_str(&mut b, "shape").unwrap();
            write_array_len(&mut b, shape.len() as u32).unwrap();
            for d in *shape {
                write_uint(&mut b, *d as u64).unwrap();
            }
            write_str(&mut b, "dtype").unwrap();
            write_str(&mut b, "F32").unwrap();
        }
        b
    }

    #[test]
    fn a_whole_record_passes_and_is_counted() {
        let b = record(&[(&[16, 8, 3, 3], 16 * 8 * 9 * 4), (&[16], 64)]);
        assert_eq!(check(&b[..]).unwrap(), Summary { tensors: 2, parameters: 16 * 8 * 9 + 16 });
        assert!(check_parameters(&check(&b[..]).unwrap(), Some(16 * 8 * 9 + 16)).is_ok());
        let e = check_parameters(&check(&b[..]).unwrap(), Some(5)).unwrap_err();
        assert!(e.contains("1168 parameters") && e.contains("declares 5"), "{e}");
    }

    #[test]
    fn truncated_trailing_and_inconsistent_files_are_refused() {
        let b = record(&[(&[16, 8, 3, 3], 16 * 8 * 9 * 4), (&[16], 64)]);
        for cut in [1, 10, b.len() / 2, b.len() - 1] {
            let e = check(&b[..cut]).unwrap_err();
            assert!(e.contains("truncated") && e.contains(&format!("after {cut} bytes")), "{cut}: {e}");
        }
        let mut longer = b.clone();
        longer.extend_from_slice(b"xx");
        assert!(check(&longer[..]).unwrap_err().contains("then more bytes"));
        let wrong = record(&[(&[16, 8, 3, 3], 100)]);
        let e = check(&wrong[..]).unwrap_err();
        assert!(e.contains("shape [16, 8, 3, 3] of F32 (4608 bytes) but 100 bytes"), "{e}");
        assert!(check(&b"not a record at all"[..]).is_err());
        assert!(check(&record(&[])[..]).unwrap_err().contains("no tensors"));
    }

    #[test]
    fn the_demo_models_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo");
        for f in ["ddpm/weights.mpk", "spade/generator.mpk"] {
            let s = check(std::fs::File::open(root.join(f)).map(io::BufReader::new).unwrap()).unwrap();
            assert!(s.tensors > 10 && s.parameters > 10_000, "{f}: {s:?}");
        }
    }
}
