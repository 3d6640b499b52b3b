//! Gradient clipping by global norm, like `torch.nn.utils.clip_grad_norm_`.

use super::cpu;
use crate::{no_grad, Error, Result, Storage, Tensor};

/// The L2 norm of all gradients of `params` taken together (parameters without one are skipped),
/// accumulated in f64. CPU gradients are summed one after the other; the gradients on each CUDA
/// device are summed there by one deterministic multi-tensor reduction (per-chunk partials, then
/// a fixed-order final sum in f64), and that device total is read back and added.
pub fn grad_norm(params: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0;
    #[cfg(feature = "cuda")]
    let mut on_devices: Vec<(usize, Vec<Tensor>)> = Vec::new();
    for p in params {
        if let Some(g) = p.grad() {
            #[cfg(feature = "cuda")]
            if let crate::Device::Cuda(ordinal) = g.device() {
                match on_devices.iter_mut().find(|(o, _)| *o == ordinal) {
                    Some((_, list)) => list.push(g),
                    None => on_devices.push((ordinal, vec![g])),
                }
                continue;
            }
            sum += match &*g.storage() {
                Storage::Cpu(c) => cpu::sum_of_squares(c),
                #[cfg(feature = "cuda")]
                Storage::Cuda(_) => {
                    return Err(Error::invalid(
                        "grad_norm",
                        "a gradient's storage is on another device than the gradient",
                    ))
                }
            };
        }
    }
    #[cfg(feature = "cuda")]
    for (ordinal, grads) in &on_devices {
        sum += super::cuda::sum_of_squares(*ordinal, grads)?;
    }
    Ok(sum.sqrt())
}

/// Scales every gradient by `max_norm / (total_norm + 1e-6)` when that is below 1, and returns
/// the total norm before clipping. Scaled gradients are new tensors (gradients may share storage
/// with each other, so scaling in place could scale one twice).
///
/// Unlike PyTorch, a non-finite total norm leaves the gradients untouched (scaling by 0 would
/// only turn infinities into NaN): check the returned norm and skip the update.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!("max_norm must be >= 0, got {max_norm}"),
        ));
    }
    let total = grad_norm(params)?;
    if !total.is_finite() {
        return Ok(total);
    }
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        no_grad(|| -> Result<()> {
            for p in params {
                if let Some(g) = p.grad() {
                    p.set_grad(Some(g.mul_scalar(coef)?));
                }
            }
            Ok(())
        })?;
    }
    Ok(total)
}
