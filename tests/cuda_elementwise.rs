//! Elementwise ops on CUDA against the CPU reference, forward and backward (the fused unary
//! backward kernel; binary and `where` gradients go through the same kernels): every unary op in
//! its domain, binary ops on equal shapes (the vectorised path, with tails) and broadcast ones
//! ([N, 1] with [1, M], a scalar with a tensor, rank 4 with rank 1, a middle broadcast
//! dimension), comparisons with ties, `where` / `masked_fill`, NaN propagation, an f64 case and
//! the error for layouts beyond 8 dimensions. Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::ops::elementwise::{BinaryOp, UnaryOp};
use rcmcl::engine::{DType, Device, Tensor};

/// Every unary op with an input range inside its domain (and wide enough to reach both branches
/// of sigmoid and softplus, the tails of GELU, both sides of clamp).
fn unary_cases() -> Vec<(UnaryOp, f64, f64)> {
    vec![
        (UnaryOp::Neg, -3.0, 3.0),
        (UnaryOp::Exp, -5.0, 5.0),
        (UnaryOp::Log, 0.05, 4.0),
        (UnaryOp::Sqrt, 0.05, 4.0),
        (UnaryOp::Abs, -3.0, 3.0),
        (UnaryOp::Relu, -3.0, 3.0),
        (UnaryOp::LeakyRelu(0.1), -3.0, 3.0),
        (UnaryOp::Gelu, -6.0, 6.0),
        (UnaryOp::Sigmoid, -20.0, 20.0),
        (UnaryOp::Tanh, -5.0, 5.0),
        (UnaryOp::Softplus, -20.0, 20.0),
        (UnaryOp::Powf(2.0), -3.0, 3.0),
        (UnaryOp::Powf(3.0), -2.0, 2.0),
        (UnaryOp::Powf(0.5), 0.05, 4.0),
        (UnaryOp::Powf(-1.5), 0.2, 3.0),
        (UnaryOp::Powf(0.0), -2.0, 2.0),
        (UnaryOp::AddScalar(1.5), -3.0, 3.0),
        (UnaryOp::MulScalar(-2.5), -3.0, 3.0),
        (UnaryOp::Clamp(-0.5, 0.7), -2.0, 2.0),
    ]
}

#[test]
fn every_unary_op_and_its_fused_backward_at_odd_sizes() {
    on_each_gpu(
        "every_unary_op_and_its_fused_backward_at_odd_sizes",
        |device| {
            for (k, (op, lo, hi)) in unary_cases().into_iter().enumerate() {
                for &n in ODD_SIZES {
                    let x = rand_in(&[n], lo, hi, (k * 1000 + n) as u64);
                    check_agrees(&format!("{op:?} [{n}]"), device, &[x], |t| t[0].unary(op));
                }
                // Two dimensions, and enough elements for several grid-stride passes.
                let x = rand_in(&[3, 1001], lo, hi, k as u64);
                check_agrees(&format!("{op:?} [3, 1001]"), device, &[x], |t| {
                    t[0].unary(op)
                });
            }
            let x = rand_in(&[2_500_003], -3.0, 3.0, 9);
            check_agrees("gelu [2500003]", device, &[x], |t| t[0].gelu());
        },
    );
}

#[test]
fn unary_ops_at_zero_and_the_clamp_bounds() {
    on_each_gpu("unary_ops_at_zero_and_the_clamp_bounds", |device| {
        // Kinks: relu, abs and leaky_relu at 0; clamp's closed interval at its bounds.
        let x = Tensor::from_vec(
            vec![0.0f32, -0.0, -0.5, 0.7, 1.0, -1.0, 0.25],
            [7],
            Device::Cpu,
        )
        .unwrap();
        for op in [
            UnaryOp::Relu,
            UnaryOp::Abs,
            UnaryOp::LeakyRelu(0.2),
            UnaryOp::Clamp(-0.5, 0.7),
        ] {
            check_agrees(
                &format!("{op:?} at kinks"),
                device,
                std::slice::from_ref(&x),
                |t| t[0].unary(op),
            );
        }
    });
}

#[test]
fn unary_ops_in_f64() {
    on_each_gpu("unary_ops_in_f64", |device| {
        for (k, (op, lo, hi)) in unary_cases().into_iter().enumerate() {
            let x = rand_in(&[4097], lo, hi, 70 + k as u64)
                .to_dtype(DType::F64)
                .unwrap();
            check_agrees(&format!("{op:?} f64"), device, &[x], |t| t[0].unary(op));
        }
    });
}

