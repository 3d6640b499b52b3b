//! CUDA launches for graph aggregation (kernels/graph.cu; the algorithm and launch geometry are
//! described at the top of that file and in docs/kernels.md).
//!
//! - forward: `ga_forward_w{32,64}`: one block of 128 threads per 128 (c, t) rows of a sample,
//!   all K partitions summed in registers in one pass over x; the `w32` variant for V <= 32.
//! - input gradient: `ga_transpose_adj` (the masked, transposed adjacency, K*V*V elements), then
//!   `ga_grad_input_w{32,64}` (the forward's body with one output slab per partition).
//! - adjacency gradient: `ga_grad_adj` (per-block partial V x V sums over fixed row ranges, grid
//!   (P, K)) then `ga_grad_adj_final` (the P partials added in order, in f64). No atomics, and P
//!   depends only on the shape, so results are identical from run to run and device to device.

use super::{Dims, MAX_JOINTS, OP};
use crate::cuda::{Arg, CudaStorage};
use crate::{Error, Result};
use cudarc::driver::LaunchConfig;

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "ga_forward_w32_f32",
    "ga_forward_w64_f32",
    "ga_forward_w32_f64",
    "ga_forward_w64_f64",
    "ga_grad_input_w32_f32",
    "ga_grad_input_w64_f32",
    "ga_grad_input_w32_f64",
    "ga_grad_input_w64_f64",
    "ga_transpose_adj_f32",
    "ga_transpose_adj_f64",
    "ga_grad_adj_f32",
    "ga_grad_adj_f64",
    "ga_grad_adj_final_f32",
    "ga_grad_adj_final_f64",
];

const FAMILY: &str = "graph";

/// Rows per block (and threads per block) of the forward and input-gradient kernels
/// (`GA_ROWS` in graph.cu).
const ROWS: usize = 128;
/// Threads per block of `ga_grad_adj` (`GD_THREADS`).
const GRAD_ADJ_THREADS: u32 = 256;
/// The adjacency gradient gives each partial block about this many rows, with at most
/// `MAX_PARTIALS` blocks per partition.
const ROWS_PER_PARTIAL: usize = 2048;
const MAX_PARTIALS: usize = 512;

const _: () = assert!(MAX_JOINTS == 64, "graph.cu's tiles hold at most 64 joints");

fn i(x: usize) -> Arg {
    Arg::I64(x as i64)
}

/// A device address, or the null pointer the kernels read as "every joint is real".
fn opt(s: Option<&CudaStorage>) -> Arg {
    s.map_or(Arg::Ptr(0), CudaStorage::arg)
}

