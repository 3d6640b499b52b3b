//! Layout ops on CUDA against the CPU reference, forward and backward: every permutation of a
//! rank-3 tensor at odd sizes (both the tiled transpose and the strided copy), rank-4 and rank-5
//! permutations, batched matrix transposes, narrow on each axis, concat and stack of 3 unequal
//! tensors on each axis (and of more than 8, which takes several launches), pad on several
//! dimensions, broadcast_to, f64 cases, i64 tensors (compared exactly) and the error beyond 8
//! dimensions. Skips without a GPU.
//!
//! broadcast_to's backward is a sum over the broadcast dimensions (`sum_to`, the reduce family).

mod common;
use common::gpu::*;
use rcmcl::engine::{DType, Device, Tensor};

fn f64s(t: Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

/// An i64 tensor of distinct values (negative ones included), so a misplaced element shows.
fn ints(dims: &[usize], seed: i64) -> Tensor {
    let n: usize = dims.iter().product();
    let values: Vec<i64> = (0..n as i64)
        .map(|i| (i * 7919 + seed * 104_729) % 1_000_003 - 500_000)
        .collect();
    Tensor::from_vec(values, dims.to_vec(), Device::Cpu).unwrap()
}

/// Every permutation of `0..n`, in lexicographic order.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut all = Vec::new();
    for first in 0..n {
        for rest in permutations(n - 1) {
            let mut p = vec![first];
            p.extend(rest.into_iter().map(|r| if r >= first { r + 1 } else { r }));
            all.push(p);
        }
    }
    all
}

#[test]
fn every_permutation_of_rank_3_at_odd_sizes() {
    on_each_gpu("every_permutation_of_rank_3_at_odd_sizes", |device| {
        // Large enough for the tiled transpose on every pair, with partial tiles; a size-1
        // axis; a small axis that takes the strided copy.
        for (k, dims) in [[33usize, 31, 37], [5, 1, 33], [65, 3, 40], [1, 1023, 2]]
            .iter()
            .enumerate()
        {
            let x = randn(dims, k as u64);
            for perm in permutations(3) {
                check_agrees(
                    &format!("permute {dims:?} by {perm:?}"),
                    device,
                    std::slice::from_ref(&x),
                    |t| t[0].permute(&perm),
                );
            }
        }
    });
}

#[test]
fn permutations_of_rank_4_and_5() {
    on_each_gpu("permutations_of_rank_4_and_5", |device| {
        let x = randn(&[3, 9, 33, 10], 1);
        for perm in permutations(4) {
            check_agrees(
                &format!("permute [3, 9, 33, 10] by {perm:?}"),
                device,
                std::slice::from_ref(&x),
                |t| t[0].permute(&perm),
            );
        }
        let y = randn(&[2, 3, 17, 5, 9], 2);
        let perms: [&[usize]; 6] = [
            &[4, 3, 2, 1, 0],
            &[0, 2, 1, 4, 3],
            &[1, 2, 3, 4, 0],
            &[4, 0, 1, 2, 3],
            &[0, 1, 2, 4, 3],
            &[2, 0, 4, 1, 3],
        ];
        for perm in perms {
            check_agrees(
                &format!("permute [2, 3, 17, 5, 9] by {perm:?}"),
                device,
                std::slice::from_ref(&y),
                |t| t[0].permute(perm),
            );
        }
    });
}

#[test]
fn matrix_transposes_at_odd_sizes() {
    on_each_gpu("matrix_transposes_at_odd_sizes", |device| {
        for &n in ODD_SIZES {
            for &m in &[1usize, 7, 33] {
                let x = randn(&[n, m], (n * 100 + m) as u64);
                check_agrees(&format!("t [{n}, {m}]"), device, &[x], |t| t[0].t());
            }
        }
        // A batch of matrices, and one large enough for many tiles per block.
        let x = randn(&[3, 1023, 33], 5);
        check_agrees("t [3, 1023, 33]", device, &[x], |t| t[0].t());
        let x = randn(&[2, 1025, 1023], 6);
        check_agrees("t [2, 1025, 1023]", device, &[x], |t| t[0].t());
        let x = randn(&[7, 33, 31], 7);
        check_agrees("transpose(0, 2)", device, &[x], |t| t[0].transpose(0, 2));
    });
}

