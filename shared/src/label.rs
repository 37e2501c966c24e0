//! Label maps (one class index per pixel) and RGB images, and their PNG forms; images
//! also as JPEG or lossless WebP ([`ImageEncoding`], [`RgbImage::decode`] reads all three).
//!
//! A label PNG is 8-bit grayscale holding the *raw codes* of the class table, the same
//! format as the AI Hub masks, so real and generated data share one layout (an indexed
//! PNG whose palette indices are the codes reads the same). A dataset's masks may instead
//! hold the class table's preview colours ([`MaskKind::Palette`]).
//!
//! There is one label-PNG decoder, `decode_label_with`: [`decode_label`] (mask kind and
//! unknown-value handling as the dataset flags say), [`LabelMap::from_png`] (raw codes,
//! unknown codes an error) and `cleanup::decode_raw_png` (raw codes, unknown codes kept
//! as `cleanup::UNKNOWN_INDEX`) call it. Likewise `map_codes` is the one raw-code lookup,
//! behind [`LabelMap::from_codes`] and `cleanup::decode_raw`. These types are public as
//! `shared::dataset::{MaskKind, UnknownCodes, UnknownValue, UnknownPixels, decode_label}`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::classes::{ClassTable, IGNORE_INDEX};
use crate::error::{Error, Result};

