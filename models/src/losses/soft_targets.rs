//! Soft-target cross-modal contrast (paper 002, C2VL, section III-C and III-D), generalised from
//! its skeleton-vision-language pairs to any pair of modalities `(a, b)`.
//!
//! For a pair with embeddings `a`, `b` (`N x D`, L2-normalised), the direction `a2b` has logits
//! `a b^T / tau` (row `i`: anchor `a_i` against every `b_j`), `b2a` has `b a^T / tau`. C2VL
//! replaces the identity targets of InfoNCE by:
//!
//! * intra-modal self-similarity targets (Eq. 4-6): `P^{a2b} = beta softmax(a a^T / tau_t) +
//!   (1 - beta) I` (the anchor modality's own similarities: if `a_i` resembles `a_j`, then
//!   `b_j` is a plausible partner of `a_i`), and `P^{b2a}` likewise from `b b^T`;
//! * inter-modal cross-consistency targets (Eq. 7-10): `Q^{a2b} = softmax_row(b a^T / tau_t)`,
//!   i.e. the target of `a_i -> b_j` is the opposite direction's probability of `b_i -> a_j`
//!   (the paper: "alignment from v_i to s_j is based on the probability that s_i matched with
//!   v_j"), and `Q^{b2a} = softmax_row(a b^T / tau_t)`.
//!
//! Our reading of Eq. 7-10: their second and third terms (`I_B V S^T J`, `J S^T V I_B`) do not
//! type-check as printed (`J S^T V` multiplies `B x B` by `d x B`); the only consistent reading
//! of the second (`(V S^T) J`, a constant per row) cancels under the row softmax. We keep the
//! first term, which the paper's text explains, and drop the other two (docs/models.md).
//!
//! The batch is split (section III-D): the first `n_intra = floor(alpha N)` rows of both
//! directions use the intra targets, the other rows the inter targets, and (Eq. 12)
//!
//! `L_pair = 1/2 [ alpha (H_intra^{a2b} + H_intra^{b2a}) + (1 - alpha) (H_inter^{a2b} + H_inter^{b2a}) ]`
//!
//! where each `H` is the mean over its rows of `-sum_j T_ij log softmax_j(logits)_ij`. The `1/2`
//! (absent from Eq. 12) matches Eq. 1 of paper 000: with `alpha = 1` and `beta = 0` the loss is
//! exactly the uniform symmetric InfoNCE. The targets are computed from detached embeddings
//! (self-distillation: the current model is its own teacher) and get no gradient.
//!
//! The fused `InfoNce::Soft` op takes one target matrix for both directions and weighs every
//! row alike, which this split cannot express, so the loss is a composite of the engine's
//! matmul, log-softmax and reductions (still one pass each, on either device).

use super::check_embeddings;
use engine::{no_grad, Device, Error, Result, Tensor};

/// The soft-target configuration of paper 002.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftTargets {
    /// Weight of the self-similarity in the intra targets (paper: 0.2); 0 gives the identity.
    pub beta: f64,
    /// Temperature of the softmaxes that build the targets (the paper writes none; its logits
    /// omit tau too, so we default to the loss's tau, 0.07).
    pub tau_target: f64,
    /// Whether the last `N - floor(alpha N)` rows use the inter-modal cross-consistency targets
    /// (the paper). `false`: every row uses the intra targets (alpha is then unused).
    pub inter: bool,
}

impl Default for SoftTargets {
    fn default() -> Self {
        SoftTargets {
            beta: 0.2,
            tau_target: super::TAU,
            inter: true,
        }
    }
}

fn identity(n: usize, like: &Tensor) -> Result<Tensor> {
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    Tensor::from_vec(v, [n, n], Device::Cpu)?
        .to_dtype(like.dtype())?
        .to_device(like.device())
}

impl SoftTargets {
    fn check(&self, op: &'static str) -> Result<()> {
        if !(0.0..=1.0).contains(&self.beta) {
            return Err(Error::invalid(
                op,
                format!("beta must be in [0, 1], got {}", self.beta),
            ));
        }
        if !(self.tau_target > 0.0 && self.tau_target.is_finite()) {
            return Err(Error::invalid(
                op,
                format!("tau_target must be positive, got {}", self.tau_target),
            ));
        }
        Ok(())
    }

