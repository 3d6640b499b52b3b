//! CUDA launches for this family (kernels/norm.cu): batch norm (per-channel statistics from
//! deterministic partial sums, the running-statistics update, forward and backward) and layer
//! norm (a warp per row for rows of up to 1024 elements, a block per row beyond; weight and bias
//! gradients from per-chunk partial column sums). Every sum is in f64, reduced in a fixed order.

use super::cpu::Channels;
use crate::cuda::check_float;
use crate::cuda::{Arg, CudaStorage, Gpu, BLOCK};
use crate::{DType, Error, Result};
use cudarc::driver::LaunchConfig;
use std::sync::Arc;

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "bn_sum_f32",
    "bn_sum_f64",
    "bn_grad_sum_f32",
    "bn_grad_sum_f64",
    "bn_mean_final",
    "bn_stats_final_f32",
    "bn_stats_final_f64",
    "bn_blend_f32",
    "bn_blend_f64",
    "bn_eval_stats_f32",
    "bn_eval_stats_f64",
    "bn_grad_final_f32",
    "bn_grad_final_f64",
    "bn_forward_f32",
    "bn_forward_f64",
    "bn_backward_f32",
    "bn_backward_f64",
    "ln_forward_warp_f32",
    "ln_forward_warp_f64",
    "ln_forward_block_f32",
    "ln_forward_block_f64",
    "ln_backward_warp_f32",
    "ln_backward_warp_f64",
    "ln_backward_block_f32",
    "ln_backward_block_f64",
    "ln_param_sum_f32",
    "ln_param_sum_f64",
    "ln_param_final_f32",
    "ln_param_final_f64",
];

const FAMILY: &str = "norm";

/// Elements a batch-norm partial block sums (32 per thread); a channel gets at most
/// `MAX_PARTIALS` blocks. Both depend only on the shape, so results do not depend on the device.
const ELEMS_PER_PARTIAL: usize = 8192;
const MAX_PARTIALS: usize = 128;

/// Layer-norm rows up to this length get one warp each; longer rows one block.
const WARP_ROW_MAX: usize = 1024;

/// Rows per chunk of the layer-norm weight/bias partial sums aim at this many; at most
/// `MAX_ROW_CHUNKS` chunks (the grid's y dimension).
const ROWS_PER_CHUNK_TARGET: usize = 64;
const MAX_ROW_CHUNKS: usize = 256;

// ln_param_sum's blocks are 32 columns by 8 rows (LN_TILE * LN_ROWS in norm.cu).
const _: () = assert!(BLOCK == 256);

fn i(x: usize) -> Arg {
    Arg::I64(x as i64)
}

/// A device address, or the null pointer the kernels read as "absent".
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

/// Partial blocks per channel of `count` elements.
fn partials(count: usize) -> usize {
    count.div_ceil(ELEMS_PER_PARTIAL).clamp(1, MAX_PARTIALS)
}

/// Grid sizes are u32 in CUDA; a channel count beyond that cannot be launched.
fn check_grid(op: &'static str, blocks: usize) -> Result<()> {
    if blocks > i32::MAX as usize {
        return Err(Error::invalid(
            op,
            format!("{blocks} blocks exceed the CUDA grid limit"),
        ));
    }
    Ok(())
}

/// The statistics of a training batch: `mean` and `invstd` in the input's dtype (what the
/// forward and backward read), and, when asked for, the batch mean and unbiased variance in f64
/// (what the running statistics blend in, as the CPU blends its f64 values).
pub(crate) struct BatchStats {
    pub mean: CudaStorage,
    pub invstd: CudaStorage,
    pub for_running: Option<(CudaStorage, CudaStorage)>,
}

