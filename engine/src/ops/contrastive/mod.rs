//! Fused contrastive losses: softmax-InfoNCE (RCMCL Eq. 1 and its hard-negative, debiased,
//! soft-target and MoCo-queue variants) and the Barlow Twins cross-correlation loss (RCMCL
//! Eq. 2). Each is one op with a dedicated backward kernel on both devices.
//!
//! ## InfoNCE
//! On logits `S` (`N x M`, times a scale `1/tau` when they come from `infonce`), the symmetric
//! loss is `(L_row + L_col) / 2`: `L_row` the mean over rows of the cross-entropy of each row
//! against its target (row `i`: column `i`), `L_col` the mean over columns of the cross-entropy
//! of each column (column `j`: row `j`). The forward reads `S` once per direction (per-lane
//! maximum, sum of exponentials and the few numbers the backward needs); the backward writes
//! `dL/dS` in one pass that adds both directions' terms. `infonce(a, b, tau, ..)` computes
//! `S = a b^T` with the engine's matmul (cuBLAS on a GPU) and folds `1/tau` into the fused
//! kernel, so `dL/da = dS b / tau` and `dL/db = dS^T a / tau` are the matmul's own backward.
//!
//! Hard negatives follow the public HCL code (Robinson et al., paper 004 Eq. 3) per lane, with
//! `pos = exp(s_pos)`, `neg_k = exp(s_k)` over the lane's `n` negatives: `imp = neg^beta`,
//! `reweight = sum(imp * neg) / mean(imp)`, `Ng = (-tau_plus * n * pos + reweight) / (1 -
//! tau_plus)` clamped below at `n * exp(-1/tau)`, loss `-log(pos / (pos + Ng))`. `n` is the number
//! of negatives of the lane (`M - 1` for a row, `N - 1` for a column): the HCL code's `N =
//! 2 * batch_size - 2` is exactly its number of negatives per anchor. It is evaluated in log
//! space, in units of `exp(max)`, so large logits cannot overflow. Below the clamp the gradient
//! through `Ng` is zero, as in PyTorch's `clamp`.
//!
//! Soft targets (paper 002): a target matrix `Q` (`N x M`, rows summing to 1); row `i`'s term is
//! `-sum_j Q_ij log softmax_row(S)_ij`, column `j`'s is `-sum_i Q_ij log softmax_col(S)_ij`
//! (for the identity both reduce to the uniform loss; give a symmetric `Q` to use the same
//! targets both ways). `Q` is a constant: it gets no gradient.
//!
//! ## Barlow Twins
//! `z1`, `z2` (`N x D`, `N >= 2`): each column standardised over the batch as the public Barlow
//! Twins code does (`BatchNorm1d(affine=False)` in training mode: biased variance, `eps =
//! 1e-5`), `C = z1n^T z2n / N`, loss `sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`.
//! The standardisation and the loss (with `dL/dC` in the same pass) are fused kernels; the two
//! products are the engine's matmul; the backward is two products and the batch-norm backward.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use super::{check_float, check_same};
use crate::storage::{CpuStorage, Element, Storage};
use crate::{with_float, DType, Error, Result, Tensor};

/// The Barlow Twins standardisation's epsilon (PyTorch's BatchNorm1d default).
pub const BARLOW_EPS: f64 = 1e-5;

/// The Barlow Twins off-diagonal weight of the public code.
pub const BARLOW_LAMBDA: f64 = 0.0051;

/// Which InfoNCE: the negatives' weighting and the targets.
#[derive(Clone, Copy, Debug)]
pub enum InfoNce<'a> {
    /// Uniform negatives, symmetric (RCMCL Eq. 1, CLIP). Logits `N x N`.
    Uniform,
    /// Hard negatives (HCL, paper 004 Eq. 3) with concentration `beta >= 0` and class prior
    /// `tau_plus` in `[0, 1)`, symmetric. `beta = 0, tau_plus > 0` is the debiased loss. Logits
    /// `N x N`, `N >= 2`.
    Hard { beta: f64, tau_plus: f64 },
    /// Soft targets: the target distribution of every row, `N x N`, same dtype and device as
    /// the logits (paper 002). Symmetric (see the module docs for the column direction).
    Soft(&'a Tensor),
    /// MoCo (paper 003): logits `N x (1 + K)`, the positive in column 0 and `K` queue negatives;
    /// row direction only.
    Queue,
}

