//! Graph aggregation: the spatial step of an ST-GCN layer.
//!
//! `x.graph_aggregate(a, mask)` takes `x` shaped `(N, K*C, T, V)` (the output of a 1x1
//! convolution with `K*C` channels: channel group `k` is `x_k`, shaped `(N, C, T, V)`) and an
//! adjacency stack `a` shaped `(K, V, V)` whose rows are sources, and returns `y` shaped
//! `(N, C, T, V)`:
//!
//! ```text
//! y[n,c,t,w] = sum_k sum_v x[n, k*C + c, t, v] * a[k, v, w]     (einsum 'nkctv,kvw->nctw')
//! ```
//!
//! Gradients flow to `x` and to `a` (learnable edge importance, adaptive adjacency):
//! `dx[n,kC+c,t,v] = sum_w dy[n,c,t,w] a[k,v,w]`, `da[k,v,w] = sum_{n,c,t} x[n,kC+c,t,v] dy[n,c,t,w]`.
//! Each is computed only when its input requires a gradient.
//!
//! **Mask.** `mask`, shaped `(V,)` with the input's dtype and device, marks real joints
//! (`mask[v] != 0`) and zero-padded ones (`mask[v] == 0`), so several skeleton conventions can
//! share a batch padded to a common `V`. A masked joint is removed from the graph: the op equals
//! the unmasked one applied to `x` with masked joints set to 0 and `a` with masked rows and
//! columns set to 0, with the outputs at masked joints set to 0. Masking is by selection, not
//! multiplication, so whatever the padded entries hold (even NaN or infinity) nothing leaks:
//! `y` at masked joints is exactly 0, `dx` at masked source joints is exactly 0, and `da` is
//! exactly 0 on every row and column of a masked joint. The mask receives no gradient.
//!
//! Limits: `1 <= V <= 64` joints (`MAX_JOINTS`; the CUDA kernels keep an adjacency tile and
//! a register row of up to 64 outputs), `K >= 1`, `K` divides the channel count. Both devices
//! enforce the same limits.
//!
//! The CPU reference (`cpu.rs`) is plain loops, in parallel over samples; the CUDA path
//! (`cuda.rs`, kernels/graph.cu) is described in docs/kernels.md.

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::check_same;
use crate::storage::{CpuStorage, Element, Storage};
use crate::{with_float2, Error, Result, Tensor};

/// The most joints the op supports (the CUDA kernels' tile width).
pub const MAX_JOINTS: usize = 64;

const OP: &str = "graph_aggregate";

/// The sizes of one graph aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub n: usize,
    pub k: usize,
    pub c: usize,
    pub t: usize,
    pub v: usize,
}

impl Dims {
    /// Checks the shapes of `x`, `a` and `mask` and returns the sizes, or an error naming the op
    /// and every shape.
    fn of(x: &Tensor, a: &Tensor, mask: Option<&Tensor>) -> Result<Dims> {
        let mut shapes = vec![x.dims(), a.dims()];
        if let Some(m) = mask {
            shapes.push(m.dims());
        }
        let err = |msg: String| Err(Error::shape(OP, &shapes, msg));
        if x.rank() != 4 {
            return err(format!(
                "x must be (N, K*C, T, V) (rank 4), got rank {}",
                x.rank()
            ));
        }
        if a.rank() != 3 || a.dims()[1] != a.dims()[2] {
            return err("the adjacency must be (K, V, V)".into());
        }
        let (k, v) = (a.dims()[0], a.dims()[1]);
        if k == 0 {
            return err("the adjacency stack must have at least one partition (K >= 1)".into());
        }
        if x.dims()[3] != v {
            return err(format!(
                "x has {} joints (last dim) but the adjacency is {v} x {v}",
                x.dims()[3]
            ));
        }
        if v == 0 || v > MAX_JOINTS {
            return err(format!(
                "the number of joints V must be between 1 and {MAX_JOINTS}, got {v}"
            ));
        }
        if x.dims()[1] % k != 0 {
            return err(format!(
                "x has {} channels, not a multiple of the {k} partitions of the adjacency",
                x.dims()[1]
            ));
        }
        if let Some(m) = mask {
            if m.dims() != [v] {
                return err(format!(
                    "the mask must have shape [{v}] (one entry per joint)"
                ));
            }
        }
        Ok(Dims {
            n: x.dims()[0],
            k,
            c: x.dims()[1] / k,
            t: x.dims()[2],
            v,
        })
    }
}

