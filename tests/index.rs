//! Index ops (index_select, index_add, gather, scatter_add): forward values by hand and
//! against naive references on every axis (small and parallel-sized), gradients against finite
//! differences (repeated indices included), and index/shape/dtype errors.

mod common;
use common::*;
use rcmcl::engine::{DType, Device, Error, Tensor};

/// Reproducible pseudo-random indices in `0..size` (a small LCG: the tests need no rand crate).
fn rand_indices(n: usize, size: usize, seed: u64) -> Vec<i64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % size as u64) as i64
        })
        .collect()
}

fn naive_gather(
    x: &[f64],
    dims: &[usize],
    axis: usize,
    idx: &[i64],
    idx_dims: &[usize],
) -> Vec<f64> {
    (0..idx.len())
        .map(|p| {
            let mut m = unravel(p, idx_dims);
            m[axis] = idx[p] as usize;
            x[ravel(&m, dims)]
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn naive_scatter_add(
    base: &[f64],
    dims: &[usize],
    axis: usize,
    idx: &[i64],
    idx_dims: &[usize],
    src: &[f64],
    src_dims: &[usize],
) -> Vec<f64> {
    let mut out = base.to_vec();
    for (p, &i) in idx.iter().enumerate() {
        let m = unravel(p, idx_dims);
        let s = src[ravel(&m, src_dims)];
        let mut t = m;
        t[axis] = i as usize;
        out[ravel(&t, dims)] += s;
    }
    out
}

#[test]
fn index_select_values() {
    let x = t64(
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0],
        &[3, 4],
    );
    let rows = x.index_select(0, &idx(&[2, 0, 2], &[3])).unwrap();
    assert_eq!(rows.dims(), &[3, 4]);
    assert_eq!(
        values(&rows),
        vec![8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0, 8.0, 9.0, 10.0, 11.0]
    );
    let cols = x.index_select(-1, &idx(&[3, 1], &[2])).unwrap();
    assert_eq!(cols.dims(), &[3, 2]);
    assert_eq!(values(&cols), vec![3.0, 1.0, 7.0, 5.0, 11.0, 9.0]);
    assert_eq!(x.index_select(0, &idx(&[], &[0])).unwrap().dims(), &[0, 4]);
    // Index tensors can be selected from too (label lookups).
    let labels = idx(&[5, 6, 7], &[3])
        .index_select(0, &idx(&[2, 2, 0], &[3]))
        .unwrap();
    assert_eq!(labels.to_vec::<i64>().unwrap(), vec![7, 7, 5]);

    // Middle axis and a parallel-sized table, against the definition.
    for (dims, axis, n) in [([4usize, 5, 6], 1usize, 7usize), ([300, 40, 8], 0, 500)] {
        let x = rand64(&dims, 3);
        let ids = rand_indices(n, dims[axis], 9);
        let got = values(&x.index_select(axis as isize, &idx(&ids, &[n])).unwrap());
        let mut out_dims = dims.to_vec();
        out_dims[axis] = n;
        let xv = values(&x);
        let want: Vec<f64> = (0..got.len())
            .map(|p| {
                let mut m = unravel(p, &out_dims);
                m[axis] = ids[m[axis]] as usize;
                xv[ravel(&m, &dims)]
            })
            .collect();
        assert_eq!(got, want, "{dims:?} axis {axis}");
    }
}

#[test]
fn index_add_values() {
    let base = t64(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], &[3, 2]);
    let src = t64(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0], &[3, 2]);
    // Rows 0 and 2 of src both land on row 2.
    let out = base.index_add(0, &idx(&[2, 0, 2], &[3]), &src).unwrap();
    assert_eq!(values(&out), vec![31.0, 41.0, 1.0, 1.0, 61.0, 81.0]);
    let out = base
        .index_add(1, &idx(&[1], &[1]), &t64(&[1.0, 2.0, 3.0], &[3, 1]))
        .unwrap();
    assert_eq!(values(&out), vec![1.0, 2.0, 1.0, 3.0, 1.0, 4.0]);
}

