//! Constructors, conversions and metadata.

mod common;
use common::*;
use rcmcl::engine::{DType, Device, Tensor};

#[test]
fn constructors() {
    let z = Tensor::zeros([2, 3], DType::F32, Device::Cpu).unwrap();
    assert_eq!(
        (z.dims(), z.dtype(), z.numel()),
        (&[2usize, 3][..], DType::F32, 6)
    );
    assert_eq!(z.to_vec::<f32>().unwrap(), vec![0.0; 6]);
    assert_eq!(
        Tensor::ones([2], DType::F64, Device::Cpu)
            .unwrap()
            .to_vec::<f64>()
            .unwrap(),
        vec![1.0, 1.0]
    );
    assert_eq!(
        Tensor::full([3], 2.5, DType::F64, Device::Cpu)
            .unwrap()
            .to_vec::<f64>()
            .unwrap(),
        vec![2.5; 3]
    );
    let a = Tensor::arange(0.0, 5.0, 1.0, DType::I64, Device::Cpu).unwrap();
    assert_eq!(a.to_vec::<i64>().unwrap(), vec![0, 1, 2, 3, 4]);
    let a = Tensor::arange(1.0, 2.0, 0.25, DType::F64, Device::Cpu).unwrap();
    assert_eq!(a.to_vec::<f64>().unwrap(), vec![1.0, 1.25, 1.5, 1.75]);
    let s = Tensor::scalar(4.0, DType::F32, Device::Cpu).unwrap();
    assert_eq!((s.rank(), s.item().unwrap()), (0, 4.0));
    assert_eq!(t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).dim(-1).unwrap(), 2);
}

#[test]
fn seeded_random_fills_are_reproducible_and_distributed() {
    let a = Tensor::rand_normal([100_000], 1.0, 2.0, 42, DType::F64, Device::Cpu).unwrap();
    let b = Tensor::rand_normal([100_000], 1.0, 2.0, 42, DType::F64, Device::Cpu).unwrap();
    let c = Tensor::rand_normal([100_000], 1.0, 2.0, 43, DType::F64, Device::Cpu).unwrap();
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
    let mean = a.mean_all().unwrap().item().unwrap();
    let std = a.var(&[], false, 1).unwrap().item().unwrap().sqrt();
    assert!(
        (mean - 1.0).abs() < 0.03 && (std - 2.0).abs() < 0.03,
        "mean {mean} std {std}"
    );
    let u = Tensor::rand_uniform([100_000], -3.0, 5.0, 1, DType::F32, Device::Cpu).unwrap();
    let v = u.to_vec::<f32>().unwrap();
    assert!(v.iter().all(|&x| (-3.0..5.0).contains(&x)));
    assert!((u.mean_all().unwrap().item().unwrap() - 1.0).abs() < 0.05);
}

