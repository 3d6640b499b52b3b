//! Softmax, log-softmax and the fused cross-entropy: forward values against hand-computed ones,
//! any axis, large-logit stability, gradients against finite differences, error cases.

mod common;
use common::*;
use rcmcl::engine::{Error, Reduction, Tensor};

/// Softmax along `axis` of a row-major tensor, computed naively in f64 (no max subtraction, so
/// only for moderate inputs).
fn naive_softmax(x: &[f64], dims: &[usize], axis: usize) -> Vec<f64> {
    let outer: usize = dims[..axis].iter().product();
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let mut out = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let total: f64 = (0..n).map(|k| x[at(k)].exp()).sum();
            for k in 0..n {
                out[at(k)] = x[at(k)].exp() / total;
            }
        }
    }
    out
}

#[test]
fn softmax_of_a_known_vector() {
    let x = t64(&[1.0, 2.0, 3.0], &[3]);
    // exp(k) / (e + e^2 + e^3) for k = 1, 2, 3.
    let want = [
        0.090_030_573_170_380_46,
        0.244_728_471_054_797_64,
        0.665_240_955_774_821_9,
    ];
    assert_close(&values(&x.softmax(-1).unwrap()), &want, 1e-15);
    let log_want: Vec<f64> = want.iter().map(|p| p.ln()).collect();
    assert_close(&values(&x.log_softmax(0).unwrap()), &log_want, 1e-15);
    assert_close(
        &log_want,
        &[
            -2.407_605_964_444_38,
            -1.407_605_964_444_38,
            -0.407_605_964_444_38,
        ],
        1e-13,
    );
}

#[test]
fn softmax_along_every_axis() {
    let dims = [2, 3, 4];
    let x = rand64(&dims, 3);
    let xv = values(&x);
    for axis in 0..3 {
        let want = naive_softmax(&xv, &dims, axis);
        let got = x.softmax(axis as isize).unwrap();
        assert_eq!(got.dims(), &dims);
        assert_close(&values(&got), &want, 1e-14);
        // Negative axes name the same dimension.
        let neg = x.softmax(axis as isize - 3).unwrap();
        assert_eq!(values(&neg), values(&got));
        let logs: Vec<f64> = want.iter().map(|p| p.ln()).collect();
        assert_close(
            &values(&x.log_softmax(axis as isize).unwrap()),
            &logs,
            1e-13,
        );
    }
}

#[test]
fn large_logits_do_not_overflow() {
    let x = t64(&[1000.0, 1001.0, 1002.0, -1000.0, 0.0, 1000.0], &[2, 3]);
    let y = values(&x.softmax(1).unwrap());
    let shifted = naive_softmax(&[0.0, 1.0, 2.0], &[3], 0);
    assert_close(&y[..3], &shifted, 1e-14);
    assert_close(&y[3..], &[0.0, (-1000.0f64).exp(), 1.0], 1e-14);
    let ly = values(&x.log_softmax(1).unwrap());
    assert!(ly.iter().all(|v| v.is_finite()), "{ly:?}");
    assert_close(&ly[3..], &[-2000.0, -1000.0, 0.0], 1e-14);
    // The same in f32, where exp(1000) would be infinite.
    let x32 = t32(&[1000.0, 1001.0, 1002.0], &[1, 3]);
    let y32 = values(&x32.softmax(-1).unwrap());
    assert_close(&y32, &shifted, 1e-6);
    let ce = x32
        .cross_entropy(&idx(&[0], &[1]), Reduction::Mean, 0.0)
        .unwrap();
    assert_close(&[ce.item().unwrap()], &[2.407_605_964_444_38], 1e-6);
    // Gradients through huge logits stay finite.
    let leaf = x.with_requires_grad().unwrap();
    let loss = leaf
        .cross_entropy(&idx(&[2, 0], &[2]), Reduction::Sum, 0.1)
        .unwrap();
    assert_close(
        &[loss.item().unwrap()],
        &[0.9 * 0.407_605_964_444_38 + 0.1 * 1.407_605_964_444_38 + 0.9 * 2000.0 + 0.1 * 1000.0],
        1e-12,
    );
    loss.backward().unwrap();
    assert!(values(&leaf.grad().unwrap()).iter().all(|v| v.is_finite()));
}

