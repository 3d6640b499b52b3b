//! E_R, the RGB-D encoder: gradients (inputs and parameters, f64), shapes of every preset,
//! pooling, train/eval, errors. Timings: `cargo test --release -p models --test rgbd -- --ignored
//! --nocapture` (set RAYON_NUM_THREADS=1 for one core).

use engine::gradcheck::{assert_gradients, assert_parameter_gradients, GradCheck};
use engine::nn::ParamStore;
use engine::{no_grad, CpuStorage, DType, Device, Storage, Tensor};
use models::rgbd::{MidWidth, RgbdEncoder, RgbdEncoderConfig, RgbdStreamConfig, RGBD_PRESETS};
use std::time::Instant;

/// A very small encoder whose two streams differ (widths, a stage with an identity shortcut
/// in the depth stream, temporal strides placed differently but multiplying to the same 2).
fn micro() -> RgbdEncoderConfig {
    RgbdEncoderConfig {
        rgb: RgbdStreamConfig {
            stem_channels: 3,
            stem_kernel: 3,
            stem_mid: 2,
            stem_stride: (2, 1),
            stages: vec![(4, 1, 2, 2)],
            kernel: 3,
            mid: MidWidth::ParamMatched,
        },
        depth: RgbdStreamConfig {
            stem_channels: 2,
            stem_kernel: 3,
            stem_mid: 3,
            stem_stride: (2, 2),
            stages: vec![(2, 1, 1, 1), (3, 1, 2, 1)],
            kernel: 3,
            mid: MidWidth::Out,
        },
        rgb_stream: true,
        out_dim: 5,
    }
}

fn store64(seed: u64) -> ParamStore {
    ParamStore::with_seed(seed).with_dtype(DType::F64)
}

/// rgb (B, T, 3, H, W) in [0, 1]; depth (B, T, 1, H', W') in metres with some holes (zeros).
fn inputs(b: usize, t: usize, hw: usize, dhw: usize, dtype: DType, seed: u64) -> (Tensor, Tensor) {
    let rgb = Tensor::rand_uniform([b, t, 3, hw, hw], 0.0, 1.0, seed, dtype, Device::Cpu).unwrap();
    let n = b * t * dhw * dhw;
    let vals: Vec<f64> = Tensor::rand_uniform([n], 0.5, 4.0, seed + 1, DType::F64, Device::Cpu)
        .unwrap()
        .to_f64_vec()
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i % 7 == 3 { 0.0 } else { v })
        .collect();
    let depth = Tensor::from_vec(vals, [b, t, 1, dhw, dhw], Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    (rgb, depth)
}

/// pooled and per_time in one tensor (B, 1 + T', d), so a check covers both.
fn both(out: &models::EncoderOutput) -> engine::Result<Tensor> {
    Tensor::concat(&[&out.pooled.unsqueeze(1)?, &out.per_time], 1)
}

#[test]
fn gradient_wrt_inputs_f64() {
    let store = store64(3);
    let enc = RgbdEncoder::new(&store.sub("encoder").sub("rgbd"), &micro()).unwrap();
    let (rgb, depth) = inputs(2, 4, 6, 5, DType::F64, 11);
    let opts = GradCheck {
        atol: 1e-6,
        rtol: 1e-5,
        ..GradCheck::default()
    };
    assert_gradients(
        "rgbd inputs",
        |x| both(&enc.forward(Some(&x[0]), &x[1])?),
        &[rgb, depth],
        opts,
    );
}

