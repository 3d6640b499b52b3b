//! AdamW (decoupled weight decay) with `torch.optim.AdamW`'s semantics: per parameter, with its
//! own step count `t` (a parameter skipped for lack of a gradient does not advance):
//! `p *= 1 - lr * wd`, then `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.

use super::cpu::{self, AdamWStep, OptFloat};
use super::{check_hyper, check_like, check_params, grad_of, own_copy, state_under, Optimizer};
use crate::nn::ParamStore;
use crate::{DType, Device, Error, Result, Tensor};
use std::collections::HashSet;

const OP: &str = "AdamW";
const M_PREFIX: &str = "adamw.m.";
const V_PREFIX: &str = "adamw.v.";
const STEP_PREFIX: &str = "adamw.step.";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2.
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

impl AdamWConfig {
    /// PyTorch's defaults with learning rate `lr`.
    pub fn new(lr: f64) -> AdamWConfig {
        AdamWConfig {
            lr,
            ..Default::default()
        }
    }

    pub fn betas(self, beta1: f64, beta2: f64) -> AdamWConfig {
        AdamWConfig {
            beta1,
            beta2,
            ..self
        }
    }

    pub fn eps(self, eps: f64) -> AdamWConfig {
        AdamWConfig { eps, ..self }
    }

    pub fn weight_decay(self, weight_decay: f64) -> AdamWConfig {
        AdamWConfig {
            weight_decay,
            ..self
        }
    }

    fn validate(&self) -> Result<()> {
        check_hyper(OP, "learning rate", self.lr, self.lr >= 0.0)?;
        let beta_ok = |b: f64| (0.0..1.0).contains(&b);
        check_hyper(OP, "beta1", self.beta1, beta_ok(self.beta1))?;
        check_hyper(OP, "beta2", self.beta2, beta_ok(self.beta2))?;
        check_hyper(OP, "eps", self.eps, self.eps >= 0.0)?;
        check_hyper(
            OP,
            "weight decay",
            self.weight_decay,
            self.weight_decay >= 0.0,
        )
    }
}

/// One step's constants in f64, from the configuration and the parameter's step count; both
/// backends round them to the element type (the bias corrections computed in f64, as PyTorch
/// computes them in Python floats).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamWConsts {
    /// `1 - lr * weight_decay`.
    pub decay: f64,
    pub one_minus_beta1: f64,
    pub beta2: f64,
    pub one_minus_beta2: f64,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f64,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f64,
    pub eps: f64,
}

impl AdamWConsts {
    fn new(c: &AdamWConfig, step: u64) -> AdamWConsts {
        // powf is C's pow, as Python's `beta ** step`.
        let t = step as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(t);
        let bias_correction2 = 1.0 - c.beta2.powf(t);
        AdamWConsts {
            decay: 1.0 - c.lr * c.weight_decay,
            one_minus_beta1: 1.0 - c.beta1,
            beta2: c.beta2,
            one_minus_beta2: 1.0 - c.beta2,
            step_size: c.lr / bias_correction1,
            bias_correction2_sqrt: bias_correction2.sqrt(),
            eps: c.eps,
        }
    }

    fn typed<T: OptFloat>(&self) -> AdamWStep<T> {
        AdamWStep {
            decay: T::of(self.decay),
            one_minus_beta1: T::of(self.one_minus_beta1),
            beta2: T::of(self.beta2),
            one_minus_beta2: T::of(self.one_minus_beta2),
            step_size: T::of(self.step_size),
            bias_correction2_sqrt: T::of(self.bias_correction2_sqrt),
            eps: T::of(self.eps),
        }
    }
}

/// First and second moment estimates of one parameter.
struct Moments {
    m: Tensor,
    v: Tensor,
    step: u64,
}

struct Slot {
    name: String,
    param: Tensor,
    /// Created (zeros) at the parameter's first update.
    state: Option<Moments>,
}

pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    /// The device tables of the fused CUDA launches, kept between steps.
    #[cfg(feature = "cuda")]
    tables: super::cuda::TableCache,
}

impl AdamW {
    /// An optimizer over named parameters (names label the state in checkpoints).
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Result<AdamW> {
        config.validate()?;
        check_params(OP, &params)?;
        let slots = params
            .into_iter()
            .map(|(name, param)| Slot {
                name,
                param,
                state: None,
            })
            .collect();
        Ok(AdamW {
            config,
            slots,
            #[cfg(feature = "cuda")]
            tables: Default::default(),
        })
    }

    /// An optimizer over every parameter of `store`.
    pub fn from_store(store: &ParamStore, config: AdamWConfig) -> Result<AdamW> {
        AdamW::new(store.params(), config)
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The number of updates parameter `name` has received (None for an unknown name).
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.state.as_ref().map_or(0, |st| st.step))
    }

    fn update_typed<T: OptFloat>(
        param: &Tensor,
        grad: &Tensor,
        st: &Moments,
        c: &AdamWConfig,
    ) -> Result<()> {
        let consts = AdamWConsts::new(c, st.step).typed::<T>();
        let bad = || Error::DTypeMismatch {
            op: OP,
            a: param.dtype(),
            b: grad.dtype(),
        };
        let g_guard = grad.storage();
        let g = T::of_storage(&g_guard).ok_or_else(bad)?;
        let mut p_guard = param.storage_mut();
        let p = T::of_storage_mut(&mut p_guard).ok_or_else(bad)?;
        let mut m_guard = st.m.storage_mut();
        let m = T::of_storage_mut(&mut m_guard).ok_or_else(bad)?;
        let mut v_guard = st.v.storage_mut();
        let v = T::of_storage_mut(&mut v_guard).ok_or_else(bad)?;
        cpu::adamw(p, g, m, v, &consts);
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn step(&mut self) -> Result<()> {
        check_hyper(OP, "learning rate", self.config.lr, self.config.lr >= 0.0)?;
        let config = self.config;
        // CUDA parameters are only checked and collected in this loop (their gradients held);
        // after it, each advances its step count and joins a group (device, dtype, step count)
        // that one fused launch updates. An error while collecting leaves them all untouched.
        #[cfg(feature = "cuda")]
        let mut pending: Vec<(usize, super::cuda::Entry)> = Vec::new();
        #[cfg(feature = "cuda")]
        let mut held = Vec::new();
        #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(grad) = grad_of(OP, &slot.name, &slot.param)? else {
                continue;
            };
            if slot.state.is_none() {
                slot.state = Some(Moments {
                    m: slot.param.zeros_like()?,
                    v: slot.param.zeros_like()?,
                    step: 0,
                });
            }
            let st = slot.state.as_mut().expect("state created above");
            #[cfg(feature = "cuda")]
            if let Device::Cuda(_) = slot.param.device() {
                use super::cuda::{address, Entry};
                let (device, dtype) = (slot.param.device(), slot.param.dtype());
                let name = &slot.name;
                let entry = Entry {
                    p: address(OP, name, &slot.param, device, dtype)?,
                    g: address(OP, &format!("the gradient of {name}"), &grad, device, dtype)?,
                    s1: address(OP, &format!("{M_PREFIX}{name}"), &st.m, device, dtype)?,
                    s2: address(OP, &format!("{V_PREFIX}{name}"), &st.v, device, dtype)?,
                    n: slot.param.numel(),
                    flags: 0,
                };
                pending.push((index, entry));
                held.push(grad);
                continue;
            }
            st.step += 1;
            match slot.param.dtype() {
                DType::F32 => AdamW::update_typed::<f32>(&slot.param, &grad, st, &config)?,
                DType::F64 => AdamW::update_typed::<f64>(&slot.param, &grad, st, &config)?,
                DType::I64 => unreachable!("checked float at construction"),
            }
        }
        #[cfg(feature = "cuda")]
        {
            use super::cuda::Group;
            let mut groups: Vec<(u64, Group)> = Vec::new();
            for (index, entry) in pending {
                let slot = &mut self.slots[index];
                let Device::Cuda(ordinal) = slot.param.device() else {
                    continue;
                };
                let dtype = slot.param.dtype();
                let st = slot.state.as_mut().expect("state created in the loop");
                st.step += 1;
                let step = st.step;
                let same = |(s, g): &&mut (u64, Group)| {
                    *s == step && g.ordinal == ordinal && g.dtype == dtype
                };
                match groups.iter_mut().find(same) {
                    Some((_, g)) => g.entries.push(entry),
                    None => groups.push((
                        step,
                        Group {
                            ordinal,
                            dtype,
                            entries: vec![entry],
                        },
                    )),
                }
            }
            for (position, (step, group)) in groups.iter().enumerate() {
                let consts = AdamWConsts::new(&config, *step);
                super::cuda::adamw(&mut self.tables, position, group, &consts)?;
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
        let mut out = Vec::new();
        for s in &self.slots {
            let Some(st) = &s.state else { continue };
            let step = Tensor::from_vec(vec![st.step as i64], Vec::<usize>::new(), Device::Cpu)
                .expect("a scalar from one value");
            out.push((format!("{M_PREFIX}{}", s.name), st.m.clone()));
            out.push((format!("{V_PREFIX}{}", s.name), st.v.clone()));
            out.push((format!("{STEP_PREFIX}{}", s.name), step));
        }
        out
    }

    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        const LOAD: &str = "AdamW::load_state_tensors";
        for (key, _) in tensors {
            let known = [M_PREFIX, V_PREFIX, STEP_PREFIX]
                .iter()
                .any(|p| key.starts_with(p));
            if key.starts_with("adamw.") && !known {
                return Err(Error::invalid(
                    LOAD,
                    format!("unknown AdamW state tensor '{key}'"),
                ));
            }
        }
        let names: HashSet<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
        let ms = state_under(LOAD, M_PREFIX, tensors, &names)?;
        let vs = state_under(LOAD, V_PREFIX, tensors, &names)?;
        let steps = state_under(LOAD, STEP_PREFIX, tensors, &names)?;
        let mut loaded = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let n = &s.name;
            let state = match (ms.get(n), vs.get(n), steps.get(n)) {
                (None, None, None) => None,
                (Some(m), Some(v), Some(step)) => {
                    check_like(LOAD, &format!("{M_PREFIX}{n}"), m, &s.param)?;
                    check_like(LOAD, &format!("{V_PREFIX}{n}"), v, &s.param)?;
                    let step_value = match (step.dtype(), step.numel()) {
                        (DType::I64, 1) => step.to_vec::<i64>()?[0],
                        _ => {
                            return Err(Error::invalid(
                                LOAD,
                                format!(
                                    "state tensor '{STEP_PREFIX}{n}' must be a single i64, got {} {:?}",
                                    step.dtype(),
                                    step.dims()
                                ),
                            ))
                        }
                    };
                    if step_value < 0 {
                        return Err(Error::invalid(
                            LOAD,
                            format!("state tensor '{STEP_PREFIX}{n}' holds a bad step count {step_value}"),
                        ));
                    }
                    Some(Moments {
                        m: own_copy(m, s.param.device())?,
                        v: own_copy(v, s.param.device())?,
                        step: step_value as u64,
                    })
                }
                _ => {
                    return Err(Error::invalid(
                        LOAD,
                        format!("incomplete state for parameter '{n}': '{M_PREFIX}{n}', '{V_PREFIX}{n}' and '{STEP_PREFIX}{n}' go together"),
                    ))
                }
            };
            loaded.push(state);
        }
        for (s, st) in self.slots.iter_mut().zip(loaded) {
            s.state = st;
        }
        Ok(())
    }
}
