//! CUDA launches for this family: the fused InfoNCE (kernels/infonce.cu) and the Barlow Twins
//! loss (kernels/barlow.cu). Statistics are kept in f64 on the device; every sum is joined in a
//! fixed order (results are reproducible bit for bit; grids depend only on the shapes). The
//! products around the fused kernels are the engine's matmul (cuBLAS).

use super::Kind;
use crate::cuda::{check_buffer as check, check_float};
use crate::cuda::{Arg, CudaStorage, BLOCK};
use crate::{DType, Result};
use cudarc::driver::LaunchConfig;

/// Kernels of kernels/infonce.cu that this module launches (checked by the compile test).
pub(crate) const INFONCE_KERNELS: &[&str] = &[
    "infonce_rows_f32",
    "infonce_rows_f64",
    "infonce_cols_f32",
    "infonce_cols_f64",
    "infonce_loss_f32",
    "infonce_loss_f64",
    "infonce_grad_f32",
    "infonce_grad_f64",
];

/// Kernels of kernels/barlow.cu that this module launches (checked by the compile test).
pub(crate) const BARLOW_KERNELS: &[&str] = &[
    "barlow_standardize_f32",
    "barlow_standardize_f64",
    "barlow_loss_f32",
    "barlow_loss_f64",
    "barlow_sum_f32",
    "barlow_sum_f64",
    "barlow_standardize_grad_f32",
    "barlow_standardize_grad_f64",
];

/// Columns per block of the column kernels (NCE_COLS / BT_COLS in the .cu files).
const TILE_COLS: usize = 8;
/// The most blocks a grid-stride kernel gets; fixed (not from the device) so that the order of
/// the Barlow loss partial sums depends only on the shape.
const MAX_BLOCKS: usize = 1024;
/// Elements per thread the Barlow loss aims at before it adds blocks.
const LOSS_PER_THREAD: usize = 8;

fn grid(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.clamp(1, MAX_BLOCKS) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn ptr(s: Option<&CudaStorage>) -> Arg {
    s.map_or(Arg::Ptr(0), |s| s.arg())
}

/// (kind code, beta, tau_plus, log_floor) for the kernels.
fn kind_args(kind: &Kind) -> (i32, f64, f64, f64) {
    match *kind {
        Kind::Hard {
            beta,
            tau_plus,
            log_floor,
        } => (3, beta, tau_plus, log_floor),
        k => (k.code(), 0.0, 0.0, 0.0),
    }
}

/// The fused InfoNCE forward on logits `s` (`n x m`, times `scale`): the scalar loss (dtype of
/// `s`), the row statistics (f64, 4 per row) and, for symmetric kinds, the column statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn infonce_forward(
    s: &CudaStorage,
    q: Option<&CudaStorage>,
    n: usize,
    m: usize,
    scale: f64,
    kind: &Kind,
    w_row: f64,
    w_col: f64,
) -> Result<(CudaStorage, CudaStorage, Option<CudaStorage>)> {
    const OP: &str = "infonce";
    check_float(OP, s)?;
    check(OP, "the logits", s, s.dtype(), n * m)?;
    if let Some(q) = q {
        check(OP, "the soft targets", q, s.dtype(), n * m)?;
    }
    let gpu = s.gpu().clone();
    let (code, beta, tau_plus, log_floor) = kind_args(kind);
    let symmetric = !matches!(kind, Kind::Queue);
    let loss = CudaStorage::alloc(&gpu, 1, s.dtype())?;
    let row_loss = CudaStorage::alloc(&gpu, n, DType::F64)?;
    let row_stats = CudaStorage::alloc(&gpu, 4 * n, DType::F64)?;
    let lane_args = |loss: &CudaStorage, stats: &CudaStorage| {
        vec![
            s.arg(),
            ptr(q),
            Arg::I64(n as i64),
            Arg::I64(m as i64),
            Arg::F64(scale),
            Arg::I32(code),
            Arg::F64(beta),
            Arg::F64(tau_plus),
            Arg::F64(log_floor),
            loss.arg(),
            stats.arg(),
        ]
    };
    gpu.launch(
        "infonce",
        &s.kernel("infonce_rows"),
        grid(n),
        &lane_args(&row_loss, &row_stats),
    )?;
    let (col_loss, col_stats) = if symmetric {
        let col_loss = CudaStorage::alloc(&gpu, m, DType::F64)?;
        let col_stats = CudaStorage::alloc(&gpu, 4 * m, DType::F64)?;
        gpu.launch(
            "infonce",
            &s.kernel("infonce_cols"),
            grid(m.div_ceil(TILE_COLS)),
            &lane_args(&col_loss, &col_stats),
        )?;
        (Some(col_loss), Some(col_stats))
    } else {
        (None, None)
    };
    gpu.launch(
        "infonce",
        &s.kernel("infonce_loss"),
        grid(1),
        &[
            row_loss.arg(),
            Arg::I64(n as i64),
            ptr(col_loss.as_ref()),
            Arg::I64(m as i64),
            Arg::F64(w_row),
            Arg::F64(if symmetric { w_col } else { 0.0 }),
            loss.arg(),
        ],
    )?;
    Ok((loss, row_stats, col_stats))
}