/// The typed elements of a CPU storage whose dtype the caller has already checked.
fn slice_of<T: Element>(s: &Storage) -> &[T] {
    let c = s.as_cpu().expect("the CPU path holds host storage");
    T::slice(c).expect("dtype checked before the kernel")
}

/// The device storage of a tensor already checked to be on the input's CUDA device.
#[cfg(feature = "cuda")]
fn cuda_of(s: &Storage) -> Result<&crate::cuda::CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        other => Err(Error::invalid(
            OP,
            format!("expected a CUDA tensor, got one on {}", other.device()),
        )),
    }
}

#[cfg(feature = "cuda")]
fn device_mismatch(a: &Storage, b: &Storage) -> Error {
    Error::DeviceMismatch {
        op: OP,
        a: a.device(),
        b: b.device(),
    }
}

/// Which kernel of the family to run on two float storages (plus the mask).
#[derive(Clone, Copy)]
enum Pass {
    /// `(x, a) -> y`
    Forward,
    /// `(dy, a) -> dx`
    GradInput,
    /// `(x, dy) -> da`
    GradAdjacency,
}

/// Runs `pass` on `p` and `q` (see `Pass`) on whichever device they live.
fn run(pass: Pass, p: &Tensor, q: &Tensor, mask: Option<&Tensor>, d: &Dims) -> Result<Storage> {
    check_same(OP, p, q)?;
    let (ps, qs) = (p.storage(), q.storage());
    let ms = mask.map(|m| m.storage());
    Ok(match (&*ps, &*qs) {
        (Storage::Cpu(pc), Storage::Cpu(qc)) => {
            Storage::Cpu(with_float2!(OP, pc, qc, |pv, qv| {
                let m = ms.as_deref().map(slice_of);
                CpuStorage::from(match pass {
                    Pass::Forward => cpu::forward(pv, qv, m, d),
                    Pass::GradInput => cpu::grad_input(pv, qv, m, d),
                    Pass::GradAdjacency => cpu::grad_adjacency(pv, qv, m, d),
                })
            })?)
        }
        #[cfg(feature = "cuda")]
        (Storage::Cuda(pc), Storage::Cuda(qc)) => {
            let m = ms.as_deref().map(cuda_of).transpose()?;
            Storage::Cuda(match pass {
                Pass::Forward => cuda::forward(pc, qc, m, d)?,
                Pass::GradInput => cuda::grad_input(pc, qc, m, d)?,
                Pass::GradAdjacency => cuda::grad_adjacency(pc, qc, m, d)?,
            })
        }
        #[cfg(feature = "cuda")]
        (a, b) => return Err(device_mismatch(a, b)),
    })
}

impl Tensor {
    /// Graph aggregation (the ST-GCN spatial step): `self` is `(N, K*C, T, V)`, `adjacency` is
    /// `(K, V, V)` (rows are sources), the optional `mask` is `(V,)` (nonzero: a real joint,
    /// zero: padding); returns `(N, C, T, V)` with
    /// `y[n,c,t,w] = sum_k sum_v x[n,kC+c,t,v] * adjacency[k,v,w]`. See the module docs for the
    /// mask's exact meaning. Differentiable with respect to `self` and `adjacency`.
    pub fn graph_aggregate(&self, adjacency: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        super::check_float(OP, self)?;
        check_same(OP, self, adjacency)?;
        if let Some(m) = mask {
            check_same(OP, self, m)?;
        }
        let d = Dims::of(self, adjacency, mask)?;
        let y = run(Pass::Forward, self, adjacency, mask, &d)?;
        let (x, a, m) = (self.clone(), adjacency.clone(), mask.map(Tensor::detach));
        Ok(Tensor::from_op(
            OP,
            y,
            [d.n, d.c, d.t, d.v],
            &[self, adjacency],
            Box::new(move |g, _| {
                check_same(OP, &x, g)?;
                let dx = if x.requires_grad() {
                    let s = run(Pass::GradInput, g, &a, m.as_ref(), &d)?;
                    Some(Tensor::from_op_no_grad(s, x.shape().clone()))
                } else {
                    None
                };
                let da = if a.requires_grad() {
                    let s = run(Pass::GradAdjacency, &x, g, m.as_ref(), &d)?;
                    Some(Tensor::from_op_no_grad(s, a.shape().clone()))
                } else {
                    None
                };
                Ok(vec![dx, da])
            }),
        ))
    }
}
