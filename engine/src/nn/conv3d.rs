//! 3D convolution layer over NCDHW inputs, PyTorch's `nn.Conv3d` (dilation 1, one group). A
//! (2+1)D block is a (1, k, k) spatial and a (k, 1, 1) temporal `Conv3d`; ST-GCN's temporal
//! (9, 1) convolution is a (9, 1, 1) `Conv3d` on (N, C, T, V, 1).

use super::{init, Module, ParamPath};
use crate::ops::conv::Conv3dParams;
use crate::{Error, Result, Tensor};

pub struct Conv3d {
    /// Shape (out_channels, in_channels, kt, kh, kw).
    pub weight: Tensor,
    /// Shape (out_channels).
    pub bias: Option<Tensor>,
    pub params: Conv3dParams,
}

impl Conv3d {
    /// Registers `weight` (and `bias`) under `path`, initialised as PyTorch does: weight
    /// kaiming-uniform with a = sqrt(5), bias uniform in +-1/sqrt(fan_in), where
    /// fan_in = in_channels * kt * kh * kw.
    pub fn new(
        path: &ParamPath,
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 3],
        params: Conv3dParams,
        bias: bool,
    ) -> Result<Conv3d> {
        if in_channels == 0 || out_channels == 0 || kernel.contains(&0) {
            return Err(Error::invalid(
                "nn::Conv3d",
                format!(
                    "channels and kernel sizes must be positive: in {in_channels}, out {out_channels}, kernel {kernel:?}"
                ),
            ));
        }
        let (dtype, device) = (path.dtype(), path.device());
        let dims = [out_channels, in_channels, kernel[0], kernel[1], kernel[2]];
        let w = init::kaiming_uniform(dims, 5f64.sqrt(), path.seed("weight"), dtype, device)?;
        let weight = path.param("weight", w)?;
        let bias = if bias {
            let fan_in = in_channels * kernel.iter().product::<usize>();
            let b = init::fan_in_uniform([out_channels], fan_in, path.seed("bias"), dtype, device)?;
            Some(path.param("bias", b)?)
        } else {
            None
        };
        Ok(Conv3d {
            weight,
            bias,
            params,
        })
    }

    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// (kt, kh, kw).
    pub fn kernel(&self) -> [usize; 3] {
        let d = self.weight.dims();
        [d[2], d[3], d[4]]
    }
}

impl Module for Conv3d {
    /// `x` of shape (N, in_channels, D, H, W) to (N, out_channels, Do, Ho, Wo).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv3d(&self.weight, self.bias.as_ref(), self.params)
    }
}
