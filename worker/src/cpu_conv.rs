//! 2-D convolution on the CPU inference backend as im2col into channel-major columns plus
//! one matrix product per batch, instead of `burn-flex`'s convolution.
//!
//! `burn-flex` copies the input to NHWC on one thread on every call, builds im2col tiles
//! element by element, zeroes them and scatters the product back to NCHW: about half of
//! its convolution time is outside the multiply-add (issue 19's profile). Here the
//! columns are `[b, c·kh·kw (+1), oh·ow]`, filled row by row with slice copies (one
//! contiguous run per output row and kernel tap, in parallel over samples and channels),
//! so the product `W[o, c·kh·kw (+1)] · cols` comes out already in NCHW and needs no
//! transpose. The bias rides in the product as a last column of `W` against a row of
//! ones. The product is Burn's `matmul`, i.e. the same gemm kernels (AVX-512 where the
//! CPU has it: the workspace turns on `burn-flex`'s `x86-v4`). Columns are `kh·kw` times
//! the input, so a batch whose columns pass 32 MB goes through in groups of about 16 MB
//! (fresh pages from the kernel on every call cost more than a second product).
//!
//! Measured on 2 cores (README, "CPU speed beside PyTorch"), at batch 8 against
//! `burn-flex`'s convolution with the same AVX-512 kernels: the demo UNet's DDIM step
//! 6–15 % faster (two sittings), SPADE's forward 17 %. What is left outside the
//! multiply-add is writing the columns and zeroing their buffer (about 30 % of the
//! pipeline's time at batch 8).
//!
//! Only [`Cpu`](crate::backend::Cpu) tensors of f32 with a kernel larger than 1×1 take
//! this path ([`crate::fused::on_host`]); 1×1 convolutions (which `burn-flex` already
//! runs as one product), half precision, autodiff (training) and CUDA keep Burn's
//! `conv2d`, which the tests compare this one against.

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

use crate::fused::on_host;

/// `conv.forward(x)` through [`conv2d`] where the layer's padding is explicit and the
/// same on both sides, or none (every layer of this crate's models); `Same` padding,
/// dilation and groups go to Burn's forward.
pub fn forward<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => [top, left],
        _ => return conv.forward(x),
    };
    if conv.dilation != [1, 1] || conv.groups != 1 {
        return conv.forward(x);
    }
    conv2d(x, conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), conv.stride, padding)
}

/// `x` `[b, c, h, w]` convolved with `weight` `[o, c, kh, kw]` (+ `bias` `[o]`), stride
/// and zero padding per axis (`[h, w]`), no dilation, one group: Burn's `conv2d` with
/// those options, computed as described in the module docs on the CPU backend.
pub fn conv2d<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, bias: Option<Tensor<B, 1>>, stride: [usize; 2], padding: [usize; 2]) -> Tensor<B, 4> {
    conv2d_in_groups(x, weight, bias, stride, padding, MAX_COLUMN_BYTES)
}

