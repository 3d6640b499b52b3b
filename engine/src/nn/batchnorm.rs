//! Batch normalisation over (N, C, ...) inputs, PyTorch's `nn.BatchNorm1d/2d/3d`: batch statistics
//! in training (updating the running statistics), running statistics in evaluation.

use super::{Module, ParamPath, TrainingFlag};
use crate::{Error, Result, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct BatchNormConfig {
    pub eps: f64,
    pub momentum: f64,
    /// Learnable per-channel scale and shift.
    pub affine: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
        }
    }
}

pub struct BatchNorm {
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    config: BatchNormConfig,
    /// Input ranks this layer accepts: 1d takes (N, C) or (N, C, L), 2d (N, C, H, W), 3d (N, C, D, H, W).
    ranks: &'static [usize],
    name: &'static str,
    training: TrainingFlag,
}

impl BatchNorm {
    fn new(
        path: &ParamPath,
        channels: usize,
        config: BatchNormConfig,
        ranks: &'static [usize],
        name: &'static str,
    ) -> Result<BatchNorm> {
        let (dtype, device) = (path.dtype(), path.device());
        let (weight, bias) = if config.affine {
            (
                Some(path.param("weight", Tensor::ones([channels], dtype, device)?)?),
                Some(path.param("bias", Tensor::zeros([channels], dtype, device)?)?),
            )
        } else {
            (None, None)
        };
        let running_mean =
            path.buffer("running_mean", Tensor::zeros([channels], dtype, device)?)?;
        let running_var = path.buffer("running_var", Tensor::ones([channels], dtype, device)?)?;
        Ok(BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            config,
            ranks,
            name,
            training: path.training_flag(),
        })
    }

    /// For (N, C) or (N, C, L) inputs.
    pub fn new_1d(path: &ParamPath, channels: usize, config: BatchNormConfig) -> Result<BatchNorm> {
        BatchNorm::new(path, channels, config, &[2, 3], "BatchNorm1d")
    }

    /// For (N, C, H, W) inputs.
    pub fn new_2d(path: &ParamPath, channels: usize, config: BatchNormConfig) -> Result<BatchNorm> {
        BatchNorm::new(path, channels, config, &[4], "BatchNorm2d")
    }

    /// For (N, C, D, H, W) inputs.
    pub fn new_3d(path: &ParamPath, channels: usize, config: BatchNormConfig) -> Result<BatchNorm> {
        BatchNorm::new(path, channels, config, &[5], "BatchNorm3d")
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.ranks.contains(&x.rank()) {
            return Err(Error::shape(
                self.name,
                &[x.dims()],
                format!(
                    "expected an input of rank {:?} with channels on dimension 1",
                    self.ranks
                ),
            ));
        }
        x.batch_norm(
            Some(&self.running_mean),
            Some(&self.running_var),
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.training.is_training(),
            self.config.momentum,
            self.config.eps,
        )
    }
}
