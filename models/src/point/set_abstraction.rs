//! PointNet++ set abstraction (single-scale grouping), channel-first, on a batch of clouds.
//!
//! A level picks `centres` points by farthest point sampling, gathers up to `nsample` points
//! within `radius` of each (ball query), expresses their coordinates relative to the centre
//! and divided by the radius (so every level sees offsets of about unit size, as the common
//! implementations normalise), concatenates the previous level's features of those points,
//! runs a shared MLP (1x1 convolution, batch norm, ReLU per layer) on every (centre,
//! neighbour) pair and max-pools over the neighbours.
//!
//! Layout: sampling and ball queries run per cloud on `(N, P, 3)`, but every feature tensor is
//! channel-major, `(1, C, N * P)` (channel, then every point of every cloud): the indices are
//! made global (`n * P + i`) so that grouping yields `(1, C, N * M, S)`, and each shared-MLP
//! layer is then one `(C_out, C_in) @ (C_in, N * M * S)` product and a batch norm over
//! contiguous channel rows. (Per-cloud `(N, C, L)` tensors would need N small products, and
//! channels-last rows a strided batch norm: both measured several times slower.)

use super::{invalid, shape_error};
use engine::nn::{BatchNorm, BatchNormConfig, Linear, Module, ParamPath};
use engine::ops::pointnet::{ball_query, farthest_point_sample, group_points, neighbour_max_pool};
use engine::{DType, Result, Tensor};

/// One set-abstraction level: how many centres, the ball radius in metres (the encoder centres
/// each clip but keeps metres), the neighbours per ball and the shared MLP's output widths.
#[derive(Clone, Debug, PartialEq)]
pub struct SetAbstractionConfig {
    /// Centres picked by farthest point sampling (at most the points the level receives).
    pub centres: usize,
    /// Ball-query radius in metres; grouped offsets are divided by it.
    pub radius: f64,
    /// Neighbours per centre (a ball with fewer points repeats its first hit).
    pub nsample: usize,
    /// Output width of each shared-MLP layer (at least one).
    pub mlp: Vec<usize>,
}

impl SetAbstractionConfig {
    /// Rejects configurations that cannot build a level, naming the level.
    pub fn check(&self, level: &str) -> Result<()> {
        if self.centres == 0
            || self.nsample == 0
            || !(self.radius.is_finite() && self.radius > 0.0)
            || self.mlp.is_empty()
            || self.mlp.contains(&0)
        {
            return Err(invalid(format!(
                "{level}: need centres >= 1, nsample >= 1, a finite radius > 0 and a non-empty \
                     MLP of positive widths, got {self:?}"
            )));
        }
        Ok(())
    }

    /// The width of the features this level outputs.
    pub fn out_channels(&self) -> usize {
        *self.mlp.last().unwrap_or(&0)
    }
}

/// A PointNet shared MLP on channel-major `(C, R)` tensors (`R` positions): per layer a
/// bias-free 1x1 convolution (a `(C_out, C_in)` weight applied to every position; batch norm
/// cancels a bias), batch norm per channel over the R positions, ReLU. Parameters
/// `<i>.conv.weight`, `<i>.bn.*`.
pub struct SharedMlp {
    layers: Vec<(Linear, BatchNorm)>,
}

impl SharedMlp {
    /// Layers of widths `widths` after an input of `in_channels`.
    pub fn new(path: &ParamPath, in_channels: usize, widths: &[usize]) -> Result<SharedMlp> {
        let mut layers = Vec::with_capacity(widths.len());
        let mut c = in_channels;
        for (i, &w) in widths.iter().enumerate() {
            let p = path.sub(&i.to_string());
            let conv = Linear::new(&p.sub("conv"), c, w, false)?;
            let bn = BatchNorm::new_1d(&p.sub("bn"), w, BatchNormConfig::default())?;
            layers.push((conv, bn));
            c = w;
        }
        Ok(SharedMlp { layers })
    }

    /// `(C_in, R)` to `(C_out, R)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let r = x.dims()[1];
        let mut h = x.clone();
        for (conv, bn) in &self.layers {
            let y = conv.weight.matmul(&h)?;
            let c = y.dims()[0];
            h = bn
                .forward(&y.reshape([1, c, r])?)?
                .relu()?
                .reshape([c, r])?;
        }
        Ok(h)
    }
}

