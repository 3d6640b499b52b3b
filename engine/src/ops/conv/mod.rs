//! 3D convolution and pooling on NCDHW tensors (N, C, D, H, W): `conv3d` (any kernel
//! (kt, kh, kw), stride, zero padding, optional bias; dilation 1, one group), `max_pool3d`,
//! `avg_pool3d` and `global_avg_pool3d`, each with its backward.
//!
//! The (1, k, k) spatial and (k, 1, 1) temporal convolutions of a (2+1)D network are kernels of
//! that shape; the (9, 1) temporal convolution of ST-GCN on (N, C, T, V) is a conv3d on
//! (N, C, T, V, 1) with kernel (9, 1, 1).
//!
//! Output size per axis: `(in + 2 * pad - k) / stride + 1` (floor, as PyTorch without
//! `ceil_mode`). Pooling padding must be at most half the kernel (as PyTorch). Max pooling pads
//! with -inf (padding is never chosen), a window holding a NaN yields NaN and routes its gradient
//! to its first NaN, and among equal maxima the first (in (d, h, w) order) is chosen. Average
//! pooling counts padding as zeros and always divides by kt * kh * kw (PyTorch's default,
//! `count_include_pad=True`). Global average pooling is the mean over (D, H, W) and returns
//! (N, C).
//!
//! CPU (`cpu.rs`): im2col + the engine's GEMM per sample. CUDA (`cuda.rs`, kernels/conv3d.cu):
//! implicit GEMM with shared-memory tiles (no column buffer in global memory) for the forward,
//! the input gradient and the weight gradient (split over the reduction into partial buffers
//! added in a fixed order: no atomics, the same bits on every run); pooling one thread per
//! output (forward) or per input element (backward, gathering over the covering windows).

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::{check_float, check_same};
use crate::storage::{CpuStorage, Element, Storage};
use crate::{DType, Error, Result, Tensor};
use cpu::{ConvGeom, PoolGeom};

/// Stride and zero padding of a 3D convolution, per axis (D, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dParams {
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl Default for Conv3dParams {
    /// Stride 1, no padding.
    fn default() -> Self {
        Conv3dParams {
            stride: [1; 3],
            padding: [0; 3],
        }
    }
}

impl Conv3dParams {
    pub fn new(stride: [usize; 3], padding: [usize; 3]) -> Self {
        Conv3dParams { stride, padding }
    }
}

/// Window, stride and padding of a 3D pooling, per axis (D, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool3dParams {
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl Pool3dParams {
    /// Non-overlapping windows: stride = kernel, no padding (PyTorch's default stride).
    pub fn new(kernel: [usize; 3]) -> Self {
        Pool3dParams {
            kernel,
            stride: kernel,
            padding: [0; 3],
        }
    }
    pub fn with_stride(mut self, stride: [usize; 3]) -> Self {
        self.stride = stride;
        self
    }
    pub fn with_padding(mut self, padding: [usize; 3]) -> Self {
        self.padding = padding;
        self
    }
}

/// The typed elements of a CPU storage whose dtype the caller has already checked.
fn sl<T: Element>(c: &CpuStorage) -> &[T] {
    T::slice(c).expect("dtype checked before the kernel")
}

/// The output size along each axis, or an error naming the op and shapes.
fn out_dims(
    op: &'static str,
    shapes: &[&[usize]],
    i: [usize; 3],
    k: [usize; 3],
    stride: [usize; 3],
    pad: [usize; 3],
) -> Result<[usize; 3]> {
    let mut o = [0; 3];
    for a in 0..3 {
        if k[a] == 0 || stride[a] == 0 {
            return Err(Error::shape(
                op,
                shapes,
                format!("kernel {k:?} and stride {stride:?} must be at least 1 along every axis"),
            ));
        }
        if i[a] + 2 * pad[a] < k[a] {
            return Err(Error::shape(
                op,
                shapes,
                format!(
                    "the padded input {:?} is smaller than the kernel {k:?} (padding {pad:?})",
                    [i[0] + 2 * pad[0], i[1] + 2 * pad[1], i[2] + 2 * pad[2]]
                ),
            ));
        }
        o[a] = (i[a] + 2 * pad[a] - k[a]) / stride[a] + 1;
    }
    Ok(o)
}

fn spatial(d: &[usize]) -> [usize; 3] {
    [d[2], d[3], d[4]]
}