#[test]
fn narrow_on_each_axis() {
    on_each_gpu("narrow_on_each_axis", |device| {
        let dims = [7usize, 33, 31];
        let x = randn(&dims, 1);
        for (axis, &size) in dims.iter().enumerate() {
            for (start, len) in [(0, 1), (1, size - 2), (size - 1, 1), (2, size / 2)] {
                check_agrees(
                    &format!("narrow axis {axis} {start}..{}", start + len),
                    device,
                    std::slice::from_ref(&x),
                    |t| t[0].narrow(axis as isize, start, len),
                );
            }
        }
        // Rows of a long vector at odd offsets.
        let v = randn(&[4097], 2);
        check_agrees("narrow [4097] 31..1054", device, &[v], |t| {
            t[0].narrow(0, 31, 1023)
        });
    });
}

#[test]
fn concat_and_stack_of_three_on_each_axis() {
    on_each_gpu("concat_and_stack_of_three_on_each_axis", |device| {
        let base = [5usize, 7, 33];
        for axis in 0..3 {
            let sizes = [1usize, 31, 4];
            let inputs: Vec<Tensor> = sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let mut d = base;
                    d[axis] = s;
                    randn(&d, (axis * 10 + i) as u64)
                })
                .collect();
            check_agrees(&format!("concat axis {axis}"), device, &inputs, |t| {
                Tensor::concat(&[&t[0], &t[1], &t[2]], axis as isize)
            });
        }
        let same: Vec<Tensor> = (0..3).map(|i| randn(&[5, 7, 33], 40 + i)).collect();
        for axis in 0..=3isize {
            check_agrees(&format!("stack axis {axis}"), device, &same, |t| {
                Tensor::stack(&[&t[0], &t[1], &t[2]], axis)
            });
        }
        // The same tensor twice: its gradient is the sum of two slices.
        check_agrees("concat (x, y, x)", device, &same[..2], |t| {
            Tensor::concat(&[&t[0], &t[1], &t[0]], 1)
        });
    });
}

#[test]
fn concat_of_many_inputs_takes_several_launches() {
    on_each_gpu("concat_of_many_inputs_takes_several_launches", |device| {
        // 19 inputs: groups of 8, 8 and 3, with a zero-width input inside a group.
        let inputs: Vec<Tensor> = (0..19)
            .map(|i| randn(&[3, if i == 9 { 0 } else { 1 + i % 5 }, 33], i as u64))
            .collect();
        check_agrees("concat of 19 on axis 1", device, &inputs, |t| {
            let refs: Vec<&Tensor> = t.iter().collect();
            Tensor::concat(&refs, 1)
        });
        let rows: Vec<Tensor> = (0..12).map(|i| randn(&[31], 100 + i)).collect();
        check_agrees("stack of 12", device, &rows, |t| {
            let refs: Vec<&Tensor> = t.iter().collect();
            Tensor::stack(&refs, 0)
        });
    });
}

#[test]
fn pad_on_several_dimensions() {
    on_each_gpu("pad_on_several_dimensions", |device| {
        let x = randn(&[5, 7, 33], 1);
        let cases: [(&[(usize, usize)], f64); 5] = [
            (&[(0, 0), (0, 0), (1, 2)], 0.0),
            (&[(2, 1), (0, 0), (0, 0)], -1.5),
            (&[(0, 0), (3, 0), (0, 31)], 2.0),
            (&[(1, 1), (1, 1), (1, 1)], 0.25),
            (&[(0, 3), (2, 0), (0, 0)], 7.0),
        ];
        for (pads, value) in cases {
            check_agrees(
                &format!("pad {pads:?} with {value}"),
                device,
                std::slice::from_ref(&x),
                |t| t[0].pad(pads, value),
            );
        }
        let v = randn(&[4097], 2);
        check_agrees("pad [4097]", device, &[v], |t| t[0].pad(&[(31, 33)], 1.0));
    });
}

