//! The evaluation a trained model gets: a linear probe on Z_fusion (and on each sensor's Z_M),
//! kNN, and accuracy under sensor dropout and corruption, all on one split.

use crate::config::RunConfig;
use crate::data;
use crate::error::TrainerResult;
use crate::eval::{
    extract_features, knn_top1, linear_probe, rdp, top1, Features, ProbeConfig, ProbeResult,
    Scenario, KNN_DEFAULT_K, KNN_DEFAULT_T,
};
use crate::progress::Output;
use engine::Device;
use models::data::degrade::Sensor;
use models::data::format::Dataset;
use models::inputs::sensor_name;
use models::rcmcl::Rcmcl;
use std::sync::Arc;

/// Accuracy (%) of the probe under one scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioResult {
    pub name: String,
    pub top1: f64,
    /// RDP against the clean accuracy.
    pub rdp: f64,
}

/// Everything `evaluate` measured on one split.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub split: String,
    pub train_samples: usize,
    pub test_samples: usize,
    /// Linear probe on Z_fusion: (train, test) Top-1.
    pub probe: (f64, f64),
    pub knn: f64,
    /// Linear probe on each sensor's own feature (test Top-1).
    pub per_sensor: Vec<(String, f64)>,
    /// The fused probe on degraded test data.
    pub scenarios: Vec<ScenarioResult>,
}

fn probe_config(cfg: &RunConfig) -> ProbeConfig {
    ProbeConfig {
        epochs: cfg.probe.epochs,
        batch_size: cfg.probe.batch_size,
        lr: cfg.probe.lr,
        weight_decay: cfg.probe.weight_decay,
        seed: cfg.seed,
    }
}

/// What feature extraction needs besides the samples.
struct Extractor<'a> {
    model: &'a Rcmcl,
    ds: &'a Arc<Dataset>,
    cfg: &'a RunConfig,
    device: Device,
    out: Output,
}

impl Extractor<'_> {
    fn features(
        &self,
        indices: &[u32],
        scenario: &Scenario,
        what: &str,
    ) -> TrainerResult<Features> {
        let loader =
            data::eval_loader(self.ds.clone(), indices, self.cfg, scenario.degrade.clone())?;
        let bar = self.out.bar(loader.len() as u64, what);
        let f = extract_features(self.model, &loader, self.device, &mut |done, _| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        Ok(f)
    }
}

/// Probes `model` on `split` and scores it under `scenarios` (the first must be the clean one).
pub fn evaluate(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    split: &str,
    scenarios: &[Scenario],
    device: Device,
    out: Output,
) -> TrainerResult<(Evaluation, ProbeResult)> {
    let mut data_cfg = cfg.data.clone();
    data_cfg.split = split.to_string();
    let (train, test) = data::split_indices(ds, &data_cfg)?;
    let classes = ds.spec().classes.len();
    let clean = Scenario::clean();
    let ex = Extractor {
        model,
        ds,
        cfg,
        device,
        out,
    };
    let tr = ex.features(&train, &clean, "features")?;
    let te = ex.features(&test, &clean, "features")?;
    let pc = probe_config(cfg);
    let d = tr.dim;
    let probe = linear_probe(
        &tr.fused, &tr.labels, &te.fused, &te.labels, d, classes, &pc,
    )?;
    let knn = knn_top1(
        &tr.fused,
        &tr.labels,
        &te.fused,
        &te.labels,
        d,
        classes,
        KNN_DEFAULT_K,
        KNN_DEFAULT_T,
    );
    let mut per_sensor = Vec::new();
    for s in Sensor::ALL {
        if let (Some(a), Some(b)) = (tr.sensor(s), te.sensor(s)) {
            let r = linear_probe(a, &tr.labels, b, &te.labels, d, classes, &pc)?;
            per_sensor.push((sensor_name(s).to_string(), r.test_top1));
        }
    }
    let clean_top1 = probe.test_top1;
    let mut results = Vec::new();
    for sc in scenarios {
        let acc = if sc.degrade.is_none() {
            clean_top1
        } else {
            let f = ex.features(&test, sc, &sc.name)?;
            top1(&probe.logits(&f.fused, d), &f.labels, classes)
        };
        results.push(ScenarioResult {
            name: sc.name.clone(),
            top1: acc,
            rdp: rdp(clean_top1, acc),
        });
    }
    Ok((
        Evaluation {
            split: split.to_string(),
            train_samples: train.len(),
            test_samples: test.len(),
            probe: (probe.train_top1, probe.test_top1),
            knn,
            per_sensor,
            scenarios: results,
        },
        probe,
    ))
}

impl Evaluation {
    /// The evaluation as markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### Split `{}` ({} train / {} test samples)\n\n| protocol | Top-1 (%) |\n|---|---|\n| linear probe on Z_fusion (test) | {:.1} |\n| linear probe on Z_fusion (train) | {:.1} |\n| kNN on Z_fusion (k = {KNN_DEFAULT_K}) | {:.1} |\n",
            self.split, self.train_samples, self.test_samples, self.probe.1, self.probe.0, self.knn
        );
        for (n, a) in &self.per_sensor {
            s.push_str(&format!("| linear probe on Z_{n} alone | {a:.1} |\n"));
        }
        if !self.scenarios.is_empty() {
            s.push_str("\n| condition | Top-1 (%) | RDP (%) |\n|---|---|---|\n");
            for r in &self.scenarios {
                s.push_str(&format!("| {} | {:.1} | {:.1} |\n", r.name, r.top1, r.rdp));
            }
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "split": self.split,
            "probe_train_top1": self.probe.0,
            "probe_test_top1": self.probe.1,
            "knn_top1": self.knn,
            "per_sensor": self.per_sensor.iter().map(|(n, a)| serde_json::json!({"sensor": n, "top1": a})).collect::<Vec<_>>(),
            "scenarios": self.scenarios.iter().map(|r| serde_json::json!({"name": r.name, "top1": r.top1, "rdp": r.rdp})).collect::<Vec<_>>(),
        })
    }
}
