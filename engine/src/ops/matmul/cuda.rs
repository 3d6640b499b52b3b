//! CUDA launches for this family: every product goes through cuBLAS (`cublasSgemm` /
//! `cublasDgemm`, and their strided-batched forms for batches); kernels/matmul.cu holds the one
//! helper around them (linear's bias).
//!
//! Row-major wrappers: cuBLAS is column-major, and a row-major `r x c` matrix is the same bytes
//! as a column-major `c x r` one, its transpose. So the row-major `C = op(A) op(B)` (m x n) is
//! computed as the column-major `C^T = op(B)^T op(A)^T` (n x m): the operands swap places, and a
//! transposed operand is only a flag (`CUBLAS_OP_T`), never a copy.
//!
//! Batches: the CPU plan gives each product's offsets into A and B. Consecutive products whose
//! offsets advance by constant steps (0 for a broadcast operand) become one strided-batched call,
//! so a batch without broadcasting, or with one operand broadcast over the whole batch, is one
//! call; `(B, 1, m, k) @ (1, C, k, n)` is B calls of C products each.
//!
//! Precision: f32 products are true fp32 (`CUBLAS_DEFAULT_MATH`) unless
//! `engine::cuda::set_allow_tf32(true)` switches them to TF32 tensor cores
//! (`CUBLAS_TF32_TENSOR_OP_MATH`); the mode is set on the handle before every product. cuBLAS
//! gives the same bits on every run on one device and library version; its summation order
//! differs from the CPU's, so results agree with the CPU to f32 rounding, not bit for bit.

use super::cpu::Batched;
use crate::cuda::{Arg, CudaStorage, Gpu};
use crate::{DType, Error, Result};
use cudarc::cublas::{result as blas, sys};
use std::os::raw::{c_int, c_longlong};
use std::sync::Arc;

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &["bias_rows_f32", "bias_rows_f64"];

/// The most products one strided-batched call takes (cuBLAS's batch count is a C `int`).
const MAX_BATCH: usize = i32::MAX as usize;

/// Consecutive products `first .. first + count` of a plan that one cuBLAS call computes:
/// product `first + t` reads A at `a0 + t * sa` and B at `b0 + t * sb` (elements).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Run {
    first: usize,
    count: usize,
    a0: usize,
    b0: usize,
    sa: usize,
    sb: usize,
}

/// Splits a plan's products into maximal runs of constant offset steps (greedy, in order).
fn runs(p: &Batched) -> Vec<Run> {
    let (a, b) = (&p.a_offsets, &p.b_offsets);
    let total = a.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < total {
        let (mut sa, mut sb, mut count) = (0, 0, 1);
        if i + 1 < total && a[i + 1] >= a[i] && b[i + 1] >= b[i] {
            (sa, sb, count) = (a[i + 1] - a[i], b[i + 1] - b[i], 2);
            while i + count < total
                && count < MAX_BATCH
                && a[i + count].checked_sub(a[i + count - 1]) == Some(sa)
                && b[i + count].checked_sub(b[i + count - 1]) == Some(sb)
            {
                count += 1;
            }
        }
        out.push(Run {
            first: i,
            count,
            a0: a[i],
            b0: b[i],
            sa,
            sb,
        });
        i += count;
    }
    out
}

/// The arguments of one column-major cuBLAS call (`cublas<t>gemmStridedBatched`, or
/// `cublas<t>gemm` when `count == 1`), in cuBLAS's names: its first operand ("A") is our B, its
/// second ("B") our A. Offsets and strides are in elements.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BlasCall {
    trans_first: bool,
    trans_second: bool,
    m: c_int,
    n: c_int,
    k: c_int,
    /// Offset into our B buffer, its leading dimension and batch stride.
    first_off: usize,
    ld_first: c_int,
    stride_first: c_longlong,
    /// Offset into our A buffer, its leading dimension and batch stride.
    second_off: usize,
    ld_second: c_int,
    stride_second: c_longlong,
    /// Offset into C, its leading dimension and batch stride.
    c_off: usize,
    ldc: c_int,
    stride_c: c_longlong,
    count: c_int,
}

