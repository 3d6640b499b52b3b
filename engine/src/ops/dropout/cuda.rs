//! CUDA launches for this family (kernels/dropout.cu).

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[];
