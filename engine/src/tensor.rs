//! The tensor: a shape, a dtype, a device, a shared contiguous storage and, when it takes part in
//! a recorded graph, the autograd node that produced it. Cloning a `Tensor` is cheap (an `Arc`).

use crate::autograd::{self, BackwardFn, Node};
use crate::ops::dropout::Distribution;
use crate::storage::{CpuStorage, Element, Storage};
use crate::{DType, Device, Error, Result, Shape};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

struct Inner {
    id: usize,
    shape: Shape,
    dtype: DType,
    device: Device,
    storage: Arc<RwLock<Storage>>,
    requires_grad: bool,
    node: Option<Arc<Node>>,
    grad: Mutex<Option<Tensor>>,
}

impl Tensor {
    fn build(
        storage: Arc<RwLock<Storage>>,
        shape: Shape,
        requires_grad: bool,
        node: Option<Arc<Node>>,
    ) -> Tensor {
        let (dtype, device) = {
            let s = storage.read().expect("storage lock");
            (s.dtype(), s.device())
        };
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            dtype,
            device,
            storage,
            requires_grad,
            node,
            grad: Mutex::new(None),
        }))
    }

    /// A tensor over existing storage, outside any graph. The storage length must match the shape.
    pub fn from_storage(storage: Storage, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if storage.len() != shape.numel() {
            return Err(Error::shape(
                "from_storage",
                &[shape.dims()],
                format!(
                    "storage holds {} elements, the shape needs {}",
                    storage.len(),
                    shape.numel()
                ),
            ));
        }
        Ok(Tensor::build(
            Arc::new(RwLock::new(storage)),
            shape,
            false,
            None,
        ))
    }

    /// The result of a differentiable op. Records `backward` when gradients are enabled and an
    /// input requires one; otherwise the rule is dropped unused.
    pub fn from_op(
        op: &'static str,
        storage: Storage,
        shape: impl Into<Shape>,
        inputs: &[&Tensor],
        backward: BackwardFn,
    ) -> Tensor {
        let shape = shape.into();
        debug_assert_eq!(
            storage.len(),
            shape.numel(),
            "op {op} produced a storage of the wrong size"
        );
        let track = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let node = track.then(|| {
            Arc::new(Node {
                op,
                saved: Mutex::new(Some((
                    inputs.iter().map(|&t| t.clone()).collect(),
                    backward,
                ))),
            })
        });
        Tensor::build(Arc::new(RwLock::new(storage)), shape, track, node)
    }

    /// The result of an op without a gradient (argmax, comparisons, index arithmetic).
    pub fn from_op_no_grad(storage: Storage, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        Tensor::build(Arc::new(RwLock::new(storage)), shape, false, None)
    }

    /// A tensor with the same storage read under a different shape of equal size (reshape).
    pub(crate) fn share_storage(
        &self,
        shape: Shape,
        inputs: &[&Tensor],
        backward: BackwardFn,
    ) -> Tensor {
        let track = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let node = track.then(|| {
            Arc::new(Node {
                op: "reshape",
                saved: Mutex::new(Some((
                    inputs.iter().map(|&t| t.clone()).collect(),
                    backward,
                ))),
            })
        });
        Tensor::build(self.0.storage.clone(), shape, track, node)
    }

    // ----- constructors -------------------------------------------------------------------

    pub fn from_vec<T: Element>(
        values: Vec<T>,
        shape: impl Into<Shape>,
        device: Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        if values.len() != shape.numel() {
            return Err(Error::shape(
                "from_vec",
                &[shape.dims()],
                format!(
                    "{} values given for a shape of {} elements",
                    values.len(),
                    shape.numel()
                ),
            ));
        }
        Tensor::from_storage(Storage::Cpu(T::wrap(values)), shape)?.to_device(device)
    }

    /// A 0-dimensional tensor holding `value`.
    pub fn scalar(value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full(Shape::scalar(), value, dtype, device)
    }

    pub fn full(
        shape: impl Into<Shape>,
        value: f64,
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.numel();
        #[cfg(feature = "cuda")]
        if let Device::Cuda(i) = device {
            let gpu = crate::cuda::gpu(i)?;
            let s = crate::cuda::CudaStorage::full(&gpu, n, value, dtype)?;
            return Tensor::from_storage(Storage::Cuda(s), shape);
        }
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(vec![value as f32; n]),
            DType::F64 => CpuStorage::F64(vec![value; n]),
            DType::I64 => CpuStorage::I64(vec![value as i64; n]),
        };
        Tensor::from_storage(Storage::Cpu(storage), shape)?.to_device(device)
    }

    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full(shape, 0.0, dtype, device)
    }

    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full(shape, 1.0, dtype, device)
    }

    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros(self.shape(), self.dtype(), self.device())
    }

    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::ones(self.shape(), self.dtype(), self.device())
    }

    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        Tensor::full(self.shape(), value, self.dtype(), self.device())
    }

    /// `start, start + step, ...` up to (not including) `end`, as a 1-D tensor.
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType, device: Device) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(
                "arange",
                format!("bad range {start}..{end} step {step}"),
            ));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let values: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
        Tensor::from_storage(Storage::Cpu(CpuStorage::from_f64_vec(values, dtype)), [n])?
            .to_device(device)
    }

    /// Uniform samples in [low, high), reproducible from `seed`. Element `i` is
    /// `ops::dropout::random_uniform(seed, i, low, high)` rounded to `dtype`, on every device: a
    /// seed gives the same tensor on the CPU and on a GPU (where a kernel draws it in place).
    pub fn rand_uniform(
        shape: impl Into<Shape>,
        low: f64,
        high: f64,
        seed: u64,
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        if !low.is_finite() || !high.is_finite() || low >= high {
            return Err(Error::invalid(
                "rand_uniform",
                format!("need finite low < high, got [{low}, {high})"),
            ));
        }
        let dist = Distribution::Uniform { low, high };
        Tensor::random("rand_uniform", shape.into(), seed, dtype, device, dist)
    }

    /// Normal samples with the given mean and standard deviation, reproducible from `seed`
    /// (Box-Muller over the same counter-based hash: `ops::dropout::random_normal`), the same
    /// on every device up to the last bit of f64's `ln` and `cos`.
    pub fn rand_normal(
        shape: impl Into<Shape>,
        mean: f64,
        std: f64,
        seed: u64,
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        let dist = Distribution::Normal { mean, std };
        Tensor::random("rand_normal", shape.into(), seed, dtype, device, dist)
    }

    /// A float tensor of draws from `dist`, element `i` a function of `(seed, i)` only.
    fn random(
        op: &'static str,
        shape: Shape,
        seed: u64,
        dtype: DType,
        device: Device,
        dist: Distribution,
    ) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(Error::DType {
                op,
                got: dtype,
                msg: "random fills are floating-point".into(),
            });
        }
        let storage =
            crate::ops::dropout::random_storage(dist, shape.numel(), seed, dtype, device)?;
        Tensor::from_storage(storage, shape)
    }

    // ----- metadata -----------------------------------------------------------------------

    pub fn id(&self) -> usize {
        self.0.id
    }

    pub fn shape(&self) -> &Shape {
        &self.0.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.0.shape.dims()
    }

    pub fn rank(&self) -> usize {
        self.0.shape.rank()
    }

    pub fn numel(&self) -> usize {
        self.0.shape.numel()
    }

    /// Size of dimension `axis` (negative counts from the end).
    pub fn dim(&self, axis: isize) -> Result<usize> {
        Ok(self.dims()[self.shape().axis("dim", axis)?])
    }

    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    pub fn device(&self) -> Device {
        self.0.device
    }

    /// Read access to the storage (for op implementations).
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().expect("storage lock poisoned")
    }

    /// Write access to the storage, for in-place updates outside the graph (optimizers, loading).
    pub fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().expect("storage lock poisoned")
    }

    /// Whether two tensors read the same buffer (a reshape shares its input's storage).
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    // ----- reading values -----------------------------------------------------------------

    /// The elements in row-major order; `T` must be the tensor's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let cpu = self.to_device(Device::Cpu)?;
        let s = cpu.storage();
        let c = s.as_cpu().expect("to_device(Cpu) gives host storage");
        T::slice(c).map(|v| v.to_vec()).ok_or(Error::DType {
            op: "to_vec",
            got: self.dtype(),
            msg: format!("asked for {} elements", T::DTYPE),
        })
    }

    /// The elements converted to f64, whatever the dtype.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        let cpu = self.to_device(Device::Cpu)?;
        let s = cpu.storage();
        let c = s.as_cpu().expect("to_device(Cpu) gives host storage");
        Ok(c.to_f64_vec())
    }

    /// The value of a one-element tensor, as f64.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                &[self.dims()],
                "item() needs a tensor with exactly one element",
            ));
        }
        Ok(self.to_f64_vec()?[0])
    }

    // ----- conversion ---------------------------------------------------------------------

    /// A copy in another dtype; differentiable between float dtypes.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let storage = self.storage().to_dtype(dtype)?;
        if !dtype.is_float() || !self.dtype().is_float() {
            return Ok(Tensor::from_op_no_grad(storage, self.shape().clone()));
        }
        let from = self.dtype();
        Ok(Tensor::from_op(
            "to_dtype",
            storage,
            self.shape().clone(),
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.to_dtype(from)?)])),
        ))
    }

    /// The tensor on `device`; the same tensor when it is already there. Differentiable: the
    /// gradient goes back to the source device.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let storage = self.storage_on(device)?;
        let from = self.device();
        Ok(Tensor::from_op(
            "to_device",
            storage,
            self.shape().clone(),
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.to_device(from)?)])),
        ))
    }

    /// A copy of the elements on another device.
    #[cfg(feature = "cuda")]
    fn storage_on(&self, device: Device) -> Result<Storage> {
        let src = self.storage();
        Ok(match (&*src, device) {
            (Storage::Cuda(c), Device::Cpu) => Storage::Cpu(c.to_cpu()?),
            (Storage::Cpu(c), Device::Cuda(i)) => Storage::Cuda(
                crate::cuda::CudaStorage::from_cpu(&crate::cuda::gpu(i)?, c)?,
            ),
            (Storage::Cuda(c), Device::Cuda(i)) => {
                // Between two GPUs through the host: simple, and rare in this project.
                let host = c.to_cpu()?;
                Storage::Cuda(crate::cuda::CudaStorage::from_cpu(
                    &crate::cuda::gpu(i)?,
                    &host,
                )?)
            }
            (Storage::Cpu(_), Device::Cpu) => unreachable!("same device returns early"),
        })
    }

    #[cfg(not(feature = "cuda"))]
    fn storage_on(&self, device: Device) -> Result<Storage> {
        match device {
            Device::Cpu => unreachable!("only CPU storage exists without the cuda feature"),
            Device::Cuda(i) => Device::cuda(i).map(|_| unreachable!("no CUDA without the feature")),
        }
    }

    // ----- autograd -----------------------------------------------------------------------

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// A leaf that requires a gradient and shares this tensor's storage (for parameters).
    pub fn with_requires_grad(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return Err(Error::DType {
                op: "with_requires_grad",
                got: self.dtype(),
                msg: "only floating-point tensors can require a gradient".into(),
            });
        }
        Ok(Tensor::build(
            self.0.storage.clone(),
            self.shape().clone(),
            true,
            None,
        ))
    }

    /// The same values, cut from the graph: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Tensor::build(self.0.storage.clone(), self.shape().clone(), false, None)
    }

    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }

    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.0.node.as_ref()
    }

    /// Name of the op that produced this tensor in a recorded graph.
    pub fn grad_fn_name(&self) -> Option<&'static str> {
        self.0.node.as_ref().map(|n| n.op)
    }

    /// The accumulated gradient of a leaf, if a backward pass reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().expect("grad lock").clone()
    }

    pub fn zero_grad(&self) {
        *self.0.grad.lock().expect("grad lock") = None;
    }

    /// Replaces the stored gradient (gradient clipping, loading optimizer state).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *self.0.grad.lock().expect("grad lock") = grad.map(|g| g.detach());
    }

    pub(crate) fn accumulate_grad(&self, g: Tensor) -> Result<()> {
        let mut slot = self.0.grad.lock().expect("grad lock");
        let total = match slot.take() {
            Some(prev) => prev.add(&g)?,
            None => g,
        };
        *slot = Some(total.detach());
        Ok(())
    }

    /// Back-propagates from a one-element tensor (a loss), accumulating into the leaves' grads.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a one-element tensor (a loss), got shape {:?}; use backward_with(grad)",
                self.dims()
            )));
        }
        autograd::run_backward(self, self.ones_like()?)
    }

    /// Back-propagates with an explicit gradient for this tensor (same shape).
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        autograd::run_backward(self, grad.detach())
    }
}

impl Drop for Inner {
    /// The last tensor over a storage hands its buffer to the CPU buffer cache for reuse.
    fn drop(&mut self) {
        if let Some(lock) = Arc::get_mut(&mut self.storage) {
            let storage = lock.get_mut().unwrap_or_else(|e| e.into_inner());
            // A CUDA buffer goes back to the device's caching allocator when it drops.
            let taken = std::mem::replace(storage, Storage::Cpu(CpuStorage::F32(Vec::new())));
            if let Some(cpu) = taken.into_cpu() {
                crate::buffer_cache::recycle(cpu);
            }
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {}",
            self.dims(),
            self.dtype(),
            self.device()
        )?;
        if self.numel() <= 16 {
            if let Ok(v) = self.to_f64_vec() {
                write!(f, ", {v:?}")?;
            }
        }
        if let Some(op) = self.grad_fn_name() {
            write!(f, ", grad_fn={op}")?;
        } else if self.requires_grad() {
            write!(f, ", requires_grad")?;
        }
        write!(f, ")")
    }
}