/// A `width × height` map of class indices (`0..K`, or [`IGNORE_INDEX`]), row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl LabelMap {
    pub fn new(width: u32, height: u32, fill: u8) -> Self {
        LabelMap { width, height, data: vec![fill; width as usize * height as usize] }
    }

    #[inline]
    pub fn get(&self, x: u32, y: u32) -> u8 {
        self.data[(y * self.width + x) as usize]
    }

    #[inline]
    pub fn set(&mut self, x: u32, y: u32, v: u8) {
        self.data[(y * self.width + x) as usize] = v;
    }

    /// Pixel count of each class index `0..k`; ignore pixels are not counted.
    pub fn class_counts(&self, k: usize) -> Vec<u64> {
        let mut counts = vec![0u64; k];
        for &v in &self.data {
            if (v as usize) < k {
                counts[v as usize] += 1;
            }
        }
        counts
    }

    /// Resize for training data: shrinking takes the most frequent label of each source
    /// block (the mode), so a thin road stays a thin road instead of aliasing into dashes
    /// or vanishing, as point sampling does; growing (or keeping) a side is
    /// nearest-neighbour along it. A tie goes to the label of the pixel under the block's
    /// centre (kept inside the block) when it is one of the tied, else to the lowest
    /// index: a border through the middle of the blocks stays where it is whichever
    /// classes meet there (the lowest index alone grew the lower-numbered classes by half
    /// a block along every such border). Ignore pixels take part like any label.
    pub fn resize_mode(&self, width: u32, height: u32) -> LabelMap {
        // A block is at most one source pixel along a side that grows (or keeps its size).
        if (width >= self.width && height >= self.height) || self.data.is_empty() {
            return self.resize_nearest(width, height);
        }
        let (w, h) = (self.width as u64, self.height as u64);
        // Source span of output pixel `i` along a side of `s` pixels made `n`: its block
        // when shrinking; the one pixel under its centre when growing, as
        // `resize_nearest` samples.
        let span = |i: u64, n: u64, s: u64| -> (u64, u64) {
            if n > s {
                let c = ((2 * i + 1) * s / (2 * n)).min(s - 1);
                (c, c + 1)
            } else {
                (i * s / n, ((i + 1) * s / n).max(i * s / n + 1))
            }
        };
        let mut data = Vec::with_capacity(width as usize * height as usize);
        let mut counts = [0u32; 256];
        for y in 0..height as u64 {
            let (y0, y1) = span(y, height as u64, h);
            for x in 0..width as u64 {
                let (x0, x1) = span(x, width as u64, w);
                let rows = (y0..y1).map(|sy| &self.data[(sy * w) as usize..][x0 as usize..x1 as usize]);
                // (count, label) of the most frequent label so far, the lower on a tie.
                let mut best = (0u32, 0u8);
                for &v in rows.clone().flatten() {
                    counts[v as usize] += 1;
                    let c = counts[v as usize];
                    if c > best.0 || (c == best.0 && v < best.1) {
                        best = (c, v);
                    }
                }
                // The label under the block's centre, if it ties (a non-integer ratio can put
                // the centre past the block's last pixel: kept inside).
                let centre = |i: u64, n: u64, s: u64, end: u64| ((2 * i + 1) * s / (2 * n)).min(end - 1);
                let c = self.data[(centre(y, height as u64, h, y1) * w + centre(x, width as u64, w, x1)) as usize];
                if counts[c as usize] == best.0 {
                    best.1 = c;
                }
                for &v in rows.flatten() {
                    counts[v as usize] = 0;
                }
                data.push(best.1);
            }
        }
        LabelMap { width, height, data }
    }

    /// The staircase measure of a map upscaled from a grid of `cell × cell` blocks: of all
    /// class boundaries between 4-neighbours (a pixel and the one right of or below it with
    /// another label), the share that lie on the block grid (between columns or rows
    /// `i·cell − 1` and `i·cell`). A nearest-neighbour upscale puts every boundary there
    /// (1.0); borders that cross the blocks freely land there about `1/cell` of the time.
    /// `None` when the map has no boundary or `cell < 2`.
    pub fn grid_boundary_share(&self, cell: u32) -> Option<f64> {
        if cell < 2 {
            return None;
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let cell = cell as usize;
        let (mut all, mut on_grid) = (0u64, 0u64);
        for y in 0..h {
            let row = &self.data[y * w..(y + 1) * w];
            for x in 0..w {
                if x + 1 < w && row[x] != row[x + 1] {
                    all += 1;
                    on_grid += u64::from((x + 1).is_multiple_of(cell));
                }
                if y + 1 < h && row[x] != self.data[(y + 1) * w + x] {
                    all += 1;
                    on_grid += u64::from((y + 1).is_multiple_of(cell));
                }
            }
        }
        (all > 0).then(|| on_grid as f64 / all as f64)
    }

    /// Nearest-neighbour resize; an empty map becomes all ignore.
    pub fn resize_nearest(&self, width: u32, height: u32) -> LabelMap {
        if self.data.is_empty() {
            return LabelMap::new(width, height, IGNORE_INDEX);
        }
        let data = resize_nearest_pixels(&self.data, self.width, self.height, 1, width, height);
        LabelMap { width, height, data }
    }

    /// Raw codes of the class table, one byte a pixel (what a label PNG holds).
    pub fn to_codes(&self, classes: &ClassTable) -> Vec<u8> {
        let lut: Vec<u8> = (0..=255u8).map(|i| if (i as usize) < classes.len() || i == IGNORE_INDEX { classes.code_of_index(i) } else { 0 }).collect();
        self.data.iter().map(|&v| lut[v as usize]).collect()
    }

    /// Builds a map from raw codes; an unknown code is an error naming `origin`, the pixel
    /// and the code.
    ///
    /// # Panics
    /// If `codes.len() != width * height`.
    pub fn from_codes(width: u32, height: u32, codes: &[u8], classes: &ClassTable, origin: &str) -> Result<LabelMap> {
        assert_eq!(codes.len(), width as usize * height as usize, "from_codes: {} codes for a {width}×{height} map", codes.len());
        let (data, unk) = map_codes(codes, width, classes, IGNORE_INDEX);
        if unk.count > 0 {
            return Err(unknown_error(origin, classes, MaskKind::Codes, &unk, Hints::None, false));
        }
        Ok(LabelMap { width, height, data })
    }

    /// Encodes as an 8-bit grayscale PNG of raw codes.
    pub fn to_png(&self, classes: &ClassTable) -> Vec<u8> {
        encode_png(self.width, self.height, png::ColorType::Grayscale, &self.to_codes(classes))
    }

    /// Decodes a label PNG of raw codes (8-bit grayscale, or indexed by the codes); an
    /// unknown code is an error naming `origin`, the pixel and the code (see
    /// [`decode_label`] for the options).
    pub fn from_png(bytes: &[u8], classes: &ClassTable, origin: &str) -> Result<LabelMap> {
        decode_label_with(bytes, classes, MaskKind::Codes, OnUnknown::Error, Hints::None, origin).map(|(m, _)| m)
    }

    /// A colourised RGB preview for people.
    pub fn colorize(&self, classes: &ClassTable) -> RgbImage {
        let mut img = RgbImage::new(self.width, self.height);
        for (i, &v) in self.data.iter().enumerate() {
            img.data[i * 3..i * 3 + 3].copy_from_slice(&classes.color_of_index(v));
        }
        img
    }
}