/// Per-channel mean and `1 / sqrt(var + eps)` (biased variance, two passes in f64) of a
/// training batch with at least one element per channel.
pub(crate) fn batch_stats(
    x: &CudaStorage,
    view: &Channels,
    eps: f64,
    for_running: bool,
) -> Result<BatchStats> {
    const OP: &str = "batch_norm";
    check_float(OP, x)?;
    let gpu = x.gpu().clone();
    let (c, count) = (view.c, view.count());
    let mean = CudaStorage::alloc(&gpu, c, x.dtype())?;
    let invstd = CudaStorage::alloc(&gpu, c, x.dtype())?;
    let mean64 = CudaStorage::alloc(&gpu, c, DType::F64)?;
    let unbiased64 = if for_running {
        Some(CudaStorage::alloc(&gpu, c, DType::F64)?)
    } else {
        None
    };
    if c > 0 {
        check_grid(OP, c)?;
        let p = partials(count);
        let partial = CudaStorage::alloc(&gpu, c * p, DType::F64)?;
        let dims = [i(view.n), i(c), i(view.s), i(p)];
        let sum = x.kernel("bn_sum");
        // Pass 1: the means.
        let mut args = vec![x.arg(), Arg::Ptr(0)];
        args.extend(dims);
        args.push(partial.arg());
        gpu.launch(FAMILY, &sum, cfg((c, p), BLOCK), &args)?;
        gpu.launch(
            FAMILY,
            "bn_mean_final",
            gpu.grid_for(c),
            &[partial.arg(), i(c), i(p), i(count), mean64.arg()],
        )?;
        // Pass 2: the squared deviations from them.
        args[1] = mean64.arg();
        gpu.launch(FAMILY, &sum, cfg((c, p), BLOCK), &args)?;
        gpu.launch(
            FAMILY,
            &x.kernel("bn_stats_final"),
            gpu.grid_for(c),
            &[
                partial.arg(),
                mean64.arg(),
                i(c),
                i(p),
                i(count),
                Arg::F64(eps),
                mean.arg(),
                invstd.arg(),
                opt(unbiased64.as_ref()),
            ],
        )?;
    }
    Ok(BatchStats {
        mean,
        invstd,
        for_running: unbiased64.map(|u| (mean64, u)),
    })
}

/// `running = (1 - momentum) * running + momentum * batch64`, in place, computed in f64.
pub(crate) fn blend(running: &CudaStorage, batch64: &CudaStorage, momentum: f64) -> Result<()> {
    check_float("batch_norm", running)?;
    let gpu = running.gpu().clone();
    let c = running.len();
    if c > 0 {
        gpu.launch(
            FAMILY,
            &running.kernel("bn_blend"),
            gpu.grid_for(c),
            &[
                running.arg(),
                batch64.arg(),
                i(c),
                Arg::F64(1.0 - momentum),
                Arg::F64(momentum),
            ],
        )?;
    }
    Ok(())
}

/// Evaluation statistics: a copy of the running mean and `1 / sqrt(running_var + eps)`.
pub(crate) fn eval_stats(
    running_mean: &CudaStorage,
    running_var: &CudaStorage,
    eps: f64,
) -> Result<(CudaStorage, CudaStorage)> {
    check_float("batch_norm", running_mean)?;
    let gpu = running_mean.gpu().clone();
    let c = running_mean.len();
    let mean = CudaStorage::alloc(&gpu, c, running_mean.dtype())?;
    let invstd = CudaStorage::alloc(&gpu, c, running_mean.dtype())?;
    if c > 0 {
        gpu.launch(
            FAMILY,
            &running_mean.kernel("bn_eval_stats"),
            gpu.grid_for(c),
            &[
                running_mean.arg(),
                running_var.arg(),
                i(c),
                Arg::F64(eps),
                mean.arg(),
                invstd.arg(),
            ],
        )?;
    }
    Ok((mean, invstd))
}

/// `(x - mean[c]) * invstd[c] * weight[c] + bias[c]` (weight 1 and bias 0 when absent).
pub(crate) fn batch_norm(
    x: &CudaStorage,
    view: &Channels,
    mean: &CudaStorage,
    invstd: &CudaStorage,
    weight: Option<&CudaStorage>,
    bias: Option<&CudaStorage>,
) -> Result<CudaStorage> {
    check_float("batch_norm", x)?;
    let gpu = x.gpu().clone();
    let n = x.len();
    let y = CudaStorage::alloc(&gpu, n, x.dtype())?;
    if n > 0 {
        gpu.launch(
            FAMILY,
            &x.kernel("bn_forward"),
            gpu.grid_for(n),
            &[
                x.arg(),
                y.arg(),
                mean.arg(),
                invstd.arg(),
                opt(weight),
                opt(bias),
                i(n),
                i(view.c),
                i(view.s),
            ],
        )?;
    }
    Ok(y)
}

