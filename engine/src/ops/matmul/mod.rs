//! Matrix products: `matmul` (NumPy batch broadcasting), `matmul_transposed` (either operand
//! read transposed, without a copy) and `linear` (`x @ w^T + b`, nn.Linear's forward). All
//! forward and backward products go through `product`, the one seam a GPU backend replaces.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::{check_float, check_same};
use crate::shape::{broadcast_shapes, broadcast_strides};
use crate::storage::{CpuStorage, Storage};
use crate::{with_float2, Element, Error, Float, Result, Tensor};

/// The batch of products `op(a) @ op(b)` for operands of these shapes, and the output shape.
fn plan(
    op: &'static str,
    a: &[usize],
    b: &[usize],
    trans_a: bool,
    trans_b: bool,
) -> Result<(cpu::Batched, Vec<usize>)> {
    if a.len() < 2 || b.len() < 2 {
        return Err(Error::shape(
            op,
            &[a, b],
            "both operands need at least 2 dimensions",
        ));
    }
    let (ra, rb) = (a.len(), b.len());
    let (m, ka) = if trans_a {
        (a[ra - 1], a[ra - 2])
    } else {
        (a[ra - 2], a[ra - 1])
    };
    let (kb, n) = if trans_b {
        (b[rb - 1], b[rb - 2])
    } else {
        (b[rb - 2], b[rb - 1])
    };
    if ka != kb {
        return Err(Error::shape(
            op,
            &[a, b],
            format!("inner dimensions differ: {ka} vs {kb}"),
        ));
    }
    let (a_batch, b_batch) = (&a[..ra - 2], &b[..rb - 2]);
    let batch = broadcast_shapes(op, a_batch, b_batch)
        .map_err(|_| Error::shape(op, &[a, b], "batch dimensions do not broadcast"))?;
    let count: usize = batch.iter().product();
    let mut out_dims = batch.clone();
    out_dims.extend([m, n]);
    let k = ka;
    let b_count: usize = b_batch.iter().product();
    if b_count == 1 && !trans_a {
        // One right operand for the whole batch: the left matrices are consecutive rows of
        // one (count * m) x k matrix, so the batch is a single product.
        let p = cpu::Batched {
            m: count * m,
            n,
            k,
            trans_a,
            trans_b,
            a_offsets: vec![0],
            b_offsets: vec![0],
        };
        return Ok((p, out_dims));
    }
    let offsets = |own: &[usize], size: usize| -> Vec<usize> {
        let strides = broadcast_strides(own, &batch);
        let mut offs = vec![0usize; count];
        for (i, off) in offs.iter_mut().enumerate() {
            let mut rem = i;
            for (&d, &s) in batch.iter().zip(&strides).rev() {
                *off += (rem % d) * s * size;
                rem /= d;
            }
        }
        offs
    };
    let p = cpu::Batched {
        m,
        n,
        k,
        trans_a,
        trans_b,
        a_offsets: offsets(a_batch, m * k),
        b_offsets: offsets(b_batch, k * n),
    };
    Ok((p, out_dims))
}

/// `op(a) @ op(b)` outside the graph: the forward kernel of the family and every backward
/// product.
fn product(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    let (storage, out_dims) = product_storage(a, b, trans_a, trans_b)?;
    Ok(Tensor::from_op_no_grad(storage, out_dims))
}

