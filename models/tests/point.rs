//! E_P, the point-cloud sequence encoder: gradients (inputs and every parameter, f64), shapes,
//! pooled = mean of per_time, invariance to translating a clip, empty (dropped) frames,
//! parameter names, errors, and that the presets' radii give real neighbourhoods on the
//! synthetic data. `timing` (ignored) measures the presets.

use engine::gradcheck::{assert_parameter_gradients, check_gradients, GradCheck};
use engine::nn::ParamStore;
use engine::ops::pointnet::{ball_query, farthest_point_sample, group_points};
use engine::{no_grad, DType, Device, Tensor};
use models::data::synthetic::{generate_sample, SynthConfig};
use models::data::{ArrayData, Modality};
use models::point::{PointEncoder, PointEncoderConfig, SetAbstractionConfig};

/// A very small encoder for the gradient checks (every size different, so a transposed index
/// shows up as a shape error or a wrong value).
fn micro() -> PointEncoderConfig {
    PointEncoderConfig {
        sa1: SetAbstractionConfig {
            centres: 4,
            radius: 0.5,
            nsample: 4,
            mlp: vec![5],
        },
        sa2: SetAbstractionConfig {
            centres: 2,
            radius: 0.9,
            nsample: 3,
            mlp: vec![6, 7],
        },
        global_mlp: vec![8],
        d_model: 4,
        heads: 2,
        layers: 1,
        mlp_ratio: 2,
        max_frames: 5,
        dropout: 0.0,
        out_dim: 3,
    }
}

fn store64(seed: u64) -> ParamStore {
    ParamStore::with_seed(seed).with_dtype(DType::F64)
}

/// Random distinct points in a box about a person's size, offset like a person 3 m away.
fn clip(dims: [usize; 4], seed: u64, dtype: DType) -> Tensor {
    let x = Tensor::rand_uniform(dims, -0.6, 0.6, seed, DType::F64, Device::Cpu).unwrap();
    let offset = Tensor::from_vec(vec![0.3f64, -0.2, 3.0], [3], Device::Cpu).unwrap();
    x.add(&offset).unwrap().to_dtype(dtype).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The encoder's outputs as one (B, T * d + d) tensor, so a check covers both.
fn both(enc: &PointEncoder, x: &Tensor) -> engine::Result<Tensor> {
    let out = enc.forward(x)?;
    let (b, t, d) = (
        out.per_time.dims()[0],
        out.per_time.dims()[1],
        out.per_time.dims()[2],
    );
    Tensor::concat(&[&out.per_time.reshape([b, t * d])?, &out.pooled], 1)
}

#[test]
fn gradient_wrt_points() {
    let store = store64(11);
    let enc = PointEncoder::new(&store.sub("encoder").sub("point"), &micro()).unwrap();
    let x = clip([2, 3, 7, 3], 5, DType::F64);
    let report = check_gradients(|xs| both(&enc, &xs[0]), &[x], GradCheck::default()).unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.checked, 2 * 3 * 7 * 3);
}

/// Central differences on every element of every parameter (through the parameters' own
/// storage, since the model holds them) against the autograd gradient of
/// `sum(out * w)`, for a fixed random `w`.
#[test]
fn gradient_wrt_every_parameter() {
    let store = store64(12);
    let enc = PointEncoder::new(&store.sub("encoder").sub("point"), &micro()).unwrap();
    let x = clip([2, 3, 7, 3], 6, DType::F64);
    // sum(out * w), w uniform in [0.5, 1.5] seeded 3.
    let opts = GradCheck {
        seed: 3,
        ..GradCheck::default()
    };
    let report = assert_parameter_gradients(
        "point encoder (every parameter)",
        &store.params(),
        || both(&enc, &x),
        opts,
    );
    // Every kind of parameter the brief names was among them.
    let names = &report.names;
    for n in [
        "encoder.point.sa1.mlp.0.conv.weight",
        "encoder.point.sa2.mlp.1.bn.weight",
        "encoder.point.global.mlp.0.conv.weight",
        "encoder.point.embed.weight",
        "encoder.point.pos_embedding",
        "encoder.point.temporal.layer0.attn.qkv.weight",
        "encoder.point.temporal.layer0.attn.out.weight",
        "encoder.point.temporal.layer0.mlp.fc1.weight",
        "encoder.point.temporal.layer0.norm1.weight",
        "encoder.point.temporal.norm.bias",
        "encoder.point.head.weight",
    ] {
        assert!(
            names.iter().any(|x| x == n),
            "no parameter {n} in {names:?}"
        );
    }
    assert_eq!(report.checked, store.num_params());
}

