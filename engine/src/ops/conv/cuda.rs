//! CUDA launches for 3D convolution and pooling (kernels/conv3d.cu).
//!
//! Convolution is implicit GEMM with 64 x 64 output tiles per block of 256 threads and K-steps
//! of 16 in shared memory (see the .cu file): forward over (batch * Do * Ho * Wo) x C_out, input
//! gradient over (batch * D * H * W) x C_in, weight gradient over C_out x (C_in * kt * kh * kw),
//! split along the batch * Do * Ho * Wo reduction into partial buffers that one more kernel adds
//! in split order (deterministic). Pooling is one thread per output or input element.

use super::cpu::{ConvGeom, PoolGeom};
use crate::cuda::{check_buffer as check, check_float};
use crate::cuda::{Arg, CudaStorage, Gpu};
use crate::{DType, Error, Result};
use cudarc::driver::LaunchConfig;

/// Every kernel of kernels/conv3d.cu that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "conv3d_fwd_f32",
    "conv3d_fwd_f64",
    "conv3d_dgrad_f32",
    "conv3d_dgrad_f64",
    "conv3d_wgrad_f32",
    "conv3d_wgrad_f64",
    "conv3d_sum_splits_f32",
    "conv3d_sum_splits_f64",
    "max_pool3d_fwd_f32",
    "max_pool3d_fwd_f64",
    "max_pool3d_bwd_f32",
    "max_pool3d_bwd_f64",
    "avg_pool3d_fwd_f32",
    "avg_pool3d_fwd_f64",
    "avg_pool3d_bwd_f32",
    "avg_pool3d_bwd_f64",
];

const FAMILY: &str = "conv3d";
/// The output tile of one block (rows x columns) and the K-step, as in the .cu file.
const TILE: usize = 64;
const BK: usize = 16;
const THREADS: u32 = 256;

/// Every size of the convolution must fit the kernels' `int` arithmetic.
fn check_int(op: &'static str, sizes: &[usize]) -> Result<()> {
    if let Some(&s) = sizes.iter().find(|&&s| s > i32::MAX as usize) {
        return Err(Error::invalid(
            op,
            format!("size {s} is too large for the CUDA kernels (at most 2^31 - 1)"),
        ));
    }
    Ok(())
}

fn geo_args(g: &ConvGeom) -> Vec<Arg> {
    [
        g.n,
        g.ci,
        g.co,
        g.i[0],
        g.i[1],
        g.i[2],
        g.k[0],
        g.k[1],
        g.k[2],
        g.stride[0],
        g.stride[1],
        g.stride[2],
        g.pad[0],
        g.pad[1],
        g.pad[2],
        g.o[0],
        g.o[1],
        g.o[2],
    ]
    .iter()
    .map(|&v| Arg::I32(v as i32))
    .collect()
}

fn check_geom(op: &'static str, g: &ConvGeom) -> Result<()> {
    check_int(
        op,
        &[
            g.n * g.p(),
            g.n * g.in_per_sample(),
            g.n * g.co * g.p(),
            g.co * g.kdim(),
            g.co * g.kvol(),
        ],
    )
}

fn tiles(rows: usize, cols: usize) -> (u32, u32) {
    (rows.div_ceil(TILE) as u32, cols.div_ceil(TILE) as u32)
}

/// The forward `y = conv3d(x, w) + bias`.
pub(crate) fn conv3d(
    x: &CudaStorage,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
    g: &ConvGeom,
) -> Result<CudaStorage> {
    const OP: &str = "conv3d";
    check_float(OP, x)?;
    check(OP, "the input", x, x.dtype(), g.n * g.in_per_sample())?;
    check(OP, "the weight", w, x.dtype(), g.co * g.kdim())?;
    if let Some(b) = bias {
        check(OP, "the bias", b, x.dtype(), g.co)?;
    }
    check_geom(OP, g)?;
    let gpu = x.gpu().clone();
    let y = CudaStorage::alloc(&gpu, g.n * g.co * g.p(), x.dtype())?;
    if y.is_empty() {
        return Ok(y);
    }
    if g.kdim() == 0 {
        // No taps: the output is the bias (or zero).
        return fill_bias(&gpu, y, bias, g);
    }
    let (gx, gy) = tiles(g.n * g.p(), g.co);
    let mut args = vec![
        x.arg(),
        w.arg(),
        bias.map_or(Arg::Ptr(0), |b| b.arg()),
        Arg::I32(bias.is_some() as i32),
        y.arg(),
    ];
    args.extend(geo_args(g));
    gpu.launch(FAMILY, &x.kernel("conv3d_fwd"), grid(gx, gy, 1), &args)?;
    Ok(y)
}

