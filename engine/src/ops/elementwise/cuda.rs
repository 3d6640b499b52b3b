//! CUDA launches for this family (kernels/elementwise.cu).
//!
//! Same-shape maps go to kernels that stream 16 bytes per access; broadcasting maps first
//! coalesce the layout (drop size-1 dimensions, merge dimensions every input walks contiguously)
//! and pass the remaining dimensions and strides (at most 8) as kernel arguments.

use super::{BinaryOp, UnaryOp};
use crate::cuda::{Arg, CudaStorage};
use crate::shape::broadcast_strides;
use crate::{Error, Result};

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "unary_f32",
    "unary_f64",
    "unary_grad_f32",
    "unary_grad_f64",
    "binary_f32",
    "binary_f64",
    "binary_bcast_f32",
    "binary_bcast_f64",
    "where_f32",
    "where_f64",
    "where_bcast_f32",
    "where_bcast_f64",
];

/// The most dimensions a broadcasting kernel takes (after coalescing).
const MAX_DIMS: usize = 8;

/// The kernel's op code and its two parameters (`UnaryCode` in elementwise.cu).
fn unary_code(op: UnaryOp) -> (i32, f64, f64) {
    match op {
        UnaryOp::Neg => (0, 0.0, 0.0),
        UnaryOp::Exp => (1, 0.0, 0.0),
        UnaryOp::Log => (2, 0.0, 0.0),
        UnaryOp::Sqrt => (3, 0.0, 0.0),
        UnaryOp::Abs => (4, 0.0, 0.0),
        UnaryOp::Relu => (5, 0.0, 0.0),
        UnaryOp::LeakyRelu(s) => (6, s, 0.0),
        UnaryOp::Gelu => (7, 0.0, 0.0),
        UnaryOp::Sigmoid => (8, 0.0, 0.0),
        UnaryOp::Tanh => (9, 0.0, 0.0),
        UnaryOp::Softplus => (10, 0.0, 0.0),
        // The backward also needs p - 1, rounded from f64 as the CPU does.
        UnaryOp::Powf(p) => (11, p, p - 1.0),
        UnaryOp::AddScalar(s) => (12, s, 0.0),
        UnaryOp::MulScalar(s) => (13, s, 0.0),
        UnaryOp::Clamp(lo, hi) => (14, lo, hi),
    }
}

/// `BinaryCode` in elementwise.cu.
fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Maximum => 4,
        BinaryOp::Minimum => 5,
        BinaryOp::Gt => 6,
        BinaryOp::Ge => 7,
        BinaryOp::Lt => 8,
        BinaryOp::Le => 9,
        BinaryOp::Eq => 10,
        BinaryOp::Ne => 11,
    }
}

/// A float dtype shared by every storage, or the error the CPU path gives.
fn check_dtypes(op: &'static str, storages: &[&CudaStorage]) -> Result<()> {
    let first = storages[0].dtype();
    if !first.is_float() {
        return Err(Error::DType {
            op,
            got: first,
            msg: "expected a floating-point tensor".into(),
        });
    }
    if let Some(other) = storages.iter().find(|s| s.dtype() != first) {
        return Err(Error::DTypeMismatch {
            op,
            a: first,
            b: other.dtype(),
        });
    }
    Ok(())
}

fn f(x: f64) -> Arg {
    Arg::F64(x)
}

pub(crate) fn unary(op: UnaryOp, x: &CudaStorage) -> Result<CudaStorage> {
    check_dtypes(op.name(), &[x])?;
    let gpu = x.gpu().clone();
    let n = x.len();
    let out = CudaStorage::alloc(&gpu, n, x.dtype())?;
    if n > 0 {
        let (code, p0, p1) = unary_code(op);
        gpu.launch(
            "elementwise",
            &x.kernel("unary"),
            gpu.grid_for(n.div_ceil(pack(x))),
            &[
                x.arg(),
                out.arg(),
                Arg::I64(n as i64),
                Arg::I32(code),
                f(p0),
                f(p1),
            ],
        )?;
    }
    Ok(out)
}

