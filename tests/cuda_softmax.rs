//! Softmax, log-softmax and the fused cross-entropy on CUDA against the CPU reference, forward
//! and backward (their dedicated backward kernels): rows of odd lengths (groups of warp lanes up
//! to 1024, a block per row beyond), every axis of rank-3 and rank-4 tensors (the one-thread-per-
//! lane and block-per-columns layouts), large logits, NaN and infinities, cross-entropy over
//! (N, C) and (N, C, d1, d2) with every reduction and label smoothing, the device's NaN for an
//! out-of-range target, an f64 case and bitwise reproducibility. Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::{DType, Device, Reduction, Tensor};

fn check_both(device: Device, what: &str, x: &Tensor, axis: isize) {
    let input = std::slice::from_ref(x);
    check_agrees(
        &format!("softmax {what} {:?} axis {axis}", x.dims()),
        device,
        input,
        |t| t[0].softmax(axis),
    );
    check_agrees(
        &format!("log_softmax {what} {:?} axis {axis}", x.dims()),
        device,
        input,
        |t| t[0].log_softmax(axis),
    );
}

/// Class indices in [0, classes), one per term.
fn targets(dims: &[usize], classes: usize, seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<i64> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % classes as u64) as i64
        })
        .collect();
    Tensor::from_vec(values, dims.to_vec(), Device::Cpu).unwrap()
}

fn check_cross_entropy(device: Device, logits: &Tensor, seed: u64) {
    let dims = logits.dims();
    let term_dims: Vec<usize> = std::iter::once(dims[0])
        .chain(dims[2..].iter().copied())
        .collect();
    let t = targets(&term_dims, dims[1], seed);
    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        for eps in [0.0, 0.1] {
            check_agrees(
                &format!("cross_entropy {dims:?} {reduction:?} smoothing {eps}"),
                device,
                &[logits.clone(), t.clone()],
                |x| x[0].cross_entropy(&x[1], reduction, eps),
            );
        }
    }
}

#[test]
fn softmax_along_rows_of_odd_lengths() {
    on_each_gpu("softmax_along_rows_of_odd_lengths", |device| {
        for &n in ODD_SIZES.iter().chain(&[2, 3, 1024, 1025, 20_000]) {
            let x = randn(&[5, n], n as u64).mul_scalar(3.0).unwrap();
            check_both(device, "rows", &x, -1);
        }
        // Many short rows (several per warp), and one long one.
        check_both(device, "short rows", &randn(&[10_007, 3], 1), 1);
        check_both(device, "one row", &randn(&[100_003], 2), 0);
    });
}

#[test]
fn softmax_along_every_axis_of_rank_3_and_4_tensors() {
    on_each_gpu(
        "softmax_along_every_axis_of_rank_3_and_4_tensors",
        |device| {
            let x = randn(&[7, 33, 31], 3);
            for axis in [0, 1, 2, -1] {
                check_both(device, "rank 3", &x, axis);
            }
            let x = randn(&[3, 5, 2, 66], 4);
            for axis in 0..4 {
                check_both(device, "rank 4", &x, axis);
            }
            // Middle axes longer than 64 with few lanes: a block per (up to) 32 lanes, including a
            // partial tile (inner 40) and fewer lanes than a warp (inner 3); and very many lanes.
            for dims in [[2, 300, 40], [3, 1023, 3], [4, 4097, 2], [1, 5, 300_000]] {
                check_both(device, "middle", &randn(&dims, dims[1] as u64), 1);
            }
        },
    );
}

#[test]
fn large_logits_do_not_overflow() {
    on_each_gpu("large_logits_do_not_overflow", |device| {
        for dims in [vec![4, 33], vec![2, 4097], vec![3, 100, 7]] {
            let x = randn(&dims, 5).mul_scalar(1000.0).unwrap();
            check_both(device, "large", &x, 1);
            if dims.len() == 2 {
                check_cross_entropy(device, &x, 6);
            }
        }
    });
}

