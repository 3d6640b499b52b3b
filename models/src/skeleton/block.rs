//! One ST-GCN block: spatial graph convolution, then temporal convolution, with a residual.

use super::graph::NUM_PARTITIONS;

use crate::data::Modality;
use engine::nn::{BatchNorm, BatchNormConfig, Conv3d, Dropout, Module, ParamPath};
use engine::ops::conv::Conv3dParams;
use engine::{Error, Result, Tensor};

const OP: &str = "StGcnBlock";

/// The suffix of a per-format parameter name: none for the 25-joint Kinect layout (so a
/// single-format model has the plain ST-GCN names), `_<modality name>` for the others. Names
/// do not depend on which other formats an encoder accepts, so checkpoints move between
/// single- and multi-format encoders.
pub(crate) fn format_suffix(format: Modality) -> String {
    match format {
        Modality::Skeleton => String::new(),
        m => format!("_{}", m.name()),
    }
}

/// A 1x1 convolution on `(N, C, T, J)` features, optionally strided in time, computed as one
/// broadcast matrix product (about three times faster than the general `conv3d` path on the CPU
/// at these sizes). The parameters are those of a `(1, 1, 1)` `Conv3d` (same names, shapes and
/// initialisation), so checkpoints read like ST-GCN's.
struct Pointwise {
    conv: Conv3d,
    stride: usize,
}

impl Pointwise {
    fn new(path: &ParamPath, cin: usize, cout: usize, stride: usize) -> Result<Pointwise> {
        let conv = Conv3d::new(
            path,
            cin,
            cout,
            [1, 1, 1],
            Conv3dParams::new([stride, 1, 1], [0, 0, 0]),
            true,
        )?;
        Ok(Pointwise { conv, stride })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (ci, co) = (self.conv.in_channels(), self.conv.out_channels());
        let x = if self.stride > 1 {
            let t = x.dims()[2];
            let keep: Vec<i64> = (0..t).step_by(self.stride).map(|i| i as i64).collect();
            let n = keep.len();
            x.index_select(2, &Tensor::from_vec(keep, [n], x.device())?)?
        } else {
            x.clone()
        };
        let (n, t, j) = (x.dims()[0], x.dims()[2], x.dims()[3]);
        let mut y = self
            .conv
            .weight
            .reshape([co, ci])?
            .matmul(&x.reshape([n, ci, t * j])?)?;
        if let Some(b) = &self.conv.bias {
            y = y.add(&b.reshape([co, 1])?)?;
        }
        y.reshape([n, co, t, j])
    }
}

/// The residual branch of a block.
enum Residual {
    /// The first block of a stack (ST-GCN has none there).
    None,
    /// Same channels, stride 1.
    Identity,
    /// A strided 1x1 convolution and batch norm, where the shape changes.
    Projection { conv: Pointwise, bn: BatchNorm },
}

/// The learnable graph terms of one block for one skeleton format, each `(K, J, J)`.
struct FormatTerms {
    /// ST-GCN's multiplicative edge importance (initialised to 1).
    edge_importance: Option<Tensor>,
    /// 2s-AGCN's additive adjacency `B_k` (initialised to 0, so training starts from the
    /// physical graph).
    adaptive: Option<Tensor>,
}

/// An ST-GCN block on `(N, C_in, T, J)` features:
/// `relu(dropout(bn2(tcn(relu(bn1(gcn(x)))))) + residual(x))`, where `gcn` is a 1x1
/// convolution to `K * C_out` channels followed by the graph aggregation with the format's
/// adjacency (times the edge importance, plus the adaptive term), and `tcn` a `(kt, 1)`
/// temporal convolution with the block's stride.
///
/// Parameter names under the block's path: `gcn.{weight,bias}`, `bn1.*`, `tcn.{weight,bias}`,
/// `bn2.*`, `residual.conv.{weight,bias}` and `residual.bn.*` (where the shape changes),
/// `dropout.calls`, and per format `edge_importance[_<format>]`, `adaptive[_<format>]`.
pub struct StGcnBlock {
    gcn: Pointwise,
    bn1: BatchNorm,
    tcn: Conv3d,
    bn2: BatchNorm,
    dropout: Dropout,
    residual: Residual,
    /// One entry per format the block accepts, in the order it was given.
    terms: Vec<FormatTerms>,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
}

/// What a block needs to know at construction.
pub struct StGcnBlockSpec<'a> {
    /// Channels of the block's input.
    pub in_channels: usize,
    /// Channels of the block's output (the graph convolution makes `K` times as many first).
    pub out_channels: usize,
    /// Temporal stride of the temporal convolution (and of the residual projection).
    pub stride: usize,
    /// Odd temporal kernel size (ST-GCN: 9).
    pub temporal_kernel: usize,
    /// Dropout probability after the temporal convolution's batch norm (training only).
    pub dropout: f64,
    /// Whether this block has a residual branch (ST-GCN: every block but the first).
    pub residual: bool,
    /// A learnable multiplicative `(K, J, J)` edge importance per format (ST-GCN), init 1.
    pub edge_importance: bool,
    /// A learnable additive `(K, J, J)` adjacency per format (2s-AGCN's `B_k`), init 0.
    pub adaptive: bool,
    /// `(format, real joint count)` for every format the block accepts.
    pub formats: &'a [(Modality, usize)],
}

