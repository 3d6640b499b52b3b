//! The run configuration: a preset, overlaid by a TOML file, overlaid by `--set key=value`
//! overrides. Unknown keys are errors that name the key and the keys that exist, so a typo
//! never silently falls back to a default. The resolved configuration is saved in the run
//! directory (`config.toml`) and is what `--resume` reads back.

use crate::error::{TrainerError, TrainerResult};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything a run needs to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The preset this configuration started from (informational).
    pub preset: String,
    pub seed: u64,
    /// `auto` (a GPU when one is usable, else the CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub objective: ObjectiveToml,
    pub probe: ProbeToml,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A dataset directory; empty: the synthetic dataset `synth_preset`, generated once into
    /// `cache_dir`.
    pub dir: String,
    /// The synthetic preset used when `dir` is empty: tiny, small or paper.
    pub synth_preset: String,
    /// Where generated datasets are kept; empty: `$RCMCL_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/rcmcl`, else `~/.cache/rcmcl`.
    pub cache_dir: String,
    /// The evaluation split (`xsub`, `xview`, ...; the synthetic data has xsub and xview).
    pub split: String,
    /// Samples to use from the split's training part (0: all); for quick runs and tests.
    pub max_train: usize,
    /// Samples to use from the split's test part (0: all).
    pub max_test: usize,
    /// Loader threads.
    pub threads: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// tiny, small, base or paper (`models::rcmcl::RcmclConfig::preset`).
    pub preset: String,
    /// `amg`, `amg-shared` or `average`.
    pub fusion: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// AdamW peak learning rate (after warm-up).
    pub lr: f64,
    pub weight_decay: f64,
    /// Linear warm-up, then cosine decay to `min_lr`.
    pub warmup_epochs: usize,
    pub min_lr: f64,
    /// Clip the global gradient norm to this (0: off).
    pub grad_clip: f64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Append a line to metrics.jsonl every this many steps.
    pub log_every: usize,
    /// Stop after this many consecutive steps with a non-finite loss or gradient.
    pub max_bad_steps: usize,
}

/// The pre-training objective (`models::objective::ObjectiveConfig`) in TOML form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveToml {
    /// Weights of L_CM, L_IM, L_deg, L_FUSION (0 switches a term off).
    pub cm: f64,
    pub im: f64,
    pub deg: f64,
    pub fusion: f64,
    pub tau: f64,
    /// `uniform`, `hard` (beta, tau_plus) or `debiased` (tau_plus).
    pub negatives: String,
    pub beta: f64,
    pub tau_plus: f64,
    pub barlow_lambda: f64,
    /// Soft cross-modal targets with the progressive alpha schedule (paper 002).
    pub soft_targets: bool,
    /// MoCo queue length (0: in-batch negatives).
    pub moco_queue: usize,
    pub moco_momentum: f64,
    /// Extra skeleton conventions as positives (paper 003); loads skeleton17 and skeleton15.
    pub multi_view: bool,
    pub mask_joints: f64,
    pub mask_frames: f64,
    /// Per-sensor drop probability in L_FUSION's degraded branch.
    pub fusion_drop: f64,
}

/// The linear probe run at the end of pre-training and by `trainer probe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeToml {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
}

/// The names `RunConfig::preset` knows.
pub const PRESETS: [&str; 4] = ["tiny", "small", "base", "paper"];

