//! CUDA launches for this family (kernels/pointnet.cu).
//!
//! - FPS: one block per cloud, `min(512, N rounded up to 32)` threads; each thread keeps the
//!   running distances of `K = ceil(N / threads)` points (K rounded up to a power of two) in
//!   registers (`fps_*_pK`, K <= 32, so N <= 16384), or for larger N in a scratch buffer of
//!   B * N values (`fps_*_global`). Per step: a warp-shuffle then shared-memory argmax.
//! - Ball query: one thread per centre, scanning the cloud in index order.
//! - Grouping: one thread per output element; the backward adds with `atomicAdd` into zeros.
//! - Max-pool: one thread per row; its backward one thread per input element (no atomics).

use super::cpu::Group;
use crate::cuda::check_float;
use crate::cuda::{Arg, CudaStorage};
use crate::{DType, Error, Result};
use cudarc::driver::LaunchConfig;

/// Every kernel of kernels/pointnet.cu that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "fps_f32_p1",
    "fps_f32_p2",
    "fps_f32_p4",
    "fps_f32_p8",
    "fps_f32_p16",
    "fps_f32_p32",
    "fps_f32_global",
    "fps_f64_p1",
    "fps_f64_p2",
    "fps_f64_p4",
    "fps_f64_p8",
    "fps_f64_p16",
    "fps_f64_p32",
    "fps_f64_global",
    "ball_query_f32",
    "ball_query_f64",
    "group_f32",
    "group_f64",
    "group_grad_f32",
    "group_grad_f64",
    "max_pool_f32",
    "max_pool_f64",
    "max_pool_grad_f32",
    "max_pool_grad_f64",
];

/// Threads per FPS block (`FPS_THREADS` in pointnet.cu).
const FPS_THREADS: usize = 512;
/// The most points per thread kept in registers.
const FPS_MAX_PER: usize = 32;

fn i(x: usize) -> Arg {
    Arg::I64(x as i64)
}

fn i32a(x: usize) -> Arg {
    Arg::I32(x as i32)
}

fn check_pair(op: &'static str, a: &CudaStorage, b: &CudaStorage) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            a: a.dtype(),
            b: b.dtype(),
        });
    }
    check_float(op, a)
}

/// The FPS geometry for clouds of `n` points: (threads, points per thread; 0 = global).
pub(crate) fn fps_geometry(n: usize) -> (usize, usize) {
    let threads = n.div_ceil(32).clamp(1, FPS_THREADS / 32) * 32;
    let per = n.div_ceil(threads).next_power_of_two();
    (threads, if per <= FPS_MAX_PER { per } else { 0 })
}