#[test]
fn nan_and_infinities_propagate_as_on_the_cpu() {
    on_each_gpu("nan_and_infinities_propagate_as_on_the_cpu", |device| {
        let (nan, inf) = (f32::NAN, f32::INFINITY);
        // Rows: a NaN (all NaN), an -inf among finite values (probability 0), +inf (all NaN, as
        // the CPU's exp(inf - inf)), only -inf (all NaN), and an ordinary row.
        let rows = [
            [1.0, nan, 2.0, 0.5],
            [1.0, -inf, 2.0, 0.5],
            [1.0, inf, 2.0, 0.5],
            [-inf, -inf, -inf, -inf],
            [nan, 1.0, 2.0, 3.0],
            [0.25, 1.0, -2.0, 3.0],
        ];
        let values: Vec<f32> = rows.iter().flatten().copied().collect();
        let x = Tensor::from_vec(values, [6, 4], Device::Cpu).unwrap();
        check_both(device, "special rows", &x, 1);
        // The same lanes along axis 0 (the middle-axis kernels).
        let xt = x.to_vec::<f32>().unwrap();
        let cols: Vec<f32> = (0..4)
            .flat_map(|k| (0..6).map(move |r| (r, k)))
            .map(|(r, k)| xt[r * 4 + k])
            .collect();
        let x0 = Tensor::from_vec(cols, [4, 6], Device::Cpu).unwrap();
        check_both(device, "special columns", &x0, 0);
        // Long rows (block per row) with a NaN late in one of them.
        let mut v: Vec<f32> = randn(&[3, 5000], 7).to_vec().unwrap();
        v[5000 + 4321] = nan;
        v[2 * 5000 + 17] = f32::NEG_INFINITY;
        let x = Tensor::from_vec(v, [3, 5000], Device::Cpu).unwrap();
        check_both(device, "long special", &x, 1);
        // Cross-entropy terms of a NaN row are NaN, the others are not.
        let t = Tensor::from_vec(vec![0i64, 2, 1, 3, 2, 1], [6], Device::Cpu).unwrap();
        let logits = Tensor::from_vec(
            rows.iter().flatten().copied().collect::<Vec<f32>>(),
            [6, 4],
            Device::Cpu,
        )
        .unwrap();
        check_agrees("cross_entropy special rows", device, &[logits, t], |x| {
            x[0].cross_entropy(&x[1], Reduction::None, 0.0)
        });
    });
}

#[test]
fn cross_entropy_at_odd_class_counts_and_with_spatial_dims() {
    on_each_gpu(
        "cross_entropy_at_odd_class_counts_and_with_spatial_dims",
        |device| {
            for &c in ODD_SIZES.iter().chain(&[2, 1025]) {
                check_cross_entropy(
                    device,
                    &randn(&[7, c], c as u64).mul_scalar(2.0).unwrap(),
                    8,
                );
            }
            // Many rows of few classes; one row of many.
            check_cross_entropy(device, &randn(&[10_007, 3], 9), 10);
            check_cross_entropy(device, &randn(&[1, 40_000], 11), 12);
            // (N, C, d1, d2): the class axis is a middle axis.
            check_cross_entropy(device, &randn(&[2, 5, 3, 7], 13), 14);
            check_cross_entropy(device, &randn(&[2, 100, 9, 5], 15), 16);
            check_cross_entropy(device, &randn(&[3, 33, 31], 17), 18);
            check_cross_entropy(device, &randn(&[2, 3, 300_000], 19), 20);
        },
    );
}