/// Data without RGB (NTU's masked depth): a depth-only encoder has no `rgb.*` parameter, a
/// `fuse` over the depth channels alone, correct input gradients, and clear errors when rgb
/// is given to it or withheld from a two-stream encoder.
#[test]
fn depth_only_encoder_for_data_without_rgb() {
    let two = ParamStore::with_seed(3).with_dtype(DType::F64);
    let both_streams = RgbdEncoder::new(&two.root(), &micro()).unwrap();
    let cfg = RgbdEncoderConfig {
        rgb_stream: false,
        ..micro()
    };
    let one = store64(3);
    let enc = RgbdEncoder::new(&one.root(), &cfg).unwrap();
    let names: Vec<String> = one.params().into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().all(|n| !n.starts_with("rgb.")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("depth.")), "{names:?}");
    let count =
        |s: &ParamStore| -> usize { s.params().iter().map(|(_, p)| p.shape().numel()).sum() };
    let rgb_params: usize = two
        .params()
        .iter()
        .filter(|(n, _)| n.starts_with("rgb."))
        .map(|(_, p)| p.shape().numel())
        .sum();
    // fuse loses the rgb stream's output channels (4) times d (5).
    assert_eq!(count(&one), count(&two) - rgb_params - 4 * 5);

    let (rgb, depth) = inputs(2, 4, 6, 5, DType::F64, 31);
    let out = enc.forward(None, &depth).unwrap();
    assert_eq!(out.per_time.dims(), &[2, 2, 5]);
    assert_eq!(out.pooled.dims(), &[2, 5]);
    let e = enc.forward(Some(&rgb), &depth).unwrap_err().to_string();
    assert!(e.contains("depth-only"), "{e}");
    let e = both_streams.forward(None, &depth).unwrap_err().to_string();
    assert!(e.contains("needs rgb"), "{e}");

    let opts = GradCheck {
        atol: 1e-6,
        rtol: 1e-5,
        ..GradCheck::default()
    };
    assert_gradients(
        "depth-only rgbd input",
        |x| both(&enc.forward(None, &x[0])?),
        &[depth],
        opts,
    );
}

fn set_elem(t: &Tensor, i: usize, v: f64) {
    let mut g = t.storage_mut();
    match &mut *g {
        Storage::Cpu(CpuStorage::F64(x)) => x[i] = v,
        #[allow(unreachable_patterns)]
        _ => panic!("f64 CPU parameters expected"),
    }
}

#[test]
fn gradient_wrt_parameters_f64() {
    let store = store64(5);
    let enc = RgbdEncoder::new(&store.root(), &micro()).unwrap();
    let (rgb, depth) = inputs(2, 4, 6, 5, DType::F64, 21);
    // sum(out * w), w uniform in [0.5, 1.5] seeded 9.
    let opts = GradCheck {
        eps: 1e-6,
        atol: 1e-6,
        rtol: 1e-5,
        seed: 9,
    };
    let report = assert_parameter_gradients(
        "rgbd encoder (every parameter)",
        &store.params(),
        || both(&enc.forward(Some(&rgb), &depth)?),
        opts,
    );
    assert!(
        report.without_grad.is_empty(),
        "no gradient: {:?}",
        report.without_grad
    );
    let (names, checked) = (&report.names, report.checked);
    assert_eq!(checked, store.num_params());
    // Every kind of layer took part.
    for n in [
        "rgb.stem.conv.spatial.weight",
        "rgb.stem.conv.bn.weight",
        "rgb.stem.conv.temporal.weight",
        "rgb.stem.bn.bias",
        "rgb.stage1.block1.conv1.spatial.weight",
        "rgb.stage1.block1.bn2.weight",
        "rgb.stage1.block1.downsample.conv.weight",
        "rgb.stage1.block1.downsample.bn.weight",
        "depth.stage1.block1.conv2.temporal.weight",
        "depth.stage2.block1.downsample.conv.weight",
        "fuse.weight",
        "fuse.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "missing parameter {n}");
    }
    // The depth stream's first stage keeps width and size: identity shortcut.
    assert!(!names
        .iter()
        .any(|x| x.starts_with("depth.stage1.block1.downsample")));
}

