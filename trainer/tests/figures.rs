//! The figures and embeddings of `trainer plot` / `trainer embed` on an untrained tiny model
//! over the tiny synthetic dataset: array shapes and contents, the t-SNE points, the gate
//! values through a sensor failure, and the charts' files.
//!
//! Set `TRAINER_PLOT_DIR=/some/dir` to keep the figures (under `figures/`) and look at them.

use engine::io::npy::load_npy;
use engine::{DType, Device, Tensor};
use models::data::degrade::{zero_from_frame, Sensor};
use models::data::format::{Dataset, Verify};
use models::data::loader::{Loader, LoaderConfig};
use models::data::synthetic::{write_dataset, SynthConfig};
use models::inputs::Inputs;
use models::rcmcl::Rcmcl;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use trainer::config::RunConfig;
use trainer::data::{data_shape, split_indices};
use trainer::error::TrainerError;
use trainer::eval::dataset_labels;
use trainer::figures::{
    corruption_figures, embed, gate_series, gates_figure, loss_curves, loss_series,
    spread_over_classes, tsne_figure, GateSeries,
};
use trainer::plot::{CHART_SIZE, SCATTER_SIZE};
use trainer::progress::Output;

const MAX_TEST: usize = 12;

/// The tiny synthetic dataset (384 samples, 8 frames), generated once.
fn dataset() -> Arc<Dataset> {
    static DATA: OnceLock<(tempfile::TempDir, Arc<Dataset>)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tiny");
        write_dataset(
            &SynthConfig::preset("tiny").unwrap(),
            &out,
            false,
            |_, _| {},
        )
        .unwrap();
        let ds = Arc::new(Dataset::open(&out, Verify::Checksums).unwrap());
        (dir, ds)
    })
    .1
    .clone()
}

fn config(sets: &[&str]) -> RunConfig {
    let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    sets.push(format!("data.max_test={MAX_TEST}"));
    sets.push("data.threads=0".into());
    let mut cfg = RunConfig::resolve("tiny", None, &sets).unwrap();
    cfg.data.dir = dataset().dir().display().to_string();
    cfg
}

fn build(cfg: &RunConfig) -> Rcmcl {
    let shape = data_shape(&dataset()).unwrap();
    trainer::setup::build_model(cfg, shape, Device::Cpu).unwrap()
}

/// The tiny AMG model, untrained (seed 0), shared by the tests. It is kept in evaluation mode:
/// the figures switch the training flag off and restore it, so with a model in training mode
/// tests running in parallel could restore it under each other.
fn model() -> &'static (RunConfig, Rcmcl) {
    static M: OnceLock<(RunConfig, Rcmcl)> = OnceLock::new();
    M.get_or_init(|| {
        let cfg = config(&[]);
        let m = build(&cfg);
        m.store().set_training(false);
        (cfg, m)
    })
}

/// A temporary folder, or `$TRAINER_PLOT_DIR/figures/<name>` to keep the files.
fn out_dir(name: &str) -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("TRAINER_PLOT_DIR") {
        Some(d) => (None, PathBuf::from(d).join("figures").join(name)),
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join(name);
            (Some(t), p)
        }
    }
}

/// Decodes a PNG, checks its size and that it is not blank.
fn check_png(path: &Path, size: (u32, u32)) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), size, "{}", path.display());
    let dark = buf[..info.buffer_size()]
        .iter()
        .filter(|&&v| v < 128)
        .count();
    assert!(dark > 1000, "{} looks blank", path.display());
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    assert_eq!(t.dtype(), DType::F32);
    t.to_vec::<f32>().unwrap()
}

