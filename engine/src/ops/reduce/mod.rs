//! Reductions over any set of axes (an empty list means all): sum, mean, max, min, var,
//! argmax; and `sum_to`, which undoes broadcasting in backward rules.

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::check_float;
use crate::storage::{CpuStorage, Storage};
use crate::{with_float, Error, Result, Tensor};

/// Output shape of a reduction: reduced axes kept as 1 or dropped.
fn reduced_dims(dims: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    dims.iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdim) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

impl Tensor {
    /// Sum over `axes` (all axes when empty).
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        check_float("sum", self)?;
        let axes = self.shape().axes("sum", axes)?;
        let plan = cpu::Plan::new(self.dims(), &axes);
        let storage = match &*self.storage() {
            Storage::Cpu(c) => Storage::Cpu(with_float!("sum", c, |v| CpuStorage::from(
                cpu::sum(v, &plan)
            ))?),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => {
                Storage::Cuda(cuda::reduce(cuda::ReduceOp::Sum, c, self.dims(), &axes)?)
            }
        };
        let in_dims = self.dims().to_vec();
        let kept = reduced_dims(&in_dims, &axes, true);
        Ok(Tensor::from_op(
            "sum",
            storage,
            reduced_dims(&in_dims, &axes, keepdim),
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.reshape(kept)?.broadcast_to(&in_dims)?)])),
        ))
    }

    /// Sum of every element, as a 0-dimensional tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&[], false)
    }

    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let count = self.reduced_count("mean", axes)?;
        self.sum(axes, keepdim)?.div_scalar(count as f64)
    }

    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&[], false)
    }

    /// Variance over `axes` with `correction` (0 for the population variance, 1 for the unbiased).
    pub fn var(&self, axes: &[isize], keepdim: bool, correction: usize) -> Result<Tensor> {
        let count = self.reduced_count("var", axes)?;
        if count <= correction {
            return Err(Error::shape(
                "var",
                &[self.dims()],
                format!("{count} elements per reduction leave no degrees of freedom with correction {correction}"),
            ));
        }
        let centred = self.sub(&self.mean(axes, true)?)?;
        centred
            .square()?
            .sum(axes, keepdim)?
            .div_scalar((count - correction) as f64)
    }

    fn reduced_count(&self, op: &'static str, axes: &[isize]) -> Result<usize> {
        let axes = self.shape().axes(op, axes)?;
        let count: usize = axes.iter().map(|&a| self.dims()[a]).product();
        if count == 0 {
            return Err(Error::shape(
                op,
                &[self.dims()],
                "reduction over an empty axis",
            ));
        }
        Ok(count)
    }

    /// Maximum over `axes`; the gradient is shared equally among tied maxima.
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme("max", axes, keepdim, true)
    }

    /// Minimum over `axes`; the gradient is shared equally among tied minima.
    pub fn min(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme("min", axes, keepdim, false)
    }

    fn extreme(
        &self,
        op: &'static str,
        axes: &[isize],
        keepdim: bool,
        largest: bool,
    ) -> Result<Tensor> {
        check_float(op, self)?;
        let count = self.reduced_count(op, axes)?;
        let axes_u = self.shape().axes(op, axes)?;
        debug_assert!(count > 0);
        let plan = cpu::Plan::new(self.dims(), &axes_u);
        let storage = match &*self.storage() {
            Storage::Cpu(c) => Storage::Cpu(with_float!(op, c, |v| CpuStorage::from(
                cpu::extreme(v, &plan, largest)
            ))?),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Storage::Cuda(cuda::reduce(
                if largest {
                    cuda::ReduceOp::Max
                } else {
                    cuda::ReduceOp::Min
                },
                c,
                self.dims(),
                &axes_u,
            )?),
        };
        let x = self.clone();
        let kept = reduced_dims(self.dims(), &axes_u, true);
        let axes_i: Vec<isize> = axes_u.iter().map(|&a| a as isize).collect();
        Ok(Tensor::from_op(
            op,
            storage,
            reduced_dims(self.dims(), &axes_u, keepdim),
            &[self],
            Box::new(move |g, y| {
                let hits = x.eq_mask(&y.reshape(kept.clone())?)?;
                let share = hits.div(&hits.sum(&axes_i, true)?)?;
                Ok(vec![Some(share.mul(&g.reshape(kept)?)?)])
            }),
        ))
    }

    /// Index of the first maximum along `axis`, as an i64 tensor (no gradient). A NaN counts as
    /// larger than any number (the index of the first NaN is returned), on every device.
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        check_float("argmax", self)?;
        let a = self.shape().axis("argmax", axis)?;
        if self.dims()[a] == 0 {
            return Err(Error::shape(
                "argmax",
                &[self.dims()],
                "argmax over an empty axis",
            ));
        }
        let plan = cpu::Plan::new(self.dims(), &[a]);
        let storage = match &*self.storage() {
            Storage::Cpu(c) => {
                Storage::Cpu(CpuStorage::I64(with_float!("argmax", c, |v| cpu::argmax(
                    v, &plan
                ))?))
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Storage::Cuda(cuda::argmax(c, self.dims(), a)?),
        };
        Ok(Tensor::from_op_no_grad(
            storage,
            reduced_dims(self.dims(), &[a], keepdim),
        ))
    }

    /// Sums a broadcast result back down to `dims` (the shape an operand had before broadcasting).
    pub fn sum_to(&self, dims: &[usize]) -> Result<Tensor> {
        if self.dims() == dims {
            return Ok(self.clone());
        }
        let extra = self.rank().checked_sub(dims.len()).ok_or_else(|| {
            Error::shape(
                "sum_to",
                &[self.dims(), dims],
                "target has more dimensions than the tensor",
            )
        })?;
        let mut axes = Vec::new();
        for (i, &d) in self.dims().iter().enumerate() {
            // Leading dimensions that broadcasting added, and dimensions that were 1, are summed.
            if i < extra || (dims[i - extra] == 1 && d != 1) {
                axes.push(i as isize);
            } else if dims[i - extra] != d {
                return Err(Error::shape(
                    "sum_to",
                    &[self.dims(), dims],
                    "shapes are not broadcast-compatible",
                ));
            }
        }
        let summed = if axes.is_empty() {
            self.clone()
        } else {
            self.sum(&axes, true)?
        };
        summed.reshape(dims.to_vec())
    }
}
