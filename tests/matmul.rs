//! Matrix products (matmul, matmul_transposed, linear): hand-computed values, every transpose
//! combination, batch broadcasting, f32 against an f64 naive triple loop on odd and
//! parallel-path sizes, gradients against finite differences, and shape errors.

mod common;
use common::*;
use rcmcl::engine::{DType, Device, Error, Tensor};

/// Row-major naive product of `(m, k)` and `(k, n)` in f64, plus the sum of |a||b| per output
/// (the scale of the rounding error a float product may make).
fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0; m * n];
    let mut scale = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                out[i * n + j] += a[i * k + p] * b[p * n + j];
                scale[i * n + j] += (a[i * k + p] * b[p * n + j]).abs();
            }
        }
    }
    (out, scale)
}

/// The naive batched matmul with NumPy broadcasting of the batch dimensions.
fn naive_batched(a: &Tensor, b: &Tensor) -> (Vec<usize>, Vec<f64>) {
    let (ad, bd) = (a.dims(), b.dims());
    let (m, k, n) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let (ab, bb) = (&ad[..ad.len() - 2], &bd[..bd.len() - 2]);
    let r = ab.len().max(bb.len());
    let pad = |d: &[usize]| {
        let mut v = vec![1; r - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (ab, bb) = (pad(ab), pad(bb));
    let batch: Vec<usize> = ab.iter().zip(&bb).map(|(x, y)| *x.max(y)).collect();
    let count: usize = batch.iter().product();
    let (av, bv) = (values(a), values(b));
    let mut out = Vec::new();
    for i in 0..count {
        // Batch index, then each operand's own (broadcast) matrix number.
        let mut rem = i;
        let (mut ia, mut ib, mut sa, mut sb) = (0, 0, 1, 1);
        for d in (0..r).rev() {
            let c = rem % batch[d];
            rem /= batch[d];
            ia += if ab[d] == 1 { 0 } else { c * sa };
            ib += if bb[d] == 1 { 0 } else { c * sb };
            sa *= ab[d];
            sb *= bb[d];
        }
        let am = &av[ia * m * k..(ia + 1) * m * k];
        let bm = &bv[ib * k * n..(ib + 1) * k * n];
        out.extend(naive(am, bm, m, k, n).0);
    }
    let mut dims = batch;
    dims.extend([m, n]);
    (dims, out)
}

#[test]
fn matmul_hand_values() {
    let a = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t64(&[5.0, 6.0, 7.0, 8.0], &[2, 2]);
    assert_eq!(values(&a.matmul(&b).unwrap()), vec![19.0, 22.0, 43.0, 50.0]);
    let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t64(&[1.0, 0.0, -1.0, 2.0, 0.5, 1.0], &[3, 2]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.dims(), &[2, 2]);
    assert_eq!(values(&c), vec![0.5, 7.0, 2.0, 16.0]);
    // 1-D operands: a row vector on the left, a column vector on the right.
    let v = t64(&[1.0, -1.0], &[2]);
    let r = v.matmul(&a).unwrap();
    assert_eq!(r.dims(), &[3]);
    assert_eq!(values(&r), vec![-3.0, -3.0, -3.0]);
    let w = t64(&[1.0, 0.0, 2.0], &[3]);
    let r = a.matmul(&w).unwrap();
    assert_eq!(r.dims(), &[2]);
    assert_eq!(values(&r), vec![7.0, 16.0]);
    let dot = w.matmul(&w).unwrap();
    assert_eq!(dot.dims(), &[] as &[usize]);
    assert_eq!(dot.item().unwrap(), 5.0);
    // f32 gives the same small exact values.
    let c32 = a
        .to_dtype(DType::F32)
        .unwrap()
        .matmul(&b.to_dtype(DType::F32).unwrap())
        .unwrap();
    assert_eq!(c32.dtype(), DType::F32);
    assert_eq!(values(&c32), vec![0.5, 7.0, 2.0, 16.0]);
}

#[test]
fn transposed_operands_match_explicit_transposes() {
    // Batch-broadcast operands stored in each orientation.
    let a = rand64(&[2, 3, 4], 1); // op(a) = a: (2, 3, 4); a^T stored as (2, 4, 3)
    let b = rand64(&[4, 5], 2);
    let at = a.t().unwrap();
    let bt = b.t().unwrap();
    let want = values(&a.matmul(&b).unwrap());
    for (x, y, ta, tb) in [
        (&a, &b, false, false),
        (&at, &b, true, false),
        (&a, &bt, false, true),
        (&at, &bt, true, true),
    ] {
        let got = x.matmul_transposed(y, ta, tb).unwrap();
        assert_eq!(got.dims(), &[2, 3, 5]);
        assert_close(&values(&got), &want, 1e-12);
    }
    // The right operand batched, the left shared.
    let l = rand64(&[3, 4], 3);
    let r = rand64(&[2, 5, 4], 4);
    let want = values(&l.matmul(&r.t().unwrap()).unwrap());
    let got = l.t().unwrap().matmul_transposed(&r, true, true).unwrap();
    assert_close(&values(&got), &want, 1e-12);
}

#[test]
fn batch_broadcasting() {
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[3, 2, 4], &[4, 5], &[3, 2, 5]),
        (&[2, 4], &[3, 4, 5], &[3, 2, 5]),
        (&[3, 2, 4], &[3, 4, 5], &[3, 2, 5]),
        (&[2, 1, 2, 4], &[3, 4, 5], &[2, 3, 2, 5]),
        (&[1, 2, 4], &[3, 4, 5], &[3, 2, 5]),
        (&[3, 1, 2, 4], &[1, 2, 4, 5], &[3, 2, 2, 5]),
        (&[3, 2, 4], &[1, 4, 5], &[3, 2, 5]),
        // Many small products: the batch runs in parallel, one product per task.
        (&[64, 16, 16], &[64, 16, 16], &[64, 16, 16]),
    ];
    for (seed, &(ad, bd, want_dims)) in cases.iter().enumerate() {
        let a = rand64(ad, seed as u64);
        let b = rand64(bd, 50 + seed as u64);
        let c = a.matmul(&b).unwrap();
        let (dims, want) = naive_batched(&a, &b);
        assert_eq!(c.dims(), want_dims);
        assert_eq!(dims, want_dims);
        assert_close(&values(&c), &want, 1e-12);
    }
}

