//! Where a tensor lives. The `Cuda` variant always exists so user code compiles with or without
//! the `cuda` feature; using it without a usable GPU is a clear `CudaUnavailable` error.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl Device {
    /// The best device available: CUDA device 0 when it is usable, else the CPU.
    pub fn best() -> Device {
        match Device::cuda(0) {
            Ok(d) => d,
            Err(_) => Device::Cpu,
        }
    }

    /// CUDA device `ordinal`, or an error saying what is missing.
    /// Never panics: a machine without a driver, a device or NVRTC gets an error naming it.
    pub fn cuda(ordinal: usize) -> crate::Result<Device> {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::gpu(ordinal).map(|_| Device::Cuda(ordinal))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(crate::Error::CudaUnavailable(
                "this build has no CUDA backend (build with `--features cuda`)".into(),
            ))
        }
    }

    /// Every usable CUDA device, in ordinal order (empty without the `cuda` feature or a GPU).
    pub fn cuda_devices() -> Vec<Device> {
        (0..).map_while(|i| Device::cuda(i).ok()).collect()
    }

    /// Why CUDA device 0 cannot be used, or `None` when it can.
    pub fn cuda_unavailable_reason() -> Option<String> {
        Device::cuda(0).err().map(|e| e.to_string())
    }

    pub fn is_cpu(self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}