/// The gradients of batch norm, as the CPU's `batch_norm_grad`: `dx`, and `sum(g * xhat)` (the
/// weight's gradient) and `sum(g)` (the bias's) per channel when asked for.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_grad(
    x: &CudaStorage,
    g: &CudaStorage,
    view: &Channels,
    mean: &CudaStorage,
    invstd: &CudaStorage,
    weight: Option<&CudaStorage>,
    training: bool,
    want: (bool, bool),
) -> Result<(CudaStorage, Option<CudaStorage>, Option<CudaStorage>)> {
    const OP: &str = "batch_norm";
    check_float(OP, x)?;
    let gpu = x.gpu().clone();
    let (n, c, count) = (x.len(), view.c, view.count());
    let dtype = x.dtype();
    let dx = CudaStorage::alloc(&gpu, n, dtype)?;
    let dw = want
        .0
        .then(|| CudaStorage::alloc(&gpu, c, dtype))
        .transpose()?;
    let db = want
        .1
        .then(|| CudaStorage::alloc(&gpu, c, dtype))
        .transpose()?;
    // Evaluation without affine gradients needs no per-channel sums.
    let reduce = c > 0 && (training || want.0 || want.1);
    let means = if reduce {
        check_grid(OP, c)?;
        let p = partials(count);
        let pa = CudaStorage::alloc(&gpu, c * p, DType::F64)?;
        let pb = CudaStorage::alloc(&gpu, c * p, DType::F64)?;
        gpu.launch(
            FAMILY,
            &x.kernel("bn_grad_sum"),
            cfg((c, p), BLOCK),
            &[
                x.arg(),
                g.arg(),
                mean.arg(),
                invstd.arg(),
                i(view.n),
                i(c),
                i(view.s),
                i(p),
                pa.arg(),
                pb.arg(),
            ],
        )?;
        let mean_g = CudaStorage::alloc(&gpu, c, dtype)?;
        let mean_gx = CudaStorage::alloc(&gpu, c, dtype)?;
        gpu.launch(
            FAMILY,
            &x.kernel("bn_grad_final"),
            gpu.grid_for(c),
            &[
                pa.arg(),
                pb.arg(),
                i(c),
                i(p),
                i(count),
                Arg::I32(training as i32),
                opt(dw.as_ref()),
                opt(db.as_ref()),
                mean_g.arg(),
                mean_gx.arg(),
            ],
        )?;
        Some((mean_g, mean_gx))
    } else {
        None
    };
    if n > 0 {
        // In evaluation the kernel reads absent means as 0, as the CPU's rule.
        let (mg, mgx) = match (&means, training) {
            (Some((a, b)), true) => (a.arg(), b.arg()),
            _ => (Arg::Ptr(0), Arg::Ptr(0)),
        };
        gpu.launch(
            FAMILY,
            &x.kernel("bn_backward"),
            gpu.grid_for(n),
            &[
                x.arg(),
                g.arg(),
                mean.arg(),
                invstd.arg(),
                opt(weight),
                mg,
                mgx,
                i(n),
                i(c),
                i(view.s),
                dx.arg(),
            ],
        )?;
    }
    Ok((dx, dw, db))
}

/// One warp per row (8 rows per block) up to `WARP_ROW_MAX`, else one block per row; either way
/// a grid-stride loop over rows, the grid capped at a few waves of the device.
fn row_kernel(
    gpu: &Arc<Gpu>,
    base: &str,
    x: &CudaStorage,
    rows: usize,
    d: usize,
) -> (String, LaunchConfig) {
    let warps_per_block = (BLOCK / 32) as usize;
    let cap = gpu.sm_count() * 16;
    if d <= WARP_ROW_MAX {
        let blocks = rows.div_ceil(warps_per_block).clamp(1, cap);
        (x.kernel(&format!("{base}_warp")), cfg((blocks, 1), BLOCK))
    } else {
        (
            x.kernel(&format!("{base}_block")),
            cfg((rows.clamp(1, cap), 1), BLOCK),
        )
    }
}