/// How an [`RgbImage`] is written (`output.image_format`, `output.image_quality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageEncoding {
    Png,
    /// Baseline JPEG, quality 1–100.
    Jpeg {
        quality: u8,
    },
    WebpLossless,
}

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32) -> Self {
        RgbImage { width, height, data: vec![0; width as usize * height as usize * 3] }
    }

    #[inline]
    pub fn put(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        let i = (y * self.width + x) as usize * 3;
        self.data[i..i + 3].copy_from_slice(&rgb);
    }

    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y * self.width + x) as usize * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    pub fn to_png(&self) -> Vec<u8> {
        encode_png(self.width, self.height, png::ColorType::Rgb, &self.data)
    }

    /// This image in `encoding` (PNG through the one PNG encoder, JPEG and WebP through
    /// the `image` crate).
    pub fn encode(&self, encoding: ImageEncoding) -> Vec<u8> {
        use image::ImageEncoder;
        let mut out = Vec::with_capacity(self.data.len() / 4 + 1024);
        let (w, h, rgb) = (self.width, self.height, image::ExtendedColorType::Rgb8);
        match encoding {
            ImageEncoding::Png => return self.to_png(),
            ImageEncoding::Jpeg { quality } => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).write_image(&self.data, w, h, rgb),
            ImageEncoding::WebpLossless => image::codecs::webp::WebPEncoder::new_lossless(&mut out).write_image(&self.data, w, h, rgb),
        }
        .expect("encoding an RGB image of the declared size into a Vec cannot fail");
        out
    }

    /// Decodes a PNG, JPEG or WebP image (told apart by their signatures) as RGB.
    pub fn decode(bytes: &[u8], origin: &str) -> Result<RgbImage> {
        if bytes.starts_with(b"\x89PNG") {
            return RgbImage::from_png(bytes, origin);
        }
        let format = image::guess_format(bytes).map_err(|_| Error::format(origin, "not a PNG, JPEG or WebP image"))?;
        let img = image::load_from_memory_with_format(bytes, format).map_err(|e| Error::format(origin, format!("not a readable {format:?} image: {e}")))?.to_rgb8();
        Ok(RgbImage { width: img.width(), height: img.height(), data: img.into_raw() })
    }

    /// Nearest-neighbour resize.
    pub fn resize_nearest(&self, width: u32, height: u32) -> RgbImage {
        let data = resize_nearest_pixels(&self.data, self.width, self.height, 3, width, height);
        RgbImage { width, height, data }
    }

    pub fn from_png(bytes: &[u8], origin: &str) -> Result<RgbImage> {
        let (w, h, color, data) = decode_png(bytes, origin)?;
        let data = match color {
            png::ColorType::Rgb => data,
            png::ColorType::Rgba => data.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            png::ColorType::Grayscale => data.iter().flat_map(|&g| [g, g, g]).collect(),
            other => return Err(Error::format(origin, format!("unsupported PNG colour type {other:?} for an image"))),
        };
        Ok(RgbImage { width: w, height: h, data })
    }

    /// Copies `src` into this image with its top-left corner at `(x0, y0)`, clipped.
    pub fn blit(&mut self, src: &RgbImage, x0: u32, y0: u32) {
        for y in 0..src.height.min(self.height.saturating_sub(y0)) {
            for x in 0..src.width.min(self.width.saturating_sub(x0)) {
                self.put(x0 + x, y0 + y, src.pixel(x, y));
            }
        }
    }
}

/// Nearest-neighbour resize of row-major pixels of `channels` bytes each; an empty source
/// gives zeros. A side that grows samples the source pixel under each output pixel's
/// centre, so a non-integer factor (64 → 100) neither shifts the content by half a pixel
/// nor thins the far edge's pixels (an integer factor repeats each pixel either way); a
/// side that shrinks takes each block's first pixel.
fn resize_nearest_pixels(src: &[u8], w: u32, h: u32, channels: usize, nw: u32, nh: u32) -> Vec<u8> {
    if w == 0 || h == 0 {
        return vec![0; nw as usize * nh as usize * channels];
    }
    let source = |i: u32, n: u32, s: u32| -> usize {
        let (i, n, s) = (i as u64, n as u64, s as u64);
        (if n > s { ((2 * i + 1) * s / (2 * n)).min(s - 1) } else { i * s / n }) as usize
    };
    let mut out = Vec::with_capacity(nw as usize * nh as usize * channels);
    for y in 0..nh {
        let sy = source(y, nh, h);
        for x in 0..nw {
            let sx = source(x, nw, w);
            let i = (sy * w as usize + sx) * channels;
            out.extend_from_slice(&src[i..i + channels]);
        }
    }
    out
}

/// Encodes 8-bit pixels as PNG. The output depends only on the input (no timestamps), so
/// the same pixels always give the same bytes.
pub fn encode_png(width: u32, height: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().expect("PNG header to a Vec cannot fail");
        w.write_image_data(data).expect("PNG data of the declared size to a Vec cannot fail");
    }
    out
}

/// Decodes an 8-bit PNG into `(width, height, colour type, pixels)`.
pub fn decode_png(bytes: &[u8], origin: &str) -> Result<(u32, u32, png::ColorType, Vec<u8>)> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().map_err(|e| Error::format(origin, format!("not a readable PNG: {e}")))?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf).map_err(|e| Error::format(origin, format!("not a readable PNG: {e}")))?;
    if info.bit_depth != png::BitDepth::Eight {
        return Err(Error::format(origin, format!("expected an 8-bit PNG, found {:?}", info.bit_depth)));
    }
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, info.color_type, buf))
}

/// An indexed PNG's pixels as palette indices.
pub struct Indexed {
    pub width: u32,
    pub height: u32,
    /// One palette index a pixel, rows of `width`.
    pub indices: Vec<u8>,
    /// The palette's colours, RGB, by index.
    pub palette: Vec<[u8; 3]>,
}

