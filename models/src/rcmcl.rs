//! The whole RCMCL model: the three encoders (E_R, E_S, E_P), a projection head per sensor
//! (H_R, H_S, H_P) and one for the fused feature (for L_FUSION), the skeleton decoder D_S, the
//! AMG gate (or average fusion) and the classifier C.
//!
//! Parameters are named hierarchically so a checkpoint reads like the model:
//! `encoder.skeleton.block3.tcn.weight`, `encoder.rgbd.rgb.stem.conv.weight`,
//! `encoder.points.sa1.mlp.0.conv.weight`, `head.skeleton.layers.0.linear.weight`,
//! `head.fusion...`, `decoder...`, `gate...`, `classifier...`.

use crate::data::degrade::Sensor;
use crate::data::Modality;
use crate::encoder::EncoderOutput;
use crate::gate::{average_fusion, Amg, AmgConfig};
use crate::heads::{Classifier, DecoderConfig, Projection, ProjectionHead, SkeletonDecoder};
use crate::inputs::{sensor_name, Inputs, SENSORS};
use crate::point::{PointEncoder, PointEncoderConfig};
use crate::rgbd::{RgbdEncoder, RgbdEncoderConfig};
use crate::skeleton::{SkeletonEncoder, SkeletonEncoderConfig};
use engine::nn::ParamStore;
use engine::{Error, NoGradGuard, Result, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// How the per-sensor features become one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusionKind {
    /// The AMG gate (Eq. 4, 5); `shared`: one W_G for every sensor.
    Amg { shared: bool },
    /// The plain mean of the present sensors' features (ablation configurations 1-5).
    Average,
}

/// The sizes of the data the model is built for (the decoder's output and the classifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    /// Frames of the skeleton sequence D_S reconstructs.
    pub frames: usize,
    /// Bodies per skeleton frame.
    pub bodies: usize,
    /// Joints of the primary skeleton convention.
    pub joints: usize,
    pub classes: usize,
    /// Whether the data has RGB video; without it (NTU RGB+D's masked depth alone) E_R is
    /// depth-only.
    pub rgb: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RcmclConfig {
    pub skeleton: SkeletonEncoderConfig,
    pub rgbd: RgbdEncoderConfig,
    pub point: PointEncoderConfig,
    /// Hidden width of the projection heads.
    pub proj_hidden: usize,
    /// Output width of the projection heads (the contrastive space).
    pub proj_dim: usize,
    /// Hidden widths of D_S.
    pub decoder_hidden: Vec<usize>,
    pub data: DataShape,
    pub fusion: FusionKind,
}

impl RcmclConfig {
    pub const PRESETS: [&'static str; 4] = ["tiny", "small", "base", "paper"];

    /// The model presets: `tiny` (tests, seconds on a CPU), `small` (the default pre-training on
    /// a 2-core CPU), `base` (a GPU in minutes), `paper` (the paper's widths: the full ST-GCN
    /// stack, an R(2+1)D-18-like RGB-D encoder, the large PointNet++ and transformer). All use
    /// AMG fusion with a gate per sensor.
    pub fn preset(name: &str, data: DataShape) -> Result<RcmclConfig> {
        let (skeleton, rgbd, point, proj_hidden, decoder_hidden) = match name {
            "tiny" => ("tiny", "tiny", "tiny", 64, vec![64]),
            "small" => ("ssl", "small", "small", 256, vec![256]),
            "base" => ("ssl", "base", "base", 512, vec![512]),
            "paper" => ("stgcn", "r2plus1d18", "paper", 1024, vec![512, 1024]),
            _ => {
                return Err(Error::invalid(
                    "RcmclConfig::preset",
                    format!(
                        "unknown model preset {name:?} (expected one of {:?})",
                        Self::PRESETS
                    ),
                ))
            }
        };
        let mut rgbd = RgbdEncoderConfig::preset(rgbd)?;
        rgbd.rgb_stream = data.rgb;
        Ok(RcmclConfig {
            skeleton: SkeletonEncoderConfig::preset(skeleton)?,
            rgbd,
            point: PointEncoderConfig::preset(point)?,
            proj_hidden,
            proj_dim: 128,
            decoder_hidden,
            data,
            fusion: FusionKind::Amg { shared: false },
        })
    }

    /// The common feature width d of the three encoders, or an error naming the mismatch.
    pub fn feature_dim(&self) -> Result<usize> {
        let (s, r, p) = (self.skeleton.out_dim, self.rgbd.out_dim, self.point.out_dim);
        if s != r || s != p {
            return Err(Error::invalid(
                "RcmclConfig",
                format!("the encoders must share one feature width d: skeleton {s}, rgbd {r}, points {p}"),
            ));
        }
        Ok(s)
    }
}

/// The encoders' outputs for one batch.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// Per sensor (in `SENSORS` order), the encoder output when the sensor's tensors were given.
    pub z: [Option<EncoderOutput>; 3],
    /// The extra skeleton conventions of the inputs (multi-skeleton views), encoded by E_S.
    pub extra_skeletons: Vec<(Modality, EncoderOutput)>,
    /// The inputs' per-sample presence masks.
    pub presence: [Option<Tensor>; 3],
}