/// Farthest point sampling of `m` of `n` points in each of `b` clouds; (B, M) i64.
pub(crate) fn fps(
    pts: &CudaStorage,
    b: usize,
    n: usize,
    m: usize,
    seed: Option<u64>,
) -> Result<CudaStorage> {
    check_float("farthest_point_sample", pts)?;
    let gpu = pts.gpu().clone();
    let out = CudaStorage::alloc(&gpu, b * m, DType::I64)?;
    if b * m == 0 {
        return Ok(out);
    }
    let (threads, per) = fps_geometry(n);
    let cfg = LaunchConfig {
        grid_dim: (b as u32, 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let tail = [
        i32a(n),
        i32a(m),
        Arg::I32(seed.is_some() as i32),
        Arg::U64(seed.unwrap_or(0)),
    ];
    if b > u32::MAX as usize / 2 {
        return Err(Error::invalid(
            "farthest_point_sample",
            format!("{b} clouds exceed the CUDA grid"),
        ));
    }
    if per > 0 {
        let mut args = vec![pts.arg(), out.arg()];
        args.extend(tail);
        gpu.launch(
            "pointnet",
            &format!("{}_p{per}", pts.kernel("fps")),
            cfg,
            &args,
        )?;
    } else {
        let scratch = CudaStorage::alloc(&gpu, b * n, pts.dtype())?;
        let mut args = vec![pts.arg(), out.arg(), scratch.arg()];
        args.extend(tail);
        gpu.launch(
            "pointnet",
            &format!("{}_global", pts.kernel("fps")),
            cfg,
            &args,
        )?;
    }
    Ok(out)
}

/// Ball query: (B, M, ns) i64.
pub(crate) fn ball_query(
    pts: &CudaStorage,
    ctr: &CudaStorage,
    b: usize,
    n: usize,
    m: usize,
    radius: f64,
    ns: usize,
) -> Result<CudaStorage> {
    check_pair("ball_query", pts, ctr)?;
    let gpu = pts.gpu().clone();
    let total = b * m;
    let out = CudaStorage::alloc(&gpu, total * ns, DType::I64)?;
    if total == 0 {
        return Ok(out);
    }
    let r2 = match pts.dtype() {
        DType::F32 => {
            let r = radius as f32;
            Arg::F32(r * r)
        }
        _ => Arg::F64(radius * radius),
    };
    gpu.launch(
        "pointnet",
        &pts.kernel("ball_query"),
        gpu.grid_for(total),
        &[
            pts.arg(),
            ctr.arg(),
            out.arg(),
            i(total),
            i32a(n),
            i32a(m),
            r2,
            i32a(ns),
        ],
    )?;
    Ok(out)
}

/// Grouping: features (B, C, N) by indices (B, M, S) -> (B, C, M, S).
pub(crate) fn group(feat: &CudaStorage, idx: &CudaStorage, g: Group) -> Result<CudaStorage> {
    check_float("group_points", feat)?;
    let gpu = feat.gpu().clone();
    let total = g.b * g.c * g.m * g.s;
    let out = CudaStorage::alloc(&gpu, total, feat.dtype())?;
    if total == 0 {
        return Ok(out);
    }
    gpu.launch(
        "pointnet",
        &feat.kernel("group"),
        gpu.grid_for(total),
        &[
            feat.arg(),
            idx.arg(),
            out.arg(),
            i(total),
            i(g.c),
            i(g.n),
            i(g.m * g.s),
        ],
    )?;
    Ok(out)
}

/// The grouping's backward: grad (B, C, M, S) scatter-added into zeros of (B, C, N) (atomics).
pub(crate) fn group_grad(gout: &CudaStorage, idx: &CudaStorage, g: Group) -> Result<CudaStorage> {
    check_float("group_points_grad", gout)?;
    let gpu = gout.gpu().clone();
    let grad = CudaStorage::zeros(&gpu, g.b * g.c * g.n, gout.dtype())?;
    let total = g.b * g.c * g.m * g.s;
    if total == 0 || grad.is_empty() {
        return Ok(grad);
    }
    gpu.launch(
        "pointnet",
        &gout.kernel("group_grad"),
        gpu.grid_for(total),
        &[
            gout.arg(),
            idx.arg(),
            grad.arg(),
            i(total),
            i(g.c),
            i(g.n),
            i(g.m * g.s),
        ],
    )?;
    Ok(grad)
}

/// Max over the last axis of (rows, s): (values, i64 argmax).
pub(crate) fn max_pool(
    x: &CudaStorage,
    rows: usize,
    s: usize,
) -> Result<(CudaStorage, CudaStorage)> {
    check_float("neighbour_max_pool", x)?;
    let gpu = x.gpu().clone();
    let out = CudaStorage::alloc(&gpu, rows, x.dtype())?;
    let arg = CudaStorage::alloc(&gpu, rows, DType::I64)?;
    if rows == 0 {
        return Ok((out, arg));
    }
    gpu.launch(
        "pointnet",
        &x.kernel("max_pool"),
        gpu.grid_for(rows),
        &[x.arg(), out.arg(), arg.arg(), i(rows), i32a(s)],
    )?;
    Ok((out, arg))
}

/// The max-pool backward: (rows, s) with `g[r]` at `arg[r]`, 0 elsewhere.
pub(crate) fn max_pool_grad(g: &CudaStorage, arg: &CudaStorage, s: usize) -> Result<CudaStorage> {
    check_float("neighbour_max_pool", g)?;
    let gpu = g.gpu().clone();
    let total = g.len() * s;
    let gx = CudaStorage::alloc(&gpu, total, g.dtype())?;
    if total == 0 {
        return Ok(gx);
    }
    gpu.launch(
        "pointnet",
        &g.kernel("max_pool_grad"),
        gpu.grid_for(total),
        &[g.arg(), arg.arg(), gx.arg(), i(total), i(s)],
    )?;
    Ok(gx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_geometry_covers_every_point() {
        for n in [
            1usize, 31, 33, 512, 513, 1023, 2048, 4097, 16384, 16385, 100_000,
        ] {
            let (t, per) = fps_geometry(n);
            assert!(t % 32 == 0 && (32..=FPS_THREADS).contains(&t), "n {n}");
            if per > 0 {
                assert!(t * per >= n && per <= FPS_MAX_PER, "n {n}");
            } else {
                assert!(n > FPS_THREADS * FPS_MAX_PER, "n {n}");
            }
        }
    }
}