/// The palette indices of an indexed PNG (1, 2, 4 or 8 bits a pixel), one byte a pixel,
/// and its palette; `None` for a PNG of another colour type.
pub fn decode_png_indices(bytes: &[u8], origin: &str) -> Result<Option<Indexed>> {
    let unreadable = |e: png::DecodingError| Error::format(origin, format!("not a readable PNG: {e}"));
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    if dec.read_header_info().map_err(unreadable)?.color_type != png::ColorType::Indexed {
        return Ok(None);
    }
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().map_err(unreadable)?;
    let palette = reader.info().palette.as_deref().unwrap_or_default().chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf).map_err(unreadable)?;
    let bits = info.bit_depth as usize;
    let (w, h) = (info.width as usize, info.height as usize);
    let mut out = Vec::with_capacity(w * h);
    for row in buf.chunks(info.line_size).take(h) {
        out.extend((0..w).map(|x| {
            let bit = x * bits;
            (row[bit / 8] >> (8 - bits - bit % 8)) & ((1u16 << bits) - 1) as u8
        }));
    }
    Ok(Some(Indexed { width: info.width, height: info.height, indices: out, palette }))
}

/// A code mask stored as an indexed PNG whose palette gives an index used the colour of
/// another code's class is a colour mask saved indexed (its indices are arbitrary):
/// the index and that class, if so.
fn colour_mask_saved_indexed(indexed: &Indexed, classes: &ClassTable) -> Option<(u8, u8)> {
    let mut used = [false; 256];
    for &i in &indexed.indices {
        used[i as usize] = true;
    }
    (0..=255u8).filter(|&i| used[i as usize]).find_map(|i| {
        let class = classes.index_of_color(*indexed.palette.get(i as usize)?)?;
        (classes.code_of_index(class) != i).then_some((i, class))
    })
}

// Label masks: their kinds, unknown values, the decoder.

/// How a label PNG encodes classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// 8-bit grayscale, one raw class code a pixel ([`ClassTable`] `code`s; its
    /// `ignore_code` is ignore); or an indexed PNG whose palette indices are the codes
    /// (Pascal VOC style: the palette only colours them).
    #[default]
    Codes,
    /// RGB (or RGBA, or an indexed PNG): each pixel is a class's `color`;
    /// [`ClassTable::IGNORE_COLOR`] (black) is ignore. What [`LabelMap::colorize`] draws.
    Palette,
}

impl MaskKind {
    /// The names [`FromStr`] accepts.
    pub const NAMES: [&'static str; 2] = ["codes", "palette"];
}

impl FromStr for MaskKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "codes" => Ok(MaskKind::Codes),
            "palette" => Ok(MaskKind::Palette),
            _ => Err(format!("{s:?}: expected codes or palette")),
        }
    }
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaskKind::Codes => "codes",
            MaskKind::Palette => "palette",
        })
    }
}

/// What a mask value outside the class table does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownCodes {
    /// Decoding (opening the dataset) fails, naming the file, the value and its first pixel.
    #[default]
    Error,
    /// The pixel becomes [`IGNORE_INDEX`]; [`UnknownPixels`] (and a dataset's
    /// [`DatasetSummary`](crate::dataset::DatasetSummary)) count such pixels.
    Ignore,
}

impl UnknownCodes {
    /// The names [`FromStr`] accepts.
    pub const NAMES: [&'static str; 2] = ["error", "ignore"];
}

impl FromStr for UnknownCodes {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "error" => Ok(UnknownCodes::Error),
            "ignore" => Ok(UnknownCodes::Ignore),
            _ => Err(format!("{s:?}: expected error or ignore")),
        }
    }
}

impl fmt::Display for UnknownCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnknownCodes::Error => "error",
            UnknownCodes::Ignore => "ignore",
        })
    }
}

/// A mask value outside the class table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnknownValue {
    /// A raw code ([`MaskKind::Codes`]).
    Code(u8),
    /// An RGB colour ([`MaskKind::Palette`]).
    Color([u8; 3]),
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnknownValue::Code(c) => write!(f, "code {c}"),
            UnknownValue::Color(c) => write!(f, "colour {}", hex_color(*c)),
        }
    }
}

fn hex_color(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The unknown mask values of one label file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnknownPixels {
    /// Pixels holding a value outside the class table.
    pub count: u64,
    /// The first such pixel in row-major order: `(x, y, value)`.
    pub first: Option<(u32, u32, UnknownValue)>,
    /// Pixels per unknown value.
    pub by_value: BTreeMap<UnknownValue, u64>,
}

/// What the decoder does with a value outside the class table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnUnknown {
    /// An error naming the origin, the value, its first pixel and the valid values.
    Error,
    /// The pixel gets this index; the values are counted in the [`UnknownPixels`].
    Replace(u8),
}

/// Whether errors end with the dataset flags that would fix them (`--mask`,
/// `--unknown-codes`): yes for [`decode_label`], which the dataset commands call with
/// those flags' values; no for readers without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hints {
    Flags,
    None,
}

