//! The TF32 switch (`engine::cuda::set_allow_tf32`), in a test binary of its own because the
//! setting is process-wide: with TF32 on, f32 products (forward and backward) agree with the
//! exact CPU reference within the looser TF32 bound; switched off again, they are back within
//! the f32 bound. Skips without a GPU.
//!
//! The bound: TF32 rounds each input to a 10-bit mantissa (unit roundoff 2^-11, about 4.9e-4),
//! so on random inputs a product's relative error in the 2-norm is a few 1e-4; 1e-2 leaves wide
//! margin for long inner dimensions and cancellation.

mod common;
#[cfg(feature = "cuda")]
use common::gpu::*;
#[cfg(feature = "cuda")]
use rcmcl::engine::{cuda, Tensor};

#[cfg(feature = "cuda")]
/// The documented agreement bound for f32 products with TF32 on (relative, in the 2-norm).
const TF32_TOL: f64 = 1e-2;

#[cfg(feature = "cuda")]
/// ||got - want|| / ||want||; NaN or infinity in `got` fails.
fn rel_err(what: &str, want: &Tensor, got: &Tensor) -> f64 {
    assert_eq!(want.dims(), got.dims(), "{what}: shapes differ");
    let (w, g) = (want.to_f64_vec().unwrap(), got.to_f64_vec().unwrap());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (i, (a, b)) in w.iter().zip(&g).enumerate() {
        assert!(b.is_finite(), "{what}: element {i} is {b} (cpu {a})");
        diff += (a - b) * (a - b);
        norm += a * a;
    }
    diff.sqrt() / norm.sqrt().max(1e-30)
}

#[cfg(feature = "cuda")]
/// The largest relative error over the output and both gradients of `a @ b` (and `a @ b^T` for
/// the transposed flags), on the device against the CPU.
fn worst_error(device: rcmcl::engine::Device, a: &Tensor, b: &Tensor, tb: bool) -> f64 {
    let run = |dev| {
        let a = a.to_device(dev).unwrap().with_requires_grad().unwrap();
        let b = b.to_device(dev).unwrap().with_requires_grad().unwrap();
        let y = a.matmul_transposed(&b, false, tb).unwrap();
        let g = randn(y.dims(), 7).to_device(dev).unwrap();
        y.backward_with(&g).unwrap();
        (y, a.grad().unwrap(), b.grad().unwrap())
    };
    let (cy, ca, cb) = run(rcmcl::engine::Device::Cpu);
    let (gy, ga, gb) = run(device);
    rel_err("output", &cy, &gy)
        .max(rel_err("gradient of a", &ca, &ga))
        .max(rel_err("gradient of b", &cb, &gb))
}

#[cfg(feature = "cuda")]
#[test]
fn tf32_is_off_by_default_within_its_bound_when_on_and_switches_back() {
    on_each_gpu(
        "tf32_is_off_by_default_within_its_bound_when_on_and_switches_back",
        |device| {
            assert!(!cuda::allow_tf32(), "TF32 must be off by default");
            let cases = [
                (randn(&[1024, 1024], 1), randn(&[1024, 1024], 2), false),
                (randn(&[4, 65, 1023], 3), randn(&[4, 129, 1023], 4), true),
                (randn(&[31, 33], 5), randn(&[33, 17], 6), false),
            ];
            for (a, b, tb) in &cases {
                let what = format!("{:?} @ {:?} (b transposed: {tb})", a.dims(), b.dims());
                let off = worst_error(device, a, b, *tb);
                cuda::set_allow_tf32(true);
                assert!(cuda::allow_tf32());
                let on = worst_error(device, a, b, *tb);
                cuda::set_allow_tf32(false);
                assert!(!cuda::allow_tf32());
                let back = worst_error(device, a, b, *tb);
                println!(
                    "{device} {what}: relative error fp32 {off:.2e}, TF32 {on:.2e}, fp32 again {back:.2e}"
                );
                assert!(off < TOL, "{what}: fp32 error {off:e} over {TOL:e}");
                assert!(on < TF32_TOL, "{what}: TF32 error {on:e} over {TF32_TOL:e}");
                assert!(
                    back < TOL,
                    "{what}: after switching TF32 off, error {back:e} over {TOL:e}"
                );
                // Where TF32 visibly changed the result, switching it off must undo that.
                if on > 10.0 * TOL {
                    assert!(back < on / 10.0, "{what}: TF32 still in effect ({back:e})");
                }
            }
        },
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn tf32_is_off_by_default_within_its_bound_when_on_and_switches_back() {
    common::gpu::on_each_gpu(
        "tf32_is_off_by_default_within_its_bound_when_on_and_switches_back",
        |_| {},
    );
}