#[test]
fn shapes_and_pooled_is_the_mean_of_per_time() {
    let store = ParamStore::with_seed(1);
    let cfg = PointEncoderConfig::preset("tiny").unwrap();
    let enc = PointEncoder::new(&store.root(), &cfg).unwrap();
    assert_eq!(enc.out_dim(), 256);
    assert_eq!(enc.config(), &cfg);
    let x = clip([3, 8, 64, 3], 9, DType::F32);
    let out = enc.forward(&x).unwrap();
    assert_eq!(out.per_time.dims(), &[3, 8, 256]);
    assert_eq!(out.pooled.dims(), &[3, 256]);
    let mean = out.per_time.mean(&[1], false).unwrap();
    assert!(max_abs_diff(&mean, &out.pooled) < 1e-6);
    // Shorter clips than max_frames and a different number of points are fine.
    let out = enc.forward(&clip([2, 5, 40, 3], 4, DType::F32)).unwrap();
    assert_eq!(out.per_time.dims(), &[2, 5, 256]);
    // Samples differ (no collapse of the batch).
    let p = out.pooled.to_f64_vec().unwrap();
    assert!((0..256).any(|j| (p[j] - p[256 + j]).abs() > 1e-4));
}

#[test]
fn translating_a_clip_leaves_the_output_unchanged() {
    let store = store64(2);
    let enc =
        PointEncoder::new(&store.root(), &PointEncoderConfig::preset("tiny").unwrap()).unwrap();
    let x = clip([2, 4, 64, 3], 21, DType::F64);
    let shift = Tensor::from_vec(vec![1.25f64, -0.75, 0.5], [3], Device::Cpu).unwrap();
    let a = enc.forward(&x).unwrap();
    let b = enc.forward(&x.add(&shift).unwrap()).unwrap();
    assert!(max_abs_diff(&a.per_time, &b.per_time) < 1e-9);
    // The same holds in evaluation mode (running statistics).
    store.set_training(false);
    let a = enc.forward(&x).unwrap();
    let b = enc.forward(&x.add(&shift).unwrap()).unwrap();
    assert!(max_abs_diff(&a.per_time, &b.per_time) < 1e-9);
    // But the motion between frames matters: moving one frame changes the output.
    let mut v = x.to_f64_vec().unwrap();
    for c in v[..64 * 3].iter_mut().step_by(3) {
        *c += 0.3;
    }
    let moved = Tensor::from_vec(v, x.dims().to_vec(), Device::Cpu).unwrap();
    let c = enc.forward(&moved).unwrap();
    assert!(max_abs_diff(&a.pooled, &c.pooled) > 1e-4);
}

