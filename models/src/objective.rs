//! The pre-training objective L_total (paper 000 Eq. 6) on a model, with the related papers'
//! variants: L_CM with uniform, hard, debiased or soft-target negatives or a MoCo queue with a
//! momentum key encoder; multi-skeleton views as extra positives; L_IM; L_deg with joint and
//! frame masking; L_FUSION (our reading of the paper's undefined term, docs/method.md).
//!
//! One step: `terms = pretrainer.loss(&views, step, total)?`, `terms.total.backward()`, the
//! optimizer step, then `pretrainer.after_step()` (the key encoder's EMA and the queue
//! update). Every random choice (masks, the degraded branch's sensor drops) comes from a
//! generator keyed by (seed, step), so a resumed run draws the same ones.

use crate::data::degrade::Sensor;
use crate::encoder::EncoderOutput;
use crate::heads::Projection;
use crate::inputs::{sensor_name, Inputs, SENSORS};
use crate::losses::{
    self, ema_update, progressive_alpha, LossWeights, MocoQueue, Negatives, SoftTargets,
};
use crate::rcmcl::{Encoded, Rcmcl};
use engine::nn::ParamStore;
use engine::{Error, NoGradGuard, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const OP: &str = "Pretrainer";

/// Which parts of the skeleton L_deg hides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskConfig {
    /// Fraction of each sample's joints hidden in every frame (rounded, at least one when > 0).
    pub joint_ratio: f64,
    /// Fraction of each sample's frames hidden entirely.
    pub frame_ratio: f64,
}

impl Default for MaskConfig {
    fn default() -> Self {
        MaskConfig {
            joint_ratio: 0.3,
            frame_ratio: 0.2,
        }
    }
}

/// MoCo (paper 003): a queue of negatives per sensor and an EMA copy of the model for keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MocoConfig {
    pub queue: usize,
    pub momentum: f64,
}

