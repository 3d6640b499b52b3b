//! Elementwise ops: unary maps (activations, scalar arithmetic), binary ops with NumPy
//! broadcasting, comparisons (masks of 0/1) and `where`/`masked_fill`.
//!
//! Unary backward rules are one fused kernel computing `g * f'(x, y)`, so a backend needs one
//! kernel per direction for the whole family.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::{check_float, check_same};
use crate::shape::broadcast_shapes;
use crate::storage::{CpuStorage, Storage};
use crate::{with_float, with_float2, Float, Result, Tensor};

/// A unary elementwise function, with its parameter where it has one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Abs,
    Relu,
    LeakyRelu(f64),
    /// The exact GELU, x * Phi(x), as PyTorch's default.
    Gelu,
    Sigmoid,
    Tanh,
    Softplus,
    Powf(f64),
    AddScalar(f64),
    MulScalar(f64),
    Clamp(f64, f64),
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu(_) => "leaky_relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::AddScalar(_) => "add_scalar",
            UnaryOp::MulScalar(_) => "mul_scalar",
            UnaryOp::Clamp(..) => "clamp",
        }
    }

    #[inline(always)]
    pub fn apply<T: Float>(self, x: T) -> T {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp_k(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            // Comparisons rather than max(): NaN propagates (as in PyTorch) and the loop vectorises.
            UnaryOp::Relu => {
                if x < T::zero() {
                    T::zero()
                } else {
                    x
                }
            }
            UnaryOp::LeakyRelu(s) => {
                if x > T::zero() {
                    x
                } else {
                    x * T::of(s)
                }
            }
            UnaryOp::Gelu => x * normal_cdf(x),
            UnaryOp::Sigmoid => sigmoid(x),
            // softplus(x) = max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|.
            UnaryOp::Softplus => x.max(T::zero()) + (-x.abs()).exp_k().ln_1p(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Powf(p) => x.powf(T::of(p)),
            UnaryOp::AddScalar(s) => x + T::of(s),
            UnaryOp::MulScalar(s) => x * T::of(s),
            UnaryOp::Clamp(lo, hi) => {
                if x < T::of(lo) {
                    T::of(lo)
                } else if x > T::of(hi) {
                    T::of(hi)
                } else {
                    x
                }
            }
        }
    }

    /// d f / d x at `x`, where `y = f(x)` is available for rules that are cheaper through it.
    #[inline(always)]
    pub fn derivative<T: Float>(self, x: T, y: T) -> T {
        let one = T::one();
        let zero = T::zero();
        match self {
            UnaryOp::Neg => -one,
            UnaryOp::Exp => y,
            UnaryOp::Log => one / x,
            UnaryOp::Sqrt => T::of(0.5) / y,
            UnaryOp::Abs => {
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    zero
                }
            }
            UnaryOp::Relu => {
                if x > zero {
                    one
                } else {
                    zero
                }
            }
            UnaryOp::LeakyRelu(s) => {
                if x > zero {
                    one
                } else {
                    T::of(s)
                }
            }
            UnaryOp::Gelu => {
                let pdf = (-(x * x) * T::of(0.5)).exp()
                    * T::of(1.0 / (2.0 * std::f64::consts::PI).sqrt());
                normal_cdf(x) + x * pdf
            }
            UnaryOp::Sigmoid => y * (one - y),
            UnaryOp::Tanh => one - y * y,
            UnaryOp::Softplus => sigmoid(x),
            UnaryOp::Powf(p) => {
                if p == 0.0 {
                    zero
                } else {
                    T::of(p) * x.powf(T::of(p - 1.0))
                }
            }
            UnaryOp::AddScalar(_) => one,
            UnaryOp::MulScalar(s) => T::of(s),
            // Inside the closed interval the gradient passes, as in PyTorch.
            UnaryOp::Clamp(lo, hi) => {
                if x >= T::of(lo) && x <= T::of(hi) {
                    one
                } else {
                    zero
                }
            }
        }
    }
}

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    // Two branches so exp never overflows.
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp_k())
    } else {
        let e = x.exp_k();
        e / (T::one() + e)
    }
}

#[inline(always)]
fn normal_cdf<T: Float>(x: T) -> T {
    T::of(0.5 * (1.0 + libm::erf(x.f64() / std::f64::consts::SQRT_2)))
}