    /// The intra-modal self-similarity targets of the anchor modality `a` (`N x D`):
    /// `beta softmax_row(a a^T / tau_target) + (1 - beta) I` (`N x N`, rows sum to 1, no
    /// gradient).
    pub fn intra(&self, a: &Tensor) -> Result<Tensor> {
        const OP: &str = "SoftTargets::intra";
        self.check(OP)?;
        check_embeddings(OP, &[a], 1)?;
        no_grad(|| {
            let a = a.detach();
            let s = a.matmul_transposed(&a, false, true)?;
            let p = s.div_scalar(self.tau_target)?.softmax(1)?;
            let eye = identity(a.dims()[0], &a)?;
            p.mul_scalar(self.beta)?
                .add(&eye.mul_scalar(1.0 - self.beta)?)
        })
    }

    /// The inter-modal cross-consistency targets of the direction `a2b`:
    /// `softmax_row(b a^T / tau_target)` (`N x N`, no gradient).
    pub fn inter(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        const OP: &str = "SoftTargets::inter";
        self.check(OP)?;
        check_embeddings(OP, &[a, b], 2)?;
        no_grad(|| {
            let s = b.detach().matmul_transposed(&a.detach(), false, true)?;
            s.div_scalar(self.tau_target)?.softmax(1)
        })
    }

    /// The targets of the direction `a2b` at `alpha`: the first `floor(alpha N)` rows from
    /// [`SoftTargets::intra`]`(a)`, the rest from [`SoftTargets::inter`]`(a, b)` (or all intra
    /// when `inter` is off), with the row weights of the loss (`N x 1`: `alpha / n_intra` on
    /// intra rows, `(1 - alpha) / (N - n_intra)` on inter rows).
    pub fn pair_targets(&self, a: &Tensor, b: &Tensor, alpha: f64) -> Result<(Tensor, Tensor)> {
        const OP: &str = "SoftTargets::pair_targets";
        check_embeddings(OP, &[a, b], 2)?;
        check_alpha(OP, alpha)?;
        let n = a.dims()[0];
        let n_intra = self.n_intra(n, alpha);
        let p = self.intra(a)?;
        let targets = if n_intra == n {
            p
        } else {
            let q = self.inter(a, b)?;
            if n_intra == 0 {
                q
            } else {
                Tensor::concat(
                    &[
                        &p.narrow(0, 0, n_intra)?,
                        &q.narrow(0, n_intra, n - n_intra)?,
                    ],
                    0,
                )?
            }
        };
        let weights = row_weights(n, n_intra, alpha);
        let w = Tensor::from_vec(weights, [n, 1], Device::Cpu)?
            .to_dtype(a.dtype())?
            .to_device(a.device())?;
        Ok((targets, w))
    }

    /// The number of rows that use the intra targets: `floor(alpha N)` (computed with a 1e-9
    /// slack so that, e.g., `0.3 * 10` gives 3), or `N` when `inter` is off.
    pub fn n_intra(&self, n: usize, alpha: f64) -> usize {
        if !self.inter {
            return n;
        }
        ((alpha * n as f64 + 1e-9).floor().max(0.0) as usize).min(n)
    }
}

fn check_alpha(op: &'static str, alpha: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid(
            op,
            format!("alpha must be in [0, 1], got {alpha}"),
        ));
    }
    Ok(())
}

/// `alpha / n_intra` on the intra rows and `(1 - alpha) / (N - n_intra)` on the others; an
/// empty part weighs nothing. With `inter` off (`n_intra = N`) the rows weigh `1 / N`.
fn row_weights(n: usize, n_intra: usize, alpha: f64) -> Vec<f64> {
    let (wi, we) = if n_intra == n {
        (1.0 / n as f64, 0.0)
    } else if n_intra == 0 {
        (0.0, 1.0 / n as f64)
    } else {
        (alpha / n_intra as f64, (1.0 - alpha) / (n - n_intra) as f64)
    };
    (0..n).map(|i| if i < n_intra { wi } else { we }).collect()
}

/// `-sum_ij w_i T_ij log softmax_row(logits)_ij`.
fn soft_ce(logits: &Tensor, targets: &Tensor, w: &Tensor) -> Result<Tensor> {
    logits
        .log_softmax(1)?
        .mul(targets)?
        .mul(w)?
        .sum_all()?
        .neg()
}