const ARITHMETIC: [BinaryOp; 6] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Maximum,
    BinaryOp::Minimum,
];

/// Inputs for `op`: a divisor is kept away from zero.
fn operands(op: BinaryOp, a: &[usize], b: &[usize], seed: u64) -> [Tensor; 2] {
    let x = randn(a, seed);
    let y = if op == BinaryOp::Div {
        rand_in(b, 0.5, 2.0, seed + 1)
    } else {
        randn(b, seed + 1)
    };
    [x, y]
}

fn check_binary(device: Device, op: BinaryOp, a: &[usize], b: &[usize], seed: u64) {
    let inputs = operands(op, a, b, seed);
    check_agrees(&format!("{op:?} {a:?} with {b:?}"), device, &inputs, |t| {
        t[0].binary(&t[1], op)
    });
}

#[test]
fn binary_ops_on_equal_shapes() {
    on_each_gpu("binary_ops_on_equal_shapes", |device| {
        for op in ARITHMETIC {
            for &n in ODD_SIZES {
                check_binary(device, op, &[n], &[n], n as u64);
            }
            check_binary(device, op, &[7, 3, 33], &[7, 3, 33], 5);
        }
        // Several grid-stride passes of the vectorised loop, plus a tail.
        check_binary(device, BinaryOp::Mul, &[3_000_001], &[3_000_001], 6);
        // Equal sizes, different ranks: still the flat path.
        check_binary(device, BinaryOp::Sub, &[1, 5, 33], &[5, 33], 7);
    });
}

#[test]
fn binary_ops_with_broadcasting() {
    on_each_gpu("binary_ops_with_broadcasting", |device| {
        for op in ARITHMETIC {
            for &n in ODD_SIZES {
                // An outer operation: [N, 1] with [1, M], both ways round.
                check_binary(device, op, &[n, 1], &[1, 33], n as u64);
                check_binary(device, op, &[1, 31], &[n, 1], n as u64 + 1);
                // A scalar with a tensor, both ways round.
                check_binary(device, op, &[], &[n], n as u64 + 2);
                check_binary(device, op, &[n], &[], n as u64 + 3);
                // A bias over the last dimension.
                check_binary(device, op, &[3, n], &[n], n as u64 + 4);
            }
            // Rank 4 with rank 1, a middle broadcast dimension, broadcasts on both sides.
            check_binary(device, op, &[2, 3, 4, 5], &[5], 10);
            check_binary(device, op, &[2, 1, 4, 5], &[2, 3, 4, 5], 11);
            check_binary(device, op, &[2, 1, 4, 1], &[3, 1, 5], 12);
            check_binary(device, op, &[1, 1, 1], &[2, 3, 1], 13);
        }
        // More elements than one pass of the broadcasting grid.
        check_binary(device, BinaryOp::Add, &[1500, 1001], &[1001], 14);
        check_binary(device, BinaryOp::Mul, &[1500, 1], &[1, 1001], 15);
    });
}

/// Small integers as f32, so comparisons and maximum/minimum meet ties.
fn small_ints(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 5) as f32 - 2.0
        })
        .collect();
    Tensor::from_vec(values, dims.to_vec(), Device::Cpu).unwrap()
}

#[test]
fn comparisons_and_ties() {
    on_each_gpu("comparisons_and_ties", |device| {
        let comparisons = [
            BinaryOp::Gt,
            BinaryOp::Ge,
            BinaryOp::Lt,
            BinaryOp::Le,
            BinaryOp::Eq,
            BinaryOp::Ne,
        ];
        for (k, &(a, b)) in [
            (&[1023usize][..], &[1023usize][..]),
            (&[33, 1], &[1, 31]),
            (&[4097], &[]),
            (&[2, 3, 4, 5], &[5]),
        ]
        .iter()
        .enumerate()
        {
            let inputs = [small_ints(a, k as u64 + 1), small_ints(b, k as u64 + 50)];
            for op in comparisons {
                let out = check_agrees(&format!("{op:?} {a:?} {b:?}"), device, &inputs, |t| {
                    t[0].binary(&t[1], op)
                });
                assert!(!out.requires_grad(), "{op:?}: a comparison has no gradient");
            }
            // Ties send maximum's and minimum's gradient to the first operand.
            for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
                check_agrees(
                    &format!("{op:?} with ties {a:?} {b:?}"),
                    device,
                    &inputs,
                    |t| t[0].binary(&t[1], op),
                );
            }
        }
    });
}

