//! Reductions on CUDA against the CPU reference, forward and backward: sum, mean, max, min, var
//! and argmax over the last axis at odd row lengths (warp-per-row and block-per-row layouts),
//! every axis and several axis sets of rank-3 and rank-4 tensors with and without keepdim (the
//! middle-axis layouts), long reductions that take the chunked two-pass path (a sum of 3 million
//! elements, a long middle axis, a long argmax), NaN propagation, ties (argmax takes the lowest
//! index, max/min share the gradient), an f64 case, and bitwise reproducibility. Skips without a
//! GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::{DType, Device, Tensor};

/// Values in {-2, -1, 0.5, 1, 2} (no zeros): many ties.
fn small_ints(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            [-2.0, -1.0, 0.5, 1.0, 2.0][(state % 5) as usize]
        })
        .collect();
    Tensor::from_vec(values, dims.to_vec(), Device::Cpu).unwrap()
}

/// `x` with NaN written at every `every`-th element from `first`.
fn with_nans(x: &Tensor, first: usize, every: usize) -> Tensor {
    let mut v: Vec<f32> = x.to_vec().unwrap();
    for i in (first..v.len()).step_by(every) {
        v[i] = f32::NAN;
    }
    Tensor::from_vec(v, x.dims().to_vec(), Device::Cpu).unwrap()
}

/// Every reduction with a gradient, over `axes`, with and without keepdim.
fn check_all_reductions(device: Device, what: &str, x: &Tensor, axes: &[isize]) {
    for keepdim in [false, true] {
        let name = |op: &str| format!("{op} {what} {:?} axes {axes:?} keepdim {keepdim}", x.dims());
        let input = std::slice::from_ref(x);
        check_agrees(&name("sum"), device, input, |t| t[0].sum(axes, keepdim));
        check_agrees(&name("mean"), device, input, |t| t[0].mean(axes, keepdim));
        check_agrees(&name("max"), device, input, |t| t[0].max(axes, keepdim));
        check_agrees(&name("min"), device, input, |t| t[0].min(axes, keepdim));
    }
}

#[test]
fn reductions_over_the_last_axis_at_odd_row_lengths() {
    on_each_gpu(
        "reductions_over_the_last_axis_at_odd_row_lengths",
        |device| {
            // Up to 512 a row is a group of warp lanes; beyond, blocks (and chunks past 16384).
            for &n in ODD_SIZES.iter().chain(&[2, 3, 512, 513, 16385, 40_000]) {
                let x = randn(&[5, n], n as u64);
                check_all_reductions(device, "rows", &x, &[-1]);
                check_agrees(&format!("argmax rows [5, {n}]"), device, &[x], |t| {
                    t[0].argmax(-1, false)
                });
            }
            // A single row, and many short rows.
            let x = randn(&[4097], 1);
            check_all_reductions(device, "one row", &x, &[0]);
            let x = randn(&[10_007, 3], 2);
            check_all_reductions(device, "short rows", &x, &[1]);
        },
    );
}

#[test]
fn every_axis_and_axis_set_of_rank_3_and_4_tensors() {
    on_each_gpu(
        "every_axis_and_axis_set_of_rank_3_and_4_tensors",
        |device| {
            let x = randn(&[7, 33, 31], 3);
            for axes in [
                vec![0],
                vec![1],
                vec![2],
                vec![-1],
                vec![0, 1],
                vec![0, 2],
                vec![1, 2],
                vec![],
            ] {
                check_all_reductions(device, "rank 3", &x, &axes);
            }
            for a in 0..3 {
                check_agrees(
                    &format!("argmax rank 3 axis {a}"),
                    device,
                    std::slice::from_ref(&x),
                    |t| t[0].argmax(a, true),
                );
            }
            let x = randn(&[3, 5, 1, 66], 4);
            for axes in [
                vec![0],
                vec![1],
                vec![2],
                vec![3],
                vec![0, 2],
                vec![1, 3],
                vec![0, 1, 3],
                vec![0, 3],
                vec![],
            ] {
                check_all_reductions(device, "rank 4", &x, &axes);
            }
            for a in 0..4 {
                check_agrees(
                    &format!("argmax rank 4 axis {a}"),
                    device,
                    std::slice::from_ref(&x),
                    |t| t[0].argmax(a, false),
                );
            }
            // A middle axis long enough for the block-per-columns layout, with a partial last tile
            // (inner 40) and with fewer columns than a warp (inner 3).
            for dims in [[2, 300, 40], [2, 1300, 40], [3, 9000, 3], [2, 200, 1]] {
                let x = randn(&dims, dims[1] as u64);
                check_all_reductions(device, "middle", &x, &[1]);
                check_agrees(&format!("argmax middle {dims:?}"), device, &[x], |t| {
                    t[0].argmax(1, false)
                });
            }
            // Variance composes mean, sub, square and sum.
            let x = randn(&[6, 1023], 5);
            check_agrees("var rows", device, std::slice::from_ref(&x), |t| {
                t[0].var(&[1], false, 1)
            });
            check_agrees("var axis 0", device, &[x], |t| t[0].var(&[0], true, 0));
        },
    );
}

