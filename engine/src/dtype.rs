//! Element types. f32 is the working type; f64 exists so gradient checks are tight; i64 holds
//! indices (class labels, gather/scatter indices, argmax results) and is never differentiated.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    I64,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The floating-point element types the CPU kernels are generic over.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + crate::storage::Element
    + Send
    + Sync
    + fmt::Debug
    + fmt::Display
    + 'static
{
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
    /// `exp` as the CPU kernels compute it: vectorisable for f32 (see `math::exp_f32`), libm's
    /// for f64 (the reference precision).
    fn exp_k(self) -> Self;
}

impl Float for f32 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_k(self) -> Self {
        crate::math::exp_f32(self)
    }
}

impl Float for f64 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_k(self) -> Self {
        self.exp()
    }
}
