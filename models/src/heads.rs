//! Projection heads H_M, the skeleton decoder D_S and the classifier C (paper 000, section III).
//!
//! - [`ProjectionHead`] maps an encoder feature Z_M into the shared contrastive space
//!   (`h_M = H_M(Z_M)`): it returns both the raw projection (what Barlow Twins, L_IM, wants: its
//!   own batch standardisation would undo a normalisation) and the L2-normalised one (what the
//!   InfoNCE of L_CM compares by cosine similarity).
//! - [`SkeletonDecoder`] is the light decoder of the degradation-simulation loss L_deg (Eq. 3):
//!   from the feature Z'_S of a masked skeleton back to the whole clean sequence.
//! - [`Classifier`] is the linear layer C on Z_fusion (linear probe and fine-tuning).

use engine::nn::{Linear, Mlp, MlpConfig, Module, ParamPath};
use engine::{Error, Result, Tensor};

/// Checks that `z` is `(..., dim)` with at least one leading dimension.
fn check_features(op: &'static str, z: &Tensor, dim: usize) -> Result<()> {
    if z.rank() < 2 || z.dims()[z.rank() - 1] != dim {
        return Err(Error::shape(
            op,
            &[z.dims()],
            format!("expected features of shape (..., {dim}) with a batch dimension"),
        ));
    }
    Ok(())
}

/// The two forms of a projection `h_M`: the losses need different ones.
#[derive(Clone, Debug)]
pub struct Projection {
    /// `(..., out)` before normalisation: the input of Barlow Twins (L_IM), which standardises
    /// each dimension over the batch itself.
    pub raw: Tensor,
    /// `raw` with unit-L2-norm rows: the input of InfoNCE (L_CM), where the dot product is the
    /// cosine similarity the temperature is tuned for.
    pub normalized: Tensor,
}

/// H_M: `Linear(in, hidden, no bias) -> BatchNorm1d -> ReLU -> Linear(hidden, out)`, the
/// SimCLR / Barlow Twins style projector the paper's "non-linear projection head" refers to.
///
/// Parameters (engine `Mlp` names): `layers.0.linear.weight`, `layers.0.norm.{weight, bias,
/// running_mean, running_var}`, `output.weight`, `output.bias`. The hidden Linear has no bias
/// because the batch norm after it would cancel it. Batch norm follows the store's train/eval
/// flag: in training it uses batch statistics, so a batch needs at least two rows.
pub struct ProjectionHead {
    mlp: Mlp,
    in_dim: usize,
    out_dim: usize,
}

impl ProjectionHead {
    /// The paper's embedding size (`out_dim = 128`) is the caller's choice; any sizes > 0.
    pub fn new(path: &ParamPath, in_dim: usize, hidden: usize, out_dim: usize) -> Result<Self> {
        if in_dim == 0 || hidden == 0 || out_dim == 0 {
            return Err(Error::invalid(
                "ProjectionHead",
                format!(
                    "sizes must be > 0, got in {in_dim}, hidden {hidden}, out {out_dim} (at '{}')",
                    path.prefix()
                ),
            ));
        }
        let mut cfg = MlpConfig::new(&[in_dim, hidden, out_dim]);
        cfg.batch_norm = true;
        Ok(ProjectionHead {
            mlp: Mlp::new(path, &cfg)?,
            in_dim,
            out_dim,
        })
    }