#[test]
fn embed_writes_the_test_split_arrays() {
    let (cfg, model) = model();
    let ds = dataset();
    let (_keep, dir) = out_dir("embed");
    let wrote = embed(model, &ds, cfg, Device::Cpu, &dir, Output::Quiet).unwrap();
    let mut got = names(&wrote);
    got.sort();
    let mut want = vec![
        "fused.npy",
        "z_rgbd.npy",
        "z_skeleton.npy",
        "z_points.npy",
        "h_rgbd.npy",
        "h_skeleton.npy",
        "h_points.npy",
        "labels.npy",
        "samples.npy",
    ];
    want.sort();
    assert_eq!(got, want);

    let (_, test) = split_indices(&ds, &cfg.data).unwrap();
    let n = test.len();
    assert_eq!(n, MAX_TEST);
    let d = model.feature_dim();
    let proj = model.config().proj_dim;

    let samples = load_npy(dir.join("samples.npy")).unwrap();
    assert_eq!((samples.dtype(), samples.dims()), (DType::I64, &[n][..]));
    let want_samples: Vec<i64> = test.iter().map(|&i| i64::from(i)).collect();
    assert_eq!(samples.to_vec::<i64>().unwrap(), want_samples);
    let labels = load_npy(dir.join("labels.npy")).unwrap();
    assert_eq!((labels.dtype(), labels.dims()), (DType::I64, &[n][..]));
    assert_eq!(
        labels.to_vec::<i64>().unwrap(),
        dataset_labels(&ds, &test).unwrap()
    );

    let fused = load_npy(dir.join("fused.npy")).unwrap();
    assert_eq!(fused.dims(), [n, d]);
    assert!(f32s(&fused).iter().any(|&v| v.abs() > 1e-4));
    for s in ["rgbd", "skeleton", "points"] {
        let z = load_npy(dir.join(format!("z_{s}.npy"))).unwrap();
        assert_eq!(z.dims(), [n, d], "{s}");
        let h = load_npy(dir.join(format!("h_{s}.npy"))).unwrap();
        assert_eq!(h.dims(), [n, proj], "{s}");
        let h = f32s(&h);
        for row in h.chunks(proj) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{s}: |h| = {norm}");
        }
    }
    // h_M is H_M(Z_M), normalised: recompute it from the saved Z_M.
    let z = load_npy(dir.join("z_skeleton.npy")).unwrap();
    let h = engine::no_grad(|| model.project(Sensor::Skeleton, &z).unwrap().normalized);
    let saved = f32s(&load_npy(dir.join("h_skeleton.npy")).unwrap());
    for (a, b) in h.to_f64_vec().unwrap().iter().zip(&saved) {
        assert!((a - f64::from(*b)).abs() < 1e-5, "{a} vs {b}");
    }
    // The projections differ between sensors (not one array written three times).
    let hr = f32s(&load_npy(dir.join("h_rgbd.npy")).unwrap());
    assert_ne!(hr, saved);
}

#[test]
fn spreading_over_classes_takes_one_of_each_in_turn() {
    let idx = [10, 11, 12, 13, 14, 15, 16];
    let labels = [0, 0, 0, 1, 1, 2, 0];
    assert_eq!(spread_over_classes(&idx, &labels, 3), vec![10, 13, 15]);
    assert_eq!(
        spread_over_classes(&idx, &labels, 5),
        vec![10, 11, 13, 14, 15]
    );
    assert_eq!(spread_over_classes(&idx, &labels, 100), idx.to_vec());
    assert!(spread_over_classes(&idx, &labels, 0).is_empty());
}

