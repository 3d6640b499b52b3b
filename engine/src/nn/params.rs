//! The parameter store: every trainable tensor of a model under a hierarchical name
//! ("encoder.block1.conv.weight"), in registration order, plus named buffers (non-trainable state
//! such as batch-norm running statistics, saved in checkpoints but never optimised).
//!
//! A `ParamStore` is a cheap handle (`Arc` inside): layers keep a clone, the optimizer and the
//! checkpoint code see the same tensors. Parameters are leaves that require a gradient; the
//! optimizer updates their storage in place, so the tensors handed out at registration stay valid.

use crate::{DType, Device, Error, Result, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The shared train/eval switch. Layers whose behaviour differs (dropout, batch norm) keep a clone
/// and read it on every forward pass, so `store.set_training(false)` switches the whole model.
#[derive(Clone, Debug)]
pub struct TrainingFlag(Arc<AtomicBool>);

impl TrainingFlag {
    pub fn new(training: bool) -> TrainingFlag {
        TrainingFlag(Arc::new(AtomicBool::new(training)))
    }

    pub fn is_training(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, training: bool) {
        self.0.store(training, Ordering::Relaxed);
    }
}

impl Default for TrainingFlag {
    /// Training, as a freshly built model is in PyTorch.
    fn default() -> Self {
        TrainingFlag::new(true)
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Param(usize),
    Buffer(usize),
}

#[derive(Default)]
struct Entries {
    params: Vec<(String, Tensor)>,
    buffers: Vec<(String, Tensor)>,
    // Parameters and buffers share one namespace: a checkpoint holds both under their names.
    by_name: HashMap<String, Slot>,
}

/// Named parameters and buffers of a model; see the module documentation.
#[derive(Clone)]
pub struct ParamStore {
    entries: Arc<Mutex<Entries>>,
    training: TrainingFlag,
    seed: u64,
    /// What layers built in this store create their parameters as (f32 on the CPU by default;
    /// f64 for gradient checks).
    dtype: DType,
    device: Device,
}

impl Default for ParamStore {
    fn default() -> Self {
        ParamStore::new()
    }
}

impl ParamStore {
    /// An empty store in training mode, with base seed 0.
    pub fn new() -> ParamStore {
        ParamStore::with_seed(0)
    }

    /// An empty store whose [`ParamPath::seed`] values derive from `seed`.
    pub fn with_seed(seed: u64) -> ParamStore {
        ParamStore {
            entries: Arc::new(Mutex::new(Entries::default())),
            training: TrainingFlag::default(),
            seed,
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }

    /// The same (empty) store creating parameters of `dtype`; call before registering anything.
    pub fn with_dtype(mut self, dtype: DType) -> ParamStore {
        self.dtype = dtype;
        self
    }

    /// The same (empty) store creating parameters on `device`; call before registering anything.
    pub fn with_device(mut self, device: Device) -> ParamStore {
        self.device = device;
        self
    }

    /// The dtype layers create their parameters with.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device layers create their parameters on.
    pub fn device(&self) -> Device {
        self.device
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().expect("param store lock poisoned")
    }

    /// The scope with no prefix.
    pub fn root(&self) -> ParamPath {
        ParamPath {
            store: self.clone(),
            prefix: None,
        }
    }

    /// The scope `name` (shorthand for `root().sub(name)`).
    pub fn sub(&self, name: &str) -> ParamPath {
        self.root().sub(name)
    }

    /// The base seed given at construction.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Trainable parameters with their full names, in registration order.
    pub fn params(&self) -> Vec<(String, Tensor)> {
        self.lock().params.clone()
    }

    /// The parameter tensors alone, in registration order (for gradient clipping).
    pub fn param_tensors(&self) -> Vec<Tensor> {
        self.lock().params.iter().map(|(_, t)| t.clone()).collect()
    }

    /// Buffers with their full names, in registration order.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.lock().buffers.clone()
    }

    /// Parameters then buffers: everything a model checkpoint holds.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let e = self.lock();
        e.params.iter().chain(&e.buffers).cloned().collect()
    }

    /// The parameter or buffer registered under the full name `name`.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let e = self.lock();
        e.by_name.get(name).map(|slot| match *slot {
            Slot::Param(i) => e.params[i].1.clone(),
            Slot::Buffer(i) => e.buffers[i].1.clone(),
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lock().by_name.contains_key(name)
    }

    /// Whether `name` is a trainable parameter (false for buffers and unknown names).
    pub fn is_param(&self, name: &str) -> bool {
        matches!(self.lock().by_name.get(name), Some(Slot::Param(_)))
    }

    /// Drops every parameter's gradient (PyTorch's `set_to_none=True`).
    pub fn zero_grad(&self) {
        for (_, p) in &self.lock().params {
            p.zero_grad();
        }
    }

    /// Total number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.lock().params.iter().map(|(_, t)| t.numel()).sum()
    }

    /// Number of parameter tensors.
    pub fn num_param_tensors(&self) -> usize {
        self.lock().params.len()
    }

    pub fn set_training(&self, training: bool) {
        self.training.set(training);
    }

    pub fn is_training(&self) -> bool {
        self.training.is_training()
    }

    /// The shared flag itself, for layers to keep.
    pub fn training_flag(&self) -> TrainingFlag {
        self.training.clone()
    }

    fn register(&self, name: String, tensor: Tensor, trainable: bool) -> Result<Tensor> {
        let op = if trainable {
            "ParamStore::param"
        } else {
            "ParamStore::buffer"
        };
        validate_name(op, &name)?;
        let mut e = self.lock();
        if e.by_name.contains_key(&name) {
            return Err(Error::invalid(
                op,
                format!("'{name}' is already registered in this store"),
            ));
        }
        let slot = if trainable {
            e.params.push((name.clone(), tensor.clone()));
            Slot::Param(e.params.len() - 1)
        } else {
            e.buffers.push((name.clone(), tensor.clone()));
            Slot::Buffer(e.buffers.len() - 1)
        };
        e.by_name.insert(name, slot);
        Ok(tensor)
    }
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.lock();
        let mut list = f.debug_map();
        for (name, t) in e.params.iter().chain(&e.buffers) {
            list.entry(name, &format_args!("{:?} {}", t.dims(), t.dtype()));
        }
        list.finish()
    }
}