#[test]
fn f32_matches_f64() {
    let x = rand64(&[3, 5, 2], 8);
    let x32 = x.to_dtype(rcmcl::engine::DType::F32).unwrap();
    for axis in [0isize, 1, 2] {
        assert_close(
            &values(&x32.softmax(axis).unwrap()),
            &values(&x.softmax(axis).unwrap()),
            1e-6,
        );
        assert_close(
            &values(&x32.log_softmax(axis).unwrap()),
            &values(&x.log_softmax(axis).unwrap()),
            1e-6,
        );
    }
    let t = idx(&[4, 0, 2, 1, 3, 3], &[3, 2]);
    for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        assert_close(
            &values(&x32.cross_entropy(&t, r, 0.2).unwrap()),
            &values(&x.cross_entropy(&t, r, 0.2).unwrap()),
            1e-6,
        );
    }
}

#[test]
fn softmax_gradients() {
    let cases: [(&[usize], isize); 6] = [
        (&[7], 0),
        (&[3, 5], -1),
        (&[3, 5], 0),
        (&[2, 3, 4], 1),
        (&[2, 3, 4], 0),
        (&[2, 1, 3], 1),
    ];
    for (i, (dims, axis)) in cases.iter().enumerate() {
        let x = rand64(dims, 40 + i as u64);
        gradcheck("softmax", |t| t[0].softmax(*axis), std::slice::from_ref(&x));
        gradcheck(
            "log_softmax",
            |t| t[0].log_softmax(*axis),
            std::slice::from_ref(&x),
        );
    }
}

#[test]
fn softmax_sums_to_one_on_the_parallel_path() {
    // 64 blocks of 1024: above the parallel threshold.
    let x = rand64(&[64, 1024], 5).mul_scalar(10.0).unwrap();
    let y = x.softmax(-1).unwrap();
    let sums = values(&y.sum(&[-1], false).unwrap());
    assert_close(&sums, &vec![1.0; 64], 1e-13);
    // Row 17 alone (the serial path) gives the same values.
    let row: Vec<f64> = values(&x)[17 * 1024..18 * 1024].to_vec();
    let alone = t64(&row, &[1024]).softmax(0).unwrap();
    assert_eq!(values(&alone), values(&y)[17 * 1024..18 * 1024].to_vec());
}

/// The cross-entropy terms of logits (N, C) computed by hand: -sum_k q_k log p_k.
fn hand_cross_entropy(x: &[f64], c: usize, targets: &[i64], eps: f64) -> Vec<f64> {
    targets
        .iter()
        .enumerate()
        .map(|(r, &t)| {
            let row = &x[r * c..(r + 1) * c];
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            (0..c)
                .map(|k| {
                    let q = if k == t as usize { 1.0 - eps } else { 0.0 } + eps / c as f64;
                    -q * (row[k] - lse)
                })
                .sum()
        })
        .collect()
}

#[test]
fn cross_entropy_by_hand() {
    let x = t64(&[1.0, 2.0, 3.0, 1.0, 0.0, -1.0], &[2, 3]);
    let t = idx(&[2, 1], &[2]);
    // Row 0: -log softmax([1,2,3])[2]; row 1: log(e + 1 + 1/e) - 0.
    let terms = [0.407_605_964_444_38, 1.407_605_964_444_38];
    let none = x.cross_entropy(&t, Reduction::None, 0.0).unwrap();
    assert_eq!(none.dims(), &[2]);
    assert_close(&values(&none), &terms, 1e-13);
    let mean = x.cross_entropy(&t, Reduction::Mean, 0.0).unwrap();
    assert_eq!(mean.dims(), &[] as &[usize]);
    assert_close(
        &[mean.item().unwrap()],
        &[(terms[0] + terms[1]) / 2.0],
        1e-13,
    );
    let sum = x.cross_entropy(&t, Reduction::Sum, 0.0).unwrap();
    assert_close(&[sum.item().unwrap()], &[terms[0] + terms[1]], 1e-13);
    // With label smoothing.
    let smooth = x.cross_entropy(&t, Reduction::None, 0.1).unwrap();
    let want = hand_cross_entropy(&values(&x), 3, &[2, 1], 0.1);
    assert_close(&values(&smooth), &want, 1e-13);
    assert_close(
        &want,
        &[0.9 * terms[0] + 0.1 * 1.407_605_964_444_38, terms[1]],
        1e-13,
    );
}

#[test]
fn cross_entropy_gradient_is_softmax_minus_target() {
    let x = rand64(&[4, 5], 21).with_requires_grad().unwrap();
    let targets = [3i64, 0, 4, 0];
    let eps = 0.2;
    x.cross_entropy(&idx(&targets, &[4]), Reduction::Mean, eps)
        .unwrap()
        .backward()
        .unwrap();
    let p = values(&x.detach().softmax(1).unwrap());
    let want: Vec<f64> = (0..20)
        .map(|j| {
            let (r, k) = (j / 5, j % 5);
            let q = if targets[r] == k as i64 {
                1.0 - eps
            } else {
                0.0
            } + eps / 5.0;
            (p[j] - q) / 4.0
        })
        .collect();
    assert_close(&values(&x.grad().unwrap()), &want, 1e-14);
}