/// `1 pixel`, `2 pixels`.
pub(crate) fn plural(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `code 7: 12, code 9: 3, …` (at most 8 entries).
pub(crate) fn list_counts(by_value: &BTreeMap<UnknownValue, u64>) -> String {
    let mut parts: Vec<String> = by_value.iter().take(8).map(|(v, n)| format!("{v}: {n}")).collect();
    if by_value.len() > 8 {
        parts.push(format!("… {} values in all", by_value.len()));
    }
    parts.join(", ")
}

/// Decodes a label PNG into class indices: the label decoder of the dataset commands.
/// `Codes` masks must be 8-bit grayscale or indexed (the indices are the codes),
/// `Palette` masks RGB or RGBA (alpha not read; indexed PNGs are expanded). Values
/// outside the class table are an error naming `origin`, the value, its first pixel and
/// the valid values — or, with [`UnknownCodes::Ignore`], become [`IGNORE_INDEX`] and are
/// counted in the returned [`UnknownPixels`]. Errors end with the flags that would fix
/// them (`--mask`, `--classes`, `--unknown-codes`).
pub fn decode_label(bytes: &[u8], classes: &ClassTable, mask: MaskKind, unknown: UnknownCodes, origin: &str) -> Result<(LabelMap, UnknownPixels)> {
    let on_unknown = match unknown {
        UnknownCodes::Error => OnUnknown::Error,
        UnknownCodes::Ignore => OnUnknown::Replace(IGNORE_INDEX),
    };
    decode_label_with(bytes, classes, mask, on_unknown, Hints::Flags, origin)
}

/// The one label-PNG decoder, behind [`decode_label`], [`LabelMap::from_png`] and
/// `cleanup::decode_raw_png`.
pub(crate) fn decode_label_with(bytes: &[u8], classes: &ClassTable, mask: MaskKind, on_unknown: OnUnknown, hints: Hints, origin: &str) -> Result<(LabelMap, UnknownPixels)> {
    // A code mask may be indexed: its palette indices are the codes.
    let indexed = match mask {
        MaskKind::Codes => decode_png_indices(bytes, origin)?,
        MaskKind::Palette => None,
    };
    let is_indexed = indexed.is_some();
    if let Some((i, class)) = indexed.as_ref().and_then(|x| colour_mask_saved_indexed(x, classes)) {
        let hint = if hints == Hints::Flags { ": read it with --mask palette" } else { "" };
        return Err(Error::format(
            origin,
            format!(
                "an indexed PNG whose palette gives index {i} the colour of class {:?} (code {}): a colour mask saved indexed, not codes{hint}",
                classes.classes[class as usize].name,
                classes.code_of_index(class)
            ),
        ));
    }
    let (width, height, color, pixels) = match indexed {
        Some(x) => (x.width, x.height, png::ColorType::Grayscale, x.indices),
        None => decode_png(bytes, origin)?,
    };
    let flags = hints == Hints::Flags;
    let replace = match on_unknown {
        OnUnknown::Error => IGNORE_INDEX,
        OnUnknown::Replace(v) => v,
    };
    let (data, unk) = match mask {
        MaskKind::Codes => {
            if color != png::ColorType::Grayscale {
                let hint = match color {
                    png::ColorType::Rgb | png::ColorType::Rgba if flags => " (a colour mask? read it as a palette mask: --mask palette)",
                    png::ColorType::Rgb | png::ColorType::Rgba => " (a colour mask? this reader takes raw class codes only)",
                    _ => "",
                };
                return Err(Error::format(origin, format!("a raw-code label mask must be 8-bit grayscale (or indexed), found {color:?}{hint}")));
            }
            map_codes(&pixels, width, classes, replace)
        }
        MaskKind::Palette => {
            let channels = match color {
                png::ColorType::Rgb => 3,
                png::ColorType::Rgba => 4,
                other => {
                    let hint = if flags && matches!(other, png::ColorType::Grayscale) { " (raw class codes? read it as a code mask: --mask codes)" } else { "" };
                    return Err(Error::format(origin, format!("a palette label mask must be RGB, found {other:?}{hint}")));
                }
            };
            map_colors(&pixels, channels, width, classes, replace)
        }
    };
    if unk.count > 0 && on_unknown == OnUnknown::Error {
        return Err(unknown_error(origin, classes, mask, &unk, hints, is_indexed));
    }
    Ok((LabelMap { width, height, data }, unk))
}

/// Class indices of raw codes (rows of `width` pixels); a code not in the table becomes
/// `replace` and is counted.
pub(crate) fn map_codes(codes: &[u8], width: u32, classes: &ClassTable, replace: u8) -> (Vec<u8>, UnknownPixels) {
    let lut = classes.code_lut();
    let mut unk = UnknownPixels::default();
    let mut counts = [0u64; 256];
    let data = codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            lut[c as usize].unwrap_or_else(|| {
                if unk.first.is_none() {
                    unk.first = first_at(i, width, UnknownValue::Code(c));
                }
                counts[c as usize] += 1;
                replace
            })
        })
        .collect();
    unk.by_value = (0..=255u8).filter(|&c| counts[c as usize] > 0).map(|c| (UnknownValue::Code(c), counts[c as usize])).collect();
    unk.count = unk.by_value.values().sum();
    (data, unk)
}