#[test]
fn all_zero_frames_give_finite_outputs_and_gradients() {
    let store = ParamStore::with_seed(3);
    let enc =
        PointEncoder::new(&store.root(), &PointEncoderConfig::preset("tiny").unwrap()).unwrap();
    let (b, t, p) = (3, 8, 64);
    let mut v = clip([b, t, p, 3], 8, DType::F32).to_vec::<f32>().unwrap();
    // Sample 0: frames 5.. dropped; sample 1: everything dropped; sample 2: intact.
    v[(5 * p * 3)..(t * p * 3)].fill(0.0);
    v[(t * p * 3)..(2 * t * p * 3)].fill(0.0);
    let x = Tensor::from_vec(v, [b, t, p, 3], Device::Cpu)
        .unwrap()
        .with_requires_grad()
        .unwrap();
    for training in [true, false] {
        store.set_training(training);
        let out = enc.forward(&x).unwrap();
        for o in [&out.per_time, &out.pooled] {
            assert!(o.to_f64_vec().unwrap().iter().all(|v| v.is_finite()));
        }
        if training {
            store.zero_grad();
            out.pooled
                .square()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g = x.grad().unwrap().to_f64_vec().unwrap();
            assert!(g.iter().all(|v| v.is_finite()));
            for (name, param) in store.params() {
                if let Some(g) = param.grad() {
                    let g = g.to_f64_vec().unwrap();
                    assert!(g.iter().all(|v| v.is_finite()), "{name}");
                }
            }
        }
    }
}

/// In evaluation mode frames are encoded independently, the centre ignores empty frames and no
/// frame attends to an empty one, so a clip whose sensor died after frame k gives, on its
/// first k frames, what the clip cut to k frames gives.
#[test]
fn frames_after_a_sensor_dropout_do_not_change_the_earlier_ones() {
    let store = store64(4);
    let enc =
        PointEncoder::new(&store.root(), &PointEncoderConfig::preset("tiny").unwrap()).unwrap();
    store.set_training(false);
    let (t, p, k) = (8, 64, 5);
    let x = clip([1, t, p, 3], 30, DType::F64);
    let mut v = x.to_f64_vec().unwrap();
    v[k * p * 3..].fill(0.0);
    let dropped = Tensor::from_vec(v, [1, t, p, 3], Device::Cpu).unwrap();
    let cut = x.narrow(1, 0, k).unwrap();
    let a = enc
        .forward(&dropped)
        .unwrap()
        .per_time
        .narrow(1, 0, k)
        .unwrap();
    let b = enc.forward(&cut).unwrap().per_time;
    assert!(max_abs_diff(&a, &b) < 1e-9, "{}", max_abs_diff(&a, &b));
    // Without the mask and the masked centre the outputs would differ: the full clip does.
    let full = enc.forward(&x).unwrap().per_time.narrow(1, 0, k).unwrap();
    assert!(max_abs_diff(&full, &b) > 1e-6);
}