/// dL/ds of the fused InfoNCE from the saved statistics and the output gradient `g` (one
/// element, read on the device).
#[allow(clippy::too_many_arguments)]
pub(crate) fn infonce_grad(
    s: &CudaStorage,
    q: Option<&CudaStorage>,
    n: usize,
    m: usize,
    scale: f64,
    kind: &Kind,
    row_stats: &CudaStorage,
    col_stats: Option<&CudaStorage>,
    g: &CudaStorage,
    w_row: f64,
    w_col: f64,
) -> Result<CudaStorage> {
    const OP: &str = "infonce";
    check_float(OP, s)?;
    check(OP, "the logits", s, s.dtype(), n * m)?;
    check(OP, "the output gradient", g, s.dtype(), 1)?;
    check(OP, "the row statistics", row_stats, DType::F64, 4 * n)?;
    if let Some(c) = col_stats {
        check(OP, "the column statistics", c, DType::F64, 4 * m)?;
    }
    if let Some(q) = q {
        check(OP, "the soft targets", q, s.dtype(), n * m)?;
    }
    let gpu = s.gpu().clone();
    let (code, beta, _, _) = kind_args(kind);
    let out = CudaStorage::alloc(&gpu, n * m, s.dtype())?;
    gpu.launch(
        "infonce",
        &s.kernel("infonce_grad"),
        gpu.grid_for(n * m),
        &[
            s.arg(),
            ptr(q),
            Arg::I64(n as i64),
            Arg::I64(m as i64),
            Arg::F64(scale),
            Arg::I32(code),
            Arg::F64(beta),
            row_stats.arg(),
            ptr(col_stats),
            g.arg(),
            Arg::F64(w_row),
            Arg::F64(if col_stats.is_some() { w_col } else { 0.0 }),
            out.arg(),
        ],
    )?;
    Ok(out)
}

/// Standardises each column of `z` (`n x d`) over the batch: `zn` and `rstd` (f64, `d`).
pub(crate) fn standardize(
    z: &CudaStorage,
    n: usize,
    d: usize,
    eps: f64,
) -> Result<(CudaStorage, CudaStorage)> {
    const OP: &str = "barlow_twins";
    check_float(OP, z)?;
    check(OP, "the input", z, z.dtype(), n * d)?;
    let gpu = z.gpu().clone();
    let zn = CudaStorage::alloc(&gpu, n * d, z.dtype())?;
    let rstd = CudaStorage::alloc(&gpu, d, DType::F64)?;
    gpu.launch(
        "barlow",
        &z.kernel("barlow_standardize"),
        grid(d.div_ceil(TILE_COLS)),
        &[
            z.arg(),
            Arg::I64(n as i64),
            Arg::I64(d as i64),
            Arg::F64(eps),
            zn.arg(),
            rstd.arg(),
        ],
    )?;
    Ok((zn, rstd))
}

/// The Barlow Twins loss of `C = scale * p` (`d x d`) and dL/dp in the same pass.
pub(crate) fn barlow_loss(
    p: &CudaStorage,
    d: usize,
    scale: f64,
    lambda: f64,
) -> Result<(CudaStorage, CudaStorage)> {
    const OP: &str = "barlow_twins";
    check_float(OP, p)?;
    check(OP, "the correlation", p, p.dtype(), d * d)?;
    let gpu = p.gpu().clone();
    let dp = CudaStorage::alloc(&gpu, d * d, p.dtype())?;
    let loss = CudaStorage::alloc(&gpu, 1, p.dtype())?;
    let cfg = grid((d * d).div_ceil(BLOCK as usize * LOSS_PER_THREAD));
    let blocks = cfg.grid_dim.0 as usize;
    let partials = CudaStorage::alloc(&gpu, blocks, DType::F64)?;
    gpu.launch(
        "barlow",
        &p.kernel("barlow_loss"),
        cfg,
        &[
            p.arg(),
            Arg::I64(d as i64),
            Arg::F64(scale),
            Arg::F64(lambda),
            dp.arg(),
            partials.arg(),
        ],
    )?;
    gpu.launch(
        "barlow",
        &p.kernel("barlow_sum"),
        grid(1),
        &[partials.arg(), Arg::I64(blocks as i64), loss.arg()],
    )?;
    Ok((loss, dp))
}

/// The standardisation's backward, times the output gradient `g` (one element, on the device).
pub(crate) fn standardize_grad(
    zn: &CudaStorage,
    rstd: &CudaStorage,
    dzn: &CudaStorage,
    g: &CudaStorage,
    n: usize,
    d: usize,
) -> Result<CudaStorage> {
    const OP: &str = "barlow_twins";
    check_float(OP, zn)?;
    check(OP, "the standardised input", zn, zn.dtype(), n * d)?;
    check(OP, "its gradient", dzn, zn.dtype(), n * d)?;
    check(OP, "the output gradient", g, zn.dtype(), 1)?;
    check(OP, "rstd", rstd, DType::F64, d)?;
    let gpu = zn.gpu().clone();
    let dz = CudaStorage::alloc(&gpu, n * d, zn.dtype())?;
    gpu.launch(
        "barlow",
        &zn.kernel("barlow_standardize_grad"),
        grid(d.div_ceil(TILE_COLS)),
        &[
            zn.arg(),
            rstd.arg(),
            dzn.arg(),
            g.arg(),
            Arg::I64(n as i64),
            Arg::I64(d as i64),
            dz.arg(),
        ],
    )?;
    Ok(dz)
}
