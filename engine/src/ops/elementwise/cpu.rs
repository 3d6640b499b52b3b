//! Reference kernels for elementwise ops: maps over one tensor, and broadcasting maps over two
//! or three. Large tensors are split across threads by rows of the output.

use super::{BinaryOp, UnaryOp};
use crate::ops::PARALLEL_THRESHOLD;
use crate::shape::{broadcast_strides, contiguous_strides};
use crate::Float;
use rayon::prelude::*;

/// `out[i] = f(x[i])`, in parallel chunks for large inputs.
pub fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_for_overwrite::<T>(x.len());
    if x.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(8192)
            .zip(x.par_chunks(8192))
            .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
    } else {
        out.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x));
    }
    out
}

/// Elements per parallel task.
const CHUNK: usize = 8192;

/// `out[i] = f(a[i], b[i])` over equal-length slices, in parallel chunks for large inputs.
pub fn zip2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_for_overwrite::<T>(a.len());
    let kernel = |((o, a), b): ((&mut [T], &[T]), &[T])| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    };
    if a.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(kernel);
    } else {
        kernel(((&mut out, a), b));
    }
    out
}

/// `out[i] = f(a[i], b[i], c[i])` over equal-length slices, in parallel chunks for large inputs.
pub fn zip3<T: Float>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T + Sync) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_for_overwrite::<T>(a.len());
    // Chunk `k` of the output covers elements k*CHUNK.. of every input.
    let kernel = |k: usize, o: &mut [T]| {
        let range = k * CHUNK..k * CHUNK + o.len();
        let inputs = a[range.clone()]
            .iter()
            .zip(&b[range.clone()])
            .zip(&c[range]);
        for (o, ((&a, &b), &c)) in o.iter_mut().zip(inputs) {
            *o = f(a, b, c);
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

/// Expands `$kernel!(constructor)` in the match arm of each variant of a `UnaryOp`. The kernel
/// builds the op *inside* its per-element closure, so the variant is a compile-time constant
/// there: every op gets its own branch-free, vectorisable loop, with no `match` per element.
macro_rules! for_each_unary {
    ($op:expr, $kernel:ident) => {
        match $op {
            UnaryOp::Neg => $kernel!(UnaryOp::Neg),
            UnaryOp::Exp => $kernel!(UnaryOp::Exp),
            UnaryOp::Log => $kernel!(UnaryOp::Log),
            UnaryOp::Sqrt => $kernel!(UnaryOp::Sqrt),
            UnaryOp::Abs => $kernel!(UnaryOp::Abs),
            UnaryOp::Relu => $kernel!(UnaryOp::Relu),
            UnaryOp::Gelu => $kernel!(UnaryOp::Gelu),
            UnaryOp::Sigmoid => $kernel!(UnaryOp::Sigmoid),
            UnaryOp::Tanh => $kernel!(UnaryOp::Tanh),
            UnaryOp::Softplus => $kernel!(UnaryOp::Softplus),
            UnaryOp::LeakyRelu(s) => $kernel!(UnaryOp::LeakyRelu(s)),
            UnaryOp::Powf(p) => $kernel!(UnaryOp::Powf(p)),
            UnaryOp::AddScalar(s) => $kernel!(UnaryOp::AddScalar(s)),
            UnaryOp::MulScalar(s) => $kernel!(UnaryOp::MulScalar(s)),
            UnaryOp::Clamp(lo, hi) => $kernel!(UnaryOp::Clamp(lo, hi)),
        }
    };
}

/// The same for `BinaryOp`.
macro_rules! for_each_binary {
    ($op:expr, $kernel:ident) => {
        match $op {
            BinaryOp::Add => $kernel!(BinaryOp::Add),
            BinaryOp::Sub => $kernel!(BinaryOp::Sub),
            BinaryOp::Mul => $kernel!(BinaryOp::Mul),
            BinaryOp::Div => $kernel!(BinaryOp::Div),
            BinaryOp::Maximum => $kernel!(BinaryOp::Maximum),
            BinaryOp::Minimum => $kernel!(BinaryOp::Minimum),
            BinaryOp::Gt => $kernel!(BinaryOp::Gt),
            BinaryOp::Ge => $kernel!(BinaryOp::Ge),
            BinaryOp::Lt => $kernel!(BinaryOp::Lt),
            BinaryOp::Le => $kernel!(BinaryOp::Le),
            BinaryOp::Eq => $kernel!(BinaryOp::Eq),
            BinaryOp::Ne => $kernel!(BinaryOp::Ne),
        }
    };
}

pub fn unary<T: Float>(op: UnaryOp, x: &[T]) -> Vec<T> {
    macro_rules! kernel {
        ($o:expr) => {
            map(x, move |v| $o.apply(v))
        };
    }
    for_each_unary!(op, kernel)
}

/// `g * f'(x)` for the unary op, given the input `x`, its output `y` and the output gradient `g`.
pub fn unary_grad<T: Float>(op: UnaryOp, x: &[T], y: &[T], g: &[T]) -> Vec<T> {
    macro_rules! kernel {
        ($o:expr) => {
            zip3(x, y, g, move |x, y, g| g * $o.derivative(x, y))
        };
    }
    for_each_unary!(op, kernel)
}

/// `out = f(a, b, c)` with each input broadcast to `out_dims` (inputs given with their own dims).
/// Works row by row over the output's last dimension so the inner loop has fixed strides.
pub fn broadcast_map3<T: Float>(
    inputs: [(&[T], &[usize]); 3],
    out_dims: &[usize],
    f: impl Fn(T, T, T) -> T + Sync,
) -> Vec<T> {
    let n: usize = out_dims.iter().product();
    let mut out = crate::buffer_cache::alloc_for_overwrite::<T>(n);
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
        macro_rules! flat {
            ($o:expr) => {
                zip2(a, b, move |x, y| $o.apply(x, y))
            };
        }
        return for_each_binary!(op, flat);
    }
    macro_rules! broadcast {
        ($o:expr) => {
            broadcast_map3(
                [(a, a_dims), (b, b_dims), (b, b_dims)],
                out_dims,
                move |x, y, _| $o.apply(x, y),
            )
        };
    }
    for_each_binary!(op, broadcast)
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
