//! Softmax and log-softmax along any axis, and the fused cross-entropy loss.
//!
//! All three subtract the lane maximum before `exp`, so logits of any size are safe. Their
//! backward rules are dedicated kernels: `y * (g - sum(g * y))` for softmax, `g - exp(y) * sum(g)`
//! for log-softmax and `(softmax - target distribution) * g` for cross-entropy, which recomputes
//! the softmax from the logits and two saved numbers per lane instead of keeping an N x C buffer.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::{check_float, check_same};
use crate::storage::{CpuStorage, Element, Storage};
use crate::{with_float, with_float2, DType, Error, Result, Tensor};
use cpu::Lanes;

/// How a loss made of many terms (one per sample, or per sample and position) is reduced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Every term, in the shape of the targets.
    None,
    /// The mean of the terms (PyTorch's default).
    #[default]
    Mean,
    /// The sum of the terms.
    Sum,
}

/// The typed elements of a CPU storage whose dtype the caller has already checked.
fn slice_of<T: Element>(c: &CpuStorage) -> &[T] {
    T::slice(c).expect("dtype checked before the kernel")
}

impl Tensor {
    /// `exp(x) / sum(exp(x))` along `axis` (negative counts from the end).
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_along("softmax", axis, false)
    }

    /// `x - log(sum(exp(x)))` along `axis`: the log of `softmax`, without its underflow.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_along("log_softmax", axis, true)
    }

    fn softmax_along(&self, op: &'static str, axis: isize, log: bool) -> Result<Tensor> {
        check_float(op, self)?;
        let lanes = Lanes::new(self.dims(), self.shape().axis(op, axis)?);
        let storage = match &*self.storage() {
            Storage::Cpu(c) => Storage::Cpu(with_float!(op, c, |v| CpuStorage::from(
                cpu::softmax(v, &lanes, log)
            ))?),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Storage::Cuda(cuda::softmax(c, &lanes, log)?),
        };
        Ok(Tensor::from_op(
            op,
            storage,
            self.shape().clone(),
            &[self],
            Box::new(move |g, y| Ok(vec![Some(softmax_grad(op, y, g, &lanes, log)?)])),
        ))
    }

    /// Cross-entropy between `self`, logits of shape (N, C) or (N, C, d1, ...), and `targets`,
    /// i64 class indices of shape (N) or (N, d1, ...). With `label_smoothing` = eps the target
    /// distribution is `(1 - eps) * onehot + eps / C`, as in PyTorch. `Mean` divides by the number
    /// of terms (N * d1 * ...). Log-softmax and the likelihood are one fused pass.
    ///
    /// On the CPU a target outside `[0, C)` is an `Error::Index`. On a CUDA device the targets are
    /// not read back to the host (that would synchronise every step): an out-of-range target makes
    /// its term NaN (so a `Mean` or `Sum` loss is NaN) and its lane of the gradient NaN.
    pub fn cross_entropy(
        &self,
        targets: &Tensor,
        reduction: Reduction,
        label_smoothing: f64,
    ) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        check_float(OP, self)?;
        if targets.dtype() != DType::I64 {
            return Err(Error::DType {
                op: OP,
                got: targets.dtype(),
                msg: "targets must be i64 class indices".into(),
            });
        }
        if targets.device() != self.device() {
            return Err(Error::DeviceMismatch {
                op: OP,
                a: self.device(),
                b: targets.device(),
            });
        }
        let dims = self.dims();
        if dims.len() < 2 {
            return Err(Error::shape(
                OP,
                &[dims, targets.dims()],
                "logits must be (N, C) or (N, C, d1, ...)",
            ));
        }
        let classes = dims[1];
        let term_dims: Vec<usize> = std::iter::once(dims[0])
            .chain(dims[2..].iter().copied())
            .collect();
        if targets.dims() != term_dims.as_slice() {
            return Err(Error::shape(
                OP,
                &[dims, targets.dims()],
                format!("targets must have shape {term_dims:?} for these logits"),
            ));
        }
        if classes == 0 {
            return Err(Error::shape(OP, &[dims], "logits have no classes"));
        }
        if !(0.0..=1.0).contains(&label_smoothing) {
            return Err(Error::invalid(
                OP,
                format!("label_smoothing must be in [0, 1], got {label_smoothing}"),
            ));
        }
        // The class indices on the host, checked, for the CPU kernels. A device does not check
        // them (that would need a synchronising copy); see the doc comment.
        let classes_of: Vec<i64> = match &*targets.storage() {
            Storage::Cpu(CpuStorage::I64(t)) => t.clone(),
            _ => Vec::new(),
        };
        if let Some(&bad) = classes_of.iter().find(|&&t| t < 0 || t as usize >= classes) {
            return Err(Error::Index {
                op: OP,
                index: bad,
                size: classes,
            });
        }

        let lanes = Lanes::new(dims, 1);
        let (terms, stats) = match (&*self.storage(), &*targets.storage()) {
            (Storage::Cpu(c), _) => with_float!(OP, c, |v| {
                let (terms, stats) = cpu::cross_entropy(v, &classes_of, &lanes, label_smoothing);
                (
                    Storage::Cpu(CpuStorage::from(terms)),
                    Storage::Cpu(CpuStorage::from(stats)),
                )
            })?,
            #[cfg(feature = "cuda")]
            (Storage::Cuda(x), Storage::Cuda(t)) => {
                let (terms, stats) = cuda::cross_entropy(x, t, &lanes, label_smoothing)?;
                (Storage::Cuda(terms), Storage::Cuda(stats))
            }
            #[cfg(feature = "cuda")]
            _ => unreachable!("the device check rejected targets on another device"),
        };
        let (storage, out_dims) = match reduction {
            Reduction::None => (terms, term_dims),
            Reduction::Sum | Reduction::Mean => {
                let terms = Tensor::from_op_no_grad(terms, term_dims);
                let mut total = terms.sum_all()?;
                if reduction == Reduction::Mean {
                    total = total.div_scalar(lanes.count() as f64)?;
                }
                let storage = total.storage().try_clone()?;
                (storage, Vec::new())
            }
        };
        let stats = Tensor::from_op_no_grad(stats, [lanes.count(), 2]);
        let logits = self.clone();
        #[cfg(feature = "cuda")]
        let targets = targets.clone();
        Ok(Tensor::from_op(
            OP,
            storage,
            out_dims,
            &[self],
            Box::new(move |g, _| {
                check_same(OP, &logits, g)?;
                // A reduced loss has one gradient value, shared by every term.
                let (g_stride, scale) = match reduction {
                    Reduction::None => (1, 1.0),
                    Reduction::Sum => (0, 1.0),
                    Reduction::Mean => (0, 1.0 / lanes.count() as f64),
                };
                let storage = match (&*logits.storage(), &*g.storage(), &*stats.storage()) {
                    (Storage::Cpu(x), Storage::Cpu(gc), Storage::Cpu(s)) => {
                        Storage::Cpu(with_float2!(OP, x, gc, |x, gv| CpuStorage::from(
                            cpu::cross_entropy_grad(
                                x,
                                &classes_of,
                                slice_of(s),
                                gv,
                                g_stride,
                                scale,
                                &lanes,
                                label_smoothing,
                            )
                        ))?)
                    }
                    #[cfg(feature = "cuda")]
                    (Storage::Cuda(x), Storage::Cuda(gc), Storage::Cuda(s)) => {
                        let t = targets.storage();
                        let Storage::Cuda(t) = &*t else {
                            unreachable!("the targets are on the logits' device")
                        };
                        Storage::Cuda(cuda::cross_entropy_grad(
                            x,
                            t,
                            s,
                            gc,
                            g_stride,
                            scale,
                            &lanes,
                            label_smoothing,
                        )?)
                    }
                    #[cfg(feature = "cuda")]
                    _ => unreachable!("check_same rejected a gradient on another device"),
                };
                Ok(vec![Some(Tensor::from_op_no_grad(
                    storage,
                    logits.shape().clone(),
                ))])
            }),
        ))
    }
}

/// The input gradient of softmax (or log-softmax) from its output `y` and output gradient `g`.
fn softmax_grad(
    op: &'static str,
    y: &Tensor,
    g: &Tensor,
    lanes: &Lanes,
    log: bool,
) -> Result<Tensor> {
    check_same(op, y, g)?;
    let storage = match (&*y.storage(), &*g.storage()) {
        (Storage::Cpu(y), Storage::Cpu(g)) => {
            Storage::Cpu(with_float2!(op, y, g, |y, g| CpuStorage::from(if log {
                cpu::log_softmax_grad(y, g, lanes)
            } else {
                cpu::softmax_grad(y, g, lanes)
            }))?)
        }
        #[cfg(feature = "cuda")]
        (Storage::Cuda(y), Storage::Cuda(g)) => {
            Storage::Cuda(cuda::softmax_grad(y, g, lanes, log)?)
        }
        #[cfg(feature = "cuda")]
        _ => unreachable!("check_same rejected tensors on different devices"),
    };
    Ok(Tensor::from_op_no_grad(storage, y.shape().clone()))
}