fn product_storage(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<(Storage, Vec<usize>)> {
    check_float("matmul", a)?;
    check_same("matmul", a, b)?;
    let (p, out_dims) = plan("matmul", a.dims(), b.dims(), trans_a, trans_b)?;
    let storage = match (&*a.storage(), &*b.storage()) {
        (Storage::Cpu(x), Storage::Cpu(y)) => {
            Storage::Cpu(with_float2!("matmul", x, y, |x, y| CpuStorage::from(
                cpu::batched(x, y, &p)
            ))?)
        }
        #[cfg(feature = "cuda")]
        (Storage::Cuda(x), Storage::Cuda(y)) => Storage::Cuda(cuda::batched(x, y, &p)?),
        #[cfg(feature = "cuda")]
        _ => unreachable!("check_same rejected operands on different devices"),
    };
    Ok((storage, out_dims))
}

/// `x (rows x inp) @ w^T + bias` for typed storages (the bias is read under its own lock).
fn linear_storage<T: Float + Element>(
    x: &[T],
    w: &[T],
    bias: Option<&Tensor>,
    (rows, inp, out): (usize, usize, usize),
) -> Result<Vec<T>> {
    let guard = bias.map(|b| b.storage());
    let bias = match guard.as_deref() {
        Some(Storage::Cpu(c)) => Some(T::slice(c).ok_or(Error::DType {
            op: "linear",
            got: c.dtype(),
            msg: format!(
                "the bias must be {} like the input",
                <T as crate::storage::Element>::DTYPE
            ),
        })?),
        None => None,
        #[cfg(feature = "cuda")]
        Some(Storage::Cuda(_)) => unreachable!("check_same rejected a bias on another device"),
    };
    Ok(cpu::linear(x, w, bias, rows, inp, out))
}

impl Tensor {
    /// The matrix product with NumPy semantics: `(..., m, k) @ (..., k, n) -> (..., m, n)`, the
    /// batch dimensions broadcast. A 1-D left operand is a row vector and a 1-D right operand a
    /// column vector; the added dimension is removed from the result.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() == 0 || other.rank() == 0 {
            return Err(Error::shape(
                "matmul",
                &[self.dims(), other.dims()],
                "both operands need at least 1 dimension",
            ));
        }
        let a = if self.rank() == 1 {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let b = if other.rank() == 1 {
            other.unsqueeze(1)?
        } else {
            other.clone()
        };
        let mut out = a.matmul_transposed(&b, false, false).map_err(|e| match e {
            // Name the shapes the caller passed, not the promoted ones.
            Error::Shape { msg, .. } => Error::shape("matmul", &[self.dims(), other.dims()], msg),
            e => e,
        })?;
        if other.rank() == 1 {
            out = out.squeeze(-1)?;
        }
        if self.rank() == 1 {
            out = out.squeeze(if other.rank() == 1 { -1 } else { -2 })?;
        }
        Ok(out)
    }

    /// `op(self) @ op(other)` where `op` swaps the last two axes of an operand whose flag is
    /// set (`q.matmul_transposed(&k, false, true)` is `q @ k^T`), read through strides with no
    /// transposed copy. Batch dimensions broadcast as in `matmul`.
    pub fn matmul_transposed(
        &self,
        other: &Tensor,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<Tensor> {
        let (storage, out_dims) = product_storage(self, other, trans_a, trans_b)?;
        let (a, b) = (self.clone(), other.clone());
        let backward: crate::autograd::BackwardFn = Box::new(move |g, _| {
            let ga = if a.requires_grad() {
                let full = match (trans_a, trans_b) {
                    (false, false) => product(g, &b, false, true)?,
                    (false, true) => product(g, &b, false, false)?,
                    (true, false) => product(&b, g, false, true)?,
                    (true, true) => product(&b, g, true, true)?,
                };
                Some(full.sum_to(a.dims())?)
            } else {
                None
            };
            let gb = if !b.requires_grad() {
                None
            } else if b.rank() == 2 && a.rank() > 2 && !trans_a {
                // One right matrix shared by the whole batch: its gradient sums over the
                // batch, which is a single product of the batch-flattened operands.
                let rows: usize = a.dims()[..a.rank() - 1].iter().product();
                let a2 = a.reshape([rows, a.dims()[a.rank() - 1]])?;
                let g2 = g.reshape([rows, g.dims()[g.rank() - 1]])?;
                Some(if trans_b {
                    product(&g2, &a2, true, false)?
                } else {
                    product(&a2, &g2, true, false)?
                })
            } else {
                let full = match (trans_a, trans_b) {
                    (false, false) => product(&a, g, true, false)?,
                    (false, true) => product(g, &a, true, false)?,
                    (true, false) => product(&a, g, false, false)?,
                    (true, true) => product(g, &a, true, true)?,
                };
                Some(full.sum_to(b.dims())?)
            };
            Ok(vec![ga, gb])
        });
        Ok(Tensor::from_op(
            "matmul",
            storage,
            out_dims,
            &[self, other],
            backward,
        ))
    }

    /// `x @ w^T + b` for `x` of shape `(..., in)`, `w` of shape `(out, in)` and `b` of shape
    /// `(out,)`: the affine map of nn.Linear, computed in one gemm call with the bias
    /// accumulated in place. The backward rule is three products/reductions on flattened `x`.
    pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        check_float("linear", x)?;
        check_same("linear", x, w)?;
        if let Some(b) = b {
            check_same("linear", x, b)?;
        }
        let bad = |msg: &str| {
            let mut shapes = vec![x.dims(), w.dims()];
            if let Some(b) = b {
                shapes.push(b.dims());
            }
            Err(Error::shape("linear", &shapes, msg))
        };
        if w.rank() != 2 {
            return bad("the weight must have shape (out, in)");
        }
        let (out_f, inp) = (w.dims()[0], w.dims()[1]);
        if x.rank() == 0 || x.dims()[x.rank() - 1] != inp {
            return bad("the input's last dimension must equal the weight's second");
        }
        if b.is_some_and(|b| b.dims() != [out_f]) {
            return bad("the bias must have shape (out,)");
        }
        let rows: usize = x.dims()[..x.rank() - 1].iter().product();
        let sizes = (rows, inp, out_f);
        let storage = match (&*x.storage(), &*w.storage()) {
            (Storage::Cpu(xs), Storage::Cpu(ws)) => {
                Storage::Cpu(with_float2!("linear", xs, ws, |xv, wv| CpuStorage::from(
                    linear_storage(xv, wv, b, sizes)?
                ))?)
            }
            #[cfg(feature = "cuda")]
            (Storage::Cuda(xs), Storage::Cuda(ws)) => {
                let guard = b.map(|b| b.storage());
                let bias = match guard.as_deref() {
                    Some(Storage::Cuda(c)) => Some(c),
                    None => None,
                    Some(Storage::Cpu(_)) => {
                        unreachable!("check_same rejected a bias on another device")
                    }
                };
                Storage::Cuda(cuda::linear(xs, ws, bias, sizes)?)
            }
            #[cfg(feature = "cuda")]
            _ => unreachable!("check_same rejected operands on different devices"),
        };
        let mut out_dims = x.dims().to_vec();
        *out_dims.last_mut().expect("rank checked above") = out_f;
        let (xc, wc) = (x.clone(), w.clone());
        let (has_b, needs_b) = (b.is_some(), b.is_some_and(|b| b.requires_grad()));
        let backward: crate::autograd::BackwardFn = Box::new(move |g, _| {
            let g2 = g.reshape([rows, out_f])?;
            let gx = xc
                .requires_grad()
                .then(|| product(&g2, &wc, false, false)?.reshape(xc.dims()))
                .transpose()?;
            let gw = wc
                .requires_grad()
                .then(|| product(&g2, &xc.reshape([rows, inp])?, true, false))
                .transpose()?;
            let mut grads = vec![gx, gw];
            if has_b {
                // One entry per input: the bias slot exists only when a bias was given.
                grads.push(needs_b.then(|| g2.sum(&[0], false)).transpose()?);
            }
            Ok(grads)
        });
        let inputs: Vec<&Tensor> = std::iter::once(x).chain(Some(w)).chain(b).collect();
        Ok(Tensor::from_op(
            "linear", storage, out_dims, &inputs, backward,
        ))
    }
}
