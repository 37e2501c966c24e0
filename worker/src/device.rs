//! Device selection: `--device auto|cpu|cuda[:N]|cuda:all` (and `pipeline.device` in a
//! run spec); `cuda:all` ([`resolve_all`]) is every GPU, for runs and data-parallel
//! training (DDPM and SPADE).
//!
//! The CUDA backend loads `libcuda.so` at run time and panics when it cannot; this module
//! looks for the NVIDIA driver first (no unsafe, no loading) so a missing driver is an
//! error that says so, and `auto` falls back to the CPU with a warning.

use std::path::{Path, PathBuf};

use shared::spec::DeviceChoice;

/// The device models run on, after resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Cuda(usize),
}

impl std::fmt::Display for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolved::Cpu => f.write_str("cpu"),
            Resolved::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// What was found of the NVIDIA driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverProbe {
    /// `/proc/driver/nvidia/version`'s first line, when the kernel driver is loaded.
    pub kernel: Option<String>,
    /// GPUs listed under `/proc/driver/nvidia/gpus/`.
    pub gpus: usize,
    /// Where `libcuda.so.1` was found, if anywhere.
    pub libcuda: Option<PathBuf>,
}

impl DriverProbe {
    /// Looks at this machine.
    pub fn detect() -> DriverProbe {
        Self::detect_in(Path::new("/proc/driver/nvidia"), &library_dirs())
    }

    /// Looks under a given proc directory and library directories (for tests).
    pub fn detect_in(proc_dir: &Path, lib_dirs: &[PathBuf]) -> DriverProbe {
        let kernel = std::fs::read_to_string(proc_dir.join("version")).ok().map(|s| s.lines().next().unwrap_or("").trim().to_string());
        let gpus = std::fs::read_dir(proc_dir.join("gpus")).map(|d| d.filter_map(|e| e.ok()).count()).unwrap_or(0);
        let libcuda = lib_dirs.iter().map(|d| d.join("libcuda.so.1")).find(|p| p.exists());
        DriverProbe { kernel, gpus, libcuda }
    }

    fn usable(&self) -> Result<(), String> {
        match (&self.kernel, &self.libcuda) {
            (None, _) => Err("no NVIDIA driver on this machine (/proc/driver/nvidia/version is missing)".into()),
            (Some(_), None) => Err(
                "the NVIDIA kernel driver is loaded but libcuda.so.1 is not on the library path (searched LD_LIBRARY_PATH, /usr/lib/x86_64-linux-gnu, /usr/lib64, /usr/local/nvidia/lib64, /usr/local/cuda/compat); in a container, run it with the NVIDIA container runtime".into(),
            ),
            (Some(_), Some(_)) => Ok(()),
        }
    }
}

fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    for d in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/nvidia/lib64", "/usr/local/cuda/compat", "/usr/local/cuda/lib64"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// Resolves a choice against what this build and this machine offer. `auto` never fails
/// (CPU with a warning when there is no usable GPU); `cuda[:N]` fails with an error that
/// names what is missing.
pub fn resolve(choice: DeviceChoice, probe: &DriverProbe) -> anyhow::Result<Resolved> {
    let cuda_build = cfg!(feature = "cuda");
    match choice {
        DeviceChoice::Cpu => Ok(Resolved::Cpu),
        DeviceChoice::Cuda(n) => {
            if !cuda_build {
                anyhow::bail!("device cuda:{n}: this worker was built without CUDA support (rebuild with `--features cuda`), or use --device cpu");
            }
            probe.usable().map_err(|e| anyhow::anyhow!("device cuda:{n}: {e}; use --device cpu or auto to run on the CPU"))?;
            if probe.gpus > 0 && n >= probe.gpus {
                anyhow::bail!("device cuda:{n}: this machine has {} NVIDIA GPU(s), numbered from 0", probe.gpus);
            }
            Ok(Resolved::Cuda(n))
        }
        DeviceChoice::CudaAll => anyhow::bail!(
            "device cuda:all runs on every GPU and is for runs (worker run, serve) and `worker train ddpm|spade` (data parallel); this command takes one device: cuda:N"
        ),
        DeviceChoice::Auto => {
            if !cuda_build {
                tracing::warn!("device auto: this worker was built without CUDA; running the models on the CPU (slow for real model sizes)");
                return Ok(Resolved::Cpu);
            }
            match probe.usable() {
                Ok(()) => Ok(Resolved::Cuda(0)),
                Err(e) => {
                    tracing::warn!("device auto: {e}; running the models on the CPU");
                    Ok(Resolved::Cpu)
                }
            }
        }
    }
}