/// The kernel-level description of an `InfoNce` (the soft targets travel separately).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Uniform,
    Soft,
    Queue,
    /// `log_floor = -1/tau`: the clamp floor is `n * exp(log_floor)`.
    Hard {
        beta: f64,
        tau_plus: f64,
        log_floor: f64,
    },
}

impl Kind {
    /// The kernels' code for this kind.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn code(&self) -> i32 {
        match self {
            Kind::Uniform => 0,
            Kind::Soft => 1,
            Kind::Queue => 2,
            Kind::Hard { .. } => 3,
        }
    }

    fn symmetric(&self) -> bool {
        !matches!(self, Kind::Queue)
    }
}

fn slice_of<T: Element>(s: &Storage) -> &[T] {
    let c = s.as_cpu().expect("the CPU path holds host storage");
    T::slice(c).expect("dtype checked before the kernel")
}

/// The device storage of a tensor saved on (or checked to be on) a CUDA device.
#[cfg(feature = "cuda")]
fn cuda_ref(s: &Storage) -> &crate::cuda::CudaStorage {
    match s {
        Storage::Cuda(x) => x,
        Storage::Cpu(_) => unreachable!("saved on the logits' device"),
    }
}

fn f64_tensor(values: Vec<f64>) -> Tensor {
    let n = values.len();
    Tensor::from_op_no_grad(Storage::Cpu(CpuStorage::F64(values)), [n])
}

/// A CPU scalar of `dtype` holding `v`.
fn cpu_scalar(v: f64, dtype: DType) -> Result<Storage> {
    Ok(match dtype {
        DType::F32 => Storage::Cpu(CpuStorage::F32(vec![v as f32])),
        DType::F64 => Storage::Cpu(CpuStorage::F64(vec![v])),
        d => {
            return Err(Error::DType {
                op: "contrastive",
                got: d,
                msg: "expected a floating-point tensor".into(),
            })
        }
    })
}

fn check_finite(op: &'static str, name: &str, v: f64) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::invalid(
            op,
            format!("{name} must be finite, got {v}"),
        ));
    }
    Ok(())
}

impl Tensor {
    /// The fused InfoNCE loss (a scalar) of logits `self` (`N x M`, already divided by the
    /// temperature). `tau` is that temperature: only the hard-negative clamp floor
    /// `n * exp(-1/tau)` uses it. See the module docs for each variant's formula.
    pub fn infonce_logits(&self, loss: InfoNce, tau: f64) -> Result<Tensor> {
        self.infonce_scaled("infonce_logits", 1.0, loss, tau)
    }

    /// The fused InfoNCE loss of embeddings `a` (`N x D`) and `b` (`M x D`) at temperature
    /// `tau`: logits `a b^T / tau` through the engine's matmul, then the fused loss. For a MoCo
    /// queue use `infonce_queue`.
    pub fn infonce(a: &Tensor, b: &Tensor, tau: f64, loss: InfoNce) -> Result<Tensor> {
        const OP: &str = "infonce";
        check_float(OP, a)?;
        check_same(OP, a, b)?;
        if !(tau > 0.0 && tau.is_finite()) {
            return Err(Error::invalid(
                OP,
                format!("tau must be positive, got {tau}"),
            ));
        }
        if matches!(loss, InfoNce::Queue) {
            return Err(Error::invalid(
                OP,
                "a queue's logits are not a b^T: use Tensor::infonce_queue",
            ));
        }
        if a.rank() != 2 || b.rank() != 2 || a.dims()[1] != b.dims()[1] {
            return Err(Error::shape(
                OP,
                &[a.dims(), b.dims()],
                "a and b must be (N, D) and (M, D)",
            ));
        }
        let s = a.matmul_transposed(b, false, true)?;
        s.infonce_scaled(OP, 1.0 / tau, loss, tau)
    }

