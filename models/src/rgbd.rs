//! E_R, the RGB-D encoder: two (2+1)D residual CNN streams (RGB and depth), late-fused.
//!
//! Each stream is an R(2+1)D-style network (Tran et al., "A Closer Look at Spatiotemporal
//! Convolutions for Action Recognition", 2018): every 3D convolution `k x k x k` is factorised
//! into a spatial `(1, k, k)` convolution to an intermediate width `M`, batch norm, ReLU, and a
//! temporal `(k, 1, 1)` convolution. The stem is one such factorised convolution (its own
//! spatial kernel and width, strided by `stem_stride`), followed by batch norm and ReLU; then
//! come stages of basic residual blocks (two factorised convolutions, each followed by batch
//! norm, the first by ReLU; the shortcut is the identity, or a strided 1x1x1 convolution with
//! batch norm when the width or the resolution changes; ReLU after the sum). The first block
//! of a stage carries the stage's strides: the spatial stride on its spatial convolution, the
//! temporal stride on its temporal one.
//!
//! Each stream ends with a spatial average per time step, `(B, C_s, T')`; the two streams are
//! concatenated on channels and a linear layer maps every time step to `d`, which gives
//! `per_time (B, T', d)`; `pooled` is its mean over time (which equals the linear map of the
//! global average pool, since the linear map commutes with the mean).
//!
//! Inputs are the loader's: rgb `(B, T, 3, H, W)` in [0, 1], depth `(B, T, 1, H, W)` in metres
//! with 0 for holes; they are not normalised here (the stem's batch norm absorbs the scale).
//! Both streams see the same `T` and their temporal strides must multiply to the same factor,
//! so they end with the same `T'`; their image sizes may differ.
//!
//! Data without RGB video (NTU RGB+D as `trainer import-ntu` imports it: masked depth only)
//! gets a depth-only encoder (`rgb_stream: false`): the same depth stream and a `fuse` layer
//! over its channels alone.
//!
//! Parameter names under the encoder's path: `rgb.stem.conv.spatial.weight`,
//! `rgb.stem.conv.bn.weight` (the batch norm between the spatial and temporal halves),
//! `rgb.stem.conv.temporal.weight`, `rgb.stem.bn.weight`,
//! `rgb.stage2.block1.conv1.spatial.weight`, `rgb.stage2.block1.bn1.running_mean`,
//! `rgb.stage2.block1.downsample.conv.weight`, `rgb.stage2.block1.downsample.bn.weight`, the
//! same under `depth.`, and `fuse.weight`, `fuse.bias`. Stages and blocks count from 1.

use crate::EncoderOutput;
use engine::nn::{BatchNorm, BatchNormConfig, Conv3d, Linear, Module, ParamPath};
use engine::ops::conv::Conv3dParams;
use engine::{Error, Result, Tensor};

const OP: &str = "RgbdEncoder";

/// `Error::Invalid` naming the encoder.
fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(OP, msg)
}

/// `Error::Shape` naming the encoder and the offending shapes.
fn shape_err(shapes: &[&[usize]], msg: impl Into<String>) -> Error {
    Error::shape(OP, shapes, msg)
}

/// How wide the intermediate (between spatial and temporal) layer of a factorised convolution
/// is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MidWidth {
    /// R(2+1)D's `M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out))` (at least 1), which gives
    /// a factorised convolution `N_in -> N_out` about as many parameters as the full
    /// `t x d x d` 3D convolution. (A block's second convolution, `N_out -> N_out`, reuses the
    /// first one's `M`, as torchvision does, so R(2+1)D-18's parameter count is reproduced.)
    ParamMatched,
    /// `M = N_out`: cheaper (0.44 times the multiply-adds of `ParamMatched` for equal widths);
    /// used by the `tiny` preset to stay within its CPU budget.
    Out,
}

impl MidWidth {
    /// The intermediate width for a factorised convolution `n_in -> n_out` with temporal
    /// kernel `t` and spatial kernel `d`.
    pub fn channels(self, n_in: usize, n_out: usize, t: usize, d: usize) -> usize {
        match self {
            MidWidth::ParamMatched => {
                let num = t * d * d * n_in * n_out;
                let den = d * d * n_in + t * n_out;
                (num / den).max(1)
            }
            MidWidth::Out => n_out,
        }
    }
}

