//! Argument checks the CUDA launchers share: a kernel reads raw pointers, so a wrong dtype or
//! length must be an error before the launch, never a read past a buffer.

use super::CudaStorage;
use crate::{DType, Error, Result};

/// A floating-point storage, or the error the CPU path gives.
pub(crate) fn check_float(op: &'static str, s: &CudaStorage) -> Result<()> {
    if s.dtype().is_float() {
        Ok(())
    } else {
        Err(Error::DType {
            op,
            got: s.dtype(),
            msg: "expected a floating-point tensor".into(),
        })
    }
}

/// A storage of `dtype` with `len` elements, or an error naming `what`.
pub(crate) fn check_buffer(
    op: &'static str,
    what: &str,
    s: &CudaStorage,
    dtype: DType,
    len: usize,
) -> Result<()> {
    if s.dtype() != dtype {
        return Err(Error::DTypeMismatch {
            op,
            a: dtype,
            b: s.dtype(),
        });
    }
    if s.len() != len {
        return Err(Error::invalid(
            op,
            format!("{what} has {} elements, expected {len}", s.len()),
        ));
    }
    Ok(())
}