/// Class indices of palette colours (`channels` bytes a pixel, RGB first); a colour no
/// class has becomes `replace` and is counted.
fn map_colors(pixels: &[u8], channels: usize, width: u32, classes: &ClassTable, replace: u8) -> (Vec<u8>, UnknownPixels) {
    let mut unk = UnknownPixels::default();
    let mut data = Vec::with_capacity(pixels.len() / channels);
    let mut known: HashMap<[u8; 3], Option<u8>> = HashMap::new();
    let mut last: Option<([u8; 3], Option<u8>)> = None;
    for (i, p) in pixels.chunks_exact(channels).enumerate() {
        let rgb = [p[0], p[1], p[2]];
        let idx = match last {
            Some((c, idx)) if c == rgb => idx,
            _ => {
                let idx = *known.entry(rgb).or_insert_with(|| classes.index_of_color(rgb));
                last = Some((rgb, idx));
                idx
            }
        };
        match idx {
            Some(v) => data.push(v),
            None => {
                let v = UnknownValue::Color(rgb);
                if unk.first.is_none() {
                    unk.first = first_at(i, width, v);
                }
                *unk.by_value.entry(v).or_insert(0) += 1;
                data.push(replace);
            }
        }
    }
    unk.count = unk.by_value.values().sum();
    (data, unk)
}

fn first_at(i: usize, width: u32, v: UnknownValue) -> Option<(u32, u32, UnknownValue)> {
    Some((i as u32 % width, i as u32 / width, v))
}

