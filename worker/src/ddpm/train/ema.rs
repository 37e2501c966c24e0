//! Exponential moving average of a module's weights: `ema ← d·ema + (1-d)·current`,
//! matching parameters by visiting order (both modules come from the same config).

use std::vec::IntoIter;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// The decay used at optimizer step `step` (0-based): `min(decay, (1+step)/(10+step))`,
/// so early averages are not dominated by the random initialisation.
pub fn decay_at(decay: f64, step: u64) -> f64 {
    decay.min((1.0 + step as f64) / (10.0 + step as f64))
}

struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val();
        let n = v.shape().num_elements();
        self.0.push(v.reshape([n]));
    }
}

struct Blend<B: Backend> {
    current: IntoIter<Tensor<B, 1>>,
    decay: f64,
}
impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, ema, mapper) = param.consume();
        let cur = self.current.next().expect("EMA and model have the same parameters").reshape(ema.dims());
        let blended = ema.mul_scalar(self.decay) + cur.mul_scalar(1.0 - self.decay);
        Param::from_mapped_value(id, blended, mapper)
    }
}

/// `ema ← decay·ema + (1-decay)·current`.
pub fn update<B: Backend, M: Module<B>>(ema: M, current: &M, decay: f64) -> M {
    let mut c = Collect(Vec::new());
    current.visit(&mut c);
    ema.map(&mut Blend { current: c.0.into_iter(), decay })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn ddpm_ema_blends_parameters() {
        let device = CpuDevice::default();
        let a: Linear<Cpu> = LinearConfig::new(3, 2).init(&device);
        let b: Linear<Cpu> = LinearConfig::new(3, 2).init(&device);
        // Parameters are initialised lazily; materialise them so clones share values.
        let _ = (a.weight.val(), a.bias.as_ref().unwrap().val());
        let mixed = update(a.clone(), &b, 0.75);
        let (wa, wb, wm) = (a.weight.val(), b.weight.val(), mixed.weight.val());
        let err = (wm - (wa * 0.75 + wb * 0.25)).abs().max().into_scalar();
        assert!(err < 1e-6, "EMA blend off by {err}");
        assert_eq!(decay_at(0.9999, 0), 0.1);
        assert_eq!(decay_at(0.5, 1000), 0.5);
    }
}
