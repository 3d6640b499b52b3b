//! Autograd edge cases: shared subexpressions, no_grad, detach, freed graphs, accumulation.

mod common;
use common::*;
use rcmcl::engine::{no_grad, DType, Device, Tensor};

#[test]
fn a_tensor_used_twice_gets_both_contributions() {
    // y = x * x + x  ->  dy/dx = 2x + 1
    let x = t64(&[1.5, -2.0, 0.25], &[3]).with_requires_grad().unwrap();
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![4.0, -3.0, 1.5]);
}

#[test]
fn diamond_graph() {
    // a = exp(x); b = a * 2; c = a * a; loss = sum(b + c) -> d/dx = (2 + 2a) * a
    let x = rand64(&[5], 1).with_requires_grad().unwrap();
    let a = x.exp().unwrap();
    let loss = a
        .mul_scalar(2.0)
        .unwrap()
        .add(&a.mul(&a).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    loss.backward().unwrap();
    let want: Vec<f64> = values(&x)
        .iter()
        .map(|v| (2.0 + 2.0 * v.exp()) * v.exp())
        .collect();
    assert_close(&values(&x.grad().unwrap()), &want, 1e-12);
    gradcheck(
        "diamond",
        |t| {
            let a = t[0].exp()?;
            a.mul_scalar(2.0)?.add(&a.mul(&a)?)
        },
        &[x.detach()],
    );
}

#[test]
fn no_grad_records_nothing() {
    let x = rand64(&[3], 2).with_requires_grad().unwrap();
    let y = no_grad(|| x.exp().unwrap());
    assert!(!y.requires_grad());
    assert!(y.grad_fn_name().is_none());
    assert!(y.sum_all().unwrap().backward().is_err());
    // The mode is restored afterwards, even when guards nest.
    no_grad(|| no_grad(|| ()));
    assert!(x.exp().unwrap().requires_grad());
}

#[test]
fn detach_stops_the_gradient() {
    let x = t64(&[2.0, 3.0], &[2]).with_requires_grad().unwrap();
    // loss = sum(x * detach(x)) -> gradient is detach(x) only, not 2x.
    let loss = x.mul(&x.detach()).unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![2.0, 3.0]);
    assert!(x.detach().same_storage(&x));
}

#[test]
fn gradients_accumulate_across_backward_calls_until_zeroed() {
    let x = t64(&[1.0, 2.0], &[2]).with_requires_grad().unwrap();
    for _ in 0..2 {
        // A fresh graph each time.
        x.mul_scalar(3.0)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
    }
    assert_eq!(values(&x.grad().unwrap()), vec![6.0, 6.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    x.square().unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![2.0, 4.0]);
}

#[test]
fn the_graph_is_freed_by_backward() {
    let x = rand64(&[4], 3).with_requires_grad().unwrap();
    let loss = x.tanh().unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    let err = loss.backward().unwrap_err().to_string();
    assert!(err.contains("already freed"), "{err}");
}

#[test]
fn backward_needs_a_scalar_or_an_explicit_gradient() {
    let x = rand64(&[2, 2], 4).with_requires_grad().unwrap();
    let y = x.mul_scalar(2.0).unwrap();
    assert!(y
        .backward()
        .unwrap_err()
        .to_string()
        .contains("one-element"));
    y.backward_with(&t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]))
        .unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![2.0, 4.0, 6.0, 8.0]);
}

#[test]
fn only_leaves_keep_gradients_and_constants_get_none() {
    let x = rand64(&[3], 5).with_requires_grad().unwrap();
    let c = rand64(&[3], 6);
    let h = x.mul(&c).unwrap();
    h.sum_all().unwrap().backward().unwrap();
    assert!(x.grad().is_some());
    assert!(c.grad().is_none());
    assert!(h.grad().is_none());
    assert_eq!(values(&x.grad().unwrap()), values(&c));
}

#[test]
fn long_chains_do_not_overflow_the_stack() {
    let x = t64(&[1.0], &[1]).with_requires_grad().unwrap();
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.mul_scalar(1.0).unwrap();
    }
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![1.0]);
}

#[test]
fn dtype_conversion_is_differentiable() {
    let x = t64(&[0.5, -1.0], &[2]).with_requires_grad().unwrap();
    let y = x
        .to_dtype(DType::F32)
        .unwrap()
        .square()
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(y.dtype(), DType::F32);
    y.backward().unwrap();
    let g = x.grad().unwrap();
    assert_eq!(g.dtype(), DType::F64);
    assert_eq!(values(&g), vec![1.0, -2.0]);
    let _ = Device::Cpu;
    let _ = Tensor::zeros([1], DType::F32, Device::Cpu);
}
