//! Reductions over any set of axes, with and without keepdim.

mod common;
use common::*;
use rcmcl::engine::{DType, Device, Tensor};

#[test]
fn forward_values() {
    // [[1, 5, 3], [4, 2, 6]]
    let x = t64(&[1.0, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3]);
    assert_eq!(values(&x.sum(&[0], false).unwrap()), vec![5.0, 7.0, 9.0]);
    assert_eq!(values(&x.sum(&[1], false).unwrap()), vec![9.0, 12.0]);
    assert_eq!(values(&x.sum(&[-1], true).unwrap()), vec![9.0, 12.0]);
    assert_eq!(x.sum(&[-1], true).unwrap().dims(), &[2, 1]);
    assert_eq!(x.sum_all().unwrap().dims(), &[] as &[usize]);
    assert_eq!(x.sum_all().unwrap().item().unwrap(), 21.0);
    assert_eq!(values(&x.mean(&[0], false).unwrap()), vec![2.5, 3.5, 4.5]);
    assert_eq!(values(&x.max(&[1], false).unwrap()), vec![5.0, 6.0]);
    assert_eq!(values(&x.min(&[0], false).unwrap()), vec![1.0, 2.0, 3.0]);
    assert_eq!(
        x.argmax(1, false).unwrap().to_vec::<i64>().unwrap(),
        vec![1, 2]
    );
    assert_eq!(
        x.argmax(0, true).unwrap().to_vec::<i64>().unwrap(),
        vec![1, 0, 1]
    );
    assert_eq!(x.argmax(0, true).unwrap().dims(), &[1, 3]);
    // Population and unbiased variance of each row: mean 3 -> (4+4+0)/3, mean 4 -> (0+4+4)/3.
    assert_close(
        &values(&x.var(&[1], false, 0).unwrap()),
        &[8.0 / 3.0, 8.0 / 3.0],
        1e-12,
    );
    assert_close(&values(&x.var(&[1], false, 1).unwrap()), &[4.0, 4.0], 1e-12);
}

#[test]
fn non_contiguous_axis_sets() {
    // Reduce axes 0 and 2 of a (3, 4, 5) tensor and compare with a plain loop.
    let x = rand64(&[3, 4, 5], 1);
    let v = values(&x);
    let got = values(&x.sum(&[0, 2], false).unwrap());
    let want: Vec<f64> = (0..4)
        .map(|j| {
            (0..3)
                .flat_map(|i| (0..5).map(move |k| (i, k)))
                .map(|(i, k)| v[i * 20 + j * 5 + k])
                .sum()
        })
        .collect();
    assert_close(&got, &want, 1e-12);
    let got = values(&x.max(&[2, 0], true).unwrap());
    let want: Vec<f64> = (0..4)
        .map(|j| {
            (0..3)
                .flat_map(|i| (0..5).map(move |k| (i, k)))
                .map(|(i, k)| v[i * 20 + j * 5 + k])
                .fold(f64::MIN, f64::max)
        })
        .collect();
    assert_close(&got, &want, 0.0);
}

#[test]
fn gradients() {
    let x = rand64(&[3, 4, 5], 2);
    for axes in [vec![], vec![0], vec![1], vec![2], vec![0, 2], vec![-1, -2]] {
        for keep in [false, true] {
            gradcheck("sum", |t| t[0].sum(&axes, keep), std::slice::from_ref(&x));
            gradcheck("mean", |t| t[0].mean(&axes, keep), std::slice::from_ref(&x));
            gradcheck("max", |t| t[0].max(&axes, keep), std::slice::from_ref(&x));
            gradcheck("min", |t| t[0].min(&axes, keep), std::slice::from_ref(&x));
            gradcheck(
                "var",
                |t| t[0].var(&axes, keep, 1),
                std::slice::from_ref(&x),
            );
            gradcheck(
                "var_pop",
                |t| t[0].var(&axes, keep, 0),
                std::slice::from_ref(&x),
            );
        }
    }
}

#[test]
fn tied_maxima_share_the_gradient() {
    let x = t64(&[1.0, 3.0, 3.0, 0.0], &[4])
        .with_requires_grad()
        .unwrap();
    x.max(&[0], false).unwrap().backward().unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![0.0, 0.5, 0.5, 0.0]);
}

#[test]
fn errors() {
    let x = rand64(&[2, 3], 3);
    let e = x.sum(&[2], false).unwrap_err().to_string();
    assert!(
        e.contains("sum") && e.contains("axis 2") && e.contains("rank 2"),
        "{e}"
    );
    assert!(
        x.sum(&[0, -2], false).is_err(),
        "a repeated axis is an error"
    );
    assert!(x.var(&[0], false, 2).is_err(), "no degrees of freedom left");
    let ints = Tensor::zeros([3], DType::I64, Device::Cpu).unwrap();
    assert!(ints.sum_all().unwrap_err().to_string().contains("i64"));
}

#[test]
fn large_f32_sum_is_accurate() {
    // One million values of 0.1: naive f32 accumulation drifts by ~1e-3 relative.
    let x = Tensor::full([1000, 1000], 0.1, DType::F32, Device::Cpu).unwrap();
    let s = x.sum_all().unwrap().item().unwrap();
    assert!((s - 100_000.0).abs() < 1.0, "{s}");
    let rows = x.sum(&[1], false).unwrap().to_vec::<f32>().unwrap();
    assert!(rows.iter().all(|&r| (r - 100.0).abs() < 1e-3));
}

#[test]
fn fast_paths_agree_with_the_general_path() {
    // Leading axes, trailing axes, everything, and a middle axis (general path), on sizes above
    // the parallel threshold, against plain loops in f64.
    let (a, b, c) = (37, 41, 53);
    let x = rand64(&[a, b, c], 21);
    let v = values(&x);
    let at = |i: usize, j: usize, k: usize| v[(i * b + j) * c + k];
    let lead: Vec<f64> = (0..b * c)
        .map(|jk| (0..a).map(|i| at(i, jk / c, jk % c)).sum())
        .collect();
    assert_close(&values(&x.sum(&[0], false).unwrap()), &lead, 1e-12);
    let lead2: Vec<f64> = (0..c)
        .map(|k| {
            (0..a)
                .flat_map(|i| (0..b).map(move |j| (i, j)))
                .map(|(i, j)| at(i, j, k))
                .sum()
        })
        .collect();
    assert_close(&values(&x.sum(&[0, 1], false).unwrap()), &lead2, 1e-12);
    let trail: Vec<f64> = (0..a)
        .map(|i| {
            (0..b)
                .flat_map(|j| (0..c).map(move |k| (j, k)))
                .map(|(j, k)| at(i, j, k))
                .sum()
        })
        .collect();
    assert_close(&values(&x.sum(&[1, 2], false).unwrap()), &trail, 1e-12);
    let mid: Vec<f64> = (0..a * c)
        .map(|ik| (0..b).map(|j| at(ik / c, j, ik % c)).sum())
        .collect();
    assert_close(&values(&x.sum(&[1], false).unwrap()), &mid, 1e-12);
    let all: f64 = v.iter().sum();
    assert_close(&[x.sum_all().unwrap().item().unwrap()], &[all], 1e-12);
    // A long single run takes the chunked parallel path.
    let long = rand64(&[3, 200_000], 22);
    let lv = values(&long);
    let want: Vec<f64> = (0..3)
        .map(|r| lv[r * 200_000..(r + 1) * 200_000].iter().sum())
        .collect();
    assert_close(&values(&long.sum(&[1], false).unwrap()), &want, 1e-12);
}
