//! PointNet++ set abstraction (single-scale grouping), channel-first, on a batch of clouds.
//!
//! A level picks `centres` points by farthest point sampling, gathers up to `nsample` points
//! within `radius` of each (ball query), expresses their coordinates relative to the centre
//! and divided by the radius (so every level sees offsets of about unit size, as the common
//! implementations normalise), concatenates the previous level's features of those points,
//! runs a shared MLP (1x1 convolution, batch norm, ReLU per layer) on every (centre,
//! neighbour) pair and max-pools over the neighbours.

use super::{invalid, shape_error};
use engine::nn::{BatchNorm, BatchNormConfig, Linear, Module, ParamPath};
use engine::ops::pointnet::{ball_query, farthest_point_sample, group_points, neighbour_max_pool};
use engine::{Result, Tensor};

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

/// A PointNet shared MLP on channel-first `(N, C, L)` tensors: per layer a bias-free 1x1
/// convolution (a `(C_out, C_in)` weight applied to every position; batch norm cancels a bias),
/// batch norm over `(N, L)` per channel, ReLU. Parameters `<i>.conv.weight`, `<i>.bn.*`.
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

    /// `(N, C_in, L)` to `(N, C_out, L)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (conv, bn) in &self.layers {
            h = bn.forward(&conv.weight.matmul(&h)?)?.relu()?;
        }
        Ok(h)
    }
}

/// The output of a level: the centres, in both layouts the next level needs, and their
/// features.
pub struct Level {
    /// `(N, M, 3)` centre coordinates (the input's frame, metres).
    pub xyz: Tensor,
    /// `(N, 3, M)`, the same coordinates channel-first.
    pub xyz_t: Tensor,
    /// `(N, C, M)` features, one per centre.
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

    /// `xyz` `(N, P, 3)` and the same points channel-first `xyz_t` `(N, 3, P)`, with
    /// `features` `(N, C, P)` when the level has input features. Differentiable in all three
    /// (the sampled and grouped indices are constants of the forward).
    pub fn forward(
        &self,
        xyz: &Tensor,
        xyz_t: &Tensor,
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
        let centres_t = group_points(xyz_t, &idx)?.reshape([n, 3, m])?;
        let centres = centres_t.permute(&[0, 2, 1])?;
        let nbr = ball_query(xyz, &centres, r, s)?;
        let rel = group_points(xyz_t, &nbr)?
            .sub(&centres_t.reshape([n, 3, m, 1])?)?
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
            .forward(&grouped.reshape([n, c_in, m * s])?)?
            .reshape([n, c, m, s])?;
        let (features, _) = neighbour_max_pool(&h)?;
        Ok(Level {
            xyz: centres,
            xyz_t: centres_t,
            features,
        })
    }
}