#[test]
fn an_out_of_range_target_gives_nan_on_the_device() {
    on_each_gpu("an_out_of_range_target_gives_nan_on_the_device", |device| {
        // The CPU rejects it; the device (which does not read targets back) makes the term NaN.
        let logits = randn(&[3, 5], 21)
            .to_device(device)
            .unwrap()
            .with_requires_grad()
            .unwrap();
        for bad in [5i64, -1] {
            let t = Tensor::from_vec(vec![0i64, bad, 4], [3], Device::Cpu).unwrap();
            assert!(logits
                .to_device(Device::Cpu)
                .unwrap()
                .cross_entropy(&t, Reduction::None, 0.0)
                .is_err());
            let terms = logits
                .cross_entropy(&t.to_device(device).unwrap(), Reduction::None, 0.0)
                .unwrap();
            let v: Vec<f32> = terms.to_vec().unwrap();
            assert!(
                v[0].is_finite() && v[1].is_nan() && v[2].is_finite(),
                "{v:?}"
            );
            let mean = logits
                .cross_entropy(&t.to_device(device).unwrap(), Reduction::Mean, 0.0)
                .unwrap();
            assert!(mean.item().unwrap().is_nan());
            mean.backward().unwrap();
            let g: Vec<f32> = logits.grad().unwrap().to_vec().unwrap();
            assert!(g[..5].iter().all(|v| v.is_finite()), "{g:?}");
            assert!(g[5..10].iter().all(|v| v.is_nan()), "{g:?}");
            assert!(g[10..].iter().all(|v| v.is_finite()), "{g:?}");
            logits.zero_grad();
        }
    });
}

#[test]
fn softmax_and_cross_entropy_in_f64() {
    on_each_gpu("softmax_and_cross_entropy_in_f64", |device| {
        let f64s = |t: Tensor| t.to_dtype(DType::F64).unwrap();
        for dims in [vec![5, 1023], vec![3, 4097], vec![7, 33, 31]] {
            let x = f64s(randn(&dims, 22));
            for axis in 0..dims.len() as isize {
                check_both(device, "f64", &x, axis);
            }
            check_cross_entropy(device, &x, 23);
        }
    });
}

#[test]
fn results_are_reproducible_bit_for_bit() {
    on_each_gpu("results_are_reproducible_bit_for_bit", |device| {
        let bits = |t: &Tensor| {
            t.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|f| f.to_bits())
                .collect::<Vec<_>>()
        };
        for (dims, axis) in [
            (vec![64, 4097], 1),
            (vec![4, 1000, 50], 1),
            (vec![300, 33], 1),
        ] {
            let x = randn(&dims, 24).to_device(device).unwrap();
            assert_eq!(
                bits(&x.softmax(axis).unwrap()),
                bits(&x.softmax(axis).unwrap())
            );
            assert_eq!(
                bits(&x.log_softmax(axis).unwrap()),
                bits(&x.log_softmax(axis).unwrap())
            );
        }
    });
}

/// Softmax rows per second on the GPU at a few shapes (reported; PyTorch's numbers on the same
/// shapes come from benches/). Ignored by default; run alone:
/// `cargo test --release --features cuda --test cuda_softmax -- --ignored --nocapture`.
#[cfg(feature = "cuda")]
#[test]
#[ignore]
fn softmax_rows_per_second() {
    use rcmcl::engine::cuda;
    use std::time::Instant;
    on_each_gpu("softmax_rows_per_second", |device| {
        cuda::set_poison_outputs(false);
        for (rows, n) in [
            (1 << 16, 128),
            (1 << 14, 1024),
            (1 << 12, 8192),
            (256, 1 << 16),
        ] {
            let x = Tensor::rand_normal([rows, n], 0.0, 1.0, 1, DType::F32, device).unwrap();
            drop(x.softmax(1).unwrap());
            cuda::synchronize(device).unwrap();
            let reps = 50;
            let start = Instant::now();
            for _ in 0..reps {
                drop(x.softmax(1).unwrap());
            }
            cuda::synchronize(device).unwrap();
            let s = start.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{device}: softmax [{rows}, {n}]: {:.3e} rows/s, {:.0} GB/s (read + write)",
                rows as f64 / s,
                8.0 * (rows * n) as f64 / s / 1e9
            );
        }
    });
}
