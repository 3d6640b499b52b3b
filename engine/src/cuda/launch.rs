//! Kernel launches: argument lists and grid sizes.

use super::Gpu;
use crate::{Error, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// Threads per block for elementwise and grid-stride kernels.
pub const BLOCK: u32 = 256;

/// One kernel argument. Device buffers are passed as `Ptr` (a device address).
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
}

impl Gpu {
    /// Launches `kernel` of `family` (compiling the family on first use) on the device's stream.
    pub fn launch(
        &self,
        family: &'static str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[Arg],
    ) -> Result<()> {
        let func = self.function(family, kernel)?;
        let mut builder = self.stream().launch_builder(&func);
        for a in args {
            match a {
                Arg::Ptr(v) | Arg::U64(v) => builder.arg(v),
                Arg::I32(v) => builder.arg(v),
                Arg::I64(v) => builder.arg(v),
                Arg::F32(v) => builder.arg(v),
                Arg::F64(v) => builder.arg(v),
            };
        }
        // SAFETY: the argument list matches the kernel's signature (each family's cuda.rs is
        // written against its .cu file and tested against the CPU), and every pointer is a live
        // allocation of this device, held by the caller until the stream has used it.
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .map_err(|e| Error::cuda(format!("launching {family}::{kernel}"), e))
    }

    /// A grid for a grid-stride loop over `n` items with `BLOCK` threads: enough blocks to fill
    /// the device several times over, never more than the items need.
    pub fn grid_for(&self, n: usize) -> LaunchConfig {
        let blocks = n.div_ceil(BLOCK as usize).clamp(1, self.sm_count() * 16);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}