#[test]
fn long_reductions_take_the_chunked_path() {
    on_each_gpu("long_reductions_take_the_chunked_path", |device| {
        // 3,000,017 elements: 184 partial sums, then one block adds them.
        let x = rand_in(&[3_000_017], 0.5, 1.5, 6);
        check_agrees("sum_all 3M", device, std::slice::from_ref(&x), |t| {
            t[0].sum_all()
        });
        check_agrees("mean_all 3M", device, std::slice::from_ref(&x), |t| {
            t[0].mean_all()
        });
        check_agrees("max_all 3M", device, std::slice::from_ref(&x), |t| {
            t[0].max(&[], false)
        });
        check_agrees("min_all 3M", device, std::slice::from_ref(&x), |t| {
            t[0].min(&[], false)
        });
        check_agrees("argmax 3M", device, &[x], |t| t[0].argmax(0, false));
        // Mean zero: the sum is small next to the terms, so rounding would show.
        let x = randn(&[2_000_003], 7);
        check_agrees("sum_all randn 2M", device, &[x], |t| t[0].sum_all());
        // A long middle axis with few outputs (chunks along it), and a long first axis.
        let x = randn(&[3, 100_003, 5], 8);
        check_all_reductions(device, "long middle", &x, &[1]);
        check_agrees("argmax long middle", device, &[x], |t| {
            t[0].argmax(1, false)
        });
        let x = randn(&[70_001, 9], 9);
        check_all_reductions(device, "long first", &x, &[0]);
        check_agrees("argmax long first", device, &[x], |t| t[0].argmax(0, false));
        // Two long rows.
        let x = randn(&[2, 1_000_003], 10);
        check_all_reductions(device, "long rows", &x, &[1]);
        check_agrees("argmax long rows", device, &[x], |t| t[0].argmax(1, false));
    });
}

#[test]
fn nan_propagates_as_on_the_cpu() {
    on_each_gpu("nan_propagates_as_on_the_cpu", |device| {
        // A NaN in some rows only (every 37th element): those rows' sum/max/min are NaN, the
        // other rows are not; argmax points at the first NaN of a row.
        for dims in [[9, 33], [9, 4097], [33, 7]] {
            let x = with_nans(&randn(&dims, 11), 5, 37);
            for axis in [0isize, 1] {
                check_all_reductions(device, "with NaN", &x, &[axis]);
                check_agrees(
                    &format!("argmax with NaN {dims:?} {axis}"),
                    device,
                    std::slice::from_ref(&x),
                    |t| t[0].argmax(axis, false),
                );
            }
        }
        // A NaN that is not first in its run, after larger values, in a long chunked row.
        let x = with_nans(&randn(&[100_000], 12), 70_001, 1_000_000);
        check_all_reductions(device, "long with NaN", &x, &[0]);
        check_agrees("argmax long with NaN", device, &[x], |t| {
            t[0].argmax(0, false)
        });
        // Infinities are ordinary values for max/min/argmax.
        let x = Tensor::from_vec(
            vec![
                1.0f32,
                f32::INFINITY,
                -f32::INFINITY,
                2.0,
                -f32::INFINITY,
                -f32::INFINITY,
            ],
            [2, 3],
            Device::Cpu,
        )
        .unwrap();
        for axis in [0isize, 1] {
            check_agrees("max with inf", device, std::slice::from_ref(&x), |t| {
                t[0].max(&[axis], false)
            });
            check_agrees("min with inf", device, std::slice::from_ref(&x), |t| {
                t[0].min(&[axis], false)
            });
            check_agrees("argmax with inf", device, std::slice::from_ref(&x), |t| {
                t[0].argmax(axis, false)
            });
        }
    });
}

