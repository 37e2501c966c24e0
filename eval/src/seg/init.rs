//! Seeded initial weights that do not go through the backend's RNG.
//!
//! Burn draws initial weights from the backend's generator; on the CPU backend that is one
//! process-wide generator, and `B::seed` seeds only its next draw. Two trainings with the same
//! seed therefore start from different weights, and tests running in parallel draw from
//! the same generator. [`seeded_init`] redraws every convolution's weight and bias from
//! a ChaCha stream of its own seed, with Burn's default convolution initialiser
//! (uniform in ±1/√fan_in, fan_in = input channels per group × kernel area), so a
//! training run repeats exactly for a seed as far as the kernels are deterministic.
//! Batch-norm scales and shifts start at 1 and 0 and are left as they are.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::RngExt;
use shared::rng_for;

/// `module` with every `Conv2d` weight and bias redrawn from `seed` (visit order is the
/// module's field order, so the same architecture and seed give the same weights).
pub fn seeded_init<B: Backend, M: Module<B>>(module: M, seed: u64) -> M {
    let mut mapper = Reseed { path: Vec::new(), seed, drawn: 0, fan_in: None };
    module.map(&mut mapper)
}

struct Reseed {
    /// (field name, container type) of the modules entered.
    path: Vec<(String, String)>,
    seed: u64,
    /// Tensors drawn so far: each draws from stream `drawn` of the seed.
    drawn: u64,
    /// fan_in of the last convolution weight (its bias uses the same bound).
    fan_in: Option<usize>,
}

impl<B: Backend> ModuleMapper<B> for Reseed {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some((field, container)) = self.path.last() else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        if container != "Struct:Conv2d" {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let dims = tensor.dims();
        let fan_in = match (field.as_str(), D) {
            ("weight", 4) => {
                let f = dims[1] * dims[2] * dims[3];
                self.fan_in = Some(f);
                f
            }
            ("bias", 1) => self.fan_in.expect("a Conv2d's bias is visited after its weight"),
            _ => return Param::from_mapped_value(id, tensor, mapper),
        };
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let mut rng = rng_for(self.seed, self.drawn);
        self.drawn += 1;
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        let grad = tensor.is_require_grad();
        let fresh = Tensor::<B, D>::from_data(TensorData::new(values, dims), &tensor.device()).set_require_grad(grad);
        Param::from_mapped_value(id, fresh, mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::conv::Conv2dConfig;

    use super::*;
    use crate::seg::SegNetConfig;
    use worker::backend::{Cpu, CpuDevice};

    fn flat(m: &crate::seg::SegNet<Cpu>) -> Vec<f32> {
        let mut out = Vec::new();
        struct Collect<'a>(&'a mut Vec<f32>);
        impl<'a> burn::module::ModuleVisitor<Cpu> for Collect<'a> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Cpu, D>>) {
                self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
            }
        }
        m.visit(&mut Collect(&mut out));
        out
    }

    #[test]
    fn seeded_init_repeats_per_seed_and_keeps_the_bound() {
        let device = CpuDevice::default();
        let config = SegNetConfig::new(8).with_width(2);
        let a = flat(&seeded_init(config.init::<Cpu>(&device), 7));
        let b = flat(&seeded_init(config.init::<Cpu>(&device), 7));
        let c = flat(&seeded_init(config.init::<Cpu>(&device), 8));
        assert_eq!(a, b, "same seed, same weights");
        assert_ne!(a, c, "another seed, other weights");

        let conv = Conv2dConfig::new([3, 5], [3, 3]).init::<Cpu>(&device);
        let conv = seeded_init(conv, 1);
        let w: Vec<f32> = conv.weight.val().into_data().to_vec().unwrap();
        let bias: Vec<f32> = conv.bias.as_ref().unwrap().val().into_data().to_vec().unwrap();
        let bound = 1.0 / 27f32.sqrt();
        assert_eq!(w.len(), 5 * 3 * 9);
        assert!(w.iter().chain(&bias).all(|v| v.abs() <= bound), "all within ±1/√27");
        let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.9 * bound, "the draw spans the range: max |w| {max} vs bound {bound}");
    }
}