/// One stream of E_R (RGB or depth).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbdStreamConfig {
    /// Output width of the stem.
    pub stem_channels: usize,
    /// The stem's spatial kernel (odd; 7 in R(2+1)D). Its temporal kernel is `kernel`.
    pub stem_kernel: usize,
    /// The stem's intermediate width, between its spatial and temporal convolutions (45 in
    /// torchvision's R(2+1)D-18; the stem does not follow the `mid` rule).
    pub stem_mid: usize,
    /// The stem's (spatial, temporal) stride. Downsampling early is what keeps the CPU cost
    /// low: every later convolution runs on the stem's output grid or a coarser one.
    pub stem_stride: (usize, usize),
    /// One entry per stage: (channels, blocks, spatial stride, temporal stride); the strides
    /// apply in the stage's first block.
    pub stages: Vec<(usize, usize, usize, usize)>,
    /// Kernel size of the blocks' factorised convolutions (odd; 3 in R(2+1)D), spatial and
    /// temporal.
    pub kernel: usize,
    /// Intermediate width rule of the blocks' factorised convolutions. As in torchvision, a
    /// block computes `M` once from its input and output widths and uses it for both of its
    /// convolutions.
    pub mid: MidWidth,
}

impl RgbdStreamConfig {
    /// Output width of the stream (the last stage's, or the stem's without stages).
    pub fn out_channels(&self) -> usize {
        self.stages.last().map_or(self.stem_channels, |s| s.0)
    }

    /// The product of the temporal strides: `T' = ceil(T / factor)` (kernels are odd and
    /// padded to keep sizes, so every strided layer maps `T` to `ceil(T / s)`).
    pub fn temporal_factor(&self) -> usize {
        self.stem_stride.1 * self.stages.iter().map(|s| s.3).product::<usize>()
    }

    /// Likewise for the spatial size.
    pub fn spatial_factor(&self) -> usize {
        self.stem_stride.0 * self.stages.iter().map(|s| s.2).product::<usize>()
    }

    fn validate(&self, name: &str) -> Result<()> {
        let bad = |msg: String| Err(invalid(format!("{name} stream: {msg}")));
        if self.stem_channels == 0 || self.stem_mid == 0 {
            return bad("stem_channels and stem_mid must be positive".into());
        }
        for (what, k) in [("kernel", self.kernel), ("stem_kernel", self.stem_kernel)] {
            if k == 0 || k % 2 == 0 {
                return bad(format!(
                    "{what} must be odd (padded by k / 2 to keep sizes), got {k}"
                ));
            }
        }
        if self.stem_stride.0 == 0 || self.stem_stride.1 == 0 {
            return bad(format!(
                "stem_stride must be positive, got {:?}",
                self.stem_stride
            ));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.0 == 0 || s.1 == 0 || s.2 == 0 || s.3 == 0 {
                return bad(format!(
                    "stage {} (channels, blocks, spatial stride, temporal stride) = {s:?} must be all positive",
                    i + 1
                ));
            }
        }
        Ok(())
    }
}

/// Configuration of E_R.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbdEncoderConfig {
    pub rgb: RgbdStreamConfig,
    pub depth: RgbdStreamConfig,
    /// Whether the encoder has its RGB stream; false builds a depth-only encoder for data
    /// without RGB video (`rgb` is then unused).
    pub rgb_stream: bool,
    /// `d`, the width of `Z_R` (256 in the paper).
    pub out_dim: usize,
}

/// The names [`RgbdEncoderConfig::preset`] knows.
pub const RGBD_PRESETS: &[&str] = &["tiny", "small", "base", "r2plus1d18"];

