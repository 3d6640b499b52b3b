//! Batch normalisation (inputs (N, C, *) of any rank >= 2) and layer normalisation (over the
//! trailing dims), each with dedicated forward and backward kernels.
//!
//! Batch norm in training normalises with the batch statistics (biased variance) and updates the
//! running statistics in place, outside the graph, with the unbiased variance (as PyTorch); in
//! evaluation it normalises with the running statistics.

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

impl Tensor {
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

        let (mean, var) = if training {
            let count = view.count();
            if count < 2 {
                return Err(Error::shape(
                    OP,
                    &[self.dims()],
                    format!("training needs more than one value per channel, got {count}"),
                ));
            }
            let (mean, var) = match &*self.storage() {
                Storage::Cpu(c) => with_float!(OP, c, |v| cpu::channel_stats(v, &view))?,
                #[cfg(feature = "cuda")]
                _ => return Err(crate::ops::cuda_todo("norm")),
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
        let mean = stats_tensor(mean, self.dtype())?;
        let invstd = stats_tensor(invstd, self.dtype())?;

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
                _ => return Err(crate::ops::cuda_todo("norm")),
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
                                    CpuStorage::from(dx),
                                    CpuStorage::from(dw),
                                    CpuStorage::from(db),
                                )
                            })?
                        }
                        #[cfg(feature = "cuda")]
                        _ => return Err(crate::ops::cuda_todo("norm")),
                    }
                };
                let per_channel =
                    |s: CpuStorage| Tensor::from_op_no_grad(Storage::Cpu(s), [view.c]);
                let mut grads = vec![Some(Tensor::from_op_no_grad(
                    Storage::Cpu(dx),
                    x.shape().clone(),
                ))];
                if weight_saved.is_some() {
                    grads.push(Some(per_channel(dw)));
                }
                if has_bias {
                    grads.push(Some(per_channel(db)));
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
                        CpuStorage::from(y),
                        CpuStorage::from(mean),
                        CpuStorage::from(invstd),
                    )
                })?,
                #[cfg(feature = "cuda")]
                _ => return Err(crate::ops::cuda_todo("norm")),
            }
        };
        let mean = Tensor::from_op_no_grad(Storage::Cpu(mean), [rows]);
        let invstd = Tensor::from_op_no_grad(Storage::Cpu(invstd), [rows]);

        let x = self.clone();
        let (weight_saved, has_bias) = (weight.cloned(), bias.is_some());
        Ok(Tensor::from_op(
            OP,
            Storage::Cpu(y),
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
                                    CpuStorage::from(dx),
                                    CpuStorage::from(dw),
                                    CpuStorage::from(db),
                                )
                            })?
                        }
                        #[cfg(feature = "cuda")]
                        _ => return Err(crate::ops::cuda_todo("norm")),
                    }
                };
                let per_feature =
                    |s: CpuStorage| Tensor::from_op_no_grad(Storage::Cpu(s), feature_dims.clone());
                let mut grads = vec![Some(Tensor::from_op_no_grad(
                    Storage::Cpu(dx),
                    x.shape().clone(),
                ))];
                if weight_saved.is_some() {
                    grads.push(Some(per_feature(dw)));
                }
                if has_bias {
                    grads.push(Some(per_feature(db)));
                }
                Ok(grads)
            }),
        ))
    }
}