/// Calls `f::<T>` for the float dtype of `dtype` (already checked to be f32 or f64).
macro_rules! by_dtype {
    ($op:expr, $dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $T = f32;
                Ok(CpuStorage::from($body))
            }
            DType::F64 => {
                type $T = f64;
                Ok(CpuStorage::from($body))
            }
            other => Err(Error::DType {
                op: $op,
                got: other,
                msg: "expected a floating-point tensor".into(),
            }),
        }
    };
}

/// The device storage of a tensor on a CUDA device (its device already checked).
#[cfg(feature = "cuda")]
fn cuda_of<'a>(op: &'static str, s: &'a Storage) -> Result<&'a crate::cuda::CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        other => Err(Error::invalid(
            op,
            format!("expected a CUDA tensor, got one on {}", other.device()),
        )),
    }
}

fn conv_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &ConvGeom) -> Result<Storage> {
    const OP: &str = "conv3d";
    let (xs, ws) = (x.storage(), w.storage());
    let bs = b.map(|b| b.storage());
    Ok(match (&*xs, &*ws) {
        (Storage::Cpu(xc), Storage::Cpu(wc)) => {
            let bc = match bs.as_deref() {
                Some(Storage::Cpu(c)) => Some(c),
                #[cfg(feature = "cuda")]
                Some(_) => return Err(Error::invalid(OP, "the bias is on another device")),
                None => None,
            };
            Storage::Cpu(by_dtype!(OP, x.dtype(), T => cpu::conv3d::<T>(
                sl(xc),
                sl(wc),
                bc.map(sl),
                g
            ))?)
        }
        #[cfg(feature = "cuda")]
        (Storage::Cuda(xc), Storage::Cuda(wc)) => {
            let bc = match bs.as_deref() {
                Some(s) => Some(cuda_of(OP, s)?),
                None => None,
            };
            Storage::Cuda(cuda::conv3d(xc, wc, bc, g)?)
        }
        #[cfg(feature = "cuda")]
        _ => {
            return Err(Error::invalid(
                OP,
                "the input and weight are on different devices",
            ))
        }
    })
}

fn conv_input_grad(gy: &Tensor, w: &Tensor, g: &ConvGeom) -> Result<Tensor> {
    const OP: &str = "conv3d";
    check_same(OP, w, gy)?;
    let (gs, ws) = (gy.storage(), w.storage());
    let storage = match (&*gs, &*ws) {
        (Storage::Cpu(gc), Storage::Cpu(wc)) => Storage::Cpu(by_dtype!(OP, w.dtype(), T =>
            cpu::conv3d_input_grad::<T>(sl(gc), sl(wc), g))?),
        #[cfg(feature = "cuda")]
        (Storage::Cuda(gc), Storage::Cuda(wc)) => {
            Storage::Cuda(cuda::conv3d_input_grad(gc, wc, g)?)
        }
        #[cfg(feature = "cuda")]
        _ => unreachable!("check_same rejected tensors on different devices"),
    };
    Ok(Tensor::from_op_no_grad(
        storage,
        [g.n, g.ci, g.i[0], g.i[1], g.i[2]],
    ))
}

fn conv_weight_grad(x: &Tensor, gy: &Tensor, g: &ConvGeom) -> Result<Tensor> {
    const OP: &str = "conv3d";
    check_same(OP, x, gy)?;
    let (xs, gs) = (x.storage(), gy.storage());
    let storage = match (&*xs, &*gs) {
        (Storage::Cpu(xc), Storage::Cpu(gc)) => Storage::Cpu(by_dtype!(OP, x.dtype(), T =>
            cpu::conv3d_weight_grad::<T>(sl(xc), sl(gc), g))?),
        #[cfg(feature = "cuda")]
        (Storage::Cuda(xc), Storage::Cuda(gc)) => {
            Storage::Cuda(cuda::conv3d_weight_grad(xc, gc, g)?)
        }
        #[cfg(feature = "cuda")]
        _ => unreachable!("check_same rejected tensors on different devices"),
    };
    Ok(Tensor::from_op_no_grad(
        storage,
        [g.co, g.ci, g.k[0], g.k[1], g.k[2]],
    ))
}

