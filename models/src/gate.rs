//! Adaptive Modality Gating (paper 000, Eq. 4 and 5) and the average fusion it is ablated
//! against (Table IV, configurations 1-5).
//!
//! Each present modality M gets a reliability score `G_M = sigmoid(W_G^M Z_M + b_G^M)` in
//! (0, 1), one per sample (or per time step, for Fig. 7's gate values over time), and the fused
//! feature is the gate-weighted mean `Z_fusion = sum_M G_M Z_M / sum_M G_M`. A dropped sensor
//! is handled two ways, which give the same result:
//! - the whole batch lacks the modality: pass `None` for its feature;
//! - some samples (or time steps) lack it: pass a presence mask, 1 where present and 0 where
//!   dropped; it multiplies the gate, so the missing feature (whatever finite values stand in
//!   for it) gets weight 0 in both sums.
//!
//! The modality order (e.g. R, S, P) is the caller's: the gate only knows indices, and its
//! parameters are named `m0`, `m1`, ... (or `shared` when one W_G serves every modality).

use engine::nn::{Linear, Module, ParamPath};
use engine::{Error, Result, Tensor};

/// The gate's size and whether modalities share W_G.
#[derive(Clone, Debug, PartialEq)]
pub struct AmgConfig {
    /// Feature size d of every modality (the encoders all output Z_M in R^d).
    pub dim: usize,
    /// Number of modalities (3: RGB-D, skeleton, point cloud).
    pub modalities: usize,
    /// One `(W_G, b_G)` for every modality (Eq. 4 as printed, without the superscript M)
    /// instead of one per modality.
    pub shared: bool,
}

impl AmgConfig {
    pub const PRESETS: [&'static str; 4] = ["tiny", "small", "paper", "paper-shared"];

    /// `tiny` (d = 32), `small` and `paper` (d = 256), all with 3 modalities and one gate per
    /// modality; `paper-shared` is `paper` with one W_G for all. Set `dim` to the encoders'
    /// feature size.
    pub fn preset(name: &str) -> Result<Self> {
        let (dim, shared) = match name {
            "tiny" => (32, false),
            "small" | "paper" => (256, false),
            "paper-shared" => (256, true),
            _ => {
                return Err(Error::invalid(
                    "AmgConfig::preset",
                    format!(
                        "unknown preset {name:?} (expected one of {:?})",
                        Self::PRESETS
                    ),
                ))
            }
        };
        Ok(AmgConfig {
            dim,
            modalities: 3,
            shared,
        })
    }
}

/// The AMG network θ_G: one `Linear(d, 1)` per modality (`m0.weight` `(1, d)`, `m0.bias`
/// `(1)`, ...) or a single shared one (`shared.weight`, `shared.bias`), PyTorch-initialised.
pub struct Amg {
    /// One per modality, or a single one when `shared`.
    layers: Vec<Linear>,
    cfg: AmgConfig,
}

/// The result of [`Amg::fuse`].
#[derive(Clone, Debug)]
pub struct Fusion {
    /// `(..., d)`: Z_fusion (Eq. 5).
    pub fused: Tensor,
    /// Per modality `(..., 1)`: the gate G_M times the presence (0 where dropped), `None` when
    /// the modality is absent from the whole batch. Unnormalised (each in [0, 1]), as plotted in
    /// Fig. 7; divide by their sum for the fusion weights.
    pub gates: Vec<Option<Tensor>>,
}

impl Amg {
    pub fn new(path: &ParamPath, cfg: &AmgConfig) -> Result<Self> {
        if cfg.dim == 0 || cfg.modalities == 0 {
            return Err(Error::invalid(
                "Amg",
                format!(
                    "dim and modalities must be > 0, got {cfg:?} (at '{}')",
                    path.prefix()
                ),
            ));
        }
        let layers = if cfg.shared {
            vec![Linear::new(&path.sub("shared"), cfg.dim, 1, true)?]
        } else {
            (0..cfg.modalities)
                .map(|m| Linear::new(&path.sub(&format!("m{m}")), cfg.dim, 1, true))
                .collect::<Result<_>>()?
        };
        Ok(Amg {
            layers,
            cfg: cfg.clone(),
        })
    }

    /// The gate layer of modality `m` (the shared one for every `m` when shared).
    fn layer(&self, m: usize) -> &Linear {
        &self.layers[if self.cfg.shared { 0 } else { m }]
    }

    pub fn config(&self) -> &AmgConfig {
        &self.cfg
    }