#[test]
fn presets_shapes_and_sizes() {
    // (preset, B, T, H, W): small inputs for the large presets.
    let cases = [
        ("tiny", 8, 8, 32),
        ("small", 2, 32, 48),
        ("base", 2, 8, 32),
        ("r2plus1d18", 2, 8, 16),
    ];
    for (name, b, t, hw) in cases {
        let cfg = RgbdEncoderConfig::preset(name).unwrap();
        let store = ParamStore::with_seed(1);
        let enc = RgbdEncoder::new(&store.sub("encoder").sub("rgbd"), &cfg).unwrap();
        assert_eq!(enc.out_dim(), 256);
        assert_eq!(enc.config(), &cfg);
        let (rgb, depth) = inputs(b, t, hw, hw, DType::F32, 3);
        let out = enc.forward(Some(&rgb), &depth).unwrap();
        let tp = enc.output_frames(t);
        assert_eq!(out.per_time.dims(), &[b, tp, 256], "{name}");
        assert_eq!(out.pooled.dims(), &[b, 256], "{name}");
        assert!(out
            .per_time
            .to_f64_vec()
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
        println!(
            "{name}: {} parameters, T {t} -> T' {tp}",
            store.num_params()
        );
        assert!(store.contains("encoder.rgbd.rgb.stem.conv.spatial.weight"));
        assert!(store.contains("encoder.rgbd.depth.stage1.block1.conv1.spatial.weight"));
        assert!(store.contains("encoder.rgbd.fuse.weight"));
        if name == "r2plus1d18" {
            // torchvision's r2plus1d_18 has 31,505,325 parameters, of which the 400-class fc
            // holds 512 * 400 + 400; the depth stem reads 1 channel instead of 3 (45 * 2 * 49
            // fewer weights); the fusion is Linear(1024, 256).
            let rgb_stream: usize = store
                .params()
                .iter()
                .filter(|(n, _)| n.starts_with("encoder.rgbd.rgb."))
                .map(|(_, p)| p.numel())
                .sum();
            assert_eq!(rgb_stream, 31_505_325 - 205_200);
            assert_eq!(
                store.num_params(),
                2 * rgb_stream - 45 * 2 * 49 + 1024 * 256 + 256
            );
        }
    }
    // T' for the tiny set's 8 frames, and odd lengths round up.
    let tiny = RgbdEncoderConfig::preset("tiny").unwrap();
    assert_eq!(tiny.output_frames(8), 4);
    assert_eq!(tiny.output_frames(7), 4);
}

#[test]
fn pooled_is_mean_of_per_time() {
    let store = store64(8);
    let enc = RgbdEncoder::new(&store.root(), &micro()).unwrap();
    let (rgb, depth) = inputs(3, 5, 7, 6, DType::F64, 4);
    let out = enc.forward(Some(&rgb), &depth).unwrap();
    assert_eq!(out.per_time.dims(), &[3, 3, 5]);
    let mean = out
        .per_time
        .mean(&[1], false)
        .unwrap()
        .to_f64_vec()
        .unwrap();
    let pooled = out.pooled.to_f64_vec().unwrap();
    for (a, b) in mean.iter().zip(&pooled) {
        assert!((a - b).abs() < 1e-12);
    }
    // per_time differs across time steps (nothing collapsed the time axis early).
    let pt = out.per_time.to_f64_vec().unwrap();
    assert!((pt[0] - pt[5]).abs() > 1e-9);
}

/// Per stream, (BN name, number of values per channel) for input (b, t, hw): to turn the
/// unbiased running variance back into the biased batch variance.
fn bn_counts(
    prefix: &str,
    cfg: &RgbdStreamConfig,
    b: usize,
    t: usize,
    hw: usize,
) -> Vec<(String, usize)> {
    let mut v = Vec::new();
    let (mut t, mut hw) = (t, hw);
    let (s, ts) = cfg.stem_stride;
    let hw1 = hw.div_ceil(s);
    v.push((format!("{prefix}.stem.conv.bn"), b * t * hw1 * hw1));
    t = t.div_ceil(ts);
    hw = hw1;
    v.push((format!("{prefix}.stem.bn"), b * t * hw * hw));
    for (i, &(_, blocks, ss, st)) in cfg.stages.iter().enumerate() {
        for j in 0..blocks {
            let (ss, st) = if j == 0 { (ss, st) } else { (1, 1) };
            let p = format!("{prefix}.stage{}.block{}", i + 1, j + 1);
            let hw1 = hw.div_ceil(ss);
            v.push((format!("{p}.conv1.bn"), b * t * hw1 * hw1));
            t = t.div_ceil(st);
            hw = hw1;
            let n = b * t * hw * hw;
            for l in ["bn1", "conv2.bn", "bn2", "downsample.bn"] {
                v.push((format!("{p}.{l}"), n));
            }
        }
    }
    v
}

#[test]
fn train_and_eval_differ_only_through_batch_norm() {
    let cfg = micro();
    let store = store64(2);
    let enc = RgbdEncoder::new(&store.root(), &cfg).unwrap();
    let (rgb, depth) = inputs(2, 4, 6, 6, DType::F64, 6);
    let train = both(&enc.forward(Some(&rgb), &depth).unwrap())
        .unwrap()
        .to_f64_vec()
        .unwrap();
    // Train-mode outputs do not depend on the running statistics, so repeated passes move
    // them geometrically (momentum 0.1) to the batch mean and unbiased variance.
    for _ in 0..300 {
        no_grad(|| enc.forward(Some(&rgb), &depth)).unwrap();
    }
    let mut counts = bn_counts("rgb", &cfg.rgb, 2, 4, 6);
    counts.extend(bn_counts("depth", &cfg.depth, 2, 4, 6));
    let mut fixed = 0;
    for (name, n) in counts {
        if let Some(var) = store.get(&format!("{name}.running_var")) {
            let scaled: Vec<f64> = var
                .to_f64_vec()
                .unwrap()
                .iter()
                .map(|v| v * (n - 1) as f64 / n as f64)
                .collect();
            for (i, x) in scaled.into_iter().enumerate() {
                set_elem(&var, i, x);
            }
            fixed += 1;
        }
    }
    assert_eq!(
        fixed,
        store.buffers().len() / 2,
        "every batch norm accounted for"
    );
    store.set_training(false);
    let eval = both(&enc.forward(Some(&rgb), &depth).unwrap())
        .unwrap()
        .to_f64_vec()
        .unwrap();
    for (a, b) in train.iter().zip(&eval) {
        assert!(
            (a - b).abs() < 1e-8 * (1.0 + a.abs()),
            "train {a} vs eval {b}"
        );
    }
    // In eval mode a sample's features do not depend on the rest of the batch; in train mode
    // they do (batch statistics).
    let first = |t: &Tensor| t.narrow(0, 0, 1).unwrap();
    let alone = both(&enc.forward(Some(&first(&rgb)), &first(&depth)).unwrap()).unwrap();
    let in_batch = both(&enc.forward(Some(&rgb), &depth).unwrap()).unwrap();
    let (a, b) = (
        alone.to_f64_vec().unwrap(),
        first(&in_batch).to_f64_vec().unwrap(),
    );
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12));
    store.set_training(true);
    let (rgb2, depth2) = inputs(2, 4, 6, 6, DType::F64, 60);
    let r = Tensor::concat(&[&first(&rgb), &first(&rgb2)], 0).unwrap();
    let d = Tensor::concat(&[&first(&depth), &first(&depth2)], 0).unwrap();
    let mixed = both(&enc.forward(Some(&r), &d).unwrap()).unwrap();
    let c = first(&mixed).to_f64_vec().unwrap();
    let train_first = first(&both(&enc.forward(Some(&rgb), &depth).unwrap()).unwrap())
        .to_f64_vec()
        .unwrap();
    assert!(c
        .iter()
        .zip(&train_first)
        .any(|(x, y)| (x - y).abs() > 1e-6));
}