/// Name components are identifiers (letters, digits, `_`, `-`), so a dotted full name splits back
/// into the scopes that made it and reads the same in checkpoints written by other tools.
fn validate_name(op: &'static str, full: &str) -> Result<()> {
    let bad_component = full.split('.').find(|c| {
        c.is_empty()
            || !c
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    });
    match bad_component {
        Some(c) => Err(Error::invalid(
            op,
            format!(
                "bad name '{full}': component '{c}' must be non-empty and use only letters, digits, '_' or '-'"
            ),
        )),
        None => Ok(()),
    }
}

/// A scope inside a [`ParamStore`]: names registered through it get its dotted prefix.
#[derive(Clone)]
pub struct ParamPath {
    store: ParamStore,
    /// None at the root; `Some("")` (from `sub("")`) is kept so the bad name is reported.
    prefix: Option<String>,
}

impl ParamPath {
    /// The nested scope `name` (names are checked when something is registered under it).
    pub fn sub(&self, name: &str) -> ParamPath {
        ParamPath {
            store: self.store.clone(),
            prefix: Some(self.full_name(name)),
        }
    }

    /// The dotted prefix of this scope ("" at the root).
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }

    /// The full name `name` gets in this scope.
    pub fn full_name(&self, name: &str) -> String {
        match &self.prefix {
            None => name.to_string(),
            Some(prefix) => format!("{prefix}.{name}"),
        }
    }

    /// The full name of a parameter or buffer `name`, which must be one component (scopes are
    /// made with `sub`).
    fn local_name(&self, op: &'static str, name: &str) -> Result<String> {
        let full = self.full_name(name);
        if name.contains('.') {
            return Err(Error::invalid(
                op,
                format!("bad name '{full}': '{name}' must not contain '.' (use sub() for scopes)"),
            ));
        }
        Ok(full)
    }

    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Registers a trainable parameter initialised with `init` and returns it: a leaf that
    /// requires a gradient and shares `init`'s storage. Float tensors only; duplicate names fail.
    pub fn param(&self, name: &str, init: Tensor) -> Result<Tensor> {
        let full = self.local_name("ParamStore::param", name)?;
        if !init.dtype().is_float() {
            return Err(Error::DType {
                op: "ParamStore::param",
                got: init.dtype(),
                msg: format!("parameter '{full}' must be floating-point to be trained"),
            });
        }
        let leaf = init.with_requires_grad()?;
        self.store.register(full, leaf, true)
    }

    /// Registers a buffer (any dtype, never given a gradient) and returns it. Layers update
    /// buffers in place through `storage_mut()`.
    pub fn buffer(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        let full = self.local_name("ParamStore::buffer", name)?;
        self.store.register(full, tensor.detach(), false)
    }

    /// A seed for initialising `name` in this scope: a hash of the store's base seed and the full
    /// name, so a model's initial values do not depend on the order its layers are built in.
    pub fn seed(&self, name: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a, stable across platforms and releases
        for b in self.full_name(name).bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        splitmix64(h ^ splitmix64(self.store.seed))
    }

    pub fn is_training(&self) -> bool {
        self.store.is_training()
    }

    /// The dtype layers create their parameters with (the store's).
    pub fn dtype(&self) -> DType {
        self.store.dtype
    }

    /// The device layers create their parameters on (the store's).
    pub fn device(&self) -> Device {
        self.store.device
    }

    pub fn training_flag(&self) -> TrainingFlag {
        self.store.training_flag()
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