/// One pair's soft-target loss with given targets: `1/2 [sum_i w_i H(t_ab_i, softmax(a_i b^T /
/// tau)) + sum_i w_i H(t_ba_i, softmax(b_i a^T / tau))]`, targets `N x N` and row weights
/// `N x 1` as [`SoftTargets::pair_targets`] makes them. The targets are constants (detached).
/// Use it directly to take the targets from a teacher network (paper 002's self-distillation
/// with an EMA or previous-epoch teacher) instead of the current embeddings.
pub fn soft_pair_loss(
    a: &Tensor,
    b: &Tensor,
    tau: f64,
    targets_ab: &Tensor,
    targets_ba: &Tensor,
    row_weights: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "losses::soft_pair_loss";
    check_embeddings(OP, &[a, b], 2)?;
    let n = a.dims()[0];
    if targets_ab.dims() != [n, n] || targets_ba.dims() != [n, n] || row_weights.dims() != [n, 1] {
        return Err(Error::shape(
            OP,
            &[
                a.dims(),
                targets_ab.dims(),
                targets_ba.dims(),
                row_weights.dims(),
            ],
            "targets must be (N, N) and row weights (N, 1) for (N, D) embeddings",
        ));
    }
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::invalid(
            OP,
            format!("tau must be positive, got {tau}"),
        ));
    }
    let w = row_weights.detach();
    let s_ab = a.matmul_transposed(b, false, true)?.div_scalar(tau)?;
    let s_ba = b.matmul_transposed(a, false, true)?.div_scalar(tau)?;
    soft_ce(&s_ab, &targets_ab.detach(), &w)?
        .add(&soft_ce(&s_ba, &targets_ba.detach(), &w)?)?
        .mul_scalar(0.5)
}

/// The soft-target cross-modal loss (paper 002, see the module docs), summed over every pair
/// `(i, j)`, `i < j`, of the given L2-normalised embeddings (`(N, D)` each), at temperature
/// `tau` and split/mix `alpha` (from [`progressive_alpha`]). With `beta = 0` and `alpha = 1`
/// (all rows intra, identity targets) it equals [`super::cross_modal`] with uniform negatives.
///
/// Note: when `floor(alpha N)` is `0` or `N` the whole batch uses one kind of target with
/// weight 1 (alpha's only role left is the split), so the loss stays an average
/// cross-entropy for any alpha.
pub fn cross_modal_soft(
    h: &[&Tensor],
    tau: f64,
    targets: &SoftTargets,
    alpha: f64,
) -> Result<Tensor> {
    const OP: &str = "losses::cross_modal_soft";
    check_embeddings(OP, h, 2)?;
    check_alpha(OP, alpha)?;
    targets.check(OP)?;
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::invalid(
            OP,
            format!("tau must be positive, got {tau}"),
        ));
    }
    let mut total: Option<Tensor> = None;
    for i in 0..h.len() {
        for j in i + 1..h.len() {
            let (a, b) = (h[i], h[j]);
            let (t_ab, w) = targets.pair_targets(a, b, alpha)?;
            let (t_ba, _) = targets.pair_targets(b, a, alpha)?;
            let l = soft_pair_loss(a, b, tau, &t_ab, &t_ba, &w)?;
            total = Some(match total {
                None => l,
                Some(t) => t.add(&l)?,
            });
        }
    }
    Ok(total.expect("at least one pair"))
}

/// The progressive alpha of paper 002 (section III-D): cosine annealing from `start` (0.9) to
/// `end` (0.1), `end + (start - end) (1 + cos(pi t)) / 2` with `t = min(step, total) / total`.
/// So `step = 0` gives `start`, `step = total / 2` the midpoint, `step >= total` gives `end`;
/// `total = 0` gives `end`. The paper refreshes it once per epoch: pass the epoch and the
/// last epoch's index (`epochs - 1`) to reach `end` on the last epoch.
pub fn progressive_alpha(step: usize, total: usize, start: f64, end: f64) -> f64 {
    if total == 0 {
        return end;
    }
    let t = step.min(total) as f64 / total as f64;
    end + (start - end) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}
