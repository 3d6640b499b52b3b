//! Reference kernels for the fused contrastive losses, generic over f32/f64, every sum in f64.
//!
//! InfoNCE works on "lanes": a lane is one row of the logits (the row direction) or one column
//! (the column direction). `lane_stats` reads a lane once and returns its loss term and four
//! numbers from which `grad_term` gives the lane's gradient of any element; the backward pass
//! (`infonce_grad`) adds the row and column contributions in one pass over the logits.
//!
//! Barlow Twins: `standardize` (per-column batch statistics, biased variance), `barlow_loss`
//! (loss and dL/dC in one pass over C) and `standardize_grad` (the batch-norm backward).

use super::Kind;
use crate::ops::PARALLEL_THRESHOLD;
use crate::Float;
use rayon::prelude::*;

/// The number of statistics kept per lane.
pub const STATS: usize = 4;

/// One lane's values: `len` logits `x(k)` (already multiplied by the logit scale), their target
/// index (the positive; `usize::MAX` for soft targets) and, for soft targets, the target weights.
struct Lane<'a, T> {
    s: &'a [T],
    q: Option<&'a [T]>,
    start: usize,
    stride: usize,
    len: usize,
    target: usize,
    scale: f64,
}

impl<T: Float> Lane<'_, T> {
    #[inline(always)]
    fn x(&self, k: usize) -> f64 {
        self.s[self.start + k * self.stride].f64() * self.scale
    }
    #[inline(always)]
    fn q(&self, k: usize) -> f64 {
        match self.q {
            Some(q) => q[self.start + k * self.stride].f64(),
            None => (k == self.target) as u8 as f64,
        }
    }
}

/// `exp(v)` in the kernel precision `T` (the vectorisable `exp_k` for f32, libm for f64), as
/// the CUDA kernels compute their exponentials; sums stay in f64.
#[inline(always)]
fn ex<T: Float>(v: f64) -> f64 {
    T::of(v).exp_k().f64()
}

/// The loss term of one lane and its statistics (see `grad_term`).
fn lane_stats<T: Float>(lane: &Lane<T>, kind: &Kind) -> (f64, [f64; STATS]) {
    let len = lane.len;
    match *kind {
        Kind::Hard {
            beta,
            tau_plus,
            log_floor,
        } => {
            // HCL (paper 004 Eq. 3, the public HCL code) with n = len - 1 negatives, in units
            // of exp(M), M = max(x_pos, max of the negatives), so nothing overflows.
            let t = lane.target;
            let xp = lane.x(t);
            let mn = (0..len)
                .filter(|&k| k != t)
                .map(|k| lane.x(k))
                .fold(f64::NEG_INFINITY, f64::max);
            let (mut a, mut b) = (0.0, 0.0);
            for k in (0..len).filter(|&k| k != t) {
                let d = lane.x(k) - mn;
                a += ex::<T>((1.0 + beta) * d);
                b += ex::<T>(beta * d);
            }
            let n = (len - 1) as f64;
            let m = xp.max(mn);
            let pos = (xp - m).exp();
            let e = (mn - m).exp();
            let reweight = e * n * a / b;
            let ng = (-tau_plus * n * pos + reweight) / (1.0 - tau_plus);
            let floor = n * (log_floor - m).exp();
            let clamped = ng < floor;
            let ng = if clamped { floor } else { ng };
            let den = pos + ng;
            let loss = den.ln() + m - xp;
            let c_pos = if clamped {
                pos / den - 1.0
            } else {
                (pos - tau_plus * n * pos / (1.0 - tau_plus)) / den - 1.0
            };
            let (c_a, c_b) = if clamped {
                (0.0, 0.0)
            } else {
                let w = e * n / ((1.0 - tau_plus) * den * b);
                (w * (1.0 + beta), -w * beta * a / b)
            };
            (loss, [mn, c_a, c_b, c_pos])
        }
        _ => {
            // Cross-entropy against the target distribution q (one-hot unless soft):
            // loss = qsum * logsumexp(x) - sum_k q_k x_k.
            let m = (0..len)
                .map(|k| lane.x(k))
                .fold(f64::NEG_INFINITY, f64::max);
            let (mut s, mut qsum, mut qdot) = (0.0, 0.0, 0.0);
            for k in 0..len {
                let x = lane.x(k);
                s += ex::<T>(x - m);
                let q = lane.q(k);
                qsum += q;
                qdot += q * (x - m);
            }
            let l = s.ln();
            (qsum * l - qdot, [m, l, qsum, 0.0])
        }
    }
}

