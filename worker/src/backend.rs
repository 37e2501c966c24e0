//! The Burn backends, chosen here and nowhere else. Model code is generic over
//! `B: Backend`; binaries and tests pick one of these aliases.
//!
//! - CPU: `burn-flex` (measured faster convolutions than `ndarray` on a 2-core x86
//!   machine), with its AVX-512 GEMM kernels turned on (the `x86-v4` feature, chosen at
//!   run time); inference convolutions larger than 1×1 go through [`crate::cpu_conv`],
//!   normalisations and activations through [`crate::fused`]. Every test runs here.
//! - GPU: `burn-cuda` behind the `cuda` cargo feature.
//!
//! [`dispatch`] and [`dispatch_train`] resolve a `--device` and run generic work on the
//! matching backend: the one place a command meets a concrete backend.

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

use burn::tensor::backend::{AutodiffBackend, Backend};
use shared::spec::DeviceChoice;

use crate::device::{self, DriverProbe, Resolved};

/// Work that runs on whichever inference backend a `--device` resolves to. A command
/// implements it once, generically, and [`dispatch`] picks the backend: the one backend
/// `match` of the crate.
pub trait OnBackend {
    type Output;
    fn run<B: Backend>(self, device: B::Device, resolved: Resolved) -> anyhow::Result<Self::Output>;
}

/// As [`OnBackend`], for training (an autodiff backend).
pub trait OnTrainBackend {
    type Output;
    /// Whether the work takes `--device cuda:all` (data-parallel training): [`dispatch_train`]
    /// then calls [`Self::run_parallel`] with every GPU.
    const DATA_PARALLEL: bool = false;
    fn run<B: AutodiffBackend>(self, device: B::Device, resolved: Resolved) -> anyhow::Result<Self::Output>;
    /// The work on several devices of one backend (the first is `resolved`). Called only
    /// when [`Self::DATA_PARALLEL`] and more than one GPU was resolved; by default, runs
    /// on the first.
    fn run_parallel<B: AutodiffBackend>(self, devices: Vec<B::Device>, resolved: Resolved) -> anyhow::Result<Self::Output>
    where
        Self: Sized,
    {
        let first = devices.into_iter().next().ok_or_else(|| anyhow::anyhow!("no device to train on"))?;
        self.run::<B>(first, resolved)
    }
}

/// Resolves `choice` on this machine (an unusable `cuda` is an error naming what is
/// missing; `auto` falls back to the CPU with a warning) and runs `work` there. A backend
/// that panics while starting (the CUDA backend does) becomes an error naming the device.
pub fn dispatch<W: OnBackend>(choice: DeviceChoice, work: W) -> anyhow::Result<W::Output> {
    let resolved = device::resolve(choice, &DriverProbe::detect())?;
    guard(resolved, move || match resolved {
        Resolved::Cpu => work.run::<Cpu>(CpuDevice::default(), resolved),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(n) => work.run::<Gpu>(burn::backend::cuda::CudaDevice { index: n }, resolved),
        #[cfg(not(feature = "cuda"))]
        Resolved::Cuda(_) => unreachable!("device::resolve refuses CUDA in a build without it"),
    })
}

/// [`dispatch`] for training work. Work that is [`OnTrainBackend::DATA_PARALLEL`] also
/// takes `cuda:all` and runs on every GPU.
pub fn dispatch_train<W: OnTrainBackend>(choice: DeviceChoice, work: W) -> anyhow::Result<W::Output> {
    let probe = DriverProbe::detect();
    let all = if W::DATA_PARALLEL { device::resolve_all(choice, &probe)? } else { vec![device::resolve(choice, &probe)?] };
    let resolved = all[0];
    guard(resolved, move || match resolved {
        Resolved::Cpu => work.run::<CpuTrain>(CpuDevice::default(), resolved),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(n) if all.len() == 1 => work.run::<GpuTrain>(burn::backend::cuda::CudaDevice { index: n }, resolved),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(_) => {
            let devices = all.iter().filter_map(|r| if let Resolved::Cuda(index) = *r { Some(burn::backend::cuda::CudaDevice { index }) } else { None }).collect();
            work.run_parallel::<GpuTrain>(devices, resolved)
        }
        #[cfg(not(feature = "cuda"))]
        Resolved::Cuda(_) => unreachable!("device::resolve refuses CUDA in a build without it"),
    })
}

/// Runs `f`, turning a panic of the backend into an error that names the device.
pub fn guard<T>(resolved: Resolved, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| anyhow::anyhow!("the {resolved} backend failed: {}", panic_text(&p)))?
}

/// The message of a caught panic.
pub fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "a panic without a message".into())
}
