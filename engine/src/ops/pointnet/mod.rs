//! Point-cloud operators of PointNet++, as free functions of this module (they take several
//! tensors of different roles, so they read better as functions than as `Tensor` methods):
//!
//! - [`farthest_point_sample`]: points (B, N, 3) -> (B, M) i64 indices.
//! - [`ball_query`]: points (B, N, 3), centres (B, M, 3) -> (B, M, nsample) i64 indices.
//! - [`group_points`]: features (B, C, N) gathered by indices (B, M, S) -> (B, C, M, S);
//!   differentiable in the features (the backward scatter-adds).
//! - [`neighbour_max_pool`]: (B, C, M, S) -> max over S, (B, C, M), and the i64 argmax;
//!   differentiable (the gradient goes to the argmax).
//!
//! Index outputs are never differentiable. Squared distances are computed as
//! `((dx*dx) + (dy*dy)) + (dz*dz)` with `dx = p.x - c.x`, each operation rounded once in the
//! input's dtype (no fused multiply-add, on the CPU or the GPU), so the CPU and CUDA kernels
//! return the same indices bit for bit.
//!
//! On CUDA, `group_points`'s backward adds with atomics (with repeated indices the last bits of
//! an f32 sum can differ from run to run); everything else is deterministic. Indices given to
//! `group_points` must lie in `0..N`: the CPU returns `Error::Index`; CUDA does not check on
//! the device (that would need a host sync): an out-of-range index reads 0 and its gradient is
//! dropped, unless `RCMCL_CUDA_CHECK_INDICES=1` (or
//! [`crate::ops::index::set_cuda_index_checks`]) makes it copy the indices to the host and
//! return the CPU's error.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::check_float;
use crate::storage::{CpuStorage, Storage};
use crate::{with_float, with_float2, DType, Error, Float, Result, Tensor};
use cpu::Group;

/// The (B, N) of a (B, N, 3) float point tensor, or a shape error naming the op.
fn points_dims(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize)> {
    check_float(op, t)?;
    match t.dims() {
        &[b, n, 3] => Ok((b, n)),
        d => Err(Error::shape(
            op,
            &[d],
            format!("{what} must have shape (B, N, 3)"),
        )),
    }
}

/// Indices and counts are i32 on the device; larger sizes are refused on both devices.
fn check_i32(op: &'static str, dims: &[usize], what: &str, v: usize) -> Result<()> {
    if v > i32::MAX as usize {
        return Err(Error::shape(
            op,
            &[dims],
            format!("{what} = {v} is above the supported {}", i32::MAX),
        ));
    }
    Ok(())
}

/// The device storage of a tensor already checked to be on a CUDA device.
#[cfg(feature = "cuda")]
fn cuda_of<'a>(op: &'static str, s: &'a Storage) -> Result<&'a crate::cuda::CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        other => Err(Error::invalid(
            op,
            format!("expected a CUDA tensor, got one on {}", other.device()),
        )),
    }
}

fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            a: a.device(),
            b: b.device(),
        });
    }
    Ok(())
}

/// Farthest point sampling: `m` indices per cloud of `points` (B, N, 3), returned as (B, M)
/// i64 (no gradient).
///
/// The first index is 0, or with `seed = Some(s)` the point `floor(u * N)` (clamped to N - 1)
/// where `u = engine::ops::dropout::dropout_uniform(s, b)` for cloud `b` (the same on every
/// device). Each later step picks the point whose minimum squared distance to the points
/// already picked is largest; ties go to the lowest index. There is no special case for points
/// near the origin. When fewer than `m` distinct points exist, once every distinct point is
/// taken all minimum distances are 0 and each further step picks the lowest index with distance
/// 0 (index 0 when no point has a NaN coordinate), so indices then repeat. Points with NaN
/// coordinates never lower a distance (a NaN comparison is false), the same on both devices.
/// `m > N` is an error; `m = 0` gives an empty (B, 0) tensor.
pub fn farthest_point_sample(points: &Tensor, m: usize, seed: Option<u64>) -> Result<Tensor> {
    const OP: &str = "farthest_point_sample";
    let (b, n) = points_dims(OP, "points", points)?;
    if m > n {
        return Err(Error::shape(
            OP,
            &[points.dims()],
            format!("cannot sample {m} points from clouds of {n}"),
        ));
    }
    check_i32(OP, points.dims(), "N", n)?;
    check_i32(OP, points.dims(), "M", m)?;
    let storage = match &*points.storage() {
        Storage::Cpu(c) => Storage::Cpu(CpuStorage::I64(with_float!(OP, c, |v| cpu::fps(
            v, b, n, m, seed
        ))?)),
        #[cfg(feature = "cuda")]
        Storage::Cuda(c) => Storage::Cuda(cuda::fps(c, b, n, m, seed)?),
    };
    Ok(Tensor::from_op_no_grad(storage, [b, m]))
}

/// `radius` squared in `T` (rounded once to `T`, then squared in `T`).
fn r2_of<T: Float>(_: &[T], radius: f64) -> T {
    let r = T::of(radius);
    r * r
}

