//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rcmcl::engine::gradcheck::{assert_gradients, GradCheck};
pub mod gpu;

use rcmcl::engine::{DType, Device, Result, Tensor};

/// Uniform f64 values in [-2, 2): random enough that wrong indexing changes the result.
pub fn rand64(dims: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(dims.to_vec(), -2.0, 2.0, seed, DType::F64, Device::Cpu).unwrap()
}

/// Uniform f64 values in [lo, hi).
pub fn rand64_in(dims: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand_uniform(dims.to_vec(), lo, hi, seed, DType::F64, Device::Cpu).unwrap()
}

/// Prints a line that shows in `cargo test` output even for a passing test: the test harness
/// captures `println!` but not writes to the stderr handle, and a skipped GPU test must say so.
pub fn skip_note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub fn t64(values: &[f64], dims: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), dims.to_vec(), Device::Cpu).unwrap()
}

pub fn t32(values: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), dims.to_vec(), Device::Cpu).unwrap()
}

pub fn idx(values: &[i64], dims: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), dims.to_vec(), Device::Cpu).unwrap()
}

/// Finite-difference check with the default tight tolerances.
pub fn gradcheck(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    assert_gradients(name, f, inputs, GradCheck::default());
}

pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

/// Row-major multi-index of flat position `i` in `dims`.
pub fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for k in (0..dims.len()).rev() {
        idx[k] = i % dims[k];
        i /= dims[k];
    }
    idx
}

/// Flat row-major position of multi-index `idx` in `dims`.
pub fn ravel(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}
