//! CUDA launches for graph aggregation (kernels/graph.cu).

use super::Dims;
use crate::cuda::CudaStorage;
use crate::{Error, Result};

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[];

pub(crate) fn forward(
    _x: &CudaStorage,
    _a: &CudaStorage,
    _mask: Option<&CudaStorage>,
    _d: &Dims,
) -> Result<CudaStorage> {
    Err(Error::invalid(
        super::OP,
        "the CUDA path is not written yet",
    ))
}

pub(crate) fn grad_input(
    _dy: &CudaStorage,
    _a: &CudaStorage,
    _mask: Option<&CudaStorage>,
    _d: &Dims,
) -> Result<CudaStorage> {
    Err(Error::invalid(
        super::OP,
        "the CUDA path is not written yet",
    ))
}

pub(crate) fn grad_adjacency(
    _x: &CudaStorage,
    _dy: &CudaStorage,
    _mask: Option<&CudaStorage>,
    _d: &Dims,
) -> Result<CudaStorage> {
    Err(Error::invalid(
        super::OP,
        "the CUDA path is not written yet",
    ))
}
