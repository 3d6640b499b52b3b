//! Layout ops: reshape (shares storage), broadcast_to, and the copies that rearrange elements
//! (permute/transpose, narrow, concat, stack, pad).

use super::elementwise::cpu as ew;
use crate::shape::broadcast_shapes;
use crate::storage::{CpuStorage, Storage};
use crate::{with_float, Error, Result, Shape, Tensor};

impl Tensor {
    /// The same elements under another shape of equal size; shares storage (no copy).
    /// `reshape_infer` takes -1 for one inferred dimension.
    pub fn reshape(&self, dims: impl Into<Shape>) -> Result<Tensor> {
        let shape = dims.into();
        if shape.numel() != self.numel() {
            return Err(Error::shape(
                "reshape",
                &[self.dims(), shape.dims()],
                format!(
                    "cannot reshape {} elements into {} elements",
                    self.numel(),
                    shape.numel()
                ),
            ));
        }
        if shape == *self.shape() {
            return Ok(self.clone());
        }
        let in_dims = self.dims().to_vec();
        Ok(self.share_storage(
            shape,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.reshape(in_dims)?)])),
        ))
    }

    /// Reshape where one entry may be -1, inferred from the element count.
    pub fn reshape_infer(&self, dims: &[isize]) -> Result<Tensor> {
        let known: usize = dims
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .product();
        let inferred = dims.iter().filter(|&&d| d < 0).count();
        let bad = || {
            Error::shape(
                "reshape",
                &[self.dims()],
                format!("cannot reshape {} elements into {dims:?}", self.numel()),
            )
        };
        if inferred > 1 || dims.iter().any(|&d| d < -1) {
            return Err(bad());
        }
        let out: Vec<usize> = if inferred == 1 {
            if known == 0 || self.numel() % known != 0 {
                return Err(bad());
            }
            dims.iter()
                .map(|&d| {
                    if d < 0 {
                        self.numel() / known
                    } else {
                        d as usize
                    }
                })
                .collect()
        } else {
            dims.iter().map(|&d| d as usize).collect()
        };
        self.reshape(out)
    }

    /// Flattens dimensions `start..` into one.
    pub fn flatten_from(&self, start: isize) -> Result<Tensor> {
        let s = self.shape().axis("flatten", start)?;
        let mut dims = self.dims()[..s].to_vec();
        dims.push(self.dims()[s..].iter().product());
        self.reshape(dims)
    }

    /// A copy broadcast (NumPy rules) to `dims`; the gradient is summed back.
    pub fn broadcast_to(&self, dims: &[usize]) -> Result<Tensor> {
        let out = broadcast_shapes("broadcast_to", self.dims(), dims)?;
        if out != dims {
            return Err(Error::shape(
                "broadcast_to",
                &[self.dims(), dims],
                "the tensor does not broadcast to the target",
            ));
        }
        if self.dims() == dims {
            return Ok(self.clone());
        }
        let storage = match &*self.storage() {
            Storage::Cpu(c) => Storage::Cpu(with_float!("broadcast_to", c, |v| {
                let d = self.dims();
                CpuStorage::from(ew::broadcast_map3(
                    [(v, d), (v, d), (v, d)],
                    dims,
                    |x, _, _| x,
                ))
            })?),
        };
        let in_dims = self.dims().to_vec();
        Ok(Tensor::from_op(
            "broadcast_to",
            storage,
            dims.to_vec(),
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.sum_to(&in_dims)?)])),
        ))
    }
}