#[test]
fn nan_propagates_as_on_the_cpu() {
    on_each_gpu("nan_propagates_as_on_the_cpu", |device| {
        let nan = f32::NAN;
        let a = Tensor::from_vec(vec![nan, 1.0, nan, -1.0, 0.0, 2.0], [6], Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![1.0, nan, nan, -1.0, nan, 3.0], [6], Device::Cpu).unwrap();
        let (ga, gb) = (a.to_device(device).unwrap(), b.to_device(device).unwrap());
        for op in [
            UnaryOp::Relu,
            UnaryOp::Clamp(-0.5, 0.5),
            UnaryOp::LeakyRelu(0.1),
            UnaryOp::Softplus,
            UnaryOp::Abs,
        ] {
            assert_agree(
                &format!("{op:?} of NaN"),
                &a.unary(op).unwrap(),
                &ga.unary(op).unwrap(),
            );
        }
        for op in [
            BinaryOp::Maximum,
            BinaryOp::Minimum,
            BinaryOp::Add,
            BinaryOp::Gt,
            BinaryOp::Eq,
            BinaryOp::Ne,
        ] {
            assert_agree(
                &format!("{op:?} with NaN"),
                &a.binary(&b, op).unwrap(),
                &ga.binary(&gb, op).unwrap(),
            );
        }
        // A NaN condition counts as true.
        assert_agree(
            "where with a NaN condition",
            &Tensor::where_cond(&a, &b, &a).unwrap(),
            &Tensor::where_cond(&ga, &gb, &ga).unwrap(),
        );
    });
}

#[test]
fn where_and_masked_fill_with_broadcasting() {
    on_each_gpu("where_and_masked_fill_with_broadcasting", |device| {
        for &n in ODD_SIZES {
            // All three the same shape (the flat path).
            let cond = small_ints(&[n], n as u64)
                .gt(&Tensor::scalar(0.0, DType::F32, Device::Cpu).unwrap())
                .unwrap();
            let inputs = [cond, randn(&[n], 1), randn(&[n], 2)];
            check_agrees(&format!("where [{n}]"), device, &inputs, |t| {
                Tensor::where_cond(&t[0], &t[1], &t[2])
            });
            // cond [N, 1], a [N, M], b [M]; then a scalar branch.
            let inputs = [
                small_ints(&[n, 1], n as u64 + 3),
                randn(&[n, 7], 4),
                randn(&[7], 5),
            ];
            check_agrees(
                &format!("where [{n}, 1] [{n}, 7] [7]"),
                device,
                &inputs,
                |t| Tensor::where_cond(&t[0], &t[1], &t[2]),
            );
            let inputs = [
                small_ints(&[3, n], n as u64 + 6),
                randn(&[], 7),
                randn(&[n], 8),
            ];
            check_agrees(&format!("where [3, {n}] [] [{n}]"), device, &inputs, |t| {
                Tensor::where_cond(&t[0], &t[1], &t[2])
            });
        }
        // An integer condition (converted on the device).
        let cond = Tensor::from_vec(vec![0i64, 3, -1, 0, 5, 0], [2, 3], Device::Cpu).unwrap();
        let inputs = [cond, randn(&[2, 3], 9), randn(&[3], 10)];
        check_agrees("where with an i64 condition", device, &inputs, |t| {
            Tensor::where_cond(&t[0], &t[1], &t[2])
        });
        // masked_fill with a mask broadcast over the columns.
        let inputs = [randn(&[33, 5], 11), small_ints(&[33, 1], 12)];
        check_agrees("masked_fill", device, &inputs, |t| {
            t[0].masked_fill(&t[1], -1e4)
        });
    });
}

#[test]
fn binary_and_where_in_f64() {
    on_each_gpu("binary_and_where_in_f64", |device| {
        let f64s = |t: Tensor| t.to_dtype(DType::F64).unwrap();
        for op in ARITHMETIC {
            let [a, b] = operands(op, &[33, 31], &[31], 20);
            check_agrees(
                &format!("{op:?} f64 broadcast"),
                device,
                &[f64s(a), f64s(b)],
                |t| t[0].binary(&t[1], op),
            );
            let [a, b] = operands(op, &[4097], &[4097], 21);
            check_agrees(&format!("{op:?} f64"), device, &[f64s(a), f64s(b)], |t| {
                t[0].binary(&t[1], op)
            });
        }
        let inputs = [
            f64s(small_ints(&[31, 1], 22)),
            f64s(randn(&[31, 33], 23)),
            f64s(randn(&[33], 24)),
        ];
        check_agrees("where f64", device, &inputs, |t| {
            Tensor::where_cond(&t[0], &t[1], &t[2])
        });
    });
}

