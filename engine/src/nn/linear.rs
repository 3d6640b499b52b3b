//! Fully connected layer: `y = x W^T + b` over the last dimension, PyTorch's `nn.Linear`.

use super::{init, Module, ParamPath};
use crate::{Result, Tensor};

pub struct Linear {
    /// Shape (out_features, in_features).
    pub weight: Tensor,
    /// Shape (out_features).
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Registers `weight` (and `bias`) under `path`, initialised as PyTorch does: weight
    /// kaiming-uniform with a = sqrt(5), bias uniform in +-1/sqrt(in_features).
    pub fn new(
        path: &ParamPath,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        let (dtype, device) = (path.dtype(), path.device());
        let w = init::kaiming_uniform(
            [out_features, in_features],
            5f64.sqrt(),
            path.seed("weight"),
            dtype,
            device,
        )?;
        let weight = path.param("weight", w)?;
        let bias = if bias {
            let b = init::fan_in_uniform(
                [out_features],
                in_features,
                path.seed("bias"),
                dtype,
                device,
            )?;
            Some(path.param("bias", b)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Linear {
    /// `x` of shape (..., in_features) to (..., out_features).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::linear(x, &self.weight, self.bias.as_ref())
    }
}