fn check_f32_against_f64_naive(m: usize, k: usize, n: usize, seed: u64) {
    let a = rand64(&[m, k], seed).to_dtype(DType::F32).unwrap();
    let b = rand64(&[k, n], seed + 1).to_dtype(DType::F32).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.dims(), &[m, n]);
    assert_eq!(c.dtype(), DType::F32);
    // The reference multiplies the very f32 values the kernel saw, in f64.
    let (want, scale) = naive(&values(&a), &values(&b), m, k, n);
    let got = values(&c);
    for i in 0..m * n {
        // The classical bound for a k-term dot product: |error| <= k * u * sum|a b|, with u
        // the unit roundoff (eps / 2). A wrong index or a dropped term is far outside it.
        let bound = k as f64 * (f32::EPSILON as f64 / 2.0) * scale[i];
        assert!(
            (got[i] - want[i]).abs() <= bound,
            "{m}x{k}x{n} element {i}: got {}, want {} (bound {bound})",
            got[i],
            want[i]
        );
    }
}

#[test]
fn f32_matches_naive_f64_on_odd_sizes() {
    check_f32_against_f64_naive(67, 45, 71, 1);
    check_f32_against_f64_naive(1, 45, 71, 2);
    check_f32_against_f64_naive(67, 1, 3, 3);
}

#[test]
fn f32_matches_naive_f64_on_parallel_path() {
    // 300 * 250 * 200 multiply-adds: far past the threshold where gemm splits across threads.
    check_f32_against_f64_naive(300, 200, 250, 4);
}

#[test]
fn f64_large_batched_matches_naive() {
    let a = rand64(&[2, 70, 80], 5);
    let b = rand64(&[2, 80, 90], 6);
    let (_, want) = naive_batched(&a, &b);
    assert_close(&values(&a.matmul(&b).unwrap()), &want, 1e-12);
}

#[test]
fn empty_products() {
    let a = rand64(&[3, 0], 1);
    let b = rand64(&[0, 4], 2);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.dims(), &[3, 4]);
    assert_eq!(values(&c), vec![0.0; 12]);
    assert_eq!(b.matmul(&rand64(&[4, 2], 3)).unwrap().dims(), &[0, 2]);
}

#[test]
fn linear_values() {
    let x = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let w = t64(&[1.0, 0.0, -1.0, 0.5, 0.5, 0.5], &[2, 3]);
    let b = t64(&[10.0, -1.0], &[2]);
    let y = Tensor::linear(&x, &w, Some(&b)).unwrap();
    assert_eq!(y.dims(), &[2, 2]);
    assert_eq!(values(&y), vec![8.0, 2.0, 8.0, 6.5]);
    let y = Tensor::linear(&x, &w, None).unwrap();
    assert_eq!(values(&y), vec![-2.0, 3.0, -2.0, 7.5]);
    // Leading dimensions are kept, and the result is x @ w^T + b.
    let x = rand64(&[2, 3, 5], 1);
    let w = rand64(&[4, 5], 2);
    let b = rand64(&[4], 3);
    let y = Tensor::linear(&x, &w, Some(&b)).unwrap();
    assert_eq!(y.dims(), &[2, 3, 4]);
    let want = x.matmul(&w.t().unwrap()).unwrap().add(&b).unwrap();
    assert_close(&values(&y), &values(&want), 1e-12);
    // A large f32 layer (parallel gemm) against the same composition.
    let x = rand64(&[256, 300], 4).to_dtype(DType::F32).unwrap();
    let w = rand64(&[200, 300], 5).to_dtype(DType::F32).unwrap();
    let b = rand64(&[200], 6).to_dtype(DType::F32).unwrap();
    let y = Tensor::linear(&x, &w, Some(&b)).unwrap();
    let want = x.matmul(&w.t().unwrap()).unwrap().add(&b).unwrap();
    assert_close(&values(&y), &values(&want), 1e-5);
}