#[test]
fn bad_inputs_are_errors() {
    let store = ParamStore::with_seed(0);
    let enc = RgbdEncoder::new(&store.root(), &micro()).unwrap();
    let (rgb, depth) = inputs(2, 4, 6, 6, DType::F32, 1);
    assert!(enc.forward(Some(&rgb), &depth).is_ok());
    let rand = |dims: &[usize]| {
        Tensor::rand_uniform(dims.to_vec(), 0.0, 1.0, 3, DType::F32, Device::Cpu).unwrap()
    };
    let cases: Vec<(&str, Tensor, Tensor)> = vec![
        (
            "rgb missing a channel",
            rand(&[2, 4, 2, 6, 6]),
            depth.clone(),
        ),
        ("depth with 3 channels", rgb.clone(), rand(&[2, 4, 3, 6, 6])),
        ("inputs swapped", depth.clone(), rgb.clone()),
        ("batch mismatch", rgb.clone(), rand(&[3, 4, 1, 6, 6])),
        ("frames mismatch", rgb.clone(), rand(&[2, 5, 1, 6, 6])),
        ("rgb rank 4", rand(&[2, 4, 3, 6]), depth.clone()),
        ("depth rank 4", rgb.clone(), rand(&[2, 4, 6, 6])),
        ("rgb rank 6", rand(&[2, 4, 3, 6, 6, 1]), depth.clone()),
        ("no frames", rand(&[2, 0, 3, 6, 6]), rand(&[2, 0, 1, 6, 6])),
        (
            "f64 input to an f32 model",
            rgb.to_dtype(DType::F64).unwrap(),
            depth.clone(),
        ),
    ];
    for (what, r, d) in cases {
        let err = enc.forward(Some(&r), &d);
        assert!(err.is_err(), "{what}: expected an error");
        let msg = err.err().unwrap().to_string();
        assert!(msg.contains("RgbdEncoder"), "{what}: {msg}");
    }
    // Different image sizes per stream are fine (only B and T must agree).
    let (_, small_depth) = inputs(2, 4, 6, 4, DType::F32, 1);
    assert!(enc.forward(Some(&rgb), &small_depth).is_ok());
}

