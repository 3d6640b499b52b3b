//! The counter-based random kernels on CUDA against the CPU: dropout masks equal the CPU's
//! exactly (same hash, same comparison in f64), with the gradient through the mask; seeded
//! uniform fills equal the CPU's bit for bit, normal fills to the last bit of f64's `ln`/`cos`.
//! Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::ops::dropout::{random_normal, random_uniform};
use rcmcl::engine::{DType, Device, Tensor};

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// The same elements, bit for bit (so -0 and 0 differ, and NaN would fail).
fn assert_identical(what: &str, want: &Tensor, got: &Tensor) {
    assert_eq!(want.dims(), got.dims(), "{what}: shapes differ");
    assert_eq!(want.dtype(), got.dtype(), "{what}: dtypes differ");
    let (w, g) = (bits(want), bits(got));
    if let Some(i) = (0..w.len()).find(|&i| w[i] != g[i]) {
        panic!(
            "{what}: element {i} differs: cpu {} gpu {}",
            f64::from_bits(w[i]),
            f64::from_bits(g[i])
        );
    }
}

#[test]
fn dropout_masks_equal_the_cpu_masks_exactly() {
    on_each_gpu("dropout_masks_equal_the_cpu_masks_exactly", |device| {
        let mut sizes = ODD_SIZES.to_vec();
        sizes.push(1 << 20);
        for &n in &sizes {
            for (p, seed) in [(0.1, 1u64), (0.5, 2), (0.9, 3), (1.0, 4)] {
                let x = randn(&[n], n as u64);
                let want = x.dropout(p, seed, true).unwrap();
                let got = x.to_device(device).unwrap().dropout(p, seed, true).unwrap();
                assert_eq!(got.device(), device);
                assert_identical(&format!("dropout p={p} n={n}"), &want, &got);
            }
        }
        // A large seed (the hash's u64 arithmetic wraps the same way on both sides).
        let x = randn(&[4097], 5);
        assert_identical(
            "dropout with seed u64::MAX",
            &x.dropout(0.3, u64::MAX, true).unwrap(),
            &x.to_device(device)
                .unwrap()
                .dropout(0.3, u64::MAX, true)
                .unwrap(),
        );
        // f64: the same mask, the multiplier rounded in f64.
        let x = randn(&[3, 1001], 6).to_dtype(DType::F64).unwrap();
        assert_identical(
            "dropout f64",
            &x.dropout(0.25, 7, true).unwrap(),
            &x.to_device(device).unwrap().dropout(0.25, 7, true).unwrap(),
        );
    });
}

#[test]
fn dropout_gradient_goes_through_the_mask() {
    on_each_gpu("dropout_gradient_goes_through_the_mask", |device| {
        for &n in ODD_SIZES {
            let x = randn(&[2, n], n as u64 + 10);
            check_agrees(&format!("dropout [2, {n}]"), device, &[x], |t| {
                t[0].dropout(0.3, 99, true)
            });
        }
        let x = randn(&[33, 31], 11).to_dtype(DType::F64).unwrap();
        check_agrees("dropout f64", device, &[x], |t| t[0].dropout(0.6, 5, true));
        // Not training: the identity, on the device.
        let x = randn(&[31], 12);
        check_agrees("dropout eval", device, &[x], |t| {
            t[0].dropout(0.6, 5, false)
        });
    });
}

#[test]
fn seeded_fills_equal_the_cpu_fills() {
    on_each_gpu("seeded_fills_equal_the_cpu_fills", |device| {
        let mut sizes = ODD_SIZES.to_vec();
        sizes.push(3_000_017);
        for &n in &sizes {
            for dtype in [DType::F32, DType::F64] {
                let seed = n as u64 ^ 0xabc;
                let make =
                    |d: Device| Tensor::rand_uniform([n], -3.0, 5.0, seed, dtype, d).unwrap();
                let got = make(device);
                assert_eq!(got.device(), device);
                assert_identical(
                    &format!("rand_uniform {dtype} n={n}"),
                    &make(Device::Cpu),
                    &got,
                );

                let make = |d: Device| Tensor::rand_normal([n], 1.0, 2.0, seed, dtype, d).unwrap();
                let (want, got) = (make(Device::Cpu), make(device));
                assert_eq!(got.device(), device);
                // `ln` and `cos` in f64 may differ in the last bit between the host's libm and
                // CUDA's; everything else is the same arithmetic. After rounding to f32 the
                // values almost always coincide, and never differ by more than one f32 step.
                let bound = if dtype == DType::F64 { 1e-14 } else { 1.2e-7 };
                let (w, g) = (want.to_f64_vec().unwrap(), got.to_f64_vec().unwrap());
                let mut differ = 0;
                for (i, (a, b)) in w.iter().zip(&g).enumerate() {
                    assert!(
                        (a - b).abs() <= bound * a.abs().max(1.0),
                        "rand_normal {dtype} n={n} element {i}: cpu {a} gpu {b}"
                    );
                    differ += usize::from(a != b);
                }
                if dtype == DType::F32 {
                    assert!(
                        differ * 10_000 <= n.max(10_000),
                        "rand_normal f32 n={n}: {differ} elements differ"
                    );
                }
            }
        }
        // Shapes do not matter, only the element index; a 0-element fill is fine.
        let a = Tensor::rand_uniform([7, 11], 0.0, 1.0, 3, DType::F32, device).unwrap();
        let b = Tensor::rand_uniform([77], 0.0, 1.0, 3, DType::F32, device).unwrap();
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        let e = Tensor::rand_normal([0, 3], 0.0, 1.0, 3, DType::F32, device).unwrap();
        assert_eq!(e.numel(), 0);
    });
}

#[test]
fn gpu_fills_follow_the_specification() {
    on_each_gpu("gpu_fills_follow_the_specification", |device| {
        let u = Tensor::rand_uniform([1023], -1.0, 3.0, 77, DType::F64, device).unwrap();
        let n = Tensor::rand_normal([1023], 0.5, 3.0, 77, DType::F64, device).unwrap();
        let (u, n) = (u.to_vec::<f64>().unwrap(), n.to_vec::<f64>().unwrap());
        for i in 0..1023 {
            assert_eq!(u[i], random_uniform(77, i as u64, -1.0, 3.0), "uniform {i}");
            let want = random_normal(77, i as u64, 0.5, 3.0);
            assert!(
                (n[i] - want).abs() <= 1e-14 * want.abs().max(1.0),
                "normal {i}"
            );
        }
    });
}