impl RgbdEncoderConfig {
    /// Named configurations, from cheap to the paper's scale (both streams alike, d = 256).
    /// The CPU presets downsample hard in the stem, since on the CPU every op's cost follows
    /// the size of its activations (see docs/models.md for timings):
    /// - `tiny`: stem 8 (5x5, spatial stride 4), one stage 16 (spatial and temporal stride 2),
    ///   one block, `M = N_out`; for the `tiny` synthetic set (T = 8, 32x32): T' = T / 2,
    ///   a 4x4 grid at the end.
    /// - `small`: stem 8 (5x5, spatial stride 4, temporal stride 2), stages 16 (s2),
    ///   32 (s2, t2), 64 (s2), one block each, `M = N_out`; for 32 frames of 48x48:
    ///   T' = T / 4, a 2x2 grid at the end.
    /// - `base`: stem 32 (5x5, spatial stride 2, M 24), stages 32, 64, 128, 256 (each after
    ///   the first strided by 2 in space and time), one block each, R(2+1)D widths; T' = T / 8.
    /// - `r2plus1d18`: torchvision's R(2+1)D-18 per stream (stem 64 with 7x7 spatial stride 2
    ///   and M = 45, stages 64, 128, 256, 512 of two basic blocks, each after the first
    ///   strided by 2 in space and time, R(2+1)D widths): 31.3 M parameters per RGB stream,
    ///   the same as torchvision's without its classifier; T' = T / 8.
    pub fn preset(name: &str) -> Result<Self> {
        let stream = |(stem_channels, stem_kernel, stem_mid), stem_stride, stages: Vec<_>, mid| {
            RgbdStreamConfig {
                stem_channels,
                stem_kernel,
                stem_mid,
                stem_stride,
                stages,
                kernel: 3,
                mid,
            }
        };
        let rgb = match name {
            "tiny" => stream((8, 5, 8), (4, 1), vec![(16, 1, 2, 2)], MidWidth::Out),
            "small" => stream(
                (8, 5, 8),
                (4, 2),
                vec![(16, 1, 2, 1), (32, 1, 2, 2), (64, 1, 2, 1)],
                MidWidth::Out,
            ),
            "base" => stream(
                (32, 5, 24),
                (2, 1),
                vec![(32, 1, 1, 1), (64, 1, 2, 2), (128, 1, 2, 2), (256, 1, 2, 2)],
                MidWidth::ParamMatched,
            ),
            "r2plus1d18" => stream(
                (64, 7, 45),
                (2, 1),
                vec![
                    (64, 2, 1, 1),
                    (128, 2, 2, 2),
                    (256, 2, 2, 2),
                    (512, 2, 2, 2),
                ],
                MidWidth::ParamMatched,
            ),
            _ => {
                return Err(invalid(format!(
                    "unknown preset '{name}'; known presets: {}",
                    RGBD_PRESETS.join(", ")
                )))
            }
        };
        Ok(RgbdEncoderConfig {
            depth: rgb.clone(),
            rgb,
            rgb_stream: true,
            out_dim: 256,
        })
    }

    /// The number of output time steps `T'` for `t` input frames.
    pub fn output_frames(&self, t: usize) -> usize {
        t.div_ceil(self.depth.temporal_factor())
    }
}

/// A (2+1)D convolution: spatial `(1, k, k)` conv to `M` channels, batch norm, ReLU, temporal
/// `(k, 1, 1)` conv. No biases (batch norm follows every convolution).
struct Conv2Plus1d {
    spatial: Conv3d,
    bn: BatchNorm,
    temporal: Conv3d,
}

