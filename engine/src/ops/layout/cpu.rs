//! Copy kernels for the layout ops. Every kernel works row by row over its output, after merging
//! dimensions that are contiguous in both source and destination, so the inner loop is one
//! `copy_from_slice` wherever the layout allows it. Large outputs are split across threads by rows.

use crate::ops::PARALLEL_THRESHOLD;
use crate::shape::contiguous_strides;
use rayon::prelude::*;

/// Element types the copies move (every dtype: copies never look at the values).
pub trait Elem: crate::storage::Element {}
impl<T: crate::storage::Element> Elem for T {}

/// Runs `kernel(row_index, row)` over consecutive rows of `out`, in parallel for large outputs.
pub(crate) fn for_each_row<T: Elem>(
    out: &mut [T],
    row: usize,
    kernel: impl Fn(usize, &mut [T]) + Sync,
) {
    if out.is_empty() || row == 0 {
        return;
    }
    if out.len() >= PARALLEL_THRESHOLD && out.len() > row {
        // Several rows per task so short rows do not drown in scheduling overhead.
        let rows_per_task = (4096 / row).max(1);
        out.par_chunks_mut(row * rows_per_task)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (r, o) in chunk.chunks_mut(row).enumerate() {
                    kernel(c * rows_per_task + r, o);
                }
            });
    } else {
        out.chunks_mut(row)
            .enumerate()
            .for_each(|(r, o)| kernel(r, o));
    }
}

/// Drops size-1 dimensions and merges neighbours that are contiguous in the source, so
/// `(dims, strides)` describes the same gather with as few (and as long) rows as possible.
fn simplify(dims: &[usize], strides: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut d: Vec<usize> = Vec::with_capacity(dims.len());
    let mut s: Vec<usize> = Vec::with_capacity(dims.len());
    for (&n, &st) in dims.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        match (d.last_mut(), s.last_mut()) {
            (Some(pd), Some(ps)) if *ps == st * n => {
                *pd *= n;
                *ps = st;
            }
            _ => {
                d.push(n);
                s.push(st);
            }
        }
    }
    if d.is_empty() {
        d.push(1);
        s.push(1);
    }
    (d, s)
}

/// Source offset of the first element of output row `r`, where rows run over all dims but the last.
#[inline]
fn row_offset(mut r: usize, outer_dims: &[usize], outer_strides: &[usize]) -> usize {
    let mut off = 0;
    for (&d, &s) in outer_dims.iter().zip(outer_strides).rev() {
        off += (r % d) * s;
        r /= d;
    }
    off
}

/// `out[i0, .., in] = src[offset + sum(i_k * strides[k])]` for an output of shape `dims`: the
/// one gather behind permute (strides permuted) and narrow (an offset into the input).
pub fn strided_copy<T: Elem>(
    src: &[T],
    offset: usize,
    dims: &[usize],
    strides: &[usize],
) -> Vec<T> {
    let n: usize = dims.iter().product();
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(n);
    if n == 0 {
        return out;
    }
    let (d, s) = simplify(dims, strides);
    let last = d.len() - 1;
    let (row, inner_stride) = (d[last], s[last]);
    let (outer_dims, outer_strides) = (&d[..last], &s[..last]);
    for_each_row(&mut out, row, |r, o| {
        let base = offset + row_offset(r, outer_dims, outer_strides);
        if inner_stride == 1 {
            o.copy_from_slice(&src[base..base + row]);
        } else {
            for (j, o) in o.iter_mut().enumerate() {
                *o = src[base + j * inner_stride];
            }
        }
    });
    out
}

/// The input of shape `dims` laid out with its axes in the order `perm`.
pub fn permute<T: Elem>(src: &[T], dims: &[usize], perm: &[usize]) -> Vec<T> {
    let strides = contiguous_strides(dims);
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    strided_copy(src, 0, &out_dims, &out_strides)
}

/// The box `starts[k] .. starts[k] + out_dims[k]` of an input of shape `dims`.
pub fn crop<T: Elem>(src: &[T], dims: &[usize], starts: &[usize], out_dims: &[usize]) -> Vec<T> {
    let strides = contiguous_strides(dims);
    let offset = starts.iter().zip(&strides).map(|(a, s)| a * s).sum();
    strided_copy(src, offset, out_dims, &strides)
}

/// The input of shape `dims` surrounded by `pads[k] = (before, after)` elements of `value` on
/// each dimension k.
pub fn pad<T: Elem>(src: &[T], dims: &[usize], pads: &[(usize, usize)], value: T) -> Vec<T> {
    // An unpadded dimension merges into the one before it: padding a dimension by p rows of a
    // whole block is padding the merged dimension by p * block elements.
    let mut d: Vec<usize> = Vec::with_capacity(dims.len());
    let mut p: Vec<(usize, usize)> = Vec::with_capacity(dims.len());
    for (&n, &(lo, hi)) in dims.iter().zip(pads) {
        match (d.last_mut(), p.last_mut()) {
            (Some(pd), Some(pp)) if lo == 0 && hi == 0 => {
                *pd *= n;
                pp.0 *= n;
                pp.1 *= n;
            }
            _ => {
                d.push(n);
                p.push((lo, hi));
            }
        }
    }
    if d.is_empty() {
        // A 0-dimensional tensor has nothing to pad.
        return src.to_vec();
    }
    let out_dims: Vec<usize> = d.iter().zip(&p).map(|(n, (lo, hi))| lo + n + hi).collect();
    let mut out = vec![value; out_dims.iter().product()];
    if src.is_empty() {
        return out;
    }
    let last = d.len() - 1;
    let src_strides = contiguous_strides(&d);
    let (row_in, (lo_last, _)) = (d[last], p[last]);
    for_each_row(&mut out, out_dims[last], |mut r, o| {
        // Walk the row's index from the last outer dimension up; rows in the padding stay `value`.
        let mut base = 0;
        for k in (0..last).rev() {
            let i = r % out_dims[k];
            r /= out_dims[k];
            if i < p[k].0 || i >= p[k].0 + d[k] {
                return;
            }
            base += (i - p[k].0) * src_strides[k];
        }
        o[lo_last..lo_last + row_in].copy_from_slice(&src[base..base + row_in]);
    });
    out
}

/// Joins inputs along one axis. Each input is given as its elements and its `run`: the size of
/// the concat axis times the product of the dimensions after it, i.e. the contiguous block it
/// contributes to each of the `outer` output blocks.
pub fn concat<T: Elem>(inputs: &[(&[T], usize)], outer: usize) -> Vec<T> {
    let block: usize = inputs.iter().map(|(_, run)| run).sum();
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(outer * block);
    for_each_row(&mut out, block, |o, dst| {
        let mut at = 0;
        for &(src, run) in inputs {
            dst[at..at + run].copy_from_slice(&src[o * run..(o + 1) * run]);
            at += run;
        }
    });
    out
}
