//! Dropout as a layer: active in training mode only, with a fresh reproducible mask per call.

use super::{Module, ParamPath, TrainingFlag};
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Error, Result, Tensor};

pub struct Dropout {
    p: f64,
    base_seed: u64,
    /// Number of masks drawn so far: an i64 buffer, so a checkpoint resumes the same mask sequence.
    calls: Tensor,
    training: TrainingFlag,
}

impl Dropout {
    pub fn new(path: &ParamPath, p: f64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "Dropout",
                format!("the drop probability must be in [0, 1), got {p}"),
            ));
        }
        let calls = path.buffer("calls", Tensor::zeros([1], DType::I64, crate::Device::Cpu)?)?;
        Ok(Dropout {
            p,
            base_seed: path.seed("mask"),
            calls,
            training: path.training_flag(),
        })
    }

    /// The seed of the next mask, advancing the call counter.
    fn next_seed(&self) -> u64 {
        let mut s = self.calls.storage_mut();
        let Storage::Cpu(CpuStorage::I64(v)) = &mut *s else {
            unreachable!("the counter is an i64 CPU buffer")
        };
        v[0] += 1;
        self.base_seed ^ (v[0] as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training.is_training() || self.p == 0.0 {
            return Ok(x.clone());
        }
        x.dropout(self.p, self.next_seed(), true)
    }
}
