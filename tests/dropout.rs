//! Dropout: reproducible from the seed, the right fraction dropped, kept elements scaled, the
//! gradient through the same mask, identity when not training, and argument checks.

mod common;
use common::*;
use rcmcl::engine::ops::dropout::dropout_uniform;
use rcmcl::engine::{DType, Device, Tensor};

fn ones(n: usize) -> Tensor {
    Tensor::ones([n], DType::F64, Device::Cpu).unwrap()
}

#[test]
fn reproducible_from_the_seed() {
    let x = rand64(&[50, 2000], 1);
    let a = values(&x.dropout(0.3, 42, true).unwrap());
    let b = values(&x.dropout(0.3, 42, true).unwrap());
    assert_eq!(a, b);
    let c = values(&x.dropout(0.3, 43, true).unwrap());
    let differ = a.iter().zip(&c).filter(|(a, c)| a != c).count();
    // Two independent masks at p = 0.3 disagree on 2 * 0.3 * 0.7 = 42% of elements.
    assert!(
        (differ as f64 / a.len() as f64 - 0.42).abs() < 0.01,
        "{differ}"
    );
}

#[test]
fn fraction_dropped_is_close_to_p() {
    let n = 100_000;
    for (p, seed) in [(0.1, 1u64), (0.3, 2), (0.5, 3), (0.9, 4)] {
        let y = values(&ones(n).dropout(p, seed, true).unwrap());
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        // Binomial standard deviation is at most 0.0016 here: 0.01 is over 6 sigma.
        assert!((dropped - p).abs() < 0.01, "p = {p}: dropped {dropped}");
        // Every kept element is scaled by 1 / (1 - p).
        let scale = 1.0 / (1.0 - p);
        assert!(y.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-12));
    }
}

#[test]
fn kept_elements_are_scaled_and_follow_the_hash() {
    let p = 0.25;
    let x = rand64(&[40_000], 7);
    let xv = values(&x);
    let y = values(&x.dropout(p, 99, true).unwrap());
    for (i, (&xi, &yi)) in xv.iter().zip(&y).enumerate() {
        let kept = dropout_uniform(99, i as u64) >= p;
        let want = if kept { xi / (1.0 - p) } else { 0.0 };
        assert!(
            (yi - want).abs() <= 1e-15 * want.abs(),
            "element {i}: {yi} vs {want}"
        );
    }
    // f32 draws the same mask.
    let y32 = values(
        &x.to_dtype(DType::F32)
            .unwrap()
            .dropout(p, 99, true)
            .unwrap(),
    );
    assert!(y.iter().zip(&y32).all(|(a, b)| (*a == 0.0) == (*b == 0.0)));
}

#[test]
fn mask_depends_on_the_index_only() {
    // The parallel path (a large tensor) and the serial path (its prefix) agree element by element.
    let big = values(&ones(100_000).dropout(0.5, 5, true).unwrap());
    let small = values(&ones(1000).dropout(0.5, 5, true).unwrap());
    assert_eq!(big[..1000].to_vec(), small);
    // The hash is roughly uniform.
    let mean: f64 = (0..100_000u64).map(|i| dropout_uniform(11, i)).sum::<f64>() / 1e5;
    assert!((mean - 0.5).abs() < 0.005, "{mean}");
}

#[test]
fn gradient_is_the_mask_times_the_scale() {
    let p = 0.4;
    let x = rand64_in(&[3, 1001], 0.5, 2.0, 3)
        .with_requires_grad()
        .unwrap();
    let y = x.dropout(p, 17, true).unwrap();
    let g = rand64(&[3, 1001], 4);
    y.backward_with(&g).unwrap();
    let (yv, xv, gv) = (values(&y), values(&x), values(&g));
    let grad = values(&x.grad().unwrap());
    for i in 0..yv.len() {
        let mask = if yv[i] != 0.0 { 1.0 / (1.0 - p) } else { 0.0 };
        assert!((yv[i] - mask * xv[i]).abs() < 1e-14);
        assert!((grad[i] - gv[i] * mask).abs() < 1e-14, "element {i}");
    }
    let x = rand64(&[4, 5], 8);
    gradcheck("dropout", |t| t[0].dropout(0.4, 3, true), &[x]);
}

#[test]
fn identity_when_not_training_or_p_is_zero() {
    let x = rand64(&[3, 4], 1);
    assert_eq!(values(&x.dropout(0.5, 1, false).unwrap()), values(&x));
    assert_eq!(values(&x.dropout(0.0, 1, true).unwrap()), values(&x));
    let leaf = x.with_requires_grad().unwrap();
    leaf.dropout(0.5, 1, false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(values(&leaf.grad().unwrap()), vec![1.0; 12]);
}

#[test]
fn p_one_gives_zeros_and_bad_p_is_an_error() {
    let x = rand64(&[2, 3], 1).with_requires_grad().unwrap();
    let y = x.dropout(1.0, 3, true).unwrap();
    assert_eq!(values(&y), vec![0.0; 6]);
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![0.0; 6]);
    for p in [-0.1, 1.5, f64::NAN] {
        let err = x.dropout(p, 1, true).unwrap_err().to_string();
        assert!(err.contains("dropout"), "{err}");
    }
    assert!(idx(&[1, 2], &[2]).dropout(0.5, 1, true).is_err());
}