impl Conv2Plus1d {
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: &ParamPath,
        n_in: usize,
        n_out: usize,
        spatial_kernel: usize,
        temporal_kernel: usize,
        stride: (usize, usize),
        m: usize,
    ) -> Result<Self> {
        let (ks, kt) = (spatial_kernel, temporal_kernel);
        let spatial = Conv3d::new(
            &path.sub("spatial"),
            n_in,
            m,
            [1, ks, ks],
            Conv3dParams::new([1, stride.0, stride.0], [0, ks / 2, ks / 2]),
            false,
        )?;
        let bn = BatchNorm::new_3d(&path.sub("bn"), m, BatchNormConfig::default())?;
        let temporal = Conv3d::new(
            &path.sub("temporal"),
            m,
            n_out,
            [kt, 1, 1],
            Conv3dParams::new([stride.1, 1, 1], [kt / 2, 0, 0]),
            false,
        )?;
        Ok(Conv2Plus1d {
            spatial,
            bn,
            temporal,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.bn.forward(&self.spatial.forward(x)?)?.relu()?;
        self.temporal.forward(&h)
    }
}

/// Basic residual block of R(2+1)D.
struct Block {
    conv1: Conv2Plus1d,
    bn1: BatchNorm,
    conv2: Conv2Plus1d,
    bn2: BatchNorm,
    downsample: Option<(Conv3d, BatchNorm)>,
}

impl Block {
    fn new(
        path: &ParamPath,
        n_in: usize,
        n_out: usize,
        k: usize,
        stride: (usize, usize),
        mid: MidWidth,
    ) -> Result<Self> {
        let bn_cfg = BatchNormConfig::default();
        let m = mid.channels(n_in, n_out, k, k);
        let conv1 = Conv2Plus1d::new(&path.sub("conv1"), n_in, n_out, k, k, stride, m)?;
        let bn1 = BatchNorm::new_3d(&path.sub("bn1"), n_out, bn_cfg)?;
        let conv2 = Conv2Plus1d::new(&path.sub("conv2"), n_out, n_out, k, k, (1, 1), m)?;
        let bn2 = BatchNorm::new_3d(&path.sub("bn2"), n_out, bn_cfg)?;
        let downsample = if n_in != n_out || stride != (1, 1) {
            let p = path.sub("downsample");
            let conv = Conv3d::new(
                &p.sub("conv"),
                n_in,
                n_out,
                [1, 1, 1],
                Conv3dParams::new([stride.1, stride.0, stride.0], [0; 3]),
                false,
            )?;
            Some((conv, BatchNorm::new_3d(&p.sub("bn"), n_out, bn_cfg)?))
        } else {
            None
        };
        Ok(Block {
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.bn1.forward(&self.conv1.forward(x)?)?.relu()?;
        let h = self.bn2.forward(&self.conv2.forward(&h)?)?;
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?)?,
            None => x.clone(),
        };
        h.add(&shortcut)?.relu()
    }
}

/// One stream: stem, stages, spatial average per time step.
struct Stream {
    stem_conv: Conv2Plus1d,
    stem_bn: BatchNorm,
    blocks: Vec<Block>,
}

impl Stream {
    fn new(path: &ParamPath, in_channels: usize, cfg: &RgbdStreamConfig) -> Result<Self> {
        let stem = path.sub("stem");
        let stem_conv = Conv2Plus1d::new(
            &stem.sub("conv"),
            in_channels,
            cfg.stem_channels,
            cfg.stem_kernel,
            cfg.kernel,
            cfg.stem_stride,
            cfg.stem_mid,
        )?;
        let stem_bn = BatchNorm::new_3d(
            &stem.sub("bn"),
            cfg.stem_channels,
            BatchNormConfig::default(),
        )?;
        let mut blocks = Vec::new();
        let mut width = cfg.stem_channels;
        for (i, &(channels, n_blocks, ss, ts)) in cfg.stages.iter().enumerate() {
            let stage = path.sub(&format!("stage{}", i + 1));
            for j in 0..n_blocks {
                let stride = if j == 0 { (ss, ts) } else { (1, 1) };
                blocks.push(Block::new(
                    &stage.sub(&format!("block{}", j + 1)),
                    width,
                    channels,
                    cfg.kernel,
                    stride,
                    cfg.mid,
                )?);
                width = channels;
            }
        }
        Ok(Stream {
            stem_conv,
            stem_bn,
            blocks,
        })
    }

    /// `x (B, C, T, H, W)` to `(B, C_s, T')`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.stem_bn.forward(&self.stem_conv.forward(x)?)?.relu()?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        h.mean(&[3, 4], false)
    }
}

/// E_R: the two-stream (RGB, depth) (2+1)D residual CNN with late fusion; see the module
/// documentation.
pub struct RgbdEncoder {
    /// None in a depth-only encoder.
    rgb: Option<Stream>,
    depth: Stream,
    fuse: Linear,
    cfg: RgbdEncoderConfig,
}

