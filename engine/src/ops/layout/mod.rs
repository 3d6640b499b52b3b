//! Layout ops: reshape (shares storage), broadcast_to, and the copies that rearrange elements
//! (permute/transpose, narrow, concat, stack, pad).

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::check_same;
use super::elementwise::cpu as ew;
use crate::shape::{broadcast_shapes, normalize_axis};
use crate::storage::{CpuStorage, Storage};
use crate::{with_float, Error, Result, Shape, Tensor};

/// For kernels that only move elements: on a CPU storage of any dtype, runs `$body` with `$v`
/// bound to the typed elements and wraps the `Vec` it returns in a storage of the same dtype; on a
/// CUDA storage, runs `$cuda` (a `Result<CudaStorage>`) with `$c` bound to the `&CudaStorage`.
/// Errors from the CUDA body return from the enclosing function.
macro_rules! map_any_dtype {
    ($storage:expr, |$v:ident| $body:expr, |$c:ident| $cuda:expr) => {
        match $storage {
            $crate::storage::Storage::Cpu(c) => $crate::storage::Storage::Cpu(match c {
                $crate::storage::CpuStorage::F32($v) => $crate::storage::CpuStorage::from($body),
                $crate::storage::CpuStorage::F64($v) => $crate::storage::CpuStorage::from($body),
                $crate::storage::CpuStorage::I64($v) => $crate::storage::CpuStorage::from($body),
            }),
            #[cfg(feature = "cuda")]
            $crate::storage::Storage::Cuda($c) => $crate::storage::Storage::Cuda($cuda?),
        }
    };
}
pub(crate) use map_any_dtype;

impl Tensor {
    /// The same elements under another shape of equal size; shares storage (no copy).
    /// `reshape_infer` takes -1 for one inferred dimension.
    pub fn reshape(&self, dims: impl Into<Shape>) -> Result<Tensor> {
        let shape = dims.into();
        if shape.numel() != self.numel() {
            return Err(Error::shape(
                "reshape",
                &[self.dims(), shape.dims()],
                format!(
                    "cannot reshape {} elements into {} elements",
                    self.numel(),
                    shape.numel()
                ),
            ));
        }
        if shape == *self.shape() {
            return Ok(self.clone());
        }
        let in_dims = self.dims().to_vec();
        Ok(self.share_storage(
            shape,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.reshape(in_dims)?)])),
        ))
    }

    /// Reshape where one entry may be -1, inferred from the element count.
    pub fn reshape_infer(&self, dims: &[isize]) -> Result<Tensor> {
        let known: usize = dims
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .product();
        let inferred = dims.iter().filter(|&&d| d < 0).count();
        let bad = || {
            Error::shape(
                "reshape",
                &[self.dims()],
                format!("cannot reshape {} elements into {dims:?}", self.numel()),
            )
        };
        if inferred > 1 || dims.iter().any(|&d| d < -1) {
            return Err(bad());
        }
        let out: Vec<usize> = if inferred == 1 {
            if known == 0 || self.numel() % known != 0 {
                return Err(bad());
            }
            dims.iter()
                .map(|&d| {
                    if d < 0 {
                        self.numel() / known
                    } else {
                        d as usize
                    }
                })
                .collect()
        } else {
            dims.iter().map(|&d| d as usize).collect()
        };
        self.reshape(out)
    }

    /// Flattens dimensions `start..` into one.
    pub fn flatten_from(&self, start: isize) -> Result<Tensor> {
        let s = self.shape().axis("flatten", start)?;
        let mut dims = self.dims()[..s].to_vec();
        dims.push(self.dims()[s..].iter().product());
        self.reshape(dims)
    }

    /// A copy broadcast (NumPy rules) to `dims`; the gradient is summed back.
    pub fn broadcast_to(&self, dims: &[usize]) -> Result<Tensor> {
        let out = broadcast_shapes("broadcast_to", self.dims(), dims)?;
        if out != dims {
            return Err(Error::shape(
                "broadcast_to",
                &[self.dims(), dims],
                "the tensor does not broadcast to the target",
            ));
        }
        if self.dims() == dims {
            return Ok(self.clone());
        }
        let storage = match &*self.storage() {
            Storage::Cpu(c) => Storage::Cpu(with_float!("broadcast_to", c, |v| {
                let d = self.dims();
                CpuStorage::from(ew::broadcast_map3(
                    [(v, d), (v, d), (v, d)],
                    dims,
                    |x, _, _| x,
                ))
            })?),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Storage::Cuda(cuda::broadcast(c, self.dims(), dims)?),
        };
        let in_dims = self.dims().to_vec();
        Ok(Tensor::from_op(
            "broadcast_to",
            storage,
            dims.to_vec(),
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.sum_to(&in_dims)?)])),
        ))
    }
}