#[test]
fn centring_subtracts_the_mean_of_the_non_empty_frames() {
    let x = clip([2, 3, 5, 3], 40, DType::F64);
    let mut v = x.to_f64_vec().unwrap();
    v[2 * 5 * 3..3 * 5 * 3].fill(0.0); // sample 0, frame 2 empty
    let x = Tensor::from_vec(v.clone(), [2, 3, 5, 3], Device::Cpu).unwrap();
    let (centred, valid) = PointEncoder::centre(&x).unwrap();
    assert_eq!(
        valid.to_f64_vec().unwrap(),
        vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    );
    let c = centred.to_f64_vec().unwrap();
    for s in 0..2 {
        let frames = if s == 0 { 2 } else { 3 };
        for axis in 0..3 {
            let base = s * 45;
            let mean: f64 =
                (0..frames * 5).map(|i| v[base + i * 3 + axis]).sum::<f64>() / (frames * 5) as f64;
            for i in 0..15 {
                let want = if s == 0 && i >= 10 {
                    0.0
                } else {
                    v[base + i * 3 + axis] - mean
                };
                assert!((c[base + i * 3 + axis] - want).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn bad_inputs_and_configs_are_errors() {
    let store = ParamStore::with_seed(5);
    let cfg = PointEncoderConfig::preset("tiny").unwrap();
    let enc = PointEncoder::new(&store.root(), &cfg).unwrap();
    let f = |dims: &[usize]| {
        let x = Tensor::rand_uniform(dims.to_vec(), -1.0, 1.0, 1, DType::F32, Device::Cpu).unwrap();
        enc.forward(&x)
    };
    assert!(f(&[2, 17, 64, 3]).is_err(), "T > max_frames");
    assert!(f(&[2, 8, 64]).is_err(), "rank 3");
    assert!(f(&[2, 8, 64, 3, 1]).is_err(), "rank 5");
    assert!(f(&[2, 8, 64, 2]).is_err(), "2 coordinates");
    assert!(f(&[2, 8, 15, 3]).is_err(), "P < sa1.centres");
    assert!(f(&[0, 8, 64, 3]).is_err(), "empty batch");
    assert!(f(&[2, 0, 64, 3]).is_err(), "no frames");
    let msg = f(&[2, 17, 64, 3]).unwrap_err().to_string();
    assert!(
        msg.contains("PointEncoder") && msg.contains("max_frames"),
        "{msg}"
    );
    // Integer points are refused.
    let xi = Tensor::zeros([1, 2, 64, 3], DType::I64, Device::Cpu).unwrap();
    assert!(enc.forward(&xi).is_err());

    let build = |c: PointEncoderConfig| PointEncoder::new(&ParamStore::new().root(), &c);
    let mut c = cfg.clone();
    c.heads = 3;
    assert!(build(c).is_err(), "d_model not a multiple of heads");
    let mut c = cfg.clone();
    c.sa2.centres = cfg.sa1.centres + 1;
    assert!(build(c).is_err(), "sa2 centres > sa1 centres");
    let mut c = cfg.clone();
    c.sa1.radius = 0.0;
    assert!(build(c).is_err(), "radius 0");
    let mut c = cfg.clone();
    c.sa2.mlp.clear();
    assert!(build(c).is_err(), "empty MLP");
    let mut c = cfg.clone();
    c.global_mlp = vec![];
    assert!(build(c).is_err(), "empty global MLP");
    let mut c = cfg.clone();
    c.dropout = 1.0;
    assert!(build(c).is_err(), "dropout 1");
    let err = PointEncoderConfig::preset("huge").unwrap_err().to_string();
    assert!(err.contains("tiny") && err.contains("paper"), "{err}");
    for name in PointEncoderConfig::PRESETS {
        let c = PointEncoderConfig::preset(name).unwrap();
        c.check().unwrap();
        assert_eq!(c.out_dim, 256);
    }
}

fn points_of(cfg: &SynthConfig, index: usize) -> Vec<f32> {
    let s = generate_sample(cfg, index).unwrap();
    match &s.streams[&Modality::Points].data {
        ArrayData::F32(v) => v.clone(),
        _ => panic!("points are f32"),
    }
}

/// Mean number of distinct points within each level's radius, on real synthetic clips,
/// centred as the encoder centres them (level 2 on the level-1 centres).
fn neighbourhoods(enc: &PointEncoderConfig, data: &SynthConfig, samples: &[usize]) -> (f64, f64) {
    let (t, p) = (data.frames, data.points);
    let mut stats = [(0usize, 0usize); 2];
    for &i in samples {
        let x = Tensor::from_vec(points_of(data, i), [1, t, p, 3], Device::Cpu).unwrap();
        let (centred, _) = PointEncoder::centre(&x).unwrap();
        let mut xyz = centred.reshape([t, p, 3]).unwrap();
        for (level, sa) in [&enc.sa1, &enc.sa2].into_iter().enumerate() {
            let n = xyz.dims()[1];
            let idx = farthest_point_sample(&xyz, sa.centres, None).unwrap();
            let xyz_t = xyz.permute(&[0, 2, 1]).unwrap();
            let centres = group_points(&xyz_t, &idx.reshape([t, sa.centres, 1]).unwrap())
                .unwrap()
                .reshape([t, 3, sa.centres])
                .unwrap()
                .permute(&[0, 2, 1])
                .unwrap();
            // Count hits with a large nsample so the count is not capped.
            let nbr = ball_query(&xyz, &centres, sa.radius, n)
                .unwrap()
                .to_vec::<i64>()
                .unwrap();
            for row in nbr.chunks(n) {
                let mut distinct: Vec<i64> = row.to_vec();
                distinct.sort_unstable();
                distinct.dedup();
                stats[level].0 += distinct.len();
                stats[level].1 += 1;
            }
            xyz = centres;
        }
    }
    (
        stats[0].0 as f64 / stats[0].1 as f64,
        stats[1].0 as f64 / stats[1].1 as f64,
    )
}

#[test]
fn tiny_radii_give_real_neighbourhoods_on_the_tiny_dataset() {
    let data = SynthConfig::preset("tiny").unwrap();
    let enc = PointEncoderConfig::preset("tiny").unwrap();
    let (n1, n2) = neighbourhoods(&enc, &data, &[0, 57, 200, 333]);
    eprintln!(
        "tiny: mean points within the radius: sa1 {n1:.1} (of {}), sa2 {n2:.1} (of {})",
        data.points, enc.sa1.centres
    );
    // Several neighbours per ball, but not the whole frame.
    assert!(n1 >= 3.0 && n1 <= 0.5 * data.points as f64, "sa1: {n1}");
    assert!(n2 >= 3.0 && n2 <= 0.9 * enc.sa1.centres as f64, "sa2: {n2}");
}

/// CPU time of this process in ms (user + system, from /proc/self/stat; 10 ms ticks): on a
/// shared machine wall time measures the neighbours too.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the file (utime, stime) are 11 and 12 after the command name.
    (ticks(11) + ticks(12)) * 10.0
}

/// Forward + backward times of the presets on one core (run with
/// `RAYON_NUM_THREADS=1 cargo test --release -p models --test point timing -- --ignored --nocapture`),
/// and the radii statistics of `small` on the `small` dataset.
#[test]
#[ignore]
fn timing() {
    use std::time::Instant;
    for (name, dims, reps) in [("tiny", [8, 8, 64, 3], 50), ("small", [16, 32, 256, 3], 3)] {
        let store = ParamStore::with_seed(7);
        let cfg = PointEncoderConfig::preset(name).unwrap();
        let enc = PointEncoder::new(&store.root(), &cfg).unwrap();
        let x = clip(dims, 1, DType::F32);
        let step = || {
            store.zero_grad();
            enc.forward(&x)
                .unwrap()
                .pooled
                .square()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        };
        step();
        let (wall, cpu) = (Instant::now(), cpu_ms());
        for _ in 0..reps {
            step();
        }
        let cpu = (cpu_ms() - cpu) / reps as f64;
        let wall = wall.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let (fwall, fcpu) = (Instant::now(), cpu_ms());
        for _ in 0..reps {
            no_grad(|| enc.forward(&x).unwrap());
        }
        let fcpu = (cpu_ms() - fcpu) / reps as f64;
        let fwall = fwall.elapsed().as_secs_f64() * 1e3 / reps as f64;
        eprintln!(
            "{name}: {} parameters; batch {dims:?}: forward+backward {cpu:.1} ms CPU ({wall:.1} ms wall), forward alone (no grad) {fcpu:.1} ms CPU ({fwall:.1} wall)",
            store.num_params(),
        );
    }
    for name in ["base", "paper"] {
        let store = ParamStore::with_seed(7);
        PointEncoder::new(&store.root(), &PointEncoderConfig::preset(name).unwrap()).unwrap();
        eprintln!("{name}: {} parameters", store.num_params());
    }
    let data = SynthConfig::preset("small").unwrap();
    let enc = PointEncoderConfig::preset("small").unwrap();
    let (n1, n2) = neighbourhoods(&enc, &data, &[0, 700, 1500]);
    eprintln!(
        "small: mean points within the radius: sa1 {n1:.1} (of {}), sa2 {n2:.1} (of {})",
        data.points, enc.sa1.centres
    );
}