#[test]
fn layouts_beyond_eight_dimensions_are_a_clear_error() {
    on_each_gpu(
        "layouts_beyond_eight_dimensions_are_a_clear_error",
        |device| {
            // Alternating broadcast dimensions cannot be merged: 10 dimensions remain.
            let a_dims: Vec<usize> = (0..10).map(|k| if k % 2 == 0 { 2 } else { 1 }).collect();
            let b_dims: Vec<usize> = (0..10).map(|k| if k % 2 == 0 { 1 } else { 2 }).collect();
            let a = randn(&a_dims, 1).to_device(device).unwrap();
            let b = randn(&b_dims, 2).to_device(device).unwrap();
            let e = a.add(&b).unwrap_err().to_string();
            assert!(e.contains("8 dimensions"), "{e}");
            // Ten dimensions that merge are fine.
            let c = randn(&[2; 10], 3);
            let d = randn(&[2; 10], 4);
            assert_agree(
                "10-d same shape",
                &c.add(&d).unwrap(),
                &c.to_device(device)
                    .unwrap()
                    .add(&d.to_device(device).unwrap())
                    .unwrap(),
            );
        },
    );
}

/// Achieved bandwidth of the same-shape kernels against a device-to-device copy of the same
/// buffer: the issue asks elementwise ops for at least 85% of the copy's. A timing, so ignored by
/// default; run alone (it switches output poisoning off, which would add a write per output):
/// `cargo test --release --features cuda --test cuda_elementwise -- --ignored --nocapture`.
#[cfg(feature = "cuda")]
#[test]
#[ignore]
fn same_shape_maps_reach_most_of_the_copy_bandwidth() {
    use rcmcl::engine::{cuda, Storage};
    use std::time::Instant;
    on_each_gpu(
        "same_shape_maps_reach_most_of_the_copy_bandwidth",
        |device| {
            cuda::set_poison_outputs(false);
            let n = 1usize << 26; // 256 MiB of f32 per tensor: far beyond any cache
            let x = Tensor::rand_uniform([n], -1.0, 1.0, 1, DType::F32, device).unwrap();
            let y = Tensor::rand_uniform([n], -1.0, 1.0, 2, DType::F32, device).unwrap();
            let seconds = |f: &dyn Fn()| {
                f(); // warm-up: compiles the kernel, fills the allocator's cache
                cuda::synchronize(device).unwrap();
                let reps = 20;
                let start = Instant::now();
                for _ in 0..reps {
                    f();
                }
                cuda::synchronize(device).unwrap();
                start.elapsed().as_secs_f64() / reps as f64
            };
            let bytes = (n * 4) as f64;
            let copy = seconds(&|| match &*x.storage() {
                Storage::Cuda(c) => drop(c.duplicate().unwrap()),
                Storage::Cpu(_) => unreachable!("x is on the device"),
            });
            let copy_bw = 2.0 * bytes / copy;
            println!("{device}: device-to-device copy {:.0} GB/s", copy_bw / 1e9);
            // (name, bytes moved per element byte, held to the bound, op). GELU's erfc costs enough
            // arithmetic that it may be compute-bound; it is reported, not held to the bound.
            let cases: [(&str, f64, bool, &dyn Fn()); 4] = [
                ("relu", 2.0, true, &|| drop(x.relu().unwrap())),
                ("add", 3.0, true, &|| drop(x.add(&y).unwrap())),
                ("where", 4.0, true, &|| {
                    drop(Tensor::where_cond(&x, &y, &x).unwrap())
                }),
                ("gelu", 2.0, false, &|| drop(x.gelu().unwrap())),
            ];
            let mut slow = Vec::new();
            for (name, moved, required, f) in cases {
                let bw = moved * bytes / seconds(f);
                let ratio = bw / copy_bw;
                println!(
                    "{device}: {name} {:.0} GB/s = {:.0}% of the copy",
                    bw / 1e9,
                    ratio * 100.0
                );
                if required && ratio < 0.85 {
                    slow.push(format!("{name} at {:.0}%", ratio * 100.0));
                }
            }
            assert!(slow.is_empty(), "below 85% of the copy bandwidth: {slow:?}");
        },
    );
}