/// The elements of each tensor in `guards` as `T` slices, paired with their concat runs.
fn typed_runs<'a, T: crate::Element>(
    guards: &'a [std::sync::RwLockReadGuard<'_, Storage>],
    which: &[usize],
    runs: &[usize],
) -> Vec<(&'a [T], usize)> {
    which
        .iter()
        .zip(runs)
        .map(|(&g, &run)| {
            let c = guards[g].as_cpu().expect("the CPU path holds host storage");
            (T::slice(c).expect("dtypes were checked"), run)
        })
        .collect()
}

impl Tensor {
    /// A copy with the axes reordered: output axis `i` is input axis `perm[i]`.
    /// The gradient is permuted back by the inverse permutation.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        let valid = perm.len() == rank
            && perm
                .iter()
                .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(Error::shape(
                "permute",
                &[self.dims()],
                format!("{perm:?} is not a permutation of the tensor's {rank} axes"),
            ));
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(self.clone());
        }
        let storage = map_any_dtype!(
            &*self.storage(),
            |v| cpu::permute(v, self.dims(), perm),
            |c| cuda::permute(c, self.dims(), perm)
        );
        let out_dims: Vec<usize> = perm.iter().map(|&p| self.dims()[p]).collect();
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(Tensor::from_op(
            "permute",
            storage,
            out_dims,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.permute(&inverse)?)])),
        ))
    }

    /// A copy with axes `a` and `b` swapped.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let a = self.shape().axis("transpose", a)?;
        let b = self.shape().axis("transpose", b)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// The matrix transpose: swaps the last two axes (a batch of matrices is transposed each).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::shape(
                "t",
                &[self.dims()],
                "the transpose needs at least 2 dimensions",
            ));
        }
        self.transpose(-2, -1)
    }

    /// The slice `start .. start + len` along `axis` (a copy). The gradient is padded with zeros
    /// back to the input's shape.
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let a = self.shape().axis("narrow", axis)?;
        let size = self.dims()[a];
        let in_range = matches!(start.checked_add(len), Some(end) if end <= size);
        if !in_range {
            return Err(Error::shape(
                "narrow",
                &[self.dims()],
                format!(
                    "range {start}..{} is outside dimension {a} of size {size}",
                    start.saturating_add(len)
                ),
            ));
        }
        if start == 0 && len == size {
            return Ok(self.clone());
        }
        let mut starts = vec![0; self.rank()];
        starts[a] = start;
        let mut out_dims = self.dims().to_vec();
        out_dims[a] = len;
        self.crop(starts, out_dims)
    }

    /// The box `starts[k] .. starts[k] + out_dims[k]` (checked by the caller); backward pads.
    fn crop(&self, starts: Vec<usize>, out_dims: Vec<usize>) -> Result<Tensor> {
        let storage = map_any_dtype!(
            &*self.storage(),
            |v| cpu::crop(v, self.dims(), &starts, &out_dims),
            |c| cuda::crop(c, self.dims(), &starts, &out_dims)
        );
        let pads: Vec<(usize, usize)> = starts
            .iter()
            .zip(&out_dims)
            .zip(self.dims())
            .map(|((&s, &n), &d)| (s, d - s - n))
            .collect();
        Ok(Tensor::from_op(
            "narrow",
            storage,
            out_dims,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.pad(&pads, 0.0)?)])),
        ))
    }

    /// Constant padding: `pads[k] = (before, after)` elements of `value` around dimension `k`.
    /// `pads` has one entry per dimension, first dimension first (unlike PyTorch's `F.pad`,
    /// which lists the last dimension first). The gradient is the unpadded region of the
    /// output gradient.
    pub fn pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor> {
        if pads.len() != self.rank() {
            return Err(Error::shape(
                "pad",
                &[self.dims()],
                format!(
                    "{} (before, after) pairs given for a tensor of rank {}",
                    pads.len(),
                    self.rank()
                ),
            ));
        }
        if pads.iter().all(|&p| p == (0, 0)) {
            return Ok(self.clone());
        }
        let dims = self.dims();
        let storage = match &*self.storage() {
            Storage::Cpu(c) => Storage::Cpu(match c {
                CpuStorage::F32(v) => CpuStorage::from(cpu::pad(v, dims, pads, value as f32)),
                CpuStorage::F64(v) => CpuStorage::from(cpu::pad(v, dims, pads, value)),
                CpuStorage::I64(v) => CpuStorage::from(cpu::pad(v, dims, pads, value as i64)),
            }),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Storage::Cuda(cuda::pad(c, dims, pads, value)?),
        };
        let out_dims: Vec<usize> = dims
            .iter()
            .zip(pads)
            .map(|(d, (lo, hi))| lo + d + hi)
            .collect();
        let starts: Vec<usize> = pads.iter().map(|p| p.0).collect();
        let in_dims = dims.to_vec();
        Ok(Tensor::from_op(
            "pad",
            storage,
            out_dims,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.crop(starts, in_dims)?)])),
        ))
    }

    /// A new axis of size 1 at `axis` (in `-(rank + 1) ..= rank`); shares storage.
    pub fn unsqueeze(&self, axis: isize) -> Result<Tensor> {
        let a = normalize_axis("unsqueeze", axis, self.rank() + 1)?;
        let mut dims = self.dims().to_vec();
        dims.insert(a, 1);
        self.reshape(dims)
    }

    /// Removes the axis `axis`, which must have size 1; shares storage.
    pub fn squeeze(&self, axis: isize) -> Result<Tensor> {
        let a = self.shape().axis("squeeze", axis)?;
        if self.dims()[a] != 1 {
            return Err(Error::shape(
                "squeeze",
                &[self.dims()],
                format!("dimension {a} has size {}, not 1", self.dims()[a]),
            ));
        }
        let mut dims = self.dims().to_vec();
        dims.remove(a);
        self.reshape(dims)
    }

    /// Joins tensors along an existing `axis`; all other dimensions must agree. The gradient of
    /// each input is its slice of the output gradient.
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        let Some(&first) = tensors.first() else {
            return Err(Error::invalid("concat", "no tensors given"));
        };
        if first.rank() == 0 {
            return Err(Error::shape(
                "concat",
                &[first.dims()],
                "0-dimensional tensors have no axis to join along",
            ));
        }
        let a = first.shape().axis("concat", axis)?;
        let mismatch = |t: &Tensor| {
            t.rank() != first.rank()
                || t.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .any(|(i, (x, y))| i != a && x != y)
        };
        for &t in tensors {
            check_same("concat", first, t)?;
            if mismatch(t) {
                let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.dims()).collect();
                return Err(Error::shape(
                    "concat",
                    &shapes,
                    format!("shapes must agree on every dimension but {a}"),
                ));
            }
        }
        if tensors.len() == 1 {
            return Ok(first.clone());
        }
        let outer: usize = first.dims()[..a].iter().product();
        let inner: usize = first.dims()[a + 1..].iter().product();
        let sizes: Vec<usize> = tensors.iter().map(|t| t.dims()[a]).collect();
        let runs: Vec<usize> = sizes.iter().map(|s| s * inner).collect();
        // One read lock per distinct storage: a tensor may appear more than once.
        let mut owners: Vec<&Tensor> = Vec::new();
        let which: Vec<usize> = tensors
            .iter()
            .map(|&t| match owners.iter().position(|o| o.same_storage(t)) {
                Some(i) => i,
                None => {
                    owners.push(t);
                    owners.len() - 1
                }
            })
            .collect();
        let guards: Vec<_> = owners.iter().map(|t| t.storage()).collect();
        let storage = match &*guards[0] {
            Storage::Cpu(_) => Storage::Cpu(match first.dtype() {
                crate::DType::F32 => CpuStorage::from(cpu::concat(
                    &typed_runs::<f32>(&guards, &which, &runs),
                    outer,
                )),
                crate::DType::F64 => CpuStorage::from(cpu::concat(
                    &typed_runs::<f64>(&guards, &which, &runs),
                    outer,
                )),
                crate::DType::I64 => CpuStorage::from(cpu::concat(
                    &typed_runs::<i64>(&guards, &which, &runs),
                    outer,
                )),
            }),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => {
                let inputs = which
                    .iter()
                    .zip(&runs)
                    .map(|(&g, &run)| match &*guards[g] {
                        Storage::Cuda(c) => Ok((c, run)),
                        other => Err(Error::DeviceMismatch {
                            op: "concat",
                            a: first.device(),
                            b: other.device(),
                        }),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Storage::Cuda(cuda::concat(&inputs, outer)?)
            }
        };
        drop(guards);
        let mut out_dims = first.dims().to_vec();
        out_dims[a] = sizes.iter().sum();
        let needs: Vec<bool> = tensors.iter().map(|t| t.requires_grad()).collect();
        Ok(Tensor::from_op(
            "concat",
            storage,
            out_dims,
            tensors,
            Box::new(move |g, _| {
                let mut start = 0;
                let mut grads = Vec::with_capacity(sizes.len());
                for (&size, &need) in sizes.iter().zip(&needs) {
                    grads.push(
                        need.then(|| g.narrow(a as isize, start, size))
                            .transpose()?,
                    );
                    start += size;
                }
                Ok(grads)
            }),
        ))
    }

    /// Joins tensors of one shape along a new axis `axis` (in `-(rank + 1) ..= rank`).
    pub fn stack(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        let Some(&first) = tensors.first() else {
            return Err(Error::invalid("stack", "no tensors given"));
        };
        let a = normalize_axis("stack", axis, first.rank() + 1)?;
        if tensors.iter().any(|t| t.dims() != first.dims()) {
            let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.dims()).collect();
            return Err(Error::shape(
                "stack",
                &shapes,
                "stacked tensors must have the same shape",
            ));
        }
        let expanded = tensors
            .iter()
            .map(|t| t.unsqueeze(a as isize))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = expanded.iter().collect();
        Tensor::concat(&refs, a as isize)
    }
}
