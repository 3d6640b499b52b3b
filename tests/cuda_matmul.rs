//! Matrix products on CUDA (cuBLAS through the row-major wrappers) against the CPU reference,
//! forward and backward: odd shapes (1x1x1 up to 65x129x257, tall 4097-row and thin 1023-row
//! products), every transpose combination, batches with and without broadcasting (one
//! strided-batched call, stride-0 broadcast, and the outer product of batches that needs several
//! calls), vectors, `linear` with and without a bias, an f64 case, empty dimensions, repeatability
//! and the device-mismatch error. Skips without a GPU.
//!
//! Gradients of broadcast operands and of linear's bias are sums over batch dimensions, so the
//! tests marked "needs the CUDA sum" also exercise the reduce family's kernels.

mod common;
use common::gpu::*;
use rcmcl::engine::{DType, Error, Tensor};

/// (m, k, n): `(m x k) @ (k x n)`. One element; warp-straddling sizes; a thin inner dimension
/// under many rows; a block-plus-one row count; sizes off every power of two.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (31, 33, 17),
    (1023, 5, 33),
    (4097, 3, 2),
    (65, 129, 257),
];

fn seed(m: usize, k: usize, n: usize) -> u64 {
    (m * 1_000_003 + k * 1009 + n) as u64
}

#[test]
fn matmul_at_odd_shapes() {
    on_each_gpu("matmul_at_odd_shapes", |device| {
        for &(m, k, n) in SHAPES {
            let s = seed(m, k, n);
            let (a, b) = (randn(&[m, k], s), randn(&[k, n], s + 1));
            check_agrees(&format!("matmul {m}x{k} @ {k}x{n}"), device, &[a, b], |t| {
                t[0].matmul(&t[1])
            });
        }
    });
}

#[test]
fn transposed_operands_at_odd_shapes() {
    on_each_gpu("transposed_operands_at_odd_shapes", |device| {
        for &(m, k, n) in SHAPES {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a_dims = if ta { [k, m] } else { [m, k] };
                let b_dims = if tb { [n, k] } else { [k, n] };
                let s = seed(m, k, n) + 7;
                let (a, b) = (randn(&a_dims, s), randn(&b_dims, s + 1));
                check_agrees(
                    &format!("matmul_transposed({ta}, {tb}) {a_dims:?} {b_dims:?}"),
                    device,
                    &[a, b],
                    |t| t[0].matmul_transposed(&t[1], ta, tb),
                );
            }
        }
    });
}

#[test]
fn batched_products_without_broadcasting() {
    on_each_gpu("batched_products_without_broadcasting", |device| {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (m, k, n) = (33, 17, 31);
            let a_dims = if ta { [2, 3, k, m] } else { [2, 3, m, k] };
            let b_dims = if tb { [2, 3, n, k] } else { [2, 3, k, n] };
            let (a, b) = (randn(&a_dims, 11), randn(&b_dims, 12));
            check_agrees(
                &format!("batched ({ta}, {tb}) {a_dims:?} {b_dims:?}"),
                device,
                &[a, b],
                |t| t[0].matmul_transposed(&t[1], ta, tb),
            );
        }
        // Attention-like: many small products in one call, the right operand transposed.
        let (q, kk) = (randn(&[8, 4, 33, 16], 13), randn(&[8, 4, 31, 16], 14));
        check_agrees("q @ k^T [8, 4, 33, 16]", device, &[q, kk], |t| {
            t[0].matmul_transposed(&t[1], false, true)
        });
        // A batch of 1023 one-element products.
        let (a, b) = (randn(&[1023, 1, 1], 15), randn(&[1023, 1, 1], 16));
        check_agrees("batch of 1023 1x1x1", device, &[a, b], |t| {
            t[0].matmul(&t[1])
        });
    });
}

#[test]
fn a_shared_right_matrix_and_vectors() {
    on_each_gpu("a_shared_right_matrix_and_vectors", |device| {
        // (batch, m, k) @ (k, n): one product of the batch-flattened left operand; the right
        // gradient is one product too (no sum). A transposed left operand is in the broadcast
        // test: its right gradient is a sum over the batch.
        for (ta, tb) in [(false, false), (false, true)] {
            let a_dims = if ta { [3, 17, 31] } else { [3, 31, 17] };
            let b_dims = if tb { [33, 17] } else { [17, 33] };
            let (a, b) = (randn(&a_dims, 21), randn(&b_dims, 22));
            check_agrees(
                &format!("shared right ({ta}, {tb}) {a_dims:?} {b_dims:?}"),
                device,
                &[a, b],
                |t| t[0].matmul_transposed(&t[1], ta, tb),
            );
        }
        // Row vector times matrix, matrix times column vector, and a dot product.
        let (v, m, w) = (randn(&[33], 23), randn(&[33, 1023], 24), randn(&[1023], 25));
        check_agrees("v @ M @ w", device, &[v, m, w], |t| {
            t[0].matmul(&t[1])?.matmul(&t[2])
        });
    });
}