impl Encoded {
    /// The pooled feature Z_M of `s`, if the sensor was given.
    pub fn pooled(&self, s: Sensor) -> Option<&Tensor> {
        self.z[s as usize].as_ref().map(|o| &o.pooled)
    }
}

/// The fused feature and the gate values that made it.
#[derive(Clone, Debug)]
pub struct Fused {
    /// Z_fusion, (B, d).
    pub fused: Tensor,
    /// Per sensor, the effective gate (B, 1) (gate times presence); None for absent sensors
    /// and with average fusion.
    pub gates: [Option<Tensor>; 3],
}

pub struct Rcmcl {
    config: RcmclConfig,
    store: ParamStore,
    pub skeleton: SkeletonEncoder,
    pub rgbd: RgbdEncoder,
    pub point: PointEncoder,
    /// H_M per sensor, in `SENSORS` order.
    pub heads: [ProjectionHead; 3],
    /// Projects Z_fusion into the contrastive space for L_FUSION.
    pub fusion_head: ProjectionHead,
    pub decoder: SkeletonDecoder,
    pub gate: Option<Amg>,
    pub classifier: Classifier,
    /// Linear-probe mode: encoders, heads and gate run without gradients.
    frozen: AtomicBool,
}

impl Rcmcl {
    /// Builds the model in `store` (whose seed, dtype and device the parameters take).
    pub fn new(store: &ParamStore, config: &RcmclConfig) -> Result<Rcmcl> {
        let d = config.feature_dim()?;
        let root = store.root();
        let enc = root.sub("encoder");
        let head = |name: &str| {
            ProjectionHead::new(
                &root.sub("head").sub(name),
                d,
                config.proj_hidden,
                config.proj_dim,
            )
        };
        let data = config.data;
        let decoder = SkeletonDecoder::new(
            &root.sub("decoder"),
            &DecoderConfig {
                in_dim: d,
                hidden: config.decoder_hidden.clone(),
                frames: data.frames,
                bodies: data.bodies,
                joints: data.joints,
                channels: 3,
            },
        )?;
        let gate = match config.fusion {
            FusionKind::Amg { shared } => Some(Amg::new(
                &root.sub("gate"),
                &AmgConfig {
                    dim: d,
                    modalities: 3,
                    shared,
                },
            )?),
            FusionKind::Average => None,
        };
        Ok(Rcmcl {
            skeleton: SkeletonEncoder::new(&enc.sub("skeleton"), &config.skeleton)?,
            rgbd: RgbdEncoder::new(&enc.sub("rgbd"), &config.rgbd)?,
            point: PointEncoder::new(&enc.sub("points"), &config.point)?,
            heads: [
                head(sensor_name(SENSORS[0]))?,
                head(sensor_name(SENSORS[1]))?,
                head(sensor_name(SENSORS[2]))?,
            ],
            fusion_head: head("fusion")?,
            decoder,
            gate,
            classifier: Classifier::new(&root.sub("classifier"), d, data.classes)?,
            config: config.clone(),
            store: store.clone(),
            frozen: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &RcmclConfig {
        &self.config
    }

    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The feature width d.
    pub fn feature_dim(&self) -> usize {
        self.skeleton.out_dim()
    }

    /// Linear-probe mode: everything but the classifier runs without gradients and in
    /// evaluation mode (batch norm on running statistics) while `frozen`; `trainable()` then
    /// lists the classifier alone. Switch the store to evaluation too (`store().set_training`):
    /// the classifier has no layer that differs.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
        if frozen {
            self.store.set_training(false);
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }

    /// The parameters an optimizer should update: all of them, or the classifier's alone when
    /// frozen.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let all = self.store.params();
        if self.is_frozen() {
            all.into_iter()
                .filter(|(n, _)| n.starts_with("classifier."))
                .collect()
        } else {
            all
        }
    }

    /// Runs the encoder of every sensor the inputs have.
    pub fn encode(&self, inputs: &Inputs) -> Result<Encoded> {
        inputs.batch_size()?;
        let _guard = self.is_frozen().then(NoGradGuard::new);
        let rgbd = match (&inputs.rgb, &inputs.depth) {
            (rgb, Some(depth)) => Some(self.rgbd.forward(rgb.as_ref(), depth)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::invalid(
                    "Rcmcl::encode",
                    "the RGB-D encoder needs depth with rgb (drop the sensor as a whole)",
                ))
            }
        };
        let mut skeleton = None;
        let mut extra_skeletons = Vec::new();
        for (i, (m, x)) in inputs.skeletons.iter().enumerate() {
            let out = self.skeleton.forward(x, *m)?;
            if i == 0 {
                skeleton = Some(out);
            } else {
                extra_skeletons.push((*m, out));
            }
        }
        let points = inputs
            .points
            .as_ref()
            .map(|p| self.point.forward(p))
            .transpose()?;
        Ok(Encoded {
            z: [rgbd, skeleton, points],
            extra_skeletons,
            presence: inputs.presence.clone(),
        })
    }

    /// H_M(Z_M) for sensor `s`.
    pub fn project(&self, s: Sensor, z: &Tensor) -> Result<Projection> {
        let _guard = self.is_frozen().then(NoGradGuard::new);
        self.heads[s as usize].forward(z)
    }

    /// Z_fusion of the encoded sensors (Eq. 5 with AMG, or their mean), honouring presence.
    pub fn fuse(&self, encoded: &Encoded) -> Result<Fused> {
        let _guard = self.is_frozen().then(NoGradGuard::new);
        let feats: Vec<Option<&Tensor>> = SENSORS.iter().map(|&s| encoded.pooled(s)).collect();
        let presence: Vec<Option<&Tensor>> = encoded.presence.iter().map(Option::as_ref).collect();
        match &self.gate {
            Some(gate) => {
                let f = gate.fuse(&feats, &presence)?;
                let mut gates: [Option<Tensor>; 3] = [None, None, None];
                for (slot, g) in gates.iter_mut().zip(f.gates) {
                    *slot = g;
                }
                Ok(Fused {
                    fused: f.fused,
                    gates,
                })
            }
            None => Ok(Fused {
                fused: average_fusion(&feats, &presence)?,
                gates: [None, None, None],
            }),
        }
    }

    /// The gate values over time of every encoded sensor: (B, T'_M) each (paper Fig. 7). Each
    /// sensor's gate runs on its own per-time-step features (the encoders may stride time
    /// differently); a sensor's presence mask, if any, multiplies its gate. None with average
    /// fusion.
    pub fn gates_over_time(&self, encoded: &Encoded) -> Result<Option<[Option<Tensor>; 3]>> {
        let Some(gate) = &self.gate else {
            return Ok(None);
        };
        let _guard = NoGradGuard::new();
        let feats: Vec<Option<&Tensor>> = encoded
            .z
            .iter()
            .map(|o| o.as_ref().map(|o| &o.per_time))
            .collect();
        let gates = gate.gates(&feats)?;
        let mut out: [Option<Tensor>; 3] = [None, None, None];
        for (i, g) in gates.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let (b, t) = (g.dims()[0], g.dims()[1]);
            let mut g = g.reshape([b, t])?;
            if let Some(p) = &encoded.presence[i] {
                g = g.mul(&p.reshape([b, 1])?)?;
            }
            out[i] = Some(g);
        }
        Ok(Some(out))
    }

    /// C(Z_fusion): class logits (B, classes).
    pub fn classify(&self, inputs: &Inputs) -> Result<Tensor> {
        let fused = self.fuse(&self.encode(inputs)?)?;
        self.classifier.forward(&fused.fused)
    }

    /// The classifier alone on an already fused feature.
    pub fn classify_fused(&self, fused: &Tensor) -> Result<Tensor> {
        self.classifier.forward(fused)
    }
}

impl std::fmt::Debug for Rcmcl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rcmcl")
            .field("config", &self.config)
            .field("params", &self.store.num_params())
            .finish()
    }
}
