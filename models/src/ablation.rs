//! The ablation configurations 1-7 of paper 000, Table IV, as named presets: which losses
//! pre-train the model and how the sensors are fused.

use crate::losses::LossWeights;
use crate::objective::ObjectiveConfig;
use crate::rcmcl::{FusionKind, RcmclConfig};
use engine::{Error, Result};

/// How a configuration is trained before evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Training {
    /// No pre-training: the encoders and classifier learn from labels alone (cross-entropy on
    /// the fused feature).
    Supervised,
    /// Self-supervised pre-training with the configuration's losses, then a linear probe.
    SelfSupervised,
}

/// One row of Table IV.
#[derive(Clone, Debug, PartialEq)]
pub struct Ablation {
    /// 1 to 7, the paper's numbering.
    pub id: usize,
    /// A command-line name, e.g. `cm-im-deg`.
    pub name: &'static str,
    /// The paper's row title.
    pub title: &'static str,
    pub training: Training,
    pub weights: LossWeights,
    /// None: no fusion; each sensor is evaluated on its own and the best is reported
    /// (configuration 2, "uni-modal CL baselines").
    pub fusion: Option<FusionKind>,
}

impl Ablation {
    /// Every configuration, in the paper's order.
    pub fn all() -> Vec<Ablation> {
        let base = LossWeights::default();
        let w = |cm: bool, im: bool, deg: bool, fusion: bool| LossWeights {
            cm: if cm { base.cm } else { 0.0 },
            im: if im { base.im } else { 0.0 },
            deg: if deg { base.deg } else { 0.0 },
            fusion: if fusion { base.fusion } else { 0.0 },
        };
        let amg = Some(FusionKind::Amg { shared: false });
        let avg = Some(FusionKind::Average);
        use Training::*;
        vec![
            Ablation {
                id: 1,
                name: "supervised",
                title: "Supervised fusion baseline",
                training: Supervised,
                weights: w(false, false, false, false),
                fusion: avg,
            },
            Ablation {
                id: 2,
                name: "unimodal",
                title: "Uni-modal CL baselines (best sensor)",
                training: SelfSupervised,
                weights: w(false, true, false, false),
                fusion: None,
            },
            Ablation {
                id: 3,
                name: "cm",
                title: "L_CM only",
                training: SelfSupervised,
                weights: w(true, false, false, false),
                fusion: avg,
            },
            Ablation {
                id: 4,
                name: "cm-im",
                title: "L_CM + L_IM",
                training: SelfSupervised,
                weights: w(true, true, false, false),
                fusion: avg,
            },
            Ablation {
                id: 5,
                name: "cm-im-deg",
                title: "L_CM + L_IM + L_deg",
                training: SelfSupervised,
                weights: w(true, true, true, false),
                fusion: avg,
            },
            Ablation {
                id: 6,
                name: "cm-im-amg",
                title: "L_CM + L_IM + AMG (without L_deg)",
                training: SelfSupervised,
                weights: w(true, true, false, true),
                fusion: amg,
            },
            Ablation {
                id: 7,
                name: "full",
                title: "Full RCMCL",
                training: SelfSupervised,
                weights: w(true, true, true, true),
                fusion: amg,
            },
        ]
    }

    /// The configuration with this number (1-7) or name.
    pub fn find(key: &str) -> Result<Ablation> {
        Ablation::all()
            .into_iter()
            .find(|a| a.name == key || a.id.to_string() == key)
            .ok_or_else(|| {
                let names: Vec<String> = Ablation::all()
                    .iter()
                    .map(|a| format!("{} ({})", a.id, a.name))
                    .collect();
                Error::invalid(
                    "Ablation::find",
                    format!(
                        "unknown ablation {key:?}; expected one of {}",
                        names.join(", ")
                    ),
                )
            })
    }

    /// `model` and `objective` set up for this configuration (fusion and loss weights; every
    /// other choice is kept). Configuration 2 keeps the model's fusion (it is not used).
    pub fn apply(&self, model: &mut RcmclConfig, objective: &mut ObjectiveConfig) {
        if let Some(f) = self.fusion {
            model.fusion = f;
        }
        objective.weights = self.weights;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_configurations_match_table_iv() {
        let all = Ablation::all();
        assert_eq!(all.len(), 7);
        let on = |a: &Ablation| {
            (
                a.weights.cm > 0.0,
                a.weights.im > 0.0,
                a.weights.deg > 0.0,
                a.fusion,
            )
        };
        let amg = Some(FusionKind::Amg { shared: false });
        let avg = Some(FusionKind::Average);
        assert_eq!(on(&all[0]), (false, false, false, avg));
        assert_eq!(on(&all[1]), (false, true, false, None));
        assert_eq!(on(&all[2]), (true, false, false, avg));
        assert_eq!(on(&all[3]), (true, true, false, avg));
        assert_eq!(on(&all[4]), (true, true, true, avg));
        assert_eq!(on(&all[5]), (true, true, false, amg));
        assert_eq!(on(&all[6]), (true, true, true, amg));
        assert_eq!(all[0].training, Training::Supervised);
        // L_FUSION trains the gate: on exactly when AMG is.
        for a in &all {
            assert_eq!(a.weights.fusion > 0.0, a.fusion == amg, "config {}", a.id);
        }
        assert_eq!(Ablation::find("5").unwrap().name, "cm-im-deg");
        assert_eq!(Ablation::find("full").unwrap().id, 7);
        assert!(Ablation::find("8").is_err());
    }
}
