//! Reference kernels for elementwise ops: maps over one tensor, and broadcasting maps over two
//! or three. Large tensors are split across threads by rows of the output.

use super::{BinaryOp, UnaryOp};
use crate::ops::PARALLEL_THRESHOLD;
use crate::shape::{broadcast_strides, contiguous_strides};
use crate::Float;
use rayon::prelude::*;

/// `out[i] = f(x[i])`, in parallel chunks for large inputs.
pub fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = crate::storage::alloc_zeroed::<T>(x.len());
    if x.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(8192)
            .zip(x.par_chunks(8192))
            .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
    } else {
        out.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x));
    }
    out
}

/// `out[i] = f(a[i], b[i], c[i])` over equal-length slices, in parallel chunks for large inputs.
pub fn zip3<T: Float>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T + Sync) -> Vec<T> {
    let mut out = crate::storage::alloc_zeroed::<T>(a.len());
    // Chunk `k` of the output covers elements k*CHUNK.. of every input.
    const CHUNK: usize = 8192;
    let kernel = |k: usize, o: &mut [T]| {
        let start = k * CHUNK;
        for (i, o) in o.iter_mut().enumerate() {
            *o = f(a[start + i], b[start + i], c[start + i]);
        }
    };
    if a.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, o)| kernel(k, o));
    } else {
        out.chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, o)| kernel(k, o));
    }
    out
}

pub fn unary<T: Float>(op: UnaryOp, x: &[T]) -> Vec<T> {
    map(x, |v| op.apply(v))
}

/// `g * f'(x)` for the unary op, given the input `x`, its output `y` and the output gradient `g`.
pub fn unary_grad<T: Float>(op: UnaryOp, x: &[T], y: &[T], g: &[T]) -> Vec<T> {
    zip3(x, y, g, |x, y, g| g * op.derivative(x, y))
}

/// `out = f(a, b, c)` with each input broadcast to `out_dims` (inputs given with their own dims).
/// Works row by row over the output's last dimension so the inner loop has fixed strides.
pub fn broadcast_map3<T: Float>(
    inputs: [(&[T], &[usize]); 3],
    out_dims: &[usize],
    f: impl Fn(T, T, T) -> T + Sync,
) -> Vec<T> {
    let n: usize = out_dims.iter().product();
    let mut out = crate::storage::alloc_zeroed::<T>(n);
    if n == 0 {
        return out;
    }
    let rank = out_dims.len();
    let row = if rank == 0 { 1 } else { out_dims[rank - 1] };
    let strides: Vec<Vec<usize>> = inputs
        .iter()
        .map(|(_, d)| broadcast_strides(d, out_dims))
        .collect();
    let out_strides = contiguous_strides(out_dims);
    let last = |s: &Vec<usize>| if rank == 0 { 0 } else { s[rank - 1] };
    let inner = [last(&strides[0]), last(&strides[1]), last(&strides[2])];
    let kernel = |(r, o): (usize, &mut [T])| {
        // Offsets of the row's first element in each input.
        let start = r * row;
        let mut off = [0usize; 3];
        let mut rem = start;
        for d in 0..rank.saturating_sub(1) {
            let i = rem / out_strides[d];
            rem %= out_strides[d];
            for k in 0..3 {
                off[k] += i * strides[k][d];
            }
        }
        let (a, b, c) = (inputs[0].0, inputs[1].0, inputs[2].0);
        for (j, o) in o.iter_mut().enumerate() {
            *o = f(
                a[off[0] + j * inner[0]],
                b[off[1] + j * inner[1]],
                c[off[2] + j * inner[2]],
            );
        }
    };
    if n >= PARALLEL_THRESHOLD && row > 0 {
        out.par_chunks_mut(row).enumerate().for_each(kernel);
    } else {
        out.chunks_mut(row).enumerate().for_each(kernel);
    }
    out
}

pub fn binary<T: Float>(
    op: BinaryOp,
    a: &[T],
    a_dims: &[usize],
    b: &[T],
    b_dims: &[usize],
    out_dims: &[usize],
) -> Vec<T> {
    if a_dims == b_dims {
        // No broadcasting: a flat zip, the common case in training.
        return zip3(a, b, b, |x, y, _| op.apply(x, y));
    }
    broadcast_map3(
        [(a, a_dims), (b, b_dims), (b, b_dims)],
        out_dims,
        |x, y, _| op.apply(x, y),
    )
}

/// `cond != 0 ? a : b`, all three broadcast to `out_dims`.
pub fn select<T: Float>(
    cond: (&[T], &[usize]),
    a: (&[T], &[usize]),
    b: (&[T], &[usize]),
    out_dims: &[usize],
) -> Vec<T> {
    broadcast_map3(
        [cond, a, b],
        out_dims,
        |c, x, y| if c != T::zero() { x } else { y },
    )
}
