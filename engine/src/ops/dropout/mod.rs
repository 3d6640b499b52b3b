//! Inverted dropout: kept elements are scaled by `1 / (1 - p)` so the expected value is unchanged
//! and evaluation needs no rescaling. The mask comes from a counter-based hash of
//! `(seed, element index)` ([`dropout_uniform`]) and is kept for the backward pass.
//!
//! The seeded fills behind `Tensor::rand_uniform` / `Tensor::rand_normal` use the same hash
//! ([`random_uniform`], [`random_normal`]), so a seed gives the same tensor on every device.

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::check_float;
use crate::storage::{CpuStorage, Storage};
use crate::{with_float, DType, Device, Error, Result, Tensor};

/// The uniform number in [0, 1) that decides element `index` under `seed`: the element is kept
/// when it is `>= p`. This is the specification every backend's dropout kernel reproduces.
pub fn dropout_uniform(seed: u64, index: u64) -> f64 {
    cpu::uniform(seed, index)
}

/// Element `index` of `Tensor::rand_uniform(.., low, high, seed, ..)` before rounding to the
/// dtype: `low + (high - low) * u` with `u = dropout_uniform(seed, index)`, in f64.
pub fn random_uniform(seed: u64, index: u64, low: f64, high: f64) -> f64 {
    low + (high - low) * cpu::uniform(seed, index)
}

/// Element `index` of `Tensor::rand_normal(.., mean, std, seed, ..)` before rounding to the
/// dtype: Box-Muller's cosine branch from the uniforms of indices `2 index` and `2 index + 1`,
/// in f64 (`1 - u` keeps the logarithm finite).
pub fn random_normal(seed: u64, index: u64, mean: f64, std: f64) -> f64 {
    let u1 = 1.0 - cpu::uniform(seed, index.wrapping_mul(2));
    let u2 = cpu::uniform(seed, index.wrapping_mul(2).wrapping_add(1));
    mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// What a seeded fill draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Distribution {
    Uniform { low: f64, high: f64 },
    Normal { mean: f64, std: f64 },
}

impl Distribution {
    fn sample(self, seed: u64, index: u64) -> f64 {
        match self {
            Distribution::Uniform { low, high } => random_uniform(seed, index, low, high),
            Distribution::Normal { mean, std } => random_normal(seed, index, mean, std),
        }
    }
}

/// `n` draws of `dist` under `seed`, made where they will live: element `i` is
/// `dist.sample(seed, i)` rounded to `dtype` on every device (the GPU fills in a kernel, no
/// host copy). `dtype` must be a float type.
pub(crate) fn random_storage(
    dist: Distribution,
    n: usize,
    seed: u64,
    dtype: DType,
    device: Device,
) -> Result<Storage> {
    match device {
        Device::Cpu => Ok(Storage::Cpu(match dtype {
            DType::F32 => CpuStorage::from(cpu::fill::<f32>(n, |i| dist.sample(seed, i))),
            DType::F64 => CpuStorage::from(cpu::fill::<f64>(n, |i| dist.sample(seed, i))),
            DType::I64 => unreachable!("the caller checked for a float dtype"),
        })),
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => Ok(Storage::Cuda(cuda::random_fill(
            &crate::cuda::gpu(i)?,
            dist,
            n,
            seed,
            dtype,
        )?)),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(i) => Device::cuda(i).map(|_| unreachable!("no CUDA without the feature")),
    }
}

impl Tensor {
    /// Zeroes each element with probability `p` (in [0, 1]; `p == 1` gives zeros) and scales the
    /// rest by `1 / (1 - p)`. The identity when `!training` or `p == 0`. The same `seed` gives the
    /// same mask for a tensor of the same size; the gradient is the output gradient times the mask.
    pub fn dropout(&self, p: f64, seed: u64, training: bool) -> Result<Tensor> {
        check_float("dropout", self)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("the drop probability must be in [0, 1], got {p}"),
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let (out, mask) = match &*self.storage() {
            Storage::Cpu(c) => with_float!("dropout", c, |v| {
                let (out, mask) = cpu::dropout(v, seed, p);
                (
                    Storage::Cpu(CpuStorage::from(out)),
                    Storage::Cpu(CpuStorage::from(mask)),
                )
            })?,
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => {
                let (out, mask) = cuda::dropout(c, seed, p)?;
                (Storage::Cuda(out), Storage::Cuda(mask))
            }
        };
        // The mask holds the multiplier (0 or 1 / (1 - p)) so backward is one elementwise product.
        let mask = Tensor::from_op_no_grad(mask, self.shape().clone());
        Ok(Tensor::from_op(
            "dropout",
            out,
            self.shape().clone(),
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.mul(&mask)?)])),
        ))
    }
}