    /// MoCo's InfoNCE: queries `q` (`N x D`), their positive keys `k` (`N x D`) and a queue of
    /// `K` negatives (`K x D`) at temperature `tau`: logits `[q.k | q queue^T] / tau`
    /// (`N x (1 + K)`), target column 0. The queue is usually detached by the caller.
    pub fn infonce_queue(q: &Tensor, k: &Tensor, queue: &Tensor, tau: f64) -> Result<Tensor> {
        const OP: &str = "infonce_queue";
        check_float(OP, q)?;
        check_same(OP, q, k)?;
        check_same(OP, q, queue)?;
        if !(tau > 0.0 && tau.is_finite()) {
            return Err(Error::invalid(
                OP,
                format!("tau must be positive, got {tau}"),
            ));
        }
        if q.rank() != 2
            || k.dims() != q.dims()
            || queue.rank() != 2
            || queue.dims()[1] != q.dims()[1]
        {
            return Err(Error::shape(
                OP,
                &[q.dims(), k.dims(), queue.dims()],
                "q and k must be (N, D) and the queue (K, D)",
            ));
        }
        let pos = q.mul(k)?.sum(&[1], true)?;
        let logits = if queue.dims()[0] == 0 {
            pos
        } else {
            let neg = q.matmul_transposed(queue, false, true)?;
            Tensor::concat(&[&pos, &neg], 1)?
        };
        logits.infonce_scaled(OP, 1.0 / tau, InfoNce::Queue, tau)
    }