/// `g * f'(x, y)` for the unary op that made `y` from `x`.
pub(crate) fn unary_grad(
    op: UnaryOp,
    x: &CudaStorage,
    y: &CudaStorage,
    g: &CudaStorage,
) -> Result<CudaStorage> {
    check_dtypes(op.name(), &[x, y, g])?;
    let n = x.len();
    if y.len() != n || g.len() != n {
        return Err(Error::invalid(
            op.name(),
            format!(
                "the backward needs equal sizes: input {n}, output {}, gradient {}",
                y.len(),
                g.len()
            ),
        ));
    }
    let gpu = x.gpu().clone();
    let out = CudaStorage::alloc(&gpu, n, x.dtype())?;
    if n > 0 {
        // The CPU's rule for x^0 is g * 0 (NaN for a NaN g): exactly MulScalar(0)'s.
        let op = if op == UnaryOp::Powf(0.0) {
            UnaryOp::MulScalar(0.0)
        } else {
            op
        };
        let (code, p0, p1) = unary_code(op);
        gpu.launch(
            "elementwise",
            &x.kernel("unary_grad"),
            gpu.grid_for(n.div_ceil(pack(x))),
            &[
                x.arg(),
                y.arg(),
                g.arg(),
                out.arg(),
                Arg::I64(n as i64),
                Arg::I32(code),
                f(p0),
                f(p1),
            ],
        )?;
    }
    Ok(out)
}

/// Elements per 16-byte access, for sizing the grid of a vectorised kernel.
fn pack(s: &CudaStorage) -> usize {
    16 / s.dtype().size_in_bytes()
}

/// An output layout with the strides of `K` inputs over it, coalesced: size-1 dimensions dropped
/// and neighbouring dimensions merged where every input steps through them as one (contiguous,
/// or broadcast along both). Never empty: a single element is one dimension of size 1.
#[derive(Debug, PartialEq)]
struct Layout<const K: usize> {
    dims: Vec<usize>,
    strides: [Vec<usize>; K],
}

impl<const K: usize> Layout<K> {
    fn new(out_dims: &[usize], inputs: [&[usize]; K]) -> Layout<K> {
        let full: [Vec<usize>; K] = inputs.map(|d| broadcast_strides(d, out_dims));
        let mut dims: Vec<usize> = Vec::new();
        let mut strides: [Vec<usize>; K] = std::array::from_fn(|_| Vec::new());
        for (k, &d) in out_dims.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let mergeable = !dims.is_empty()
                && (0..K)
                    .all(|j| *strides[j].last().expect("same length as dims") == full[j][k] * d);
            if mergeable {
                *dims.last_mut().expect("checked non-empty") *= d;
                for j in 0..K {
                    *strides[j].last_mut().expect("same length as dims") = full[j][k];
                }
            } else {
                dims.push(d);
                for j in 0..K {
                    strides[j].push(full[j][k]);
                }
            }
        }
        if dims.is_empty() {
            dims.push(1);
            for s in &mut strides {
                s.push(0);
            }
        }
        Layout { dims, strides }
    }

    /// Every input walks the output in order: the flat same-shape kernel applies.
    fn is_flat(&self) -> bool {
        self.dims.len() == 1 && self.strides.iter().all(|s| s[0] == 1 || self.dims[0] == 1)
    }

    /// The kernel arguments: rank, 8 dimensions, then 8 strides per input (padding unread).
    fn args(&self, op: &'static str) -> Result<Vec<Arg>> {
        let rank = self.dims.len();
        if rank > MAX_DIMS {
            return Err(Error::invalid(
                op,
                format!(
                    "broadcasting on CUDA handles at most {MAX_DIMS} dimensions after merging contiguous ones; this layout needs {rank} ({:?})",
                    self.dims
                ),
            ));
        }
        let mut args = vec![Arg::I32(rank as i32)];
        let pad = |v: &[usize], fill: i64, args: &mut Vec<Arg>| {
            args.extend((0..MAX_DIMS).map(|k| Arg::I64(v.get(k).map_or(fill, |&x| x as i64))));
        };
        pad(&self.dims, 1, &mut args);
        for s in &self.strides {
            pad(s, 0, &mut args);
        }
        Ok(args)
    }
}

/// `op(a, b)` with both broadcast to `out_dims`.
pub(crate) fn binary(
    op: BinaryOp,
    a: &CudaStorage,
    a_dims: &[usize],
    b: &CudaStorage,
    b_dims: &[usize],
    out_dims: &[usize],
) -> Result<CudaStorage> {
    check_dtypes(op.name(), &[a, b])?;
    let gpu = a.gpu().clone();
    let n: usize = out_dims.iter().product();
    let out = CudaStorage::alloc(&gpu, n, a.dtype())?;
    if n == 0 {
        return Ok(out);
    }
    let code = Arg::I32(binary_code(op));
    let layout = Layout::new(out_dims, [a_dims, b_dims]);
    if layout.is_flat() {
        let cfg = gpu.grid_for(n.div_ceil(pack(a)));
        let args = [a.arg(), b.arg(), out.arg(), Arg::I64(n as i64), code];
        gpu.launch("elementwise", &a.kernel("binary"), cfg, &args)?;
    } else {
        let mut args = vec![a.arg(), b.arg(), out.arg(), Arg::I64(n as i64), code];
        args.extend(layout.args(op.name())?);
        gpu.launch(
            "elementwise",
            &a.kernel("binary_bcast"),
            gpu.grid_for(n),
            &args,
        )?;
    }
    Ok(out)
}