fn int(what: &str, v: usize) -> Result<c_int> {
    c_int::try_from(v).map_err(|_| {
        Error::invalid(
            "matmul",
            format!("{what} {v} exceeds cuBLAS's 32-bit limit ({})", c_int::MAX),
        )
    })
}

fn long(what: &str, v: usize) -> Result<c_longlong> {
    c_longlong::try_from(v)
        .map_err(|_| Error::invalid("matmul", format!("{what} {v} exceeds 64 bits")))
}

/// The row-major run `C[first + t] = op(A)(m x k) @ op(B)(k x n)` as a column-major call:
/// `C^T (n x m) = op(B)^T op(A)^T`. Stored row-major, B (k x n, or n x k when transposed) reads
/// column-major as B^T with leading dimension n (or B with leading dimension k, transposed back
/// by the flag); likewise A (m x k, or k x m) with leading dimension k (or m); C^T has leading
/// dimension n. Leading dimensions are at least 1, as cuBLAS requires even for empty extents.
fn blas_call(p: &Batched, run: &Run) -> Result<BlasCall> {
    let (m, n, k) = (p.m, p.n, p.k);
    Ok(BlasCall {
        trans_first: p.trans_b,
        trans_second: p.trans_a,
        m: int("the output's column count", n)?,
        n: int("the output's row count", m)?,
        k: int("the inner dimension", k)?,
        first_off: run.b0,
        ld_first: int(
            "the right operand's row length",
            if p.trans_b { k } else { n }.max(1),
        )?,
        stride_first: long("a batch stride", run.sb)?,
        second_off: run.a0,
        ld_second: int(
            "the left operand's row length",
            if p.trans_a { m } else { k }.max(1),
        )?,
        stride_second: long("a batch stride", run.sa)?,
        c_off: run.first * m * n,
        ldc: int("the output's row length", n.max(1))?,
        stride_c: long("a batch stride", m * n)?,
        count: int("the batch count", run.count)?,
    })
}

fn op(trans: bool) -> sys::cublasOperation_t {
    if trans {
        sys::cublasOperation_t::CUBLAS_OP_T
    } else {
        sys::cublasOperation_t::CUBLAS_OP_N
    }
}

/// Runs `calls` on `gpu`'s cuBLAS handle: `c = op(a) op(b)` (`accumulate`: `c += ...`).
fn execute(
    gpu: &Arc<Gpu>,
    dtype: DType,
    calls: &[BlasCall],
    (a, b, c): (u64, u64, u64),
    accumulate: bool,
) -> Result<()> {
    let tf32 = dtype == DType::F32 && crate::cuda::allow_tf32();
    gpu.with_blas(|handle| {
        let mode = if tf32 {
            sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: a live handle, used under the device's blas lock.
        unsafe { sys::cublasSetMathMode(handle, mode) }
            .result()
            .map_err(|e| Error::cuda("setting the cuBLAS math mode", e))?;
        for call in calls {
            match dtype {
                DType::F32 => gemm_f32(handle, call, (a, b, c), accumulate)?,
                DType::F64 => gemm_f64(handle, call, (a, b, c), accumulate)?,
                DType::I64 => {
                    return Err(Error::DType {
                        op: "matmul",
                        got: dtype,
                        msg: "expected a floating-point tensor".into(),
                    })
                }
            }
        }
        Ok(())
    })
}

macro_rules! gemm_fn {
    ($name:ident, $t:ty, $one:ident, $batched:ident) => {
        /// One call; the caller guarantees every extent `call` implies lies inside the buffers.
        fn $name(
            handle: sys::cublasHandle_t,
            call: &BlasCall,
            (a, b, c): (u64, u64, u64),
            accumulate: bool,
        ) -> Result<()> {
            let size = std::mem::size_of::<$t>() as u64;
            let first = (b + call.first_off as u64 * size) as *const $t;
            let second = (a + call.second_off as u64 * size) as *const $t;
            let out = (c + call.c_off as u64 * size) as *mut $t;
            let alpha: $t = 1.0;
            let beta: $t = if accumulate { 1.0 } else { 0.0 };
            // SAFETY: the pointers are device addresses of live buffers of the handle's device;
            // the plan's extents (checked against the buffer lengths by the caller) keep every
            // access in bounds; `out` does not overlap the operands (a fresh buffer); alpha and
            // beta are host scalars that outlive the call (cuBLAS reads them before returning,
            // in its default host pointer mode). With beta = 0, cuBLAS does not read C, so a
            // NaN-poisoned output is overwritten, not propagated.
            let r = unsafe {
                if call.count == 1 {
                    blas::$one(
                        handle,
                        op(call.trans_first),
                        op(call.trans_second),
                        call.m,
                        call.n,
                        call.k,
                        &alpha,
                        first,
                        call.ld_first,
                        second,
                        call.ld_second,
                        &beta,
                        out,
                        call.ldc,
                    )
                } else {
                    blas::$batched(
                        handle,
                        op(call.trans_first),
                        op(call.trans_second),
                        call.m,
                        call.n,
                        call.k,
                        &alpha,
                        first,
                        call.ld_first,
                        call.stride_first,
                        second,
                        call.ld_second,
                        call.stride_second,
                        &beta,
                        out,
                        call.ldc,
                        call.stride_c,
                        call.count,
                    )
                }
            };
            r.map_err(|e| {
                Error::cuda(
                    format!(
                        "cuBLAS {} (m {}, n {}, k {}, batch {})",
                        stringify!($one),
                        call.m,
                        call.n,
                        call.k,
                        call.count
                    ),
                    e,
                )
            })
        }
    };
}
gemm_fn!(gemm_f32, f32, sgemm, sgemm_strided_batched);
gemm_fn!(gemm_f64, f64, dgemm, dgemm_strided_batched);

/// The dtype both operands share, or the error the CPU path gives.
fn float_pair(op: &'static str, a: &CudaStorage, b: &CudaStorage) -> Result<DType> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            a: a.dtype(),
            b: b.dtype(),
        });
    }
    if !a.dtype().is_float() {
        return Err(Error::DType {
            op,
            got: a.dtype(),
            msg: "expected a floating-point tensor".into(),
        });
    }
    Ok(a.dtype())
}

