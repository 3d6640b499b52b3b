//! Reference kernels for graph aggregation: plain loops, in parallel over the batch (forward,
//! input gradient) or over the `(k, v)` rows of the adjacency gradient.
//!
//! Layouts (row-major, contiguous): `x` is `(N, K*C, T, V)`, so for a sample `n` and partition
//! `k` the `C*T` rows of `V` joints form one contiguous slab; `a` is `(K, V, V)` with rows as
//! sources; `y` and `dy` are `(N, C, T, V)`. A mask (`mask[v] != 0`: joint `v` is real) is
//! applied by *selection*, never by multiplication, so garbage (even NaN) in padded joints
//! cannot leak: masked joints of `x`, `dy` and rows/columns of `a` read as zero, and masked
//! joints of every result are written as exact zeros.

use super::Dims;
use crate::ops::PARALLEL_THRESHOLD;
use crate::Float;
use rayon::prelude::*;

/// Whether joint `v` is real (not padding).
#[inline]
fn on<T: Float>(mask: Option<&[T]>, v: usize) -> bool {
    match mask {
        Some(m) => m[v] != T::zero(),
        None => true,
    }
}

/// The adjacency with masked rows and columns replaced by zeros.
fn masked_adjacency<T: Float>(a: &[T], d: &Dims, mask: Option<&[T]>) -> Vec<T> {
    let v = d.v;
    let mut out = a.to_vec();
    if mask.is_some() {
        for (i, e) in out.iter_mut().enumerate() {
            let (src, dst) = ((i / v) % v, i % v);
            if !(on(mask, src) && on(mask, dst)) {
                *e = T::zero();
            }
        }
    }
    out
}

fn parallel(d: &Dims) -> bool {
    d.n * d.k * d.c * d.t * d.v >= PARALLEL_THRESHOLD
}

/// `y[n,c,t,w] = sum_k sum_v x[n,kC+c,t,v] * a[k,v,w]` (masked joints excluded, their outputs 0).
pub fn forward<T: Float>(x: &[T], a: &[T], mask: Option<&[T]>, d: &Dims) -> Vec<T> {
    let (v, ct) = (d.v, d.c * d.t);
    let a = masked_adjacency(a, d, mask);
    let mut y = vec![T::zero(); d.n * ct * v];
    if y.is_empty() {
        return y;
    }
    let per_sample = |(n, yn): (usize, &mut [T])| {
        for k in 0..d.k {
            let ak = &a[k * v * v..(k + 1) * v * v];
            let slab = &x[(n * d.k + k) * ct * v..(n * d.k + k + 1) * ct * v];
            for (xr, yr) in slab.chunks_exact(v).zip(yn.chunks_exact_mut(v)) {
                for (src, &xv) in xr.iter().enumerate() {
                    if !on(mask, src) {
                        continue;
                    }
                    for (yw, &aw) in yr.iter_mut().zip(&ak[src * v..(src + 1) * v]) {
                        *yw += xv * aw;
                    }
                }
            }
        }
        if mask.is_some() {
            for yr in yn.chunks_exact_mut(v) {
                for (w, yw) in yr.iter_mut().enumerate() {
                    if !on(mask, w) {
                        *yw = T::zero();
                    }
                }
            }
        }
    };
    if parallel(d) {
        y.par_chunks_mut(ct * v).enumerate().for_each(per_sample);
    } else {
        y.chunks_mut(ct * v).enumerate().for_each(per_sample);
    }
    y
}

/// `dx[n,kC+c,t,v] = sum_w dy[n,c,t,w] * a[k,v,w]` (masked joints excluded, their gradient 0).
pub fn grad_input<T: Float>(dy: &[T], a: &[T], mask: Option<&[T]>, d: &Dims) -> Vec<T> {
    let (v, ct) = (d.v, d.c * d.t);
    let a = masked_adjacency(a, d, mask);
    let mut dx = vec![T::zero(); d.n * d.k * ct * v];
    if dx.is_empty() {
        return dx;
    }
    let per_slab = |(slab, dxs): (usize, &mut [T])| {
        let (n, k) = (slab / d.k, slab % d.k);
        let ak = &a[k * v * v..(k + 1) * v * v];
        let dyn_ = &dy[n * ct * v..(n + 1) * ct * v];
        for (gr, dr) in dyn_.chunks_exact(v).zip(dxs.chunks_exact_mut(v)) {
            for (src, out) in dr.iter_mut().enumerate() {
                if !on(mask, src) {
                    continue; // stays exactly zero
                }
                let mut acc = T::zero();
                for (w, (&g, &aw)) in gr.iter().zip(&ak[src * v..(src + 1) * v]).enumerate() {
                    if on(mask, w) {
                        acc += g * aw;
                    }
                }
                *out = acc;
            }
        }
    };
    if parallel(d) {
        dx.par_chunks_mut(ct * v).enumerate().for_each(per_slab);
    } else {
        dx.chunks_mut(ct * v).enumerate().for_each(per_slab);
    }
    dx
}

/// `da[k,v,w] = sum_{n,c,t} x[n,kC+c,t,v] * dy[n,c,t,w]`, accumulated in f64; rows and columns of
/// masked joints are exactly zero.
pub fn grad_adjacency<T: Float>(x: &[T], dy: &[T], mask: Option<&[T]>, d: &Dims) -> Vec<T> {
    let (v, ct) = (d.v, d.c * d.t);
    let mut da = vec![T::zero(); d.k * v * v];
    if da.is_empty() {
        return da;
    }
    // One task per (k, source joint): a row of V sums.
    let per_row = |(row, out): (usize, &mut [T])| {
        let (k, src) = (row / v, row % v);
        if !on(mask, src) {
            return;
        }
        let mut acc = vec![0.0f64; v];
        for n in 0..d.n {
            let slab = &x[(n * d.k + k) * ct * v..(n * d.k + k + 1) * ct * v];
            let g = &dy[n * ct * v..(n + 1) * ct * v];
            for (xr, gr) in slab.chunks_exact(v).zip(g.chunks_exact(v)) {
                let xv = xr[src].f64();
                for (s, &gw) in acc.iter_mut().zip(gr) {
                    *s += xv * gw.f64();
                }
            }
        }
        for (w, (o, s)) in out.iter_mut().zip(acc).enumerate() {
            if on(mask, w) {
                *o = T::of(s);
            }
        }
    };
    if parallel(d) {
        da.par_chunks_mut(v).enumerate().for_each(per_row);
    } else {
        da.chunks_mut(v).enumerate().for_each(per_row);
    }
    da
}