#[test]
fn gather_values() {
    // The PyTorch documentation example.
    let t = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let g = t.gather(1, &idx(&[0, 0, 1, 0], &[2, 2])).unwrap();
    assert_eq!(values(&g), vec![1.0, 1.0, 4.0, 3.0]);
    // An index smaller than the input on the other dimension: out[i][j] = x[idx[i][j]][j].
    let x = t64(
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0],
        &[3, 4],
    );
    let g = x.gather(0, &idx(&[2, 0, 1, 1, 0, 2], &[3, 2])).unwrap();
    assert_eq!(g.dims(), &[3, 2]);
    assert_eq!(values(&g), vec![8.0, 1.0, 4.0, 5.0, 0.0, 9.0]);

    // Every axis of a 3-D tensor, with index dims smaller and (on the axis) larger than the
    // input's, plus a parallel-sized case.
    let cases: &[(&[usize], usize, &[usize])] = &[
        (&[3, 4, 5], 0, &[6, 2, 5]),
        (&[3, 4, 5], 1, &[2, 7, 3]),
        (&[3, 4, 5], 2, &[3, 4, 9]),
        (&[3, 4, 5], 2, &[1, 1, 1]),
        (&[64, 50, 30], 1, &[64, 40, 30]),
        (&[64, 50, 30], 2, &[60, 50, 20]),
    ];
    for (seed, &(dims, axis, idx_dims)) in cases.iter().enumerate() {
        let x = rand64(dims, seed as u64);
        let n: usize = idx_dims.iter().product();
        let ids = rand_indices(n, dims[axis], seed as u64);
        let got = values(&x.gather(axis as isize, &idx(&ids, idx_dims)).unwrap());
        assert_eq!(
            got,
            naive_gather(&values(&x), dims, axis, &ids, idx_dims),
            "{dims:?} axis {axis} index {idx_dims:?}"
        );
    }
}

/// Input dims, axis, index dims and src dims.
type ScatterCase<'a> = (&'a [usize], usize, &'a [usize], &'a [usize]);

#[test]
fn scatter_add_values() {
    // The PyTorch documentation example.
    let src = Tensor::ones([2, 5], DType::F64, Device::Cpu).unwrap();
    let index = idx(&[0, 1, 2, 0, 0, 0, 1, 2, 2, 2], &[2, 5]);
    let zeros = Tensor::zeros([3, 5], DType::F64, Device::Cpu).unwrap();
    let out = zeros.scatter_add(0, &index, &src).unwrap();
    assert_eq!(
        values(&out),
        vec![2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 1.0]
    );
    // The input is kept and added to; only the index's extent of src is read.
    let base = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let src = t64(&[10.0, 20.0, 99.0, 30.0, 40.0, 99.0], &[2, 3]);
    let out = base
        .scatter_add(1, &idx(&[1, 1, 0, 1], &[2, 2]), &src)
        .unwrap();
    assert_eq!(values(&out), vec![1.0, 32.0, 33.0, 44.0]);

    let cases: &[ScatterCase] = &[
        (&[3, 4, 5], 0, &[6, 2, 5], &[7, 3, 5]),
        (&[3, 4, 5], 1, &[2, 7, 3], &[2, 7, 4]),
        (&[3, 4, 5], 2, &[3, 4, 9], &[3, 4, 9]),
        (&[64, 50, 30], 1, &[64, 40, 30], &[64, 45, 31]),
        (&[64, 50, 30], 0, &[90, 50, 20], &[90, 50, 20]),
        (&[64, 50, 30], 2, &[60, 50, 20], &[60, 50, 20]),
    ];
    for (seed, &(dims, axis, idx_dims, src_dims)) in cases.iter().enumerate() {
        let base = rand64(dims, seed as u64);
        let src = rand64(src_dims, 100 + seed as u64);
        let n: usize = idx_dims.iter().product();
        let ids = rand_indices(n, dims[axis], seed as u64);
        let got = values(
            &base
                .scatter_add(axis as isize, &idx(&ids, idx_dims), &src)
                .unwrap(),
        );
        let want = naive_scatter_add(
            &values(&base),
            dims,
            axis,
            &ids,
            idx_dims,
            &values(&src),
            src_dims,
        );
        assert_close(&got, &want, 1e-12);
    }
    // f32 runs the same kernel.
    let b32 = base.to_dtype(DType::F32).unwrap();
    let s32 = src.to_dtype(DType::F32).unwrap();
    let out32 = b32
        .scatter_add(1, &idx(&[1, 1, 0, 1], &[2, 2]), &s32)
        .unwrap();
    assert_eq!(out32.dtype(), DType::F32);
    assert_eq!(values(&out32), vec![1.0, 32.0, 33.0, 44.0]);
}

