//! Label maps (one class index per pixel) and RGB images, and their PNG forms.
//!
//! A label PNG is 8-bit grayscale holding the *raw codes* of the class table, the same
//! format as the AI Hub masks, so real and generated data share one layout.

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

    /// Nearest-neighbour resize.
    pub fn resize_nearest(&self, width: u32, height: u32) -> LabelMap {
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
    pub fn from_codes(width: u32, height: u32, codes: &[u8], classes: &ClassTable, origin: &str) -> Result<LabelMap> {
        let lut = classes.code_lut();
        let mut data = Vec::with_capacity(codes.len());
        for (i, &c) in codes.iter().enumerate() {
            match lut[c as usize] {
                Some(idx) => data.push(idx),
                None => {
                    let (x, y) = (i as u32 % width, i as u32 / width);
                    let known: Vec<u8> = classes.classes.iter().map(|c| c.code).collect();
                    return Err(Error::format(
                        origin,
                        format!("pixel ({x}, {y}) holds code {c}, which is not in the class table (known codes {known:?}, ignore {})", classes.ignore_code),
                    ));
                }
            }
        }
        Ok(LabelMap { width, height, data })
    }

    /// Encodes as an 8-bit grayscale PNG of raw codes.
    pub fn to_png(&self, classes: &ClassTable) -> Vec<u8> {
        encode_png(self.width, self.height, png::ColorType::Grayscale, &self.to_codes(classes))
    }

    /// Decodes an 8-bit grayscale label PNG of raw codes.
    pub fn from_png(bytes: &[u8], classes: &ClassTable, origin: &str) -> Result<LabelMap> {
        let (w, h, color, data) = decode_png(bytes, origin)?;
        if color != png::ColorType::Grayscale {
            return Err(Error::format(origin, format!("label PNG must be 8-bit grayscale, found {color:?}")));
        }
        LabelMap::from_codes(w, h, &data, classes, origin)
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

/// Nearest-neighbour resize of row-major pixels of `channels` bytes each.
fn resize_nearest_pixels(src: &[u8], w: u32, h: u32, channels: usize, nw: u32, nh: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(nw as usize * nh as usize * channels);
    for y in 0..nh {
        let sy = (y as u64 * h as u64 / nh as u64) as usize;
        for x in 0..nw {
            let sx = (x as u64 * w as u64 / nw as u64) as usize;
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

#[cfg(test)]
mod tests {
    use super::*;

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
