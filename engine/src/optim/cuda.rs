//! CUDA launches for the fused optimizer updates (kernels/optim.cu).

/// Every kernel of kernels/optim.cu that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[];
