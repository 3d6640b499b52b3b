//! E_P, the point-cloud sequence encoder (PointNet++ per frame, temporal transformer).
//!
//! Paper 000 (section III-A c) only says "a PointNet-like structure for local geometric
//! feature aggregation and an attention-based mechanism for temporal sequence modeling", a
//! "PointNet++ backbone with temporal attention modules". Our reading:
//!
//! 1. Each clip `(T, P, 3)` is centred: the mean of all its points over all its non-empty
//!    frames is subtracted (one translation per clip, so the motion between frames and the
//!    metric scale survive; a frame whose points are all zero, a dropped sensor, is left out of
//!    the mean and stays all zero, i.e. a degenerate cloud at the clip centre).
//! 2. Per frame (T folded into the batch), two PointNet++ set-abstraction levels
//!    ([`set_abstraction`]; radii in metres), then a global shared MLP on the level-2 centres'
//!    `(xyz, features)` (xyz in centred metres, not divided by a radius) and a max-pool over
//!    the centres: one feature per frame.
//! 3. A linear map to `d_model`, a learned positional embedding `(max_frames, d_model)`,
//!    `layers` pre-norm transformer layers ([`temporal`]) in which no frame attends to an empty
//!    frame (a key padding mask), and a linear head to `out_dim` per frame: `per_time`
//!    `(B, T, out_dim)`; `pooled` is its mean over T (empty frames included, so the pooled
//!    feature is exactly the mean of `per_time`).
//!
//! Farthest point sampling starts at index 0 of each frame (no random start), so the encoder
//! is a deterministic function of the points; it is invariant to translating the clip and
//! equivariant to nothing else by design (point order can change the sampled centres).

pub mod set_abstraction;
pub mod temporal;

pub use set_abstraction::SetAbstractionConfig;

use crate::EncoderOutput;
use engine::nn::{Dropout, Linear, Module, ParamPath};
use engine::ops::pointnet::neighbour_max_pool;
use engine::{Error, Result, Tensor};
use set_abstraction::{SetAbstraction, SharedMlp};
use temporal::TemporalEncoder;

const OP: &str = "PointEncoder";

/// `Error::Invalid` naming the encoder.
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(OP, msg)
}

/// `Error::Shape` naming the encoder and the offending shapes.
pub(crate) fn shape_error(shapes: &[&[usize]], msg: impl Into<String>) -> Error {
    Error::shape(OP, shapes, msg)
}

/// The sizes of E_P. Radii are in metres of the centred clip (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct PointEncoderConfig {
    /// First set-abstraction level (input: xyz only).
    pub sa1: SetAbstractionConfig,
    /// Second level (input: xyz and level-1 features); `sa2.centres <= sa1.centres`.
    pub sa2: SetAbstractionConfig,
    /// Shared MLP on the level-2 centres' (xyz, features) before the global max-pool; its last
    /// width is the per-frame feature size.
    pub global_mlp: Vec<usize>,
    /// Width of the temporal transformer.
    pub d_model: usize,
    /// Attention heads (`d_model` must be a multiple).
    pub heads: usize,
    /// Transformer layers (0 is allowed: embedding, positions, final LayerNorm, head).
    pub layers: usize,
    /// Hidden width of each transformer MLP, as a multiple of `d_model`.
    pub mlp_ratio: usize,
    /// Length of the positional embedding: the longest clip the encoder accepts.
    pub max_frames: usize,
    /// Dropout on the embedded sequence, the attention weights and the residual branches.
    pub dropout: f64,
    /// Width of `Z_P` (256 in the paper's setting).
    pub out_dim: usize,
}

