//! The ST-GCN skeleton encoder E_S, over one or several skeleton conventions.

use super::block::{format_suffix, StGcnBlock, StGcnBlockSpec};
use super::graph::SkeletonGraph;

use crate::data::layouts::SkeletonLayout;
use crate::data::Modality;
use crate::EncoderOutput;
use engine::nn::{BatchNorm, BatchNormConfig, Linear, Module, ParamPath};
use engine::{Error, Result, Tensor};

const OP: &str = "SkeletonEncoder";

/// The configuration of E_S.
#[derive(Clone, Debug, PartialEq)]
pub struct SkeletonEncoderConfig {
    /// The skeleton conventions this encoder accepts (`Modality::Skeleton`, `Skeleton17`,
    /// `Skeleton15`); padded inputs have the largest one's joint count.
    pub formats: Vec<Modality>,
    /// Coordinates per joint (3).
    pub in_channels: usize,
    /// `(out_channels, temporal stride)` of each ST-GCN block, in order.
    pub blocks: Vec<(usize, usize)>,
    /// d, the embedding size (256 in the paper).
    pub out_dim: usize,
    /// The temporal convolution's kernel (odd; ST-GCN: 9).
    pub temporal_kernel: usize,
    /// Dropout after each block's temporal convolution (training only).
    pub dropout: f64,
    /// ST-GCN's learnable multiplicative edge importance, one `(K, J, J)` per block and format.
    pub edge_importance: bool,
    /// A learnable additive adjacency `B_k` (2s-AGCN), one `(K, J, J)` per block and format,
    /// initialised to zero.
    pub adaptive: bool,
}

impl SkeletonEncoderConfig {
    /// The preset names [`SkeletonEncoderConfig::preset`] knows.
    pub const PRESETS: [&'static str; 3] = ["tiny", "ssl", "stgcn"];

    /// Named configurations, all with formats `[Skeleton]`, 3 input channels, d = 256,
    /// temporal kernel 9 and edge importance on:
    /// - `tiny`: 16, 32 s2, 32: a few milliseconds per step on a small CPU batch (tests, smoke
    ///   runs);
    /// - `ssl`: 16 x4, 32 s2, 32, 32, 64 s2, 64: the narrow ST-GCN of the self-supervised
    ///   skeleton literature (CrosSCLR, AimCLR, MS-CLR), then 64 -> 256;
    /// - `stgcn`: 64 x4, 128 s2 x3, 256 s2 x3: the full ST-GCN stack, dropout 0.5.
    pub fn preset(name: &str) -> Result<Self> {
        let base = |blocks: Vec<(usize, usize)>, dropout: f64| SkeletonEncoderConfig {
            formats: vec![Modality::Skeleton],
            in_channels: 3,
            blocks,
            out_dim: 256,
            temporal_kernel: 9,
            dropout,
            edge_importance: true,
            adaptive: false,
        };
        match name {
            "tiny" => Ok(base(vec![(16, 1), (32, 2), (32, 1)], 0.0)),
            "ssl" => Ok(base(
                vec![
                    (16, 1),
                    (16, 1),
                    (16, 1),
                    (16, 1),
                    (32, 2),
                    (32, 1),
                    (32, 1),
                    (64, 2),
                    (64, 1),
                ],
                0.0,
            )),
            "stgcn" => {
                let mut blocks = vec![(64, 1); 4];
                blocks.extend([(128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1)]);
                Ok(base(blocks, 0.5))
            }
            _ => Err(Error::invalid(
                "SkeletonEncoderConfig::preset",
                format!(
                    "unknown preset '{name}'; known: {}",
                    Self::PRESETS.join(", ")
                ),
            )),
        }
    }

    /// Checks the configuration; errors name the offending field.
    pub fn validate(&self) -> Result<()> {
        let op = "SkeletonEncoderConfig";
        if self.formats.is_empty() {
            return Err(Error::invalid(
                op,
                "formats must name at least one skeleton format",
            ));
        }
        for (i, &f) in self.formats.iter().enumerate() {
            if !is_skeleton_format(f) {
                return Err(Error::invalid(
                    op,
                    format!(
                        "formats: '{}' is not a skeleton format (use skeleton, skeleton17 or skeleton15)",
                        f.name()
                    ),
                ));
            }
            if self.formats[..i].contains(&f) {
                return Err(Error::invalid(
                    op,
                    format!("formats: '{}' listed twice", f.name()),
                ));
            }
        }
        if self.in_channels == 0 || self.out_dim == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "in_channels ({}) and out_dim ({}) must be positive",
                    self.in_channels, self.out_dim
                ),
            ));
        }
        if self.blocks.is_empty() {
            return Err(Error::invalid(op, "blocks must list at least one block"));
        }
        if let Some((i, &(c, s))) = self
            .blocks
            .iter()
            .enumerate()
            .find(|(_, &(c, s))| c == 0 || s == 0)
        {
            return Err(Error::invalid(
                op,
                format!("block {i}: channels ({c}) and stride ({s}) must be positive"),
            ));
        }
        if self.temporal_kernel % 2 == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "temporal_kernel must be odd (centred, 'same' padding), got {}",
                    self.temporal_kernel
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(
                op,
                format!("dropout must be in [0, 1), got {}", self.dropout),
            ));
        }
        Ok(())
    }

    /// The number of time steps of `per_time` for an input of `t` frames.
    pub fn output_frames(&self, t: usize) -> usize {
        self.blocks
            .iter()
            .fold(t, |t, &(_, s)| if t == 0 { 0 } else { (t - 1) / s + 1 })
    }
}

