//! Matrix-product kernels on the `gemm` crate. Transposed operands are read through strides
//! (never copied). Big products let gemm split the work across threads; a batch of small
//! products is split across threads one product each instead.

use crate::Float;
use gemm::Parallelism;
use rayon::prelude::*;

/// Below this many multiply-adds a product runs on one thread (64^3).
pub const PARALLEL_MACS: usize = 64 * 64 * 64;

/// A batch of products `C[i] = op(A[i]) @ op(B[i])`, `op` transposing the stored matrix when
/// asked: `op(A)` is m x k (stored k x m when `trans_a`), `op(B)` is k x n (stored n x k when
/// `trans_b`). Product i reads A at `a_offsets[i]` and B at `b_offsets[i]`; C is contiguous.
#[derive(Clone, Debug)]
pub struct Batched {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub a_offsets: Vec<usize>,
    pub b_offsets: Vec<usize>,
}

/// `dst (m x n) = op(a) @ op(b)`, or `dst += ...` when `accumulate`. Lengths are checked with
/// real asserts: they are all that keeps the raw-pointer call in bounds.
#[allow(clippy::too_many_arguments)]
pub fn product<T: Float>(
    dst: &mut [T],
    a: &[T],
    b: &[T],
    (m, n, k): (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::zero());
        }
        return;
    }
    // Strides in elements: (row stride, column stride) of op(A) m x k and op(B) k x n.
    let (a_rs, a_cs) = if trans_a { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if trans_b { (1, k) } else { (n, 1) };
    // SAFETY: every index gemm forms is i * rs + j * cs within the m x k, k x n and m x n
    // extents asserted above; `dst` does not alias `a` or `b` (it is a `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}

fn parallelism_for(macs: usize) -> Parallelism {
    if macs >= PARALLEL_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// Runs the batch of products into a new contiguous `(batch, m, n)` buffer.
pub fn batched<T: Float>(a: &[T], b: &[T], p: &Batched) -> Vec<T> {
    let (m, n, k) = (p.m, p.n, p.k);
    let batch = p.a_offsets.len();
    let mut out = crate::buffer_cache::alloc_for_overwrite::<T>(batch * m * n);
    if out.is_empty() {
        return out;
    }
    let macs = m * n * k;
    let one = |i: usize, dst: &mut [T], parallelism| {
        product(
            dst,
            &a[p.a_offsets[i]..],
            &b[p.b_offsets[i]..],
            (m, n, k),
            p.trans_a,
            p.trans_b,
            false,
            parallelism,
        )
    };
    if batch > 1 && macs < PARALLEL_MACS && batch * macs >= PARALLEL_MACS {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, dst)| one(i, dst, Parallelism::None));
    } else {
        let parallelism = parallelism_for(macs);
        out.chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, dst)| one(i, dst, parallelism));
    }
    out
}

/// `x (rows x inp) @ w^T (w stored out x inp) + bias`, the bias written first and the product
/// accumulated onto it in the same gemm call.
pub fn linear<T: Float>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    rows: usize,
    inp: usize,
    out_features: usize,
) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_for_overwrite::<T>(rows * out_features);
    if let Some(bias) = bias {
        if out_features > 0 {
            out.chunks_mut(out_features)
                .for_each(|row| row.copy_from_slice(bias));
        }
    }
    product(
        &mut out,
        x,
        w,
        (rows, out_features, inp),
        false,
        true,
        bias.is_some(),
        parallelism_for(rows * out_features * inp),
    );
    out
}
