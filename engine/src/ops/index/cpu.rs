//! Index kernels. The selects copy whole contiguous runs where the layout allows; the adds are
//! written so each output block has one writer (parallel and deterministic, no atomics).
//! Indices are validated by the caller: every value is in `0..size` of its axis.

use crate::ops::layout::cpu::{for_each_row, Elem};
use crate::ops::PARALLEL_THRESHOLD;
use crate::shape::contiguous_strides;
use crate::Float;
use rayon::prelude::*;

/// A tensor seen as `(outer, size, inner)` around one axis.
#[derive(Clone, Copy, Debug)]
pub struct AxisView {
    pub outer: usize,
    pub size: usize,
    pub inner: usize,
}

impl AxisView {
    pub fn new(dims: &[usize], axis: usize) -> AxisView {
        AxisView {
            outer: dims[..axis].iter().product(),
            size: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        }
    }
}

/// `out[o, j, :] = src[o, idx[j], :]` for `src` viewed as `v`; one run copy per output row.
pub fn index_select<T: Elem>(src: &[T], v: AxisView, idx: &[i64]) -> Vec<T> {
    let n = idx.len();
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(v.outer * n * v.inner);
    for_each_row(&mut out, v.inner, |r, row| {
        let (o, j) = (r / n, r % n);
        let start = (o * v.size + idx[j] as usize) * v.inner;
        row.copy_from_slice(&src[start..start + v.inner]);
    });
    out
}

/// `out[o, idx[j], :] += src[o, j, :]` for `out` viewed as `v`. The indices are bucketed by
/// target first, so each output row sums its sources itself, in index order.
pub fn index_add_into<T: Float>(out: &mut [T], v: AxisView, idx: &[i64], src: &[T]) {
    let n = idx.len();
    // Compressed lists of the positions j that target each row d: sources[starts[d]..starts[d+1]].
    let mut starts = vec![0usize; v.size + 1];
    for &d in idx {
        starts[d as usize + 1] += 1;
    }
    for d in 0..v.size {
        starts[d + 1] += starts[d];
    }
    let mut fill = starts.clone();
    let mut sources = vec![0usize; n];
    for (j, &d) in idx.iter().enumerate() {
        sources[fill[d as usize]] = j;
        fill[d as usize] += 1;
    }
    for_each_row(out, v.inner, |r, row| {
        let (o, d) = (r / v.size, r % v.size);
        for &j in &sources[starts[d]..starts[d + 1]] {
            let s = &src[(o * n + j) * v.inner..(o * n + j + 1) * v.inner];
            row.iter_mut().zip(s).for_each(|(a, &b)| *a += b);
        }
    });
}

/// Offset, in a tensor with `strides`, of flat row-major position `r` over `dims`, leaving out
/// dimension `skip` (the indexed axis, whose coordinate comes from the index values).
#[inline]
fn offset_of(mut r: usize, dims: &[usize], strides: &[usize], skip: usize) -> usize {
    let mut off = 0;
    for k in (0..dims.len()).rev() {
        let i = r % dims[k];
        r /= dims[k];
        if k != skip {
            off += i * strides[k];
        }
    }
    off
}

/// PyTorch `gather`: `out[m] = src[m with m[axis] = idx[m]]` for every index position `m`
/// (the output has the index's shape). Works a row of the last dimension at a time.
pub fn gather<T: Elem>(
    src: &[T],
    src_dims: &[usize],
    axis: usize,
    idx: &[i64],
    idx_dims: &[usize],
) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(idx.len());
    let last = idx_dims.len() - 1;
    let src_strides = contiguous_strides(src_dims);
    let row = idx_dims[last];
    // Along the last dimension both tensors are contiguous, unless that is the indexed axis.
    let step = if axis == last { 0 } else { 1 };
    let axis_stride = src_strides[axis];
    for_each_row(&mut out, row, |r, o| {
        let base = offset_of(r, &idx_dims[..last], &src_strides[..last], axis);
        let idx_row = &idx[r * row..(r + 1) * row];
        for (j, (o, &i)) in o.iter_mut().zip(idx_row).enumerate() {
            *o = src[base + j * step + i as usize * axis_stride];
        }
    });
    out
}

/// PyTorch `scatter_add_`: `out[m with m[axis] = idx[m]] += src[m]` for every index position
/// `m`. Output blocks that differ in a dimension before `axis` never receive from the same
/// position, so those blocks are filled in parallel.
pub fn scatter_add_into<T: Float>(
    out: &mut [T],
    dims: &[usize],
    axis: usize,
    idx: &[i64],
    idx_dims: &[usize],
    src: &[T],
    src_dims: &[usize],
) {
    if out.is_empty() || idx.is_empty() {
        return;
    }
    let rank = dims.len();
    let last = rank - 1;
    let (out_strides, idx_strides, src_strides) = (
        contiguous_strides(dims),
        contiguous_strides(idx_dims),
        contiguous_strides(src_dims),
    );
    let block = out_strides[axis] * dims[axis];
    let inner_rows: usize = idx_dims[axis + 1..].iter().product::<usize>()
        / if axis == last { 1 } else { idx_dims[last] };
    let row = if axis == last { 1 } else { idx_dims[last] };
    let kernel = |o: usize, dst: &mut [T]| {
        // This output block's coordinates before the axis; blocks past the index's extent
        // receive nothing.
        let mut rem = o;
        let (mut idx_base, mut src_base) = (0, 0);
        for k in (0..axis).rev() {
            let i = rem % dims[k];
            rem /= dims[k];
            if i >= idx_dims[k] {
                return;
            }
            idx_base += i * idx_strides[k];
            src_base += i * src_strides[k];
        }
        for j in 0..idx_dims[axis] {
            for t in 0..inner_rows {
                // Rows of the last dimension (or single elements when the axis is the last).
                let (mut i_off, mut s_off, mut d_off) = (
                    idx_base + j * idx_strides[axis],
                    src_base + j * src_strides[axis],
                    0,
                );
                if axis != last {
                    let mut rem = t;
                    for k in (axis + 1..last).rev() {
                        let i = rem % idx_dims[k];
                        rem /= idx_dims[k];
                        i_off += i * idx_strides[k];
                        s_off += i * src_strides[k];
                        d_off += i * out_strides[k];
                    }
                }
                for c in 0..row {
                    let target = idx[i_off + c] as usize * out_strides[axis] + d_off + c;
                    dst[target] += src[s_off + c];
                }
            }
        }
    };
    if out.len() >= PARALLEL_THRESHOLD && out.len() > block {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(o, dst)| kernel(o, dst));
    } else {
        out.chunks_mut(block)
            .enumerate()
            .for_each(|(o, dst)| kernel(o, dst));
    }
}