/// The largest element any product of the plan reads, plus one, for each operand.
fn extents(p: &Batched) -> (usize, usize) {
    let last = |offs: &[usize], size: usize| offs.iter().max().map_or(0, |&o| o + size);
    (last(&p.a_offsets, p.m * p.k), last(&p.b_offsets, p.k * p.n))
}

/// Every product of the plan into a new contiguous `(batch, m, n)` buffer, as `cpu::batched`.
pub(crate) fn batched(a: &CudaStorage, b: &CudaStorage, p: &Batched) -> Result<CudaStorage> {
    let dtype = float_pair("matmul", a, b)?;
    let (need_a, need_b) = extents(p);
    if a.len() < need_a || b.len() < need_b {
        return Err(Error::invalid(
            "matmul",
            format!(
                "the plan reads {need_a} and {need_b} elements, the operands hold {} and {}",
                a.len(),
                b.len()
            ),
        ));
    }
    let gpu = a.gpu().clone();
    let len = p.a_offsets.len() * p.m * p.n;
    if len == 0 {
        return CudaStorage::alloc(&gpu, 0, dtype);
    }
    if p.k == 0 {
        // Empty sums: zeros, as on the CPU (no cuBLAS call for an empty inner dimension).
        return CudaStorage::zeros(&gpu, len, dtype);
    }
    let calls = runs(p)
        .iter()
        .map(|r| blas_call(p, r))
        .collect::<Result<Vec<_>>>()?;
    let out = CudaStorage::alloc(&gpu, len, dtype)?;
    execute(&gpu, dtype, &calls, (a.ptr(), b.ptr(), out.ptr()), false)?;
    Ok(out)
}

