//! Indexing with i64 index tensors: `index_select` / `index_add` (whole slices along an axis)
//! and `gather` / `scatter_add` (one element per index position, PyTorch semantics). Each pair
//! is the other's backward rule. Indices must lie in `0..size`; negative or larger values are
//! an `Error::Index` naming the op, the value and the size.
//!
//! On CUDA the kernels read the indices on the device and do not check them against the size
//! by default (that would need a host sync per op): an out-of-range index reads 0 in
//! `index_select` / `gather` and is skipped by `index_add` / `scatter_add`. Setting
//! `RCMCL_CUDA_CHECK_INDICES=1` (or calling [`set_cuda_index_checks`]) copies the indices to the
//! host first and returns the CPU's `Error::Index`. The CUDA adds accumulate with atomics, so
//! with repeated indices the rounding of a float sum may differ from run to run.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::layout::map_any_dtype;
use super::{check_float, check_same};
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Error, Float, Result, Tensor};
use cpu::AxisView;

/// Turns the host-side check of CUDA index values on or off for the process (the default is
/// `RCMCL_CUDA_CHECK_INDICES=1` in the environment, else off): see the module docs. Without the
/// `cuda` feature there is nothing to switch (the CPU always checks).
pub fn set_cuda_index_checks(on: bool) {
    #[cfg(feature = "cuda")]
    cuda::set_check_indices(on);
    #[cfg(not(feature = "cuda"))]
    let _ = on;
}

/// An index tensor's values, where its kernels read them.
enum Indices {
    /// On the host, every value checked to lie in `0..size` (the CPU kernels).
    Host(Vec<i64>),
    /// On the device: the address of the values and their count (the CUDA kernels).
    #[cfg(feature = "cuda")]
    Device(crate::cuda::Arg, usize),
}

impl Indices {
    /// The host values (empty for device indices, which never meet host data: `index_values`
    /// checked that the indices live on the data's device).
    fn host(&self) -> &[i64] {
        match self {
            Indices::Host(v) => v,
            #[cfg(feature = "cuda")]
            Indices::Device(..) => &[],
        }
    }

    /// The device address and count of the values, for a CUDA kernel.
    #[cfg(feature = "cuda")]
    fn device(&self, op: &'static str) -> Result<(crate::cuda::Arg, usize)> {
        match self {
            Indices::Device(arg, n) => Ok((*arg, *n)),
            Indices::Host(_) => Err(Error::invalid(op, "host indices given to a CUDA kernel")),
        }
    }
}

/// The values of an i64 index tensor on `like`'s device: on the host, checked to lie in
/// `0..size`; on a CUDA device, left there (checked on the host only when index checks are on).
/// The address kept for a device tensor stays valid while `indices` lives: kernels are queued
/// on the device's one stream before it can be dropped, and freed blocks are reused in stream
/// order.
fn index_values(op: &'static str, like: &Tensor, indices: &Tensor, size: usize) -> Result<Indices> {
    if indices.device() != like.device() {
        return Err(Error::DeviceMismatch {
            op,
            a: like.device(),
            b: indices.device(),
        });
    }
    if indices.dtype() != DType::I64 {
        return Err(Error::DType {
            op,
            got: indices.dtype(),
            msg: "indices must be an i64 tensor".into(),
        });
    }
    #[cfg(feature = "cuda")]
    if let Storage::Cuda(c) = &*indices.storage() {
        if cuda::check_indices() {
            let host = c.to_cpu()?;
            check_range(op, crate::Element::slice(&host).unwrap_or(&[]), size)?;
        }
        return Ok(Indices::Device(c.arg(), c.len()));
    }
    let values = indices.to_vec::<i64>()?;
    check_range(op, &values, size)?;
    Ok(Indices::Host(values))
}

/// The `Error::Index` of the first value outside `0..size`, if any.
fn check_range(op: &'static str, values: &[i64], size: usize) -> Result<()> {
    match values.iter().find(|&&i| i < 0 || i as u64 >= size as u64) {
        Some(&bad) => Err(Error::Index {
            op,
            index: bad,
            size,
        }),
        None => Ok(()),
    }
}