#[test]
fn cross_entropy_with_spatial_dims() {
    // Logits (N, C, d1, d2) = (2, 3, 2, 2): terms match a log_softmax over the class axis.
    let x = rand64(&[2, 3, 2, 2], 30);
    let tv = [0i64, 2, 1, 1, 2, 0, 0, 1];
    let t = idx(&tv, &[2, 2, 2]);
    let terms = x.cross_entropy(&t, Reduction::None, 0.0).unwrap();
    assert_eq!(terms.dims(), &[2, 2, 2]);
    let logp = values(&x.log_softmax(1).unwrap());
    let want: Vec<f64> = (0..8)
        .map(|lane| {
            let (n, i) = (lane / 4, lane % 4);
            -logp[(n * 3 + tv[lane] as usize) * 4 + i]
        })
        .collect();
    assert_close(&values(&terms), &want, 1e-13);
    let mean = x
        .cross_entropy(&t, Reduction::Mean, 0.0)
        .unwrap()
        .item()
        .unwrap();
    assert_close(&[mean], &[want.iter().sum::<f64>() / 8.0], 1e-13);
}

#[test]
fn cross_entropy_gradients() {
    let cases: [(&[usize], &[i64]); 3] = [
        (&[5, 3], &[0, 2, 1, 1, 2]),
        (&[1, 7], &[6]),
        (&[2, 3, 5], &[0, 1, 2, 2, 1, 1, 0, 2, 0, 1]),
    ];
    for (i, (dims, tv)) in cases.iter().enumerate() {
        let x = rand64(dims, 60 + i as u64);
        let mut tdims = vec![dims[0]];
        tdims.extend_from_slice(&dims[2..]);
        let t = idx(tv, &tdims);
        for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            for eps in [0.0, 0.15] {
                gradcheck(
                    "cross_entropy",
                    |a| a[0].cross_entropy(&t, r, eps),
                    std::slice::from_ref(&x),
                );
            }
        }
    }
}

#[test]
fn parallel_cross_entropy_matches_rows_alone() {
    let x = rand64(&[512, 100], 9);
    let tv: Vec<i64> = (0..512).map(|i| (i * 37 % 100) as i64).collect();
    let terms = values(
        &x.cross_entropy(&idx(&tv, &[512]), Reduction::None, 0.05)
            .unwrap(),
    );
    let want = hand_cross_entropy(&values(&x), 100, &tv, 0.05);
    assert_close(&terms, &want, 1e-13);
}

#[test]
fn errors_name_the_op() {
    let x = rand64(&[2, 3], 1);
    match x.cross_entropy(&idx(&[0, 3], &[2]), Reduction::Mean, 0.0) {
        Err(Error::Index { op, index, size }) => {
            assert_eq!((op, index, size), ("cross_entropy", 3, 3));
        }
        other => panic!("expected an index error, got {other:?}"),
    }
    let err = x
        .cross_entropy(&idx(&[-1, 0], &[2]), Reduction::Mean, 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cross_entropy") && err.contains("-1") && err.contains('3'),
        "{err}"
    );
    let err = x
        .cross_entropy(&idx(&[0, 1, 2], &[3]), Reduction::Mean, 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cross_entropy") && err.contains("[2, 3]") && err.contains("[3]"),
        "{err}"
    );
    assert!(x
        .cross_entropy(&t64(&[0.0, 1.0], &[2]), Reduction::Mean, 0.0)
        .is_err());
    assert!(x
        .cross_entropy(&idx(&[0, 1], &[2]), Reduction::Mean, 1.5)
        .is_err());
    assert!(rand64(&[3], 1)
        .cross_entropy(&idx(&[0], &[1]), Reduction::Mean, 0.0)
        .is_err());
    let err = x.softmax(2).unwrap_err().to_string();
    assert!(err.contains("softmax"), "{err}");
    assert!(idx(&[1, 2], &[2]).log_softmax(0).is_err());
    assert!(
        Tensor::zeros(
            [0, 3],
            rcmcl::engine::DType::F64,
            rcmcl::engine::Device::Cpu
        )
        .unwrap()
        .softmax(1)
        .unwrap()
        .dims()
            == [0, 3]
    );
}