#[test]
fn broadcast_batches_needs_the_cuda_sum() {
    on_each_gpu("broadcast_batches_needs_the_cuda_sum", |device| {
        let cases: &[(&[usize], &[usize])] = &[
            // A shared left matrix: stride 0 on the left, one call.
            (&[31, 17], &[3, 17, 33]),
            // Broadcast inside the batch dimensions.
            (&[4, 1, 31, 17], &[1, 3, 17, 33]),
            (&[2, 1, 2, 3], &[3, 3, 2]),
            (&[1, 5, 9, 7], &[6, 1, 7, 4]),
        ];
        for (k, &(a_dims, b_dims)) in cases.iter().enumerate() {
            let (a, b) = (randn(a_dims, 31 + k as u64), randn(b_dims, 41 + k as u64));
            check_agrees(
                &format!("broadcast {a_dims:?} @ {b_dims:?}"),
                device,
                &[a, b],
                |t| t[0].matmul(&t[1]),
            );
        }
        // A shared right matrix under a transposed left batch: one stride-0 call forward.
        for tb in [false, true] {
            let b_dims = if tb { [33, 17] } else { [17, 33] };
            let (a, b) = (randn(&[3, 17, 31], 53), randn(&b_dims, 54));
            check_agrees(
                &format!("shared right (true, {tb}) [3, 17, 31] @ {b_dims:?}"),
                device,
                &[a, b],
                |t| t[0].matmul_transposed(&t[1], true, tb),
            );
        }
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a_dims: &[usize] = if ta { &[3, 1, 17, 31] } else { &[3, 1, 31, 17] };
            let b_dims: &[usize] = if tb { &[4, 33, 17] } else { &[4, 17, 33] };
            let (a, b) = (randn(a_dims, 51), randn(b_dims, 52));
            check_agrees(
                &format!("broadcast ({ta}, {tb}) {a_dims:?} @ {b_dims:?}"),
                device,
                &[a, b],
                |t| t[0].matmul_transposed(&t[1], ta, tb),
            );
        }
    });
}

#[test]
fn linear_without_bias() {
    on_each_gpu("linear_without_bias", |device| {
        for &(rows, inp, out) in SHAPES {
            let (x, w) = (randn(&[rows, inp], 61), randn(&[out, inp], 62));
            check_agrees(
                &format!("linear x [{rows}, {inp}] w [{out}, {inp}]"),
                device,
                &[x, w],
                |t| Tensor::linear(&t[0], &t[1], None),
            );
        }
        let (x, w) = (randn(&[2, 33, 31], 63), randn(&[17, 31], 64));
        check_agrees("linear rank 3", device, &[x, w], |t| {
            Tensor::linear(&t[0], &t[1], None)
        });
    });
}

#[test]
fn linear_with_bias_needs_the_cuda_sum() {
    on_each_gpu("linear_with_bias_needs_the_cuda_sum", |device| {
        for &(rows, inp, out) in SHAPES {
            let (x, w, b) = (
                randn(&[rows, inp], 71),
                randn(&[out, inp], 72),
                randn(&[out], 73),
            );
            check_agrees(
                &format!("linear+bias x [{rows}, {inp}] w [{out}, {inp}]"),
                device,
                &[x, w, b],
                |t| Tensor::linear(&t[0], &t[1], Some(&t[2])),
            );
        }
        let (x, w, b) = (
            randn(&[2, 3, 1023], 74),
            randn(&[33, 1023], 75),
            randn(&[33], 76),
        );
        check_agrees("linear+bias rank 3", device, &[x, w, b], |t| {
            Tensor::linear(&t[0], &t[1], Some(&t[2]))
        });
        let (x, w, b) = (randn(&[31], 77), randn(&[5, 31], 78), randn(&[5], 79));
        check_agrees("linear+bias vector input", device, &[x, w, b], |t| {
            Tensor::linear(&t[0], &t[1], Some(&t[2]))
        });
    });
}

