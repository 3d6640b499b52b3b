//! Inverted dropout: kept elements are scaled by `1 / (1 - p)` so the expected value is unchanged
//! and evaluation needs no rescaling. The mask comes from a counter-based hash of
//! `(seed, element index)` ([`dropout_uniform`]) and is kept for the backward pass.

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::check_float;
use crate::storage::{CpuStorage, Storage};
use crate::{with_float, Error, Result, Tensor};

/// The uniform number in [0, 1) that decides element `index` under `seed`: the element is kept
/// when it is `>= p`. This is the specification every backend's dropout kernel reproduces.
pub fn dropout_uniform(seed: u64, index: u64) -> f64 {
    cpu::uniform(seed, index)
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
            _ => return Err(crate::ops::cuda_todo("dropout")),
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