/// Per-cloud indices `(N, M, K)` into clouds of `p` points, made global (`n * p + i`, indices
/// into the channel-major `(1, C, N * p)` layout) as `(1, N * M, K)`. Computed in f64 on the
/// indices' device (exact below 2^53), so no index goes through the host.
fn globalise(idx: &Tensor, p: usize) -> Result<Tensor> {
    let (n, m, k) = (idx.dims()[0], idx.dims()[1], idx.dims()[2]);
    let offsets = Tensor::arange(0.0, (n * p) as f64, p as f64, DType::F64, idx.device())?
        .reshape([n, 1, 1])?;
    idx.to_dtype(DType::F64)?
        .add(&offsets)?
        .to_dtype(DType::I64)?
        .reshape([1, n * m, k])
}

/// The output of a level: its centres and their features.
pub struct Level {
    /// `(N, M, 3)` centre coordinates (the input's frame, metres), for the next level's
    /// sampling and ball query (no gradient).
    pub xyz: Tensor,
    /// `(1, 3, N * M)`, the same coordinates channel-major (differentiable).
    pub xyz_cm: Tensor,
    /// `(1, C, N * M)` features, one per centre, channel-major.
    pub features: Tensor,
}

/// One set-abstraction level with its shared MLP (parameters `mlp.<i>.conv.weight`, ...).
pub struct SetAbstraction {
    cfg: SetAbstractionConfig,
    in_features: usize,
    mlp: SharedMlp,
}

impl SetAbstraction {
    /// A level whose input points carry `in_features` feature channels besides xyz.
    pub fn new(
        path: &ParamPath,
        cfg: &SetAbstractionConfig,
        in_features: usize,
        name: &str,
    ) -> Result<SetAbstraction> {
        cfg.check(name)?;
        Ok(SetAbstraction {
            cfg: cfg.clone(),
            in_features,
            mlp: SharedMlp::new(&path.sub("mlp"), 3 + in_features, &cfg.mlp)?,
        })
    }

    /// `xyz` `(N, P, 3)` (used for sampling and ball queries only), the same points
    /// channel-major `xyz_cm` `(1, 3, N * P)`, and `features` `(1, C, N * P)` when the level
    /// has input features. Differentiable in `xyz_cm` and `features` (the sampled and grouped
    /// indices are constants of the forward).
    pub fn forward(
        &self,
        xyz: &Tensor,
        xyz_cm: &Tensor,
        features: Option<&Tensor>,
    ) -> Result<Level> {
        let (n, p) = (xyz.dims()[0], xyz.dims()[1]);
        let (m, s, r) = (self.cfg.centres, self.cfg.nsample, self.cfg.radius);
        if p < m {
            return Err(shape_error(
                &[xyz.dims()],
                format!("a set-abstraction level cannot pick {m} centres from {p} points"),
            ));
        }
        let idx = farthest_point_sample(xyz, m, None)?.reshape([n, m, 1])?;
        // Gathering the centres through group_points keeps them differentiable.
        let centres_cm = group_points(xyz_cm, &globalise(&idx, p)?)?.reshape([1, 3, n * m])?;
        let centres = centres_cm
            .detach()
            .reshape([3, n, m])?
            .permute(&[1, 2, 0])?;
        let nbr = globalise(&ball_query(xyz, &centres, r, s)?, p)?;
        let rel = group_points(xyz_cm, &nbr)?
            .sub(&centres_cm.reshape([1, 3, n * m, 1])?)?
            .div_scalar(r)?;
        let grouped = match features {
            Some(f) => Tensor::concat(&[&rel, &group_points(f, &nbr)?], 1)?,
            None => rel,
        };
        let c_in = 3 + self.in_features;
        if grouped.dims()[1] != c_in {
            return Err(shape_error(
                &[grouped.dims()],
                format!("a set-abstraction level expected {c_in} input channels"),
            ));
        }
        let c = self.cfg.out_channels();
        let h = self
            .mlp
            .forward(&grouped.reshape([c_in, n * m * s])?)?
            .reshape([1, c, n * m, s])?;
        let (features, _) = neighbour_max_pool(&h)?;
        Ok(Level {
            xyz: centres,
            xyz_cm: centres_cm,
            features,
        })
    }
}