impl Default for MocoConfig {
    fn default() -> Self {
        MocoConfig {
            queue: 4096,
            momentum: 0.999,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObjectiveConfig {
    /// The weights of L_CM, L_IM, L_deg and L_FUSION; 0 switches a term off.
    pub weights: LossWeights,
    /// InfoNCE temperature (0.07 in the paper).
    pub tau: f64,
    pub negatives: Negatives,
    /// Barlow Twins off-diagonal weight (0.0051).
    pub barlow_lambda: f64,
    /// Soft cross-modal targets (paper 002) instead of one-hot ones; alpha follows the
    /// progressive schedule 0.9 -> 0.1 over the run.
    pub soft_targets: Option<SoftTargets>,
    /// A MoCo queue and momentum key encoder (paper 003) for L_CM instead of in-batch negatives.
    pub moco: Option<MocoConfig>,
    /// Extra skeleton conventions in the inputs are positives of the primary one (paper 003),
    /// added to L_CM with its weight.
    pub multi_view: bool,
    pub mask: MaskConfig,
    /// Probability that each sensor is dropped from a sample in L_FUSION's degraded branch
    /// (at least one sensor is always kept).
    pub fusion_drop: f64,
    pub seed: u64,
}

impl Default for ObjectiveConfig {
    /// The paper's setting: weights 1.0 / 0.5 / 0.2 (+ L_FUSION), tau 0.07, uniform negatives,
    /// lambda 0.0051.
    fn default() -> Self {
        ObjectiveConfig {
            weights: LossWeights::default(),
            tau: 0.07,
            negatives: Negatives::Uniform,
            barlow_lambda: engine::ops::contrastive::BARLOW_LAMBDA,
            soft_targets: None,
            moco: None,
            multi_view: false,
            mask: MaskConfig::default(),
            fusion_drop: 0.3,
            seed: 0,
        }
    }
}

/// The loss of one step: the weighted total and each term before weighting.
#[derive(Clone, Debug)]
pub struct LossTerms {
    pub total: Tensor,
    /// ("cm" | "mv" | "im" | "deg" | "fusion", unweighted scalar), in that order, for the
    /// terms that ran.
    pub terms: Vec<(&'static str, Tensor)>,
    /// Mean gate value per sensor in the degraded branch (when L_FUSION ran with AMG).
    pub gate_means: [Option<f64>; 3],
}

impl LossTerms {
    /// The unweighted value of term `name`, if it ran.
    pub fn value(&self, name: &str) -> Result<Option<f64>> {
        self.terms
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.item())
            .transpose()
    }
}

/// The momentum key encoder and its queues.
struct KeyEncoder {
    store: ParamStore,
    model: Rcmcl,
    queues: Vec<MocoQueue>,
    momentum: f64,
    /// Keys of the last step, enqueued by `after_step` (the loss still reads the old queue).
    pending: Vec<(usize, Tensor)>,
}

/// A model with its pre-training objective.
pub struct Pretrainer {
    model: Rcmcl,
    config: ObjectiveConfig,
    key: Option<KeyEncoder>,
}

impl Pretrainer {
    pub fn new(model: Rcmcl, config: ObjectiveConfig) -> Result<Pretrainer> {
        let w = config.weights;
        for (name, v) in [
            ("cm", w.cm),
            ("im", w.im),
            ("deg", w.deg),
            ("fusion", w.fusion),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(
                    OP,
                    format!("loss weight {name} must be finite and >= 0, got {v}"),
                ));
            }
        }
        if !(config.tau > 0.0 && config.tau.is_finite()) {
            return Err(Error::invalid(
                OP,
                format!("tau must be positive, got {}", config.tau),
            ));
        }
        if !(0.0..1.0).contains(&config.fusion_drop) {
            return Err(Error::invalid(
                OP,
                format!("fusion_drop must be in [0, 1), got {}", config.fusion_drop),
            ));
        }
        for (name, r) in [
            ("joint_ratio", config.mask.joint_ratio),
            ("frame_ratio", config.mask.frame_ratio),
        ] {
            if !(0.0..1.0).contains(&r) {
                return Err(Error::invalid(
                    OP,
                    format!("mask {name} must be in [0, 1), got {r}"),
                ));
            }
        }
        let key = match config.moco {
            Some(moco) => Some(KeyEncoder::new(&model, moco, config.seed)?),
            None => None,
        };
        Ok(Pretrainer { model, config, key })
    }

    pub fn model(&self) -> &Rcmcl {
        &self.model
    }

    pub fn config(&self) -> &ObjectiveConfig {
        &self.config
    }

    /// The momentum key encoder's store (checkpointed beside the model), with MoCo.
    pub fn key_store(&self) -> Option<&ParamStore> {
        self.key.as_ref().map(|k| &k.store)
    }

    /// The MoCo queues (keys and write position per sensor), with MoCo.
    pub fn queues(&self) -> Option<&[MocoQueue]> {
        self.key.as_ref().map(|k| k.queues.as_slice())
    }

    /// Mutable queues, to restore them from a checkpoint.
    pub fn queues_mut(&mut self) -> Option<&mut [MocoQueue]> {
        self.key.as_mut().map(|k| k.queues.as_mut_slice())
    }

    /// L_total for one step. `views` holds one view, or two when L_IM is on (two augmentations
    /// of the same samples). `step` of `total_steps` keys the random masks and the soft-target
    /// schedule.
    pub fn loss(&mut self, views: &[Inputs], step: usize, total_steps: usize) -> Result<LossTerms> {
        let cfg = self.config.clone();
        let w = cfg.weights;
        let v1 = views
            .first()
            .ok_or_else(|| Error::invalid(OP, "no input view"))?;
        let v2 = views.get(1);
        if w.im > 0.0 && v2.is_none() {
            return Err(Error::invalid(
                OP,
                "L_IM needs two augmented views of the batch",
            ));
        }
        let batch = v1.batch_size()?;
        let mut rng = ChaCha8Rng::seed_from_u64(step_seed(cfg.seed, step as u64));
        let model = &self.model;
        let e1 = model.encode(v1)?;
        let p1 = project_all(model, &e1)?;
        let mut terms: Vec<(&'static str, Tensor)> = Vec::new();
        let mut total: Option<Tensor> = None;
        let mut add = |name: &'static str, weight: f64, t: Tensor| -> Result<()> {
            let weighted = t.mul_scalar(weight)?;
            total = Some(match total.take() {
                Some(acc) => acc.add(&weighted)?,
                None => weighted,
            });
            terms.push((name, t));
            Ok(())
        };

        if w.cm > 0.0 {
            let present: Vec<usize> = (0..3).filter(|&i| p1[i].is_some()).collect();
            if present.len() < 2 {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "L_CM needs at least two sensors; the inputs have {}",
                        names(&present)
                    ),
                ));
            }
            let h: Vec<&Tensor> = present
                .iter()
                .map(|&i| &p1[i].as_ref().expect("present").normalized)
                .collect();
            let cm = if let Some(key) = &mut self.key {
                key.loss(v1, &present, &h, cfg.tau)?
            } else if let Some(soft) = &cfg.soft_targets {
                let alpha = progressive_alpha(step, total_steps.max(1), 0.9, 0.1);
                losses::cross_modal_soft(&h, cfg.tau, soft, alpha)?
            } else {
                losses::cross_modal(&h, cfg.tau, cfg.negatives)?
            };
            add("cm", w.cm, cm)?;
            if cfg.multi_view && !e1.extra_skeletons.is_empty() {
                let s = Sensor::Skeleton as usize;
                let primary = p1[s]
                    .as_ref()
                    .expect("a skeleton view exists")
                    .normalized
                    .clone();
                let mut views_h = vec![primary];
                for (_, out) in &e1.extra_skeletons {
                    views_h.push(model.project(Sensor::Skeleton, &out.pooled)?.normalized);
                }
                let refs: Vec<&Tensor> = views_h.iter().collect();
                add(
                    "mv",
                    w.cm,
                    losses::multi_view(&refs, cfg.tau, cfg.negatives)?,
                )?;
            }
        }

        let e2 = match (v2, w.im > 0.0 || w.fusion > 0.0) {
            (Some(v2), true) => Some(model.encode(v2)?),
            _ => None,
        };
        if w.im > 0.0 {
            let e2 = e2.as_ref().expect("checked above: two views");
            let p2 = project_all(model, e2)?;
            let pairs: Vec<(&Tensor, &Tensor)> = (0..3)
                .filter_map(|i| match (&p1[i], &p2[i]) {
                    (Some(a), Some(b)) => Some((&a.raw, &b.raw)),
                    _ => None,
                })
                .collect();
            if pairs.is_empty() {
                return Err(Error::invalid(
                    OP,
                    "L_IM needs a sensor present in both views",
                ));
            }
            add("im", w.im, losses::intra_modal(&pairs, cfg.barlow_lambda)?)?;
        }

        let mut masked_skeleton: Option<EncoderOutput> = None;
        if w.deg > 0.0 {
            let (format, clean) = v1
                .skeletons
                .first()
                .ok_or_else(|| Error::invalid(OP, "L_deg needs the skeleton in the inputs"))?;
            let masked = mask_skeleton(clean, cfg.mask, &mut rng)?;
            let z = model.skeleton.forward(&masked, *format)?;
            let reconstruction = model.decoder.forward(&z.pooled)?;
            if reconstruction.dims() != clean.dims() {
                return Err(Error::shape(
                    OP,
                    &[reconstruction.dims(), clean.dims()],
                    "D_S reconstructs a sequence of the model's DataShape; the skeleton input differs",
                ));
            }
            add(
                "deg",
                w.deg,
                losses::degradation(&reconstruction, clean, None)?,
            )?;
            masked_skeleton = Some(z);
        }

        let mut gate_means = [None; 3];
        if w.fusion > 0.0 && model.gate.is_some() {
            // The degraded branch: the masked skeleton's feature (or the second view's), the
            // second view of the other sensors, and random per-sample sensor drops.
            let source = e2.as_ref().unwrap_or(&e1);
            let mut z = source.z.clone();
            if let Some(ms) = masked_skeleton {
                z[Sensor::Skeleton as usize] = Some(ms);
            }
            let present: Vec<usize> = (0..3).filter(|&i| z[i].is_some()).collect();
            let drops = drop_presence(&present, batch, cfg.fusion_drop, &mut rng);
            let mut presence: [Option<Tensor>; 3] = [None, None, None];
            for &i in &present {
                let like = &z[i].as_ref().expect("present").pooled;
                let mut p = Tensor::from_vec(drops[i].clone(), [batch], engine::Device::Cpu)?
                    .to_dtype(like.dtype())?
                    .to_device(like.device())?;
                if let Some(given) = &source.presence[i] {
                    p = p.mul(given)?;
                }
                presence[i] = Some(p);
            }
            let degraded = Encoded {
                z,
                extra_skeletons: Vec::new(),
                presence,
            };
            let fused = model.fuse(&degraded)?;
            let hf = model.fusion_head.forward(&fused.fused)?.normalized;
            let clean: Vec<&Tensor> = (0..3)
                .filter_map(|i| p1[i].as_ref().map(|p| &p.normalized))
                .collect();
            add("fusion", w.fusion, losses::fusion(&hf, &clean, cfg.tau)?)?;
            for (slot, g) in gate_means.iter_mut().zip(&fused.gates) {
                if let Some(g) = g {
                    *slot = Some(g.mean_all()?.item()?);
                }
            }
        }

        let total = total.ok_or_else(|| {
            Error::invalid(
                OP,
                "every loss term is switched off (all weights 0, or L_FUSION without AMG)",
            )
        })?;
        Ok(LossTerms {
            total,
            terms,
            gate_means,
        })
    }

    /// After the optimizer step: the key encoder follows the model (EMA) and this step's keys
    /// enter the queues. A no-op without MoCo.
    pub fn after_step(&mut self) -> Result<()> {
        if let Some(key) = &mut self.key {
            ema_update(&key.store, self.model.store(), key.momentum)?;
            for (i, k) in key.pending.drain(..) {
                key.queues[i].enqueue(&k)?;
            }
        }
        Ok(())
    }
}

