//! CUDA launches for this family (kernels/softmax.cu): softmax and log-softmax along any axis with
//! their backward, and the fused cross-entropy with its backward.
//!
//! Around the axis the tensor is (outer, n, inner) (`Lanes`). Lanes along the last axis are rows:
//! up to 1024 elements a group of lanes of one warp each (shuffles only), longer ones a block
//! each. Along another axis, many lanes (or short ones) get one thread each, and otherwise a block
//! covers up to 32 neighbouring lanes with 256 / W threads on each. Every lane is read once to
//! build its statistics (an online maximum and rescaled sum of exponentials), joined across
//! threads in a fixed order, then written in one more pass: no atomics, same bits on every run.

use super::cpu::Lanes;
use crate::cuda::check_float;
use crate::cuda::{Arg, CudaStorage, Gpu, BLOCK};
use crate::{DType, Error, Result};
use cudarc::driver::LaunchConfig;

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "softmax_rows_f32",
    "softmax_rows_f64",
    "softmax_mid_f32",
    "softmax_mid_f64",
    "softmax_grad_rows_f32",
    "softmax_grad_rows_f64",
    "softmax_grad_mid_f32",
    "softmax_grad_mid_f64",
    "cross_entropy_rows_f32",
    "cross_entropy_rows_f64",
    "cross_entropy_mid_f32",
    "cross_entropy_mid_f64",
    "cross_entropy_grad_f32",
    "cross_entropy_grad_f64",
];

/// Rows up to this long go to groups of lanes within a warp; longer ones to a block each.
const WARP_ROW_MAX: usize = 1024;
/// A middle axis with at least this many lanes, or at most `COLS_SHORT_N` long, goes to one
/// thread per lane.
const COLS_MIN_LANES: usize = 1 << 18;
const COLS_SHORT_N: usize = 64;

/// The layout of one launch: the kernel variant, its layout arguments and its grid.
struct Plan {
    rows: bool,
    /// Lanes of a warp per row (0: a block per row), or columns per block (0: a thread per lane).
    width: usize,
    grid: LaunchConfig,
}

impl Plan {
    fn new(gpu: &Gpu, lanes: &Lanes) -> Plan {
        let (outer, n, inner) = (lanes.outer, lanes.n, lanes.inner);
        let per_block = BLOCK as usize;
        let (rows, width, blocks) = if inner == 1 {
            if n <= WARP_ROW_MAX {
                let width = n.next_power_of_two().min(32);
                (true, width, outer.div_ceil(per_block / width))
            } else {
                (true, 0, outer)
            }
        } else if n <= COLS_SHORT_N || outer * inner >= COLS_MIN_LANES {
            (false, 0, (outer * inner).div_ceil(per_block))
        } else {
            let w = inner.min(32);
            (false, w, outer * inner.div_ceil(w))
        };
        Plan {
            rows,
            width,
            grid: LaunchConfig {
                // Every kernel loops over its blocks' work, so the grid may be capped.
                grid_dim: (blocks.clamp(1, gpu.sm_count() * 16) as u32, 1, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            },
        }
    }

    /// `<base>_rows_<t>` or `<base>_mid_<t>`.
    fn kernel(&self, base: &str, x: &CudaStorage) -> String {
        x.kernel(&format!(
            "{base}_{}",
            if self.rows { "rows" } else { "mid" }
        ))
    }

    /// The layout arguments: (rows, n, width) or (outer, n, inner, w).
    fn args(&self, lanes: &Lanes) -> Vec<Arg> {
        let i = |v: usize| Arg::I64(v as i64);
        let mut args = vec![i(lanes.outer), i(lanes.n)];
        if !self.rows {
            args.push(i(lanes.inner));
        }
        args.push(Arg::I32(self.width as i32));
        args
    }
}

fn check_len(op: &'static str, what: &str, s: &CudaStorage, len: usize) -> Result<()> {
    if s.len() != len {
        return Err(Error::invalid(
            op,
            format!("{what} has {} elements, expected {len}", s.len()),
        ));
    }
    Ok(())
}

/// Softmax (or log-softmax when `log`) of every lane of `x`.
pub(crate) fn softmax(x: &CudaStorage, lanes: &Lanes, log: bool) -> Result<CudaStorage> {
    let op = if log { "log_softmax" } else { "softmax" };
    check_float(op, x)?;
    let gpu = x.gpu().clone();
    let y = CudaStorage::alloc(&gpu, x.len(), x.dtype())?;
    if x.is_empty() {
        return Ok(y);
    }
    let plan = Plan::new(&gpu, lanes);
    let mut args = vec![x.arg(), y.arg()];
    args.extend(plan.args(lanes));
    args.push(Arg::I32(log as i32));
    gpu.launch("softmax", &plan.kernel("softmax", x), plan.grid, &args)?;
    Ok(y)
}

/// The input gradient of softmax (or log-softmax) from its output `y` and output gradient `g`.
pub(crate) fn softmax_grad(
    y: &CudaStorage,
    g: &CudaStorage,
    lanes: &Lanes,
    log: bool,
) -> Result<CudaStorage> {
    let op = if log { "log_softmax" } else { "softmax" };
    check_float(op, y)?;
    if g.dtype() != y.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            a: y.dtype(),
            b: g.dtype(),
        });
    }
    check_len(op, "the output gradient", g, y.len())?;
    let gpu = y.gpu().clone();
    let gx = CudaStorage::alloc(&gpu, y.len(), y.dtype())?;
    if y.is_empty() {
        return Ok(gx);
    }
    let plan = Plan::new(&gpu, lanes);
    let mut args = vec![y.arg(), g.arg(), gx.arg()];
    args.extend(plan.args(lanes));
    args.push(Arg::I32(log as i32));
    gpu.launch("softmax", &plan.kernel("softmax_grad", y), plan.grid, &args)?;
    Ok(gx)
}