/// [`conv2d`], with the batch split into groups of samples once its columns pass
/// `max_bytes` (a parameter so that the tests reach the split with small tensors).
fn conv2d_in_groups<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, bias: Option<Tensor<B, 1>>, stride: [usize; 2], padding: [usize; 2], max_bytes: usize) -> Tensor<B, 4> {
    let [o, ci, kh, kw] = weight.dims();
    if !on_host::<B>() || x.dtype() != DType::F32 || weight.dtype() != DType::F32 || kh * kw == 1 {
        return burn_conv2d(x, weight, bias, ConvOptions::new(stride, padding, [1, 1], 1));
    }
    let [b, c, h, w] = x.dims();
    assert_eq!(c, ci, "conv2d: input of {c} channels for a weight of {ci}");
    let geometry = Geometry::new([h, w], [kh, kw], stride, padding);
    let [oh, ow] = geometry.out;
    let n = oh * ow;
    let taps = ci * kh * kw;
    let rows = taps + usize::from(bias.is_some());
    let device = x.device();

    let input = x.into_data();
    let input = input.as_slice::<f32>().expect("an f32 tensor reads as f32");
    let weight = weight.reshape([o, taps]);
    let weight = match bias {
        Some(bias) => Tensor::cat(vec![weight, bias.reshape([o, 1])], 1),
        None => weight,
    }
    .unsqueeze::<3>();
    // Columns are kh·kw times the input: past a few tens of MB, one buffer for the whole
    // batch is fresh pages from the kernel on every call, so large batches go through in
    // groups whose buffers the allocator can hand back for the next group.
    let per_sample = rows * n * size_of::<f32>();
    let group = if b * per_sample <= max_bytes { b } else { (max_bytes / 2 / per_sample).clamp(1, b) };
    let mut outputs: Vec<Tensor<B, 3>> = (0..b)
        .step_by(group)
        .map(|first| {
            let count = group.min(b - first);
            let mut cols = vec![0f32; count * rows * n];
            cols.par_chunks_mut(rows * n).enumerate().for_each(|(k, sample)| {
                let (body, ones) = sample.split_at_mut(taps * n);
                ones.fill(1.0);
                body.par_chunks_mut(kh * kw * n).enumerate().for_each(|(ch, dst)| {
                    let plane = &input[((first + k) * c + ch) * h * w..][..h * w];
                    geometry.unfold(plane, dst);
                });
            });
            let cols = Tensor::<B, 3>::from_data(TensorData::new(cols, [count, rows, n]), &device);
            // One weight matrix against every sample's columns (matmul broadcasts the batch).
            weight.clone().matmul(cols)
        })
        .collect();
    let out = if outputs.len() == 1 { outputs.remove(0) } else { Tensor::cat(outputs, 0) };
    out.reshape([b, o, oh, ow])
}

/// The most bytes of columns built at once for a whole batch ([`conv2d`]); past it,
/// groups of samples take about half as much each.
const MAX_COLUMN_BYTES: usize = 32 << 20;

/// Where each kernel tap reads for each output pixel of one channel plane.
struct Geometry {
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    out: [usize; 2],
}

