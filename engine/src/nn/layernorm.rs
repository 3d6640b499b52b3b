//! Layer normalisation over the trailing dimensions, PyTorch's `nn.LayerNorm`.

use super::{Module, ParamPath};
use crate::{Result, Tensor};

pub struct LayerNorm {
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    normalized_rank: usize,
    eps: f64,
}

impl LayerNorm {
    /// Normalises over trailing dimensions of shape `normalized_shape`; with `affine`, a learnable
    /// scale (ones) and shift (zeros) of that shape.
    pub fn new(
        path: &ParamPath,
        normalized_shape: &[usize],
        eps: f64,
        affine: bool,
    ) -> Result<LayerNorm> {
        let (dtype, device) = (path.dtype(), path.device());
        let (weight, bias) = if affine {
            (
                Some(path.param(
                    "weight",
                    Tensor::ones(normalized_shape.to_vec(), dtype, device)?,
                )?),
                Some(path.param(
                    "bias",
                    Tensor::zeros(normalized_shape.to_vec(), dtype, device)?,
                )?),
            )
        } else {
            (None, None)
        };
        Ok(LayerNorm {
            weight,
            bias,
            normalized_rank: normalized_shape.len(),
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(
            self.normalized_rank,
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.eps,
        )
    }
}
