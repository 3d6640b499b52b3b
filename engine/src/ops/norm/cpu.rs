//! Reference kernels for batch and layer normalisation, forward and backward.
//!
//! Batch norm sees its input as `(N, C, S)` (S = the product of the spatial dims): a channel's
//! elements are N runs of S. Statistics and gradient sums are per channel, computed in parallel
//! over channels; elementwise passes run in parallel over the N * C runs. Layer norm sees `(R, D)`
//! and works in parallel over rows. All sums accumulate in f64; variances are two-pass.

use crate::ops::PARALLEL_THRESHOLD;
use crate::Float;
use rayon::prelude::*;

/// The `(N, C, S)` view of a batch-norm input.
#[derive(Clone, Copy, Debug)]
pub struct Channels {
    pub n: usize,
    pub c: usize,
    pub s: usize,
}

impl Channels {
    pub fn new(dims: &[usize]) -> Channels {
        Channels {
            n: dims[0],
            c: dims[1],
            s: dims[2..].iter().product(),
        }
    }

    /// Elements per channel.
    pub fn count(&self) -> usize {
        self.n * self.s
    }

    fn parallel(&self) -> bool {
        self.n * self.c * self.s >= PARALLEL_THRESHOLD
    }

    /// `f(channel)` for every channel, in parallel for large inputs.
    fn per_channel<U: Send>(&self, f: impl Fn(usize) -> U + Sync + Send) -> Vec<U> {
        if self.parallel() {
            (0..self.c).into_par_iter().map(f).collect()
        } else {
            (0..self.c).map(f).collect()
        }
    }

    /// Folds `f(acc, element_offset)` over the elements of channel `c`.
    #[inline]
    fn fold<A>(&self, c: usize, init: A, mut f: impl FnMut(A, usize) -> A) -> A {
        let mut acc = init;
        for n in 0..self.n {
            let start = (n * self.c + c) * self.s;
            for i in start..start + self.s {
                acc = f(acc, i);
            }
        }
        acc
    }

    /// `f(channel, out_run, run_offset)` over every run of S elements of an output.
    fn for_each_run<T: Float>(&self, out: &mut [T], f: impl Fn(usize, &mut [T], usize) + Sync) {
        if self.s == 0 || out.is_empty() {
            return;
        }
        let (c, s) = (self.c, self.s);
        if self.parallel() {
            out.par_chunks_mut(s)
                .enumerate()
                .for_each(|(r, o)| f(r % c, o, r * s));
        } else {
            out.chunks_mut(s)
                .enumerate()
                .for_each(|(r, o)| f(r % c, o, r * s));
        }
    }
}

/// Per-channel batch mean and biased variance (two-pass, in f64).
pub fn channel_stats<T: Float>(x: &[T], view: &Channels) -> (Vec<f64>, Vec<f64>) {
    let count = view.count() as f64;
    view.per_channel(|c| {
        let mean = view.fold(c, 0.0, |a, i| a + x[i].f64()) / count;
        let var = view.fold(c, 0.0, |a, i| {
            let d = x[i].f64() - mean;
            a + d * d
        }) / count;
        (mean, var)
    })
    .into_iter()
    .unzip()
}

/// `(x - mean[c]) * invstd[c] * weight[c] + bias[c]` (weight 1 and bias 0 when absent).
pub fn batch_norm<T: Float>(
    x: &[T],
    view: &Channels,
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    view.for_each_run(&mut out, |c, y, start| {
        let scale = invstd[c] * weight.map_or(T::one(), |w| w[c]);
        let shift = bias.map_or(T::zero(), |b| b[c]);
        let x = &x[start..start + y.len()];
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (x - mean[c]) * scale + shift;
        }
    });
    out
}

/// Gradients of batch norm: `(dx, dweight, dbias)`. In training the statistics depend on the
/// batch, giving the standard rule
/// `dx = weight * invstd * (g - mean(g) - xhat * mean(g * xhat))`;
/// in evaluation they are constants and `dx = weight * invstd * g`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_grad<T: Float>(
    x: &[T],
    g: &[T],
    view: &Channels,
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    training: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    // Per channel: sum(g) (= dbias) and sum(g * xhat) (= dweight).
    let (sum_g, sum_gx): (Vec<f64>, Vec<f64>) = view
        .per_channel(|c| {
            let (m, k) = (mean[c].f64(), invstd[c].f64());
            view.fold(c, (0.0, 0.0), |(sg, sgx), i| {
                let gi = g[i].f64();
                (sg + gi, sgx + gi * (x[i].f64() - m) * k)
            })
        })
        .into_iter()
        .unzip();
    let count = view.count() as f64;
    let mut dx = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    view.for_each_run(&mut dx, |c, out, start| {
        let k = invstd[c] * weight.map_or(T::one(), |w| w[c]);
        let (mean_g, mean_gx) = if training {
            (T::of(sum_g[c] / count), T::of(sum_gx[c] / count))
        } else {
            (T::zero(), T::zero())
        };
        let range = start..start + out.len();
        for ((o, &x), &g) in out.iter_mut().zip(&x[range.clone()]).zip(&g[range]) {
            let xhat = (x - mean[c]) * invstd[c];
            *o = k * (g - mean_g - xhat * mean_gx);
        }
    });
    let to_t = |v: Vec<f64>| v.into_iter().map(T::of).collect();
    (dx, to_t(sum_gx), to_t(sum_g))
}

