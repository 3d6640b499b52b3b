//! The CPU buffer cache: large buffers are reused after their last tensor is dropped, and a reused
//! buffer never leaks an earlier tensor's values into a result.

mod common;
use common::*;
use rcmcl::engine::buffer_cache;
use rcmcl::engine::{DType, Device, Tensor};

/// NaN-filled tensors of `n` f32 elements, dropped at once: their buffers go to the cache.
fn poison_cache(n: usize, copies: usize) {
    let poisoned: Vec<Tensor> = (0..copies)
        .map(|_| Tensor::full([n], f64::NAN, DType::F32, Device::Cpu).unwrap())
        .collect();
    drop(poisoned);
}

#[test]
fn reused_buffers_are_fully_overwritten_or_zeroed() {
    // Sizes no other test uses, above the 1 MiB threshold (f32: 262144 elements).
    let (rows, cols) = (613, 457);
    let n = rows * cols;
    let a = rand64(&[rows, cols], 1).to_dtype(DType::F32).unwrap();
    let b = rand64(&[rows, cols], 2).to_dtype(DType::F32).unwrap();
    let (av, bv) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());

    poison_cache(n, 4);
    let before = buffer_cache::stats();
    let sum = a.add(&b).unwrap().to_vec::<f32>().unwrap();
    assert!(
        buffer_cache::stats().hits > before.hits,
        "the add should reuse a poisoned buffer"
    );
    assert!(sum.iter().enumerate().all(|(i, &v)| v == av[i] + bv[i]));
    poison_cache(n, 4);
    let e = a.exp().unwrap().to_vec::<f32>().unwrap();
    assert!(e
        .iter()
        .enumerate()
        .all(|(i, &v)| v == rcmcl::engine::math::exp_f32(av[i])));
    poison_cache(n, 4);
    let col = t64(&vec![0.5; rows], &[rows, 1])
        .to_dtype(DType::F32)
        .unwrap();
    let scaled = a.mul(&col).unwrap().to_vec::<f32>().unwrap();
    assert!(scaled.iter().enumerate().all(|(i, &v)| v == av[i] * 0.5));

    // A buffer asked for zeroed is zeroed even when it comes from the cache.
    poison_cache(n, 4);
    let before = buffer_cache::stats();
    let zeroed = buffer_cache::alloc_zeroed::<f32>(n);
    assert!(buffer_cache::stats().hits > before.hits);
    assert!(zeroed.iter().all(|&v| v == 0.0));
    poison_cache(n, 4);
    let z = Tensor::zeros([rows, cols], DType::F32, Device::Cpu).unwrap();
    let targets: Vec<i64> = (0..n as i64)
        .map(|e| ((e / cols as i64) * 7) % rows as i64)
        .collect();
    let idx = Tensor::from_vec(targets, [rows, cols], Device::Cpu).unwrap();
    let scattered = z.scatter_add(0, &idx, &a).unwrap().to_vec::<f32>().unwrap();
    assert!(scattered.iter().all(|v| v.is_finite()));
    let total: f64 = scattered.iter().map(|&v| v as f64).sum();
    let want: f64 = av.iter().map(|&v| v as f64).sum();
    assert!(
        (total - want).abs() < 1e-2 * (1.0 + want.abs()),
        "{total} vs {want}"
    );

    // Matmul outputs (gemm overwrites) of a cached size.
    let (m, k, p) = (640, 64, 512);
    poison_cache(m * p, 4);
    let x = rand64(&[m, k], 3).to_dtype(DType::F32).unwrap();
    let w = rand64(&[k, p], 4).to_dtype(DType::F32).unwrap();
    let y = x.matmul(&w).unwrap().to_vec::<f32>().unwrap();
    let (xv, wv) = (x.to_vec::<f32>().unwrap(), w.to_vec::<f32>().unwrap());
    for &(i, j) in &[(0, 0), (17, 300), (639, 511), (320, 1)] {
        let want: f64 = (0..k)
            .map(|t| xv[i * k + t] as f64 * wv[t * p + j] as f64)
            .sum();
        assert!(
            (y[i * p + j] as f64 - want).abs() < 1e-4,
            "({i}, {j}): {} vs {want}",
            y[i * p + j]
        );
    }
    assert!(y.iter().all(|v| v.is_finite()));
}

#[test]
fn the_cache_is_bounded_and_can_be_emptied() {
    poison_cache(300_007, 2);
    let s = buffer_cache::stats();
    assert!(s.cached_bytes <= s.limit_bytes);
    assert!(s.cached_bytes >= 2 * 300_007 * 4 || s.limit_bytes < 2 * 300_007 * 4);
    buffer_cache::empty_cache();
    // Other tests of this binary may run concurrently and add buffers, but not this many at once.
    assert!(buffer_cache::stats().cached_bytes < s.cached_bytes || s.cached_bytes == 0);
}