fn is_skeleton_format(f: Modality) -> bool {
    matches!(
        f,
        Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15
    )
}

/// Everything that is specific to one accepted format.
struct Format {
    modality: Modality,
    graph: SkeletonGraph,
    /// The `(K, J, J)` partitions over the real joints (constant).
    adjacency: Tensor,
    /// Input normalisation over the format's `J * C` channels.
    data_bn: BatchNorm,
}

/// E_S: ST-GCN over skeleton sequences of one or several conventions, giving
/// [`EncoderOutput`] (`per_time` `(B, T', d)`, `pooled` `(B, d)`).
///
/// Input batch norm over `J * C` channels (bodies folded into the batch), the ST-GCN blocks,
/// a mean over the joints and then the bodies, and a per-time-step linear head to d; `pooled`
/// is the mean of `per_time` over time.
///
/// **Padded joints.** Inputs of every format may come zero-padded to [`Self::max_joints`]
/// (MS-CLR). Padded joints are masked out exactly: the encoder keeps only the format's real
/// joints (the first `J_f`) and runs on those, with the format's unpadded adjacency. This is
/// the padded computation with the mask applied everywhere (graph aggregation, batch-norm
/// statistics, the joint mean), without spending work on the padding: nothing the padding
/// holds reaches the output, and a format's result does not depend on how far it is padded.
///
/// **Per-format parameters.** The input batch norm (`data_bn`, `data_bn_skeleton17`, ...),
/// the edge importance and the adaptive adjacency (`blockN.edge_importance[_<format>]`,
/// `blockN.adaptive[_<format>]`) exist once per format: joint `j` is a different body point in
/// each convention, so its statistics and edges are not shared. Every convolution, batch norm
/// of the blocks and the head are shared by all formats.
pub struct SkeletonEncoder {
    cfg: SkeletonEncoderConfig,
    formats: Vec<Format>,
    blocks: Vec<StGcnBlock>,
    head: Linear,
    max_joints: usize,
}

impl SkeletonEncoder {
    /// Builds the encoder under `path` (the lead's `encoder.skeleton`): `data_bn*`,
    /// `block0` .. `block{n-1}`, `head`.
    pub fn new(path: &ParamPath, cfg: &SkeletonEncoderConfig) -> Result<Self> {
        cfg.validate()?;
        let layouts: Vec<(Modality, &SkeletonLayout)> = cfg
            .formats
            .iter()
            .map(|&m| {
                SkeletonLayout::of(m).map(|l| (m, l)).ok_or_else(|| {
                    Error::invalid(OP, format!("no skeleton layout for '{}'", m.name()))
                })
            })
            .collect::<Result<_>>()?;
        let max_joints = layouts
            .iter()
            .map(|(_, l)| l.num_joints())
            .max()
            .unwrap_or(0);
        let (dtype, device) = (path.dtype(), path.device());
        let bn = BatchNormConfig::default();
        let formats = layouts
            .iter()
            .map(|&(modality, layout)| {
                let graph = SkeletonGraph::spatial(layout, max_joints)?;
                Ok(Format {
                    modality,
                    adjacency: graph.adjacency_unpadded(dtype, device)?,
                    data_bn: BatchNorm::new_1d(
                        &path.sub(&format!("data_bn{}", format_suffix(modality))),
                        layout.num_joints() * cfg.in_channels,
                        bn,
                    )?,
                    graph,
                })
            })
            .collect::<Result<Vec<Format>>>()?;
        let joints: Vec<(Modality, usize)> = formats
            .iter()
            .map(|f| (f.modality, f.graph.num_joints()))
            .collect();
        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        let mut cin = cfg.in_channels;
        for (i, &(cout, stride)) in cfg.blocks.iter().enumerate() {
            blocks.push(StGcnBlock::new(
                &path.sub(&format!("block{i}")),
                &StGcnBlockSpec {
                    in_channels: cin,
                    out_channels: cout,
                    stride,
                    temporal_kernel: cfg.temporal_kernel,
                    dropout: cfg.dropout,
                    residual: i > 0,
                    edge_importance: cfg.edge_importance,
                    adaptive: cfg.adaptive,
                    formats: &joints,
                },
            )?);
            cin = cout;
        }
        let head = Linear::new(&path.sub("head"), cin, cfg.out_dim, true)?;
        Ok(SkeletonEncoder {
            cfg: cfg.clone(),
            formats,
            blocks,
            head,
            max_joints,
        })
    }