impl RgbdEncoder {
    /// Builds the encoder with its parameters under `path` (`rgb.*` unless depth-only,
    /// `depth.*`, `fuse.*`). Fails on a bad configuration, including streams whose temporal
    /// strides do not multiply to the same factor (they could not be fused per time step).
    pub fn new(path: &ParamPath, cfg: &RgbdEncoderConfig) -> Result<Self> {
        cfg.depth.validate("depth")?;
        if cfg.out_dim == 0 {
            return Err(invalid("out_dim must be positive"));
        }
        let rgb = if cfg.rgb_stream {
            cfg.rgb.validate("rgb")?;
            let (fr, fd) = (cfg.rgb.temporal_factor(), cfg.depth.temporal_factor());
            if fr != fd {
                return Err(invalid(format!(
                    "the streams must end with the same number of time steps: the rgb stream's temporal strides multiply to {fr}, the depth stream's to {fd}"
                )));
            }
            Some(Stream::new(&path.sub("rgb"), 3, &cfg.rgb)?)
        } else {
            None
        };
        let depth = Stream::new(&path.sub("depth"), 1, &cfg.depth)?;
        let rgb_channels = if cfg.rgb_stream {
            cfg.rgb.out_channels()
        } else {
            0
        };
        let fused = rgb_channels + cfg.depth.out_channels();
        let fuse = Linear::new(&path.sub("fuse"), fused, cfg.out_dim, true)?;
        Ok(RgbdEncoder {
            rgb,
            depth,
            fuse,
            cfg: cfg.clone(),
        })
    }

    /// Encodes a clip: rgb `(B, T, 3, H, W)` in [0, 1] and depth `(B, T, 1, H', W')` in metres
    /// (0 = hole), as the loader gives them, with the same `B` and `T`. rgb is required by an
    /// encoder with an RGB stream and refused by a depth-only one.
    /// Returns `per_time (B, T', d)` with `T' = ceil(T / temporal factor)` and `pooled (B, d)`,
    /// its mean over time.
    pub fn forward(&self, rgb: Option<&Tensor>, depth: &Tensor) -> Result<EncoderOutput> {
        let rgb = match (&self.rgb, rgb) {
            (Some(stream), Some(rgb)) => Some((stream, rgb)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "this encoder has an RGB stream and needs rgb as well as depth (a model for data without RGB is built with rgb_stream: false)",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "this encoder is depth-only (built for data without RGB) but was given rgb",
                ))
            }
        };
        let mut streams = vec![("depth", depth, 1)];
        if let Some((_, rgb)) = rgb {
            streams.insert(0, ("rgb", rgb, 3));
        }
        for (name, t, c) in streams {
            let dims = t.dims();
            if dims.len() != 5 || dims[2] != c {
                return Err(shape_err(
                    &[dims],
                    format!("{name} must be (B, T, {c}, H, W), got {dims:?}"),
                ));
            }
            if dims.contains(&0) {
                return Err(shape_err(
                    &[dims],
                    format!("{name} has an empty dimension: {dims:?}"),
                ));
            }
            let want = self.fuse.weight.dtype();
            if t.dtype() != want {
                return Err(invalid(format!(
                    "{name} is {:?} but the encoder's parameters are {want:?}",
                    t.dtype()
                )));
            }
        }
        let d = depth.dims();
        // (B, T, C, H, W) -> (B, C, T, H, W), the layout Conv3d expects; each stream gives
        // (B, C_s, T').
        let mut parts = Vec::with_capacity(2);
        if let Some((stream, rgb)) = rgb {
            let r = rgb.dims();
            if r[0] != d[0] || r[1] != d[1] {
                return Err(shape_err(
                    &[r, d],
                    format!(
                        "rgb and depth must have the same batch size and number of frames: (B, T) = ({}, {}) vs ({}, {})",
                        r[0], r[1], d[0], d[1]
                    ),
                ));
            }
            parts.push(stream.forward(&rgb.permute(&[0, 2, 1, 3, 4])?)?);
        }
        parts.push(self.depth.forward(&depth.permute(&[0, 2, 1, 3, 4])?)?);
        // (B, C_rgb + C_depth, T') -> (B, T', C) -> (B, T', d).
        let z = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::concat(&parts.iter().collect::<Vec<_>>(), 1)?
        }
        .permute(&[0, 2, 1])?;
        let per_time = self.fuse.forward(&z)?;
        let pooled = per_time.mean(&[1], false)?;
        Ok(EncoderOutput { pooled, per_time })
    }

    /// `d`, the width of `pooled` and `per_time`.
    pub fn out_dim(&self) -> usize {
        self.cfg.out_dim
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &RgbdEncoderConfig {
        &self.cfg
    }

    /// The number of output time steps `T'` for `t` input frames.
    pub fn output_frames(&self, t: usize) -> usize {
        self.cfg.output_frames(t)
    }
}