fn cfg(grid: (usize, usize), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.0 as u32, grid.1 as u32, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn check_grid(blocks: usize, limit: usize) -> Result<()> {
    if blocks > limit {
        return Err(Error::invalid(
            OP,
            format!("{blocks} blocks exceed the CUDA grid limit {limit}"),
        ));
    }
    Ok(())
}

fn check_inputs(p: &CudaStorage, q: &CudaStorage, mask: Option<&CudaStorage>) -> Result<()> {
    for s in [Some(p), Some(q), mask].into_iter().flatten() {
        if s.dtype() != p.dtype() || !p.dtype().is_float() {
            return Err(Error::DType {
                op: OP,
                got: s.dtype(),
                msg: format!("expected {} floating-point tensors", p.dtype()),
            });
        }
        if s.ordinal() != p.ordinal() {
            return Err(Error::invalid(OP, "inputs on different CUDA devices"));
        }
    }
    Ok(())
}

/// `ga_forward` (`bwd = false`: `input` is x, `adj` is A) or `ga_grad_input` (`bwd = true`:
/// `input` is dy, `adj` is the transposed masked adjacency) into a fresh output of `out_len`.
fn rows_kernel(
    bwd: bool,
    input: &CudaStorage,
    adj: &CudaStorage,
    mask: Option<&CudaStorage>,
    d: &Dims,
    out_len: usize,
) -> Result<CudaStorage> {
    let gpu = input.gpu().clone();
    let out = CudaStorage::alloc(&gpu, out_len, input.dtype())?;
    let ct = d.c * d.t;
    if out_len == 0 {
        return Ok(out);
    }
    let tiles = ct.div_ceil(ROWS);
    let blocks = d.n * tiles;
    check_grid(blocks, i32::MAX as usize)?;
    let width = if d.v <= 32 { "w32" } else { "w64" };
    let base = format!(
        "{}_{width}",
        if bwd { "ga_grad_input" } else { "ga_forward" }
    );
    gpu.launch(
        FAMILY,
        &input.kernel(&base),
        cfg((blocks, 1), ROWS as u32),
        &[
            input.arg(),
            adj.arg(),
            opt(mask),
            out.arg(),
            i(d.k),
            i(ct),
            i(d.v),
            i(tiles),
        ],
    )?;
    Ok(out)
}

/// `y` (N, C, T, V) from `x` (N, K*C, T, V) and `a` (K, V, V).
pub(crate) fn forward(
    x: &CudaStorage,
    a: &CudaStorage,
    mask: Option<&CudaStorage>,
    d: &Dims,
) -> Result<CudaStorage> {
    check_inputs(x, a, mask)?;
    rows_kernel(false, x, a, mask, d, d.n * d.c * d.t * d.v)
}

/// `dx` (N, K*C, T, V) from `dy` (N, C, T, V) and `a` (K, V, V).
pub(crate) fn grad_input(
    dy: &CudaStorage,
    a: &CudaStorage,
    mask: Option<&CudaStorage>,
    d: &Dims,
) -> Result<CudaStorage> {
    check_inputs(dy, a, mask)?;
    let gpu = dy.gpu().clone();
    let len = d.n * d.k * d.c * d.t * d.v;
    if len == 0 {
        return CudaStorage::alloc(&gpu, 0, dy.dtype());
    }
    let vv = d.k * d.v * d.v;
    let at = CudaStorage::alloc(&gpu, vv, dy.dtype())?;
    gpu.launch(
        FAMILY,
        &a.kernel("ga_transpose_adj"),
        gpu.grid_for(vv),
        &[a.arg(), opt(mask), at.arg(), i(d.k), i(d.v)],
    )?;
    rows_kernel(true, dy, &at, mask, d, len)
}

/// `da` (K, V, V) from `x` (N, K*C, T, V) and `dy` (N, C, T, V).
pub(crate) fn grad_adjacency(
    x: &CudaStorage,
    dy: &CudaStorage,
    mask: Option<&CudaStorage>,
    d: &Dims,
) -> Result<CudaStorage> {
    check_inputs(x, dy, mask)?;
    let gpu = x.gpu().clone();
    let (ct, vv) = (d.c * d.t, d.v * d.v);
    let da = CudaStorage::alloc(&gpu, d.k * vv, x.dtype())?;
    if d.k * vv == 0 {
        return Ok(da);
    }
    let m = d.n * ct;
    let parts = m.div_ceil(ROWS_PER_PARTIAL).clamp(1, MAX_PARTIALS);
    let rows_per_part = m.div_ceil(parts).max(1);
    check_grid(d.k, 65535)?;
    let partial = CudaStorage::alloc(&gpu, d.k * parts * vv, x.dtype())?;
    gpu.launch(
        FAMILY,
        &x.kernel("ga_grad_adj"),
        cfg((parts, d.k), GRAD_ADJ_THREADS),
        &[
            x.arg(),
            dy.arg(),
            partial.arg(),
            i(d.k),
            i(ct),
            i(d.v),
            i(m),
            i(rows_per_part),
        ],
    )?;
    gpu.launch(
        FAMILY,
        &x.kernel("ga_grad_adj_final"),
        gpu.grid_for(d.k * vv),
        &[partial.arg(), opt(mask), da.arg(), i(d.k), i(parts), i(d.v)],
    )?;
    Ok(da)
}