    /// The index of `format` in the configuration, or an error listing the accepted ones.
    fn format_index(&self, format: Modality) -> Result<usize> {
        self.cfg
            .formats
            .iter()
            .position(|&f| f == format)
            .ok_or_else(|| {
                let names: Vec<&str> = self.cfg.formats.iter().map(|f| f.name()).collect();
                Error::invalid(
                    OP,
                    format!(
                        "format '{}' is not configured; this encoder accepts {}",
                        format.name(),
                        names.join(", ")
                    ),
                )
            })
    }

    /// Checks `x` is `(B, T, M, joints, C)` with positive sizes.
    fn check_input(&self, x: &Tensor, joints: usize, what: &str) -> Result<()> {
        let d = x.dims();
        if x.rank() != 5 || d[3] != joints || d[4] != self.cfg.in_channels || d.contains(&0) {
            return Err(Error::shape(
                OP,
                &[d],
                format!(
                    "expected {what} (B, T, M, {joints}, {}) with every size positive",
                    self.cfg.in_channels
                ),
            ));
        }
        Ok(())
    }

    /// `x`: `(B, T, M, J_f, C)` in the joints of `format` (one of the configured formats).
    /// Bodies are folded into the batch and averaged at the end.
    pub fn forward(&self, x: &Tensor, format: Modality) -> Result<EncoderOutput> {
        let fi = self.format_index(format)?;
        let j = self.formats[fi].graph.num_joints();
        self.check_input(x, j, &format!("'{}' input", format.name()))?;
        self.run(x, fi)
    }

    /// The same on input already zero-padded to [`Self::max_joints`]: `(B, T, M, V_pad, C)`.
    /// Whatever the padded joints hold is ignored (see the type's docs).
    pub fn forward_padded(&self, x: &Tensor, format: Modality) -> Result<EncoderOutput> {
        let fi = self.format_index(format)?;
        self.check_input(x, self.max_joints, "padded input")?;
        let j = self.formats[fi].graph.num_joints();
        let x = if j < self.max_joints {
            x.narrow(3, 0, j)?
        } else {
            x.clone()
        };
        self.run(&x, fi)
    }

    /// The network on `(B, T, M, J_f, C)` real joints of format number `fi`.
    fn run(&self, x: &Tensor, fi: usize) -> Result<EncoderOutput> {
        let f = &self.formats[fi];
        let (b, t, m, j, c) = {
            let d = x.dims();
            (d[0], d[1], d[2], d[3], d[4])
        };
        let n = b * m;
        // (B, T, M, J, C) -> (B, M, J, C, T) -> (N, J*C, T): ST-GCN's data_bn layout.
        let h = x.permute(&[0, 2, 3, 4, 1])?.reshape([n, j * c, t])?;
        let h = f.data_bn.forward(&h)?;
        // (N, J, C, T) -> (N, C, T, J)
        let mut h = h.reshape([n, j, c, t])?.permute(&[0, 2, 3, 1])?;
        for block in &self.blocks {
            h = block.forward(&h, &f.adjacency, fi)?;
        }
        let (ch, t2) = (h.dims()[1], h.dims()[2]);
        // Mean over joints, then bodies: (N, C, T') -> (B, C, T') -> (B, T', C).
        let h = h
            .mean(&[3], false)?
            .reshape([b, m, ch, t2])?
            .mean(&[1], false)?
            .permute(&[0, 2, 1])?;
        let per_time = self.head.forward(&h)?;
        let pooled = per_time.mean(&[1], false)?;
        Ok(EncoderOutput { pooled, per_time })
    }

    /// d, the size of `pooled` and of each `per_time` step.
    pub fn out_dim(&self) -> usize {
        self.cfg.out_dim
    }

    /// The joint count padded inputs have: the largest of the configured formats'.
    pub fn max_joints(&self) -> usize {
        self.max_joints
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &SkeletonEncoderConfig {
        &self.cfg
    }

    /// The graph (padded to [`Self::max_joints`]) of a configured format.
    pub fn graph(&self, format: Modality) -> Result<&SkeletonGraph> {
        Ok(&self.formats[self.format_index(format)?].graph)
    }

    /// The blocks, in order (for inspection: effective adjacencies, channels, strides).
    pub fn blocks(&self) -> &[StGcnBlock] {
        &self.blocks
    }
}