/// The pooling geometry of a rank-5 float input, or an error naming the op.
fn pool_geom(op: &'static str, x: &Tensor, p: &Pool3dParams) -> Result<PoolGeom> {
    check_float(op, x)?;
    let d = x.dims();
    if d.len() != 5 {
        return Err(Error::shape(op, &[d], "input must be (N, C, D, H, W)"));
    }
    for a in 0..3 {
        if 2 * p.padding[a] > p.kernel[a] {
            return Err(Error::shape(
                op,
                &[d],
                format!(
                    "padding {:?} must be at most half the kernel {:?}",
                    p.padding, p.kernel
                ),
            ));
        }
    }
    let i = spatial(d);
    let o = out_dims(op, &[d], i, p.kernel, p.stride, p.padding)?;
    Ok(PoolGeom {
        planes: d[0] * d[1],
        i,
        k: p.kernel,
        stride: p.stride,
        pad: p.padding,
        o,
    })
}

impl Tensor {
    /// 3D convolution (cross-correlation, as PyTorch) of `self` (N, C_in, D, H, W) with `weight`
    /// (C_out, C_in, kt, kh, kw), plus `bias` (C_out) when given: (N, C_out, Do, Ho, Wo).
    pub fn conv3d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv3dParams,
    ) -> Result<Tensor> {
        const OP: &str = "conv3d";
        check_float(OP, self)?;
        check_same(OP, self, weight)?;
        let (xd, wd) = (self.dims(), weight.dims());
        if xd.len() != 5 || wd.len() != 5 {
            return Err(Error::shape(
                OP,
                &[xd, wd],
                "input must be (N, C_in, D, H, W) and weight (C_out, C_in, kt, kh, kw)",
            ));
        }
        if xd[1] != wd[1] {
            return Err(Error::shape(
                OP,
                &[xd, wd],
                format!(
                    "the input has {} channels but the weight expects {}",
                    xd[1], wd[1]
                ),
            ));
        }
        if let Some(b) = bias {
            check_same(OP, self, b)?;
            if b.dims() != [wd[0]] {
                return Err(Error::shape(
                    OP,
                    &[xd, wd, b.dims()],
                    format!("bias must have shape [{}] (C_out)", wd[0]),
                ));
            }
        }
        let i = spatial(xd);
        let k = spatial(wd);
        let o = out_dims(OP, &[xd, wd], i, k, params.stride, params.padding)?;
        let g = ConvGeom {
            n: xd[0],
            ci: xd[1],
            co: wd[0],
            i,
            k,
            stride: params.stride,
            pad: params.padding,
            o,
        };
        let storage = conv_forward(self, weight, bias, &g)?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let (x, w) = (self.clone(), weight.clone());
        let (need_x, need_w) = (self.requires_grad(), weight.requires_grad());
        let has_bias = bias.is_some();
        Ok(Tensor::from_op(
            OP,
            storage,
            [g.n, g.co, o[0], o[1], o[2]],
            &inputs,
            Box::new(move |gy, _| {
                check_same(OP, &x, gy)?;
                let mut grads = vec![
                    if need_x {
                        Some(conv_input_grad(gy, &w, &g)?)
                    } else {
                        None
                    },
                    if need_w {
                        Some(conv_weight_grad(&x, gy, &g)?)
                    } else {
                        None
                    },
                ];
                if has_bias {
                    grads.push(Some(gy.sum(&[0, 2, 3, 4], false)?));
                }
                Ok(grads)
            }),
        ))
    }

    /// Max pooling of `self` (N, C, D, H, W) over windows `params.kernel`: (N, C, Do, Ho, Wo).
    /// See the module docs for padding, NaN and ties.
    pub fn max_pool3d(&self, params: Pool3dParams) -> Result<Tensor> {
        Ok(self.max_pool3d_with_indices(params)?.0)
    }

    /// `max_pool3d` and, for each output, the flat index (d * H + h) * W + w within its input
    /// plane of the element chosen (i64, no gradient).
    pub fn max_pool3d_with_indices(&self, params: Pool3dParams) -> Result<(Tensor, Tensor)> {
        const OP: &str = "max_pool3d";
        let g = pool_geom(OP, self, &params)?;
        let (y, arg) = match &*self.storage() {
            Storage::Cpu(c) => match c {
                CpuStorage::F32(v) => {
                    let (y, a) = cpu::max_pool3d(v, &g);
                    (Storage::Cpu(y.into()), Storage::Cpu(a.into()))
                }
                CpuStorage::F64(v) => {
                    let (y, a) = cpu::max_pool3d(v, &g);
                    (Storage::Cpu(y.into()), Storage::Cpu(a.into()))
                }
                CpuStorage::I64(_) => unreachable!("check_float rejected integers"),
            },
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => {
                let (y, a) = cuda::max_pool3d(c, &g)?;
                (Storage::Cuda(y), Storage::Cuda(a))
            }
        };
        let d = self.dims();
        let out = [d[0], d[1], g.o[0], g.o[1], g.o[2]];
        let arg = Tensor::from_op_no_grad(arg, out);
        let saved = arg.clone();
        let in_dims = d.to_vec();
        let x_dtype = self.dtype();
        let y = Tensor::from_op(
            OP,
            y,
            out,
            &[self],
            Box::new(move |gy, _| {
                if gy.dtype() != x_dtype {
                    return Err(Error::DTypeMismatch {
                        op: OP,
                        a: x_dtype,
                        b: gy.dtype(),
                    });
                }
                let (gs, ars) = (gy.storage(), saved.storage());
                let storage = match (&*gs, &*ars) {
                    (Storage::Cpu(gc), Storage::Cpu(ac)) => {
                        let a = sl::<i64>(ac);
                        Storage::Cpu(by_dtype!(OP, x_dtype, T =>
                            cpu::max_pool3d_grad::<T>(sl(gc), a, &g))?)
                    }
                    #[cfg(feature = "cuda")]
                    (Storage::Cuda(gc), Storage::Cuda(ac)) => {
                        Storage::Cuda(cuda::max_pool3d_grad(gc, ac, &g)?)
                    }
                    #[cfg(feature = "cuda")]
                    _ => return Err(Error::invalid(OP, "the gradient is on another device")),
                };
                Ok(vec![Some(Tensor::from_op_no_grad(storage, in_dims))])
            }),
        );
        Ok((y, arg))
    }

    /// Average pooling of `self` (N, C, D, H, W): padding counts as zeros and every window is
    /// divided by kt * kh * kw (PyTorch's default `count_include_pad=True`).
    pub fn avg_pool3d(&self, params: Pool3dParams) -> Result<Tensor> {
        const OP: &str = "avg_pool3d";
        let g = pool_geom(OP, self, &params)?;
        let y = avg_pool_storage(self, &g, false)?;
        let d = self.dims();
        let out = [d[0], d[1], g.o[0], g.o[1], g.o[2]];
        let in_dims = d.to_vec();
        let x_dtype = self.dtype();
        Ok(Tensor::from_op(
            OP,
            y,
            out,
            &[self],
            Box::new(move |gy, _| {
                if gy.dtype() != x_dtype {
                    return Err(Error::DTypeMismatch {
                        op: OP,
                        a: x_dtype,
                        b: gy.dtype(),
                    });
                }
                let storage = avg_pool_storage(gy, &g, true)?;
                Ok(vec![Some(Tensor::from_op_no_grad(storage, in_dims))])
            }),
        ))
    }

    /// The mean over (D, H, W) of `self` (N, C, D, H, W): (N, C). Runs on the reduction kernels
    /// (deterministic on both devices) and differentiates through them.
    pub fn global_avg_pool3d(&self) -> Result<Tensor> {
        const OP: &str = "global_avg_pool3d";
        check_float(OP, self)?;
        if self.rank() != 5 {
            return Err(Error::shape(
                OP,
                &[self.dims()],
                "input must be (N, C, D, H, W)",
            ));
        }
        if self.dims()[2..].iter().product::<usize>() == 0 {
            return Err(Error::shape(
                OP,
                &[self.dims()],
                "the (D, H, W) volume is empty",
            ));
        }
        self.mean(&[2, 3, 4], false)
    }
}

/// Average pooling forward of `t` (`backward` false) or its backward from the output gradient
/// `t` (`backward` true).
fn avg_pool_storage(t: &Tensor, g: &PoolGeom, backward: bool) -> Result<Storage> {
    const OP: &str = "avg_pool3d";
    Ok(match &*t.storage() {
        Storage::Cpu(c) => Storage::Cpu(by_dtype!(OP, t.dtype(), T => if backward {
            cpu::avg_pool3d_grad::<T>(sl(c), g)
        } else {
            cpu::avg_pool3d::<T>(sl(c), g)
        })?),
        #[cfg(feature = "cuda")]
        Storage::Cuda(c) => Storage::Cuda(if backward {
            cuda::avg_pool3d_grad(c, g)?
        } else {
            cuda::avg_pool3d(c, g)?
        }),
    })
}