impl RunConfig {
    /// `tiny` (tests: seconds), `small` (the default: the small synthetic dataset on a 2-core
    /// CPU in under 15 minutes), `base` (a GPU), `paper` (the paper's schedule: batch 256,
    /// 300 epochs, 10 warm-up epochs, tau 0.07, weights 1.0 / 0.5 / 0.2).
    pub fn preset(name: &str) -> TrainerResult<RunConfig> {
        let (synth, model, epochs, batch, lr, warmup, max_train, max_test) = match name {
            "tiny" => ("tiny", "tiny", 2, 16, 2e-3, 0, 64, 64),
            "small" => ("small", "small", 3, 16, 1e-3, 1, 0, 0),
            "base" => ("small", "base", 100, 64, 1e-3, 10, 0, 0),
            "paper" => ("paper", "paper", 300, 256, 1e-3, 10, 0, 0),
            _ => {
                return Err(TrainerError::Config(format!(
                    "unknown preset {name:?} (expected one of {PRESETS:?})"
                )))
            }
        };
        Ok(RunConfig {
            preset: name.into(),
            seed: 0,
            device: "auto".into(),
            data: DataConfig {
                dir: String::new(),
                synth_preset: synth.into(),
                cache_dir: String::new(),
                split: "xsub".into(),
                max_train,
                max_test,
                threads: 2,
            },
            model: ModelConfig {
                preset: model.into(),
                fusion: "amg".into(),
            },
            train: TrainConfig {
                epochs,
                batch_size: batch,
                lr,
                weight_decay: 1e-4,
                warmup_epochs: warmup,
                min_lr: 0.0,
                grad_clip: 0.0,
                checkpoint_every: 100,
                log_every: 5,
                max_bad_steps: 5,
            },
            objective: ObjectiveToml {
                cm: 1.0,
                im: 0.5,
                deg: 0.2,
                fusion: 0.5,
                tau: 0.07,
                negatives: "uniform".into(),
                beta: 1.0,
                tau_plus: 0.1,
                barlow_lambda: engine::ops::contrastive::BARLOW_LAMBDA,
                soft_targets: false,
                moco_queue: 0,
                moco_momentum: 0.999,
                multi_view: false,
                mask_joints: 0.3,
                mask_frames: 0.2,
                fusion_drop: 0.3,
            },
            probe: ProbeToml {
                epochs: 50,
                batch_size: 256,
                lr: 1e-2,
                weight_decay: 1e-4,
            },
        })
    }

    /// The preset `preset`, then the TOML file `file` (if any), then each `key=value` of
    /// `sets` (dotted keys: `train.lr=3e-4`; values in TOML syntax, bare words as strings).
    pub fn resolve(preset: &str, file: Option<&Path>, sets: &[String]) -> TrainerResult<RunConfig> {
        let mut value = RunConfig::preset(preset)?.to_value()?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| TrainerError::Io {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
            let overlay: toml::Value = toml::from_str(&text).map_err(|e| {
                TrainerError::Config(format!("{}: {}", path.display(), e.message()))
            })?;
            merge(&mut value, overlay, "", &path.display().to_string())?;
        }
        Self::finish(value, sets)
    }

    /// This configuration with `key=value` overrides (as `resolve`'s `sets`).
    pub fn with_sets(&self, sets: &[String]) -> TrainerResult<RunConfig> {
        Self::finish(self.to_value()?, sets)
    }

    fn to_value(&self) -> TrainerResult<toml::Value> {
        toml::Value::try_from(self)
            .map_err(|e| TrainerError::Config(format!("internal: config to TOML: {e}")))
    }

