//! From a run configuration to the objects a command needs: the model, its objective and the
//! optimizer.

use crate::config::RunConfig;
use crate::error::TrainerResult;
use engine::nn::ParamStore;
use engine::optim::{AdamW, AdamWConfig};
use engine::Device;
use models::data::Modality;
use models::losses::{LossWeights, Negatives, SoftTargets};
use models::objective::{MaskConfig, MocoConfig, ObjectiveConfig};
use models::rcmcl::{DataShape, FusionKind, Rcmcl, RcmclConfig};

/// The model configuration of a run (its preset, fusion and, with multi-skeleton views, the
/// extra conventions E_S accepts).
pub fn model_config(cfg: &RunConfig, shape: DataShape) -> TrainerResult<RcmclConfig> {
    let mut m = RcmclConfig::preset(&cfg.model.preset, shape)?;
    m.fusion = match cfg.model.fusion.as_str() {
        "average" => FusionKind::Average,
        "amg-shared" => FusionKind::Amg { shared: true },
        _ => FusionKind::Amg { shared: false },
    };
    if cfg.objective.multi_view {
        m.skeleton.formats = vec![
            Modality::Skeleton,
            Modality::Skeleton17,
            Modality::Skeleton15,
        ];
    }
    Ok(m)
}

/// The model, built on `device` with the run's seed.
pub fn build_model(cfg: &RunConfig, shape: DataShape, device: Device) -> TrainerResult<Rcmcl> {
    let store = ParamStore::with_seed(cfg.seed).with_device(device);
    Ok(Rcmcl::new(&store, &model_config(cfg, shape)?)?)
}

/// The pre-training objective of a run.
pub fn objective_config(cfg: &RunConfig) -> ObjectiveConfig {
    let o = &cfg.objective;
    ObjectiveConfig {
        weights: LossWeights {
            cm: o.cm,
            im: o.im,
            deg: o.deg,
            fusion: o.fusion,
        },
        tau: o.tau,
        negatives: match o.negatives.as_str() {
            "hard" => Negatives::Hard {
                beta: o.beta,
                tau_plus: o.tau_plus,
            },
            "debiased" => Negatives::Debiased {
                tau_plus: o.tau_plus,
            },
            _ => Negatives::Uniform,
        },
        barlow_lambda: o.barlow_lambda,
        soft_targets: o.soft_targets.then(SoftTargets::default),
        moco: (o.moco_queue > 0).then_some(MocoConfig {
            queue: o.moco_queue,
            momentum: o.moco_momentum,
        }),
        multi_view: o.multi_view,
        mask: MaskConfig {
            joint_ratio: o.mask_joints,
            frame_ratio: o.mask_frames,
        },
        fusion_drop: o.fusion_drop,
        seed: cfg.seed,
    }
}

/// AdamW over `params` with the run's learning rate and weight decay.
pub fn optimizer(
    cfg: &RunConfig,
    params: Vec<(String, engine::Tensor)>,
    lr: f64,
) -> TrainerResult<AdamW> {
    Ok(AdamW::new(
        params,
        AdamWConfig::new(lr).weight_decay(cfg.train.weight_decay),
    )?)
}
