//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and (coupled) weight
//! decay, with `torch.optim.SGD`'s semantics: `d = g + wd * p`; the momentum buffer starts as the
//! first `d` and then follows `buf = momentum * buf + (1 - dampening) * d`; the step direction is
//! `buf`, or `d + momentum * buf` with Nesterov; `p -= lr * direction`.

use super::cpu::{self, OptFloat, SgdStep};
use super::{check_hyper, check_like, check_params, grad_of, own_copy, state_under, Optimizer};
use crate::nn::ParamStore;
use crate::{DType, Error, Result, Tensor};
use std::collections::HashSet;

const OP: &str = "Sgd";
/// State tensors are named `sgd.momentum.<param name>`.
const MOMENTUM_PREFIX: &str = "sgd.momentum.";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr` (no momentum, no weight decay).
    pub fn new(lr: f64) -> SgdConfig {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    pub fn momentum(self, momentum: f64) -> SgdConfig {
        SgdConfig { momentum, ..self }
    }

    pub fn dampening(self, dampening: f64) -> SgdConfig {
        SgdConfig { dampening, ..self }
    }

    pub fn weight_decay(self, weight_decay: f64) -> SgdConfig {
        SgdConfig {
            weight_decay,
            ..self
        }
    }

    pub fn nesterov(self, nesterov: bool) -> SgdConfig {
        SgdConfig { nesterov, ..self }
    }

    fn validate(&self) -> Result<()> {
        check_hyper(OP, "learning rate", self.lr, self.lr >= 0.0)?;
        check_hyper(OP, "momentum", self.momentum, self.momentum >= 0.0)?;
        check_hyper(OP, "dampening", self.dampening, true)?;
        check_hyper(
            OP,
            "weight decay",
            self.weight_decay,
            self.weight_decay >= 0.0,
        )?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                OP,
                "Nesterov momentum requires a momentum > 0 and zero dampening",
            ));
        }
        Ok(())
    }
}

struct Slot {
    name: String,
    param: Tensor,
    /// Created at the parameter's first update (PyTorch starts it as that step's direction).
    momentum: Option<Tensor>,
}

pub struct Sgd {
    config: SgdConfig,
    slots: Vec<Slot>,
    /// The device tables of the fused CUDA launches, kept between steps.
    #[cfg(feature = "cuda")]
    tables: super::cuda::TableCache,
}

impl Sgd {
    /// An optimizer over named parameters (names label the state in checkpoints).
    pub fn new(params: Vec<(String, Tensor)>, config: SgdConfig) -> Result<Sgd> {
        config.validate()?;
        check_params(OP, &params)?;
        let slots = params
            .into_iter()
            .map(|(name, param)| Slot {
                name,
                param,
                momentum: None,
            })
            .collect();
        Ok(Sgd {
            config,
            slots,
            #[cfg(feature = "cuda")]
            tables: Default::default(),
        })
    }

    /// An optimizer over every parameter of `store`.
    pub fn from_store(store: &ParamStore, config: SgdConfig) -> Result<Sgd> {
        Sgd::new(store.params(), config)
    }

    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    fn update_typed<T: OptFloat>(
        &self,
        slot: &Slot,
        grad: &Tensor,
        momentum: Option<(&Tensor, bool)>,
    ) -> Result<()> {
        let c = &self.config;
        let consts = SgdStep {
            lr: T::of(c.lr),
            weight_decay: T::of(c.weight_decay),
            momentum: T::of(c.momentum),
            keep: T::of(1.0 - c.dampening),
            nesterov: c.nesterov,
            first: momentum.is_some_and(|(_, first)| first),
        };
        let bad = || Error::DTypeMismatch {
            op: OP,
            a: slot.param.dtype(),
            b: grad.dtype(),
        };
        let g_guard = grad.storage();
        let g = T::of_storage(&g_guard).ok_or_else(bad)?;
        let mut p_guard = slot.param.storage_mut();
        let p = T::of_storage_mut(&mut p_guard).ok_or_else(bad)?;
        match momentum {
            None => cpu::sgd(p, g, None, &consts),
            Some((buf, _)) => {
                let mut b_guard = buf.storage_mut();
                let b = T::of_storage_mut(&mut b_guard).ok_or_else(bad)?;
                cpu::sgd(p, g, Some(b), &consts);
            }
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        check_hyper(OP, "learning rate", self.config.lr, self.config.lr >= 0.0)?;
        // CUDA parameters are only checked and collected in this loop (their gradients held);
        // after it they are grouped (device, dtype), new momentum buffers are installed, and one
        // fused launch per group updates them. An error while collecting leaves them untouched.
        #[cfg(feature = "cuda")]
        let mut pending: Vec<(usize, super::cuda::Entry, Option<Tensor>)> = Vec::new();
        #[cfg(feature = "cuda")]
        let mut held = Vec::new();
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let Some(grad) = grad_of(OP, &slot.name, &slot.param)? else {
                continue;
            };
            // (buffer, whether this step creates it)
            let momentum = match (&slot.momentum, self.config.momentum != 0.0) {
                (_, false) => None,
                (Some(b), true) => Some((b.clone(), false)),
                (None, true) => Some((slot.param.zeros_like()?, true)),
            };
            #[cfg(feature = "cuda")]
            if let crate::Device::Cuda(_) = slot.param.device() {
                use super::cuda::{address, Entry, FIRST_STEP};
                let (device, dtype) = (slot.param.device(), slot.param.dtype());
                let name = &slot.name;
                let (s1, flags) = match &momentum {
                    None => (0, 0),
                    Some((b, first)) => (
                        address(OP, &format!("{MOMENTUM_PREFIX}{name}"), b, device, dtype)?,
                        if *first { FIRST_STEP } else { 0 },
                    ),
                };
                let entry = Entry {
                    p: address(OP, name, &slot.param, device, dtype)?,
                    g: address(OP, &format!("the gradient of {name}"), &grad, device, dtype)?,
                    s1,
                    s2: 0,
                    n: slot.param.numel(),
                    flags,
                };
                let created = match momentum {
                    Some((buffer, true)) => Some(buffer),
                    _ => None,
                };
                pending.push((i, entry, created));
                held.push(grad);
                continue;
            }
            let borrowed = momentum.as_ref().map(|(b, first)| (b, *first));
            match slot.param.dtype() {
                DType::F32 => self.update_typed::<f32>(slot, &grad, borrowed)?,
                DType::F64 => self.update_typed::<f64>(slot, &grad, borrowed)?,
                DType::I64 => unreachable!("checked float at construction"),
            }
            if let Some((buffer, true)) = momentum {
                self.slots[i].momentum = Some(buffer);
            }
        }
        #[cfg(feature = "cuda")]
        {
            use super::cuda::Group;
            let mut groups: Vec<Group> = Vec::new();
            for (i, entry, created) in pending {
                let slot = &mut self.slots[i];
                let crate::Device::Cuda(ordinal) = slot.param.device() else {
                    continue;
                };
                let dtype = slot.param.dtype();
                if created.is_some() {
                    slot.momentum = created;
                }
                match groups
                    .iter_mut()
                    .find(|g| g.ordinal == ordinal && g.dtype == dtype)
                {
                    Some(g) => g.entries.push(entry),
                    None => groups.push(Group {
                        ordinal,
                        dtype,
                        entries: vec![entry],
                    }),
                }
            }
            for (position, group) in groups.iter().enumerate() {
                super::cuda::sgd(&mut self.tables, position, group, &self.config)?;
            }
            super::cuda::retire_tables(&mut self.tables, groups.len());
            drop(held);
        }
        Ok(())
    }

    fn zero_grad(&self) {
        for s in &self.slots {
            s.param.zero_grad();
        }
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .filter_map(|s| {
                s.momentum
                    .as_ref()
                    .map(|b| (format!("{MOMENTUM_PREFIX}{}", s.name), b.clone()))
            })
            .collect()
    }

    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        const LOAD: &str = "Sgd::load_state_tensors";
        let names: HashSet<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
        for (key, _) in tensors {
            if key.starts_with("sgd.") && !key.starts_with(MOMENTUM_PREFIX) {
                return Err(Error::invalid(
                    LOAD,
                    format!("unknown SGD state tensor '{key}'"),
                ));
            }
        }
        let found = state_under(LOAD, MOMENTUM_PREFIX, tensors, &names)?;
        let mut loaded = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            loaded.push(match found.get(&s.name) {
                Some(t) => {
                    check_like(LOAD, &format!("{MOMENTUM_PREFIX}{}", s.name), t, &s.param)?;
                    Some(own_copy(t, s.param.device())?)
                }
                None => None,
            });
        }
        for (s, m) in self.slots.iter_mut().zip(loaded) {
            s.momentum = m;
        }
        Ok(())
    }
}