#[test]
fn bad_configs_are_errors() {
    let err = RgbdEncoderConfig::preset("huge").unwrap_err().to_string();
    for name in RGBD_PRESETS {
        assert!(err.contains(name), "{err}");
    }
    let build = |cfg: &RgbdEncoderConfig| RgbdEncoder::new(&ParamStore::new().root(), cfg);
    let mut c = micro();
    c.depth.stages[1].3 = 2; // depth stream now halves time twice, rgb once
    let msg = build(&c).err().expect("mismatched T'").to_string();
    assert!(msg.contains("same number of time steps"), "{msg}");
    let mut c = micro();
    c.rgb.kernel = 4;
    assert!(build(&c).is_err());
    let mut c = micro();
    c.rgb.stages[0].0 = 0;
    assert!(build(&c).is_err());
    let mut c = micro();
    c.depth.stem_stride = (0, 2);
    assert!(build(&c).is_err());
    let mut c = micro();
    c.out_dim = 0;
    assert!(build(&c).is_err());
    // Stages in a different order but the same temporal factor are fine.
    let mut c = micro();
    c.depth.stem_stride = (2, 1);
    c.depth.stages[0].3 = 2;
    assert!(build(&c).is_ok());
}

#[test]
fn deterministic_for_a_seed() {
    let run = || {
        let store = ParamStore::with_seed(4);
        let enc =
            RgbdEncoder::new(&store.root(), &RgbdEncoderConfig::preset("tiny").unwrap()).unwrap();
        let (rgb, depth) = inputs(2, 8, 32, 32, DType::F32, 2);
        enc.forward(Some(&rgb), &depth)
            .unwrap()
            .pooled
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(run(), run());
}

/// CPU seconds used by this process so far (all threads; utime + stime from /proc, in clock
/// ticks of 10 ms): robust to other processes sharing the cores, unlike wall time.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of the file (utime, stime) are 11 and 12 after the command name.
    (tick(11) + tick(12)) / 100.0
}

fn time_fwd_bwd(name: &str, b: usize, t: usize, hw: usize, reps: usize) {
    let store = ParamStore::with_seed(1);
    let enc = RgbdEncoder::new(&store.root(), &RgbdEncoderConfig::preset(name).unwrap()).unwrap();
    let (rgb, depth) = inputs(b, t, hw, hw, DType::F32, 3);
    let step = || {
        store.zero_grad();
        let out = enc.forward(Some(&rgb), &depth).unwrap();
        out.per_time
            .square()
            .unwrap()
            .mean_all()
            .unwrap()
            .backward()
            .unwrap();
    };
    step(); // warm-up
    let mut wall = Vec::new();
    let cpu0 = process_cpu_seconds();
    for _ in 0..reps {
        let start = Instant::now();
        step();
        wall.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (process_cpu_seconds() - cpu0) * 1e3 / reps as f64;
    wall.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name} ({b}, {t}, 3|1, {hw}, {hw}): {} params, forward+backward: CPU {cpu:.1} ms/step, wall min {:.1} / median {:.1} ms ({reps} steps, {} rayon threads)",
        store.num_params(),
        wall[0],
        wall[wall.len() / 2],
        rayon::current_num_threads()
    );
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn timing() {
    time_fwd_bwd("tiny", 8, 8, 32, 50);
    time_fwd_bwd("small", 16, 32, 48, 5);
    time_fwd_bwd("base", 8, 8, 32, 3);
}

