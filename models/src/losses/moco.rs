//! MoCo (paper 003, after He et al.): a FIFO queue of negative keys and the momentum (EMA) update
//! of the key encoder.
//!
//! The queue holds `K` keys (`K x D`, L2-normalised rows), starting as random unit vectors drawn
//! from a seed (as MoCo's `randn` + normalise), so the loss is defined from the first step. A
//! step computes queries `q` with the query encoder, keys `k` with the key encoder (the same
//! architecture in a second `ParamStore`, updated by [`ema_update`] with `m = 0.999`),
//! the loss [`MocoQueue::loss`] (logits `[q.k | q queue^T] / tau`, target column 0), then
//! [`MocoQueue::enqueue`]s `k`. In MS-CLR the key is the same sample in another skeleton format
//! and one queue serves every format.
//!
//! State for checkpoints: [`MocoQueue::keys`] and [`MocoQueue::ptr`]; restore with
//! [`MocoQueue::from_state`].

use engine::nn::ParamStore;
use engine::{no_grad, DType, Device, Error, Result, Tensor};
use std::collections::BTreeSet;

/// MoCo's momentum for the key encoder (paper 003 follows MoCo: 0.999).
pub const MOMENTUM: f64 = 0.999;

/// A FIFO queue of `K` negative keys; see the module docs.
#[derive(Clone, Debug)]
pub struct MocoQueue {
    keys: Tensor,
    ptr: usize,
}

impl MocoQueue {
    /// A queue of `size` random unit keys of dimension `dim` (normal draws from `seed`, rows
    /// L2-normalised), pointer at 0. `size` and `dim` must be at least 1.
    pub fn new(dim: usize, size: usize, seed: u64, dtype: DType, device: Device) -> Result<Self> {
        const OP: &str = "MocoQueue::new";
        if dim == 0 || size == 0 {
            return Err(Error::invalid(
                OP,
                format!("dim and size must be >= 1, got dim {dim}, size {size}"),
            ));
        }
        let keys = no_grad(|| {
            Tensor::rand_normal([size, dim], 0.0, 1.0, seed, dtype, device)?.l2_normalize(1, 1e-12)
        })?;
        Ok(MocoQueue {
            keys: keys.detach(),
            ptr: 0,
        })
    }

    /// A queue restored from saved state: `keys` (`K x D`, `K >= 1`) and `ptr < K`.
    pub fn from_state(keys: Tensor, ptr: usize) -> Result<Self> {
        const OP: &str = "MocoQueue::from_state";
        if keys.rank() != 2 || keys.dims()[0] == 0 || keys.dims()[1] == 0 {
            return Err(Error::shape(
                OP,
                &[keys.dims()],
                "keys must be (K, D), K, D >= 1",
            ));
        }
        if !keys.dtype().is_float() {
            return Err(Error::invalid(OP, "keys must be floating-point"));
        }
        if ptr >= keys.dims()[0] {
            return Err(Error::invalid(
                OP,
                format!("ptr {ptr} is outside a queue of {}", keys.dims()[0]),
            ));
        }
        Ok(MocoQueue {
            keys: keys.detach(),
            ptr,
        })
    }

    /// MoCo's InfoNCE: queries `q` (`N x D`), their positive keys `k` (`N x D`) and the queue's
    /// `K` keys as negatives at temperature `tau`: the mean over rows of the cross-entropy of
    /// `[q.k | q queue^T] / tau` against column 0 (paper 003 Eq. 6). `k` is detached here (the
    /// key encoder learns only through [`ema_update`]); the gradient reaches `q` only.
    pub fn loss(&self, q: &Tensor, k: &Tensor, tau: f64) -> Result<Tensor> {
        Tensor::infonce_queue(q, &k.detach(), &self.keys, tau)
    }