#[test]
fn index_gradients() {
    let x = rand64(&[4, 3, 5], 1);
    // Repeats and omissions: some rows get two gradients, some none.
    let rep = idx(&[2, 0, 2, 3, 2], &[5]);
    gradcheck(
        "index_select_0",
        |t| t[0].index_select(0, &t[1]),
        &[x.clone(), rep.clone()],
    );
    gradcheck(
        "index_select_1",
        |t| t[0].index_select(1, &t[1]),
        &[x.clone(), idx(&[1, 1, 0], &[3])],
    );
    gradcheck(
        "index_select_last",
        |t| t[0].index_select(-1, &t[1]),
        &[x.clone(), idx(&[4, 0, 4, 2], &[4])],
    );
    gradcheck(
        "index_add",
        |t| t[0].index_add(0, &t[2], &t[1]),
        &[x.clone(), rand64(&[5, 3, 5], 2), rep.clone()],
    );
    for axis in 0..3usize {
        let mut idx_dims = [3usize, 2, 4];
        idx_dims[axis] = 6;
        let n: usize = idx_dims.iter().product();
        let ids = idx(&rand_indices(n, x.dims()[axis], axis as u64 + 5), &idx_dims);
        gradcheck(
            &format!("gather_{axis}"),
            |t| t[0].gather(axis as isize, &t[1]),
            &[x.clone(), ids.clone()],
        );
        let mut src_dims = idx_dims;
        src_dims[(axis + 1) % 3] += 1;
        gradcheck(
            &format!("scatter_add_{axis}"),
            |t| t[0].scatter_add(axis as isize, &t[2], &t[1]),
            &[x.clone(), rand64(&src_dims, 7), ids.clone()],
        );
    }
}

#[test]
fn index_errors() {
    let x = rand64(&[3, 4], 1);
    let err = x.index_select(0, &idx(&[0, 3], &[2])).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Index {
                op: "index_select",
                index: 3,
                size: 3
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("index_select") && msg.contains('3'), "{msg}");
    assert!(matches!(
        x.index_select(1, &idx(&[-1], &[1])).unwrap_err(),
        Error::Index {
            op: "index_select",
            index: -1,
            size: 4
        }
    ));
    assert!(matches!(
        x.index_select(2, &idx(&[0], &[1])).unwrap_err(),
        Error::Axis {
            op: "index_select",
            ..
        }
    ));
    assert!(matches!(
        x.index_select(0, &idx(&[0, 1], &[1, 2])).unwrap_err(),
        Error::Shape {
            op: "index_select",
            ..
        }
    ));
    assert!(matches!(
        x.index_select(0, &t64(&[0.0], &[1])).unwrap_err(),
        Error::DType {
            op: "index_select",
            got: DType::F64,
            ..
        }
    ));
    assert!(matches!(
        x.gather(1, &idx(&[0, 4], &[2, 1])).unwrap_err(),
        Error::Index {
            op: "gather",
            index: 4,
            size: 4
        }
    ));
    assert!(matches!(
        x.gather(1, &idx(&[0, 1], &[2])).unwrap_err(),
        Error::Shape { op: "gather", .. }
    ));
    // Index larger than the input on a dimension other than the axis.
    assert!(matches!(
        x.gather(1, &idx(&[0; 8], &[4, 2])).unwrap_err(),
        Error::Shape { op: "gather", .. }
    ));
    let src = rand64(&[3, 4], 2);
    assert!(matches!(
        x.scatter_add(0, &idx(&[0, 5], &[1, 2]), &src).unwrap_err(),
        Error::Index {
            op: "scatter_add",
            index: 5,
            size: 3
        }
    ));
    assert!(matches!(
        x.scatter_add(0, &idx(&[0; 5], &[1, 5]), &src).unwrap_err(),
        Error::Shape {
            op: "scatter_add",
            ..
        }
    ));
    assert!(matches!(
        x.index_add(0, &idx(&[0, 1], &[2]), &rand64(&[3, 4], 3))
            .unwrap_err(),
        Error::Shape {
            op: "index_add",
            ..
        }
    ));
    assert!(matches!(
        x.index_add(0, &idx(&[0, -2], &[2]), &rand64(&[2, 4], 3))
            .unwrap_err(),
        Error::Index {
            op: "index_add",
            index: -2,
            size: 3
        }
    ));
}
