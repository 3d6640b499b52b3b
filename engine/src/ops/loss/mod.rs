//! Losses and normalisations composed from elementwise and reduction ops (autograd derives their
//! backward rules): mean-squared error and L2 normalisation.

use super::{check_float, check_same};
use crate::{Error, Reduction, Result, Tensor};

impl Tensor {
    /// `(self - target)^2`, reduced. Both tensors must have exactly the same shape (no
    /// broadcasting: a silently broadcast target is almost always a bug); both get gradients.
    pub fn mse_loss(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        check_float("mse_loss", self)?;
        check_same("mse_loss", self, target)?;
        if self.dims() != target.dims() {
            return Err(Error::shape(
                "mse_loss",
                &[self.dims(), target.dims()],
                "input and target must have the same shape",
            ));
        }
        let squared = self.sub(target)?.square()?;
        match reduction {
            Reduction::None => Ok(squared),
            Reduction::Sum => squared.sum_all(),
            Reduction::Mean => squared.mean_all(),
        }
    }

    /// `x / max(||x||_2, eps)` along `axis`, as `torch.nn.functional.normalize`.
    ///
    /// Computed as `x / sqrt(max(sum(x^2), eps^2))`, which is the same function but clamps
    /// before the square root: the gradient of `sqrt` is then never taken at 0, so an all-zero
    /// vector gets a finite gradient (1 / eps) instead of NaN.
    pub fn l2_normalize(&self, axis: isize, eps: f64) -> Result<Tensor> {
        check_float("l2_normalize", self)?;
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                "l2_normalize",
                format!("eps must be finite and non-negative, got {eps}"),
            ));
        }
        let axis = self.shape().axis("l2_normalize", axis)? as isize;
        let floor = Tensor::scalar(eps * eps, self.dtype(), self.device())?;
        let norm = self.square()?.sum(&[axis], true)?.maximum(&floor)?.sqrt()?;
        self.div(&norm)
    }
}