#[test]
fn products_in_f64() {
    on_each_gpu("products_in_f64", |device| {
        let f64s = |t: Tensor| t.to_dtype(DType::F64).unwrap();
        for &(m, k, n) in SHAPES {
            let s = seed(m, k, n) + 3;
            let (a, b) = (f64s(randn(&[m, k], s)), f64s(randn(&[k, n], s + 1)));
            check_agrees(&format!("f64 {m}x{k} @ {k}x{n}"), device, &[a, b], |t| {
                t[0].matmul(&t[1])
            });
        }
        let (a, b) = (
            f64s(randn(&[2, 3, 17, 31], 81)),
            f64s(randn(&[2, 3, 33, 31], 82)),
        );
        check_agrees("f64 batched a @ b^T", device, &[a, b], |t| {
            t[0].matmul_transposed(&t[1], false, true)
        });
        let (x, w) = (f64s(randn(&[65, 129], 83)), f64s(randn(&[257, 129], 84)));
        check_agrees("f64 linear", device, &[x, w], |t| {
            Tensor::linear(&t[0], &t[1], None)
        });
        // f64 must be true double precision: far tighter than f32 could give.
        let (a, b) = (f64s(randn(&[64, 300], 85)), f64s(randn(&[300, 64], 86)));
        let want = a.matmul(&b).unwrap().to_f64_vec().unwrap();
        let got = a
            .to_device(device)
            .unwrap()
            .matmul(&b.to_device(device).unwrap())
            .unwrap()
            .to_f64_vec()
            .unwrap();
        let (diff, norm) = want.iter().zip(&got).fold((0.0, 0.0), |(d, n), (w, g)| {
            (d + (w - g) * (w - g), n + w * w)
        });
        let rel = (diff / norm).sqrt();
        assert!(rel < 1e-12, "f64 product: relative error {rel:e}");
    });
}

#[test]
fn empty_dimensions() {
    on_each_gpu("empty_dimensions", |device| {
        // An empty inner dimension: a 3x4 product of zeros (the output is poisoned first, so an
        // unwritten zero fails), and empty gradients.
        let cases: &[(&[usize], &[usize])] = &[
            (&[3, 0], &[0, 4]),
            (&[0, 5], &[5, 4]),
            (&[3, 5], &[5, 0]),
            (&[2, 0, 3], &[3, 4]),
            (&[2, 3, 0], &[2, 0, 4]),
        ];
        for &(a_dims, b_dims) in cases {
            let (a, b) = (randn(a_dims, 91), randn(b_dims, 92));
            let out = check_agrees(
                &format!("empty {a_dims:?} @ {b_dims:?}"),
                device,
                &[a, b],
                |t| t[0].matmul(&t[1]),
            );
            assert!(out.to_f64_vec().unwrap().iter().all(|&v| v == 0.0));
        }
        let (x, w) = (randn(&[3, 0], 93), randn(&[4, 0], 94));
        let y = Tensor::linear(
            &x.to_device(device).unwrap(),
            &w.to_device(device).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(y.dims(), &[3, 4]);
        assert_eq!(y.to_f64_vec().unwrap(), vec![0.0; 12]);
        // With a bias and no inputs, every row is the bias.
        let b = randn(&[4], 95);
        let y = Tensor::linear(
            &x.to_device(device).unwrap(),
            &w.to_device(device).unwrap(),
            Some(&b.to_device(device).unwrap()),
        )
        .unwrap();
        let bias = b.to_f64_vec().unwrap();
        assert_eq!(y.to_f64_vec().unwrap(), [&bias[..], &bias, &bias].concat());
    });
}

#[test]
fn products_are_repeatable_and_devices_must_match() {
    on_each_gpu("products_are_repeatable_and_devices_must_match", |device| {
        let (a, b) = (randn(&[257, 129], 101), randn(&[129, 65], 102));
        let (ga, gb) = (a.to_device(device).unwrap(), b.to_device(device).unwrap());
        let first = ga.matmul(&gb).unwrap().to_f64_vec().unwrap();
        for _ in 0..3 {
            let again = ga.matmul(&gb).unwrap().to_f64_vec().unwrap();
            assert!(
                first
                    .iter()
                    .zip(&again)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "the same product gave different bits"
            );
        }
        let err = ga.matmul(&b).unwrap_err();
        assert!(
            matches!(err, Error::DeviceMismatch { op: "matmul", .. }),
            "{err}"
        );
        let err = Tensor::linear(&a, &gb, None).unwrap_err();
        assert!(
            matches!(err, Error::DeviceMismatch { op: "linear", .. }),
            "{err}"
        );
        let err = ga
            .matmul(&randn(&[128, 3], 103).to_device(device).unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::Shape { op: "matmul", .. }), "{err}");
    });
}
