//! Graph aggregation (the ST-GCN spatial step): forward values against a naive einsum written
//! here, f64 finite-difference gradients for the input and the adjacency (with and without a
//! joint mask), exact zeros at masked joints, and the error cases.

mod common;
use common::*;
use rcmcl::engine::{DType, Device, Tensor};

/// `einsum('nkctv,kvw->nctw')` with the documented mask semantics, in f64, by the definition.
fn naive(
    x: &[f64],
    a: &[f64],
    mask: Option<&[f64]>,
    (n, k, c, t, v): (usize, usize, usize, usize, usize),
) -> Vec<f64> {
    let on = |j: usize| mask.map_or(true, |m| m[j] != 0.0);
    let mut y = vec![0.0; n * c * t * v];
    for ni in 0..n {
        for ci in 0..c {
            for ti in 0..t {
                for w in 0..v {
                    let mut s = 0.0;
                    for ki in 0..k {
                        for vi in 0..v {
                            if on(vi) && on(w) {
                                s += x[(((ni * k + ki) * c + ci) * t + ti) * v + vi]
                                    * a[(ki * v + vi) * v + w];
                            }
                        }
                    }
                    y[((ni * c + ci) * t + ti) * v + w] = if on(w) { s } else { 0.0 };
                }
            }
        }
    }
    y
}

/// A 0/1 mask over `v` joints with every third joint (from 1) padded; all real when `v < 2`.
fn mask_for(v: usize) -> Vec<f64> {
    (0..v)
        .map(|j| if v >= 2 && j % 3 == 1 { 0.0 } else { 1.0 })
        .collect()
}

const SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    // (N, K, C, T, V)
    (1, 1, 1, 1, 1),
    (3, 3, 5, 7, 25),
    (1, 3, 1, 7, 33),
    (3, 1, 5, 1, 64),
    (2, 3, 5, 7, 1),
    (1, 1, 5, 7, 25),
    (3, 3, 1, 1, 33),
    (1, 3, 5, 7, 64),
];

#[test]
fn forward_matches_the_naive_einsum_at_odd_sizes() {
    for (i, &(n, k, c, t, v)) in SHAPES.iter().enumerate() {
        let x = rand64(&[n, k * c, t, v], 10 + i as u64);
        let a = rand64(&[k, v, v], 100 + i as u64);
        let (xv, av) = (values(&x), values(&a));
        let y = x.graph_aggregate(&a, None).unwrap();
        assert_eq!(y.dims(), [n, c, t, v]);
        assert_eq!(y.dtype(), DType::F64);
        assert_close(&values(&y), &naive(&xv, &av, None, (n, k, c, t, v)), 1e-12);

        let m = mask_for(v);
        let mt = t64(&m, &[v]);
        let y = x.graph_aggregate(&a, Some(&mt)).unwrap();
        assert_close(
            &values(&y),
            &naive(&xv, &av, Some(&m), (n, k, c, t, v)),
            1e-12,
        );

        // f32 agrees with the f64 reference to f32 rounding.
        let y32 = x
            .to_dtype(DType::F32)
            .unwrap()
            .graph_aggregate(&a.to_dtype(DType::F32).unwrap(), None)
            .unwrap();
        assert_eq!(y32.dtype(), DType::F32);
        assert_close(&values(&y32), &naive(&xv, &av, None, (n, k, c, t, v)), 1e-4);
    }
}

#[test]
fn hand_computed_two_joint_graph() {
    // K = 2, C = 1, T = 1, V = 2: x = [[1, 2]] for k = 0 and [[3, 4]] for k = 1.
    let x = t64(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 1, 2]);
    // a[0] = identity, a[1] = [[0, 1], [1, 0]] (swap).
    let a = t64(&[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0], &[2, 2, 2]);
    let y = x.graph_aggregate(&a, None).unwrap();
    // y = [1, 2] + [4, 3]
    assert_eq!(values(&y), vec![5.0, 5.0]);
    // Masking joint 1 leaves only x[., 0] -> a[., 0, 0]: 1 * 1 + 3 * 0.
    let y = x
        .graph_aggregate(&a, Some(&t64(&[1.0, 0.0], &[2])))
        .unwrap();
    assert_eq!(values(&y), vec![1.0, 0.0]);
}

#[test]
fn gradients_match_finite_differences() {
    for (i, &(n, k, c, t, v)) in [
        (1, 1, 1, 1, 1),
        (2, 3, 2, 3, 5),
        (1, 3, 1, 2, 25),
        (2, 1, 2, 1, 33),
        (1, 2, 1, 1, 64),
    ]
    .iter()
    .enumerate()
    {
        let x = rand64(&[n, k * c, t, v], 200 + i as u64);
        let a = rand64(&[k, v, v], 300 + i as u64);
        gradcheck(
            &format!("graph_aggregate {:?}", (n, k, c, t, v)),
            |t| t[0].graph_aggregate(&t[1], None),
            &[x.clone(), a.clone()],
        );
        let m = t64(&mask_for(v), &[v]);
        gradcheck(
            &format!("graph_aggregate masked {:?}", (n, k, c, t, v)),
            |t| t[0].graph_aggregate(&t[1], Some(&m)),
            &[x, a],
        );
    }
}

