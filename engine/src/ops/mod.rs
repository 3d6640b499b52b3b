//! Op families. Each folder holds one family: `mod.rs` (API on `Tensor`, shape checks, backward
//! rules) and `cpu.rs` (reference kernels, generic over f32/f64, parallel where hot).

pub mod contrastive;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod graph;
pub mod index;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pointnet;
pub mod reduce;
pub mod softmax;

use crate::{Error, Result, Tensor};

/// Below this many elements a kernel runs on one thread: splitting costs more than it saves.
pub const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Both tensors on one device with one dtype, or an error naming the op.
pub(crate) fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            a: a.device(),
            b: b.device(),
        });
    }
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            a: a.dtype(),
            b: b.dtype(),
        });
    }
    Ok(())
}

/// A floating-point tensor, or an error naming the op.
pub(crate) fn check_float(op: &'static str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(Error::DType {
            op,
            got: t.dtype(),
            msg: "expected a floating-point tensor".into(),
        });
    }
    Ok(())
}
