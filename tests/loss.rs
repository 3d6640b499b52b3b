//! Mean-squared error and L2 normalisation: values by hand, gradients, degenerate inputs.

mod common;
use common::*;
use rcmcl::engine::{DType, Reduction};

#[test]
fn mse_by_hand() {
    let a = t64(&[1.0, 2.0, 3.0, -1.0], &[2, 2]);
    let b = t64(&[2.0, 0.0, 3.0, 0.5], &[2, 2]);
    // Squared differences: 1, 4, 0, 2.25.
    let none = a.mse_loss(&b, Reduction::None).unwrap();
    assert_eq!(none.dims(), &[2, 2]);
    assert_eq!(values(&none), vec![1.0, 4.0, 0.0, 2.25]);
    assert_close(
        &[a.mse_loss(&b, Reduction::Sum).unwrap().item().unwrap()],
        &[7.25],
        1e-15,
    );
    assert_close(
        &[a.mse_loss(&b, Reduction::Mean).unwrap().item().unwrap()],
        &[7.25 / 4.0],
        1e-15,
    );
    assert_eq!(
        a.mse_loss(&b, Reduction::Mean).unwrap().dims(),
        &[] as &[usize]
    );
}

#[test]
fn mse_gradients_reach_both_inputs() {
    for (i, dims) in [&[5][..], &[3, 4], &[2, 3, 5]].iter().enumerate() {
        let a = rand64(dims, 10 + i as u64);
        let b = rand64(dims, 20 + i as u64);
        for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            gradcheck(
                "mse_loss",
                |t| t[0].mse_loss(&t[1], r),
                &[a.clone(), b.clone()],
            );
        }
    }
    // d mean((a - b)^2) / da = 2 (a - b) / n, and the negation for b.
    let a = t64(&[1.0, 2.0], &[2]).with_requires_grad().unwrap();
    let b = t64(&[0.0, 4.0], &[2]).with_requires_grad().unwrap();
    a.mse_loss(&b, Reduction::Mean).unwrap().backward().unwrap();
    assert_close(&values(&a.grad().unwrap()), &[1.0, -2.0], 1e-15);
    assert_close(&values(&b.grad().unwrap()), &[-1.0, 2.0], 1e-15);
}

#[test]
fn mse_requires_identical_shapes() {
    let a = rand64(&[2, 3], 1);
    for other in [&[3][..], &[1, 3], &[2, 1], &[3, 2]] {
        let err = a
            .mse_loss(&rand64(other, 2), Reduction::Mean)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mse_loss") && err.contains("[2, 3]"), "{err}");
    }
    let a32 = a.to_dtype(DType::F32).unwrap();
    assert!(a32.mse_loss(&a, Reduction::Mean).is_err());
}

#[test]
fn l2_normalize_by_hand() {
    let x = t64(&[3.0, 4.0, 0.0, -5.0, 12.0, 0.0], &[2, 3]);
    let rows = x.l2_normalize(-1, 1e-12).unwrap();
    assert_close(
        &values(&rows),
        &[0.6, 0.8, 0.0, -5.0 / 13.0, 12.0 / 13.0, 0.0],
        1e-15,
    );
    // Along the columns: norms 5.830.., 12.649.., and 0 (clamped to eps, leaving zeros).
    let cols = values(&x.l2_normalize(0, 1e-12).unwrap());
    let (n0, n1) = (34.0f64.sqrt(), 160.0f64.sqrt());
    assert_close(
        &cols,
        &[3.0 / n0, 4.0 / n1, 0.0, -5.0 / n0, 12.0 / n1, 0.0],
        1e-15,
    );
    // A vector shorter than eps is divided by eps, as torch.nn.functional.normalize.
    let tiny = t64(&[3e-4, 4e-4], &[2]);
    assert_close(
        &values(&tiny.l2_normalize(0, 1e-2).unwrap()),
        &[3e-2, 4e-2],
        1e-14,
    );
}

#[test]
fn l2_normalized_rows_have_unit_norm() {
    let x = rand64(&[7, 33], 4);
    let y = x.l2_normalize(1, 1e-12).unwrap();
    let norms = values(&y.square().unwrap().sum(&[1], false).unwrap());
    assert_close(&norms, &[1.0; 7], 1e-14);
    // The same in f32.
    let y32 = x
        .to_dtype(DType::F32)
        .unwrap()
        .l2_normalize(1, 1e-12)
        .unwrap();
    assert_close(&values(&y32), &values(&y), 1e-6);
}

#[test]
fn l2_normalize_gradients() {
    let cases: [(&[usize], isize); 5] = [
        (&[5], 0),
        (&[3, 4], -1),
        (&[3, 4], 0),
        (&[2, 3, 5], 1),
        (&[2, 3, 5], 2),
    ];
    for (i, (dims, axis)) in cases.iter().enumerate() {
        let x = rand64(dims, 50 + i as u64);
        gradcheck(
            "l2_normalize",
            |t| t[0].l2_normalize(*axis, 1e-12),
            std::slice::from_ref(&x),
        );
    }
    // Below eps the function is x / eps: the gradient is exactly 1 / eps.
    let small = t64(&[1e-3, -2e-3, 5e-4], &[3]);
    gradcheck(
        "l2_normalize_below_eps",
        |t| t[0].l2_normalize(0, 0.1),
        &[small],
    );
}

#[test]
fn zero_vectors_get_finite_gradients() {
    let x = t64(&[0.0, 0.0, 0.0, 1.0, 2.0, 2.0], &[2, 3])
        .with_requires_grad()
        .unwrap();
    let y = x.l2_normalize(1, 1e-12).unwrap();
    assert_eq!(values(&y)[..3].to_vec(), vec![0.0; 3]);
    y.backward_with(&rand64(&[2, 3], 3)).unwrap();
    let g = values(&x.grad().unwrap());
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    assert!(x.l2_normalize(5, 1e-12).is_err());
    assert!(x.l2_normalize(0, -1.0).is_err());
}