    fn check_count(&self, op: &'static str, what: &str, n: usize) -> Result<()> {
        if n != self.cfg.modalities {
            return Err(Error::invalid(
                op,
                format!(
                    "got {n} {what} for a gate over {} modalities (pass None for an absent one)",
                    self.cfg.modalities
                ),
            ));
        }
        Ok(())
    }

    /// Eq. 4: `G_M = sigmoid(W_G^M Z_M + b_G^M)` for each present modality. Features are
    /// `(..., d)` with any leading shape: `(B, d)` pooled, or `(B, T', d)` per time step for
    /// gate values over time. Each result is `(..., 1)`; `None` stays `None`.
    pub fn gates(&self, features: &[Option<&Tensor>]) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "Amg::gates";
        self.check_count(OP, "features", features.len())?;
        features
            .iter()
            .enumerate()
            .map(|(m, f)| {
                f.map(|z| {
                    if z.rank() < 2 || z.dims()[z.rank() - 1] != self.cfg.dim {
                        return Err(Error::shape(
                            OP,
                            &[z.dims()],
                            format!(
                                "modality {m}: expected features of shape (..., {}) with a batch dimension",
                                self.cfg.dim
                            ),
                        ));
                    }
                    self.layer(m).forward(z)?.sigmoid()
                })
                .transpose()
            })
            .collect()
    }

    /// Eq. 5: `Z_fusion = sum_M G_M Z_M / sum_M G_M` over the present modalities.
    ///
    /// `presence` is empty (everything present) or has one entry per modality: `Some(p)` with
    /// `p` of the features' leading shape `(...)` (or a prefix of it, e.g. `(B,)` for per-time
    /// features `(B, T', d)`, broadcast over time), 1 where the modality is present and 0 where
    /// dropped (values in [0, 1]); it multiplies G_M. A `None` feature contributes nothing (its
    /// presence entry is ignored). No modality at all, or a sample (time step) where every
    /// present modality has presence 0, is an error naming the sample; present features must
    /// all have the same shape.
    pub fn fuse(
        &self,
        features: &[Option<&Tensor>],
        presence: &[Option<&Tensor>],
    ) -> Result<Fusion> {
        const OP: &str = "Amg::fuse";
        self.check_count(OP, "features", features.len())?;
        let masks = check_fusion_inputs(OP, features, presence)?;
        let gates = self.gates(features)?;
        let weighted: Vec<Option<Tensor>> = gates
            .into_iter()
            .zip(&masks)
            .map(|(g, p)| match (g, p) {
                (Some(g), Some(p)) => g.mul(p).map(Some),
                (g, _) => Ok(g),
            })
            .collect::<Result<_>>()?;
        let fused = weighted_mean(features, &weighted)?;
        Ok(Fusion {
            fused,
            gates: weighted,
        })
    }
}

/// Average fusion, the baseline of ablation configurations 1-5: the mean of the present
/// modalities' features, `sum_M p_M Z_M / sum_M p_M`, with the same `features` / `presence`
/// conventions and errors as [`Amg::fuse`] (any number of modalities).
pub fn average_fusion(
    features: &[Option<&Tensor>],
    presence: &[Option<&Tensor>],
) -> Result<Tensor> {
    let masks = check_fusion_inputs("average_fusion", features, presence)?;
    weighted_mean(features, &masks)
}