/// `cond != 0 ? a : b`, all three broadcast to `out_dims` (`cond` already has the dtype of `a`).
pub(crate) fn select(
    (cond, cond_dims): (&CudaStorage, &[usize]),
    (a, a_dims): (&CudaStorage, &[usize]),
    (b, b_dims): (&CudaStorage, &[usize]),
    out_dims: &[usize],
) -> Result<CudaStorage> {
    check_dtypes("where", &[a, b, cond])?;
    let gpu = a.gpu().clone();
    let n: usize = out_dims.iter().product();
    let out = CudaStorage::alloc(&gpu, n, a.dtype())?;
    if n == 0 {
        return Ok(out);
    }
    let layout = Layout::new(out_dims, [cond_dims, a_dims, b_dims]);
    let mut args = vec![cond.arg(), a.arg(), b.arg(), out.arg(), Arg::I64(n as i64)];
    if layout.is_flat() {
        let cfg = gpu.grid_for(n.div_ceil(pack(a)));
        gpu.launch("elementwise", &a.kernel("where"), cfg, &args)?;
    } else {
        args.extend(layout.args("where")?);
        gpu.launch(
            "elementwise",
            &a.kernel("where_bcast"),
            gpu.grid_for(n),
            &args,
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_coalesce_contiguous_and_broadcast_runs() {
        // Same shapes: one flat dimension.
        let l = Layout::new(&[2, 3, 4], [&[2, 3, 4], &[2, 3, 4]]);
        assert_eq!(l.dims, vec![24]);
        assert!(l.is_flat());
        // A leading size-1 dimension changes nothing.
        assert!(Layout::new(&[1, 3, 4], [&[3, 4], &[1, 3, 4]]).is_flat());
        // A bias over the last dimension: rows times columns, the bias repeating per row.
        let l = Layout::new(&[5, 6, 7], [&[5, 6, 7], &[7]]);
        assert_eq!(l.dims, vec![30, 7]);
        assert_eq!(l.strides, [vec![7, 1], vec![0, 1]]);
        assert!(!l.is_flat());
        // [N, 1] against [1, M].
        let l = Layout::new(&[3, 4], [&[3, 1], &[1, 4]]);
        assert_eq!(
            (l.dims.clone(), l.strides.clone()),
            (vec![3, 4], [vec![1, 0], vec![0, 1]])
        );
        // A scalar against a tensor: rank 1, stride 0 for the scalar.
        let l = Layout::new(&[2, 3], [&[], &[2, 3]]);
        assert_eq!(
            (l.dims.clone(), l.strides.clone()),
            (vec![6], [vec![0], vec![1]])
        );
        assert!(!l.is_flat());
        // One element: one dimension of size 1, flat.
        let l = Layout::new(&[1, 1], [&[1], &[1, 1]]);
        assert_eq!(l.dims, vec![1]);
        assert!(l.is_flat());
        // Broadcast along a middle dimension keeps three runs.
        let l = Layout::new(&[2, 3, 4, 5], [&[2, 1, 4, 5], &[2, 3, 4, 5]]);
        assert_eq!(l.dims, vec![2, 3, 20]);
        assert_eq!(l.strides, [vec![20, 0, 1], vec![60, 20, 1]]);
    }

    #[test]
    fn layouts_beyond_eight_dimensions_are_refused_with_a_clear_error() {
        // Alternating broadcast dimensions cannot merge.
        let out = [2usize; 10];
        let a: Vec<usize> = (0..10).map(|k| if k % 2 == 0 { 2 } else { 1 }).collect();
        let b: Vec<usize> = (0..10).map(|k| if k % 2 == 0 { 1 } else { 2 }).collect();
        let l = Layout::new(&out, [&a, &b]);
        assert_eq!(l.dims.len(), 10);
        let e = l.args("add").unwrap_err().to_string();
        assert!(e.contains("at most 8 dimensions"), "{e}");
        let l = Layout::new(&[2, 2], [&[2, 1], &[1, 2]]);
        assert_eq!(l.args("add").unwrap().len(), 1 + 8 * 3);
    }
}