/// Layer norm over rows of length `d`: `(y, mean, invstd)`, the last two per row (in the input's
/// dtype, as the CPU keeps them for the backward).
pub(crate) fn layer_norm(
    x: &CudaStorage,
    d: usize,
    weight: Option<&CudaStorage>,
    bias: Option<&CudaStorage>,
    eps: f64,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    check_float("layer_norm", x)?;
    let gpu = x.gpu().clone();
    let rows = x.len().checked_div(d).unwrap_or(0);
    let y = CudaStorage::alloc(&gpu, x.len(), x.dtype())?;
    let mean = CudaStorage::alloc(&gpu, rows, x.dtype())?;
    let invstd = CudaStorage::alloc(&gpu, rows, x.dtype())?;
    if rows > 0 {
        let (kernel, cfg) = row_kernel(&gpu, "ln_forward", x, rows, d);
        gpu.launch(
            FAMILY,
            &kernel,
            cfg,
            &[
                x.arg(),
                y.arg(),
                mean.arg(),
                invstd.arg(),
                opt(weight),
                opt(bias),
                i(rows),
                i(d),
                Arg::F64(eps),
            ],
        )?;
    }
    Ok((y, mean, invstd))
}

/// The gradients of layer norm, as the CPU's `layer_norm_grad`: `dx`, and the weight's
/// (`sum(g * xhat)` over rows) and bias's (`sum(g)`) gradients when asked for.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_grad(
    x: &CudaStorage,
    g: &CudaStorage,
    d: usize,
    mean: &CudaStorage,
    invstd: &CudaStorage,
    weight: Option<&CudaStorage>,
    want: (bool, bool),
) -> Result<(CudaStorage, Option<CudaStorage>, Option<CudaStorage>)> {
    const OP: &str = "layer_norm";
    check_float(OP, x)?;
    let gpu = x.gpu().clone();
    let dtype = x.dtype();
    let rows = mean.len();
    let dx = CudaStorage::alloc(&gpu, x.len(), dtype)?;
    if rows > 0 && d > 0 {
        let (kernel, cfg) = row_kernel(&gpu, "ln_backward", x, rows, d);
        gpu.launch(
            FAMILY,
            &kernel,
            cfg,
            &[
                x.arg(),
                g.arg(),
                mean.arg(),
                invstd.arg(),
                opt(weight),
                i(rows),
                i(d),
                dx.arg(),
            ],
        )?;
    }
    if !want.0 && !want.1 {
        return Ok((dx, None, None));
    }
    if rows == 0 || d == 0 {
        // No rows: the column sums are empty sums.
        let zeros = |on: bool| on.then(|| CudaStorage::zeros(&gpu, d, dtype)).transpose();
        return Ok((dx, zeros(want.0)?, zeros(want.1)?));
    }
    let dw = want
        .0
        .then(|| CudaStorage::alloc(&gpu, d, dtype))
        .transpose()?;
    let db = want
        .1
        .then(|| CudaStorage::alloc(&gpu, d, dtype))
        .transpose()?;
    let chunks = rows
        .div_ceil(ROWS_PER_CHUNK_TARGET)
        .clamp(1, MAX_ROW_CHUNKS);
    let rows_per_chunk = rows.div_ceil(chunks);
    let chunks = rows.div_ceil(rows_per_chunk);
    let tiles = d.div_ceil(32);
    check_grid(OP, tiles)?;
    let pw = CudaStorage::alloc(&gpu, chunks * d, DType::F64)?;
    let pb = CudaStorage::alloc(&gpu, chunks * d, DType::F64)?;
    gpu.launch(
        FAMILY,
        &x.kernel("ln_param_sum"),
        cfg((tiles, chunks), BLOCK),
        &[
            x.arg(),
            g.arg(),
            mean.arg(),
            invstd.arg(),
            i(rows),
            i(d),
            i(rows_per_chunk),
            pw.arg(),
            pb.arg(),
        ],
    )?;
    gpu.launch(
        FAMILY,
        &x.kernel("ln_param_final"),
        gpu.grid_for(d),
        &[
            pw.arg(),
            pb.arg(),
            i(chunks),
            i(d),
            opt(dw.as_ref()),
            opt(db.as_ref()),
        ],
    )?;
    Ok((dx, dw, db))
}