#[test]
fn broadcast_to_and_its_backward() {
    on_each_gpu("broadcast_to_and_its_backward", |device| {
        let cases: [(&[usize], &[usize]); 6] = [
            (&[33], &[31, 33]),
            (&[31, 1], &[31, 33]),
            (&[1, 1], &[5, 7]),
            (&[], &[4097]),
            (&[3, 1, 5], &[2, 3, 4, 5]),
            (&[1, 1023], &[3, 7, 1023]),
        ];
        for (k, (from, to)) in cases.into_iter().enumerate() {
            let x = randn(from, k as u64);
            check_agrees(
                &format!("broadcast {from:?} to {to:?}"),
                device,
                &[x],
                |t| t[0].broadcast_to(to),
            );
        }
    });
}

#[test]
fn layout_ops_in_f64() {
    on_each_gpu("layout_ops_in_f64", |device| {
        let x = f64s(randn(&[7, 33, 31], 1));
        check_agrees("permute f64", device, std::slice::from_ref(&x), |t| {
            t[0].permute(&[2, 0, 1])
        });
        check_agrees("t f64", device, std::slice::from_ref(&x), |t| t[0].t());
        check_agrees("narrow f64", device, std::slice::from_ref(&x), |t| {
            t[0].narrow(1, 3, 29)
        });
        check_agrees("pad f64", device, std::slice::from_ref(&x), |t| {
            t[0].pad(&[(1, 0), (0, 0), (2, 3)], -0.5)
        });
        let parts = [
            f64s(randn(&[7, 2, 31], 2)),
            x.clone(),
            f64s(randn(&[7, 5, 31], 3)),
        ];
        check_agrees("concat f64", device, &parts, |t| {
            Tensor::concat(&[&t[0], &t[1], &t[2]], 1)
        });
        check_agrees("stack f64", device, &[x.clone(), x.clone()], |t| {
            Tensor::stack(&[&t[0], &t[1]], 2)
        });
        let b = f64s(randn(&[33, 1], 4));
        check_agrees("broadcast f64", device, &[b], |t| {
            t[0].broadcast_to(&[3, 33, 31])
        });
    });
}

#[test]
fn pure_copies_of_i64_tensors_are_exact() {
    on_each_gpu("pure_copies_of_i64_tensors_are_exact", |device| {
        let x = ints(&[7, 33, 31], 1);
        for perm in permutations(3) {
            check_agrees(
                &format!("permute i64 {perm:?}"),
                device,
                std::slice::from_ref(&x),
                |t| t[0].permute(&perm),
            );
        }
        check_agrees("narrow i64", device, std::slice::from_ref(&x), |t| {
            t[0].narrow(2, 5, 17)
        });
        check_agrees("pad i64", device, std::slice::from_ref(&x), |t| {
            t[0].pad(&[(0, 2), (1, 0), (0, 0)], -3.0)
        });
        let parts = [ints(&[7, 3, 31], 2), x.clone(), ints(&[7, 1, 31], 3)];
        check_agrees("concat i64", device, &parts, |t| {
            Tensor::concat(&[&t[0], &t[1], &t[2]], 1)
        });
        check_agrees("stack i64", device, &[x.clone(), x.clone()], |t| {
            Tensor::stack(&[&t[0], &t[1]], 3)
        });
        // Values beyond 2^53 survive (a copy through f64 would round them).
        let big = Tensor::from_vec(
            vec![i64::MAX, i64::MIN, (1 << 53) + 1, -(1 << 60) - 3],
            [2, 2],
            Device::Cpu,
        )
        .unwrap();
        let got = big.to_device(device).unwrap().t().unwrap();
        assert_eq!(
            got.to_vec::<i64>().unwrap(),
            vec![i64::MAX, (1 << 53) + 1, i64::MIN, -(1 << 60) - 3]
        );
        // broadcast_to is a float op on both devices.
        let e = x.to_device(device).unwrap().broadcast_to(&[2, 7, 33, 31]);
        assert!(e.is_err() && x.broadcast_to(&[2, 7, 33, 31]).is_err());
    });
}