/// Clips of a bright, near square moving left or right (class 0 / 1); a class-1 clip is a
/// class-0 clip played backwards, so the two classes show the same set of frames and only
/// temporal order separates them.
fn moving_squares(n: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
    let (t, hw, side) = (8usize, 32usize, 7usize);
    let noise = Tensor::rand_uniform([n * t * hw * hw], 0.0, 0.1, seed, DType::F64, Device::Cpu)
        .unwrap()
        .to_f64_vec()
        .unwrap();
    let pos = Tensor::rand_uniform([n * 2], 0.0, 1.0, seed + 1, DType::F64, Device::Cpu)
        .unwrap()
        .to_f64_vec()
        .unwrap();
    let mut rgb = vec![0f32; n * t * 3 * hw * hw];
    let mut depth = vec![0f32; n * t * hw * hw];
    let mut labels = Vec::new();
    for s in 0..n {
        let class = s % 2;
        labels.push(class as i64);
        let y0 = (pos[2 * s] * (hw - side) as f64) as usize;
        let x_start = (pos[2 * s + 1] * 4.0) as usize;
        for f in 0..t {
            let step = if class == 0 { f } else { t - 1 - f };
            let x0 = x_start + 3 * step;
            for y in 0..hw {
                for x in 0..hw {
                    let inside = (y0..y0 + side).contains(&y) && (x0..x0 + side).contains(&x);
                    let e = noise[((s * t + f) * hw + y) * hw + x];
                    let v = if inside { 0.9 - e } else { 0.2 + e };
                    for c in 0..3 {
                        rgb[(((s * t + f) * 3 + c) * hw + y) * hw + x] = v as f32;
                    }
                    depth[((s * t + f) * hw + y) * hw + x] = if inside {
                        1.5 + e as f32
                    } else {
                        3.0 + e as f32
                    };
                }
            }
        }
    }
    (
        Tensor::from_vec(rgb, [n, t, 3, hw, hw], Device::Cpu).unwrap(),
        Tensor::from_vec(depth, [n, t, 1, hw, hw], Device::Cpu).unwrap(),
        Tensor::from_vec(labels, [n], Device::Cpu).unwrap(),
    )
}

#[test]
fn tiny_learns_the_direction_of_motion() {
    use engine::nn::{Linear, Module};
    use engine::optim::{AdamW, AdamWConfig, Optimizer};
    let store = ParamStore::with_seed(12);
    let enc = RgbdEncoder::new(
        &store.sub("encoder").sub("rgbd"),
        &RgbdEncoderConfig::preset("tiny").unwrap(),
    )
    .unwrap();
    let head = Linear::new(&store.sub("head"), 256, 2, true).unwrap();
    let mut opt = AdamW::from_store(&store, AdamWConfig::new(3e-3).weight_decay(0.0)).unwrap();
    let (rgb, depth, labels) = moving_squares(16, 5);
    let loss_of = || {
        head.forward(&enc.forward(Some(&rgb), &depth)?.pooled)?
            .cross_entropy(&labels, engine::Reduction::Mean, 0.0)
    };
    let first = loss_of().unwrap().item().unwrap();
    let mut last = first;
    for _ in 0..60 {
        opt.zero_grad();
        let loss = loss_of().unwrap();
        last = loss.item().unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    assert!(last < 0.25 * first, "loss {first} -> {last}");
    // Fresh clips, eval mode: the direction generalises.
    store.set_training(false);
    let (rgb, depth, labels) = moving_squares(16, 99);
    let logits = head
        .forward(&enc.forward(Some(&rgb), &depth).unwrap().pooled)
        .unwrap();
    let pred = logits.argmax(1, false).unwrap().to_vec::<i64>().unwrap();
    let labels = labels.to_vec::<i64>().unwrap();
    let correct = pred.iter().zip(&labels).filter(|(a, b)| a == b).count();
    println!("direction of motion: loss {first:.3} -> {last:.3}, held-out accuracy {correct}/16");
    assert!(correct >= 12, "held-out accuracy {correct}/16");
}
