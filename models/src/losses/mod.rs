//! The losses of RCMCL (paper 000, Eq. 1, 2, 3, 6), our L_FUSION, the supervised cross-entropy,
//! and the related papers' variants: hard-negative and debiased negatives (paper 004), soft
//! targets with the progressive alpha schedule (paper 002, [`soft_targets`]), multi-skeleton
//! views as positives and MoCo with a momentum key encoder (paper 003, [`moco`]).
//!
//! Every contrastive term goes through the engine's fused ops (`Tensor::infonce`,
//! `Tensor::infonce_queue`, `Tensor::barlow_twins`), so each has a dedicated backward kernel on
//! both devices. The one exception is the soft-target loss, whose targets differ per direction
//! and per row (see [`soft_targets`]): it is a short composite of matmul and log-softmax.
//!
//! Conventions: embeddings are `(N, D)`, row `k` of every modality the same sample; "symmetric
//! InfoNCE" is `(L_row + L_col) / 2` as in Eq. 1 (`-1/(2N) sum_k [...]`).

pub mod moco;
pub mod soft_targets;

pub use moco::{ema_update, MocoQueue};
pub use soft_targets::{cross_modal_soft, progressive_alpha, soft_pair_loss, SoftTargets};

use engine::ops::contrastive::InfoNce;
use engine::{Error, Reduction, Result, Tensor};

/// The paper's temperature for Eq. 1 (paper 000, section IV: tau = 0.07).
pub const TAU: f64 = 0.07;

/// The paper's Barlow Twins off-diagonal weight (the public Barlow Twins code's 0.0051).
pub const LAMBDA: f64 = engine::ops::contrastive::BARLOW_LAMBDA;

/// How the InfoNCE denominators weigh the negatives.
///
/// `Hard` is HCL (paper 004 Eq. 3): negatives reweighted by `exp(beta * s)` (harder negatives,
/// more weight) and debiased by the class prior `tau_plus` (the chance that a "negative" is of
/// the anchor's class); `Debiased` is its `beta = 0` case (Chuang et al.). The exact per-lane
/// formula is in `engine::ops::contrastive`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Negatives {
    /// Plain InfoNCE: every negative weighs the same (Eq. 1).
    Uniform,
    /// Hard negatives: concentration `beta >= 0`, class prior `tau_plus` in `[0, 1)`.
    Hard { beta: f64, tau_plus: f64 },
    /// Debiased negatives: class prior `tau_plus` in `[0, 1)`.
    Debiased { tau_plus: f64 },
}

impl Negatives {
    /// The engine's description of these negatives.
    pub fn infonce(self) -> InfoNce<'static> {
        match self {
            Negatives::Uniform => InfoNce::Uniform,
            Negatives::Hard { beta, tau_plus } => InfoNce::Hard { beta, tau_plus },
            Negatives::Debiased { tau_plus } => InfoNce::Hard {
                beta: 0.0,
                tau_plus,
            },
        }
    }
}

/// Checks a list of embeddings that will be contrasted pairwise: at least `min` of them, each
/// `(N, D)` with the same `N` and `D`.
fn check_embeddings(op: &'static str, h: &[&Tensor], min: usize) -> Result<()> {
    if h.len() < min {
        return Err(Error::invalid(
            op,
            format!("needs at least {min} embeddings, got {}", h.len()),
        ));
    }
    let first = h[0].dims();
    if h.iter().any(|t| t.rank() != 2 || t.dims() != first) {
        let dims: Vec<&[usize]> = h.iter().map(|t| t.dims()).collect();
        return Err(Error::shape(
            op,
            &dims,
            "every embedding must be (N, D) with the same N and D",
        ));
    }
    if first[0] == 0 || first[1] == 0 {
        return Err(Error::shape(op, &[first], "embeddings must not be empty"));
    }
    Ok(())
}

/// Sum of the symmetric InfoNCE of every pair `(i, j)`, `i < j`.
fn pairwise(h: &[&Tensor], tau: f64, negatives: Negatives) -> Result<(Tensor, usize)> {
    let mut total: Option<Tensor> = None;
    let mut pairs = 0;
    for i in 0..h.len() {
        for j in i + 1..h.len() {
            let l = Tensor::infonce(h[i], h[j], tau, negatives.infonce())?;
            total = Some(match total {
                None => l,
                Some(t) => t.add(&l)?,
            });
            pairs += 1;
        }
    }
    Ok((total.expect("at least one pair"), pairs))
}

