//! CUDA launches for this family (kernels/index.cu).
//!
//! The selects and gathers only move elements (one kernel per element width); the adds use
//! floating-point `atomicAdd` into a copy of the base (or zeros), so repeated indices accumulate
//! in an order that may differ between runs (the last bits of an f32 sum may too).
//!
//! Out-of-range indices: the kernels read the index tensor on the device, and checking its
//! values there would need a host sync on every op, so by default they are not an error on
//! CUDA: a select or gather reads 0 at such a position and an add skips it. With
//! `RCMCL_CUDA_CHECK_INDICES=1` in the environment (or [`set_check_indices`]), every index op
//! first copies the indices to the host and returns the CPU's `Error::Index` for a bad value.

use super::cpu::AxisView;
use crate::cuda::{Arg, CudaStorage};
use crate::ops::layout::cuda::{wide, width_kernel, Simplified};
use crate::shape::contiguous_strides;
use crate::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "index_select_b4",
    "index_select_b8",
    "index_add_f32",
    "index_add_f64",
    "gather_b4",
    "gather_b8",
    "scatter_add_f32",
    "scatter_add_f64",
];

/// 0 = not read yet, 1 = off, 2 = on.
static CHECK: AtomicU8 = AtomicU8::new(0);

/// Whether CUDA index ops check their index values on the host first (one device-to-host copy
/// and sync per op), returning the CPU's error for an out-of-range value. Off by default;
/// `RCMCL_CUDA_CHECK_INDICES=1` turns it on for a whole run.
pub fn check_indices() -> bool {
    match CHECK.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("RCMCL_CUDA_CHECK_INDICES").is_ok_and(|v| v == "1");
            CHECK.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        v => v == 2,
    }
}