/// A float storage of `dtype` made by adding `src` into a copy of `base` (or into zeros of
/// `zeros_len` elements): `add` on the host, `add_cuda(out, src)` in place on a device.
fn add_into_storage(
    op: &'static str,
    base: Option<&Tensor>,
    zeros_len: usize,
    dtype: DType,
    src: &Tensor,
    add: impl Fn(&mut dyn AddInto),
    #[cfg(feature = "cuda")] add_cuda: impl Fn(
        &crate::cuda::CudaStorage,
        &crate::cuda::CudaStorage,
    ) -> Result<()>,
) -> Result<Storage> {
    let src_guard = src.storage();
    #[cfg(feature = "cuda")]
    if let Storage::Cuda(s) = &*src_guard {
        if s.dtype() != dtype || !dtype.is_float() {
            return Err(Error::DTypeMismatch {
                op,
                a: dtype,
                b: s.dtype(),
            });
        }
        let out = match base {
            // `src` is already locked: copy it rather than lock its storage twice.
            Some(b) if b.same_storage(src) => s.duplicate()?,
            Some(b) => match &*b.storage() {
                Storage::Cuda(c) => c.duplicate()?,
                other => {
                    return Err(Error::DeviceMismatch {
                        op,
                        a: other.device(),
                        b: src.device(),
                    })
                }
            },
            None => crate::cuda::CudaStorage::zeros(s.gpu(), zeros_len, dtype)?,
        };
        add_cuda(&out, s)?;
        return Ok(Storage::Cuda(out));
    }
    let src_c = src_guard
        .as_cpu()
        .ok_or_else(|| Error::invalid(op, "a device storage reached the host kernels"))?;
    let storage = match (dtype, src_c) {
        (DType::F32, CpuStorage::F32(s)) => {
            let mut out: Vec<f32> = start_from(base, zeros_len)?;
            add(&mut Target {
                out: &mut out,
                src: s,
            });
            CpuStorage::from(out)
        }
        (DType::F64, CpuStorage::F64(s)) => {
            let mut out: Vec<f64> = start_from(base, zeros_len)?;
            add(&mut Target {
                out: &mut out,
                src: s,
            });
            CpuStorage::from(out)
        }
        (a, s) => {
            return Err(Error::DTypeMismatch {
                op,
                a,
                b: s.dtype(),
            })
        }
    };
    Ok(Storage::Cpu(storage))
}

/// The accumulator an add starts from: a copy of `base`, or zeros.
fn start_from<T: Float + crate::Element>(base: Option<&Tensor>, len: usize) -> Result<Vec<T>> {
    match base {
        Some(b) => b.to_vec::<T>(),
        None => Ok(vec![T::zero(); len]),
    }
}

/// An output buffer and the source added into it, erased over f32/f64 so one closure can
/// drive either kernel instantiation.
trait AddInto {
    fn index_add(&mut self, v: AxisView, idx: &[i64]);
    fn scatter_add(
        &mut self,
        dims: &[usize],
        axis: usize,
        idx: &[i64],
        idx_dims: &[usize],
        src_dims: &[usize],
    );
}

struct Target<'a, T> {
    out: &'a mut [T],
    src: &'a [T],
}

impl<T: Float> AddInto for Target<'_, T> {
    fn index_add(&mut self, v: AxisView, idx: &[i64]) {
        cpu::index_add_into(self.out, v, idx, self.src);
    }
    fn scatter_add(
        &mut self,
        dims: &[usize],
        axis: usize,
        idx: &[i64],
        idx_dims: &[usize],
        src_dims: &[usize],
    ) {
        cpu::scatter_add_into(self.out, dims, axis, idx, idx_dims, self.src, src_dims);
    }
}