    /// `z` is `(B, in)` (pooled features) or any `(..., in)` (e.g. per time step `(B, T', in)`):
    /// the leading dimensions are flattened into one batch for the batch norm, then restored.
    pub fn forward(&self, z: &Tensor) -> Result<Projection> {
        check_features("ProjectionHead", z, self.in_dim)?;
        let lead = &z.dims()[..z.rank() - 1];
        let rows: usize = lead.iter().product();
        let flat = z.reshape([rows, self.in_dim])?;
        let raw_flat = self.mlp.forward(&flat)?;
        let mut out_dims = lead.to_vec();
        out_dims.push(self.out_dim);
        let raw = raw_flat.reshape(out_dims)?;
        // torch.nn.functional.normalize's eps: a zero row stays zero with a finite gradient.
        let normalized = raw.l2_normalize(-1, 1e-12)?;
        Ok(Projection { raw, normalized })
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// The embedding size, e.g. to size a MoCo queue.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

/// The shape of D_S: which feature it reads and which sequence it rebuilds.
///
/// `frames`, `bodies` and `joints` must match the skeleton batches the decoder reconstructs
/// (the loader's `(B, T, M, J, 3)`); the presets match the synthetic dataset presets of the
/// same name, and `in_dim` must be set to the skeleton encoder's feature size.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderConfig {
    /// Size of the skeleton feature Z'_S.
    pub in_dim: usize,
    /// Hidden widths of the MLP (each Linear -> ReLU); empty for a single linear map.
    pub hidden: Vec<usize>,
    pub frames: usize,
    pub bodies: usize,
    pub joints: usize,
    /// Coordinates per joint (3).
    pub channels: usize,
}

impl DecoderConfig {
    pub const PRESETS: [&'static str; 3] = ["tiny", "small", "paper"];

    /// `tiny` (32 -> 64 -> 8x1x25x3, about 41k parameters), `small` (256 -> 512 ->
    /// 32x2x25x3, about 2.6M), `paper` (256 -> 1024 -> 64x2x25x3, about 10.1M): sequence sizes
    /// as the synthetic dataset presets of the same names.
    pub fn preset(name: &str) -> Result<Self> {
        let (in_dim, hidden, frames, bodies) = match name {
            "tiny" => (32, vec![64], 8, 1),
            "small" => (256, vec![512], 32, 2),
            "paper" => (256, vec![1024], 64, 2),
            _ => {
                return Err(Error::invalid(
                    "DecoderConfig::preset",
                    format!(
                        "unknown preset {name:?} (expected one of {:?})",
                        Self::PRESETS
                    ),
                ))
            }
        };
        Ok(DecoderConfig {
            in_dim,
            hidden,
            frames,
            bodies,
            joints: 25,
            channels: 3,
        })
    }

    /// Number of values in one reconstructed sequence.
    pub fn output_len(&self) -> usize {
        self.frames * self.bodies * self.joints * self.channels
    }
}

/// D_S: a light MLP (Linear -> ReLU per hidden layer, then a Linear with no activation, since
/// coordinates are signed) from Z'_S `(B, in_dim)` to the whole sequence `(B, T, M, J, C)`.
///
/// It decodes the pooled feature, so it must rebuild the time axis from one vector: the
/// paper calls D_S "lightweight" and says no more, and a per-time decoder would depend on each
/// encoder's temporal stride. Parameters (engine `Mlp` names): `layers.<i>.linear.{weight,
/// bias}`, `output.{weight, bias}`.
pub struct SkeletonDecoder {
    mlp: Mlp,
    cfg: DecoderConfig,
}

impl SkeletonDecoder {
    pub fn new(path: &ParamPath, cfg: &DecoderConfig) -> Result<Self> {
        let sizes = [cfg.in_dim, cfg.frames, cfg.bodies, cfg.joints, cfg.channels];
        if sizes.contains(&0) || cfg.hidden.contains(&0) {
            return Err(Error::invalid(
                "SkeletonDecoder",
                format!(
                    "every size must be > 0, got {cfg:?} (at '{}')",
                    path.prefix()
                ),
            ));
        }
        let mut dims = vec![cfg.in_dim];
        dims.extend_from_slice(&cfg.hidden);
        dims.push(cfg.output_len());
        Ok(SkeletonDecoder {
            mlp: Mlp::new(path, &MlpConfig::new(&dims))?,
            cfg: cfg.clone(),
        })
    }

    /// `z` `(B, in_dim)` to `(B, T, M, J, C)`, directly comparable (MSE) with the loader's
    /// skeleton batch.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        if z.rank() != 2 || z.dims()[1] != self.cfg.in_dim {
            return Err(Error::shape(
                "SkeletonDecoder",
                &[z.dims()],
                format!("expected a feature of shape (B, {})", self.cfg.in_dim),
            ));
        }
        let [t, m, j, c] = self.output_dims();
        self.mlp.forward(z)?.reshape([z.dims()[0], t, m, j, c])
    }

    /// `[T, M, J, C]`: the output shape after the batch dimension.
    pub fn output_dims(&self) -> [usize; 4] {
        let c = &self.cfg;
        [c.frames, c.bodies, c.joints, c.channels]
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }
}

/// C: one Linear layer from a feature (Z_fusion) to class logits; a linear probe when the
/// rest is frozen. Parameters `weight` `(classes, in)` and `bias` `(classes)` directly under
/// its path (e.g. `classifier.weight`).
pub struct Classifier {
    linear: Linear,
}

impl Classifier {
    pub fn new(path: &ParamPath, in_dim: usize, classes: usize) -> Result<Self> {
        if in_dim == 0 || classes == 0 {
            return Err(Error::invalid(
                "Classifier",
                format!(
                    "sizes must be > 0, got in {in_dim}, classes {classes} (at '{}')",
                    path.prefix()
                ),
            ));
        }
        Ok(Classifier {
            linear: Linear::new(path, in_dim, classes, true)?,
        })
    }

    /// `z` `(..., in)` to logits `(..., classes)` (per time step features work too).
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        check_features("Classifier", z, self.linear.in_features())?;
        self.linear.forward(z)
    }

    pub fn classes(&self) -> usize {
        self.linear.out_features()
    }

    pub fn in_dim(&self) -> usize {
        self.linear.in_features()
    }
}
