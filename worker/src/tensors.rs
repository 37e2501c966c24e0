//! Burn conversions between `shared`'s images and label maps and tensors: images ↔
//! `[b, 3, h, w]` in `[-1, 1]`, label maps → one-hot `[b, k, h, w]` (SPADE's input) or
//! class targets `[b, h, w]` (a segmentation loss's). Used by the SPADE generator and
//! trainer and by `eval`'s segmentation model.
//!
//! What inference moves between host and device is bytes: the one-hot is built on the
//! device from `u8` class indices (`k·4`× less to upload than f32 one-hot), and images
//! come back as `u8` HWC (4× less than f32).

use burn::prelude::*;
use burn::tensor::{DType, IntDType, TensorData};
use shared::{LabelMap, RgbImage};

/// One-hot label tensor `[b, k, h, w]` (1.0 on the pixel's class, 0.0 elsewhere; pixels
/// of no class, e.g. ignore, are all zero), f32. Uploads the `u8` indices and expands
/// them on the device.
///
/// # Panics
/// If the maps differ in size or `labels` is empty.
pub fn one_hot<B: Backend>(labels: &[LabelMap], k: usize, device: &B::Device) -> Tensor<B, 4> {
    let first = labels.first().expect("one_hot: at least one label map");
    let (w, h) = (first.width as usize, first.height as usize);
    let mut data = Vec::with_capacity(labels.len() * w * h);
    for (i, m) in labels.iter().enumerate() {
        assert!(m.width as usize == w && m.height as usize == h, "one_hot: label map {i} is {}x{}, the first is {w}x{h}", m.width, m.height);
        data.extend_from_slice(&m.data);
    }
    // Uploaded as u8 (the dtype given explicitly: `from_data` alone converts to the
    // backend's default int type on the host), widened on the device.
    let idx = Tensor::<B, 3, Int>::from_data(TensorData::new(data, [labels.len(), h, w]), (device, DType::U8)).cast(IntDType::I32).unsqueeze_dim::<4>(1);
    let classes = Tensor::<B, 1, Int>::arange(0..k as i64, device).cast(IntDType::I32).reshape([1, k, 1, 1]);
    idx.equal(classes).float().cast(burn::tensor::FloatDType::F32)
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

/// `[b, 3, h, w]` in `[-1, 1]` (clamped) to images: `round((v + 1)·127.5)` and the HWC
/// layout on the device, then one `u8` read-back.
pub fn tensor_to_images<B: Backend>(t: Tensor<B, 4>) -> Vec<RgbImage> {
    let [_, c, h, w] = t.dims();
    assert_eq!(c, 3, "tensor_to_images: expected 3 channels, got {c}");
    // floor(x + 0.5) with x = (v + 1)·127.5 in [0, 255] is f32::round(x) except within
    // an ulp below a half (x + 0.5 rounds up there): at most 1 in a byte, on a knife edge.
    let bytes = crate::precision::f32(t).clamp(-1.0, 1.0).add_scalar(1.0).mul_scalar(127.5).add_scalar(0.5).floor().permute([0, 2, 3, 1]).cast(IntDType::U8);
    let data = bytes.into_data().convert::<u8>().into_vec::<u8>().expect("u8 image data");
    data.chunks(h * w * 3).map(|px| RgbImage { width: w as u32, height: h as u32, data: px.to_vec() }).collect()
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
        // Against the host formula, two images, values beyond the range clamped.
        let t = Tensor::<Cpu, 4>::random([2, 3, 5, 7], burn::tensor::Distribution::Uniform(-1.2, 1.2), &device);
        let v: Vec<f32> = t.clone().into_data().to_vec().unwrap();
        let want: Vec<u8> =
            (0..2 * 35 * 3).map(|j| (j / 105, (j % 105) / 3, j % 3)).map(|(i, p, ch)| ((v[(i * 3 + ch) * 35 + p].clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8).collect();
        let got: Vec<u8> = tensor_to_images(t).into_iter().flat_map(|im| im.data).collect();
        assert_eq!(got, want);

        let map = LabelMap { width: 2, height: 1, data: vec![1, 255] };
        let oh: Vec<f32> = one_hot::<Cpu>(std::slice::from_ref(&map), 2, &device).into_data().convert::<f32>().to_vec().unwrap();
        assert_eq!(oh, vec![0.0, 0.0, 1.0, 0.0], "class 1 at pixel 0; ignore is all zero");
        let two = [LabelMap { width: 2, height: 2, data: vec![0, 2, 1, 7] }, LabelMap { width: 2, height: 2, data: vec![2, 2, 0, 1] }];
        let oh: Vec<f32> = one_hot::<Cpu>(&two, 3, &device).into_data().to_vec().unwrap();
        #[rustfmt::skip]
        assert_eq!(oh, vec![1., 0., 0., 0., 0., 0., 1., 0., 0., 1., 0., 0., /* map 2 */ 0., 0., 1., 0., 0., 0., 0., 1., 1., 1., 0., 0.]);
        let targets: Vec<i64> = labels_to_tensor::<Cpu>(&[map], &device).into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(targets, vec![1, 255]);
    }
}