/// A binary elementwise function; the comparisons give 1 where true and 0 where false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
        }
    }

    #[inline(always)]
    pub fn apply<T: Float>(self, a: T, b: T) -> T {
        let mask = |c: bool| if c { T::one() } else { T::zero() };
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            // NaN in either operand gives NaN, as in PyTorch (f32::max would drop it).
            BinaryOp::Maximum => {
                if a.is_nan() || a > b {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Minimum => {
                if a.is_nan() || a < b {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Gt => mask(a > b),
            BinaryOp::Ge => mask(a >= b),
            BinaryOp::Lt => mask(a < b),
            BinaryOp::Le => mask(a <= b),
            BinaryOp::Eq => mask(a == b),
            BinaryOp::Ne => mask(a != b),
        }
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Eq | BinaryOp::Ne
        )
    }
}

impl Tensor {
    /// Applies a unary op; the building block of the named methods below.
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        check_float(op.name(), self)?;
        let storage = match &*self.storage() {
            Storage::Cpu(c) => Storage::Cpu(with_float!(op.name(), c, |v| CpuStorage::from(
                cpu::unary(op, v)
            ))?),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Storage::Cuda(cuda::unary(op, c)?),
        };
        let x = self.clone();
        Ok(Tensor::from_op(
            op.name(),
            storage,
            self.shape().clone(),
            &[self],
            Box::new(move |g, y| Ok(vec![Some(x.unary_grad(op, y, g)?)])),
        ))
    }

    /// `g * f'(self)` for a unary op whose output was `y` (the fused backward kernel).
    pub fn unary_grad(&self, op: UnaryOp, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        check_same(op.name(), self, g)?;
        check_same(op.name(), self, y)?;
        let storage = match (&*self.storage(), &*y.storage(), &*g.storage()) {
            (
                Storage::Cpu(CpuStorage::F32(x)),
                Storage::Cpu(CpuStorage::F32(y)),
                Storage::Cpu(CpuStorage::F32(g)),
            ) => Storage::Cpu(CpuStorage::from(cpu::unary_grad(op, x, y, g))),
            (
                Storage::Cpu(CpuStorage::F64(x)),
                Storage::Cpu(CpuStorage::F64(y)),
                Storage::Cpu(CpuStorage::F64(g)),
            ) => Storage::Cpu(CpuStorage::from(cpu::unary_grad(op, x, y, g))),
            #[cfg(feature = "cuda")]
            (Storage::Cuda(x), Storage::Cuda(y), Storage::Cuda(g)) => {
                Storage::Cuda(cuda::unary_grad(op, x, y, g)?)
            }
            _ => {
                return Err(crate::Error::DTypeMismatch {
                    op: op.name(),
                    a: self.dtype(),
                    b: g.dtype(),
                })
            }
        };
        Ok(Tensor::from_op_no_grad(storage, self.shape().clone()))
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    pub fn leaky_relu(&self, negative_slope: f64) -> Result<Tensor> {
        self.unary(UnaryOp::LeakyRelu(negative_slope))
    }
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Gelu)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    pub fn softplus(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Softplus)
    }
    /// `self ^ p` for a scalar exponent.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p))
    }
    pub fn square(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(2.0))
    }
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.unary(UnaryOp::AddScalar(s))
    }
    pub fn sub_scalar(&self, s: f64) -> Result<Tensor> {
        self.unary(UnaryOp::AddScalar(-s))
    }
    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.unary(UnaryOp::MulScalar(s))
    }
    pub fn div_scalar(&self, s: f64) -> Result<Tensor> {
        self.unary(UnaryOp::MulScalar(1.0 / s))
    }
    /// Values limited to [min, max]; the gradient passes where min <= x <= max.
    pub fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        if min > max || min.is_nan() || max.is_nan() {
            return Err(crate::Error::invalid(
                "clamp",
                format!("min {min} must not exceed max {max}"),
            ));
        }
        self.unary(UnaryOp::Clamp(min, max))
    }

    /// Applies a binary op with NumPy broadcasting.
    pub fn binary(&self, other: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let name = op.name();
        check_float(name, self)?;
        check_same(name, self, other)?;
        let out_dims = broadcast_shapes(name, self.dims(), other.dims())?;
        let storage = match (&*self.storage(), &*other.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                Storage::Cpu(with_float2!(name, a, b, |x, y| CpuStorage::from(
                    cpu::binary(op, x, self.dims(), y, other.dims(), &out_dims)
                ))?)
            }
            #[cfg(feature = "cuda")]
            (Storage::Cuda(a), Storage::Cuda(b)) => Storage::Cuda(cuda::binary(
                op,
                a,
                self.dims(),
                b,
                other.dims(),
                &out_dims,
            )?),
            #[cfg(feature = "cuda")]
            _ => unreachable!("check_same rejected operands on different devices"),
        };
        if op.is_comparison() {
            return Ok(Tensor::from_op_no_grad(storage, out_dims));
        }
        let (a, b) = (self.clone(), other.clone());
        let backward: crate::autograd::BackwardFn = Box::new(move |g, y| {
            let (ga, gb) = match op {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.neg()?),
                BinaryOp::Mul => (g.mul(&b)?, g.mul(&a)?),
                BinaryOp::Div => (g.div(&b)?, g.mul(y)?.div(&b)?.neg()?),
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    // Ties send the gradient to the first operand.
                    let first = if op == BinaryOp::Maximum {
                        a.ge(&b)?
                    } else {
                        a.le(&b)?
                    };
                    let zero = g.zeros_like()?;
                    (
                        Tensor::where_cond(&first, g, &zero)?,
                        Tensor::where_cond(&first, &zero, g)?,
                    )
                }
                _ => unreachable!("comparisons have no gradient"),
            };
            Ok(vec![
                a.requires_grad().then(|| ga.sum_to(a.dims())).transpose()?,
                b.requires_grad().then(|| gb.sum_to(b.dims())).transpose()?,
            ])
        });
        Ok(Tensor::from_op(
            name,
            storage,
            out_dims,
            &[self, other],
            backward,
        ))
    }

    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Add)
    }
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Sub)
    }
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Mul)
    }
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Div)
    }
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Maximum)
    }
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Minimum)
    }
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Gt)
    }
    pub fn ge(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Ge)
    }
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Lt)
    }
    pub fn le(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Le)
    }
    pub fn eq_mask(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Eq)
    }
    pub fn ne_mask(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Ne)
    }

    /// `cond != 0 ? a : b` elementwise, with all three broadcast together. `cond` may have any
    /// dtype; the gradient flows to `a` where the condition holds and to `b` elsewhere.
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_float("where", a)?;
        check_same("where", a, b)?;
        if cond.device() != a.device() {
            return Err(crate::Error::DeviceMismatch {
                op: "where",
                a: cond.device(),
                b: a.device(),
            });
        }
        let cond = cond.to_dtype(a.dtype())?.detach();
        let dims_ab = broadcast_shapes("where", a.dims(), b.dims())?;
        let out_dims = broadcast_shapes("where", cond.dims(), &dims_ab)?;
        let storage =
            match (&*cond.storage(), &*a.storage(), &*b.storage()) {
                (
                    Storage::Cpu(CpuStorage::F32(c)),
                    Storage::Cpu(CpuStorage::F32(x)),
                    Storage::Cpu(CpuStorage::F32(y)),
                ) => Storage::Cpu(CpuStorage::from(cpu::select(
                    (c, cond.dims()),
                    (x, a.dims()),
                    (y, b.dims()),
                    &out_dims,
                ))),
                (
                    Storage::Cpu(CpuStorage::F64(c)),
                    Storage::Cpu(CpuStorage::F64(x)),
                    Storage::Cpu(CpuStorage::F64(y)),
                ) => Storage::Cpu(CpuStorage::from(cpu::select(
                    (c, cond.dims()),
                    (x, a.dims()),
                    (y, b.dims()),
                    &out_dims,
                ))),
                #[cfg(feature = "cuda")]
                (Storage::Cuda(c), Storage::Cuda(x), Storage::Cuda(y)) => Storage::Cuda(
                    cuda::select((c, cond.dims()), (x, a.dims()), (y, b.dims()), &out_dims)?,
                ),
                _ => unreachable!("devices and dtypes were checked above"),
            };
        let (a_dims, b_dims) = (a.dims().to_vec(), b.dims().to_vec());
        let (a_rg, b_rg) = (a.requires_grad(), b.requires_grad());
        Ok(Tensor::from_op(
            "where",
            storage,
            out_dims,
            &[a, b],
            Box::new(move |g, _| {
                let zero = g.zeros_like()?;
                let ga = a_rg
                    .then(|| Tensor::where_cond(&cond, g, &zero)?.sum_to(&a_dims))
                    .transpose()?;
                let gb = b_rg
                    .then(|| Tensor::where_cond(&cond, &zero, g)?.sum_to(&b_dims))
                    .transpose()?;
                Ok(vec![ga, gb])
            }),
        ))
    }

    /// `value` where `mask != 0`, `self` elsewhere (mask broadcast to self's shape).
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        let fill = Tensor::scalar(value, self.dtype(), self.device())?;
        let out = Tensor::where_cond(mask, &fill, self)?;
        if out.dims() != self.dims() {
            return Err(crate::Error::shape(
                "masked_fill",
                &[self.dims(), mask.dims()],
                "the mask must broadcast to the tensor's shape",
            ));
        }
        Ok(out)
    }
}