#[test]
fn matmul_gradients() {
    gradcheck(
        "matmul_2d",
        |t| t[0].matmul(&t[1]),
        &[rand64(&[3, 4], 1), rand64(&[4, 5], 2)],
    );
    // Batched left, shared right: the right gradient is one product of flattened operands.
    gradcheck(
        "matmul_batch_left",
        |t| t[0].matmul(&t[1]),
        &[rand64(&[3, 2, 4], 3), rand64(&[4, 5], 4)],
    );
    // Shared left, batched right: the left gradient is summed over the batch.
    gradcheck(
        "matmul_batch_right",
        |t| t[0].matmul(&t[1]),
        &[rand64(&[2, 4], 5), rand64(&[3, 4, 5], 6)],
    );
    gradcheck(
        "matmul_batch_both_broadcast",
        |t| t[0].matmul(&t[1]),
        &[rand64(&[2, 1, 2, 3], 7), rand64(&[3, 3, 2], 8)],
    );
    gradcheck(
        "matmul_vectors",
        |t| t[0].matmul(&t[1])?.matmul(&t[2]),
        &[rand64(&[3], 9), rand64(&[3, 4], 10), rand64(&[4], 11)],
    );
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a_dims: &[usize] = if ta { &[2, 4, 3] } else { &[2, 3, 4] };
        let b_dims: &[usize] = if tb { &[5, 4] } else { &[4, 5] };
        gradcheck(
            &format!("matmul_transposed_{ta}_{tb}"),
            |t| t[0].matmul_transposed(&t[1], ta, tb),
            &[rand64(a_dims, 12), rand64(b_dims, 13)],
        );
        // And with the right operand batched, the left broadcast.
        let a_dims: &[usize] = if ta { &[4, 3] } else { &[3, 4] };
        let b_dims: &[usize] = if tb { &[2, 5, 4] } else { &[2, 4, 5] };
        gradcheck(
            &format!("matmul_transposed_right_batch_{ta}_{tb}"),
            |t| t[0].matmul_transposed(&t[1], ta, tb),
            &[rand64(a_dims, 14), rand64(b_dims, 15)],
        );
    }
}

#[test]
fn linear_gradients() {
    gradcheck(
        "linear_bias",
        |t| Tensor::linear(&t[0], &t[1], Some(&t[2])),
        &[rand64(&[2, 3, 5], 1), rand64(&[4, 5], 2), rand64(&[4], 3)],
    );
    gradcheck(
        "linear_no_bias",
        |t| Tensor::linear(&t[0], &t[1], None),
        &[rand64(&[3, 5], 4), rand64(&[2, 5], 5)],
    );
    gradcheck(
        "linear_vector_input",
        |t| Tensor::linear(&t[0], &t[1], Some(&t[2])),
        &[rand64(&[5], 6), rand64(&[3, 5], 7), rand64(&[3], 8)],
    );
}

#[test]
fn matmul_errors() {
    let a = rand64(&[2, 3], 1);
    let err = a.matmul(&rand64(&[4, 5], 2)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Shape { op: "matmul", .. }), "{msg}");
    assert!(
        msg.contains("[2, 3]") && msg.contains("[4, 5]") && msg.contains("3 vs 4"),
        "{msg}"
    );
    // A 1-D operand's error names the shape the caller passed.
    let msg = a.matmul(&rand64(&[4], 2)).unwrap_err().to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4]"), "{msg}");
    let msg = rand64(&[2, 2, 3], 1)
        .matmul(&rand64(&[3, 3, 4], 2))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("batch") && msg.contains("[2, 2, 3]") && msg.contains("[3, 3, 4]"),
        "{msg}"
    );
    let s = Tensor::scalar(1.0, DType::F64, Device::Cpu).unwrap();
    assert!(matches!(a.matmul(&s).unwrap_err(), Error::Shape { .. }));
    assert!(matches!(
        a.matmul_transposed(&rand64(&[2], 3), true, false)
            .unwrap_err(),
        Error::Shape { op: "matmul", .. }
    ));
    let a32 = a.to_dtype(DType::F32).unwrap();
    assert!(matches!(
        a32.matmul(&rand64(&[3, 2], 3)).unwrap_err(),
        Error::DTypeMismatch { op: "matmul", .. }
    ));
    let i = idx(&[1, 2, 3, 4], &[2, 2]);
    assert!(matches!(
        i.matmul(&i).unwrap_err(),
        Error::DType { op: "matmul", .. }
    ));
    let w = rand64(&[4, 3], 4);
    assert!(matches!(
        Tensor::linear(&rand64(&[2, 5], 5), &w, None).unwrap_err(),
        Error::Shape { op: "linear", .. }
    ));
    assert!(matches!(
        Tensor::linear(&a, &w, Some(&rand64(&[3], 6))).unwrap_err(),
        Error::Shape { op: "linear", .. }
    ));
    assert!(matches!(
        Tensor::linear(&a, &rand64(&[4, 3, 1], 7), None).unwrap_err(),
        Error::Shape { op: "linear", .. }
    ));
}
