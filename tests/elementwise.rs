//! Elementwise ops: forward values against hand-computed ones, gradients against finite
//! differences, broadcasting in every direction.

mod common;
use common::*;
use rcmcl::engine::ops::elementwise::UnaryOp;
use rcmcl::engine::{DType, Device, Tensor};

#[test]
fn binary_forward_values() {
    let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t64(&[10.0, 20.0, 30.0], &[3]);
    assert_eq!(
        values(&a.add(&b).unwrap()),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    assert_eq!(
        values(&a.sub(&b).unwrap()),
        vec![-9.0, -18.0, -27.0, -6.0, -15.0, -24.0]
    );
    assert_eq!(
        values(&a.mul(&b).unwrap()),
        vec![10.0, 40.0, 90.0, 40.0, 100.0, 180.0]
    );
    let col = t64(&[2.0, 4.0], &[2, 1]);
    assert_eq!(
        values(&a.div(&col).unwrap()),
        vec![0.5, 1.0, 1.5, 1.0, 1.25, 1.5]
    );
    assert_eq!(a.add(&col).unwrap().dims(), &[2, 3]);
    let outer = t64(&[1.0, 2.0], &[2, 1])
        .mul(&t64(&[1.0, 10.0, 100.0], &[1, 3]))
        .unwrap();
    assert_eq!(values(&outer), vec![1.0, 10.0, 100.0, 2.0, 20.0, 200.0]);
}

#[test]
fn broadcast_errors_name_the_op_and_shapes() {
    let err = rand64(&[2, 3], 1)
        .add(&rand64(&[4], 2))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("add") && err.contains("[2, 3]") && err.contains("[4]"),
        "{err}"
    );
    let err = rand64(&[2], 1)
        .add(&Tensor::ones([2], DType::F32, Device::Cpu).unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("f64") && err.to_string().contains("f32"),
        "{err}"
    );
}

