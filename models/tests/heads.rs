//! Projection head H_M, skeleton decoder D_S and classifier C: values against the same
//! computation written with engine ops, f64 gradient checks w.r.t. inputs and parameters,
//! shapes, parameter names, presets and errors.

use engine::gradcheck::{assert_gradients, assert_parameter_gradients, GradCheck};
use engine::nn::{ParamPath, ParamStore};
use engine::{DType, Device, Result, Tensor};
use models::heads::{Classifier, DecoderConfig, ProjectionHead, SkeletonDecoder};

fn store64(seed: u64) -> ParamStore {
    ParamStore::with_seed(seed).with_dtype(DType::F64)
}

fn rand64(dims: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(dims.to_vec(), -2.0, 2.0, seed, DType::F64, Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

fn names(store: &ParamStore) -> Vec<String> {
    store.params().into_iter().map(|(n, _)| n).collect()
}

/// The parameter checks: default tolerances, the weight on the output seeded 11.
fn param_check() -> GradCheck {
    GradCheck {
        seed: 11,
        ..GradCheck::default()
    }
}

fn head(path: &ParamPath) -> ProjectionHead {
    ProjectionHead::new(path, 6, 10, 4).unwrap()
}

#[test]
fn head_matches_its_definition_and_normalises_rows() {
    let store = store64(1);
    let h = head(&store.sub("head").sub("skeleton"));
    assert_eq!(h.out_dim(), 4);
    assert_eq!(
        names(&store),
        vec![
            "head.skeleton.layers.0.linear.weight",
            "head.skeleton.layers.0.norm.weight",
            "head.skeleton.layers.0.norm.bias",
            "head.skeleton.output.weight",
            "head.skeleton.output.bias",
        ]
    );
    let get = |n: &str| store.get(&format!("head.skeleton.{n}")).unwrap();
    let z = rand64(&[5, 6], 2);
    let p = h.forward(&z).unwrap();
    assert_eq!(p.raw.dims(), &[5, 4]);
    assert_eq!(p.normalized.dims(), &[5, 4]);
    // The same computation written with ops: linear (no bias), batch statistics, relu, linear.
    let want = Tensor::linear(&z, &get("layers.0.linear.weight"), None)
        .unwrap()
        .batch_norm(
            None,
            None,
            Some(&get("layers.0.norm.weight")),
            Some(&get("layers.0.norm.bias")),
            true,
            0.1,
            1e-5,
        )
        .unwrap()
        .relu()
        .unwrap();
    let want = Tensor::linear(&want, &get("output.weight"), Some(&get("output.bias"))).unwrap();
    assert_close(&values(&p.raw), &values(&want), 1e-12);
    let (raw, norm) = (values(&p.raw), values(&p.normalized));
    for r in 0..5 {
        let len: f64 = raw[r * 4..r * 4 + 4]
            .iter()
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt();
        let unit: f64 = norm[r * 4..r * 4 + 4].iter().map(|v| v * v).sum();
        assert!(
            (unit - 1.0).abs() < 1e-12,
            "row {r} has squared norm {unit}"
        );
        for c in 0..4 {
            assert!((norm[r * 4 + c] - raw[r * 4 + c] / len).abs() < 1e-12);
        }
    }
    // Per-time features: leading dims are one batch for the batch norm.
    let zt = rand64(&[2, 3, 6], 3);
    let pt = h.forward(&zt).unwrap();
    assert_eq!(pt.raw.dims(), &[2, 3, 4]);
    let flat = h.forward(&zt.reshape([6, 6]).unwrap()).unwrap();
    assert_close(&values(&pt.normalized), &values(&flat.normalized), 1e-12);
}

#[test]
fn head_gradients_in_training_mode() {
    let store = store64(4);
    assert!(store.is_training());
    let h = head(&store.sub("head"));
    let z = rand64(&[5, 6], 5);
    // Both outputs at once, so the normalisation's gradient is checked too.
    let both = |z: &Tensor| -> Result<Tensor> {
        let p = h.forward(z)?;
        Tensor::concat(&[&p.raw, &p.normalized], 1)
    };
    assert_gradients(
        "projection head (input)",
        |t| both(&t[0]),
        std::slice::from_ref(&z),
        GradCheck::default(),
    );
    assert_parameter_gradients(
        "projection head (parameters)",
        &store.params(),
        || both(&z),
        param_check(),
    );
}

#[test]
fn head_eval_mode_and_errors() {
    let store = store64(6);
    let h = head(&store.root());
    // Training batch norm needs two rows; evaluation (running statistics) does not.
    assert!(h.forward(&rand64(&[1, 6], 7)).is_err());
    store.set_training(false);
    assert_eq!(h.forward(&rand64(&[1, 6], 7)).unwrap().raw.dims(), &[1, 4]);
    assert!(h.forward(&rand64(&[3, 5], 7)).is_err());
    assert!(h.forward(&rand64(&[6], 7)).is_err());
    assert!(ProjectionHead::new(&store.sub("bad"), 6, 0, 4).is_err());
}

fn tiny_decoder_config() -> DecoderConfig {
    DecoderConfig {
        in_dim: 5,
        hidden: vec![7],
        frames: 3,
        bodies: 2,
        joints: 4,
        channels: 3,
    }
}

#[test]
fn decoder_shape_names_and_definition() {
    let store = store64(8);
    let cfg = tiny_decoder_config();
    let d = SkeletonDecoder::new(&store.sub("decoder"), &cfg).unwrap();
    assert_eq!(d.output_dims(), [3, 2, 4, 3]);
    assert_eq!(
        names(&store),
        vec![
            "decoder.layers.0.linear.weight",
            "decoder.layers.0.linear.bias",
            "decoder.output.weight",
            "decoder.output.bias",
        ]
    );
    let z = rand64(&[2, 5], 9);
    let x = d.forward(&z).unwrap();
    assert_eq!(x.dims(), &[2, 3, 2, 4, 3]);
    let get = |n: &str| store.get(&format!("decoder.{n}")).unwrap();
    let h = Tensor::linear(
        &z,
        &get("layers.0.linear.weight"),
        Some(&get("layers.0.linear.bias")),
    )
    .unwrap()
    .relu()
    .unwrap();
    let want = Tensor::linear(&h, &get("output.weight"), Some(&get("output.bias"))).unwrap();
    assert_close(&values(&x), &values(&want), 1e-12);
    // Errors, not panics.
    assert!(d.forward(&rand64(&[2, 4], 9)).is_err());
    assert!(d.forward(&rand64(&[2, 1, 5], 9)).is_err());
    let mut bad = cfg.clone();
    bad.joints = 0;
    assert!(SkeletonDecoder::new(&store.sub("bad"), &bad).is_err());
    // A single linear map when there is no hidden layer.
    let mut lin = cfg;
    lin.hidden.clear();
    let d1 = SkeletonDecoder::new(&store.sub("linear"), &lin).unwrap();
    assert_eq!(d1.forward(&z).unwrap().dims(), &[2, 3, 2, 4, 3]);
}

#[test]
fn decoder_gradients() {
    let store = store64(10);
    let d = SkeletonDecoder::new(&store.sub("decoder"), &tiny_decoder_config()).unwrap();
    let z = rand64(&[3, 5], 11);
    assert_gradients(
        "decoder (input)",
        |t| d.forward(&t[0]),
        std::slice::from_ref(&z),
        GradCheck::default(),
    );
    assert_parameter_gradients(
        "decoder (parameters)",
        &store.params(),
        || d.forward(&z),
        param_check(),
    );
}

#[test]
fn decoder_presets() {
    let tiny = DecoderConfig::preset("tiny").unwrap();
    assert_eq!(
        (tiny.frames, tiny.bodies, tiny.joints, tiny.channels),
        (8, 1, 25, 3)
    );
    let store = ParamStore::with_seed(1);
    SkeletonDecoder::new(&store.sub("decoder"), &tiny).unwrap();
    assert_eq!(store.num_params(), 32 * 64 + 64 + 64 * 600 + 600);
    for name in DecoderConfig::PRESETS {
        DecoderConfig::preset(name).unwrap();
    }
    let err = DecoderConfig::preset("huge").unwrap_err().to_string();
    assert!(err.contains("tiny") && err.contains("paper"), "{err}");
}

#[test]
fn classifier_is_linear() {
    let store = store64(12);
    let c = Classifier::new(&store.sub("classifier"), 4, 3).unwrap();
    assert_eq!(c.classes(), 3);
    assert_eq!(names(&store), vec!["classifier.weight", "classifier.bias"]);
    let z = rand64(&[2, 4], 13);
    let y = c.forward(&z).unwrap();
    assert_eq!(y.dims(), &[2, 3]);
    let (zv, wv, bv) = (
        values(&z),
        values(&store.get("classifier.weight").unwrap()),
        values(&store.get("classifier.bias").unwrap()),
    );
    let want: Vec<f64> = (0..2)
        .flat_map(|r| (0..3).map(move |o| (r, o)))
        .map(|(r, o)| bv[o] + (0..4).map(|i| zv[r * 4 + i] * wv[o * 4 + i]).sum::<f64>())
        .collect();
    assert_close(&values(&y), &want, 1e-12);
    assert_gradients(
        "classifier (input)",
        |t| c.forward(&t[0]),
        std::slice::from_ref(&z),
        GradCheck::default(),
    );
    // The store holds the classifier alone (its names are checked above).
    assert_parameter_gradients(
        "classifier (parameters)",
        &store.params(),
        || c.forward(&z),
        param_check(),
    );
    assert!(c.forward(&rand64(&[2, 5], 13)).is_err());
    assert!(c.forward(&rand64(&[4], 13)).is_err());
    assert!(Classifier::new(&store.sub("bad"), 4, 0).is_err());
}

/// Forward + backward of the tiny presets in f32 on a batch of 8 (printed, not asserted: the
/// machine is shared).
#[test]
fn tiny_presets_are_fast() {
    let store = ParamStore::with_seed(3);
    let cfg = DecoderConfig::preset("tiny").unwrap();
    let h = ProjectionHead::new(&store.sub("head"), cfg.in_dim, 64, 128).unwrap();
    let d = SkeletonDecoder::new(&store.sub("decoder"), &cfg).unwrap();
    let c = Classifier::new(&store.sub("classifier"), cfg.in_dim, 32).unwrap();
    let z = Tensor::rand_uniform([8, cfg.in_dim], -1.0, 1.0, 4, DType::F32, Device::Cpu)
        .unwrap()
        .with_requires_grad()
        .unwrap();
    let step = || {
        let p = h.forward(&z).unwrap();
        let loss = p
            .normalized
            .sum_all()
            .unwrap()
            .add(&d.forward(&z).unwrap().square().unwrap().mean_all().unwrap())
            .unwrap()
            .add(&c.forward(&z).unwrap().mean_all().unwrap())
            .unwrap();
        loss.backward().unwrap();
    };
    step();
    let reps = 20;
    let start = std::time::Instant::now();
    for _ in 0..reps {
        step();
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
    eprintln!(
        "heads tiny: {} parameters (head 32->64->128, decoder tiny, classifier 32->32), forward+backward of 8 samples {ms:.3} ms",
        store.num_params()
    );
}