/// `x (rows x inp) @ w^T (w stored out x inp) + bias`, as `cpu::linear`. cuBLAS's gemm has no
/// fused bias, so the bias is written into every output row first (`bias_rows`, one pass) and
/// the product accumulated onto it (beta = 1): the CPU's order of operations.
pub(crate) fn linear(
    x: &CudaStorage,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
    (rows, inp, out_features): (usize, usize, usize),
) -> Result<CudaStorage> {
    let dtype = float_pair("linear", x, w)?;
    if let Some(bias) = bias {
        float_pair("linear", x, bias)?;
        if bias.len() != out_features {
            return Err(Error::invalid(
                "linear",
                format!(
                    "the bias holds {} elements, the output has {out_features} features",
                    bias.len()
                ),
            ));
        }
    }
    if x.len() < rows * inp || w.len() < out_features * inp {
        return Err(Error::invalid(
            "linear",
            format!(
                "input of {} and weight of {} elements for {rows} x {inp} and {out_features} x {inp}",
                x.len(),
                w.len()
            ),
        ));
    }
    let gpu = x.gpu().clone();
    let len = rows * out_features;
    if len == 0 {
        return CudaStorage::alloc(&gpu, 0, dtype);
    }
    let out = match bias {
        Some(bias) => {
            let out = CudaStorage::alloc(&gpu, len, dtype)?;
            gpu.launch(
                "matmul",
                &out.kernel("bias_rows"),
                gpu.grid_for(len),
                &[
                    bias.arg(),
                    out.arg(),
                    Arg::I64(rows as i64),
                    Arg::I64(out_features as i64),
                ],
            )?;
            out
        }
        None if inp == 0 => return CudaStorage::zeros(&gpu, len, dtype),
        None => CudaStorage::alloc(&gpu, len, dtype)?,
    };
    if inp > 0 {
        let p = Batched {
            m: rows,
            n: out_features,
            k: inp,
            trans_a: false,
            trans_b: true,
            a_offsets: vec![0],
            b_offsets: vec![0],
        };
        let calls = runs(&p)
            .iter()
            .map(|r| blas_call(&p, r))
            .collect::<Result<Vec<_>>>()?;
        execute(
            &gpu,
            dtype,
            &calls,
            (x.ptr(), w.ptr(), out.ptr()),
            bias.is_some(),
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The row-major wrapper checked without a GPU: a transcription of cuBLAS's documented
    //! column-major strided-batched gemm runs the calls `blas_call` makes, and must reproduce the
    //! CPU's batched product for every transpose combination and batch pattern.
    use super::*;

    /// cuBLAS's `gemmStridedBatched` on host slices, as its documentation defines it:
    /// `C[t] = alpha op(A[t]) op(B[t]) + beta C[t]`, column-major, `A[t] = A + t * strideA`.
    fn reference_blas(call: &BlasCall, first: &[f64], second: &[f64], c: &mut [f64]) {
        let (m, n, k) = (call.m as usize, call.n as usize, call.k as usize);
        let (lda, ldb, ldc) = (
            call.ld_first as usize,
            call.ld_second as usize,
            call.ldc as usize,
        );
        for t in 0..call.count as usize {
            let a = call.first_off + t * call.stride_first as usize;
            let b = call.second_off + t * call.stride_second as usize;
            let co = call.c_off + t * call.stride_c as usize;
            for j in 0..n {
                for i in 0..m {
                    let mut s = 0.0;
                    for l in 0..k {
                        let av = if call.trans_first {
                            first[a + l + i * lda]
                        } else {
                            first[a + i + l * lda]
                        };
                        let bv = if call.trans_second {
                            second[b + j + l * ldb]
                        } else {
                            second[b + l + j * ldb]
                        };
                        s += av * bv;
                    }
                    c[co + i + j * ldc] = s;
                }
            }
        }
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 1009) as f64 / 97.0 - 5.0)
            .collect()
    }

    /// Plans like mod.rs's for batch shapes `ab` and `bb` broadcast together.
    fn plan(
        ab: &[usize],
        bb: &[usize],
        (m, n, k): (usize, usize, usize),
        trans: (bool, bool),
    ) -> (Batched, usize, usize) {
        let rank = ab.len().max(bb.len());
        let pad = |s: &[usize]| {
            let mut v = vec![1; rank - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (ab, bb) = (pad(ab), pad(bb));
        let batch: Vec<usize> = ab.iter().zip(&bb).map(|(&x, &y)| x.max(y)).collect();
        let count: usize = batch.iter().product();
        let offsets = |own: &[usize], size: usize| {
            (0..count)
                .map(|i| {
                    let (mut rem, mut off, mut stride) = (i, 0, size);
                    for d in (0..rank).rev() {
                        let idx = rem % batch[d];
                        rem /= batch[d];
                        if own[d] != 1 {
                            off += idx * stride;
                        }
                        stride *= own[d];
                    }
                    off
                })
                .collect::<Vec<_>>()
        };
        let p = Batched {
            m,
            n,
            k,
            trans_a: trans.0,
            trans_b: trans.1,
            a_offsets: offsets(&ab, m * k),
            b_offsets: offsets(&bb, k * n),
        };
        (p, ab.iter().product(), bb.iter().product())
    }

    fn check(ab: &[usize], bb: &[usize], mnk: (usize, usize, usize), expect_calls: usize) {
        for trans in [(false, false), (true, false), (false, true), (true, true)] {
            let (p, na, nb) = plan(ab, bb, mnk, trans);
            let (m, n, k) = mnk;
            let a = values(na * m * k, 1);
            let b = values(nb * k * n, 2);
            let want = super::super::cpu::batched(&a, &b, &p);
            let mut got = vec![f64::NAN; want.len()];
            let calls: Vec<BlasCall> = runs(&p).iter().map(|r| blas_call(&p, r).unwrap()).collect();
            assert_eq!(calls.len(), expect_calls, "{ab:?} @ {bb:?} {mnk:?}: calls");
            for call in &calls {
                assert!(call.ld_first >= 1 && call.ld_second >= 1 && call.ldc >= 1);
                // cuBLAS's documented requirements on the leading dimensions.
                let rows_first = if call.trans_first { call.k } else { call.m };
                let rows_second = if call.trans_second { call.n } else { call.k };
                assert!(call.ld_first >= rows_first.max(1));
                assert!(call.ld_second >= rows_second.max(1));
                assert!(call.ldc >= call.m.max(1));
                reference_blas(call, &b, &a, &mut got);
            }
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                assert!(
                    (w - g).abs() <= 1e-9 * w.abs().max(1.0),
                    "{ab:?} @ {bb:?} {mnk:?} {trans:?}: element {i}: want {w} got {g}"
                );
            }
        }
    }

    #[test]
    fn the_row_major_wrapper_reproduces_the_cpu_product() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (31, 17, 33), (4, 1, 9), (1, 6, 2)] {
            check(&[], &[], (m, n, k), 1);
            check(&[3], &[3], (m, n, k), 1);
            check(&[2, 3], &[2, 3], (m, n, k), 1);
            // One operand broadcast over the batch: stride 0, still one call.
            check(&[4], &[1], (m, n, k), 1);
            check(&[1], &[4], (m, n, k), 1);
            check(&[2, 3], &[], (m, n, k), 1);
            check(&[], &[5], (m, n, k), 1);
            // Outer product of batches: one call per left batch entry.
            check(&[3, 1], &[1, 4], (m, n, k), 3);
            check(&[2, 1, 3], &[4, 1], (m, n, k), 8);
        }
    }

    #[test]
    fn runs_split_where_the_steps_change() {
        let p = Batched {
            m: 1,
            n: 1,
            k: 1,
            trans_a: false,
            trans_b: false,
            a_offsets: vec![0, 0, 0, 5, 5, 5, 9],
            b_offsets: vec![0, 2, 4, 0, 2, 4, 0],
        };
        let r = runs(&p);
        assert_eq!(
            r.iter()
                .map(|r| (r.first, r.count, r.sa, r.sb))
                .collect::<Vec<_>>(),
            vec![(0, 3, 0, 2), (3, 3, 0, 2), (6, 1, 0, 0)]
        );
        let single = Batched {
            a_offsets: vec![7],
            b_offsets: vec![3],
            ..p
        };
        assert_eq!(
            runs(&single),
            vec![Run {
                first: 0,
                count: 1,
                a0: 7,
                b0: 3,
                sa: 0,
                sb: 0
            }]
        );
    }

    #[test]
    fn dimensions_beyond_32_bits_are_an_error() {
        let p = Batched {
            m: 1 << 31,
            n: 1,
            k: 1,
            trans_a: false,
            trans_b: false,
            a_offsets: vec![0],
            b_offsets: vec![0],
        };
        let err = blas_call(&p, &runs(&p)[0]).unwrap_err().to_string();
        assert!(err.contains("32-bit"), "{err}");
    }
}