/// d(lane loss)/d(logit) of element `k` of a lane with statistics `st`, logit `x`, target weight
/// `q` (1 at the positive for one-hot targets).
#[inline(always)]
fn grad_term<T: Float>(kind: &Kind, st: &[f64], x: f64, is_target: bool, q: f64) -> f64 {
    match *kind {
        Kind::Hard { beta, .. } => {
            if is_target {
                st[3]
            } else {
                let d = x - st[0];
                st[1] * ex::<T>((1.0 + beta) * d) + st[2] * ex::<T>(beta * d)
            }
        }
        _ => st[2] * ex::<T>(x - st[0] - st[1]) - q,
    }
}

/// The per-lane losses and statistics of one direction of an `n x m` logit matrix `s` (times
/// `scale`): rows when `!cols`, columns otherwise. Row `i`'s positive is column `i` (column 0
/// for a queue), column `j`'s is row `j`.
pub fn infonce_stats<T: Float>(
    s: &[T],
    q: Option<&[T]>,
    n: usize,
    m: usize,
    scale: f64,
    kind: &Kind,
    cols: bool,
) -> (Vec<f64>, Vec<f64>) {
    if cols {
        // Columns are read as the rows of a transposed copy: a strided walk down each column
        // would miss the cache on every element of a large matrix.
        let st = transpose(s, n, m);
        let qt = q.map(|q| transpose(q, n, m));
        return infonce_stats(&st, qt.as_deref(), m, n, scale, kind, false);
    }
    let lanes = n;
    let one = |i: usize| {
        let lane = Lane {
            s,
            q,
            start: i * m,
            stride: 1,
            len: m,
            target: if matches!(kind, Kind::Queue) { 0 } else { i },
            scale,
        };
        lane_stats(&lane, kind)
    };
    let out: Vec<(f64, [f64; STATS])> = if n * m >= PARALLEL_THRESHOLD {
        (0..lanes).into_par_iter().map(one).collect()
    } else {
        (0..lanes).map(one).collect()
    };
    let loss = out.iter().map(|o| o.0).collect();
    let stats = out.iter().flat_map(|o| o.1).collect();
    (loss, stats)
}

/// The `m x n` transpose of an `n x m` row-major matrix, in 32 x 32 tiles.
fn transpose<T: Float>(x: &[T], n: usize, m: usize) -> Vec<T> {
    const TILE: usize = 32;
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(n * m);
    for i0 in (0..n).step_by(TILE) {
        for j0 in (0..m).step_by(TILE) {
            for i in i0..(i0 + TILE).min(n) {
                for j in j0..(j0 + TILE).min(m) {
                    out[j * n + i] = x[i * m + j];
                }
            }
        }
    }
    out
}

