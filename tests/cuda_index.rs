//! Index ops on CUDA against the CPU reference, forward and backward: index_select and
//! index_add on each axis, gather and scatter_add on each axis with an index smaller than the
//! input (and src larger than the index), repeated indices throughout (so the atomic adds
//! accumulate, in the forward of the adds and the backward of the selects), odd sizes, f64
//! cases, i64 data (compared exactly), and what an out-of-range index does on the device with
//! and without the host-side check. Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::ops::index::set_cuda_index_checks;
use rcmcl::engine::{DType, Device, Error, Tensor};

fn f64s(t: Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

/// Reproducible pseudo-random indices in `0..size`; with `n > size` some must repeat, and the
/// first two are always equal so every case has a repeat.
fn rand_indices(n: usize, size: usize, seed: u64) -> Vec<i64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v: Vec<i64> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % size as u64) as i64
        })
        .collect();
    if n >= 2 {
        v[1] = v[0];
    }
    v
}

fn index_tensor(n: usize, size: usize, seed: u64) -> Tensor {
    Tensor::from_vec(rand_indices(n, size, seed), [n], Device::Cpu).unwrap()
}

fn index_of_shape(dims: &[usize], size: usize, seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec(rand_indices(n, size, seed), dims.to_vec(), Device::Cpu).unwrap()
}

#[test]
fn index_select_on_each_axis_with_repeats() {
    on_each_gpu("index_select_on_each_axis_with_repeats", |device| {
        let dims = [7usize, 33, 31];
        let x = randn(&dims, 1);
        for (axis, &size) in dims.iter().enumerate() {
            for &n in &[1usize, 31, 33, 70] {
                let ids = index_tensor(n, size, (axis * 100 + n) as u64);
                check_agrees(
                    &format!("index_select axis {axis}, {n} indices"),
                    device,
                    &[x.clone(), ids],
                    |t| t[0].index_select(axis as isize, &t[1]),
                );
            }
        }
        // Many rows of a wide matrix (embedding-style lookups).
        let table = randn(&[1023, 257], 2);
        let ids = index_tensor(4097, 1023, 3);
        check_agrees("index_select rows", device, &[table, ids], |t| {
            t[0].index_select(0, &t[1])
        });
    });
}

#[test]
fn index_add_on_each_axis_with_repeats() {
    on_each_gpu("index_add_on_each_axis_with_repeats", |device| {
        let dims = [7usize, 33, 31];
        for axis in 0..3 {
            let n = 2 * dims[axis] + 1;
            let mut src_dims = dims;
            src_dims[axis] = n;
            let inputs = [
                randn(&dims, axis as u64),
                randn(&src_dims, 10 + axis as u64),
                index_tensor(n, dims[axis], 20 + axis as u64),
            ];
            check_agrees(&format!("index_add axis {axis}"), device, &inputs, |t| {
                t[0].index_add(axis as isize, &t[2], &t[1])
            });
        }
        // Every source row into one target row: 4097 atomic adds per element.
        let base = randn(&[3, 33], 5);
        let src = randn(&[4097, 33], 6);
        let ids = Tensor::from_vec(vec![1i64; 4097], [4097], Device::Cpu).unwrap();
        check_agrees(
            "index_add all into one row",
            device,
            &[base, src, ids],
            |t| t[0].index_add(0, &t[2], &t[1]),
        );
    });
}

#[test]
fn gather_on_each_axis() {
    on_each_gpu("gather_on_each_axis", |device| {
        let dims = [7usize, 33, 31];
        let x = randn(&dims, 1);
        for axis in 0..3 {
            // The index is smaller than the input on the other dimensions and longer than it on
            // the axis (so positions repeat).
            let mut idx_dims = [5usize, 31, 17];
            idx_dims[axis] = 2 * dims[axis] + 3;
            let ids = index_of_shape(&idx_dims, dims[axis], 30 + axis as u64);
            check_agrees(
                &format!("gather axis {axis}, index {idx_dims:?}"),
                device,
                &[x.clone(), ids],
                |t| t[0].gather(axis as isize, &t[1]),
            );
            // An index as large as the input on every other dimension (merged layouts).
            let mut full = dims;
            full[axis] = 3;
            let ids = index_of_shape(&full, dims[axis], 40 + axis as u64);
            check_agrees(
                &format!("gather axis {axis}, index {full:?}"),
                device,
                &[x.clone(), ids],
                |t| t[0].gather(axis as isize, &t[1]),
            );
        }
        // Picking one class score per row (the cross-entropy pattern), at odd sizes.
        for &n in ODD_SIZES {
            let logits = randn(&[n, 33], n as u64);
            let ids = index_of_shape(&[n, 1], 33, 50 + n as u64);
            check_agrees(
                &format!("gather [{n}, 33] -> [{n}, 1]"),
                device,
                &[logits, ids],
                |t| t[0].gather(1, &t[1]),
            );
        }
    });
}

#[test]
fn scatter_add_on_each_axis() {
    on_each_gpu("scatter_add_on_each_axis", |device| {
        let dims = [7usize, 33, 31];
        for axis in 0..3 {
            let mut idx_dims = [5usize, 31, 17];
            idx_dims[axis] = 2 * dims[axis] + 3;
            // src is larger than the index on some dimensions: those elements are never read.
            let mut src_dims = idx_dims;
            src_dims[(axis + 1) % 3] += 2;
            let inputs = [
                randn(&dims, 60 + axis as u64),
                randn(&src_dims, 70 + axis as u64),
                index_of_shape(&idx_dims, dims[axis], 80 + axis as u64),
            ];
            check_agrees(&format!("scatter_add axis {axis}"), device, &inputs, |t| {
                t[0].scatter_add(axis as isize, &t[2], &t[1])
            });
        }
        // Many sources into few targets (a segment sum).
        let base = randn(&[4, 257], 1);
        let src = randn(&[1023, 257], 2);
        let ids = index_of_shape(&[1023, 257], 4, 3);
        check_agrees(
            "scatter_add 1023 rows into 4",
            device,
            &[base, src, ids],
            |t| t[0].scatter_add(0, &t[2], &t[1]),
        );
    });
}