/// Supervised cross-entropy of C(Z_fusion) (fine-tuning, linear probes and the supervised
/// fusion baseline).
pub fn supervised_loss(model: &Rcmcl, inputs: &Inputs, labels: &Tensor) -> Result<Tensor> {
    let logits = model.classify(inputs)?;
    losses::classification(&logits, &labels.to_device(logits.device())?)
}

impl KeyEncoder {
    fn new(model: &Rcmcl, moco: MocoConfig, seed: u64) -> Result<KeyEncoder> {
        if !(0.0..1.0).contains(&moco.momentum) || moco.queue == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "MoCo needs momentum in [0, 1) and a non-empty queue, got {} and {}",
                    moco.momentum, moco.queue
                ),
            ));
        }
        let src = model.store();
        let store = ParamStore::with_seed(src.seed())
            .with_dtype(src.dtype())
            .with_device(src.device());
        let key_model = Rcmcl::new(&store, model.config())?;
        // Momentum 0 copies: the key encoder starts as the model.
        ema_update(&store, src, 0.0)?;
        let dim = model.config().proj_dim;
        let queues = (0..3)
            .map(|i| {
                MocoQueue::new(
                    dim,
                    moco.queue,
                    seed ^ (0x6d6f_636f + i as u64),
                    src.dtype(),
                    src.device(),
                )
            })
            .collect::<Result<_>>()?;
        Ok(KeyEncoder {
            store,
            model: key_model,
            queues,
            momentum: moco.momentum,
            pending: Vec::new(),
        })
    }

    /// L_CM with queues: for every pair (i, j), the queries of i against the key of j and
    /// sensor j's queue, and the other way round, averaged.
    fn loss(
        &mut self,
        inputs: &Inputs,
        present: &[usize],
        h: &[&Tensor],
        tau: f64,
    ) -> Result<Tensor> {
        let keys: Vec<Tensor> = {
            let _guard = NoGradGuard::new();
            let e = self.model.encode(inputs)?;
            present
                .iter()
                .map(|&i| {
                    let z = e.z[i].as_ref().expect("same inputs as the model's");
                    Ok(self
                        .model
                        .project(SENSORS[i], &z.pooled)?
                        .normalized
                        .detach())
                })
                .collect::<Result<_>>()?
        };
        let mut total: Option<Tensor> = None;
        for a in 0..present.len() {
            for b in a + 1..present.len() {
                let (i, j) = (present[a], present[b]);
                let ij = self.queues[j].loss(h[a], &keys[b], tau)?;
                let ji = self.queues[i].loss(h[b], &keys[a], tau)?;
                let pair = ij.add(&ji)?.mul_scalar(0.5)?;
                total = Some(match total {
                    Some(t) => t.add(&pair)?,
                    None => pair,
                });
            }
        }
        self.pending = present.iter().copied().zip(keys).collect();
        total.ok_or_else(|| Error::invalid(OP, "L_CM needs at least two sensors"))
    }
}