#[test]
fn unary_forward_values() {
    let x = t64(&[-2.0, -0.5, 0.0, 0.5, 3.0], &[5]);
    let close = |t: rcmcl::engine::Result<Tensor>, want: Vec<f64>| {
        assert_close(&values(&t.unwrap()), &want, 1e-12)
    };
    close(x.relu(), vec![0.0, 0.0, 0.0, 0.5, 3.0]);
    close(x.leaky_relu(0.1), vec![-0.2, -0.05, 0.0, 0.5, 3.0]);
    close(x.abs(), vec![2.0, 0.5, 0.0, 0.5, 3.0]);
    close(x.clamp(-1.0, 1.0), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
    close(
        x.sigmoid(),
        [-2.0f64, -0.5, 0.0, 0.5, 3.0]
            .iter()
            .map(|v| 1.0 / (1.0 + (-v).exp()))
            .collect(),
    );
    close(
        x.tanh(),
        [-2.0f64, -0.5, 0.0, 0.5, 3.0]
            .iter()
            .map(|v| v.tanh())
            .collect(),
    );
    close(
        x.softplus(),
        [-2.0f64, -0.5, 0.0, 0.5, 3.0]
            .iter()
            .map(|v| (1.0 + v.exp()).ln())
            .collect(),
    );
    // GELU(x) = x * Phi(x); Phi(0.5) = 0.691462461274013, Phi(-2) = 0.0227501319481792.
    close(
        x.gelu(),
        vec![
            -2.0 * 0.0227501319481792,
            -0.5 * (1.0 - 0.691462461274013),
            0.0,
            0.5 * 0.691462461274013,
            3.0 * 0.99865010196837,
        ],
    );
    let p = t64(&[0.25, 1.0, 4.0], &[3]);
    close(p.sqrt(), vec![0.5, 1.0, 2.0]);
    close(p.log(), vec![0.25f64.ln(), 0.0, 4.0f64.ln()]);
    close(p.powf(1.5), vec![0.125, 1.0, 8.0]);
    close(p.exp(), vec![0.25f64.exp(), 1.0f64.exp(), 4.0f64.exp()]);
    close(p.add_scalar(1.0), vec![1.25, 2.0, 5.0]);
    close(p.mul_scalar(-2.0), vec![-0.5, -2.0, -8.0]);
    close(p.neg(), vec![-0.25, -1.0, -4.0]);
    // Large inputs stay finite.
    let big = t64(&[-800.0, 800.0], &[2]);
    close(big.softplus(), vec![0.0, 800.0]);
    close(big.sigmoid(), vec![0.0, 1.0]);
}

#[test]
fn f32_matches_f64() {
    let x64 = rand64(&[300], 3);
    let x32 = x64.to_dtype(DType::F32).unwrap();
    for op in [
        UnaryOp::Exp,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Softplus,
        UnaryOp::Sigmoid,
    ] {
        let a = values(&x64.unary(op).unwrap());
        let b = values(&x32.unary(op).unwrap());
        assert_close(&b, &a, 1e-6);
    }
}

#[test]
fn unary_gradients() {
    // Inputs kept away from the kinks of relu/abs/clamp so central differences are valid.
    let x = rand64(&[3, 4], 11).add(&t64(&[0.0], &[1])).unwrap();
    let away = |t: &Tensor| {
        let v: Vec<f64> = values(t)
            .iter()
            .map(|&v| if v.abs() < 0.05 { v + 0.2 } else { v })
            .collect();
        t64(&v, t.dims())
    };
    let x = away(&x);
    let pos = rand64_in(&[3, 4], 0.2, 3.0, 12);
    gradcheck("neg", |t| t[0].neg(), std::slice::from_ref(&x));
    gradcheck("exp", |t| t[0].exp(), std::slice::from_ref(&x));
    gradcheck("log", |t| t[0].log(), std::slice::from_ref(&pos));
    gradcheck("sqrt", |t| t[0].sqrt(), std::slice::from_ref(&pos));
    gradcheck("powf", |t| t[0].powf(2.7), std::slice::from_ref(&pos));
    gradcheck(
        "powf_negative",
        |t| t[0].powf(-1.5),
        std::slice::from_ref(&pos),
    );
    gradcheck("abs", |t| t[0].abs(), std::slice::from_ref(&x));
    gradcheck("relu", |t| t[0].relu(), std::slice::from_ref(&x));
    gradcheck(
        "leaky_relu",
        |t| t[0].leaky_relu(0.2),
        std::slice::from_ref(&x),
    );
    gradcheck("gelu", |t| t[0].gelu(), std::slice::from_ref(&x));
    gradcheck("sigmoid", |t| t[0].sigmoid(), std::slice::from_ref(&x));
    gradcheck("tanh", |t| t[0].tanh(), std::slice::from_ref(&x));
    gradcheck("softplus", |t| t[0].softplus(), std::slice::from_ref(&x));
    gradcheck(
        "add_scalar",
        |t| t[0].add_scalar(1.5),
        std::slice::from_ref(&x),
    );
    gradcheck(
        "mul_scalar",
        |t| t[0].mul_scalar(-0.7),
        std::slice::from_ref(&x),
    );
    gradcheck(
        "div_scalar",
        |t| t[0].div_scalar(3.0),
        std::slice::from_ref(&x),
    );
    let kinks = t64(&[-1.7, -0.3, 0.4, 1.6, 0.9, -1.2], &[6]);
    gradcheck("clamp", |t| t[0].clamp(-1.0, 1.0), &[kinks]);
}

#[test]
fn binary_gradients_with_broadcasting() {
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),
        (&[3, 1], &[1, 4]),
        (&[2, 3, 4], &[3, 1]),
        (&[4], &[2, 3, 4]),
        (&[], &[2, 3]),
    ];
    for (i, (sa, sb)) in shapes.iter().enumerate() {
        let a = rand64(sa, 100 + i as u64);
        let b = rand64_in(sb, 0.5, 2.0, 200 + i as u64);
        gradcheck("add", |t| t[0].add(&t[1]), &[a.clone(), b.clone()]);
        gradcheck("sub", |t| t[0].sub(&t[1]), &[a.clone(), b.clone()]);
        gradcheck("mul", |t| t[0].mul(&t[1]), &[a.clone(), b.clone()]);
        gradcheck("div", |t| t[0].div(&t[1]), &[a.clone(), b.clone()]);
        gradcheck("maximum", |t| t[0].maximum(&t[1]), &[a.clone(), b.clone()]);
        gradcheck("minimum", |t| t[0].minimum(&t[1]), &[a.clone(), b.clone()]);
    }
}