#[test]
fn ties_give_the_lowest_index_and_a_shared_gradient() {
    on_each_gpu(
        "ties_give_the_lowest_index_and_a_shared_gradient",
        |device| {
            for dims in [
                vec![31, 33],
                vec![4, 1023],
                vec![3, 70, 5],
                vec![2, 20_000],
                vec![40_001],
            ] {
                let x = small_ints(&dims, dims[0] as u64);
                for axis in 0..dims.len() as isize {
                    check_agrees(
                        &format!("argmax ties {dims:?} {axis}"),
                        device,
                        std::slice::from_ref(&x),
                        |t| t[0].argmax(axis, true),
                    );
                    check_all_reductions(device, "ties", &x, &[axis]);
                }
            }
            // An all-equal row, including all -inf: position 0.
            let x = Tensor::from_vec(
                vec![
                    3.0f32,
                    3.0,
                    3.0,
                    f32::NEG_INFINITY,
                    f32::NEG_INFINITY,
                    f32::NEG_INFINITY,
                ],
                [2, 3],
                Device::Cpu,
            )
            .unwrap();
            let got = check_agrees("argmax all equal", device, &[x], |t| t[0].argmax(1, false));
            assert_eq!(got.to_vec::<i64>().unwrap(), vec![0, 0]);
        },
    );
}

#[test]
fn reductions_in_f64() {
    on_each_gpu("reductions_in_f64", |device| {
        let f64s = |t: Tensor| t.to_dtype(DType::F64).unwrap();
        for dims in [vec![5, 1023], vec![7, 33, 31], vec![300_007]] {
            let x = f64s(randn(&dims, 13));
            for axis in 0..dims.len() as isize {
                check_all_reductions(device, "f64", &x, &[axis]);
                check_agrees("argmax f64", device, std::slice::from_ref(&x), |t| {
                    t[0].argmax(axis, false)
                });
            }
            check_all_reductions(device, "f64 all", &x, &[]);
        }
    });
}

#[test]
fn sums_are_reproducible_bit_for_bit() {
    on_each_gpu("sums_are_reproducible_bit_for_bit", |device| {
        for dims in [vec![3_000_017], vec![3, 100_003, 5], vec![1000, 4097]] {
            let x = randn(&dims, 14).to_device(device).unwrap();
            for axes in [vec![], vec![0], vec![-1]] {
                let a: Vec<f32> = x.sum(&axes, false).unwrap().to_vec().unwrap();
                let b: Vec<f32> = x.sum(&axes, false).unwrap().to_vec().unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&a),
                    bits(&b),
                    "sum {dims:?} {axes:?} differs between runs"
                );
            }
        }
    });
}

#[test]
fn empty_and_size_one_reductions() {
    on_each_gpu("empty_and_size_one_reductions", |device| {
        // Size-1 axes only: the input itself.
        let x = randn(&[4, 1, 5], 15);
        check_all_reductions(device, "size one", &x, &[1]);
        check_agrees("argmax size one", device, &[x], |t| t[0].argmax(1, false));
        // A sum over an empty axis is 0; an empty output is empty.
        let x = Tensor::zeros([3, 0], DType::F32, Device::Cpu).unwrap();
        let cpu = x.sum(&[1], false).unwrap();
        let gpu = x.to_device(device).unwrap().sum(&[1], false).unwrap();
        assert_agree("sum over an empty axis", &cpu, &gpu);
        let gpu = x.to_device(device).unwrap().sum(&[0], false).unwrap();
        assert_eq!(gpu.dims(), &[0]);
    });
}

/// Achieved bandwidth of sum over everything and over rows against a device-to-device copy of
/// the same bytes. A timing, so ignored by default; run alone:
/// `cargo test --release --features cuda --test cuda_reduce -- --ignored --nocapture`.
#[cfg(feature = "cuda")]
#[test]
#[ignore]
fn reduction_bandwidth_against_a_copy() {
    use rcmcl::engine::{cuda, Storage};
    use std::time::Instant;
    on_each_gpu("reduction_bandwidth_against_a_copy", |device| {
        cuda::set_poison_outputs(false);
        let n = 1usize << 26; // 256 MiB of f32
        let x = Tensor::rand_uniform([n], -1.0, 1.0, 1, DType::F32, device).unwrap();
        let seconds = |f: &dyn Fn()| {
            f();
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
        let rows = x.reshape([1 << 16, 1 << 10]).unwrap();
        let cols = x.reshape([1 << 10, 1 << 16]).unwrap();
        let cases: [(&str, &dyn Fn()); 5] = [
            ("sum_all", &|| drop(x.sum_all().unwrap())),
            ("max_all", &|| drop(x.max(&[], false).unwrap())),
            ("sum rows of 1024", &|| drop(rows.sum(&[1], false).unwrap())),
            ("sum axis 0 of [1024, 65536]", &|| {
                drop(cols.sum(&[0], false).unwrap())
            }),
            ("argmax rows of 1024", &|| {
                drop(rows.argmax(1, false).unwrap())
            }),
        ];
        for (name, f) in cases {
            // A reduction reads its input once: compare with the copy's read bandwidth.
            let bw = bytes / seconds(f);
            println!(
                "{device}: {name} {:.0} GB/s read = {:.0}% of the copy",
                bw / 1e9,
                100.0 * bw / copy_bw
            );
        }
    });
}