/// L_CM (Eq. 1) summed over every pair of modalities: `sum_{i<j} L_CM^{i,j}`, each term the
/// symmetric InfoNCE of `h[i] h[j]^T / tau` (the paper's three pairs (R,S), (R,P), (S,P) when
/// given the three embeddings; any subset of at least two works, e.g. with a dropped modality).
/// The embeddings are expected L2-normalised (the heads do it); `negatives` picks the uniform
/// (the paper), hard or debiased denominator. Fewer than two embeddings, or embeddings of
/// different shapes, is an error.
pub fn cross_modal(h: &[&Tensor], tau: f64, negatives: Negatives) -> Result<Tensor> {
    check_embeddings("losses::cross_modal", h, 2)?;
    Ok(pairwise(h, tau, negatives)?.0)
}

/// Multi-skeleton views as positives (paper 003): the embeddings of the same samples seen in
/// different skeleton conventions (Kinect 25, COCO 17, ...), each `(N, D)` L2-normalised, are
/// contrasted pairwise with in-batch negatives: the **mean** over the pairs of the symmetric
/// InfoNCE, so the scale does not grow with the number of formats (2 formats: one pair, 4: six).
/// Paper 003 itself uses a MoCo queue of negatives: for that, compute the query of one format
/// and the key of another and call [`MocoQueue::loss`].
pub fn multi_view(h_views: &[&Tensor], tau: f64, negatives: Negatives) -> Result<Tensor> {
    check_embeddings("losses::multi_view", h_views, 2)?;
    let (total, pairs) = pairwise(h_views, tau, negatives)?;
    total.div_scalar(pairs as f64)
}

/// L_IM (Eq. 2) summed over modalities: for each modality the Barlow Twins loss between the
/// projections of its two augmented views (`(N, D)` each, raw: the op standardises each column
/// over the batch itself), `sum_a (1 - C_aa)^2 + lambda sum_{a != b} C_ab^2`. The paper's
/// `lambda` is [`LAMBDA`]. An empty list is an error.
pub fn intra_modal(views: &[(&Tensor, &Tensor)], lambda: f64) -> Result<Tensor> {
    const OP: &str = "losses::intra_modal";
    if views.is_empty() {
        return Err(Error::invalid(
            OP,
            "needs at least one modality's pair of views",
        ));
    }
    let mut total: Option<Tensor> = None;
    for (z1, z2) in views {
        let l = Tensor::barlow_twins(z1, z2, lambda)?;
        total = Some(match total {
            None => l,
            Some(t) => t.add(&l)?,
        });
    }
    Ok(total.expect("at least one modality"))
}

/// L_deg (Eq. 3): the squared error between the decoder's reconstruction `D_S(Z'_S)` and the
/// clean sequence `X_S` (same shape, e.g. `(B, T, J, 3)`), as a mean over elements.
///
/// * `weights = None`: `mean((r - x)^2)` over every element.
/// * `weights = Some(w)`, `w` broadcastable to the reconstruction's shape (e.g. a joint mask
///   `(B, 1, J, 1)` or per-element weights): `sum(w * (r - x)^2) / sum(w')` with `w'` the
///   weights broadcast to the full shape, so a 0/1 mask gives the mean over the selected
///   elements (a selected joint counts its 3 coordinates). The weights are constants (no
///   gradient). When every weight is 0 the loss is 0 (the denominator is clamped at 1e-12).
///
/// The paper writes `E[||D_S(Z'_S) - X_S||^2]` (a per-sample squared norm): that is this mean
/// times the number of elements per sample; we use the mean so the weight 0.2 of Eq. 6 does not
/// depend on the sequence length or the number of joints.
pub fn degradation(
    reconstruction: &Tensor,
    clean: &Tensor,
    weights: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "losses::degradation";
    if reconstruction.dims() != clean.dims() {
        return Err(Error::shape(
            OP,
            &[reconstruction.dims(), clean.dims()],
            "the reconstruction and the clean sequence must have the same shape",
        ));
    }
    if reconstruction.numel() == 0 {
        return Err(Error::shape(OP, &[reconstruction.dims()], "empty input"));
    }
    match weights {
        None => reconstruction.mse_loss(clean, Reduction::Mean),
        Some(w) => {
            let full = reconstruction.dims();
            let ok = w.rank() <= full.len()
                && engine::shape::broadcast_shapes(OP, full, w.dims())
                    .map(|b| b == full)
                    .unwrap_or(false);
            if !ok {
                return Err(Error::shape(
                    OP,
                    &[full, w.dims()],
                    "the weights must broadcast to the reconstruction's shape",
                ));
            }
            let w = w.detach();
            let diff = reconstruction.sub(clean)?;
            let num = diff.square()?.mul(&w)?.sum_all()?;
            let den = w.broadcast_to(full)?.sum_all()?.clamp(1e-12, f64::MAX)?;
            num.div(&den)
        }
    }
}