#[test]
fn layouts_beyond_eight_dimensions_are_a_clear_error() {
    on_each_gpu(
        "layouts_beyond_eight_dimensions_are_a_clear_error",
        |device| {
            // Swapping neighbours in pairs of a 10-d tensor leaves 10 dimensions unmerged.
            let x = randn(&[2; 10], 1);
            let perm = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8];
            let e = x
                .to_device(device)
                .unwrap()
                .permute(&perm)
                .unwrap_err()
                .to_string();
            assert!(e.contains("at most 8 dimensions"), "{e}");
            // Ten dimensions that merge are fine.
            check_agrees("10-d permute that merges", device, &[x], |t| {
                t[0].permute(&[0, 1, 2, 3, 4, 5, 6, 7, 9, 8])
            });
        },
    );
}

/// Achieved bandwidth of the layout copies against a device-to-device copy of the same bytes:
/// the tiled transpose (a matrix, and the last two axes of a batch), a permute that keeps the
/// innermost axis (strided copy), narrow, pad and concat. A timing, so ignored by default; run
/// alone (it switches output poisoning off, which would add a write per output):
/// `cargo test --release --features cuda --test cuda_layout -- --ignored --nocapture`.
/// The transpose is held to half the copy bandwidth (a tiled transpose usually reaches 80% or
/// more); the others are reported.
#[cfg(feature = "cuda")]
#[test]
#[ignore]
fn layout_copies_against_the_copy_bandwidth() {
    use rcmcl::engine::{cuda, Storage};
    use std::time::Instant;
    on_each_gpu("layout_copies_against_the_copy_bandwidth", |device| {
        cuda::set_poison_outputs(false);
        let (r, c) = (8192usize, 8192usize); // 256 MiB of f32: far beyond any cache
        let x = Tensor::rand_uniform([r, c], -1.0, 1.0, 1, DType::F32, device).unwrap();
        let b = x.reshape([64, 128, 8192]).unwrap();
        let seconds = |f: &dyn Fn()| {
            f(); // warm-up: compiles the family, fills the allocator's cache
            cuda::synchronize(device).unwrap();
            let reps = 20;
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            cuda::synchronize(device).unwrap();
            start.elapsed().as_secs_f64() / reps as f64
        };
        let bytes = (r * c * 4) as f64;
        let copy = seconds(&|| match &*x.storage() {
            Storage::Cuda(s) => drop(s.duplicate().unwrap()),
            Storage::Cpu(_) => unreachable!("x is on the device"),
        });
        let copy_bw = 2.0 * bytes / copy;
        println!("{device}: device-to-device copy {:.0} GB/s", copy_bw / 1e9);
        // (name, bytes moved relative to the input, held to the bound, op)
        let cases: [(&str, f64, bool, &dyn Fn()); 6] = [
            ("t [8192, 8192]", 2.0, true, &|| drop(x.t().unwrap())),
            ("t [64, 128, 8192]", 2.0, true, &|| drop(b.t().unwrap())),
            ("permute [64, 128, 8192] (1, 0, 2)", 2.0, false, &|| {
                drop(b.permute(&[1, 0, 2]).unwrap())
            }),
            ("narrow half the columns", 1.0, false, &|| {
                drop(x.narrow(1, 1, c / 2).unwrap())
            }),
            ("pad by one on each side", 2.0, false, &|| {
                drop(x.pad(&[(1, 1), (1, 1)], 0.0).unwrap())
            }),
            ("concat (x, x) on axis 1", 4.0, false, &|| {
                drop(Tensor::concat(&[&x, &x], 1).unwrap())
            }),
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
            if required && ratio < 0.5 {
                slow.push(format!("{name} at {:.0}%", ratio * 100.0));
            }
        }
        cuda::set_poison_outputs(true);
        assert!(slow.is_empty(), "below 50% of the copy bandwidth: {slow:?}");
    });
}
