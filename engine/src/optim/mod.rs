//! Optimizers (SGD, AdamW), learning-rate schedules and gradient clipping.
//!
//! Optimizers update parameters in place, outside the graph, with fused per-parameter kernels
//! (`cpu.rs`), following PyTorch's update rules exactly. Parameters without a gradient are skipped.
//! Their state is exposed as named tensors ("adamw.m.<param>", ...) so it goes into checkpoints
//! beside the model.
//!
//! With the `cuda` feature, parameters on a CUDA device are updated by fused multi-tensor kernels
//! (`cuda.rs`, kernels/optim.cu): one launch per (device, dtype[, AdamW step count]) group, through
//! a device table of the group's tensors that the optimizer keeps and re-uploads only when it
//! changes. The kernels do the CPU's arithmetic operation by operation (no FMA contraction,
//! correctly rounded division and square root), so CUDA parameters are meant to follow the CPU's
//! values bit for bit (tests/cuda_optim.rs checks it on a GPU). Optimizer state lives on its
//! parameter's device (state loaded from a CPU checkpoint moves there).

pub mod adamw;
pub mod clip;
mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod schedule;
pub mod sgd;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::{clip_grad_norm, grad_norm};
pub use schedule::LrSchedule;
pub use sgd::{Sgd, SgdConfig};

use crate::{Error, Result, Storage, Tensor};
use std::collections::{HashMap, HashSet};

pub trait Optimizer {
    /// One update of every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Drops every parameter's gradient.
    fn zero_grad(&self);
    fn set_lr(&mut self, lr: f64);
    fn lr(&self) -> f64;
    /// The optimizer's state as named tensors, for checkpoints.
    fn state_tensors(&self) -> Vec<(String, Tensor)>;
    /// Restores state written by `state_tensors` (other tensors in `tensors` are ignored). Every
    /// state tensor is checked before any is installed, so a failed load changes nothing;
    /// parameters with no state in `tensors` restart from none.
    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()>;
}

/// The parameters an optimizer is given: float leaves that require a gradient, uniquely named.
fn check_params(op: &'static str, params: &[(String, Tensor)]) -> Result<()> {
    let mut seen = HashSet::new();
    for (name, p) in params {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(
                op,
                format!("parameter '{name}' is given twice"),
            ));
        }
        if !p.dtype().is_float() || !p.requires_grad() || !p.is_leaf() {
            return Err(Error::invalid(
                op,
                format!(
                    "parameter '{name}' ({} {:?}) must be a floating-point leaf that requires a gradient",
                    p.dtype(),
                    p.dims()
                ),
            ));
        }
    }
    Ok(())
}

fn check_hyper(op: &'static str, what: &str, value: f64, ok: bool) -> Result<()> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(op, format!("invalid {what}: {value}")))
    }
}

/// The gradient of `param`, checked against it; `None` when it has none. A gradient that shares
/// the parameter's storage (possible after `backward_with`) is copied so the update can lock both.
fn grad_of(op: &'static str, name: &str, param: &Tensor) -> Result<Option<Tensor>> {
    let Some(g) = param.grad() else {
        return Ok(None);
    };
    if g.dims() != param.dims() || g.dtype() != param.dtype() {
        return Err(Error::invalid(
            op,
            format!(
                "gradient of '{name}' is {} {:?}, the parameter is {} {:?}",
                g.dtype(),
                g.dims(),
                param.dtype(),
                param.dims()
            ),
        ));
    }
    if g.same_storage(param) {
        let copy = g.storage().try_clone()?;
        return Ok(Some(Tensor::from_storage(copy, g.shape().clone())?));
    }
    Ok(Some(g))
}

/// A copy with its own storage on `device` (state must not alias tensors the caller keeps, and
/// lives where its parameter does: state read from a checkpoint on the CPU moves to the GPU).
fn own_copy(t: &Tensor, device: crate::Device) -> Result<Tensor> {
    if t.device() != device {
        return Ok(t.detach().to_device(device)?.detach());
    }
    let storage: Storage = t.storage().try_clone()?;
    Tensor::from_storage(storage, t.shape().clone())
}

/// Collects the tensors named `<prefix><param name>` for known parameters; any other name under
/// `prefix` is an error (state for a parameter this optimizer does not have).
fn state_under<'a>(
    op: &'static str,
    prefix: &str,
    tensors: &'a [(String, Tensor)],
    params: &HashSet<&str>,
) -> Result<HashMap<String, &'a Tensor>> {
    let mut out = HashMap::new();
    for (key, t) in tensors {
        let Some(name) = key.strip_prefix(prefix) else {
            continue;
        };
        if !params.contains(name) {
            return Err(Error::invalid(
                op,
                format!("state tensor '{key}' names no parameter of this optimizer"),
            ));
        }
        out.insert(name.to_string(), t);
    }
    Ok(out)
}

/// A state tensor must match its parameter's shape and dtype.
fn check_like(op: &'static str, key: &str, t: &Tensor, param: &Tensor) -> Result<()> {
    if t.dims() != param.dims() || t.dtype() != param.dtype() {
        return Err(Error::invalid(
            op,
            format!(
                "state tensor '{key}' is {} {:?}, expected {} {:?} like its parameter",
                t.dtype(),
                t.dims(),
                param.dtype(),
                param.dims()
            ),
        ));
    }
    Ok(())
}