/// L_FUSION, our reading of the term the paper's figure names but never defines (see
/// docs/method.md): the mean over the given modalities `M` of the symmetric InfoNCE between
/// `fused` (`Z_fusion` of randomly degraded inputs through the projection, `(N, D)`,
/// L2-normalised) and `clean[M]` (that modality's embedding of the clean inputs, same shape).
/// It teaches the gate to produce a fused embedding that still identifies the sample when some
/// sensors are dropped or corrupted. Gradients reach both sides; detach `clean` at the call site
/// to use the clean embeddings as fixed targets. No clean embedding, or a shape mismatch, is an
/// error.
pub fn fusion(fused: &Tensor, clean: &[&Tensor], tau: f64) -> Result<Tensor> {
    const OP: &str = "losses::fusion";
    if clean.is_empty() {
        return Err(Error::invalid(OP, "needs at least one clean embedding"));
    }
    let mut all = vec![fused];
    all.extend_from_slice(clean);
    check_embeddings(OP, &all, 2)?;
    let mut total: Option<Tensor> = None;
    for c in clean {
        let l = Tensor::infonce(fused, c, tau, InfoNce::Uniform)?;
        total = Some(match total {
            None => l,
            Some(t) => t.add(&l)?,
        });
    }
    total
        .expect("at least one clean embedding")
        .div_scalar(clean.len() as f64)
}

/// The supervised cross-entropy (mean over the batch) of `logits` `(N, C)` against the i64
/// class indices `labels` `(N,)`: the fine-tuning loss on `Z_fusion` and the supervised fusion
/// baseline's loss. A label outside `[0, C)` is an error on the CPU (NaN on a GPU, see
/// `Tensor::cross_entropy`).
pub fn classification(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    const OP: &str = "losses::classification";
    if logits.rank() != 2 || labels.rank() != 1 || logits.dims()[0] != labels.dims()[0] {
        return Err(Error::shape(
            OP,
            &[logits.dims(), labels.dims()],
            "logits must be (N, C) and labels (N,)",
        ));
    }
    logits.cross_entropy(labels, Reduction::Mean, 0.0)
}

/// The weights of Eq. 6 plus our L_FUSION: `L_total = cm L_CM + im L_IM + deg L_deg + fusion
/// L_FUSION`. A weight of 0 switches its term off (the caller need not even compute it).
///
/// Defaults: the paper's `1.0 / 0.5 / 0.2` (section IV) and `fusion = 0.5`, our choice: the
/// same weight as the other contrastive auxiliary term (L_IM), below L_CM, so the gate's signal
/// does not dominate the alignment. [`LossWeights::paper`] is Eq. 6 exactly (no L_FUSION).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    pub cm: f64,
    pub im: f64,
    pub deg: f64,
    pub fusion: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights {
            cm: 1.0,
            im: 0.5,
            deg: 0.2,
            fusion: 0.5,
        }
    }
}

/// The computed terms of L_total; `None` for a term not computed.
#[derive(Clone, Debug, Default)]
pub struct LossTerms {
    pub cm: Option<Tensor>,
    pub im: Option<Tensor>,
    pub deg: Option<Tensor>,
    pub fusion: Option<Tensor>,
}

impl LossWeights {
    /// Eq. 6 as printed: `1.0 L_CM + 0.5 L_IM + 0.2 L_deg`, no L_FUSION.
    pub fn paper() -> Self {
        LossWeights {
            fusion: 0.0,
            ..LossWeights::default()
        }
    }

    /// The weighted sum of the computed terms whose weight is not 0. A term with a non-zero
    /// weight that was not computed is an error (a switched-on loss silently missing would
    /// change the experiment), as is a sum with no term at all.
    pub fn total(&self, terms: &LossTerms) -> Result<Tensor> {
        const OP: &str = "LossWeights::total";
        let parts = [
            ("cm", self.cm, &terms.cm),
            ("im", self.im, &terms.im),
            ("deg", self.deg, &terms.deg),
            ("fusion", self.fusion, &terms.fusion),
        ];
        let mut total: Option<Tensor> = None;
        for (name, w, t) in parts {
            if !w.is_finite() {
                return Err(Error::invalid(
                    OP,
                    format!("weight {name} must be finite, got {w}"),
                ));
            }
            if w == 0.0 {
                continue;
            }
            let t = t.as_ref().ok_or_else(|| {
                Error::invalid(
                    OP,
                    format!("term {name} has weight {w} but was not computed"),
                )
            })?;
            let wt = t.mul_scalar(w)?;
            total = Some(match total {
                None => wt,
                Some(s) => s.add(&wt)?,
            });
        }
        total.ok_or_else(|| Error::invalid(OP, "every term is off: nothing to optimise"))
    }
}
