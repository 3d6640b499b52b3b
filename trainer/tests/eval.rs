//! Feature extraction on a tiny model over a tiny synthetic dataset: shapes, labels, order,
//! evaluation mode, and the degradation scenarios (a dropped sensor is the model run without
//! it; a corruption touches its own sensor only).

use engine::nn::ParamStore;
use engine::Device;
use models::data::degrade::{Degradations, ModalityDrop, Sensor};
use models::data::format::{Dataset, Verify};
use models::data::loader::{Loader, LoaderConfig};
use models::data::synthetic::{write_dataset, SynthConfig};
use models::data::Modality;
use models::inputs::Inputs;
use models::rcmcl::{DataShape, Rcmcl, RcmclConfig};
use std::sync::{Arc, OnceLock};
use trainer::eval::{
    corruption_scenarios, dataset_labels, dropout_scenarios, extract_features, knn_top1,
    linear_probe, Features, ProbeConfig, Scenario,
};

const MODS: [Modality; 4] = [
    Modality::Skeleton,
    Modality::Depth,
    Modality::Rgb,
    Modality::Points,
];

/// 24 samples: 8 classes, 1 subject, 3 cameras, at the tiny preset's sizes.
fn dataset() -> Arc<Dataset> {
    static DATA: OnceLock<(tempfile::TempDir, Arc<Dataset>)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tiny8");
        let mut cfg = SynthConfig::preset("tiny").unwrap();
        cfg.classes = 8;
        cfg.subjects = 1;
        write_dataset(&cfg, &out, false, |_, _| {}).unwrap();
        let ds = Arc::new(Dataset::open(&out, Verify::Checksums).unwrap());
        (dir, ds)
    })
    .1
    .clone()
}

/// The tiny model preset (with its dropout: evaluation mode must switch it off), seed 3.
fn new_model() -> Rcmcl {
    let shape = DataShape {
        frames: 8,
        bodies: 1,
        joints: 25,
        classes: 32,
        rgb: true,
    };
    let cfg = RcmclConfig::preset("tiny", shape).unwrap();
    Rcmcl::new(&ParamStore::with_seed(3), &cfg).unwrap()
}

/// One model shared by the tests, always in evaluation mode (a test that flips the training
/// flag builds its own: tests run in parallel).
fn model() -> &'static Rcmcl {
    static MODEL: OnceLock<Rcmcl> = OnceLock::new();
    MODEL.get_or_init(|| {
        let m = new_model();
        m.store().set_training(false);
        m
    })
}

fn loader(scenario: &Scenario, shuffle: bool) -> Loader {
    let ds = dataset();
    let indices: Vec<u32> = (0..ds.len() as u32).collect();
    let mut base = LoaderConfig::new(&MODS, 10);
    base.threads = 0;
    base.shuffle = shuffle;
    base.seed = 4;
    Loader::new(ds, &indices, scenario.loader_config(&base)).unwrap()
}

fn features(scenario: &Scenario) -> Features {
    extract_features(
        model(),
        &loader(scenario, false),
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap()
}

fn clean() -> &'static Features {
    static CLEAN: OnceLock<Features> = OnceLock::new();
    CLEAN.get_or_init(|| features(&Scenario::clean()))
}

fn scenario(name: &str) -> Scenario {
    dropout_scenarios()
        .into_iter()
        .chain(corruption_scenarios())
        .find(|s| s.name == name)
        .unwrap()
}