/// Turns the host-side index check of [`check_indices`] on or off for the process.
pub fn set_check_indices(on: bool) {
    CHECK.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// The kernel `base_f32` / `base_f64` for a float storage, or the CPU path's dtype error.
fn float_kernel(
    op: &'static str,
    base: &str,
    out: &CudaStorage,
    src: &CudaStorage,
) -> Result<String> {
    if out.dtype() != src.dtype() || !out.dtype().is_float() {
        return Err(Error::DTypeMismatch {
            op,
            a: out.dtype(),
            b: src.dtype(),
        });
    }
    Ok(out.kernel(base))
}

/// `out[o, j, :] = src[o, idx[j], :]` for `src` viewed as `v`; `idx` points at `n` i64 values.
pub(crate) fn index_select(
    src: &CudaStorage,
    v: AxisView,
    idx: Arg,
    n: usize,
) -> Result<CudaStorage> {
    let gpu = src.gpu().clone();
    let total = v.outer * n * v.inner;
    let out = CudaStorage::alloc(&gpu, total, src.dtype())?;
    if total == 0 {
        return Ok(out);
    }
    gpu.launch(
        "index",
        &width_kernel("index_select", src.dtype()),
        gpu.grid_for(total),
        &[
            src.arg(),
            idx,
            out.arg(),
            Arg::I64(total as i64),
            Arg::I64(n as i64),
            Arg::I64(v.size as i64),
            Arg::I64(v.inner as i64),
            wide(&[total, src.len()]),
        ],
    )?;
    Ok(out)
}

/// `out[o, idx[j], :] += src[o, j, :]` for `out` viewed as `v`, in place (atomics).
pub(crate) fn index_add_into(
    out: &CudaStorage,
    v: AxisView,
    idx: Arg,
    n: usize,
    src: &CudaStorage,
) -> Result<()> {
    let kernel = float_kernel("index_add", "index_add", out, src)?;
    let gpu = out.gpu().clone();
    let total = v.outer * n * v.inner;
    if total == 0 {
        return Ok(());
    }
    gpu.launch(
        "index",
        &kernel,
        gpu.grid_for(total),
        &[
            src.arg(),
            idx,
            out.arg(),
            Arg::I64(total as i64),
            Arg::I64(n as i64),
            Arg::I64(v.size as i64),
            Arg::I64(v.inner as i64),
            wide(&[total, out.len()]),
        ],
    )
}

/// PyTorch `gather`: `out[m] = src[m with m[axis] = idx[m]]` for every index position `m`;
/// the index tensor (`idx`, of shape `idx_dims`) has the output's shape.
pub(crate) fn gather(
    src: &CudaStorage,
    src_dims: &[usize],
    axis: usize,
    idx: Arg,
    idx_dims: &[usize],
) -> Result<CudaStorage> {
    let gpu = src.gpu().clone();
    let n: usize = idx_dims.iter().product();
    let out = CudaStorage::alloc(&gpu, n, src.dtype())?;
    if n == 0 {
        return Ok(out);
    }
    let mut strides = contiguous_strides(src_dims);
    let axis_stride = strides[axis];
    strides[axis] = 0;
    let layout = Simplified::new(idx_dims, [&strides]);
    let mut args = vec![
        src.arg(),
        idx,
        out.arg(),
        Arg::I64(n as i64),
        Arg::I64(src_dims[axis] as i64),
        Arg::I64(axis_stride as i64),
        wide(&[n, src.len()]),
    ];
    args.extend(layout.args("gather")?);
    gpu.launch(
        "index",
        &width_kernel("gather", src.dtype()),
        gpu.grid_for(n),
        &args,
    )?;
    Ok(out)
}

/// PyTorch `scatter_add_`, in place: `out[m with m[axis] = idx[m]] += src[m]` for every
/// position `m` of the index tensor (shape `idx_dims`); `out` has shape `dims`, `src` shape
/// `src_dims` (both no smaller than the index where the caller checked).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scatter_add_into(
    out: &CudaStorage,
    dims: &[usize],
    axis: usize,
    idx: Arg,
    idx_dims: &[usize],
    src: &CudaStorage,
    src_dims: &[usize],
) -> Result<()> {
    let kernel = float_kernel("scatter_add", "scatter_add", out, src)?;
    let gpu = out.gpu().clone();
    let n: usize = idx_dims.iter().product();
    if n == 0 || out.is_empty() {
        return Ok(());
    }
    let src_strides = contiguous_strides(src_dims);
    let mut out_strides = contiguous_strides(dims);
    let axis_stride = out_strides[axis];
    out_strides[axis] = 0;
    let layout = Simplified::new(idx_dims, [&src_strides, &out_strides]);
    let mut args = vec![
        src.arg(),
        idx,
        out.arg(),
        Arg::I64(n as i64),
        Arg::I64(dims[axis] as i64),
        Arg::I64(axis_stride as i64),
        wide(&[n, src.len(), out.len()]),
    ];
    args.extend(layout.args("scatter_add")?);
    gpu.launch("index", &kernel, gpu.grid_for(n), &args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::layout::cuda::push8;

    #[test]
    fn gather_layouts_keep_the_indexed_axis_apart() {
        // gather on axis 1 of [4, 6, 5] with an index of [4, 3, 5]: the axis has stride 0, the
        // other two keep the source's strides and cannot merge across it.
        let mut strides = contiguous_strides(&[4, 6, 5]);
        strides[1] = 0;
        let s = Simplified::new(&[4, 3, 5], [&strides]);
        assert_eq!(s.dims, vec![4, 3, 5]);
        assert_eq!(s.strides[0], vec![30, 0, 1]);
        // An index as wide as the source on the trailing dims merges them.
        let mut strides = contiguous_strides(&[4, 6, 5, 7]);
        strides[0] = 0;
        let s = Simplified::new(&[2, 6, 5, 7], [&strides]);
        assert_eq!(
            (s.dims.clone(), s.strides[0].clone()),
            (vec![2, 210], vec![0, 1])
        );
        let mut v = Vec::new();
        push8(&mut v, &s.dims, 1);
        assert_eq!(v.len(), 8);
    }
}