#[test]
fn where_and_masked_fill() {
    let a = rand64(&[2, 3], 1);
    let b = rand64(&[3], 2);
    let cond = t64(&[1.0, 0.0, 1.0, 0.0, 0.0, 1.0], &[2, 3]);
    let w = Tensor::where_cond(&cond, &a, &b).unwrap();
    let (av, bv) = (values(&a), values(&b));
    assert_eq!(values(&w), vec![av[0], bv[1], av[2], bv[0], bv[1], av[5]]);
    gradcheck(
        "where",
        |t| Tensor::where_cond(&cond, &t[0], &t[1]),
        &[a.clone(), b.clone()],
    );
    let mask = idx(&[0, 1, 0], &[3]);
    let m = a.masked_fill(&mask, -9.0).unwrap();
    assert_eq!(values(&m), vec![av[0], -9.0, av[2], av[3], -9.0, av[5]]);
    gradcheck(
        "masked_fill",
        |t| t[0].masked_fill(&mask, 5.0),
        std::slice::from_ref(&a),
    );
    let gt = a.gt(&b).unwrap();
    let want: Vec<f64> = (0..6)
        .map(|i| if av[i] > bv[i % 3] { 1.0 } else { 0.0 })
        .collect();
    assert_eq!(values(&gt), want);
    assert!(!gt.requires_grad());
}

#[test]
fn large_tensors_take_the_parallel_path() {
    let n = 1 << 17;
    let a = Tensor::rand_uniform([n], -1.0, 1.0, 5, DType::F32, Device::Cpu).unwrap();
    let b = Tensor::rand_uniform([n], -1.0, 1.0, 6, DType::F32, Device::Cpu).unwrap();
    let (av, bv) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let s = a.add(&b).unwrap().to_vec::<f32>().unwrap();
    assert!(s.iter().enumerate().all(|(i, &v)| v == av[i] + bv[i]));
    let rows = Tensor::rand_uniform([256, 512], -1.0, 1.0, 7, DType::F32, Device::Cpu).unwrap();
    let col = Tensor::rand_uniform([256, 1], -1.0, 1.0, 8, DType::F32, Device::Cpu).unwrap();
    let (rv, cv) = (rows.to_vec::<f32>().unwrap(), col.to_vec::<f32>().unwrap());
    let p = rows.mul(&col).unwrap().to_vec::<f32>().unwrap();
    assert!(p.iter().enumerate().all(|(i, &v)| v == rv[i] * cv[i / 512]));
}

#[test]
fn nan_propagates_through_activations_and_extrema() {
    let nan = t64(&[f64::NAN, 1.0], &[2]);
    let other = t64(&[0.5, f64::NAN], &[2]);
    for (name, out) in [
        ("relu", nan.relu().unwrap()),
        ("leaky_relu", nan.leaky_relu(0.1).unwrap()),
        ("clamp", nan.clamp(-1.0, 1.0).unwrap()),
        ("gelu", nan.gelu().unwrap()),
        ("maximum", nan.maximum(&other).unwrap()),
        ("minimum", nan.minimum(&other).unwrap()),
    ] {
        assert!(
            values(&out)[0].is_nan(),
            "{name} dropped a NaN: {:?}",
            values(&out)
        );
    }
    assert!(values(&nan.maximum(&other).unwrap())[1].is_nan());
    assert!(values(&nan.minimum(&other).unwrap())[1].is_nan());
}