/// The error for a mask's unknown values; `indexed`: the codes were an indexed PNG's
/// palette indices (said, with the flag that reads its colours instead).
pub(crate) fn unknown_error(origin: &str, classes: &ClassTable, mask: MaskKind, unk: &UnknownPixels, hints: Hints, indexed: bool) -> Error {
    let (x, y, v) = unk.first.expect("an unknown pixel was seen");
    let (what, valid) = match mask {
        MaskKind::Codes => (format!("holds {v}, which is not in the class table"), format!("valid codes: {}", classes.code_list())),
        MaskKind::Palette => {
            let mut valid: Vec<String> = classes.classes.iter().map(|c| format!("{} {}", hex_color(c.color), c.name)).collect();
            valid.push(format!("{} ignore", hex_color(ClassTable::IGNORE_COLOR)));
            let UnknownValue::Color(c) = v else { unreachable!("palette masks report colours") };
            (format!("has {v} {c:?}, which is no class's colour"), format!("valid colours: {}", valid.join(", ")))
        }
    };
    let fix = match hints {
        Hints::Flags => ". Fix the mask, give the dataset's own class table (--classes FILE), or map unknown values to ignore (--unknown-codes ignore)",
        Hints::None => "",
    };
    let indexed = match (indexed, hints) {
        (false, _) => "",
        (true, Hints::Flags) => " (an indexed PNG: its palette indices were read as the codes; if its colours are the classes, read it with --mask palette)",
        (true, Hints::None) => " (an indexed PNG: its palette indices were read as the codes)",
    };
    Error::format(
        origin,
        format!(
            "pixel ({x}, {y}) {what}; {} of this file {} unknown values ({}); {valid}{fix}{indexed}",
            plural(unk.count, "pixel"),
            if unk.count == 1 { "holds" } else { "hold" },
            list_counts(&unk.by_value)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_boundary_share_tells_staircases_from_free_borders() {
        let small = LabelMap { width: 2, height: 2, data: vec![0, 1, 1, 2] };
        // Upscaled by 4 with nearest: every boundary on the 4-pixel grid.
        assert_eq!(small.resize_nearest(8, 8).grid_boundary_share(4), Some(1.0));
        // A diagonal border at full size: of its 7 + 7 unit steps, only 1 + 1 fall on the grid.
        let mut diag = LabelMap::new(8, 8, 0);
        for y in 0..8 {
            for x in y..8 {
                diag.set(x, y, 1);
            }
        }
        let share = diag.grid_boundary_share(4).unwrap();
        assert!((share - 2.0 / 14.0).abs() < 1e-12, "{share}");
        assert_eq!(LabelMap::new(8, 8, 3).grid_boundary_share(4), None);
        assert_eq!(diag.grid_boundary_share(1), None);
    }

    #[test]
    fn label_png_round_trip_is_exact() {
        let classes = ClassTable::ai_hub();
        let mut m = LabelMap::new(37, 23, 0);
        for (i, v) in m.data.iter_mut().enumerate() {
            *v = if i % 13 == 0 { IGNORE_INDEX } else { (i % 8) as u8 };
        }
        let png = m.to_png(&classes);
        let back = LabelMap::from_png(&png, &classes, "mem").unwrap();
        assert_eq!(back, m);
        // The PNG holds raw codes.
        let (_, _, _, raw) = decode_png(&png, "mem").unwrap();
        assert_eq!(raw[1], 20);
        assert_eq!(raw[0], 100);
    }

    #[test]
    fn unknown_code_names_file_pixel_and_code() {
        let classes = ClassTable::ai_hub();
        let png = encode_png(2, 2, png::ColorType::Grayscale, &[10, 20, 30, 33]);
        let err = LabelMap::from_png(&png, &classes, "labels/a.png").unwrap_err().to_string();
        assert!(err.contains("labels/a.png") && err.contains("(1, 1)") && err.contains("33"), "{err}");
    }

    /// An indexed PNG: 8 or 4 bits a pixel, with a palette of colours no class has, but
    /// for `coloured` (an index and its colour).
    fn indexed_png(width: u32, height: u32, depth: png::BitDepth, packed: &[u8], coloured: Option<(u8, [u8; 3])>) -> Vec<u8> {
        let mut palette: Vec<[u8; 3]> = (0..=255u8).map(|i| [i, 255 - i, i / 2]).collect();
        if let Some((i, rgb)) = coloured {
            palette[i as usize] = rgb;
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(depth);
        enc.set_palette(palette.concat());
        enc.write_header().unwrap().write_image_data(packed).unwrap();
        out
    }

    /// A code mask stored as an indexed PNG (Pascal VOC style): its palette indices are the
    /// codes, at 8 and at 4 bits a pixel; an index outside the table says the file was
    /// indexed and points at --mask palette.
    #[test]
    fn indexed_pngs_read_as_codes_by_their_indices() {
        let classes = ClassTable::ai_hub();
        let eight = indexed_png(3, 2, png::BitDepth::Eight, &[10, 20, 100, 80, 10, 30], None);
        let (map, unk) = decode_label(&eight, &classes, MaskKind::Codes, UnknownCodes::Error, "m.png").unwrap();
        assert_eq!((map.width, map.height, map.data, unk.count), (3, 2, vec![0, 1, IGNORE_INDEX, 7, 0, 2], 0));
        // 4 bits: two pixels a byte, each row padded to a whole byte (3 pixels: 2 bytes).
        let mut table = classes.clone();
        for (i, c) in table.classes.iter_mut().enumerate() {
            c.code = i as u8 + 1;
        }
        table.ignore_code = 15;
        let four = indexed_png(3, 2, png::BitDepth::Four, &[0x12, 0xF0, 0x83, 0x40], None);
        let (map, _) = decode_label(&four, &table, MaskKind::Codes, UnknownCodes::Error, "m.png").unwrap();
        assert_eq!(map.data, vec![0, 1, IGNORE_INDEX, 7, 2, 3]);
        let e = decode_label(&four, &classes, MaskKind::Codes, UnknownCodes::Error, "m.png").unwrap_err().to_string();
        assert!(e.contains("holds code 1,") && e.contains("an indexed PNG") && e.contains("--mask palette"), "{e}");
        // Read as a palette mask, the same file is its colours.
        let e = decode_label(&eight, &classes, MaskKind::Palette, UnknownCodes::Error, "m.png").unwrap_err().to_string();
        assert!(e.contains("no class's colour"), "{e}");
        // A colour mask saved indexed: a used index has another code's class colour.
        let road = classes.color_of_index(2);
        let saved = indexed_png(3, 2, png::BitDepth::Eight, &[10, 20, 100, 80, 10, 20], Some((20, road)));
        let e = decode_label(&saved, &classes, MaskKind::Codes, UnknownCodes::Ignore, "m.png").unwrap_err().to_string();
        assert!(e.contains("index 20 the colour of class \"road\" (code 30)") && e.contains("--mask palette"), "{e}");
        let (map, _) = decode_label(&saved, &classes, MaskKind::Palette, UnknownCodes::Ignore, "m.png").unwrap();
        assert_eq!(map.data[1], 2, "read as colours, index 20 is road");
        // An index coloured as its own code's class is a code mask with a matching palette.
        let matching = indexed_png(3, 2, png::BitDepth::Eight, &[10, 20, 100, 80, 10, 30], Some((30, road)));
        assert_eq!(decode_label(&matching, &classes, MaskKind::Codes, UnknownCodes::Error, "m.png").unwrap().0.data[5], 2);
    }

    #[test]
    fn mode_downsample_keeps_thin_roads_that_point_sampling_loses() {
        // A 3-px road on rows 5..=7 of a 64×64 map; shrinking ×4 samples row 4 (nearest:
        // no road) but the block of rows 4..8 is 3/4 road (mode: a continuous road row).
        let mut m = LabelMap::new(64, 64, 5);
        for y in 5..8 {
            for x in 0..64 {
                m.set(x, y, 2);
            }
        }
        assert!(m.resize_nearest(16, 16).data.iter().all(|&v| v == 5), "point sampling loses the road");
        let small = m.resize_mode(16, 16);
        assert!((0..16).all(|x| small.get(x, 1) == 2) && small.class_counts(8)[2] == 16, "{:?}", small.class_counts(8));
        // Majority per block, the label under the centre on a tie; growing is nearest.
        let m = LabelMap { width: 4, height: 2, data: vec![1, 3, 3, 3, 1, 1, 0, 0] };
        assert_eq!(m.resize_mode(2, 1).data, vec![1, 0]);
        let flipped = LabelMap { width: 4, height: 2, data: vec![1, 1, 0, 0, 1, 3, 3, 3] };
        assert_eq!(flipped.resize_mode(2, 1).data, vec![1, 3], "a tie follows the centre, not the lower index");
        // A border through the middle of every 2×2 block: each class keeps its share
        // whichever side it is on (the lower index used to take every tied block).
        for (top, bottom) in [(0u8, 5u8), (5, 0)] {
            let mut m = LabelMap::new(8, 6, bottom);
            for y in 0..3 {
                for x in 0..8 {
                    m.set(x, y, top);
                }
            }
            let counts = m.resize_mode(4, 3).class_counts(8);
            assert_eq!((counts[top as usize], counts[bottom as usize]), (4, 8), "top {top}: the tied middle row goes to the class under its centre");
        }
        // One side shrinks, the other grows: the mode along the first, nearest along the
        // other (point sampling would keep the lone 3).
        let row = LabelMap { width: 4, height: 1, data: vec![3, 1, 1, 1] };
        assert_eq!(row.resize_mode(2, 2).data, vec![1, 1, 1, 1]);
        assert_eq!(row.resize_nearest(2, 2).data, vec![3, 1, 3, 1]);
        // Growing by a non-integer factor samples under each output pixel's centre: both
        // edges keep their share (left-edge sampling gave [0, 0, 1, 1, 2]).
        let row = LabelMap { width: 3, height: 1, data: vec![0, 1, 2] };
        assert_eq!(row.resize_nearest(5, 1).data, vec![0, 0, 1, 2, 2]);
        assert_eq!(row.resize_nearest(6, 1).data, vec![0, 0, 1, 1, 2, 2], "an integer factor repeats each pixel");
        assert_eq!(LabelMap::new(0, 5, 0).resize_mode(3, 2), LabelMap::new(3, 2, IGNORE_INDEX));
        assert_eq!(m.resize_mode(8, 4), m.resize_nearest(8, 4));
        // A shrink by a non-integer ratio covers every source pixel once.
        let m = LabelMap { width: 5, height: 1, data: vec![4, 4, 1, 1, 1] };
        assert_eq!(m.resize_mode(2, 1).data, vec![4, 1]);
    }

    #[test]
    fn images_round_trip_through_each_encoding() {
        let img = crate::procedural::sample(3, 0, 64, &Default::default()).0;
        for enc in [ImageEncoding::Png, ImageEncoding::WebpLossless] {
            assert_eq!(RgbImage::decode(&img.encode(enc), "mem").unwrap(), img, "{enc:?} is lossless");
        }
        let mean_err = |q: u8| {
            let back = RgbImage::decode(&img.encode(ImageEncoding::Jpeg { quality: q }), "mem").unwrap();
            assert_eq!((back.width, back.height), (64, 64));
            back.data.iter().zip(&img.data).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>() / img.data.len() as f64
        };
        let (q95, q30) = (mean_err(95), mean_err(30));
        assert!(q95 < 4.0 && q95 < q30, "JPEG mean error: q95 {q95}, q30 {q30}");
        assert!(img.encode(ImageEncoding::Jpeg { quality: 30 }).len() < img.encode(ImageEncoding::Jpeg { quality: 95 }).len());
        let e = RgbImage::decode(b"not an image at all", "data/x.png").unwrap_err().to_string();
        assert!(e.contains("data/x.png") && e.contains("not a PNG, JPEG or WebP"), "{e}");
    }

    #[test]
    fn nearest_resize_repeats_pixels_of_labels_and_images() {
        let m = LabelMap { width: 2, height: 1, data: vec![3, 5] };
        assert_eq!(m.resize_nearest(4, 2).data, vec![3, 3, 5, 5, 3, 3, 5, 5]);
        let img = RgbImage { width: 2, height: 1, data: vec![1, 2, 3, 4, 5, 6] };
        let up = img.resize_nearest(4, 1);
        assert_eq!(up.data, vec![1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6]);
        assert_eq!(up.resize_nearest(2, 1), img);
    }

    #[test]
    fn rgb_png_round_trip_is_exact() {
        let mut img = RgbImage::new(5, 4);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = (i * 7) as u8;
        }
        assert_eq!(RgbImage::from_png(&img.to_png(), "mem").unwrap(), img);
    }
}