impl Tensor {
    /// The slices `indices[j]` along `axis`, in order: the output has the input's shape with
    /// that axis replaced by the number of indices. `indices` is a 1-D i64 tensor; repeats are
    /// allowed. The gradient adds each output slice back into the slice it came from.
    pub fn index_select(&self, axis: isize, indices: &Tensor) -> Result<Tensor> {
        let a = self.shape().axis("index_select", axis)?;
        if indices.rank() != 1 {
            return Err(Error::shape(
                "index_select",
                &[self.dims(), indices.dims()],
                "indices must be a 1-D tensor",
            ));
        }
        let idx = index_values("index_select", self, indices, self.dims()[a])?;
        let view = AxisView::new(self.dims(), a);
        let storage = map_any_dtype!(
            &*self.storage(),
            |v| cpu::index_select(v, view, idx.host()),
            |c| {
                let (arg, n) = idx.device("index_select")?;
                cuda::index_select(c, view, arg, n)
            }
        );
        let mut out_dims = self.dims().to_vec();
        out_dims[a] = indices.numel();
        let (in_dims, indices) = (self.dims().to_vec(), indices.clone());
        Ok(Tensor::from_op(
            "index_select",
            storage,
            out_dims,
            &[self],
            Box::new(move |g, _| {
                let zeros = Tensor::zeros(in_dims, g.dtype(), g.device())?;
                Ok(vec![Some(zeros.index_add(a as isize, &indices, g)?)])
            }),
        ))
    }

    /// `self` with `src`'s slices added along `axis`: `out[.., indices[j], ..] += src[.., j, ..]`.
    /// `src` has `self`'s shape with that axis replaced by the number of indices; repeated
    /// indices accumulate. Differentiable in `self` and `src`.
    pub fn index_add(&self, axis: isize, indices: &Tensor, src: &Tensor) -> Result<Tensor> {
        check_float("index_add", self)?;
        check_same("index_add", self, src)?;
        let a = self.shape().axis("index_add", axis)?;
        let mut want = self.dims().to_vec();
        want[a] = indices.numel();
        if indices.rank() != 1 || src.dims() != want.as_slice() {
            return Err(Error::shape(
                "index_add",
                &[self.dims(), indices.dims(), src.dims()],
                format!("indices must be 1-D and src of shape {want:?}"),
            ));
        }
        let idx = index_values("index_add", self, indices, self.dims()[a])?;
        let view = AxisView::new(self.dims(), a);
        let storage = add_into_storage(
            "index_add",
            Some(self),
            0,
            self.dtype(),
            src,
            |t| t.index_add(view, idx.host()),
            #[cfg(feature = "cuda")]
            |out, s| {
                let (arg, n) = idx.device("index_add")?;
                cuda::index_add_into(out, view, arg, n, s)
            },
        )?;
        let indices = indices.clone();
        let needs_src = src.requires_grad();
        Ok(Tensor::from_op(
            "index_add",
            storage,
            self.shape().clone(),
            &[self, src],
            Box::new(move |g, _| {
                let g_src = needs_src
                    .then(|| g.index_select(a as isize, &indices))
                    .transpose()?;
                Ok(vec![Some(g.clone()), g_src])
            }),
        ))
    }

    /// PyTorch `gather`: for every position `m` of `indices` (same rank as `self`, each
    /// dimension but `axis` no larger than `self`'s), `out[m] = self[m with m[axis] = indices[m]]`.
    /// The output has the shape of `indices`; the gradient is scatter-added back.
    pub fn gather(&self, axis: isize, indices: &Tensor) -> Result<Tensor> {
        let a = self.shape().axis("gather", axis)?;
        let fits = indices.rank() == self.rank()
            && (0..self.rank()).all(|d| d == a || indices.dims()[d] <= self.dims()[d]);
        if !fits {
            return Err(Error::shape(
                "gather",
                &[self.dims(), indices.dims()],
                format!(
                    "indices must have the input's rank and no dimension but {a} larger than the input's"
                ),
            ));
        }
        let idx = index_values("gather", self, indices, self.dims()[a])?;
        let idx_dims = indices.dims().to_vec();
        let storage = map_any_dtype!(
            &*self.storage(),
            |v| cpu::gather(v, self.dims(), a, idx.host(), &idx_dims),
            |c| {
                let (arg, _) = idx.device("gather")?;
                cuda::gather(c, self.dims(), a, arg, &idx_dims)
            }
        );
        let (in_dims, indices) = (self.dims().to_vec(), indices.clone());
        Ok(Tensor::from_op(
            "gather",
            storage,
            idx_dims,
            &[self],
            Box::new(move |g, _| {
                Ok(vec![Some(scatter_add_from(
                    None, &in_dims, a, &indices, g,
                )?)])
            }),
        ))
    }