    fn infonce_scaled(
        &self,
        op: &'static str,
        scale: f64,
        loss: InfoNce,
        tau: f64,
    ) -> Result<Tensor> {
        check_float(op, self)?;
        if self.rank() != 2 {
            return Err(Error::shape(op, &[self.dims()], "logits must be (N, M)"));
        }
        let (n, m) = (self.dims()[0], self.dims()[1]);
        if n == 0 || m == 0 {
            return Err(Error::shape(op, &[self.dims()], "logits must not be empty"));
        }
        if !matches!(loss, InfoNce::Queue) && n != m {
            return Err(Error::shape(
                op,
                &[self.dims()],
                "symmetric InfoNCE needs square logits (N x N)",
            ));
        }
        let mut targets = None;
        let kind = match loss {
            InfoNce::Uniform => Kind::Uniform,
            InfoNce::Queue => Kind::Queue,
            InfoNce::Soft(t) => {
                check_same(op, self, t)?;
                if t.dims() != self.dims() {
                    return Err(Error::shape(
                        op,
                        &[self.dims(), t.dims()],
                        "soft targets must have the logits' shape",
                    ));
                }
                targets = Some(t.detach());
                Kind::Soft
            }
            InfoNce::Hard { beta, tau_plus } => {
                check_finite(op, "beta", beta)?;
                if beta < 0.0 {
                    return Err(Error::invalid(op, format!("beta must be >= 0, got {beta}")));
                }
                if !(0.0..1.0).contains(&tau_plus) {
                    return Err(Error::invalid(
                        op,
                        format!("tau_plus must be in [0, 1), got {tau_plus}"),
                    ));
                }
                if !(tau > 0.0 && tau.is_finite()) {
                    return Err(Error::invalid(
                        op,
                        format!("tau must be positive, got {tau}"),
                    ));
                }
                if n < 2 {
                    return Err(Error::shape(
                        op,
                        &[self.dims()],
                        "hard negatives need N >= 2 (at least one negative per row)",
                    ));
                }
                Kind::Hard {
                    beta,
                    tau_plus,
                    log_floor: -1.0 / tau,
                }
            }
        };
        let symmetric = kind.symmetric();
        let (w_row, w_col) = if symmetric {
            (0.5 / n as f64, 0.5 / m as f64)
        } else {
            (1.0 / n as f64, 0.0)
        };

        let (out, row_stats, col_stats) = match &*self.storage() {
            Storage::Cpu(c) => {
                let tq = targets.as_ref().map(|t| t.storage());
                let (total, sr, sc) = with_float!(op, c, |s| {
                    let q = tq.as_deref().map(slice_of);
                    let (lr, sr) = cpu::infonce_stats(s, q, n, m, scale, &kind, false);
                    let mut total = w_row * lr.iter().sum::<f64>();
                    let mut col = None;
                    if symmetric {
                        let (lc, sc) = cpu::infonce_stats(s, q, n, m, scale, &kind, true);
                        total += w_col * lc.iter().sum::<f64>();
                        col = Some(f64_tensor(sc));
                    }
                    (total, f64_tensor(sr), col)
                })?;
                (cpu_scalar(total, self.dtype())?, sr, sc)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => {
                let tq = targets.as_ref().map(|t| t.storage());
                let q = match tq.as_deref() {
                    Some(Storage::Cuda(q)) => Some(q),
                    _ => None,
                };
                let (loss, sr, sc) = cuda::infonce_forward(c, q, n, m, scale, &kind, w_row, w_col)?;
                let wrap = |s: crate::cuda::CudaStorage| {
                    let len = s.len();
                    Tensor::from_op_no_grad(Storage::Cuda(s), [len])
                };
                (Storage::Cuda(loss), wrap(sr), sc.map(wrap))
            }
        };

        let s = self.clone();
        Ok(Tensor::from_op(
            op,
            out,
            Vec::<usize>::new(),
            &[self],
            Box::new(move |g, _| {
                check_same(op, &s, g)?;
                let tq = targets.as_ref().map(|t| t.storage());
                let rs = row_stats.storage();
                let cs = col_stats.as_ref().map(|t| t.storage());
                let grad = match &*s.storage() {
                    Storage::Cpu(c) => {
                        let gv = g.item()?;
                        Storage::Cpu(with_float!(op, c, |sv| {
                            let q = tq.as_deref().map(slice_of);
                            CpuStorage::from(cpu::infonce_grad(
                                sv,
                                q,
                                n,
                                m,
                                scale,
                                &kind,
                                slice_of::<f64>(&rs),
                                cs.as_deref().map(slice_of::<f64>),
                                gv * w_row,
                                gv * w_col,
                            ))
                        })?)
                    }
                    #[cfg(feature = "cuda")]
                    Storage::Cuda(c) => {
                        let gs = g.storage();
                        Storage::Cuda(cuda::infonce_grad(
                            c,
                            tq.as_deref().map(cuda_ref),
                            n,
                            m,
                            scale,
                            &kind,
                            cuda_ref(&rs),
                            cs.as_deref().map(cuda_ref),
                            cuda_ref(&gs),
                            w_row,
                            w_col,
                        )?)
                    }
                };
                Ok(vec![Some(Tensor::from_op_no_grad(grad, [n, m]))])
            }),
        ))
    }

    /// The Barlow Twins loss (RCMCL Eq. 2) of `z1`, `z2` (`N x D`, `N >= 2`) with off-diagonal
    /// weight `lambda` (the public code's default is `BARLOW_LAMBDA`): columns standardised over
    /// the batch (biased variance, `eps = BARLOW_EPS`), `C = z1n^T z2n / N`, loss `sum_i (1 -
    /// C_ii)^2 + lambda * sum_{i != j} C_ij^2`. Differentiable in both inputs.
    pub fn barlow_twins(z1: &Tensor, z2: &Tensor, lambda: f64) -> Result<Tensor> {
        const OP: &str = "barlow_twins";
        check_float(OP, z1)?;
        check_same(OP, z1, z2)?;
        check_finite(OP, "lambda", lambda)?;
        if z1.rank() != 2 || z1.dims() != z2.dims() {
            return Err(Error::shape(
                OP,
                &[z1.dims(), z2.dims()],
                "z1 and z2 must both be (N, D)",
            ));
        }
        let (n, d) = (z1.dims()[0], z1.dims()[1]);
        if n < 2 {
            return Err(Error::shape(
                OP,
                &[z1.dims(), z2.dims()],
                "batch statistics need N >= 2",
            ));
        }
        if d == 0 {
            return Err(Error::shape(OP, &[z1.dims(), z2.dims()], "D must be >= 1"));
        }
        let standardize = |z: &Tensor| -> Result<(Tensor, Tensor)> {
            Ok(match &*z.storage() {
                Storage::Cpu(c) => with_float!(OP, c, |v| {
                    let (zn, rstd) = cpu::standardize(v, n, d, BARLOW_EPS);
                    (
                        Tensor::from_op_no_grad(Storage::Cpu(CpuStorage::from(zn)), [n, d]),
                        f64_tensor(rstd),
                    )
                })?,
                #[cfg(feature = "cuda")]
                Storage::Cuda(c) => {
                    let (zn, rstd) = cuda::standardize(c, n, d, BARLOW_EPS)?;
                    (
                        Tensor::from_op_no_grad(Storage::Cuda(zn), [n, d]),
                        Tensor::from_op_no_grad(Storage::Cuda(rstd), [d]),
                    )
                }
            })
        };
        let (zn1, r1) = standardize(z1)?;
        let (zn2, r2) = standardize(z2)?;
        let p = zn1.matmul_transposed(&zn2, true, false)?;
        let scale = 1.0 / n as f64;
        let (loss, dp) = match &*p.storage() {
            Storage::Cpu(c) => {
                let (loss, dp) = with_float!(OP, c, |v| {
                    let (loss, dp) = cpu::barlow_loss(v, d, scale, lambda);
                    (loss, Storage::Cpu(CpuStorage::from(dp)))
                })?;
                (cpu_scalar(loss, z1.dtype())?, dp)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => {
                let (loss, dp) = cuda::barlow_loss(c, d, scale, lambda)?;
                (Storage::Cuda(loss), Storage::Cuda(dp))
            }
        };
        let dp = Tensor::from_op_no_grad(dp, [d, d]);
        let (need1, need2) = (z1.requires_grad(), z2.requires_grad());
        Ok(Tensor::from_op(
            OP,
            loss,
            Vec::<usize>::new(),
            &[z1, z2],
            Box::new(move |g, _| {
                check_same(OP, &zn1, g)?;
                let back = |zn: &Tensor, r: &Tensor, dzn: Tensor| -> Result<Tensor> {
                    let storage = match (&*zn.storage(), &*dzn.storage()) {
                        (Storage::Cpu(c), Storage::Cpu(gc)) => {
                            let gv = g.item()?;
                            let rs = r.storage();
                            crate::with_float2!(OP, c, gc, |y, dy| Storage::Cpu(CpuStorage::from(
                                cpu::standardize_grad(y, slice_of::<f64>(&rs), dy, n, d, gv)
                            )))?
                        }
                        #[cfg(feature = "cuda")]
                        (Storage::Cuda(c), Storage::Cuda(gc)) => {
                            let rs = r.storage();
                            let gs = g.storage();
                            let (Storage::Cuda(rs), Storage::Cuda(gs)) = (&*rs, &*gs) else {
                                unreachable!("saved on the inputs' device")
                            };
                            Storage::Cuda(cuda::standardize_grad(c, rs, gc, gs, n, d)?)
                        }
                        #[cfg(feature = "cuda")]
                        _ => unreachable!("one device"),
                    };
                    Ok(Tensor::from_op_no_grad(storage, [n, d]))
                };
                let g1 = if need1 {
                    let dzn1 = zn2.matmul_transposed(&dp, false, true)?;
                    Some(back(&zn1, &r1, dzn1)?)
                } else {
                    None
                };
                let g2 = if need2 {
                    let dzn2 = zn1.matmul_transposed(&dp, false, false)?;
                    Some(back(&zn2, &r2, dzn2)?)
                } else {
                    None
                };
                Ok(vec![g1, g2])
            }),
        ))
    }
}
