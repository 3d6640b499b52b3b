//! Batch normalisation (inputs (N, C, *) of any rank >= 2) and layer normalisation (over the
//! trailing dims), each with dedicated forward and backward kernels.
//!
//! Batch norm in training normalises with the batch statistics (biased variance) and updates the
//! running statistics in place, outside the graph, with the unbiased variance (as PyTorch); in
//! evaluation it normalises with the running statistics.
//!
//! On CUDA (`cuda.rs`, kernels/norm.cu) the same arithmetic runs on the device: statistics and
//! gradient sums accumulate in f64 through per-block partial sums added in a fixed order (no
//! atomics), so results are identical from run to run and agree with the CPU to f64 rounding of
//! the sums; the elementwise passes round each operation as the CPU does. The running statistics
//! are updated in place on the device, and the statistics never leave it.

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::check_same;
use crate::storage::{CpuStorage, Element, Storage};
use crate::{with_float, with_float2, DType, Error, Result, Tensor};

/// The typed elements of a CPU storage whose dtype the caller has already checked.
fn slice_of<T: Element>(s: &Storage) -> &[T] {
    let c = s.as_cpu().expect("the CPU path holds host storage");
    T::slice(c).expect("dtype checked before the kernel")
}

/// Checks an optional per-feature parameter: same dtype and device as the input, given shape.
fn check_param(
    op: &'static str,
    name: &str,
    x: &Tensor,
    p: Option<&Tensor>,
    dims: &[usize],
) -> Result<()> {
    let Some(p) = p else { return Ok(()) };
    check_same(op, x, p)?;
    if p.dims() != dims {
        return Err(Error::shape(
            op,
            &[x.dims(), p.dims()],
            format!("{name} must have shape {dims:?}"),
        ));
    }
    Ok(())
}

fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::invalid(
            op,
            format!("eps must be finite and non-negative, got {eps}"),
        ));
    }
    Ok(())
}

/// A small per-feature tensor (statistics) in `dtype`, outside the graph.
fn stats_tensor(values: Vec<f64>, dtype: DType) -> Result<Tensor> {
    let n = values.len();
    Tensor::from_storage(Storage::Cpu(CpuStorage::from_f64_vec(values, dtype)), [n])
}

/// `running = (1 - momentum) * running + momentum * batch`, written in place.
fn blend_into(running: &Tensor, batch: &[f64], momentum: f64) -> Result<()> {
    let updated: Vec<f64> = running
        .to_f64_vec()?
        .iter()
        .zip(batch)
        .map(|(&r, &b)| (1.0 - momentum) * r + momentum * b)
        .collect();
    *running.storage_mut() = Storage::Cpu(CpuStorage::from_f64_vec(updated, running.dtype()));
    Ok(())
}

/// The inputs that a normalisation differentiates: the input, then weight and bias when given.
fn diff_inputs<'a>(
    x: &'a Tensor,
    weight: Option<&'a Tensor>,
    bias: Option<&'a Tensor>,
) -> Vec<&'a Tensor> {
    std::iter::once(x).chain(weight).chain(bias).collect()
}

/// The device storage of a tensor already checked to be on the input's CUDA device.
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

/// The gradient reached the backward on another device than the input.
#[cfg(feature = "cuda")]
fn device_mismatch(op: &'static str, a: &Storage, b: &Storage) -> Error {
    Error::DeviceMismatch {
        op,
        a: a.device(),
        b: b.device(),
    }
}

/// Running statistics given to batch norm: (mean, var).
type Running<'a> = Option<(&'a Tensor, &'a Tensor)>;

