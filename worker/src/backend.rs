//! The Burn backends, chosen here and nowhere else. Model code is generic over
//! `B: Backend`; binaries and tests pick one of these aliases.
//!
//! - CPU: `burn-flex` (faster convolutions than `ndarray` on this class of machine; see
//!   `../shared/REFERENCE.md`). Every test runs here.
//! - GPU: `burn-cuda` behind the `cuda` cargo feature.

/// Inference on the CPU.
pub type Cpu = burn::backend::Flex;
/// The CPU device.
pub type CpuDevice = burn::backend::flex::FlexDevice;
/// Training on the CPU (automatic differentiation over [`Cpu`]).
pub type CpuTrain = burn::backend::Autodiff<Cpu>;

/// Inference on an NVIDIA GPU.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;
/// Training on an NVIDIA GPU.
#[cfg(feature = "cuda")]
pub type GpuTrain = burn::backend::Autodiff<Gpu>;
