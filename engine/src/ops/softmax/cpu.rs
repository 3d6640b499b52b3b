//! Reference kernels for softmax, log-softmax and the fused cross-entropy.
//!
//! Around the softmax axis a tensor is seen as `(outer, n, inner)`: each of the `outer * inner`
//! lanes holds `n` elements `inner` apart. Blocks of `n * inner` elements are independent and run
//! in parallel; inside a block all `inner` lanes advance together one row (`k`) at a time, so
//! memory is read contiguously whatever the axis. Lane sums accumulate in f64.

use crate::ops::PARALLEL_THRESHOLD;
use crate::Float;
use rayon::prelude::*;

/// The `(outer, n, inner)` view of a shape around one axis.
#[derive(Clone, Copy, Debug)]
pub struct Lanes {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
}

impl Lanes {
    pub fn new(dims: &[usize], axis: usize) -> Lanes {
        Lanes {
            outer: dims[..axis].iter().product(),
            n: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        }
    }

    fn block(&self) -> usize {
        self.n * self.inner
    }

    /// Number of lanes (`outer * inner`): one softmax, or one cross-entropy term, each.
    pub fn count(&self) -> usize {
        self.outer * self.inner
    }

    fn empty(&self) -> bool {
        self.outer * self.n * self.inner == 0
    }

    fn parallel(&self) -> bool {
        self.outer > 1 && self.outer * self.block() >= PARALLEL_THRESHOLD
    }
}

/// Runs `f(block_index, output_block)` over the `outer` blocks of an output whose blocks are
/// `out_block` long, in parallel for large tensors.
fn for_each_block<U: Send>(
    lanes: &Lanes,
    out: &mut [U],
    out_block: usize,
    f: impl Fn(usize, &mut [U]) + Sync + Send,
) {
    if lanes.empty() || out_block == 0 {
        return;
    }
    if lanes.parallel() {
        out.par_chunks_mut(out_block)
            .enumerate()
            .for_each(|(b, o)| f(b, o));
    } else {
        out.chunks_mut(out_block)
            .enumerate()
            .for_each(|(b, o)| f(b, o));
    }
}

/// Per-lane maximum of a block. A NaN may be skipped here; it still makes its lane NaN via `exp`.
fn lane_max<T: Float>(x: &[T], lanes: &Lanes, m: &mut [T]) {
    let inner = lanes.inner;
    m.copy_from_slice(&x[..inner]);
    for k in 1..lanes.n {
        for (mi, &v) in m.iter_mut().zip(&x[k * inner..(k + 1) * inner]) {
            if v > *mi {
                *mi = v;
            }
        }
    }
}

/// Per-lane `sum_k exp(x_k - m)`, in f64.
fn lane_sum_exp<T: Float>(x: &[T], lanes: &Lanes, m: &[T], s: &mut [f64]) {
    let inner = lanes.inner;
    s.iter_mut().for_each(|v| *v = 0.0);
    for k in 0..lanes.n {
        for i in 0..inner {
            s[i] += (x[k * inner + i] - m[i]).exp_k().f64();
        }
    }
}

/// Softmax (or log-softmax when `log`) of every lane; the max is subtracted first so large
/// logits cannot overflow `exp`.
pub fn softmax<T: Float>(x: &[T], lanes: &Lanes, log: bool) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    let block = lanes.block();
    for_each_block(lanes, &mut out, block, |b, y| {
        let x = &x[b * block..(b + 1) * block];
        let inner = lanes.inner;
        if inner == 1 {
            return softmax_row(x, y, log);
        }
        let mut m = crate::buffer_cache::alloc_zeroed::<T>(inner);
        let mut s = vec![0.0f64; inner];
        lane_max(x, lanes, &mut m);
        lane_sum_exp(x, lanes, &m, &mut s);
        if log {
            let shift: Vec<T> = (0..inner).map(|i| m[i] + T::of(s[i].ln())).collect();
            for (j, (yj, &xj)) in y.iter_mut().zip(x).enumerate() {
                *yj = xj - shift[j % inner];
            }
        } else {
            let inv: Vec<T> = s.iter().map(|&v| T::of(1.0 / v)).collect();
            for (j, (yj, &xj)) in y.iter_mut().zip(x).enumerate() {
                let i = j % inner;
                *yj = (xj - m[i]).exp_k() * inv[i];
            }
        }
    });
    out
}

/// Softmax along one contiguous row (the last axis): exponentials written straight into the
/// output, summed with eight f64 accumulators, then scaled, so each pass vectorises.
fn softmax_row<T: Float>(x: &[T], y: &mut [T], log: bool) {
    let m = x.iter().fold(x[0], |a, &v| if v > a { v } else { a });
    for (yj, &xj) in y.iter_mut().zip(x) {
        *yj = (xj - m).exp_k();
    }
    let s = sum_pairs(y, y, |e, _| e.f64());
    if log {
        let shift = m + T::of(s.ln());
        for (yj, &xj) in y.iter_mut().zip(x) {
            *yj = xj - shift;
        }
    } else {
        let inv = T::of(1.0 / s);
        y.iter_mut().for_each(|yj| *yj *= inv);
    }
}