#[test]
fn masked_joints_get_exactly_zero_gradient_and_output() {
    let (n, k, c, t, v) = (2, 3, 4, 5, 25);
    let m = mask_for(v);
    let padded: Vec<usize> = (0..v).filter(|&j| m[j] == 0.0).collect();
    // Garbage in the padded entries (NaN, infinity) must not leak anywhere.
    let mut xv = values(&rand64(&[n, k * c, t, v], 7));
    let mut av = values(&rand64(&[k, v, v], 8));
    for (i, e) in xv.iter_mut().enumerate() {
        if m[i % v] == 0.0 {
            *e = if i % 2 == 0 { f64::NAN } else { f64::INFINITY };
        }
    }
    for (i, e) in av.iter_mut().enumerate() {
        if m[i % v] == 0.0 || m[(i / v) % v] == 0.0 {
            *e = f64::NAN;
        }
    }
    for dtype in [DType::F64, DType::F32] {
        let x = t64(&xv, &[n, k * c, t, v])
            .to_dtype(dtype)
            .unwrap()
            .with_requires_grad()
            .unwrap();
        let a = t64(&av, &[k, v, v])
            .to_dtype(dtype)
            .unwrap()
            .with_requires_grad()
            .unwrap();
        let mt = t64(&m, &[v]).to_dtype(dtype).unwrap();
        let y = x.graph_aggregate(&a, Some(&mt)).unwrap();
        let yv = values(&y);
        for (i, &e) in yv.iter().enumerate() {
            if m[i % v] == 0.0 {
                assert_eq!(e.to_bits(), 0.0f64.to_bits(), "y[{i}] at a padded joint");
            } else {
                assert!(e.is_finite(), "y[{i}] = {e}");
            }
        }
        // An upstream gradient that is NaN at padded joints must not leak either.
        let mut gv = values(&rand64(&[n, c, t, v], 9));
        for (i, e) in gv.iter_mut().enumerate() {
            if m[i % v] == 0.0 {
                *e = f64::NAN;
            }
        }
        y.backward_with(&t64(&gv, &[n, c, t, v]).to_dtype(dtype).unwrap())
            .unwrap();
        let dx = values(&x.grad().unwrap());
        for (i, &e) in dx.iter().enumerate() {
            if padded.contains(&(i % v)) {
                assert_eq!(e.to_bits(), 0.0f64.to_bits(), "dx[{i}] at a padded joint");
            } else {
                assert!(e.is_finite() && e != 0.0, "dx[{i}] = {e}");
            }
        }
        let da = values(&a.grad().unwrap());
        for (i, &e) in da.iter().enumerate() {
            let (src, dst) = ((i / v) % v, i % v);
            if padded.contains(&src) || padded.contains(&dst) {
                assert_eq!(e.to_bits(), 0.0f64.to_bits(), "da[{i}] on a padded row/col");
            } else {
                assert!(e.is_finite() && e != 0.0, "da[{i}] = {e}");
            }
        }
    }
}

#[test]
fn gradient_of_the_adjacency_only_when_asked() {
    let x = rand64(&[2, 6, 3, 5], 1).with_requires_grad().unwrap();
    let a = rand64(&[2, 5, 5], 2);
    x.graph_aggregate(&a, None)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(x.grad().is_some());
    assert!(a.grad().is_none());
}

#[test]
fn empty_batch_gives_an_empty_output() {
    let x = rand64(&[0, 6, 3, 5], 1);
    let a = rand64(&[3, 5, 5], 2);
    let y = x.graph_aggregate(&a, None).unwrap();
    assert_eq!(y.dims(), [0, 2, 3, 5]);
}

#[test]
fn errors_name_the_op_and_the_shapes() {
    let x = rand64(&[2, 6, 3, 5], 1);
    let a = rand64(&[3, 5, 5], 2);
    let cases: Vec<(Tensor, Tensor, Option<Tensor>, &str)> = vec![
        (rand64(&[6, 3, 5], 1), a.clone(), None, "rank 4"),
        (x.clone(), rand64(&[3, 5, 4], 2), None, "(K, V, V)"),
        (x.clone(), rand64(&[5, 5], 2), None, "(K, V, V)"),
        (x.clone(), rand64(&[3, 4, 4], 2), None, "joints"),
        (x.clone(), rand64(&[4, 5, 5], 2), None, "multiple"),
        (x.clone(), rand64(&[0, 5, 5], 2), None, "K >= 1"),
        (
            rand64(&[1, 1, 1, 65], 1),
            rand64(&[1, 65, 65], 2),
            None,
            "between 1 and 64",
        ),
        (x.clone(), a.clone(), Some(rand64(&[4], 3)), "mask"),
        (x.clone(), a.clone(), Some(rand64(&[1, 5], 3)), "mask"),
    ];
    for (x, a, m, want) in cases {
        let err = x.graph_aggregate(&a, m.as_ref()).unwrap_err().to_string();
        assert!(
            err.contains("graph_aggregate") && err.contains(want),
            "{err} (wanted {want})"
        );
        assert!(err.contains(&format!("{:?}", x.dims())), "{err}");
    }
    // dtype mismatches and integer inputs
    let a32 = a.to_dtype(DType::F32).unwrap();
    assert!(x.graph_aggregate(&a32, None).is_err());
    let m32 = rand64(&[5], 3).to_dtype(DType::F32).unwrap();
    assert!(x.graph_aggregate(&a, Some(&m32)).is_err());
    let xi = Tensor::zeros([2, 6, 3, 5], DType::I64, Device::Cpu).unwrap();
    let err = xi.graph_aggregate(&a, None).unwrap_err().to_string();
    assert!(err.contains("graph_aggregate"), "{err}");
}