/// C_in = 0 (an empty reduction): the bias broadcast, through the CPU (a tiny, rare case).
fn fill_bias(
    gpu: &std::sync::Arc<Gpu>,
    y: CudaStorage,
    bias: Option<&CudaStorage>,
    g: &ConvGeom,
) -> Result<CudaStorage> {
    let b = match bias {
        Some(b) => b.to_cpu()?.to_f64_vec(),
        None => vec![0.0; g.co],
    };
    let p = g.p();
    let vals: Vec<f64> = (0..g.n * g.co * p).map(|i| b[(i / p) % g.co]).collect();
    let host = crate::storage::CpuStorage::from_f64_vec(vals, y.dtype());
    CudaStorage::from_cpu(gpu, &host)
}

fn grid(x: u32, y: u32, z: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (x.max(1), y.max(1), z.max(1)),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The input gradient from the output gradient `gy` and the weight.
pub(crate) fn conv3d_input_grad(
    gy: &CudaStorage,
    w: &CudaStorage,
    g: &ConvGeom,
) -> Result<CudaStorage> {
    const OP: &str = "conv3d";
    check_float(OP, w)?;
    check(OP, "the output gradient", gy, w.dtype(), g.n * g.co * g.p())?;
    check(OP, "the weight", w, w.dtype(), g.co * g.kdim())?;
    check_geom(OP, g)?;
    let gpu = w.gpu().clone();
    let len = g.n * g.in_per_sample();
    if len == 0 || g.co * g.kvol() == 0 {
        return CudaStorage::zeros(&gpu, len, w.dtype());
    }
    let dx = CudaStorage::alloc(&gpu, len, w.dtype())?;
    let (gx, gyt) = tiles(len / g.ci, g.ci);
    let mut args = vec![gy.arg(), w.arg(), dx.arg()];
    args.extend(geo_args(g));
    gpu.launch(FAMILY, &w.kernel("conv3d_dgrad"), grid(gx, gyt, 1), &args)?;
    Ok(dx)
}

/// The weight gradient from the input `x` and the output gradient `gy`: split-K partials, then
/// their sum in split order.
pub(crate) fn conv3d_weight_grad(
    x: &CudaStorage,
    gy: &CudaStorage,
    g: &ConvGeom,
) -> Result<CudaStorage> {
    const OP: &str = "conv3d";
    check_float(OP, x)?;
    check(OP, "the input", x, x.dtype(), g.n * g.in_per_sample())?;
    check(OP, "the output gradient", gy, x.dtype(), g.n * g.co * g.p())?;
    check_geom(OP, g)?;
    let gpu = x.gpu().clone();
    let len = g.co * g.kdim();
    let l = g.n * g.p();
    if len == 0 || l == 0 {
        return CudaStorage::zeros(&gpu, len, x.dtype());
    }
    let (gx, gyt) = tiles(g.kdim(), g.co);
    let blocks = (gx * gyt) as usize;
    // Enough splits to give every SM about two blocks, each split at least 8 K-steps long.
    let want = (2 * gpu.sm_count()).div_ceil(blocks);
    let max_splits = l.div_ceil(8 * BK).max(1);
    let splits = want.clamp(1, max_splits.min(64));
    let chunk = l.div_ceil(splits).div_ceil(BK) * BK;
    let splits = l.div_ceil(chunk);
    check_int(OP, &[splits * len, chunk])?;
    let dw = CudaStorage::alloc(&gpu, len, x.dtype())?;
    let part = if splits == 1 {
        None
    } else {
        Some(CudaStorage::alloc(&gpu, splits * len, x.dtype())?)
    };
    let target = part.as_ref().unwrap_or(&dw);
    let mut args = vec![x.arg(), gy.arg(), target.arg(), Arg::I32(chunk as i32)];
    args.extend(geo_args(g));
    gpu.launch(
        FAMILY,
        &x.kernel("conv3d_wgrad"),
        grid(gx, gyt, splits as u32),
        &args,
    )?;
    if let Some(part) = &part {
        gpu.launch(
            FAMILY,
            &x.kernel("conv3d_sum_splits"),
            gpu.grid_for(len),
            &[
                part.arg(),
                dw.arg(),
                Arg::I64(len as i64),
                Arg::I32(splits as i32),
            ],
        )?;
    }
    Ok(dw)
}

fn pool_args(g: &PoolGeom) -> Vec<Arg> {
    let mut args = vec![Arg::I64(g.planes as i64)];
    args.extend(
        [
            g.i[0],
            g.i[1],
            g.i[2],
            g.k[0],
            g.k[1],
            g.k[2],
            g.stride[0],
            g.stride[1],
            g.stride[2],
            g.pad[0],
            g.pad[1],
            g.pad[2],
            g.o[0],
            g.o[1],
            g.o[2],
        ]
        .iter()
        .map(|&v| Arg::I32(v as i32)),
    );
    args
}

fn check_pool(op: &'static str, g: &PoolGeom) -> Result<()> {
    check_int(op, &[g.in_plane(), g.out_plane(), g.kvol()])
}

/// Max pooling: the maxima and their flat indices within each input plane (i64).
pub(crate) fn max_pool3d(x: &CudaStorage, g: &PoolGeom) -> Result<(CudaStorage, CudaStorage)> {
    const OP: &str = "max_pool3d";
    check_float(OP, x)?;
    check(OP, "the input", x, x.dtype(), g.planes * g.in_plane())?;
    check_pool(OP, g)?;
    let gpu = x.gpu().clone();
    let len = g.planes * g.out_plane();
    let y = CudaStorage::alloc(&gpu, len, x.dtype())?;
    let arg = CudaStorage::alloc(&gpu, len, DType::I64)?;
    if len == 0 {
        return Ok((y, arg));
    }
    let mut args = vec![x.arg(), y.arg(), arg.arg()];
    args.extend(pool_args(g));
    gpu.launch(
        FAMILY,
        &x.kernel("max_pool3d_fwd"),
        gpu.grid_for(len),
        &args,
    )?;
    Ok((y, arg))
}

/// Max pooling backward: every input element sums the gradients of the windows that chose it.
pub(crate) fn max_pool3d_grad(
    gy: &CudaStorage,
    arg: &CudaStorage,
    g: &PoolGeom,
) -> Result<CudaStorage> {
    const OP: &str = "max_pool3d";
    check_float(OP, gy)?;
    let out_len = g.planes * g.out_plane();
    check(OP, "the output gradient", gy, gy.dtype(), out_len)?;
    check(OP, "the saved indices", arg, DType::I64, out_len)?;
    check_pool(OP, g)?;
    let gpu = gy.gpu().clone();
    let len = g.planes * g.in_plane();
    let dx = CudaStorage::alloc(&gpu, len, gy.dtype())?;
    if len == 0 {
        return Ok(dx);
    }
    let mut args = vec![gy.arg(), arg.arg(), dx.arg()];
    args.extend(pool_args(g));
    gpu.launch(
        FAMILY,
        &gy.kernel("max_pool3d_bwd"),
        gpu.grid_for(len),
        &args,
    )?;
    Ok(dx)
}

/// Average pooling (padding counted as zeros, divisor kt * kh * kw).
pub(crate) fn avg_pool3d(x: &CudaStorage, g: &PoolGeom) -> Result<CudaStorage> {
    const OP: &str = "avg_pool3d";
    check_float(OP, x)?;
    check(OP, "the input", x, x.dtype(), g.planes * g.in_plane())?;
    check_pool(OP, g)?;
    let gpu = x.gpu().clone();
    let len = g.planes * g.out_plane();
    let y = CudaStorage::alloc(&gpu, len, x.dtype())?;
    if len == 0 {
        return Ok(y);
    }
    let mut args = vec![x.arg(), y.arg()];
    args.extend(pool_args(g));
    gpu.launch(
        FAMILY,
        &x.kernel("avg_pool3d_fwd"),
        gpu.grid_for(len),
        &args,
    )?;
    Ok(y)
}

/// Average pooling backward: every input element gathers `g / kvol` from the windows covering it.
pub(crate) fn avg_pool3d_grad(gy: &CudaStorage, g: &PoolGeom) -> Result<CudaStorage> {
    const OP: &str = "avg_pool3d";
    check_float(OP, gy)?;
    check(
        OP,
        "the output gradient",
        gy,
        gy.dtype(),
        g.planes * g.out_plane(),
    )?;
    check_pool(OP, g)?;
    let gpu = gy.gpu().clone();
    let len = g.planes * g.in_plane();
    let dx = CudaStorage::alloc(&gpu, len, gy.dtype())?;
    if len == 0 {
        return Ok(dx);
    }
    let mut args = vec![gy.arg(), dx.arg()];
    args.extend(pool_args(g));
    gpu.launch(
        FAMILY,
        &gy.kernel("avg_pool3d_bwd"),
        gpu.grid_for(len),
        &args,
    )?;
    Ok(dx)
}