fn project_all(model: &Rcmcl, e: &Encoded) -> Result<[Option<Projection>; 3]> {
    let mut out: [Option<Projection>; 3] = [None, None, None];
    for (i, &s) in SENSORS.iter().enumerate() {
        if let Some(z) = e.pooled(s) {
            out[i] = Some(model.project(s, z)?);
        }
    }
    Ok(out)
}

fn names(present: &[usize]) -> String {
    let n: Vec<&str> = present.iter().map(|&i| sensor_name(SENSORS[i])).collect();
    format!("{n:?}")
}

/// A seed for step `step` of a run seeded `seed` (splitmix64 of both).
fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The skeleton (B, T, M, J, C) with, per sample, `round(joint_ratio * J)` random joints hidden
/// in every frame and `round(frame_ratio * T)` random frames hidden (set to 0).
pub fn mask_skeleton(x: &Tensor, cfg: MaskConfig, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let &[b, t, m, j, _] = x.dims() else {
        return Err(Error::shape(
            "mask_skeleton",
            &[x.dims()],
            "expected a skeleton batch (B, T, M, J, C)",
        ));
    };
    let hide = |ratio: f64, n: usize| -> usize {
        if ratio <= 0.0 {
            0
        } else {
            ((ratio * n as f64).round() as usize).clamp(1, n.saturating_sub(1).max(1))
        }
    };
    let (hj, ht) = (hide(cfg.joint_ratio, j), hide(cfg.frame_ratio, t));
    let mut keep = vec![1f64; b * t * m * j];
    for s in 0..b {
        let joints = rand::seq::index::sample(rng, j, hj);
        let frames = rand::seq::index::sample(rng, t, ht);
        for f in 0..t {
            let frame_gone = frames.iter().any(|x| x == f);
            for body in 0..m {
                for jj in 0..j {
                    if frame_gone || joints.iter().any(|x| x == jj) {
                        keep[((s * t + f) * m + body) * j + jj] = 0.0;
                    }
                }
            }
        }
    }
    let mask = Tensor::from_vec(keep, [b, t, m, j, 1], engine::Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())?;
    x.mul(&mask)
}