impl StGcnBlock {
    /// Registers the block's parameters under `path` (names in the type's docs); errors on
    /// zero channels or stride, or an even temporal kernel.
    pub fn new(path: &ParamPath, spec: &StGcnBlockSpec) -> Result<StGcnBlock> {
        let (cin, cout, s, kt) = (
            spec.in_channels,
            spec.out_channels,
            spec.stride,
            spec.temporal_kernel,
        );
        if cin == 0 || cout == 0 || s == 0 || kt % 2 == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "{}: channels and stride must be positive and the temporal kernel odd: in {cin}, out {cout}, stride {s}, kernel {kt}",
                    path.prefix()
                ),
            ));
        }
        let bn = BatchNormConfig::default();
        let gcn = Pointwise::new(&path.sub("gcn"), cin, NUM_PARTITIONS * cout, 1)?;
        let bn1 = BatchNorm::new_2d(&path.sub("bn1"), cout, bn)?;
        let tcn = Conv3d::new(
            &path.sub("tcn"),
            cout,
            cout,
            [kt, 1, 1],
            Conv3dParams::new([s, 1, 1], [(kt - 1) / 2, 0, 0]),
            true,
        )?;
        let bn2 = BatchNorm::new_2d(&path.sub("bn2"), cout, bn)?;
        let dropout = Dropout::new(&path.sub("dropout"), spec.dropout)?;
        let residual = if !spec.residual {
            Residual::None
        } else if cin == cout && s == 1 {
            Residual::Identity
        } else {
            let r = path.sub("residual");
            Residual::Projection {
                conv: Pointwise::new(&r.sub("conv"), cin, cout, s)?,
                bn: BatchNorm::new_2d(&r.sub("bn"), cout, bn)?,
            }
        };
        let (dtype, device) = (path.dtype(), path.device());
        let terms = spec
            .formats
            .iter()
            .map(|&(format, j)| {
                let suffix = format_suffix(format);
                let dims = [NUM_PARTITIONS, j, j];
                let edge_importance = if spec.edge_importance {
                    Some(path.param(
                        &format!("edge_importance{suffix}"),
                        Tensor::ones(dims, dtype, device)?,
                    )?)
                } else {
                    None
                };
                let adaptive = if spec.adaptive {
                    Some(path.param(
                        &format!("adaptive{suffix}"),
                        Tensor::zeros(dims, dtype, device)?,
                    )?)
                } else {
                    None
                };
                Ok(FormatTerms {
                    edge_importance,
                    adaptive,
                })
            })
            .collect::<Result<_>>()?;
        Ok(StGcnBlock {
            gcn,
            bn1,
            tcn,
            bn2,
            dropout,
            residual,
            terms,
            in_channels: cin,
            out_channels: cout,
            stride: s,
        })
    }

    /// The adjacency the block aggregates with for format number `format` (its index in the
    /// spec's list), given that format's constant `(K, J, J)` partition stack:
    /// `a * edge_importance + adaptive` (each term where configured).
    pub fn effective_adjacency(&self, a: &Tensor, format: usize) -> Result<Tensor> {
        let terms = self.terms.get(format).ok_or_else(|| {
            Error::invalid(
                OP,
                format!(
                    "format index {format} out of range ({} formats)",
                    self.terms.len()
                ),
            )
        })?;
        let mut adj = match &terms.edge_importance {
            Some(e) => a.mul(e)?,
            None => a.clone(),
        };
        if let Some(b) = &terms.adaptive {
            adj = adj.add(b)?;
        }
        Ok(adj)
    }

    /// `x`: `(N, C_in, T, J)` with the format's real joints only; `a`: that format's constant
    /// `(K, J, J)` partitions. Returns `(N, C_out, T', J)`, `T' = (T - 1) / stride + 1`.
    pub fn forward(&self, x: &Tensor, a: &Tensor, format: usize) -> Result<Tensor> {
        if x.rank() != 4 || x.dims()[1] != self.in_channels {
            return Err(Error::shape(
                OP,
                &[x.dims()],
                format!("expected (N, {}, T, J)", self.in_channels),
            ));
        }
        let (n, t, j) = (x.dims()[0], x.dims()[2], x.dims()[3]);
        let cout = self.out_channels;
        let adj = self.effective_adjacency(a, format)?;
        let h = self.gcn.forward(x)?;
        let h = h
            .reshape([n, NUM_PARTITIONS * cout, t, j])?
            .graph_aggregate(&adj, None)?;
        let h = self.bn1.forward(&h)?.relu()?;
        let h = self.tcn.forward(&h.reshape([n, cout, t, j, 1])?)?;
        let t2 = h.dims()[2];
        let h = self.bn2.forward(&h.reshape([n, cout, t2, j])?)?;
        let h = self.dropout.forward(&h)?;
        let h = match &self.residual {
            Residual::None => h,
            Residual::Identity => h.add(x)?,
            Residual::Projection { conv, bn } => {
                let r = bn.forward(&conv.forward(x)?)?;
                h.add(&r)?
            }
        };
        h.relu()
    }

    /// Channels the block takes.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Channels the block gives.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// The block's temporal stride.
    pub fn stride(&self) -> usize {
        self.stride
    }
}
