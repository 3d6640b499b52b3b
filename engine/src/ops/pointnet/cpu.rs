//! Point-cloud reference kernels (PointNet++): farthest point sampling, ball query, grouping
//! and its scatter-add backward, neighbourhood max-pool and its backward. Parallel over clouds,
//! centres or rows with rayon; every output has one writer, so results are deterministic.
//!
//! The squared distance is `((dx * dx) + (dy * dy)) + (dz * dz)` with `dx = p.x - c.x` etc.,
//! each operation rounded once in `T` (no fused multiply-add): the CUDA kernels compute it with
//! the same roundings (`__fmul_rn` / `__fadd_rn`), so indices agree exactly across devices.

use crate::ops::PARALLEL_THRESHOLD;
use crate::Float;
use rayon::prelude::*;

/// Squared distance between point `p` (3 values) and `c`, in the documented order.
#[inline(always)]
pub fn dist2<T: Float>(p: &[T], c: &[T]) -> T {
    let dx = p[0] - c[0];
    let dy = p[1] - c[1];
    let dz = p[2] - c[2];
    (dx * dx + dy * dy) + dz * dz
}

/// The first index of cloud `b` of `n` points: 0, or `floor(u * n)` (clamped to `n - 1`) with
/// `u = dropout_uniform(seed, b)`.
pub fn fps_start(seed: Option<u64>, b: usize, n: usize) -> usize {
    match seed {
        None => 0,
        Some(s) => {
            ((super::super::dropout::dropout_uniform(s, b as u64) * n as f64) as usize).min(n - 1)
        }
    }
}

/// Farthest point sampling of `m` of the `n` points of each of `b` clouds (`pts` is (b, n, 3)).
/// Step j picks the point with the largest running minimum squared distance to the points
/// already picked (strict `>` in index order: ties go to the lowest index).
pub fn fps<T: Float>(pts: &[T], b: usize, n: usize, m: usize, seed: Option<u64>) -> Vec<i64> {
    let mut out = vec![0i64; b * m];
    if m == 0 {
        return out;
    }
    let cloud = |(bi, o): (usize, &mut [i64])| {
        let p = &pts[bi * n * 3..(bi + 1) * n * 3];
        let mut dist = vec![T::infinity(); n];
        let mut cur = fps_start(seed, bi, n);
        o[0] = cur as i64;
        for slot in o.iter_mut().skip(1) {
            let c = [p[3 * cur], p[3 * cur + 1], p[3 * cur + 2]];
            let mut best = -T::one();
            let mut best_i = 0;
            for (i, (d, q)) in dist.iter_mut().zip(p.chunks_exact(3)).enumerate() {
                let e = dist2(q, &c);
                if e < *d {
                    *d = e;
                }
                if *d > best {
                    best = *d;
                    best_i = i;
                }
            }
            cur = best_i;
            *slot = cur as i64;
        }
    };
    if b > 1 && n * m >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(m).enumerate().for_each(cloud);
    } else {
        out.chunks_mut(m).enumerate().for_each(cloud);
    }
    out
}

/// Ball query: for each of the `m` centres of each cloud (`ctr` is (b, m, 3), `pts` (b, n, 3)),
/// the first `ns` points in scan order with `d^2 < r2`; slots beyond the hits repeat the first
/// hit; with no hit, every slot holds the nearest point (lowest index on ties).
pub fn ball_query<T: Float>(
    pts: &[T],
    ctr: &[T],
    b: usize,
    n: usize,
    m: usize,
    r2: T,
    ns: usize,
) -> Vec<i64> {
    let mut out = vec![0i64; b * m * ns];
    if out.is_empty() {
        return out;
    }
    let centre = |(t, o): (usize, &mut [i64])| {
        let bi = t / m;
        let p = &pts[bi * n * 3..(bi + 1) * n * 3];
        let c = &ctr[t * 3..t * 3 + 3];
        let (mut count, mut nearest, mut best) = (0usize, 0usize, T::infinity());
        for (i, q) in p.chunks_exact(3).enumerate() {
            let d = dist2(q, c);
            if d < r2 {
                if count == 0 {
                    o.fill(i as i64);
                } else {
                    o[count] = i as i64;
                }
                count += 1;
                if count == ns {
                    break;
                }
            } else if count == 0 && d < best {
                best = d;
                nearest = i;
            }
        }
        if count == 0 {
            o.fill(nearest as i64);
        }
    };
    if b * m * n >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(ns).enumerate().for_each(centre);
    } else {
        out.chunks_mut(ns).enumerate().for_each(centre);
    }
    out
}