#[test]
fn index_ops_in_f64() {
    on_each_gpu("index_ops_in_f64", |device| {
        let x = f64s(randn(&[7, 33, 31], 1));
        let ids = index_tensor(45, 33, 2);
        check_agrees("index_select f64", device, &[x.clone(), ids.clone()], |t| {
            t[0].index_select(1, &t[1])
        });
        let src = f64s(randn(&[7, 45, 31], 3));
        check_agrees(
            "index_add f64",
            device,
            &[x.clone(), src, ids.clone()],
            |t| t[0].index_add(1, &t[2], &t[1]),
        );
        let g_ids = index_of_shape(&[5, 40, 31], 33, 4);
        check_agrees("gather f64", device, &[x.clone(), g_ids.clone()], |t| {
            t[0].gather(1, &t[1])
        });
        let s_src = f64s(randn(&[6, 40, 31], 5));
        check_agrees("scatter_add f64", device, &[x, s_src, g_ids], |t| {
            t[0].scatter_add(1, &t[2], &t[1])
        });
    });
}

#[test]
fn selects_of_i64_data_are_exact() {
    on_each_gpu("selects_of_i64_data_are_exact", |device| {
        let values: Vec<i64> = (0..7 * 33).map(|i| (i * 7919) % 10_007 - 5000).collect();
        let mut values = values;
        values[5] = i64::MAX;
        values[6] = i64::MIN;
        let x = Tensor::from_vec(values, [7, 33], Device::Cpu).unwrap();
        check_agrees(
            "index_select i64",
            device,
            &[x.clone(), index_tensor(31, 33, 1)],
            |t| t[0].index_select(1, &t[1]),
        );
        check_agrees(
            "gather i64",
            device,
            &[x.clone(), index_of_shape(&[9, 33], 7, 2)],
            |t| t[0].gather(0, &t[1]),
        );
        // A tensor indexed by itself (indices are the data): one storage read twice.
        let small = Tensor::from_vec(vec![2i64, 0, 1, 1], [4], Device::Cpu).unwrap();
        check_agrees("index_select by itself", device, &[small], |t| {
            t[0].index_select(0, &t[0])
        });
    });
}

/// Out-of-range indices: without the check the device reads 0 / skips the add (documented in
/// `engine::ops::index`); with `set_cuda_index_checks(true)` it returns the CPU's error. The
/// switch is process-wide: the other tests here only use valid indices, which behave the same
/// either way.
#[test]
fn out_of_range_indices_on_the_device() {
    on_each_gpu("out_of_range_indices_on_the_device", |device| {
        let on = |t: Tensor| t.to_device(device).unwrap();
        let x = on(
            Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2], Device::Cpu).unwrap(),
        );
        let bad = on(Tensor::from_vec(vec![2i64, 3, -1, 0], [4], Device::Cpu).unwrap());
        let src = on(Tensor::from_vec(vec![10.0f32; 8], [4, 2], Device::Cpu).unwrap());
        let gather_bad =
            on(Tensor::from_vec(vec![1i64, 5, 0, -2, 2, 0], [3, 2], Device::Cpu).unwrap());
        let scatter_src = on(Tensor::from_vec(vec![1.0f32; 6], [3, 2], Device::Cpu).unwrap());

        set_cuda_index_checks(false);
        let sel = x.index_select(0, &bad).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(sel, vec![5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
        let add = x.index_add(0, &bad, &src).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(add, vec![11.0, 12.0, 3.0, 4.0, 15.0, 16.0]);
        let g = x.gather(0, &gather_bad).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(g, vec![3.0, 0.0, 1.0, 0.0, 5.0, 2.0]);
        let s = x
            .scatter_add(0, &gather_bad, &scatter_src)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(s, vec![2.0, 3.0, 4.0, 4.0, 6.0, 6.0]);

        set_cuda_index_checks(true);
        let is_index_error =
            |r: rcmcl::engine::Result<Tensor>, op: &str, index: i64, size: usize| match r {
                Err(Error::Index {
                    op: o,
                    index: i,
                    size: s,
                }) => assert_eq!((o, i, s), (op, index, size)),
                other => panic!("{op}: expected an index error, got {other:?}"),
            };
        is_index_error(x.index_select(0, &bad), "index_select", 3, 3);
        is_index_error(x.index_add(0, &bad, &src), "index_add", 3, 3);
        is_index_error(x.gather(0, &gather_bad), "gather", 5, 3);
        is_index_error(
            x.scatter_add(0, &gather_bad, &scatter_src),
            "scatter_add",
            5,
            3,
        );
        // Valid indices pass the check.
        let good = on(Tensor::from_vec(vec![2i64, 0], [2], Device::Cpu).unwrap());
        assert_eq!(
            x.index_select(0, &good).unwrap().to_vec::<f32>().unwrap(),
            vec![5.0, 6.0, 1.0, 2.0]
        );
        set_cuda_index_checks(false);

        // Indices on another device than the data are refused on both.
        let host_ids = Tensor::from_vec(vec![0i64], [1], Device::Cpu).unwrap();
        assert!(matches!(
            x.index_select(0, &host_ids),
            Err(Error::DeviceMismatch { .. })
        ));
    });
}