    /// PyTorch `scatter_add`, returning a new tensor: `out = self`, then for every position `m`
    /// of `indices`, `out[m with m[axis] = indices[m]] += src[m]`. `self`, `indices` and `src`
    /// share a rank; `indices` is no larger than `src` in any dimension and no larger than
    /// `self` in any but `axis`. Differentiable in `self` (identity) and `src` (a gather).
    pub fn scatter_add(&self, axis: isize, indices: &Tensor, src: &Tensor) -> Result<Tensor> {
        check_float("scatter_add", self)?;
        check_same("scatter_add", self, src)?;
        let a = self.shape().axis("scatter_add", axis)?;
        let r = self.rank();
        let fits = indices.rank() == r
            && src.rank() == r
            && (0..r).all(|d| {
                indices.dims()[d] <= src.dims()[d]
                    && (d == a || indices.dims()[d] <= self.dims()[d])
            });
        if !fits {
            return Err(Error::shape(
                "scatter_add",
                &[self.dims(), indices.dims(), src.dims()],
                format!(
                    "input, indices and src must share a rank; indices no larger than src, nor than the input on dimensions but {a}"
                ),
            ));
        }
        let storage = scatter_storage(Some(self), self.dims(), a, indices, src)?;
        let (indices, src_dims) = (indices.clone(), src.dims().to_vec());
        let needs_src = src.requires_grad();
        Ok(Tensor::from_op(
            "scatter_add",
            storage,
            self.shape().clone(),
            &[self, src],
            Box::new(move |g, _| {
                let g_src = if needs_src {
                    // Positions of src beyond the index's extent were never read: zero gradient.
                    let gathered = g.gather(a as isize, &indices)?;
                    let pads: Vec<(usize, usize)> = src_dims
                        .iter()
                        .zip(indices.dims())
                        .map(|(&s, &i)| (0, s - i))
                        .collect();
                    Some(gathered.pad(&pads, 0.0)?)
                } else {
                    None
                };
                Ok(vec![Some(g.clone()), g_src])
            }),
        ))
    }
}

/// The scatter-add storage: `base` (or zeros of `dims`) with `src` scattered in. Shapes were
/// checked by the caller; the index values are checked here.
fn scatter_storage(
    base: Option<&Tensor>,
    dims: &[usize],
    axis: usize,
    indices: &Tensor,
    src: &Tensor,
) -> Result<Storage> {
    let idx = index_values("scatter_add", src, indices, dims[axis])?;
    let n: usize = dims.iter().product();
    let (idx_dims, src_dims) = (indices.dims(), src.dims());
    add_into_storage(
        "scatter_add",
        base,
        n,
        src.dtype(),
        src,
        |t| t.scatter_add(dims, axis, idx.host(), idx_dims, src_dims),
        #[cfg(feature = "cuda")]
        |out, s| {
            let (arg, _) = idx.device("scatter_add")?;
            cuda::scatter_add_into(out, dims, axis, arg, idx_dims, s, src_dims)
        },
    )
}

/// Zeros (or `base`) of shape `dims` with `src` scattered in, outside the graph (gather's
/// backward: `src` is the output gradient and has the index's shape).
fn scatter_add_from(
    base: Option<&Tensor>,
    dims: &[usize],
    axis: usize,
    indices: &Tensor,
    src: &Tensor,
) -> Result<Tensor> {
    let storage = scatter_storage(base, dims, axis, indices, src)?;
    Ok(Tensor::from_op_no_grad(storage, dims.to_vec()))
}