/// Ball query: for each centre of `centres` (B, M, 3) the indices of up to `nsample` points of
/// `points` (B, N, 3) with squared distance `d2 < r2`, returned as (B, M, nsample) i64 (no
/// gradient). `r2` is `radius` rounded to the dtype, squared in the dtype; `d2` is computed as
/// the module docs say.
///
/// Hits are the first ones in scan order (increasing point index); when fewer than `nsample`
/// points are within the radius, the remaining slots repeat the first hit. A centre with no
/// point within the radius gets the index of its nearest point (lowest index on ties) in every
/// slot: when the centres are a subset of the points (the usual case) that is the centre
/// itself, for any radius > 0. `radius` must be finite and positive, `nsample >= 1`, N >= 1.
pub fn ball_query(
    points: &Tensor,
    centres: &Tensor,
    radius: f64,
    nsample: usize,
) -> Result<Tensor> {
    const OP: &str = "ball_query";
    let (b, n) = points_dims(OP, "points", points)?;
    let (bc, m) = points_dims(OP, "centres", centres)?;
    super::check_same(OP, points, centres)?;
    if bc != b || n == 0 {
        return Err(Error::shape(
            OP,
            &[points.dims(), centres.dims()],
            "points (B, N, 3) with N >= 1 and centres (B, M, 3) must share B",
        ));
    }
    if !(radius.is_finite() && radius > 0.0) || nsample == 0 {
        return Err(Error::invalid(
            OP,
            format!("radius must be finite and positive and nsample >= 1, got radius {radius}, nsample {nsample}"),
        ));
    }
    check_i32(OP, points.dims(), "N", n)?;
    check_i32(OP, centres.dims(), "nsample", nsample)?;
    let storage = match (&*points.storage(), &*centres.storage()) {
        (Storage::Cpu(p), Storage::Cpu(c)) => {
            Storage::Cpu(CpuStorage::I64(with_float2!(OP, p, c, |p, c| {
                cpu::ball_query(p, c, b, n, m, r2_of(p, radius), nsample)
            })?))
        }
        #[cfg(feature = "cuda")]
        (p, c) => Storage::Cuda(cuda::ball_query(
            cuda_of(OP, p)?,
            cuda_of(OP, c)?,
            b,
            n,
            m,
            radius,
            nsample,
        )?),
    };
    Ok(Tensor::from_op_no_grad(storage, [b, m, nsample]))
}

/// Checks a grouping's shapes: features (B, C, N) float, indices (B, M, S) i64, one device.
fn group_dims(op: &'static str, features: &Tensor, indices: &Tensor) -> Result<Group> {
    check_float(op, features)?;
    same_device(op, features, indices)?;
    if indices.dtype() != DType::I64 {
        return Err(Error::DType {
            op,
            got: indices.dtype(),
            msg: "indices must be an i64 tensor".into(),
        });
    }
    match (features.dims(), indices.dims()) {
        (&[b, c, n], &[bi, m, s]) if b == bi => {
            check_i32(op, features.dims(), "N", n)?;
            Ok(Group { b, c, n, m, s })
        }
        (f, i) => Err(Error::shape(
            op,
            &[f, i],
            "features must be (B, C, N) and indices (B, M, S) with the same B",
        )),
    }
}

/// Host index values checked to lie in `0..n` (the CPU kernels need them in range).
fn host_indices(op: &'static str, indices: &Tensor, n: usize) -> Result<Vec<i64>> {
    let values = indices.to_vec::<i64>()?;
    if let Some(&bad) = values.iter().find(|&&i| i < 0 || i as u64 >= n as u64) {
        return Err(Error::Index {
            op,
            index: bad,
            size: n,
        });
    }
    Ok(values)
}

/// On CUDA, the host-side index check when it is switched on (see the module docs).
#[cfg(feature = "cuda")]
fn maybe_check_device_indices(op: &'static str, indices: &Tensor, n: usize) -> Result<()> {
    if crate::ops::index::cuda::check_indices() {
        host_indices(op, &indices.to_device(crate::Device::Cpu)?, n)?;
    }
    Ok(())
}