/// Sizes of a grouping: features (b, c, n), indices (b, m, s), output (b, c, m, s).
#[derive(Clone, Copy, Debug)]
pub struct Group {
    pub b: usize,
    pub c: usize,
    pub n: usize,
    pub m: usize,
    pub s: usize,
}

/// `out[b, c, m, s] = feat[b, c, idx[b, m, s]]`; indices already checked to lie in `0..n`.
pub fn group<T: Float>(feat: &[T], idx: &[i64], g: Group) -> Vec<T> {
    let ms = g.m * g.s;
    let mut out = vec![T::zero(); g.b * g.c * ms];
    if out.is_empty() {
        return out;
    }
    let row = |(r, o): (usize, &mut [T])| {
        let f = &feat[r * g.n..(r + 1) * g.n];
        let ix = &idx[(r / g.c) * ms..(r / g.c + 1) * ms];
        for (o, &i) in o.iter_mut().zip(ix) {
            *o = f[i as usize];
        }
    };
    if out.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(ms).enumerate().for_each(row);
    } else {
        out.chunks_mut(ms).enumerate().for_each(row);
    }
    out
}

/// The backward of `group`: `grad[b, c, idx[b, m, s]] += gout[b, c, m, s]`, each row of `grad`
/// summed by one thread in (m, s) order (deterministic).
pub fn group_grad<T: Float>(gout: &[T], idx: &[i64], g: Group) -> Vec<T> {
    let ms = g.m * g.s;
    let mut grad = vec![T::zero(); g.b * g.c * g.n];
    if grad.is_empty() || ms == 0 {
        return grad;
    }
    let row = |(r, dst): (usize, &mut [T])| {
        let src = &gout[r * ms..(r + 1) * ms];
        let ix = &idx[(r / g.c) * ms..(r / g.c + 1) * ms];
        for (&v, &i) in src.iter().zip(ix) {
            dst[i as usize] += v;
        }
    };
    if gout.len() >= PARALLEL_THRESHOLD {
        grad.par_chunks_mut(g.n).enumerate().for_each(row);
    } else {
        grad.chunks_mut(g.n).enumerate().for_each(row);
    }
    grad
}

/// Max over the last axis of `rows` rows of `s` values, with the position of the maximum: the
/// lowest one on ties; the first NaN wins (its value and position).
pub fn max_pool<T: Float>(x: &[T], rows: usize, s: usize) -> (Vec<T>, Vec<i64>) {
    let mut out = vec![T::zero(); rows];
    let mut arg = vec![0i64; rows];
    let one = |(r, (o, a)): (usize, (&mut T, &mut i64))| {
        let v = &x[r * s..(r + 1) * s];
        let (mut best, mut bi) = (v[0], 0usize);
        for (k, &e) in v.iter().enumerate().skip(1) {
            if e > best || (e.is_nan() && !best.is_nan()) {
                best = e;
                bi = k;
            }
        }
        *o = best;
        *a = bi as i64;
    };
    if x.len() >= PARALLEL_THRESHOLD {
        out.par_iter_mut()
            .zip(arg.par_iter_mut())
            .enumerate()
            .for_each(one);
    } else {
        out.iter_mut().zip(arg.iter_mut()).enumerate().for_each(one);
    }
    (out, arg)
}

/// The backward of `max_pool`: each row's gradient goes to its argmax, zeros elsewhere.
pub fn max_pool_grad<T: Float>(g: &[T], arg: &[i64], s: usize) -> Vec<T> {
    let mut gx = vec![T::zero(); g.len() * s];
    if gx.is_empty() {
        return gx;
    }
    let row = |(r, dst): (usize, &mut [T])| dst[arg[r] as usize] = g[r];
    if gx.len() >= PARALLEL_THRESHOLD {
        gx.par_chunks_mut(s).enumerate().for_each(row);
    } else {
        gx.chunks_mut(s).enumerate().for_each(row);
    }
    gx
}