impl Tensor {
    /// The statistics batch norm normalises with, `(mean, invstd)` as per-channel CPU tensors in
    /// the input's dtype; in training also updates the running statistics (see `batch_norm`).
    fn batch_norm_stats_cpu(
        &self,
        view: &cpu::Channels,
        running: Running<'_>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "batch_norm";
        let (mean, var) = if training {
            let count = view.count();
            let (mean, var) = match &*self.storage() {
                Storage::Cpu(c) => with_float!(OP, c, |v| cpu::channel_stats(v, view))?,
                #[cfg(feature = "cuda")]
                Storage::Cuda(_) => {
                    return Err(Error::invalid(OP, "the CPU statistics need host storage"))
                }
            };
            if let Some((running_mean, running_var)) = running {
                let unbiased: Vec<f64> = var
                    .iter()
                    .map(|v| v * count as f64 / (count - 1) as f64)
                    .collect();
                blend_into(running_mean, &mean, momentum)?;
                blend_into(running_var, &unbiased, momentum)?;
            }
            (mean, var)
        } else {
            let (m, v) = running.ok_or_else(|| {
                Error::invalid(
                    OP,
                    "evaluation (training = false) needs running_mean and running_var",
                )
            })?;
            (m.to_f64_vec()?, v.to_f64_vec()?)
        };
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        Ok((
            stats_tensor(mean, self.dtype())?,
            stats_tensor(invstd, self.dtype())?,
        ))
    }

    /// `batch_norm_stats_cpu` on the input's CUDA device: the statistics stay on the device and
    /// the running statistics are updated there in place (in f64, rounded once, as the CPU).
    #[cfg(feature = "cuda")]
    fn batch_norm_stats_cuda(
        &self,
        view: &cpu::Channels,
        running: Running<'_>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "batch_norm";
        let (mean, invstd) = if training {
            // The input's lock is released before the running statistics are written.
            let stats =
                cuda::batch_stats(cuda_of(OP, &self.storage())?, view, eps, running.is_some())?;
            if let (Some((running_mean, running_var)), Some((mean64, unbiased64))) =
                (running, &stats.for_running)
            {
                cuda::blend(cuda_of(OP, &running_mean.storage_mut())?, mean64, momentum)?;
                cuda::blend(
                    cuda_of(OP, &running_var.storage_mut())?,
                    unbiased64,
                    momentum,
                )?;
            }
            (stats.mean, stats.invstd)
        } else {
            let (m, v) = running.ok_or_else(|| {
                Error::invalid(
                    OP,
                    "evaluation (training = false) needs running_mean and running_var",
                )
            })?;
            let (ms, vs) = (m.storage(), v.storage());
            cuda::eval_stats(cuda_of(OP, &ms)?, cuda_of(OP, &vs)?, eps)?
        };
        Ok((
            Tensor::from_op_no_grad(Storage::Cuda(mean), [view.c]),
            Tensor::from_op_no_grad(Storage::Cuda(invstd), [view.c]),
        ))
    }