    fn finish(mut value: toml::Value, sets: &[String]) -> TrainerResult<RunConfig> {
        for set in sets {
            let (key, raw) = set.split_once('=').ok_or_else(|| {
                TrainerError::Config(format!("--set {set:?}: expected key=value"))
            })?;
            let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_string()));
            let mut overlay = parsed;
            for part in key.trim().rsplit('.') {
                let mut t = toml::Table::new();
                t.insert(part.to_string(), overlay);
                overlay = toml::Value::Table(t);
            }
            merge(&mut value, overlay, "", "--set")?;
        }
        let cfg: RunConfig = value
            .try_into()
            .map_err(|e: toml::de::Error| TrainerError::Config(e.message().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a resolved configuration written by `save` (for `--resume`).
    pub fn load(path: &Path) -> TrainerResult<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainerError::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let cfg: RunConfig = toml::from_str(&text)
            .map_err(|e| TrainerError::Config(format!("{}: {}", path.display(), e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }

    /// Checks values serde cannot (ranges, names).
    pub fn validate(&self) -> TrainerResult<()> {
        let bad = |m: String| Err(TrainerError::Config(m));
        let t = &self.train;
        if t.epochs == 0 || t.batch_size < 2 {
            return bad(format!(
                "train.epochs must be >= 1 and train.batch_size >= 2 (batch statistics), got {} and {}",
                t.epochs, t.batch_size
            ));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) || t.min_lr < 0.0 || t.weight_decay < 0.0 {
            return bad(format!(
                "train.lr must be positive and train.min_lr, train.weight_decay >= 0 (got {}, {}, {})",
                t.lr, t.min_lr, t.weight_decay
            ));
        }
        if t.checkpoint_every == 0 || t.log_every == 0 {
            return bad("train.checkpoint_every and train.log_every must be >= 1".into());
        }
        if !["amg", "amg-shared", "average"].contains(&self.model.fusion.as_str()) {
            return bad(format!(
                "model.fusion must be amg, amg-shared or average, got {:?}",
                self.model.fusion
            ));
        }
        if !["uniform", "hard", "debiased"].contains(&self.objective.negatives.as_str()) {
            return bad(format!(
                "objective.negatives must be uniform, hard or debiased, got {:?}",
                self.objective.negatives
            ));
        }
        crate::device::parse_device(&self.device)?;
        Ok(())
    }
}

/// Overlays `overlay` onto `base`: tables merge key by key, anything else replaces. A key the
/// base does not have is an error naming it and the keys of its table.
fn merge(
    base: &mut toml::Value,
    overlay: toml::Value,
    prefix: &str,
    source: &str,
) -> TrainerResult<()> {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let full = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v, &full, source)?,
                    None => {
                        let known: Vec<&String> = b.keys().collect();
                        return Err(TrainerError::Config(format!(
                            "{source}: unknown key `{full}` (known keys here: {known:?})"
                        )));
                    }
                }
            }
            Ok(())
        }
        (toml::Value::Table(_), other) => Err(TrainerError::Config(format!(
            "{source}: `{prefix}` is a section, not a value (got {other})"
        ))),
        (slot, v) => {
            // Integers given where floats are expected (lr = 1) are fine.
            let v = match (&*slot, v) {
                (toml::Value::Float(_), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
                (_, v) => v,
            };
            if std::mem::discriminant(slot) != std::mem::discriminant(&v) {
                return Err(TrainerError::Config(format!(
                    "{source}: `{prefix}` expects a {}, got {v}",
                    slot.type_str()
                )));
            }
            *slot = v;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve_and_round_trip() {
        for p in PRESETS {
            let cfg = RunConfig::resolve(p, None, &[]).unwrap();
            let back: RunConfig = toml::from_str(&cfg.to_toml()).unwrap();
            assert_eq!(back, cfg);
        }
    }

    #[test]
    fn files_and_sets_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "seed = 7\n[train]\nlr = 1\nepochs = 9\n").unwrap();
        let sets = vec!["train.epochs=3".to_string(), "model.fusion=average".into()];
        let cfg = RunConfig::resolve("tiny", Some(&file), &sets).unwrap();
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.train.lr, 1.0);
        assert_eq!(cfg.train.epochs, 3);
        assert_eq!(cfg.model.fusion, "average");
    }

    #[test]
    fn typos_are_named() {
        let err = RunConfig::resolve("tiny", None, &["train.lrr=3".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.lrr") && err.contains("\"lr\""), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "[trian]\nlr = 1\n").unwrap();
        let err = RunConfig::resolve("tiny", Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("trian") && err.contains("run.toml"), "{err}");
        let err = RunConfig::resolve("tiny", None, &["train.epochs=\"x\"".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.epochs"), "{err}");
        assert!(RunConfig::resolve("huge", None, &[]).is_err());
        assert!(RunConfig::resolve("tiny", None, &["model.fusion=max".into()]).is_err());
    }
}