    /// Puts `keys` (`B x D`, detached) in the queue in FIFO order: row `r` replaces slot
    /// `(ptr + r) mod K`, wrapping around, and the pointer moves to `(ptr + B) mod K`. With
    /// `B > K` the later rows overwrite the earlier ones (the queue ends holding the last `K`
    /// keys). One `index_select` on the device, no host round trip.
    pub fn enqueue(&mut self, keys: &Tensor) -> Result<()> {
        const OP: &str = "MocoQueue::enqueue";
        let (k, d) = (self.keys.dims()[0], self.keys.dims()[1]);
        if keys.rank() != 2 || keys.dims()[1] != d {
            return Err(Error::shape(
                OP,
                &[self.keys.dims(), keys.dims()],
                "keys must be (B, D) with the queue's D",
            ));
        }
        if keys.dtype() != self.keys.dtype() || keys.device() != self.keys.device() {
            return Err(Error::invalid(
                OP,
                format!(
                    "keys are {} on {}, the queue {} on {}",
                    keys.dtype(),
                    keys.device(),
                    self.keys.dtype(),
                    self.keys.device()
                ),
            ));
        }
        let b = keys.dims()[0];
        if b == 0 {
            return Ok(());
        }
        // Source row of each slot in [queue; keys]: the slot itself unless a key lands there.
        let mut src: Vec<i64> = (0..k as i64).collect();
        for r in 0..b {
            src[(self.ptr + r) % k] = (k + r) as i64;
        }
        let new = no_grad(|| {
            let idx = Tensor::from_vec(src, [k], Device::Cpu)?.to_device(self.keys.device())?;
            Tensor::concat(&[&self.keys, &keys.detach()], 0)?.index_select(0, &idx)
        })?;
        self.keys = new.detach();
        self.ptr = (self.ptr + b) % k;
        Ok(())
    }

    /// The queue's keys (`K x D`, no gradient), for checkpoints and inspection.
    pub fn keys(&self) -> &Tensor {
        &self.keys
    }

    /// The number of keys `K` (the queue is always full: it starts with random keys).
    pub fn len(&self) -> usize {
        self.keys.dims()[0]
    }

    /// Always false: a queue holds at least one key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The slot the next enqueued key goes to.
    pub fn ptr(&self) -> usize {
        self.ptr
    }
}

fn names(list: &[(String, Tensor)]) -> BTreeSet<&str> {
    list.iter().map(|(n, _)| n.as_str()).collect()
}

/// MoCo's momentum update of the key encoder: every parameter of `target` becomes
/// `m target + (1 - m) source` (the same-named parameter of `source`), in place (the tensors the
/// key encoder's layers hold see the new values), without recording a graph; every buffer
/// (batch-norm running statistics) is copied from `source`. Both stores must hold exactly the
/// same parameter names and buffer names with the same shapes and dtypes (build them with the
/// same layers); otherwise, or for `momentum` outside `[0, 1]`, nothing is changed and the
/// result is an error. Works on any device (engine ops and storage copies only).
pub fn ema_update(target: &ParamStore, source: &ParamStore, momentum: f64) -> Result<()> {
    const OP: &str = "losses::ema_update";
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::invalid(
            OP,
            format!("momentum must be in [0, 1], got {momentum}"),
        ));
    }
    let (tp, sp) = (target.params(), source.params());
    let (tb, sb) = (target.buffers(), source.buffers());
    for (what, t, s) in [("parameter", &tp, &sp), ("buffer", &tb, &sb)] {
        let (tn, sn) = (names(t), names(s));
        if tn != sn {
            let only_t: Vec<&&str> = tn.difference(&sn).take(5).collect();
            let only_s: Vec<&&str> = sn.difference(&tn).take(5).collect();
            return Err(Error::invalid(
                OP,
                format!(
                    "the stores' {what} names differ: only in target {only_t:?}, only in source {only_s:?}"
                ),
            ));
        }
    }
    let pairs = |list: &[(String, Tensor)]| -> Result<Vec<(Tensor, Tensor)>> {
        list.iter()
            .map(|(name, t)| {
                let s = source.get(name).ok_or_else(|| {
                    Error::invalid(OP, format!("'{name}' is missing from the source"))
                })?;
                if s.dims() != t.dims() || s.dtype() != t.dtype() {
                    return Err(Error::shape(
                        OP,
                        &[t.dims(), s.dims()],
                        format!(
                            "'{name}': target {} and source {} differ",
                            t.dtype(),
                            s.dtype()
                        ),
                    ));
                }
                Ok((t.clone(), s))
            })
            .collect()
    };
    let params = pairs(&tp)?;
    let buffers = pairs(&tb)?;
    no_grad(|| -> Result<()> {
        for (t, s) in &params {
            if t.same_storage(s) {
                continue;
            }
            let s = s.detach().to_device(t.device())?;
            let new = t
                .detach()
                .mul_scalar(momentum)?
                .add(&s.mul_scalar(1.0 - momentum)?)?;
            let values = new.storage().try_clone()?;
            *t.storage_mut() = values;
        }
        for (t, s) in &buffers {
            if t.same_storage(s) {
                continue;
            }
            let values = s.detach().to_device(t.device())?.storage().try_clone()?;
            *t.storage_mut() = values;
        }
        Ok(())
    })
}