#[test]
fn features_have_the_right_shapes_labels_and_order() {
    let ds = dataset();
    let n = ds.len();
    assert_eq!(n, 24);
    let m = &new_model();
    let d = m.feature_dim();
    m.store().set_training(true);
    let mut calls = Vec::new();
    let f = extract_features(
        m,
        &loader(&Scenario::clean(), false),
        Device::Cpu,
        &mut |a, b| calls.push((a, b)),
    )
    .unwrap();
    assert!(m.store().is_training(), "the training flag is restored");
    m.store().set_training(false);
    assert_eq!(calls, [(1, 3), (2, 3), (3, 3)]);
    assert_eq!((f.len(), f.dim), (n, d));
    assert_eq!(f.fused.len(), n * d);
    let all: Vec<u32> = (0..n as u32).collect();
    assert_eq!(f.samples, all);
    assert_eq!(f.labels, dataset_labels(&ds, &all).unwrap());
    let mut classes = f.labels.clone();
    classes.sort();
    classes.dedup();
    assert_eq!(classes, (0..8).collect::<Vec<i64>>());
    for s in Sensor::ALL {
        let z = f.sensor(s).unwrap_or_else(|| panic!("{s:?} features"));
        assert_eq!(z.len(), n * d);
        assert!(z.iter().all(|v| v.is_finite()));
        let g = f.gates[s as usize].as_ref().unwrap();
        assert_eq!(g.len(), n);
        assert!(g.iter().all(|v| *v > 0.0 && *v < 1.0), "{g:?}");
        assert!(f.present[s as usize].iter().all(|&p| p));
    }
    assert!(f.fused.iter().all(|v| v.is_finite()));
    // Distinct samples, distinct features.
    assert_ne!(f.fused_row(0), f.fused_row(1));
    // Evaluation mode: the same features again, and the same per sample in any order or
    // batching.
    assert_eq!(&f, clean());
    let shuffled = extract_features(
        m,
        &loader(&Scenario::clean(), true),
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap();
    assert_ne!(shuffled.samples, f.samples);
    for (row, &i) in shuffled.samples.iter().enumerate() {
        let i = i as usize;
        assert_eq!(shuffled.labels[row], f.labels[i]);
        for (a, b) in shuffled.fused_row(row).iter().zip(f.fused_row(i)) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "sample {i}: {a} vs {b}"
            );
        }
    }
    // Two views are refused.
    let mut two = LoaderConfig::new(&MODS, 10);
    two.views = 2;
    two.threads = 0;
    let l2 = Loader::new(ds.clone(), &all, two).unwrap();
    assert!(extract_features(m, &l2, Device::Cpu, &mut |_, _| {}).is_err());
}

#[test]
fn r_missing_is_the_model_without_rgbd() {
    let m = model();
    let d = m.feature_dim();
    let f = features(&scenario("R missing"));
    assert!(f.sensor(Sensor::Rgbd).is_none() && f.gates[0].is_none());
    assert!(f.present[0].iter().all(|&p| !p));
    // The other sensors' features are untouched.
    assert_eq!(f.sensor(Sensor::Skeleton), clean().sensor(Sensor::Skeleton));
    assert_eq!(f.sensor(Sensor::Points), clean().sensor(Sensor::Points));
    assert_ne!(f.fused, clean().fused);
    // The reference: the clean batches, given to the model without RGB-D; and the degraded
    // batches as the loader gives them (zeros plus presence masks), given as they are.
    assert!(!m.store().is_training());
    let mut without = Vec::new();
    let mut masked = Vec::new();
    engine::no_grad(|| {
        for batch in loader(&Scenario::clean(), false).epoch(0) {
            let x = Inputs::from_batch(&batch.unwrap(), 0).unwrap();
            let z = m
                .fuse(&m.encode(&x.without(Sensor::Rgbd)).unwrap())
                .unwrap();
            without.extend(z.fused.to_vec::<f32>().unwrap());
        }
        for batch in loader(&scenario("R missing"), false).epoch(0) {
            let x = Inputs::from_batch(&batch.unwrap(), 0).unwrap();
            assert!(x.presence[0].is_some() && x.rgb.is_some());
            let z = m.fuse(&m.encode(&x).unwrap()).unwrap();
            masked.extend(z.fused.to_vec::<f32>().unwrap());
        }
    });
    assert_eq!(f.fused, without);
    assert_eq!(masked.len(), f.fused.len());
    for (i, (a, b)) in masked.iter().zip(&f.fused).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
            "row {}: presence mask {a} vs without {b}",
            i / d
        );
    }
    // R&P missing leaves the skeleton alone: Z_fusion is Z_S (a single gate normalises to 1).
    let only_s = features(&scenario("R&P missing"));
    let zs = clean().sensor(Sensor::Skeleton).unwrap();
    for (a, b) in only_s.fused.iter().zip(zs) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn per_sample_drops_zero_the_missing_rows() {
    let mut base = LoaderConfig::new(&MODS, 10);
    base.threads = 0;
    base.shuffle = false;
    base.seed = 9;
    base.degrade = Some(Degradations {
        modality_drop: Some(ModalityDrop::Random {
            p: 0.5,
            keep_one: true,
        }),
        ..Degradations::default()
    });
    let ds = dataset();
    let all: Vec<u32> = (0..ds.len() as u32).collect();
    let l = Loader::new(ds, &all, base).unwrap();
    let f = extract_features(model(), &l, Device::Cpu, &mut |_, _| {}).unwrap();
    let d = f.dim;
    let mut dropped = 0;
    for s in Sensor::ALL {
        let k = s as usize;
        let (z, g) = (f.sensor(s).unwrap(), f.gates[k].as_ref().unwrap());
        for i in 0..f.len() {
            let row = &z[i * d..(i + 1) * d];
            if f.present[k][i] {
                assert!(g[i] > 0.0 && row.iter().any(|&v| v != 0.0));
                // A present sensor's Z_M does not depend on the other sensors.
                assert_eq!(row, &clean().sensor(s).unwrap()[i * d..(i + 1) * d]);
            } else {
                dropped += 1;
                assert!(g[i] == 0.0 && row.iter().all(|&v| v == 0.0));
            }
        }
    }
    assert!(
        dropped > 5,
        "p = 0.5 drops some of 72 sensor slots: {dropped}"
    );
    for i in 0..f.len() {
        assert!((0..3).any(|k| f.present[k][i]), "keep_one keeps a sensor");
    }
}