impl Geometry {
    fn new(size: [usize; 2], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Self {
        let out = std::array::from_fn(|a| {
            let padded = size[a] + 2 * padding[a];
            assert!(padded >= kernel[a] && stride[a] > 0, "conv2d: kernel {kernel:?} over input {size:?} padded by {padding:?}");
            (padded - kernel[a]) / stride[a] + 1
        });
        Geometry { size, kernel, stride, padding, out }
    }

    /// The output positions `lo..hi` along axis `a` whose input coordinate
    /// `pos·stride + tap − padding` is inside the input.
    fn valid(&self, a: usize, tap: usize) -> (usize, usize) {
        let (s, p) = (self.stride[a], self.padding[a]);
        let lo = p.saturating_sub(tap).div_ceil(s).min(self.out[a]);
        // pos·s + tap − p ≤ size − 1  ⇔  pos ≤ (size − 1 + p − tap) / s.
        let hi = match (self.size[a] + p).checked_sub(tap + 1) {
            Some(last) => (last / s + 1).min(self.out[a]),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// Writes one channel's `kh·kw` rows of columns (`dst`, already zero) from its plane.
    fn unfold(&self, plane: &[f32], dst: &mut [f32]) {
        let ([h, w], [kh, kw], [oh, ow]) = (self.size, self.kernel, self.out);
        let n = oh * ow;
        debug_assert_eq!((plane.len(), dst.len()), (h * w, kh * kw * n));
        for i in 0..kh {
            let (y0, y1) = self.valid(0, i);
            for j in 0..kw {
                let (x0, x1) = self.valid(1, j);
                if x0 == x1 {
                    continue;
                }
                let row = &mut dst[(i * kw + j) * n..][..n];
                for y in y0..y1 {
                    let src = &plane[(y * self.stride[0] + i - self.padding[0]) * w..][..w];
                    let out = &mut row[y * ow..][x0..x1];
                    let first = x0 * self.stride[1] + j - self.padding[1];
                    if self.stride[1] == 1 {
                        out.copy_from_slice(&src[first..first + out.len()]);
                    } else {
                        for (k, v) in out.iter_mut().enumerate() {
                            *v = src[first + k * self.stride[1]];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice, CpuTrain};
    use burn::tensor::Distribution;

    fn random<B: Backend<Device = CpuDevice>, const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &CpuDevice::default())
    }

    /// Against Burn's `conv2d` within 1e-5 (relative to max(1, |value|)), the whole batch
    /// in one product and one sample at a time: kernels 3×3, 4×4, 1×3 and 5×5, strides 1
    /// and 2, padding 0–2, with and without bias, padding 2 around a 3×4 plane (rows and
    /// taps that read only padding), batches 1 to 3.
    #[test]
    fn im2col_conv_matches_burns() {
        // (input shape, kernel, stride, padding, bias)
        type Case = ([usize; 4], [usize; 2], [usize; 2], [usize; 2], bool);
        let cases: [Case; 7] = [
            ([3, 5, 9, 7], [3, 3], [1, 1], [1, 1], true),
            ([1, 4, 8, 8], [3, 3], [2, 2], [1, 1], true),
            ([2, 3, 6, 10], [4, 4], [2, 2], [1, 1], false),
            ([2, 3, 7, 5], [1, 3], [1, 2], [0, 1], true),
            ([1, 2, 6, 6], [5, 5], [1, 1], [2, 2], true),
            ([2, 6, 5, 5], [3, 3], [1, 1], [0, 0], false),
            ([1, 3, 3, 4], [3, 3], [1, 1], [2, 2], true),
        ];
        for (shape, kernel, stride, padding, with_bias) in cases {
            let x = random::<Cpu, 4>(shape);
            let weight = random::<Cpu, 4>([6, shape[1], kernel[0], kernel[1]]);
            let bias = with_bias.then(|| random::<Cpu, 1>([6]));
            let want = burn_conv2d(x.clone(), weight.clone(), bias.clone(), ConvOptions::new(stride, padding, [1, 1], 1));
            let want = want.into_data().to_vec::<f32>().unwrap();
            let whole = conv2d(x.clone(), weight.clone(), bias.clone(), stride, padding);
            // Past the byte limit the batch goes through one sample at a time.
            let in_groups = conv2d_in_groups(x, weight, bias, stride, padding, 1);
            for (got, how) in [(whole, "whole batch"), (in_groups, "in groups")] {
                let what = format!("{shape:?} k{kernel:?} s{stride:?} p{padding:?}, {how}");
                assert_eq!(got.dims()[1..], [6, (shape[2] + 2 * padding[0] - kernel[0]) / stride[0] + 1, (shape[3] + 2 * padding[1] - kernel[1]) / stride[1] + 1], "{what}");
                let got = got.into_data().to_vec::<f32>().unwrap();
                assert_eq!(got.len(), want.len(), "{what}: sizes");
                let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0f32, f32::max);
                assert!(worst <= 1e-5, "{what}: differs from Burn's by {worst:e}");
            }
        }
    }

    /// A `Conv2d` layer: the same output through [`forward`] as through its own forward;
    /// the autodiff backend keeps Burn's path (and its gradients).
    #[test]
    fn layer_forward_matches_and_training_keeps_burns_path() {
        let device = CpuDevice::default();
        let config = burn::nn::conv::Conv2dConfig::new([4, 5], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
        let conv = config.init::<Cpu>(&device);
        let x = random::<Cpu, 4>([2, 4, 6, 6]);
        let (got, want) = (forward(&conv, x.clone()).into_data(), conv.forward(x).into_data());
        got.assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::absolute(1e-5));

        let conv = config.init::<CpuTrain>(&device);
        let x = random::<CpuTrain, 4>([1, 4, 5, 5]).require_grad();
        let grads = forward(&conv, x.clone()).sum().backward();
        assert!(x.grad(&grads).is_some(), "the training path has gradients");
    }
}