/// The gradient of the loss w.r.t. the raw logits `s` (`n x m`): `w_row` times the row lanes'
/// gradients plus `w_col` times the column lanes' (no column statistics for a queue), times
/// `scale` (the chain rule of `logits = scale * s`).
#[allow(clippy::too_many_arguments)]
pub fn infonce_grad<T: Float>(
    s: &[T],
    q: Option<&[T]>,
    n: usize,
    m: usize,
    scale: f64,
    kind: &Kind,
    row_stats: &[f64],
    col_stats: Option<&[f64]>,
    w_row: f64,
    w_col: f64,
) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(n * m);
    let queue = matches!(kind, Kind::Queue);
    let row = |i: usize, o: &mut [T]| {
        let rs = &row_stats[i * STATS..(i + 1) * STATS];
        for (j, o) in o.iter_mut().enumerate() {
            let x = s[i * m + j].f64() * scale;
            let qv = match q {
                Some(q) => q[i * m + j].f64(),
                None => ((if queue { j == 0 } else { j == i }) as u8) as f64,
            };
            let rt = if queue { j == 0 } else { j == i };
            let mut g = w_row * grad_term::<T>(kind, rs, x, rt, qv);
            if let Some(cs) = col_stats {
                let cs = &cs[j * STATS..(j + 1) * STATS];
                g += w_col * grad_term::<T>(kind, cs, x, i == j, qv);
            }
            *o = T::of(g * scale);
        }
    };
    if m == 0 {
        return out;
    }
    if n * m >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(m)
            .enumerate()
            .for_each(|(i, o)| row(i, o));
    } else {
        out.chunks_mut(m).enumerate().for_each(|(i, o)| row(i, o));
    }
    out
}

/// Standardises each column of `z` (`n x d`) over the batch: `(z - mean) * rstd` with
/// `rstd = 1 / sqrt(biased variance + eps)`. Returns the standardised matrix and `rstd`.
pub fn standardize<T: Float>(z: &[T], n: usize, d: usize, eps: f64) -> (Vec<T>, Vec<f64>) {
    let mut mean = vec![0.0f64; d];
    for r in z.chunks(d) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v.f64();
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0.0f64; d];
    for r in z.chunks(d) {
        for ((v2, &v), &m) in var.iter_mut().zip(r).zip(&mean) {
            *v2 += (v.f64() - m).powi(2);
        }
    }
    let rstd: Vec<f64> = var
        .iter()
        .map(|v| 1.0 / (v / n as f64 + eps).sqrt())
        .collect();
    let zn = z
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let c = k % d;
            T::of((v.f64() - mean[c]) * rstd[c])
        })
        .collect();
    (zn, rstd)
}

/// The Barlow Twins loss of `C = scale * p` (`d x d`): `sum_i (1 - C_ii)^2 + lambda *
/// sum_{i != j} C_ij^2`, and dL/dp in the same pass.
pub fn barlow_loss<T: Float>(p: &[T], d: usize, scale: f64, lambda: f64) -> (f64, Vec<T>) {
    let mut loss = 0.0;
    let mut grad = crate::buffer_cache::alloc_zeroed::<T>(d * d);
    for (k, (g, &v)) in grad.iter_mut().zip(p).enumerate() {
        let c = v.f64() * scale;
        let dc = if k / d == k % d {
            loss += (1.0 - c) * (1.0 - c);
            2.0 * (c - 1.0)
        } else {
            loss += lambda * c * c;
            2.0 * lambda * c
        };
        *g = T::of(dc * scale);
    }
    (loss, grad)
}

/// The batch-norm backward of `standardize` (no affine, batch statistics), times `scale`:
/// `dz = scale * rstd * (dzn - mean(dzn) - zn * mean(dzn * zn))` per column.
pub fn standardize_grad<T: Float>(
    zn: &[T],
    rstd: &[f64],
    dzn: &[T],
    n: usize,
    d: usize,
    scale: f64,
) -> Vec<T> {
    let (mut s1, mut s2) = (vec![0.0f64; d], vec![0.0f64; d]);
    for (rz, rg) in zn.chunks(d).zip(dzn.chunks(d)) {
        for c in 0..d {
            s1[c] += rg[c].f64();
            s2[c] += rg[c].f64() * rz[c].f64();
        }
    }
    let nf = n as f64;
    zn.iter()
        .zip(dzn)
        .enumerate()
        .map(|(k, (&y, &g))| {
            let c = k % d;
            T::of(scale * rstd[c] * (g.f64() - s1[c] / nf - y.f64() * s2[c] / nf))
        })
        .collect()
}