    /// Batch normalisation of `self`, shaped (N, C, *), over every dim but C.
    ///
    /// `training`: normalise with the batch mean and biased variance and, when running stats are
    /// given (both or neither), update them in place:
    /// `running = (1 - momentum) * running + momentum * batch`, with the unbiased batch variance.
    /// Not `training`: normalise with the running stats, which are then required.
    /// `weight` and `bias` (shape [C]) default to 1 and 0.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor> {
        const OP: &str = "batch_norm";
        super::check_float(OP, self)?;
        if self.rank() < 2 {
            return Err(Error::shape(
                OP,
                &[self.dims()],
                "input must be (N, C, *) with rank at least 2",
            ));
        }
        let view = cpu::Channels::new(self.dims());
        let c_dims = [view.c];
        check_param(OP, "running_mean", self, running_mean, &c_dims)?;
        check_param(OP, "running_var", self, running_var, &c_dims)?;
        check_param(OP, "weight", self, weight, &c_dims)?;
        check_param(OP, "bias", self, bias, &c_dims)?;
        check_eps(OP, eps)?;
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::invalid(
                OP,
                format!("momentum must be in [0, 1], got {momentum}"),
            ));
        }
        let running = match (running_mean, running_var) {
            (Some(m), Some(v)) => Some((m, v)),
            (None, None) => None,
            _ => {
                return Err(Error::invalid(
                    OP,
                    "give both running_mean and running_var, or neither",
                ))
            }
        };

        if training {
            let count = view.count();
            if count < 2 {
                return Err(Error::shape(
                    OP,
                    &[self.dims()],
                    format!("training needs more than one value per channel, got {count}"),
                ));
            }
        } else if running.is_none() {
            return Err(Error::invalid(
                OP,
                "evaluation (training = false) needs running_mean and running_var",
            ));
        }
        let (mean, invstd) = match self.device() {
            #[cfg(feature = "cuda")]
            crate::Device::Cuda(_) => {
                self.batch_norm_stats_cuda(&view, running, training, momentum, eps)?
            }
            _ => self.batch_norm_stats_cpu(&view, running, training, momentum, eps)?,
        };

        let storage = {
            let (x, m, k) = (self.storage(), mean.storage(), invstd.storage());
            let (w, b) = (weight.map(|w| w.storage()), bias.map(|b| b.storage()));
            match &*x {
                Storage::Cpu(c) => {
                    Storage::Cpu(with_float!(OP, c, |v| CpuStorage::from(cpu::batch_norm(
                        v,
                        &view,
                        slice_of(&m),
                        slice_of(&k),
                        w.as_deref().map(slice_of),
                        b.as_deref().map(slice_of),
                    )))?)
                }
                #[cfg(feature = "cuda")]
                Storage::Cuda(c) => Storage::Cuda(cuda::batch_norm(
                    c,
                    &view,
                    cuda_of(OP, &m)?,
                    cuda_of(OP, &k)?,
                    w.as_deref().map(|s| cuda_of(OP, s)).transpose()?,
                    b.as_deref().map(|s| cuda_of(OP, s)).transpose()?,
                )?),
            }
        };

        let x = self.clone();
        let (weight_saved, has_bias) = (weight.cloned(), bias.is_some());
        Ok(Tensor::from_op(
            OP,
            storage,
            self.shape().clone(),
            &diff_inputs(self, weight, bias),
            Box::new(move |g, _| {
                check_same(OP, &x, g)?;
                let (dx, dw, db) = {
                    let (xs, gs) = (x.storage(), g.storage());
                    let (m, k) = (mean.storage(), invstd.storage());
                    let w = weight_saved.as_ref().map(|w| w.storage());
                    match (&*xs, &*gs) {
                        (Storage::Cpu(xc), Storage::Cpu(gc)) => {
                            with_float2!(OP, xc, gc, |xv, gv| {
                                let (dx, dw, db) = cpu::batch_norm_grad(
                                    xv,
                                    gv,
                                    &view,
                                    slice_of(&m),
                                    slice_of(&k),
                                    w.as_deref().map(slice_of),
                                    training,
                                );
                                (
                                    Storage::Cpu(CpuStorage::from(dx)),
                                    Some(Storage::Cpu(CpuStorage::from(dw))),
                                    Some(Storage::Cpu(CpuStorage::from(db))),
                                )
                            })?
                        }
                        #[cfg(feature = "cuda")]
                        (Storage::Cuda(xc), Storage::Cuda(gc)) => {
                            let (dx, dw, db) = cuda::batch_norm_grad(
                                xc,
                                gc,
                                &view,
                                cuda_of(OP, &m)?,
                                cuda_of(OP, &k)?,
                                w.as_deref().map(|s| cuda_of(OP, s)).transpose()?,
                                training,
                                (weight_saved.is_some(), has_bias),
                            )?;
                            (
                                Storage::Cuda(dx),
                                dw.map(Storage::Cuda),
                                db.map(Storage::Cuda),
                            )
                        }
                        #[cfg(feature = "cuda")]
                        (a, b) => return Err(device_mismatch(OP, a, b)),
                    }
                };
                let per_channel = |s: Storage| Tensor::from_op_no_grad(s, [view.c]);
                let mut grads = vec![Some(Tensor::from_op_no_grad(dx, x.shape().clone()))];
                if weight_saved.is_some() {
                    grads.push(dw.map(per_channel));
                }
                if has_bias {
                    grads.push(db.map(per_channel));
                }
                Ok(grads)
            }),
        ))
    }

    /// Layer normalisation over the last `normalized_rank` dims (biased variance, as PyTorch).
    /// `weight` and `bias`, when given, have the shape of those dims.
    pub fn layer_norm(
        &self,
        normalized_rank: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        super::check_float(OP, self)?;
        if normalized_rank == 0 || normalized_rank > self.rank() {
            return Err(Error::shape(
                OP,
                &[self.dims()],
                format!(
                    "normalized_rank must be between 1 and the rank ({}), got {normalized_rank}",
                    self.rank()
                ),
            ));
        }
        let feature_dims = self.dims()[self.rank() - normalized_rank..].to_vec();
        check_param(OP, "weight", self, weight, &feature_dims)?;
        check_param(OP, "bias", self, bias, &feature_dims)?;
        check_eps(OP, eps)?;
        let d: usize = feature_dims.iter().product();
        let rows = self.numel().checked_div(d).unwrap_or(0);

        let (y, mean, invstd) = {
            let x = self.storage();
            let (w, b) = (weight.map(|w| w.storage()), bias.map(|b| b.storage()));
            match &*x {
                Storage::Cpu(c) => with_float!(OP, c, |v| {
                    let (y, mean, invstd) = cpu::layer_norm(
                        v,
                        d,
                        w.as_deref().map(slice_of),
                        b.as_deref().map(slice_of),
                        eps,
                    );
                    (
                        Storage::Cpu(CpuStorage::from(y)),
                        Storage::Cpu(CpuStorage::from(mean)),
                        Storage::Cpu(CpuStorage::from(invstd)),
                    )
                })?,
                #[cfg(feature = "cuda")]
                Storage::Cuda(c) => {
                    let (y, mean, invstd) = cuda::layer_norm(
                        c,
                        d,
                        w.as_deref().map(|s| cuda_of(OP, s)).transpose()?,
                        b.as_deref().map(|s| cuda_of(OP, s)).transpose()?,
                        eps,
                    )?;
                    (Storage::Cuda(y), Storage::Cuda(mean), Storage::Cuda(invstd))
                }
            }
        };
        let mean = Tensor::from_op_no_grad(mean, [rows]);
        let invstd = Tensor::from_op_no_grad(invstd, [rows]);

        let x = self.clone();
        let (weight_saved, has_bias) = (weight.cloned(), bias.is_some());
        Ok(Tensor::from_op(
            OP,
            y,
            self.shape().clone(),
            &diff_inputs(self, weight, bias),
            Box::new(move |g, _| {
                check_same(OP, &x, g)?;
                let (dx, dw, db) = {
                    let (xs, gs) = (x.storage(), g.storage());
                    let (m, k) = (mean.storage(), invstd.storage());
                    let w = weight_saved.as_ref().map(|w| w.storage());
                    match (&*xs, &*gs) {
                        (Storage::Cpu(xc), Storage::Cpu(gc)) => {
                            with_float2!(OP, xc, gc, |xv, gv| {
                                let (dx, dw, db) = cpu::layer_norm_grad(
                                    xv,
                                    gv,
                                    d,
                                    slice_of(&m),
                                    slice_of(&k),
                                    w.as_deref().map(slice_of),
                                );
                                (
                                    Storage::Cpu(CpuStorage::from(dx)),
                                    Some(Storage::Cpu(CpuStorage::from(dw))),
                                    Some(Storage::Cpu(CpuStorage::from(db))),
                                )
                            })?
                        }
                        #[cfg(feature = "cuda")]
                        (Storage::Cuda(xc), Storage::Cuda(gc)) => {
                            let (dx, dw, db) = cuda::layer_norm_grad(
                                xc,
                                gc,
                                d,
                                cuda_of(OP, &m)?,
                                cuda_of(OP, &k)?,
                                w.as_deref().map(|s| cuda_of(OP, s)).transpose()?,
                                (weight_saved.is_some(), has_bias),
                            )?;
                            (
                                Storage::Cuda(dx),
                                dw.map(Storage::Cuda),
                                db.map(Storage::Cuda),
                            )
                        }
                        #[cfg(feature = "cuda")]
                        (a, b) => return Err(device_mismatch(OP, a, b)),
                    }
                };
                let per_feature = |s: Storage| Tensor::from_op_no_grad(s, feature_dims.clone());
                let mut grads = vec![Some(Tensor::from_op_no_grad(dx, x.shape().clone()))];
                if weight_saved.is_some() {
                    grads.push(dw.map(per_feature));
                }
                if has_bias {
                    grads.push(db.map(per_feature));
                }
                Ok(grads)
            }),
        ))
    }
}