/// Validates the features and presence masks shared by both fusions and returns, per
/// modality, the presence mask reshaped to broadcast against `(..., 1)` (None where no mask
/// was given or the modality is absent).
fn check_fusion_inputs(
    op: &'static str,
    features: &[Option<&Tensor>],
    presence: &[Option<&Tensor>],
) -> Result<Vec<Option<Tensor>>> {
    if !presence.is_empty() && presence.len() != features.len() {
        return Err(Error::invalid(
            op,
            format!(
                "{} presence masks for {} modalities (give none, or one entry per modality)",
                presence.len(),
                features.len()
            ),
        ));
    }
    let present: Vec<(usize, &Tensor)> = features
        .iter()
        .enumerate()
        .filter_map(|(m, f)| f.map(|f| (m, f)))
        .collect();
    let Some(&(first_m, first)) = present.first() else {
        return Err(Error::invalid(
            op,
            format!(
                "every modality is absent (all {} features are None): nothing to fuse",
                features.len()
            ),
        ));
    };
    if first.rank() < 2 {
        return Err(Error::shape(
            op,
            &[first.dims()],
            format!("modality {first_m}: features must be (..., d) with a batch dimension"),
        ));
    }
    for &(m, f) in &present[1..] {
        if f.dims() != first.dims() {
            return Err(Error::shape(
                op,
                &[first.dims(), f.dims()],
                format!("modalities {first_m} and {m} have features of different shapes"),
            ));
        }
    }
    let lead = &first.dims()[..first.rank() - 1];
    let positions: usize = lead.iter().product();
    // Per leading position: does any present modality keep it?
    let mut kept = vec![false; positions];
    let mut any_mask = false;
    let mut masks = vec![None; features.len()];
    for &(m, f) in &present {
        let Some(p) = presence.get(m).copied().flatten() else {
            kept.iter_mut().for_each(|k| *k = true);
            continue;
        };
        any_mask = true;
        let k = p.rank();
        if k == 0 || k > lead.len() || p.dims() != &lead[..k] {
            return Err(Error::shape(
                op,
                &[p.dims(), f.dims()],
                format!(
                    "modality {m}: the presence mask must have the features' leading shape {lead:?} or a prefix of it"
                ),
            ));
        }
        if p.dtype() != f.dtype() || p.device() != f.device() {
            return Err(Error::invalid(
                op,
                format!(
                    "modality {m}: the presence mask is {} on {}, the features {} on {}",
                    p.dtype(),
                    p.device(),
                    f.dtype(),
                    f.device()
                ),
            ));
        }
        let values = p.to_f64_vec()?;
        if let Some(bad) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::invalid(
                op,
                format!("modality {m}: presence values must be in [0, 1] (1 present, 0 dropped), got {bad}"),
            ));
        }
        let inner = positions / p.numel().max(1);
        for (i, k) in kept.iter_mut().enumerate() {
            if values[i / inner] != 0.0 {
                *k = true;
            }
        }
        // (prefix) -> (prefix, 1, ..., 1): broadcasts over the rest of (..., 1).
        let mut dims = p.dims().to_vec();
        dims.resize(first.rank(), 1);
        masks[m] = Some(p.detach().reshape(dims)?);
    }
    if any_mask {
        if let Some(i) = kept.iter().position(|k| !k) {
            return Err(Error::invalid(
                op,
                format!(
                    "every modality is absent for {} (presence 0 for all present modalities): nothing to fuse there",
                    describe_position(i, lead)
                ),
            ));
        }
    }
    Ok(masks)
}

/// "sample 3", "sample 3, time step 5", or "position [3, 5, 1]" for the flat index `i` of
/// leading shape `lead`.
fn describe_position(mut i: usize, lead: &[usize]) -> String {
    let mut idx = vec![0; lead.len()];
    for k in (0..lead.len()).rev() {
        idx[k] = i % lead[k];
        i /= lead[k];
    }
    match idx.as_slice() {
        [b] => format!("sample {b}"),
        [b, t] => format!("sample {b}, time step {t}"),
        _ => format!("position {idx:?} of leading shape {lead:?}"),
    }
}

/// `sum_M w_M Z_M / sum_M w_M` over the present modalities, `w_M` `(..., 1)`-broadcastable,
/// `None` meaning weight 1. The denominator is floored at 1e-30 so gates that all underflow
/// to 0 (sigmoid of logits below about -100 in f32) give 0 rather than NaN; callers have
/// already rejected positions whose presence is 0 everywhere.
fn weighted_mean(features: &[Option<&Tensor>], weights: &[Option<Tensor>]) -> Result<Tensor> {
    let mut numerator: Option<Tensor> = None;
    let mut denominator: Option<Tensor> = None;
    let mut unweighted = 0usize;
    for (f, w) in features.iter().zip(weights) {
        let Some(z) = f else { continue };
        let term = match w {
            Some(w) => {
                denominator = Some(match denominator {
                    Some(d) => d.add(w)?,
                    None => w.clone(),
                });
                z.mul(w)?
            }
            None => {
                unweighted += 1;
                (*z).clone()
            }
        };
        numerator = Some(match numerator {
            Some(n) => n.add(&term)?,
            None => term,
        });
    }
    let numerator = numerator.ok_or_else(|| Error::invalid("fusion", "no modality present"))?;
    match denominator {
        None => numerator.div_scalar(unweighted as f64),
        Some(d) => {
            let d = if unweighted > 0 {
                d.add_scalar(unweighted as f64)?
            } else {
                let floor = Tensor::scalar(1e-30, d.dtype(), d.device())?;
                d.maximum(&floor)?
            };
            numerator.div(&d)
        }
    }
}
