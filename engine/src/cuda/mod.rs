//! The CUDA backend (feature `cuda`): one context and one stream per device, a caching allocator,
//! NVRTC-compiled kernels with an on-disk CUBIN cache, and cuBLAS for dense products.
//!
//! Nothing links against CUDA at build time: cudarc loads the driver, NVRTC and cuBLAS libraries
//! when a device is first opened, after checking they exist, so a machine without CUDA gets a
//! clear `CudaUnavailable` error instead of a panic.

mod alloc;
mod checks;
pub mod compile;
mod gpu;
mod launch;
mod storage;

pub use alloc::MemoryStats;
pub(crate) use checks::{check_buffer, check_float};
pub use gpu::{gpu, Gpu};
pub use launch::{Arg, BLOCK};
pub use storage::{poison_outputs, set_poison_outputs, CudaStorage};

/// The cudarc version the engine is built on, for code (benchmarks) that needs the driver
/// directly, e.g. CUDA events on a device's stream (`engine::cuda::gpu(0)?.stream()`).
pub use cudarc;

use std::sync::atomic::{AtomicBool, Ordering};

static ALLOW_TF32: AtomicBool = AtomicBool::new(false);

/// Lets f32 matrix products use TF32 tensor cores (`CUBLAS_TF32_TENSOR_OP_MATH`): several times
/// faster on Ampere and Hopper, but the inputs are rounded to a 10-bit mantissa, so results agree
/// with the CPU only to about 1e-3 relative instead of f32 rounding. Off by default (true fp32,
/// `CUBLAS_DEFAULT_MATH`); process-wide, read at each product; f64 products are unaffected.
pub fn set_allow_tf32(allow: bool) {
    ALLOW_TF32.store(allow, Ordering::Relaxed);
}

/// Whether f32 matrix products may use TF32 (see `set_allow_tf32`).
pub fn allow_tf32() -> bool {
    ALLOW_TF32.load(Ordering::Relaxed)
}

use crate::{Device, Error, Result};

fn gpu_of(device: Device) -> Result<std::sync::Arc<Gpu>> {
    match device {
        Device::Cuda(i) => gpu(i),
        Device::Cpu => Err(Error::invalid(
            "cuda",
            "this is a CUDA memory query; the CPU has its own (engine::buffer_cache)",
        )),
    }
}

/// The caching allocator's statistics for a CUDA device.
pub fn memory_stats(device: Device) -> Result<MemoryStats> {
    Ok(gpu_of(device)?.memory_stats())
}

/// Returns every cached (unused) block of a CUDA device to the driver.
pub fn empty_cache(device: Device) -> Result<()> {
    gpu_of(device)?.empty_cache()
}

/// Resets the peak-bytes statistic of a CUDA device to the bytes in use now.
pub fn reset_peak_memory(device: Device) -> Result<()> {
    gpu_of(device)?.reset_peak();
    Ok(())
}

/// Waits until every queued kernel and copy on the device's stream has finished.
pub fn synchronize(device: Device) -> Result<()> {
    gpu_of(device)?.synchronize()
}

/// Every (family, kernel) the engine can launch, collected from each op family's `KERNELS` list;
/// the kernel compile check verifies each is in its family's CUBIN.
pub fn launched_kernels() -> Vec<(&'static str, String)> {
    use crate::ops;
    let lists: &[(&'static str, &[&str])] = &[
        ("convert", storage::KERNELS),
        ("elementwise", ops::elementwise::cuda::KERNELS),
        ("reduce", ops::reduce::cuda::KERNELS),
        ("random", ops::dropout::cuda::KERNELS),
        ("layout", ops::layout::cuda::KERNELS),
        ("index", ops::index::cuda::KERNELS),
        ("softmax", ops::softmax::cuda::KERNELS),
        ("norm", ops::norm::cuda::KERNELS),
        // The products go through cuBLAS; matmul.cu holds the helpers around them (linear's bias).
        ("matmul", ops::matmul::cuda::KERNELS),
        ("optim", crate::optim::cuda::KERNELS),
        ("pointnet", ops::pointnet::cuda::KERNELS),
        ("graph", ops::graph::cuda::KERNELS),
        ("conv3d", ops::conv::cuda::KERNELS),
        ("infonce", ops::contrastive::cuda::INFONCE_KERNELS),
        ("barlow", ops::contrastive::cuda::BARLOW_KERNELS),
    ];
    let mut all = Vec::new();
    for &(family, names) in lists {
        all.extend(names.iter().map(|n| (family, n.to_string())));
    }
    all
}
