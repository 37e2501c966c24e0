//! Burn conversions between `shared`'s images and label maps and tensors, on the host:
//! images ↔ `[b, 3, h, w]` in `[-1, 1]`, label maps → one-hot `[b, k, h, w]` (SPADE's
//! input) or class targets `[b, h, w]` (a segmentation loss's). Used by the SPADE
//! generator and trainer and by `eval`'s segmentation model.

use burn::prelude::*;
use burn::tensor::TensorData;
use shared::{LabelMap, RgbImage};

/// One-hot label tensor `[b, k, h, w]` (1.0 on the pixel's class, 0.0 elsewhere; pixels
/// of no class, e.g. ignore, are all zero).
///
/// # Panics
/// If the maps differ in size or `labels` is empty.
pub fn one_hot<B: Backend>(labels: &[LabelMap], k: usize, device: &B::Device) -> Tensor<B, 4> {
    let first = labels.first().expect("one_hot: at least one label map");
    let (w, h) = (first.width as usize, first.height as usize);
    let plane = w * h;
    let mut data = vec![0f32; labels.len() * k * plane];
    for (i, m) in labels.iter().enumerate() {
        assert!(m.width as usize == w && m.height as usize == h, "one_hot: label map {i} is {}x{}, the first is {w}x{h}", m.width, m.height);
        let base = i * k * plane;
        for (p, &c) in m.data.iter().enumerate() {
            if (c as usize) < k {
                data[base + c as usize * plane + p] = 1.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [labels.len(), k, h, w]), device)
}

/// Label maps to class targets `[b, h, w]` (ignore stays 255).
pub fn labels_to_tensor<B: Backend>(labels: &[LabelMap], device: &B::Device) -> Tensor<B, 3, Int> {
    let first = labels.first().expect("labels_to_tensor: at least one label map");
    let (w, h) = (first.width as usize, first.height as usize);
    let mut data = Vec::with_capacity(labels.len() * w * h);
    for (i, m) in labels.iter().enumerate() {
        assert!(m.width as usize == w && m.height as usize == h, "labels_to_tensor: label map {i} is {}x{}, the first is {w}x{h}", m.width, m.height);
        data.extend(m.data.iter().map(|&v| v as i64));
    }
    Tensor::from_data(TensorData::new(data, [labels.len(), h, w]), device)
}

/// Images to `[b, 3, h, w]` in `[-1, 1]`.
///
/// # Panics
/// If the images differ in size or `images` is empty.
pub fn images_to_tensor<B: Backend>(images: &[RgbImage], device: &B::Device) -> Tensor<B, 4> {
    let first = images.first().expect("images_to_tensor: at least one image");
    let (w, h) = (first.width as usize, first.height as usize);
    let plane = w * h;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (i, img) in images.iter().enumerate() {
        assert!(img.width as usize == w && img.height as usize == h, "images_to_tensor: image {i} is {}x{}, the first is {w}x{h}", img.width, img.height);
        for p in 0..plane {
            for c in 0..3 {
                data[(i * 3 + c) * plane + p] = img.data[p * 3 + c] as f32 / 127.5 - 1.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [images.len(), 3, h, w]), device)
}

/// `[b, 3, h, w]` in `[-1, 1]` (clamped) to images.
pub fn tensor_to_images<B: Backend>(t: Tensor<B, 4>) -> Vec<RgbImage> {
    let [b, c, h, w] = t.dims();
    assert_eq!(c, 3, "tensor_to_images: expected 3 channels, got {c}");
    let data: Vec<f32> = t.into_data().convert::<f32>().to_vec().expect("f32 data");
    let plane = h * w;
    (0..b)
        .map(|i| {
            let mut img = RgbImage::new(w as u32, h as u32);
            for p in 0..plane {
                for ch in 0..3 {
                    let v = data[(i * 3 + ch) * plane + p];
                    img.data[p * 3 + ch] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                }
            }
            img
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};

    #[test]
    fn tensors_round_trip_images_and_encode_labels() {
        let device = CpuDevice::default();
        let img = RgbImage { width: 2, height: 1, data: vec![0, 128, 255, 10, 20, 30] };
        let t = images_to_tensor::<Cpu>(std::slice::from_ref(&img), &device);
        assert_eq!(t.dims(), [1, 3, 1, 2]);
        assert_eq!(tensor_to_images(t), vec![img]);

        let map = LabelMap { width: 2, height: 1, data: vec![1, 255] };
        let oh: Vec<f32> = one_hot::<Cpu>(std::slice::from_ref(&map), 2, &device).into_data().convert::<f32>().to_vec().unwrap();
        assert_eq!(oh, vec![0.0, 0.0, 1.0, 0.0], "class 1 at pixel 0; ignore is all zero");
        let targets: Vec<i64> = labels_to_tensor::<Cpu>(&[map], &device).into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(targets, vec![1, 255]);
    }
}