/// Rows of length `d`, in parallel for large inputs: `f(row_index, out_row)`.
fn for_each_row<U: Send>(
    out: &mut [U],
    d: usize,
    total: usize,
    f: impl Fn(usize, &mut [U]) + Sync,
) {
    if d == 0 || out.is_empty() {
        return;
    }
    if total >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(d).enumerate().for_each(|(r, o)| f(r, o));
    } else {
        out.chunks_mut(d).enumerate().for_each(|(r, o)| f(r, o));
    }
}

/// Layer norm over rows of length `d`: `(y, mean, invstd)`, the last two per row.
pub fn layer_norm<T: Float>(
    x: &[T],
    d: usize,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = x.len().checked_div(d).unwrap_or(0);
    let mut stats = vec![(T::zero(), T::zero()); rows];
    for_each_row(&mut stats, 1, x.len(), |r, s| {
        let row = &x[r * d..(r + 1) * d];
        let mean = row.iter().map(|v| v.f64()).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|v| {
                let e = v.f64() - mean;
                e * e
            })
            .sum::<f64>()
            / d as f64;
        s[0] = (T::of(mean), T::of(1.0 / (var + eps).sqrt()));
    });
    let mut y = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    for_each_row(&mut y, d, x.len(), |r, out| {
        let (mean, invstd) = stats[r];
        for (j, (o, &v)) in out.iter_mut().zip(&x[r * d..(r + 1) * d]).enumerate() {
            let xhat = (v - mean) * invstd;
            *o = xhat * weight.map_or(T::one(), |w| w[j]) + bias.map_or(T::zero(), |b| b[j]);
        }
    });
    let (mean, invstd) = stats.into_iter().unzip();
    (y, mean, invstd)
}

/// Gradients of layer norm: `(dx, dweight, dbias)`. With `dxhat = g * weight`,
/// `dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))` along each row; `dweight`
/// and `dbias` sum `g * xhat` and `g` over rows (per-thread partial sums, then combined).
pub fn layer_norm_grad<T: Float>(
    x: &[T],
    g: &[T],
    d: usize,
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = mean.len();
    let xhat = |r: usize, j: usize| (x[r * d + j] - mean[r]) * invstd[r];
    let mut dx = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    for_each_row(&mut dx, d, x.len(), |r, out| {
        let w = |j: usize| weight.map_or(T::one(), |w| w[j]);
        let (mut sum, mut sum_x) = (0.0f64, 0.0f64);
        for j in 0..d {
            let dxhat = (g[r * d + j] * w(j)).f64();
            sum += dxhat;
            sum_x += dxhat * xhat(r, j).f64();
        }
        let (mean_d, mean_dx) = (T::of(sum / d as f64), T::of(sum_x / d as f64));
        for (j, o) in out.iter_mut().enumerate() {
            *o = invstd[r] * (g[r * d + j] * w(j) - mean_d - xhat(r, j) * mean_dx);
        }
    });
    let accumulate = |(mut dw, mut db): (Vec<f64>, Vec<f64>), r: usize| {
        for j in 0..d {
            let gj = g[r * d + j].f64();
            dw[j] += gj * xhat(r, j).f64();
            db[j] += gj;
        }
        (dw, db)
    };
    let zeros = || (vec![0.0f64; d], vec![0.0f64; d]);
    let (dw, db) = if x.len() >= PARALLEL_THRESHOLD {
        (0..rows)
            .into_par_iter()
            .fold(zeros, accumulate)
            .reduce(zeros, |(mut a, mut b), (c, e)| {
                a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
                b.iter_mut().zip(e).for_each(|(b, e)| *b += e);
                (a, b)
            })
    } else {
        (0..rows).fold(zeros(), accumulate)
    };
    let to_t = |v: Vec<f64>| v.into_iter().map(T::of).collect();
    (dx, to_t(dw), to_t(db))
}