#[test]
fn seeded_fills_are_counter_based() {
    use rcmcl::engine::ops::dropout::{random_normal, random_uniform};
    // Element i is the specification's value for (seed, i), rounded to the dtype.
    let u = Tensor::rand_uniform([3, 7], -1.0, 2.0, 9, DType::F32, Device::Cpu).unwrap();
    let want: Vec<f32> = (0..21)
        .map(|i| random_uniform(9, i, -1.0, 2.0) as f32)
        .collect();
    assert_eq!(u.to_vec::<f32>().unwrap(), want);
    let z = Tensor::rand_normal([21], 0.5, 3.0, 9, DType::F64, Device::Cpu).unwrap();
    let want: Vec<f64> = (0..21).map(|i| random_normal(9, i, 0.5, 3.0)).collect();
    assert_eq!(z.to_vec::<f64>().unwrap(), want);
    // The parallel fill of a large tensor starts with the serial fill of a small one.
    for dtype in [DType::F32, DType::F64] {
        let big = Tensor::rand_normal([200_000], 0.0, 1.0, 4, dtype, Device::Cpu).unwrap();
        let small = Tensor::rand_normal([1000], 0.0, 1.0, 4, dtype, Device::Cpu).unwrap();
        assert_eq!(values(&big)[..1000], values(&small)[..]);
    }
    // Moments: uniform on [-3, 5) has mean 1 and variance 64 / 12.
    let u = Tensor::rand_uniform([200_000], -3.0, 5.0, 2, DType::F64, Device::Cpu).unwrap();
    let mean = u.mean_all().unwrap().item().unwrap();
    let var = u.var(&[], false, 1).unwrap().item().unwrap();
    assert!(
        (mean - 1.0).abs() < 0.02 && (var - 64.0 / 12.0).abs() < 0.05,
        "mean {mean} var {var}"
    );
    let v = values(&u);
    assert!(v.iter().all(|&x| (-3.0..5.0).contains(&x)));
    // Neighbouring seeds give unrelated streams (correlation near 0), and so do the two
    // distributions of one seed.
    let corr = |a: &[f64], b: &[f64]| {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
        cov / (va * vb).sqrt()
    };
    let normal = |seed| {
        values(&Tensor::rand_normal([100_000], 0.0, 1.0, seed, DType::F64, Device::Cpu).unwrap())
    };
    let (a, b) = (normal(0), normal(1));
    assert!(corr(&a, &b).abs() < 0.015, "{}", corr(&a, &b));
    let u0 =
        values(&Tensor::rand_uniform([100_000], 0.0, 1.0, 0, DType::F64, Device::Cpu).unwrap());
    assert!(corr(&a, &u0).abs() < 0.015, "{}", corr(&a, &u0));
    // Normal tails: about 4.55% of draws beyond two standard deviations.
    let beyond = a.iter().filter(|x| x.abs() > 2.0).count() as f64 / a.len() as f64;
    assert!((beyond - 0.0455).abs() < 0.004, "{beyond}");
}

#[test]
fn conversions() {
    let x = t64(&[1.5, -2.25], &[2]);
    assert_eq!(
        x.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        vec![1.5f32, -2.25]
    );
    assert_eq!(
        x.to_dtype(DType::I64).unwrap().to_vec::<i64>().unwrap(),
        vec![1, -2]
    );
    assert!(x.to_vec::<f32>().unwrap_err().to_string().contains("f64"));
    assert!(x.to_device(Device::Cpu).unwrap().same_storage(&x));
    let e = x.to_device(Device::Cuda(0)).unwrap_err().to_string();
    assert!(e.contains("CUDA"), "{e}");
    assert_eq!(Device::best(), Device::Cpu);
}

#[test]
fn shape_errors_are_clear() {
    let e = Tensor::from_vec(vec![1.0f32; 5], [2, 3], Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("from_vec") && e.contains("5") && e.contains("[2, 3]"),
        "{e}"
    );
    let e = t64(&[1.0, 2.0], &[2]).item().unwrap_err().to_string();
    assert!(e.contains("item"), "{e}");
    assert!(Tensor::arange(0.0, 1.0, 0.0, DType::F32, Device::Cpu).is_err());
    assert!(Tensor::rand_uniform([2], 0.0, 1.0, 0, DType::I64, Device::Cpu).is_err());
    // An empty or non-finite range is an error, not a panic inside the sampler.
    assert!(Tensor::rand_uniform([2], 1.0, 1.0, 0, DType::F32, Device::Cpu).is_err());
    assert!(Tensor::rand_uniform([2], 0.0, f64::INFINITY, 0, DType::F32, Device::Cpu).is_err());
}

#[test]
fn reshape_shares_storage_and_routes_gradients() {
    let x = rand64(&[2, 6], 1);
    let r = x.reshape([3, 4]).unwrap();
    assert!(r.same_storage(&x));
    assert_eq!(values(&r), values(&x));
    assert_eq!(x.reshape_infer(&[-1, 3]).unwrap().dims(), &[4, 3]);
    assert!(x.reshape([5]).is_err());
    assert!(x.reshape_infer(&[-1, 5]).is_err());
    assert_eq!(x.flatten_from(0).unwrap().dims(), &[12]);
    gradcheck(
        "reshape",
        |t| t[0].reshape([4, 3])?.mul(&t[0].reshape([4, 3])?.exp()?),
        std::slice::from_ref(&x),
    );
    gradcheck(
        "broadcast_to",
        |t| t[0].broadcast_to(&[3, 2, 6]),
        std::slice::from_ref(&x),
    );
    gradcheck("sum_to", |t| t[0].sum_to(&[1, 6]), std::slice::from_ref(&x));
}
