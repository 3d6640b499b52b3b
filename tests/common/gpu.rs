//! Backend agreement: the same test body runs on every CUDA device that is built and present,
//! comparing each op's forward and backward there against the CPU reference in f32.
//!
//! - `on_each_gpu` runs a body per device, or prints one line saying why it was skipped.
//! - `check_agrees` runs an op on the CPU and on a device from the same random inputs, then
//!   back-propagates the same random output gradient through both, and compares the output and
//!   every input gradient: relative error ||gpu - cpu|| / ||cpu|| under `TOL`, NaN never passes.
//! - Fresh device outputs are poisoned with NaN (all bits set) before each kernel writes them,
//!   so an element a kernel forgets to write fails the comparison.

use super::skip_note;
use rcmcl::engine::{DType, Device, Result, Tensor};

/// The agreement bound for f32 results (relative, in the 2-norm).
pub const TOL: f64 = 1e-4;

/// The usable CUDA devices; when there are none, prints why `test` is skipped.
pub fn gpus(test: &str) -> Vec<Device> {
    let devices = Device::cuda_devices();
    if devices.is_empty() {
        let why = if cfg!(feature = "cuda") {
            Device::cuda_unavailable_reason().unwrap_or_else(|| "no CUDA device".into())
        } else {
            "built without the `cuda` feature".into()
        };
        skip_note(&format!("SKIPPED {test}: {why}"));
    }
    #[cfg(feature = "cuda")]
    rcmcl::engine::cuda::set_poison_outputs(true);
    devices
}

/// Runs `body` once per usable CUDA device (prints a skip line when there is none).
pub fn on_each_gpu(test: &str, body: impl Fn(Device)) {
    for d in gpus(test) {
        body(d);
    }
}

/// A CPU f32 tensor of normal samples (mean 0, std 1) from `seed`.
pub fn randn(dims: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(dims, 0.0, 1.0, seed, DType::F32, Device::Cpu).unwrap()
}

/// A CPU f32 tensor of uniform samples in [lo, hi) from `seed`.
pub fn rand_in(dims: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand_uniform(dims, lo, hi, seed, DType::F32, Device::Cpu).unwrap()
}

/// ||got - want|| / ||want|| over all elements, after checking shape and dtype; NaN or infinity
/// anywhere in `got` where `want` is finite fails. Integer tensors must match exactly.
pub fn assert_agree(what: &str, want: &Tensor, got: &Tensor) {
    assert_eq!(want.dims(), got.dims(), "{what}: shapes differ");
    assert_eq!(want.dtype(), got.dtype(), "{what}: dtypes differ");
    assert!(
        !got.device().is_cpu(),
        "{what}: the device result is on the CPU"
    );
    let w = want.to_f64_vec().unwrap();
    let g = got.to_f64_vec().unwrap();
    if want.dtype() == DType::I64 {
        if let Some(i) = (0..w.len()).find(|&i| w[i] != g[i]) {
            panic!("{what}: element {i} differs: cpu {} gpu {}", w[i], g[i]);
        }
        return;
    }
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (i, (&a, &b)) in w.iter().zip(&g).enumerate() {
        if a.is_finite() && !b.is_finite() {
            panic!("{what}: element {i} is {b} on the GPU, {a} on the CPU (unwritten or overflow)");
        }
        if a.is_nan() != b.is_nan() || (a.is_infinite() && a != b) {
            panic!("{what}: element {i}: cpu {a} gpu {b}");
        }
        if a.is_finite() {
            diff += (a - b) * (a - b);
            norm += a * a;
        }
    }
    let rel = diff.sqrt() / norm.sqrt().max(1e-30);
    assert!(
        rel < TOL || diff.sqrt() < 1e-30,
        "{what}: relative error {rel:.3e} (bound {TOL:.0e}) over {} elements",
        w.len()
    );
}

/// Runs `f` on the CPU and on `device` from copies of `inputs` (CPU f32 tensors; float ones get
/// gradients), compares the outputs, then back-propagates the same random output gradient on
/// both and compares every float input's gradient. Returns the device output for extra checks.
pub fn check_agrees(
    name: &str,
    device: Device,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Tensor {
    let leaves = |dev: Device| -> Vec<Tensor> {
        inputs
            .iter()
            .map(|t| {
                let t = t.to_device(dev).unwrap().detach();
                if t.dtype().is_float() {
                    t.with_requires_grad().unwrap()
                } else {
                    t
                }
            })
            .collect()
    };
    let (cpu_in, gpu_in) = (leaves(Device::Cpu), leaves(device));
    let cpu_out = f(&cpu_in).unwrap_or_else(|e| panic!("{name} on the CPU: {e}"));
    let gpu_out = f(&gpu_in).unwrap_or_else(|e| panic!("{name} on {device}: {e}"));
    assert_eq!(gpu_out.device(), device, "{name}: output left the device");
    assert_agree(&format!("{name} forward"), &cpu_out, &gpu_out);
    if cpu_out.requires_grad() {
        let seed = 0x5eed ^ cpu_out.numel() as u64;
        let g = Tensor::rand_normal(cpu_out.dims(), 0.0, 1.0, seed, cpu_out.dtype(), Device::Cpu)
            .unwrap();
        cpu_out.backward_with(&g).unwrap();
        gpu_out
            .backward_with(&g.to_device(device).unwrap())
            .unwrap_or_else(|e| panic!("{name} backward on {device}: {e}"));
        for (i, (c, d)) in cpu_in.iter().zip(&gpu_in).enumerate() {
            match (c.grad(), d.grad()) {
                (Some(cg), Some(dg)) => {
                    assert_eq!(dg.device(), device, "{name}: gradient {i} left the device");
                    assert_agree(&format!("{name} gradient of input {i}"), &cg, &dg)
                }
                (None, None) => {}
                (c, d) => panic!(
                    "{name}: input {i} has a gradient on one device only (cpu {}, gpu {})",
                    c.is_some(),
                    d.is_some()
                ),
            }
        }
    }
    gpu_out
}

/// The sizes that catch tail and indexing bugs: 1, a warp minus and plus one, a block minus one,
/// a prime above a page of elements.
pub const ODD_SIZES: &[usize] = &[1, 31, 33, 1023, 4097];