/// The devices a run's pipelines use: every GPU for `cuda:all` (an error naming what is
/// missing when there is none), else the one device [`resolve`] gives.
pub fn resolve_all(choice: DeviceChoice, probe: &DriverProbe) -> anyhow::Result<Vec<Resolved>> {
    if choice != DeviceChoice::CudaAll {
        return Ok(vec![resolve(choice, probe)?]);
    }
    if !cfg!(feature = "cuda") {
        anyhow::bail!("device cuda:all: this worker was built without CUDA support (rebuild with `--features cuda`), or use --device cpu");
    }
    probe.usable().map_err(|e| anyhow::anyhow!("device cuda:all: {e}"))?;
    if probe.gpus == 0 {
        anyhow::bail!("device cuda:all: the NVIDIA driver lists no GPU under /proc/driver/nvidia/gpus");
    }
    Ok((0..probe.gpus).map(Resolved::Cuda).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(kernel: bool, gpus: usize, lib: bool) -> (PathBuf, Vec<PathBuf>) {
        let root = std::env::temp_dir().join(format!("labelgen-probe-{}", rand::random::<u64>()));
        let proc_dir = root.join("proc");
        if kernel {
            std::fs::create_dir_all(proc_dir.join("gpus")).unwrap();
            std::fs::write(proc_dir.join("version"), "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54\nGCC\n").unwrap();
            for i in 0..gpus {
                std::fs::create_dir_all(proc_dir.join("gpus").join(format!("0000:0{i}:00.0"))).unwrap();
            }
        }
        let lib_dir = root.join("lib");
        std::fs::create_dir_all(&lib_dir).unwrap();
        if lib {
            std::fs::write(lib_dir.join("libcuda.so.1"), b"").unwrap();
        }
        (proc_dir, vec![lib_dir])
    }

    /// What [`DriverProbe`] finds on a fake machine.
    fn probe(kernel: bool, gpus: usize, lib: bool) -> DriverProbe {
        let (p, l) = fake(kernel, gpus, lib);
        DriverProbe::detect_in(&p, &l)
    }

    #[test]
    fn probe_reads_the_driver_files() {
        let two = probe(true, 2, true);
        assert_eq!(two.gpus, 2);
        assert!(two.kernel.as_deref().unwrap().contains("550.54"));
        assert!(two.libcuda.is_some());
        assert_eq!(probe(false, 0, false), DriverProbe { kernel: None, gpus: 0, libcuda: None });
    }

    #[test]
    fn cpu_is_always_cpu_and_auto_falls_back_without_a_driver() {
        let none = probe(false, 0, false);
        assert_eq!(resolve(DeviceChoice::Cpu, &none).unwrap(), Resolved::Cpu);
        assert_eq!(resolve(DeviceChoice::Auto, &none).unwrap(), Resolved::Cpu);
        let err = resolve(DeviceChoice::Cuda(0), &none).unwrap_err().to_string();
        if cfg!(feature = "cuda") {
            assert!(err.contains("no NVIDIA driver"), "{err}");
        } else {
            assert!(err.contains("without CUDA support"), "{err}");
        }
    }

    #[test]
    fn cuda_needs_the_library_and_a_valid_index() {
        let no_lib = probe(true, 1, false);
        let one = probe(true, 1, true);
        if cfg!(feature = "cuda") {
            assert!(resolve(DeviceChoice::Cuda(0), &no_lib).unwrap_err().to_string().contains("libcuda.so.1"));
            assert_eq!(resolve(DeviceChoice::Auto, &no_lib).unwrap(), Resolved::Cpu);
            assert_eq!(resolve(DeviceChoice::Cuda(0), &one).unwrap(), Resolved::Cuda(0));
            assert_eq!(resolve(DeviceChoice::Auto, &one).unwrap(), Resolved::Cuda(0));
            assert!(resolve(DeviceChoice::Cuda(1), &one).unwrap_err().to_string().contains("1 NVIDIA GPU"));
        } else {
            assert_eq!(resolve(DeviceChoice::Auto, &one).unwrap(), Resolved::Cpu);
            assert!(resolve(DeviceChoice::Cuda(0), &one).is_err());
        }
    }

    #[test]
    fn cuda_all_is_every_gpu_for_runs_only() {
        let three = probe(true, 3, true);
        let none = probe(true, 0, true);
        assert!(resolve(DeviceChoice::CudaAll, &three).unwrap_err().to_string().contains("cuda:N"));
        assert_eq!(resolve_all(DeviceChoice::Cpu, &three).unwrap(), vec![Resolved::Cpu]);
        if cfg!(feature = "cuda") {
            assert_eq!(resolve_all(DeviceChoice::CudaAll, &three).unwrap(), vec![Resolved::Cuda(0), Resolved::Cuda(1), Resolved::Cuda(2)]);
            assert!(resolve_all(DeviceChoice::CudaAll, &none).unwrap_err().to_string().contains("lists no GPU"));
        } else {
            assert!(resolve_all(DeviceChoice::CudaAll, &three).unwrap_err().to_string().contains("without CUDA support"));
        }
    }
}
