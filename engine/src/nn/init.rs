//! Parameter initialisers with PyTorch's conventions (`torch.nn.init`), reproducible from a seed.
//!
//! Fans follow PyTorch: a weight of shape `[out, in, k...]` has `fan_in = in * prod(k)` and
//! `fan_out = out * prod(k)` (a linear weight is `[out, in]`, a convolution `[out, in, kh, kw]`).

use crate::{DType, Device, Error, Result, Shape, Tensor};

/// `(fan_in, fan_out)` of a weight of shape `dims` (at least 2-D).
pub fn fans(dims: &[usize]) -> Result<(usize, usize)> {
    if dims.len() < 2 {
        return Err(Error::shape(
            "init::fans",
            &[dims],
            "fan in and fan out need a weight with at least 2 dimensions",
        ));
    }
    let receptive: usize = dims[2..].iter().product();
    Ok((dims[1] * receptive, dims[0] * receptive))
}

fn check_fan(op: &'static str, dims: &[usize], fan: usize) -> Result<()> {
    if fan == 0 {
        return Err(Error::shape(
            op,
            &[dims],
            "a fan of 0 gives no finite bound",
        ));
    }
    Ok(())
}

/// Uniform samples in `[low, high)`.
pub fn uniform(
    dims: impl Into<Shape>,
    low: f64,
    high: f64,
    seed: u64,
    dtype: DType,
    device: Device,
) -> Result<Tensor> {
    if !low.is_finite() || !high.is_finite() || low >= high {
        return Err(Error::invalid(
            "init::uniform",
            format!("need finite low < high, got [{low}, {high})"),
        ));
    }
    Tensor::rand_uniform(dims, low, high, seed, dtype, device)
}

/// `torch.nn.init.kaiming_uniform_(w, a=negative_slope, mode='fan_in', nonlinearity='leaky_relu')`:
/// `U(-b, b)` with `b = sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in)`. `negative_slope = 0` suits ReLU;
/// `sqrt(5)` is PyTorch's default for `nn.Linear` / `nn.Conv2d` weights (`b = 1 / sqrt(fan_in)`).
pub fn kaiming_uniform(
    dims: impl Into<Shape>,
    negative_slope: f64,
    seed: u64,
    dtype: DType,
    device: Device,
) -> Result<Tensor> {
    let shape = dims.into();
    let (fan_in, _) = fans(shape.dims())?;
    check_fan("init::kaiming_uniform", shape.dims(), fan_in)?;
    let gain = (2.0 / (1.0 + negative_slope * negative_slope)).sqrt();
    let bound = gain * (3.0 / fan_in as f64).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, seed, dtype, device)
}

/// `torch.nn.init.xavier_uniform_(w, gain)`: `U(-b, b)` with
/// `b = gain * sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(
    dims: impl Into<Shape>,
    gain: f64,
    seed: u64,
    dtype: DType,
    device: Device,
) -> Result<Tensor> {
    let shape = dims.into();
    let (fan_in, fan_out) = fans(shape.dims())?;
    check_fan("init::xavier_uniform", shape.dims(), fan_in + fan_out)?;
    let bound = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, seed, dtype, device)
}

/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: PyTorch's default for the bias of a layer whose weight
/// has the given `fan_in`.
pub fn fan_in_uniform(
    dims: impl Into<Shape>,
    fan_in: usize,
    seed: u64,
    dtype: DType,
    device: Device,
) -> Result<Tensor> {
    let shape = dims.into();
    check_fan("init::fan_in_uniform", shape.dims(), fan_in)?;
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, seed, dtype, device)
}

pub fn zeros(dims: impl Into<Shape>, dtype: DType, device: Device) -> Result<Tensor> {
    Tensor::zeros(dims, dtype, device)
}

pub fn ones(dims: impl Into<Shape>, dtype: DType, device: Device) -> Result<Tensor> {
    Tensor::ones(dims, dtype, device)
}