#[test]
fn tsne_figure_has_a_point_per_sample_and_sensor() {
    let (cfg, model) = model();
    let ds = dataset();
    let (_keep, dir) = out_dir("tsne");
    let max = 8;
    let wrote = tsne_figure(model, &ds, cfg, Device::Cpu, max, &dir, Output::Quiet).unwrap();
    assert_eq!(names(&wrote), ["tsne.png", "tsne.svg", "tsne_points.csv"]);
    check_png(&dir.join("tsne.png"), SCATTER_SIZE);
    let csv = std::fs::read_to_string(dir.join("tsne_points.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("x,y,class,sensor,sample"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), max * 4);
    for s in ["rgbd", "skeleton", "points", "fused"] {
        assert_eq!(rows.iter().filter(|r| r[3] == s).count(), max, "{s}");
    }
    // The samples are those spread_over_classes picks, with their labels.
    let (_, test) = split_indices(&ds, &cfg.data).unwrap();
    let labels = dataset_labels(&ds, &test).unwrap();
    let chosen = spread_over_classes(&test, &labels, max);
    let mut seen: Vec<u32> = rows.iter().map(|r| r[4].parse().unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, chosen);
    for r in &rows {
        let x: f64 = r[0].parse().unwrap();
        let y: f64 = r[1].parse().unwrap();
        assert!(x.is_finite() && y.is_finite());
        let sample: u32 = r[4].parse().unwrap();
        let class: i64 = r[2].parse().unwrap();
        assert_eq!(class, i64::from(ds.meta(sample as usize).unwrap().label));
    }
    let svg = std::fs::read_to_string(dir.join("tsne.svg")).unwrap();
    assert!(svg.contains("t-SNE of the unified embedding"));

    let err = tsne_figure(model, &ds, cfg, Device::Cpu, 1, &dir, Output::Quiet).unwrap_err();
    assert!(matches!(err, TrainerError::Config(_)), "{err}");
}

/// The gate series computed by hand: the clean inputs of the first `samples` test samples with
/// the tensors of `dropped` zeroed from frame `from` on (`None`: clean), through `encode` and
/// `gates_over_time`, averaged over samples.
fn gates_by_hand(
    model: &Rcmcl,
    cfg: &RunConfig,
    failure: Option<(Sensor, usize)>,
    samples: usize,
) -> [Vec<f64>; 3] {
    let ds = dataset();
    let (_, test) = split_indices(&ds, &cfg.data).unwrap();
    let mods = trainer::data::modalities(&ds, false);
    let mut lc = LoaderConfig::new(&mods, 64);
    lc.shuffle = false;
    lc.threads = 0;
    let loader = Loader::new(ds, &test[..samples], lc).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let mut inputs = Inputs::from_batch(&batch, 0).unwrap();
    let zero = |t: &Tensor, from: usize| -> Tensor {
        let (b, frames) = (t.dims()[0], t.dims()[1]);
        let mut v = t.to_vec::<f32>().unwrap();
        let per_sample = v.len() / b;
        for sample in v.chunks_mut(per_sample) {
            zero_from_frame(sample, frames, from).unwrap();
        }
        Tensor::from_vec(v, t.dims().to_vec(), Device::Cpu).unwrap()
    };
    if let Some((s, from)) = failure {
        match s {
            Sensor::Rgbd => {
                inputs.rgb = Some(zero(inputs.rgb.as_ref().unwrap(), from));
                inputs.depth = Some(zero(inputs.depth.as_ref().unwrap(), from));
            }
            Sensor::Skeleton => inputs.skeletons[0].1 = zero(&inputs.skeletons[0].1, from),
            Sensor::Points => inputs.points = Some(zero(inputs.points.as_ref().unwrap(), from)),
        }
    }
    assert!(!model.store().is_training());
    let gates = engine::no_grad(|| {
        let encoded = model.encode(&inputs).unwrap();
        model.gates_over_time(&encoded).unwrap().unwrap()
    });
    gates.map(|g| {
        let g = g.unwrap();
        let t = g.dims()[1];
        let v = g.to_f64_vec().unwrap();
        (0..t)
            .map(|k| (0..samples).map(|i| v[i * t + k]).sum::<f64>() / samples as f64)
            .collect()
    })
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_failing_sensor_has_its_frames_zeroed_from_the_failure_frame() {
    let (cfg, model) = model();
    let ds = dataset();
    let samples = 5;
    let from = 4;
    let clean = gate_series(model, &ds, cfg, Device::Cpu, None, samples).unwrap();
    assert_eq!((clean.frames, clean.samples), (8, samples));
    let hand = gates_by_hand(model, cfg, None, samples);
    for s in Sensor::ALL {
        let v = clean.steps[s as usize].as_ref().unwrap();
        assert!(v.iter().all(|g| *g > 0.0 && *g < 1.0), "{v:?}");
        assert!(max_diff(v, &hand[s as usize]) < 1e-9, "{s:?}");
    }
    for dropped in Sensor::ALL {
        let failed =
            gate_series(model, &ds, cfg, Device::Cpu, Some((dropped, from)), samples).unwrap();
        let want = gates_by_hand(model, cfg, Some((dropped, from)), samples);
        // One frame later or earlier is a different input: the comparison can tell.
        let later = gates_by_hand(model, cfg, Some((dropped, from + 1)), samples);
        let earlier = gates_by_hand(model, cfg, Some((dropped, from - 1)), samples);
        for s in Sensor::ALL {
            let (a, b) = (
                clean.steps[s as usize].as_ref().unwrap(),
                failed.steps[s as usize].as_ref().unwrap(),
            );
            assert!(
                max_diff(b, &want[s as usize]) < 1e-9,
                "{s:?} when {dropped:?} failed"
            );
            if s != dropped {
                // Each gate sees its own sensor only: the others are bit-identical.
                assert_eq!(a, b, "{s:?} changed when {dropped:?} failed");
                continue;
            }
            // The sensor stays present (FrameDrop zeroes frames, it does not set the presence
            // mask), so its gate is not forced to 0, but it changes.
            let k = s as usize;
            let changed = max_diff(a, b);
            assert!(changed > 1e-6, "{dropped:?}: gate unchanged by the failure");
            assert!(
                max_diff(b, &later[k]) > 1e-7,
                "{dropped:?}: from + 1 looks the same"
            );
            assert!(
                max_diff(b, &earlier[k]) > 1e-7,
                "{dropped:?}: from - 1 looks the same"
            );
            eprintln!(
                "{dropped:?} fails at {from}: clean {a:.5?}, failed {b:.5?}, max change {changed:.2e}"
            );
        }
    }
}

#[test]
fn gates_figure_writes_the_chart_and_the_steps() {
    let (cfg, model) = model();
    let ds = dataset();
    let (_keep, dir) = out_dir("gates");
    let wrote = gates_figure(
        model,
        &ds,
        cfg,
        Device::Cpu,
        Sensor::Skeleton,
        4,
        6,
        &dir,
        Output::Quiet,
    )
    .unwrap();
    assert_eq!(names(&wrote), ["gates.png", "gates.svg", "gates.csv"]);
    check_png(&dir.join("gates.png"), CHART_SIZE);
    let series = gate_series(model, &ds, cfg, Device::Cpu, Some((Sensor::Skeleton, 4)), 6).unwrap();
    let csv = std::fs::read_to_string(dir.join("gates.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let steps: usize = series.steps.iter().map(|s| s.as_ref().unwrap().len()).sum();
    assert_eq!(rows.len(), steps);
    for r in &rows {
        let x: f64 = r[2].parse().unwrap();
        let failed = r[0] == "skeleton" && x >= 4.0;
        assert_eq!(r[4], if failed { "1" } else { "0" }, "{r:?}");
    }
    let svg = std::fs::read_to_string(dir.join("gates.svg")).unwrap();
    assert!(svg.contains("skeleton fails at frame 4"));
    assert!(svg.contains("G_S (skeleton)"));

    for (from, samples) in [(0, 2), (8, 2), (4, 0)] {
        let err = gates_figure(
            model,
            &ds,
            cfg,
            Device::Cpu,
            Sensor::Points,
            from,
            samples,
            &dir,
            Output::Quiet,
        )
        .unwrap_err();
        assert!(matches!(err, TrainerError::Config(_)), "{err}");
    }
}

#[test]
fn gates_need_an_amg_model() {
    let cfg = config(&["model.fusion=average"]);
    let model = build(&cfg);
    let (_keep, dir) = out_dir("gates-average");
    let err = gates_figure(
        &model,
        &dataset(),
        &cfg,
        Device::Cpu,
        Sensor::Points,
        4,
        2,
        &dir,
        Output::Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("average fusion"), "{err}");
    assert!(!dir.join("gates.png").exists());
    // The figures run the model in evaluation mode and give it back as it was.
    assert!(model.store().is_training());
    let (_keep, dir) = out_dir("average-embed");
    embed(&model, &dataset(), &cfg, Device::Cpu, &dir, Output::Quiet).unwrap();
    assert!(model.store().is_training());
}

#[test]
fn gate_steps_are_placed_at_their_input_frames() {
    let g = GateSeries {
        frames: 8,
        samples: 1,
        steps: [
            Some(vec![0.2, 0.4, 0.6, 0.8]),
            Some((0..8).map(|k| k as f64 / 10.0).collect()),
            None,
        ],
    };
    assert_eq!(g.positions(Sensor::Rgbd).unwrap(), [1.0, 3.0, 5.0, 7.0]);
    let per_frame = g.per_frame(Sensor::Rgbd).unwrap();
    let want = [0.2, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.8];
    for (a, b) in per_frame.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{per_frame:?}");
    }
    // T' = T: the steps themselves.
    assert_eq!(g.per_frame(Sensor::Skeleton), g.steps[1]);
    assert_eq!(g.per_frame(Sensor::Points), None);
}

#[test]
fn corruption_and_loss_charts_are_written() {
    let (_keep, dir) = out_dir("charts");
    let noise = vec![
        (
            "RCMCL".to_string(),
            vec![(0.0, 86.1), (0.02, 84.0), (0.05, 80.2), (0.1, 73.5)],
        ),
        (
            "Supervised".to_string(),
            vec![(0.0, 84.3), (0.02, 78.9), (0.05, 70.1), (0.1, 58.8)],
        ),
    ];
    let sparsity = vec![
        (
            "RCMCL".to_string(),
            vec![(0.0, 86.1), (0.3, 83.5), (0.5, 80.9), (0.7, 76.2)],
        ),
        (
            "Supervised".to_string(),
            vec![(0.0, 84.3), (0.3, 77.4), (0.5, 71.0), (0.7, 62.3)],
        ),
    ];
    let wrote = corruption_figures(&noise, &sparsity, &dir).unwrap();
    assert_eq!(
        names(&wrote),
        ["noise.png", "noise.svg", "sparsity.png", "sparsity.svg"]
    );
    check_png(&dir.join("noise.png"), CHART_SIZE);
    check_png(&dir.join("sparsity.png"), CHART_SIZE);
    let svg = std::fs::read_to_string(dir.join("noise.svg")).unwrap();
    assert!(svg.contains("Supervised") && svg.contains("joint noise"));
    assert_eq!(
        names(&corruption_figures(&noise, &[], &dir).unwrap()),
        ["noise.png", "noise.svg"]
    );
    assert!(corruption_figures(&[], &[], &dir).is_err());

    // A hand-written metrics.jsonl: four terms and the total; step 10 logged twice (a resume),
    // the last line wins; a negative value is left off the log axis.
    let run = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for (step, scale) in [(5, 1.0), (10, 9.0), (10, 0.75), (15, 0.625), (20, 0.5)] {
        let cm: f64 = 4.0 * scale;
        let fusion: f64 = if step == 15 { -0.1 } else { 3.0 * scale };
        text.push_str(&format!(
            "{{\"step\":{step},\"epoch\":0,\"lr\":0.001,\"loss\":{{\"cm\":{cm},\"im\":{},\"deg\":{},\"fusion\":{fusion},\"total\":{}}},\"total\":{},\"gate_means\":[0.5,0.5,null]}}\n",
            60.0 * scale,
            0.02 * scale,
            10.0 * scale,
            10.0 * scale
        ));
    }
    std::fs::write(run.path().join("metrics.jsonl"), &text).unwrap();
    let wrote = loss_curves(run.path(), &dir).unwrap();
    assert_eq!(names(&wrote), ["losses.png", "losses.svg"]);
    check_png(&dir.join("losses.png"), CHART_SIZE);
    let svg = std::fs::read_to_string(dir.join("losses.svg")).unwrap();
    for label in ["L_CM", "L_IM", "L_deg", "L_FUSION", "L_total"] {
        assert!(svg.contains(label), "{label} missing");
    }
    // The same from the file path.
    assert!(loss_curves(&run.path().join("metrics.jsonl"), &dir).is_ok());
    let (series, _) = loss_series(run.path()).unwrap();
    let labels: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        labels,
        ["L_CM", "L_IM", "L_deg", "L_FUSION", "L_total (weighted)"]
    );
    assert_eq!(
        series[0].1,
        [(5.0, 4.0), (10.0, 3.0), (15.0, 2.5), (20.0, 2.0)]
    );
    let fusion: Vec<f64> = series[3].1.iter().map(|p| p.0).collect();
    assert_eq!(fusion, [5.0, 10.0, 20.0]);
    assert_eq!(series[4].1[1], (10.0, 7.5));

    std::fs::write(run.path().join("metrics.jsonl"), "{\"epoch\":0}\n").unwrap();
    let err = loss_curves(run.path(), &dir).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("step"), "{err}");
    std::fs::write(run.path().join("metrics.jsonl"), "not json\n").unwrap();
    assert!(loss_curves(run.path(), &dir).is_err());
    assert!(loss_curves(&run.path().join("missing"), &dir).is_err());
}