impl PointEncoderConfig {
    /// The preset names [`PointEncoderConfig::preset`] accepts.
    pub const PRESETS: [&'static str; 4] = ["tiny", "small", "base", "paper"];

    /// `tiny` (the `tiny` synthetic set: 8 frames of 64 points; tests and smoke runs), `small`
    /// (the `small` set: 32 frames of 256 points; CPU training), `base` (512 points, a wider
    /// transformer; GPU), `paper` (the `paper` set's 2048 points, PointNet++ SSG's widths
    /// 128/256/1024; GPU). Each radius holds about `nsample` points (sa1) or level-1 centres
    /// (sa2) of a person 2-4 m from the camera at the preset's density: measured on the
    /// synthetic `tiny` and `small` sets, scaled by area for `base` and `paper`
    /// (docs/models.md).
    pub fn preset(name: &str) -> Result<Self> {
        let sa = |centres, radius, nsample, mlp: &[usize]| SetAbstractionConfig {
            centres,
            radius,
            nsample,
            mlp: mlp.to_vec(),
        };
        let cfg = match name {
            "tiny" => PointEncoderConfig {
                sa1: sa(16, 0.2, 8, &[16, 32]),
                sa2: sa(4, 0.6, 8, &[32, 64]),
                global_mlp: vec![64],
                d_model: 64,
                heads: 2,
                layers: 1,
                mlp_ratio: 2,
                max_frames: 16,
                dropout: 0.0,
                out_dim: 256,
            },
            "small" => PointEncoderConfig {
                sa1: sa(32, 0.12, 12, &[32, 32]),
                sa2: sa(8, 0.35, 8, &[64, 128]),
                global_mlp: vec![128, 256],
                d_model: 128,
                heads: 4,
                layers: 2,
                mlp_ratio: 2,
                max_frames: 64,
                dropout: 0.1,
                out_dim: 256,
            },
            "base" => PointEncoderConfig {
                sa1: sa(128, 0.1, 16, &[64, 64, 128]),
                sa2: sa(32, 0.25, 16, &[128, 128, 256]),
                global_mlp: vec![256, 512],
                d_model: 256,
                heads: 4,
                layers: 2,
                mlp_ratio: 4,
                max_frames: 64,
                dropout: 0.1,
                out_dim: 256,
            },
            "paper" => PointEncoderConfig {
                sa1: sa(512, 0.07, 32, &[64, 64, 128]),
                sa2: sa(128, 0.25, 64, &[128, 128, 256]),
                global_mlp: vec![256, 512, 1024],
                d_model: 512,
                heads: 8,
                layers: 4,
                mlp_ratio: 4,
                max_frames: 64,
                dropout: 0.1,
                out_dim: 256,
            },
            _ => {
                return Err(invalid(format!(
                    "unknown preset {name:?} (expected one of {:?})",
                    Self::PRESETS
                )))
            }
        };
        Ok(cfg)
    }

    /// Rejects configurations that cannot build an encoder.
    pub fn check(&self) -> Result<()> {
        self.sa1.check("sa1")?;
        self.sa2.check("sa2")?;
        let bad = |msg: String| Err(invalid(msg));
        if self.sa2.centres > self.sa1.centres {
            return bad(format!(
                "sa2 picks {} centres from the {} of sa1",
                self.sa2.centres, self.sa1.centres
            ));
        }
        if self.global_mlp.is_empty() || self.global_mlp.contains(&0) {
            return bad(format!(
                "global_mlp needs positive widths, got {:?}",
                self.global_mlp
            ));
        }
        if self.d_model == 0 || self.heads == 0 || self.d_model % self.heads != 0 {
            return bad(format!(
                "d_model {} must be a positive multiple of heads {}",
                self.d_model, self.heads
            ));
        }
        if self.mlp_ratio == 0 || self.max_frames == 0 || self.out_dim == 0 {
            return bad(format!(
                "mlp_ratio {}, max_frames {} and out_dim {} must be positive",
                self.mlp_ratio, self.max_frames, self.out_dim
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }
}

/// E_P: points `(B, T, P, 3)` to `Z_P` (see the module docs). Parameters (under the path it is
/// built at): `sa1.mlp.<i>.{conv,bn}.*`, `sa2.mlp.<i>.*`, `global.mlp.<i>.*`, `embed.*`,
/// `pos_embedding`, `temporal.layer<i>.*`, `temporal.norm.*`, `head.*`.
pub struct PointEncoder {
    cfg: PointEncoderConfig,
    sa1: SetAbstraction,
    sa2: SetAbstraction,
    global: SharedMlp,
    embed: Linear,
    pos_embedding: Tensor,
    dropout: Option<Dropout>,
    temporal: TemporalEncoder,
    head: Linear,
}

impl PointEncoder {
    /// Registers the parameters under `path`. The positional embedding starts as N(0, 0.02^2)
    /// (ViT's choice); the linear layers use PyTorch's defaults.
    pub fn new(path: &ParamPath, cfg: &PointEncoderConfig) -> Result<Self> {
        cfg.check()?;
        let sa1 = SetAbstraction::new(&path.sub("sa1"), &cfg.sa1, 0, "sa1")?;
        let c1 = cfg.sa1.out_channels();
        let sa2 = SetAbstraction::new(&path.sub("sa2"), &cfg.sa2, c1, "sa2")?;
        let c2 = cfg.sa2.out_channels();
        let global = SharedMlp::new(&path.sub("global").sub("mlp"), 3 + c2, &cfg.global_mlp)?;
        let cg = *cfg.global_mlp.last().unwrap_or(&0);
        let embed = Linear::new(&path.sub("embed"), cg, cfg.d_model, true)?;
        let pos = Tensor::rand_normal(
            [cfg.max_frames, cfg.d_model],
            0.0,
            0.02,
            path.seed("pos_embedding"),
            path.dtype(),
            path.device(),
        )?;
        let pos_embedding = path.param("pos_embedding", pos)?;
        let dropout = (cfg.dropout > 0.0)
            .then(|| Dropout::new(&path.sub("dropout"), cfg.dropout))
            .transpose()?;
        let temporal = TemporalEncoder::new(
            &path.sub("temporal"),
            cfg.d_model,
            cfg.heads,
            cfg.layers,
            cfg.mlp_ratio,
            cfg.dropout,
        )?;
        let head = Linear::new(&path.sub("head"), cfg.d_model, cfg.out_dim, true)?;
        Ok(PointEncoder {
            cfg: cfg.clone(),
            sa1,
            sa2,
            global,
            embed,
            pos_embedding,
            dropout,
            temporal,
            head,
        })
    }

    /// The width of `pooled` and `per_time` (`cfg.out_dim`).
    pub fn out_dim(&self) -> usize {
        self.cfg.out_dim
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &PointEncoderConfig {
        &self.cfg
    }

    /// Centres each clip of `points` `(B, T, P, 3)` (see the module docs) and returns the
    /// centred points and the frame validity `(B, T)` (1 for a frame with a non-zero
    /// coordinate, 0 for an all-zero frame; no gradient).
    pub fn centre(points: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, p) = match points.dims() {
            &[b, t, p, 3] => (b, t, p),
            d => return Err(shape_error(&[d], "points must be (B, T, P, 3)")),
        };
        let zero = Tensor::scalar(0.0, points.dtype(), points.device())?;
        let valid = points.abs()?.max(&[2, 3], false)?.gt(&zero)?.detach();
        let valid4 = valid.reshape([b, t, 1, 1])?;
        let count = valid
            .sum(&[1], false)?
            .mul_scalar(p as f64)?
            .clamp(1.0, f64::MAX)?
            .reshape([b, 1, 1, 1])?;
        let centre = points.mul(&valid4)?.sum(&[1, 2], true)?.div(&count)?;
        Ok((points.sub(&centre)?.mul(&valid4)?, valid))
    }

    /// `points` `(B, T, P, 3)` in metres (camera coordinates, as the loader gives them), with
    /// `1 <= T <= max_frames` and `P >= sa1.centres`. Returns `per_time` `(B, T, out_dim)` and
    /// `pooled` `(B, out_dim)`, its mean over T.
    pub fn forward(&self, points: &Tensor) -> Result<EncoderOutput> {
        let cfg = &self.cfg;
        let (b, t, p) = match points.dims() {
            &[b, t, p, 3] if b >= 1 && t >= 1 => (b, t, p),
            d => {
                return Err(shape_error(
                    &[d],
                    "points must be (B, T, P, 3) with B, T >= 1",
                ))
            }
        };
        if t > cfg.max_frames {
            return Err(shape_error(
                &[points.dims()],
                format!(
                    "{t} frames exceed max_frames = {} (the positional embedding's length)",
                    cfg.max_frames
                ),
            ));
        }
        if p < cfg.sa1.centres {
            return Err(shape_error(
                &[points.dims()],
                format!(
                    "{p} points per frame are fewer than the {} centres of sa1",
                    cfg.sa1.centres
                ),
            ));
        }
        let n = b * t;
        let (centred, valid) = Self::centre(points)?;
        let xyz = centred.reshape([n, p, 3])?;
        let xyz_cm = xyz.permute(&[2, 0, 1])?.reshape([1, 3, n * p])?;
        let l1 = self.sa1.forward(&xyz.detach(), &xyz_cm, None)?;
        let l2 = self.sa2.forward(&l1.xyz, &l1.xyz_cm, Some(&l1.features))?;
        let m2 = cfg.sa2.centres;
        let c2 = l2.features.dims()[1];
        let g = self
            .global
            .forward(&Tensor::concat(&[&l2.xyz_cm, &l2.features], 1)?.reshape([3 + c2, n * m2])?)?;
        let cg = g.dims()[0];
        let (frame, _) = neighbour_max_pool(&g.reshape([1, cg, n, m2])?)?;
        let frame = frame.reshape([cg, n])?.permute(&[1, 0])?;
        let pos = self.pos_embedding.narrow(0, 0, t)?;
        let mut h = self.embed.forward(&frame.reshape([b, t, cg])?)?.add(&pos)?;
        if let Some(d) = &self.dropout {
            h = d.forward(&h)?;
        }
        let one = Tensor::scalar(1.0, valid.dtype(), valid.device())?;
        let padding = one.sub(&valid)?;
        let h = self.temporal.forward(&h, Some(&padding))?;
        let per_time = self.head.forward(&h)?;
        let pooled = per_time.mean(&[1], false)?;
        Ok(EncoderOutput { pooled, per_time })
    }
}