#[test]
fn corruptions_touch_their_own_sensor() {
    let sjn = features(&scenario("SJN 0.10"));
    let pcs = features(&scenario("PCS 70%"));
    let c = clean();
    assert_ne!(sjn.sensor(Sensor::Skeleton), c.sensor(Sensor::Skeleton));
    assert_eq!(sjn.sensor(Sensor::Points), c.sensor(Sensor::Points));
    assert_eq!(sjn.sensor(Sensor::Rgbd), c.sensor(Sensor::Rgbd));
    assert_ne!(pcs.sensor(Sensor::Points), c.sensor(Sensor::Points));
    assert_eq!(pcs.sensor(Sensor::Skeleton), c.sensor(Sensor::Skeleton));
    assert_eq!(pcs.labels, c.labels);
}

#[test]
fn probe_and_knn_run_on_extracted_features() {
    // Untrained features of 24 samples, 8 classes: train on cameras 2 and 3, test on camera 1.
    let f = clean();
    let ds = dataset();
    let d = f.dim;
    let (mut tx, mut ty, mut vx, mut vy) = (vec![], vec![], vec![], vec![]);
    for (i, &s) in f.samples.iter().enumerate() {
        let (x, y) = if ds.meta(s as usize).unwrap().camera == 1 {
            (&mut vx, &mut vy)
        } else {
            (&mut tx, &mut ty)
        };
        x.extend_from_slice(f.fused_row(i));
        y.push(f.labels[i]);
    }
    assert_eq!((ty.len(), vy.len()), (16, 8));
    let r = linear_probe(&tx, &ty, &vx, &vy, d, 32, &ProbeConfig::default()).unwrap();
    // 16 points in 256 dimensions are always linearly separable.
    assert_eq!(r.train_top1, 100.0);
    assert!((0.0..=100.0).contains(&r.test_top1));
    // kNN of the train set on itself with k = 1 finds each sample (distinct features).
    assert_eq!(knn_top1(&tx, &ty, &tx, &ty, d, 32, 1, 0.07), 100.0);
    let acc = knn_top1(&tx, &ty, &vx, &vy, d, 32, 20, 0.07);
    assert!((0.0..=100.0).contains(&acc));
}