/// Per present sensor, a (B,) vector of 1 (kept) / 0 (dropped): each sensor of each sample
/// dropped with probability `p`, and one random sensor kept when all would go.
fn drop_presence(present: &[usize], batch: usize, p: f64, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let rows: Vec<[f64; 3]> = (0..batch)
        .map(|_| {
            let gone: Vec<bool> = present.iter().map(|_| rng.gen::<f64>() < p).collect();
            let keep = rng.gen_range(0..present.len().max(1));
            let all_gone = gone.iter().all(|&g| g);
            let mut row = [1.0; 3];
            for (k, &i) in present.iter().enumerate() {
                if gone[k] && !(all_gone && k == keep) {
                    row[i] = 0.0;
                }
            }
            row
        })
        .collect();
    (0..3)
        .map(|i| rows.iter().map(|r| r[i]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::DType;

    #[test]
    fn masks_hide_the_requested_fraction() {
        let x = Tensor::ones([3, 10, 1, 20, 3], DType::F64, engine::Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cfg = MaskConfig {
            joint_ratio: 0.25,
            frame_ratio: 0.2,
        };
        let y = mask_skeleton(&x, cfg, &mut rng).unwrap();
        let v = y.to_vec::<f64>().unwrap();
        for s in 0..3 {
            let sample = &v[s * 600..(s + 1) * 600];
            let kept = sample.iter().filter(|&&e| e == 1.0).count() / 3;
            // 5 joints and 2 frames hidden: 8 frames x 15 joints remain.
            assert_eq!(kept, 8 * 15, "sample {s}");
        }
    }

    #[test]
    fn fusion_drops_keep_one_sensor() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let d = drop_presence(&[0, 1, 2], 500, 0.9, &mut rng);
        let lost = (0..500).find(|&s| d.iter().all(|sensor| sensor[s] == 0.0));
        assert_eq!(lost, None, "a sample lost every sensor");
        let dropped = (0..3).map(|i| d[i].iter().filter(|&&x| x == 0.0).count());
        assert!(
            dropped.sum::<usize>() > 500,
            "p = 0.9 must drop most sensors"
        );
    }
}