/// Grouping: `out[b, c, m, s] = features[b, c, indices[b, m, s]]` for features (B, C, N) and
/// i64 indices (B, M, S) (typically from [`ball_query`]); the output is (B, C, M, S).
/// Differentiable in the features: the gradient scatter-adds back (repeated indices sum).
/// Out-of-range indices: see the module docs.
pub fn group_points(features: &Tensor, indices: &Tensor) -> Result<Tensor> {
    const OP: &str = "group_points";
    let g = group_dims(OP, features, indices)?;
    let storage = match &*features.storage() {
        Storage::Cpu(c) => {
            let idx = host_indices(OP, indices, g.n)?;
            Storage::Cpu(with_float!(OP, c, |v| CpuStorage::from(cpu::group(
                v, &idx, g
            )))?)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(c) => {
            maybe_check_device_indices(OP, indices, g.n)?;
            Storage::Cuda(cuda::group(c, cuda_of(OP, &indices.storage())?, g)?)
        }
    };
    let indices = indices.clone();
    Ok(Tensor::from_op(
        OP,
        storage,
        [g.b, g.c, g.m, g.s],
        &[features],
        Box::new(move |grad, _| Ok(vec![Some(group_points_grad(grad, &indices, g.n)?)])),
    ))
}

/// The backward of [`group_points`]: `grad` (B, C, M, S) scatter-added by `indices` (B, M, S)
/// into zeros of (B, C, N). Differentiable in `grad` (its backward is the grouping). On the
/// CPU each output row is summed in (m, s) order; on CUDA with atomics (see the module docs).
pub fn group_points_grad(grad: &Tensor, indices: &Tensor, n: usize) -> Result<Tensor> {
    const OP: &str = "group_points_grad";
    check_float(OP, grad)?;
    same_device(OP, grad, indices)?;
    let (b, c, m, s) = match (grad.dims(), indices.dims()) {
        (&[b, c, m, s], &[bi, mi, si]) if (b, m, s) == (bi, mi, si) => (b, c, m, s),
        (gd, id) => {
            return Err(Error::shape(
                OP,
                &[gd, id],
                "grad must be (B, C, M, S) and indices (B, M, S)",
            ))
        }
    };
    if indices.dtype() != DType::I64 {
        return Err(Error::DType {
            op: OP,
            got: indices.dtype(),
            msg: "indices must be an i64 tensor".into(),
        });
    }
    check_i32(OP, grad.dims(), "N", n)?;
    let g = Group { b, c, n, m, s };
    let storage = match &*grad.storage() {
        Storage::Cpu(cs) => {
            let idx = host_indices(OP, indices, n)?;
            Storage::Cpu(with_float!(OP, cs, |v| CpuStorage::from(cpu::group_grad(
                v, &idx, g
            )))?)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(cs) => {
            maybe_check_device_indices(OP, indices, n)?;
            Storage::Cuda(cuda::group_grad(cs, cuda_of(OP, &indices.storage())?, g)?)
        }
    };
    let indices = indices.clone();
    Ok(Tensor::from_op(
        OP,
        storage,
        [b, c, n],
        &[grad],
        Box::new(move |gg, _| Ok(vec![Some(group_points(gg, &indices)?)])),
    ))
}

/// Neighbourhood max-pool: `x` (B, C, M, S) -> (values (B, C, M), argmax (B, C, M) i64), the
/// maximum over the last axis and its position there. Ties go to the lowest position; a NaN
/// propagates (the first NaN of a row is its value and argmax). Differentiable in `x`: the
/// gradient of each output goes to its argmax (the backward has no second derivative).
pub fn neighbour_max_pool(x: &Tensor) -> Result<(Tensor, Tensor)> {
    const OP: &str = "neighbour_max_pool";
    check_float(OP, x)?;
    let (b, c, m, s) = match x.dims() {
        &[b, c, m, s] if s >= 1 => (b, c, m, s),
        d => {
            return Err(Error::shape(
                OP,
                &[d],
                "input must be (B, C, M, S) with S >= 1",
            ))
        }
    };
    check_i32(OP, x.dims(), "S", s)?;
    let rows = b * c * m;
    let (values, arg) = match &*x.storage() {
        Storage::Cpu(cs) => {
            let (v, a) = with_float!(OP, cs, |v| {
                let (o, a) = cpu::max_pool(v, rows, s);
                (CpuStorage::from(o), a)
            })?;
            (Storage::Cpu(v), Storage::Cpu(CpuStorage::I64(a)))
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(cs) => {
            let (v, a) = cuda::max_pool(cs, rows, s)?;
            (Storage::Cuda(v), Storage::Cuda(a))
        }
    };
    let arg = Tensor::from_op_no_grad(arg, [b, c, m]);
    let saved = arg.clone();
    let values = Tensor::from_op(
        OP,
        values,
        [b, c, m],
        &[x],
        Box::new(move |g, _| Ok(vec![Some(max_pool_grad(g, &saved, s)?)])),
    );
    Ok((values, arg))
}

/// The backward of [`neighbour_max_pool`]: zeros of (B, C, M, S) with `g[b, c, m]` at
/// `arg[b, c, m]` (no gradient of its own).
fn max_pool_grad(g: &Tensor, arg: &Tensor, s: usize) -> Result<Tensor> {
    const OP: &str = "neighbour_max_pool_grad";
    let mut dims = g.dims().to_vec();
    dims.push(s);
    let storage = match &*g.storage() {
        Storage::Cpu(cs) => {
            let a = arg.to_vec::<i64>()?;
            Storage::Cpu(with_float!(OP, cs, |v| CpuStorage::from(
                cpu::max_pool_grad(v, &a, s)
            ))?)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(cs) => {
            Storage::Cuda(cuda::max_pool_grad(cs, cuda_of(OP, &arg.storage())?, s)?)
        }
    };
    Ok(Tensor::from_op_no_grad(storage, dims))
}