/// `sum_j f(a_j, b_j)` in f64 with eight independent accumulators (a serial f64 sum is bound by
/// the latency of one addition per element).
fn sum_pairs<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += f(xa[l], xb[l]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// A backward rule of the shape `gx = map(y, g, sum_k reduce(y_k, g_k))` along every lane.
fn lane_backward<T: Float>(
    y: &[T],
    g: &[T],
    lanes: &Lanes,
    reduce: impl Fn(T, T) -> f64 + Sync,
    map: impl Fn(T, T, T) -> T + Sync,
) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(y.len());
    let block = lanes.block();
    for_each_block(lanes, &mut out, block, |b, gx| {
        let (y, g) = (
            &y[b * block..(b + 1) * block],
            &g[b * block..(b + 1) * block],
        );
        let inner = lanes.inner;
        if inner == 1 {
            let acc = T::of(sum_pairs(y, g, &reduce));
            for ((o, &yj), &gj) in gx.iter_mut().zip(y).zip(g) {
                *o = map(yj, gj, acc);
            }
            return;
        }
        let mut acc = vec![0.0f64; inner];
        for (j, (&yj, &gj)) in y.iter().zip(g).enumerate() {
            acc[j % inner] += reduce(yj, gj);
        }
        let acc: Vec<T> = acc.into_iter().map(T::of).collect();
        for (j, o) in gx.iter_mut().enumerate() {
            *o = map(y[j], g[j], acc[j % inner]);
        }
    });
    out
}

/// d softmax: `y * (g - sum(g * y))` along each lane.
pub fn softmax_grad<T: Float>(y: &[T], g: &[T], lanes: &Lanes) -> Vec<T> {
    lane_backward(y, g, lanes, |y, g| (y * g).f64(), |y, g, dot| y * (g - dot))
}

/// d log_softmax: `g - exp(y) * sum(g)` along each lane.
pub fn log_softmax_grad<T: Float>(y: &[T], g: &[T], lanes: &Lanes) -> Vec<T> {
    lane_backward(y, g, lanes, |_, g| g.f64(), |y, g, sum| g - y.exp_k() * sum)
}

/// Fused log-softmax + negative log-likelihood over the class axis, with label smoothing `eps`
/// (the target distribution is `(1 - eps) * onehot + eps / C`). Targets must already be in range.
/// Returns the loss of every lane and, for the backward pass, each lane's `(max, ln sum exp(x - max))`
/// interleaved: kept apart (not as one log-sum-exp) so `x - max` stays exact for large logits.
pub fn cross_entropy<T: Float>(
    x: &[T],
    targets: &[i64],
    lanes: &Lanes,
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    let (inner, n) = (lanes.inner, lanes.n);
    let mut out = vec![(T::zero(), [T::zero(); 2]); lanes.count()];
    let block = lanes.block();
    for_each_block(lanes, &mut out, inner, |b, o| {
        let x = &x[b * block..(b + 1) * block];
        let t = &targets[b * inner..(b + 1) * inner];
        let mut m = crate::buffer_cache::alloc_zeroed::<T>(inner);
        let mut s = vec![0.0f64; inner];
        let mut total = vec![0.0f64; inner];
        lane_max(x, lanes, &mut m);
        lane_sum_exp(x, lanes, &m, &mut s);
        if eps != 0.0 {
            for (j, &v) in x.iter().enumerate() {
                total[j % inner] += v.f64();
            }
        }
        for i in 0..inner {
            let m = m[i].f64();
            let log_sum = s[i].ln();
            // lse - x_t as (m - x_t) + log_sum: no cancellation between two large numbers.
            let x_t = x[t[i] as usize * inner + i].f64();
            let nll = (m - x_t) + log_sum;
            let loss = if eps == 0.0 {
                nll
            } else {
                let uniform = (m - total[i] / n as f64) + log_sum;
                (1.0 - eps) * nll + eps * uniform
            };
            o[i] = (T::of(loss), [T::of(m), T::of(log_sum)]);
        }
    });
    let (loss, stats): (Vec<T>, Vec<[T; 2]>) = out.into_iter().unzip();
    (loss, stats.into_iter().flatten().collect())
}

/// Gradient of the fused cross-entropy w.r.t. the logits: `(softmax - q) * w_lane`, where `q` is
/// the smoothed target distribution and `w_lane = g[lane * g_stride] * scale` (stride 0 for a
/// reduced loss, whose one gradient value every lane shares).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_grad<T: Float>(
    x: &[T],
    targets: &[i64],
    stats: &[T],
    g: &[T],
    g_stride: usize,
    scale: f64,
    lanes: &Lanes,
    eps: f64,
) -> Vec<T> {
    let (inner, n) = (lanes.inner, lanes.n);
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    let block = lanes.block();
    let off = T::of(eps / n as f64);
    let on = T::of(1.0 - eps) + off;
    for_each_block(lanes, &mut out, block, |b, gx| {
        let x = &x[b * block..(b + 1) * block];
        for (j, o) in gx.iter_mut().enumerate() {
            let (k, i) = (j / inner, j % inner);
            let lane = b * inner + i;
            let w = g[lane * g_stride] * T::of(scale);
            let q = if targets[lane] as usize == k { on } else { off };
            let (m, log_sum) = (stats[2 * lane], stats[2 * lane + 1]);
            *o = ((x[j] - m - log_sum).exp_k() - q) * w;
        }
    });
    out
}
