//! CUDA launches for this family (kernels/random.cu): dropout and the seeded fills. Every element
//! comes from the prelude's `rcmcl_uniform(seed, index)`, the CPU hash bit for bit.

use super::Distribution;
use crate::cuda::{Arg, CudaStorage, Gpu};
use crate::{DType, Error, Result};
use std::sync::Arc;

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "dropout_f32",
    "dropout_f64",
    "rand_uniform_f32",
    "rand_uniform_f64",
    "rand_normal_f32",
    "rand_normal_f64",
];

/// `(x * mask, mask)`, the mask holding `1 / (1 - p)` where `rcmcl_uniform(seed, i) >= p` and 0
/// elsewhere: the CPU's mask exactly.
pub(crate) fn dropout(x: &CudaStorage, seed: u64, p: f64) -> Result<(CudaStorage, CudaStorage)> {
    // The multiplier rounded to the element type on the host, as the CPU rounds it.
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    let scale = match x.dtype() {
        DType::F32 => Arg::F32(scale as f32),
        DType::F64 => Arg::F64(scale),
        DType::I64 => {
            return Err(Error::DType {
                op: "dropout",
                got: DType::I64,
                msg: "expected a floating-point tensor".into(),
            })
        }
    };
    let gpu = x.gpu().clone();
    let n = x.len();
    let out = CudaStorage::alloc(&gpu, n, x.dtype())?;
    let mask = CudaStorage::alloc(&gpu, n, x.dtype())?;
    if n > 0 {
        gpu.launch(
            "random",
            &x.kernel("dropout"),
            gpu.grid_for(n),
            &[
                x.arg(),
                out.arg(),
                mask.arg(),
                Arg::I64(n as i64),
                Arg::U64(seed),
                Arg::F64(p),
                scale,
            ],
        )?;
    }
    Ok((out, mask))
}

/// `n` draws of `dist` under `seed`, made on the device (no host copy).
pub(crate) fn random_fill(
    gpu: &Arc<Gpu>,
    dist: Distribution,
    n: usize,
    seed: u64,
    dtype: DType,
) -> Result<CudaStorage> {
    if !dtype.is_float() {
        return Err(Error::DType {
            op: "random fill",
            got: dtype,
            msg: "random fills are floating-point".into(),
        });
    }
    let out = CudaStorage::alloc(gpu, n, dtype)?;
    if n > 0 {
        let (base, a, b) = match dist {
            Distribution::Uniform { low, high } => ("rand_uniform", low, high),
            Distribution::Normal { mean, std } => ("rand_normal", mean, std),
        };
        gpu.launch(
            "random",
            &out.kernel(base),
            gpu.grid_for(n),
            &[
                out.arg(),
                Arg::I64(n as i64),
                Arg::U64(seed),
                Arg::F64(a),
                Arg::F64(b),
            ],
        )?;
    }
    Ok(out)
}