/// The fused cross-entropy of logits `x` (lanes along the class axis) against i64 `targets`, one
/// per lane, with label smoothing `eps`: each lane's loss, and its (max, ln sum exp(x - max))
/// interleaved for the backward. The targets are not checked on the host (that would need a
/// synchronising copy): a target outside [0, n) makes that lane's loss NaN.
pub(crate) fn cross_entropy(
    x: &CudaStorage,
    targets: &CudaStorage,
    lanes: &Lanes,
    eps: f64,
) -> Result<(CudaStorage, CudaStorage)> {
    const OP: &str = "cross_entropy";
    check_float(OP, x)?;
    if targets.dtype() != DType::I64 {
        return Err(Error::DType {
            op: OP,
            got: targets.dtype(),
            msg: "targets must be i64 class indices".into(),
        });
    }
    check_len(OP, "the targets", targets, lanes.count())?;
    let gpu = x.gpu().clone();
    let loss = CudaStorage::alloc(&gpu, lanes.count(), x.dtype())?;
    let stats = CudaStorage::alloc(&gpu, 2 * lanes.count(), x.dtype())?;
    if x.is_empty() || lanes.count() == 0 {
        return Ok((loss, stats));
    }
    let plan = Plan::new(&gpu, lanes);
    let mut args = vec![x.arg(), targets.arg(), loss.arg(), stats.arg()];
    args.extend(plan.args(lanes));
    args.push(Arg::F64(eps));
    gpu.launch(
        "softmax",
        &plan.kernel("cross_entropy", x),
        plan.grid,
        &args,
    )?;
    Ok((loss, stats))
}

/// Gradient of the fused cross-entropy w.r.t. the logits: `(softmax - q) * g[lane * g_stride] *
/// scale` (see `cpu::cross_entropy_grad`); NaN along the lanes whose target is out of range.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_entropy_grad(
    x: &CudaStorage,
    targets: &CudaStorage,
    stats: &CudaStorage,
    g: &CudaStorage,
    g_stride: usize,
    scale: f64,
    lanes: &Lanes,
    eps: f64,
) -> Result<CudaStorage> {
    const OP: &str = "cross_entropy";
    check_float(OP, x)?;
    for s in [stats, g] {
        if s.dtype() != x.dtype() {
            return Err(Error::DTypeMismatch {
                op: OP,
                a: x.dtype(),
                b: s.dtype(),
            });
        }
    }
    check_len(OP, "the targets", targets, lanes.count())?;
    check_len(OP, "the saved statistics", stats, 2 * lanes.count())?;
    let g_len = if g_stride == 0 { 1 } else { lanes.count() };
    check_len(OP, "the output gradient", g, g_len)?;
    let gpu = x.gpu().clone();
    let gx = CudaStorage::alloc(&gpu, x.len(), x.dtype())?;
    if x.is_empty() {
        return Ok(gx);
    }
    gpu.launch(
        "softmax",
        &x.kernel("cross_entropy_grad"),
        gpu.grid_for(x.len()),
        &[
            x.arg(),
            targets.arg(),
            stats.arg(),
            g.arg(),
            Arg::I64(g_stride as i64),
            Arg::F64(scale),
            gx.arg(),
            Arg::I64(lanes.outer as i64),
            Arg::I64(lanes.n as i64),
            Arg::I64(lanes.inner as i64),
            Arg::F64(eps),
        ],
    )?;
    Ok(gx)
}
