//! E_S, the ST-GCN skeleton encoder: the graph partitions against hand-written matrices, the
//! layouts' edges, gradient checks (input and every parameter), multi-format padding and
//! masking, shapes and errors.

use engine::gradcheck::{assert_gradients, check_parameter_gradients_strided, GradCheck};
use engine::nn::ParamStore;
use engine::{CpuStorage, DType, Device, Storage, Tensor};
use models::data::layouts::{SkeletonLayout, BODY15, COCO17, KINECT25};
use models::data::Modality;
use models::skeleton::{SkeletonEncoder, SkeletonEncoderConfig, SkeletonGraph};
use std::time::Instant;

const CPU: Device = Device::Cpu;

/// A 4-joint chain 0 - 1 - 2 - 3 rooted at joint 1.
const CHAIN4: SkeletonLayout = SkeletonLayout {
    name: "chain4",
    joints: &["a", "b", "c", "d"],
    bones: &[(0, 1), (2, 1), (3, 2)],
    centre: 1,
    mirror_pairs: &[],
};

fn entries(g: &SkeletonGraph) -> Vec<f64> {
    g.adjacency(DType::F64, CPU)
        .unwrap()
        .to_vec::<f64>()
        .unwrap()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

// ----- the graph -------------------------------------------------------------------------------

#[test]
fn chain_partitions_match_hand_written_matrices() {
    // Distances to the centre (joint 1): 1, 0, 1, 2. Closed-neighbourhood degrees: 2, 3, 3, 2.
    let g = SkeletonGraph::spatial(&CHAIN4, 6).unwrap();
    assert_eq!((g.num_joints(), g.v_pad()), (4, 6));
    let (h, t) = (0.5, 1.0 / 3.0);
    // a[k][v][w], rows are sources v, columns targets w; value 1 / deg(w).
    #[rustfmt::skip]
    let self_loops = [
        [h, 0., 0., 0.],
        [0., t, 0., 0.],
        [0., 0., t, 0.],
        [0., 0., 0., h],
    ];
    // Centripetal: the source at least as far from the centre as the target.
    #[rustfmt::skip]
    let centripetal = [
        [0., t, 0., 0.], // 0 -> 1
        [0., 0., 0., 0.],
        [0., t, 0., 0.], // 2 -> 1
        [0., 0., t, 0.], // 3 -> 2
    ];
    // Centrifugal: the source nearer the centre.
    #[rustfmt::skip]
    let centrifugal = [
        [0., 0., 0., 0.],
        [h, 0., t, 0.], // 1 -> 0, 1 -> 2
        [0., 0., 0., h], // 2 -> 3
        [0., 0., 0., 0.],
    ];
    let mut expected = vec![0.0; 3 * 36];
    for (k, m) in [self_loops, centripetal, centrifugal].iter().enumerate() {
        for v in 0..4 {
            for w in 0..4 {
                expected[(k * 6 + v) * 6 + w] = m[v][w];
            }
        }
    }
    assert_close(&entries(&g), &expected, 1e-15, "chain4 partitions");
    assert_eq!(
        g.mask(DType::F64, CPU).unwrap().to_vec::<f64>().unwrap(),
        vec![1., 1., 1., 1., 0., 0.]
    );
    // The unpadded stack is the top-left 4x4 of each partition.
    let un = g
        .adjacency_unpadded(DType::F64, CPU)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    for k in 0..3 {
        for v in 0..4 {
            for w in 0..4 {
                assert_eq!(un[(k * 4 + v) * 4 + w], expected[(k * 6 + v) * 6 + w]);
            }
        }
    }
    // f32 and the padded-free case.
    let a32 = g.adjacency(DType::F32, CPU).unwrap();
    assert_eq!((a32.dtype(), a32.dims()), (DType::F32, &[3, 6, 6][..]));
    let tight = SkeletonGraph::spatial(&CHAIN4, 4).unwrap();
    assert_eq!(
        tight
            .mask(DType::F64, CPU)
            .unwrap()
            .to_vec::<f64>()
            .unwrap(),
        vec![1.; 4]
    );
}

/// Hop distances to the centre, by brute-force relaxation (independent of the BFS in the code).
fn distances(layout: &SkeletonLayout) -> Vec<usize> {
    let j = layout.num_joints();
    let mut d = vec![usize::MAX / 2; j];
    d[layout.centre] = 0;
    for _ in 0..j {
        for &(a, b) in layout.bones {
            d[a] = d[a].min(d[b] + 1);
            d[b] = d[b].min(d[a] + 1);
        }
    }
    d
}

#[test]
fn columns_of_summed_partitions_sum_to_one_at_real_joints() {
    for layout in [&KINECT25, &COCO17, &BODY15, &CHAIN4] {
        let vp = 25.max(layout.num_joints());
        let g = SkeletonGraph::spatial(layout, vp).unwrap();
        let a = entries(&g);
        for w in 0..vp {
            let col: f64 = (0..3)
                .flat_map(|k| (0..vp).map(move |v| (k, v)))
                .map(|(k, v)| a[(k * vp + v) * vp + w])
                .sum();
            let row: f64 = (0..3)
                .flat_map(|k| (0..vp).map(move |v| (k, v)))
                .map(|(k, v)| a[(k * vp + w) * vp + v])
                .sum();
            if w < layout.num_joints() {
                assert!(
                    (col - 1.0).abs() < 1e-12,
                    "{} column {w}: {col}",
                    layout.name
                );
            } else {
                assert_eq!((col, row), (0.0, 0.0), "{} padded joint {w}", layout.name);
            }
        }
    }
}

#[test]
fn every_real_edge_of_each_layout_is_present_in_the_right_partition() {
    for layout in [&KINECT25, &COCO17, &BODY15] {
        let j = layout.num_joints();
        let g = SkeletonGraph::spatial(layout, 25).unwrap();
        let a = entries(&g);
        let at = |k: usize, v: usize, w: usize| a[(k * 25 + v) * 25 + w];
        let d = distances(layout);
        let mut deg = vec![1usize; j];
        for &(c, p) in layout.bones {
            deg[c] += 1;
            deg[p] += 1;
        }
        let mut expected_nonzero = 0;
        for &(child, parent) in layout.bones {
            assert_eq!(
                d[child],
                d[parent] + 1,
                "{}: bones point to the centre",
                layout.name
            );
            // child -> parent travels towards the centre; parent -> child away from it.
            assert_eq!(
                at(1, child, parent),
                1.0 / deg[parent] as f64,
                "{} {child}->{parent}",
                layout.name
            );
            assert_eq!(
                at(2, parent, child),
                1.0 / deg[child] as f64,
                "{} {parent}->{child}",
                layout.name
            );
            expected_nonzero += 2;
        }
        for (v, &dv) in deg.iter().enumerate() {
            assert_eq!(at(0, v, v), 1.0 / dv as f64, "{} self {v}", layout.name);
            expected_nonzero += 1;
        }
        let nonzero = a.iter().filter(|&&x| x != 0.0).count();
        assert_eq!(
            nonzero, expected_nonzero,
            "{}: no entries but the bones and self loops",
            layout.name
        );
    }
}

#[test]
fn graph_errors() {
    assert!(SkeletonGraph::spatial(&KINECT25, 24).is_err());
    assert!(SkeletonGraph::spatial(&KINECT25, 65).is_err());
    const BAD_BONE: SkeletonLayout = SkeletonLayout {
        name: "bad",
        joints: &["a", "b"],
        bones: &[(0, 2)],
        centre: 0,
        mirror_pairs: &[],
    };
    assert!(SkeletonGraph::spatial(&BAD_BONE, 4).is_err());
    const BAD_CENTRE: SkeletonLayout = SkeletonLayout {
        name: "bad",
        joints: &["a", "b"],
        bones: &[(0, 1)],
        centre: 5,
        mirror_pairs: &[],
    };
    assert!(SkeletonGraph::spatial(&BAD_CENTRE, 4).is_err());
    let g = SkeletonGraph::spatial(&CHAIN4, 4).unwrap();
    assert!(g.entry(3, 0, 0).is_err());
    assert!(g.entry(0, 4, 0).is_err());
}

// ----- helpers for the encoder -----------------------------------------------------------------

/// A small f64 configuration with all three residual kinds (none, projection, identity), both
/// graph terms, and a short temporal kernel.
fn small_config(formats: Vec<Modality>) -> SkeletonEncoderConfig {
    SkeletonEncoderConfig {
        formats,
        in_channels: 3,
        blocks: vec![(4, 1), (6, 2), (6, 1)],
        out_dim: 5,
        temporal_kernel: 3,
        dropout: 0.0,
        edge_importance: true,
        adaptive: true,
    }
}

fn f64_store(seed: u64) -> ParamStore {
    ParamStore::with_seed(seed).with_dtype(DType::F64)
}

fn randn(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::rand_normal(dims.to_vec(), 0.0, 1.0, seed, dtype, CPU).unwrap()
}

/// Overwrites a CPU f64 parameter's values in place.
fn write_f64(t: &Tensor, f: impl Fn(usize, f64) -> f64) {
    let mut s = t.storage_mut();
    let Storage::Cpu(CpuStorage::F64(v)) = &mut *s else {
        panic!("expected an f64 CPU tensor")
    };
    for (i, x) in v.iter_mut().enumerate() {
        *x = f(i, *x);
    }
}

/// Gives the graph terms (initialised to exactly 1 and 0) and the batch-norm affine terms
/// random values, so no gradient check runs at a symmetric point.
fn randomise_graph_and_bn(store: &ParamStore, seed: u64) {
    for (name, p) in store.params() {
        let r = Tensor::rand_uniform(
            p.dims().to_vec(),
            -1.0,
            1.0,
            seed ^ p.numel() as u64 ^ name.len() as u64,
            DType::F64,
            CPU,
        )
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
        if name.contains("edge_importance") {
            write_f64(&p, |i, _| 1.0 + 0.5 * r[i]);
        } else if name.contains("adaptive") {
            write_f64(&p, |i, _| 0.3 * r[i]);
        } else if name.contains("bn") {
            write_f64(&p, |i, x| x + 0.3 * r[i]);
        }
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec()
        .unwrap()
        .iter()
        .zip(b.to_f64_vec().unwrap())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

// ----- gradient checks -------------------------------------------------------------------------

#[test]
fn gradient_check_wrt_input() {
    let store = f64_store(11);
    let enc =
        SkeletonEncoder::new(&store.sub("enc"), &small_config(vec![Modality::Skeleton15])).unwrap();
    randomise_graph_and_bn(&store, 5);
    let x = randn(&[2, 5, 2, 15, 3], 21, DType::F64);
    assert_gradients(
        "E_S wrt input",
        |inp| {
            let out = enc.forward(&inp[0], Modality::Skeleton15)?;
            Tensor::concat(
                &[
                    &out.per_time.reshape([2 * 3 * 5])?,
                    &out.pooled.reshape([10])?,
                ],
                0,
            )
        },
        &[x],
        GradCheck::default(),
    );
}

/// Every parameter of a small f64 encoder (graph terms, convolutions, batch norms, head)
/// against central differences taken by writing into the parameter's storage.
#[test]
fn gradient_check_wrt_every_parameter() {
    let store = f64_store(12);
    let enc =
        SkeletonEncoder::new(&store.sub("enc"), &small_config(vec![Modality::Skeleton15])).unwrap();
    randomise_graph_and_bn(&store, 6);
    let x = randn(&[2, 5, 2, 15, 3], 22, DType::F64);
    // sum(per_time * w), w uniform in [0.5, 1.5] seeded 3.
    let opts = GradCheck {
        eps: 1e-6,
        atol: 1e-6,
        rtol: 1e-5,
        seed: 3,
    };
    let report = check_parameter_gradients_strided(
        &store.params(),
        || Ok(enc.forward(&x, Modality::Skeleton15)?.per_time),
        opts,
        // Every element of the graph terms and of small tensors; an even spread of 60 of the
        // larger ones.
        |name, n| {
            let graph_term = name.contains("edge_importance") || name.contains("adaptive");
            if graph_term {
                1
            } else {
                n.div_ceil(60).max(1)
            }
        },
    )
    .unwrap();
    report.assert_passed("skeleton encoder (every parameter)");
    let (seen, checked) = (&report.names, report.checked);
    for must in [
        "enc.data_bn_skeleton15.weight",
        "enc.block0.gcn.weight",
        "enc.block0.edge_importance_skeleton15",
        "enc.block0.adaptive_skeleton15",
        "enc.block1.tcn.weight",
        "enc.block1.residual.conv.weight",
        "enc.block1.residual.bn.weight",
        "enc.block2.bn2.bias",
        "enc.head.weight",
    ] {
        assert!(
            seen.iter().any(|s| s == must),
            "{must} missing from {seen:?}"
        );
    }
    assert!(!seen.iter().any(|s| s.starts_with("enc.block0.residual")));
    assert!(!seen.iter().any(|s| s.starts_with("enc.block2.residual")));
    assert!(checked > 500, "{checked}");

    // The edge importance only matters on the graph's edges: its gradient is exactly zero
    // elsewhere, while the adaptive term is dense.
    let g = SkeletonGraph::spatial(&BODY15, 15).unwrap();
    let a = entries(&g);
    let ei = store
        .get("enc.block0.edge_importance_skeleton15")
        .unwrap()
        .grad()
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    for (i, (&gi, &ai)) in ei.iter().zip(&a).enumerate() {
        if ai == 0.0 {
            assert_eq!(gi, 0.0, "edge importance gradient off the graph at {i}");
        }
    }
    let ad = store
        .get("enc.block0.adaptive_skeleton15")
        .unwrap()
        .grad()
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert!(ad.iter().filter(|&&v| v != 0.0).count() > ad.len() / 2);
}

// ----- shapes, presets, multi-format -----------------------------------------------------------

#[test]
fn tiny_shapes_and_pooling() {
    let store = ParamStore::with_seed(1);
    let cfg = SkeletonEncoderConfig::preset("tiny").unwrap();
    let enc = SkeletonEncoder::new(&store.sub("encoder").sub("skeleton"), &cfg).unwrap();
    assert_eq!((enc.out_dim(), enc.max_joints()), (256, 25));
    assert_eq!(enc.config(), &cfg);
    let x = randn(&[3, 8, 2, 25, 3], 2, DType::F32);
    let out = enc.forward(&x, Modality::Skeleton).unwrap();
    let t2 = cfg.output_frames(8);
    assert_eq!(t2, 4);
    assert_eq!(out.per_time.dims(), &[3, t2, 256]);
    assert_eq!(out.pooled.dims(), &[3, 256]);
    let mean = out.per_time.mean(&[1], false).unwrap();
    assert!(max_abs_diff(&mean, &out.pooled) < 1e-6);
    // Bodies are averaged: swapping the two bodies changes nothing (eval mode, fixed stats).
    store.set_training(false);
    let a = enc.forward(&x, Modality::Skeleton).unwrap();
    let swapped = Tensor::concat(
        &[&x.narrow(2, 1, 1).unwrap(), &x.narrow(2, 0, 1).unwrap()],
        2,
    )
    .unwrap();
    let b = enc.forward(&swapped, Modality::Skeleton).unwrap();
    assert!(max_abs_diff(&a.pooled, &b.pooled) < 1e-5);
    // Checkpoint names under the lead's prefix.
    for name in [
        "encoder.skeleton.data_bn.weight",
        "encoder.skeleton.data_bn.running_mean",
        "encoder.skeleton.block2.gcn.weight",
        "encoder.skeleton.block2.tcn.weight",
        "encoder.skeleton.block2.edge_importance",
        "encoder.skeleton.head.weight",
    ] {
        assert!(store.contains(name), "{name}");
    }
    assert!(!store.contains("encoder.skeleton.block2.adaptive"));
}

#[test]
fn presets_and_their_sizes() {
    let err = SkeletonEncoderConfig::preset("huge")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tiny") && err.contains("ssl") && err.contains("stgcn"),
        "{err}"
    );
    let ssl = SkeletonEncoderConfig::preset("ssl").unwrap();
    assert_eq!(ssl.blocks.len(), 9);
    assert_eq!(ssl.blocks.last(), Some(&(64, 1)));
    let st = SkeletonEncoderConfig::preset("stgcn").unwrap();
    assert_eq!(st.blocks.len(), 10);
    assert_eq!(st.blocks.iter().filter(|b| b.1 == 2).count(), 2);
    for name in SkeletonEncoderConfig::PRESETS {
        let cfg = SkeletonEncoderConfig::preset(name).unwrap();
        let store = ParamStore::with_seed(0);
        SkeletonEncoder::new(&store.root(), &cfg).unwrap();
        println!("preset {name}: {} parameters", store.num_params());
    }
}

#[test]
fn multi_format_encoder_runs_each_format_and_padding_is_exact() {
    let formats = vec![
        Modality::Skeleton,
        Modality::Skeleton17,
        Modality::Skeleton15,
    ];
    let mut cfg = SkeletonEncoderConfig::preset("tiny").unwrap();
    cfg.formats = formats.clone();
    cfg.adaptive = true;
    let store = ParamStore::with_seed(3);
    let enc = SkeletonEncoder::new(&store.sub("e"), &cfg).unwrap();
    assert_eq!(enc.max_joints(), 25);
    for (f, j) in formats.iter().zip([25, 17, 15]) {
        let g = enc.graph(*f).unwrap();
        assert_eq!((g.num_joints(), g.v_pad()), (j, 25));
        let mask = g.mask(DType::F32, CPU).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), j);
        assert!(mask[..j].iter().all(|&m| m == 1.0));
        let x = randn(&[2, 6, 1, j, 3], 40 + j as u64, DType::F32);
        let out = enc.forward(&x, *f).unwrap();
        assert_eq!(out.per_time.dims(), &[2, 3, 256]);
        // Zero-padded to 25: the same result.
        let xp = x
            .pad(&[(0, 0), (0, 0), (0, 0), (0, 25 - j), (0, 0)], 0.0)
            .unwrap();
        let outp = enc.forward_padded(&xp, *f).unwrap();
        assert!(max_abs_diff(&out.per_time, &outp.per_time) < 1e-6, "{f:?}");
    }
    // Per-format parameters, stable names and shapes.
    assert_eq!(
        store.get("e.data_bn_skeleton17.weight").unwrap().dims(),
        &[51]
    );
    assert_eq!(
        store
            .get("e.block1.edge_importance_skeleton15")
            .unwrap()
            .dims(),
        &[3, 15, 15]
    );
    assert_eq!(store.get("e.block1.adaptive").unwrap().dims(), &[3, 25, 25]);

    // Running one format trains only its own graph terms and input norm.
    store.zero_grad();
    let x = randn(&[2, 6, 1, 17, 3], 9, DType::F32);
    enc.forward(&x, Modality::Skeleton17)
        .unwrap()
        .pooled
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let has_grad = |n: &str| {
        store
            .get(n)
            .unwrap()
            .grad()
            .is_some_and(|g| g.to_f64_vec().unwrap().iter().any(|&v| v != 0.0))
    };
    assert!(has_grad("e.block0.edge_importance_skeleton17"));
    assert!(has_grad("e.data_bn_skeleton17.weight"));
    assert!(!has_grad("e.block0.edge_importance"));
    assert!(!has_grad("e.block0.edge_importance_skeleton15"));
    assert!(!has_grad("e.data_bn.weight"));
}

/// A format's output does not depend on which other formats (hence how much padding) the
/// encoder was built for: a COCO-only encoder and the three-format one agree exactly.
#[test]
fn output_does_not_depend_on_the_padding_width() {
    let mut cfg = small_config(vec![Modality::Skeleton17]);
    let solo_store = f64_store(8);
    let solo = SkeletonEncoder::new(&solo_store.sub("e"), &cfg).unwrap();
    cfg.formats = vec![
        Modality::Skeleton15,
        Modality::Skeleton,
        Modality::Skeleton17,
    ];
    let multi_store = f64_store(8);
    let multi = SkeletonEncoder::new(&multi_store.sub("e"), &cfg).unwrap();
    assert_eq!((solo.max_joints(), multi.max_joints()), (17, 25));
    randomise_graph_and_bn(&solo_store, 1);
    randomise_graph_and_bn(&multi_store, 1);
    let x = randn(&[2, 5, 2, 17, 3], 4, DType::F64);
    let a = solo.forward(&x, Modality::Skeleton17).unwrap();
    let b = multi.forward(&x, Modality::Skeleton17).unwrap();
    assert!(max_abs_diff(&a.per_time, &b.per_time) < 1e-12);
}

#[test]
fn garbage_at_padded_joints_does_not_leak() {
    let mut cfg = small_config(vec![Modality::Skeleton, Modality::Skeleton15]);
    cfg.dropout = 0.2;
    let store = f64_store(13);
    let enc = SkeletonEncoder::new(&store.sub("e"), &cfg).unwrap();
    randomise_graph_and_bn(&store, 2);
    let real = randn(&[2, 5, 2, 15, 3], 30, DType::F64);
    let zeros = real
        .pad(&[(0, 0), (0, 0), (0, 0), (0, 10), (0, 0)], 0.0)
        .unwrap();
    let huge = Tensor::rand_uniform(vec![2, 5, 2, 10, 3], -1e6, 1e6, 31, DType::F64, CPU).unwrap();
    let garbage = Tensor::concat(&[&real, &huge], 3).unwrap();
    let nan = Tensor::concat(&[&real, &huge.full_like(f64::NAN).unwrap()], 3).unwrap();
    for training in [true, false] {
        store.set_training(training);
        // Dropout draws a fresh mask per call: rebuild the same encoder for each input so each
        // sees the same mask sequence in training.
        let run = |x: &Tensor| {
            let s = f64_store(13);
            let e = SkeletonEncoder::new(&s.sub("e"), &cfg).unwrap();
            randomise_graph_and_bn(&s, 2);
            // Warm the running statistics with one training step first.
            s.set_training(true);
            e.forward_padded(&zeros, Modality::Skeleton15).unwrap();
            s.set_training(training);
            e.forward_padded(x, Modality::Skeleton15).unwrap()
        };
        let a = run(&zeros);
        let b = run(&garbage);
        let c = run(&nan);
        assert_eq!(
            a.per_time.to_vec::<f64>().unwrap(),
            b.per_time.to_vec::<f64>().unwrap(),
            "training {training}"
        );
        assert_eq!(
            a.per_time.to_vec::<f64>().unwrap(),
            c.per_time.to_vec::<f64>().unwrap(),
            "training {training}"
        );
    }
    // Padded (with garbage) and unpadded inputs agree on one encoder, in eval mode.
    store.set_training(false);
    let p = enc.forward_padded(&garbage, Modality::Skeleton15).unwrap();
    let u = enc.forward(&real, Modality::Skeleton15).unwrap();
    assert_eq!(
        p.per_time.to_vec::<f64>().unwrap(),
        u.per_time.to_vec::<f64>().unwrap()
    );
}

// ----- errors ----------------------------------------------------------------------------------

#[test]
fn shape_and_config_errors() {
    let store = ParamStore::with_seed(4);
    let mut cfg = SkeletonEncoderConfig::preset("tiny").unwrap();
    cfg.formats = vec![Modality::Skeleton17, Modality::Skeleton15];
    let enc = SkeletonEncoder::new(&store.root(), &cfg).unwrap();
    assert_eq!(enc.max_joints(), 17);
    let x17 = randn(&[2, 4, 1, 17, 3], 1, DType::F32);
    // Wrong J for the format.
    assert!(enc.forward(&x17, Modality::Skeleton15).is_err());
    assert!(enc
        .forward(
            &randn(&[2, 4, 1, 16, 3], 1, DType::F32),
            Modality::Skeleton17
        )
        .is_err());
    // Format not configured.
    let err = enc
        .forward(&randn(&[2, 4, 1, 25, 3], 1, DType::F32), Modality::Skeleton)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("skeleton17") && err.contains("not configured"),
        "{err}"
    );
    assert!(enc.forward(&x17, Modality::Depth).is_err());
    // Bad rank, channels, empty sizes.
    assert!(enc
        .forward(&randn(&[2, 4, 17, 3], 1, DType::F32), Modality::Skeleton17)
        .is_err());
    assert!(enc
        .forward(
            &randn(&[2, 4, 1, 17, 2], 1, DType::F32),
            Modality::Skeleton17
        )
        .is_err());
    assert!(enc
        .forward(
            &Tensor::zeros([0, 4, 1, 17, 3], DType::F32, CPU).unwrap(),
            Modality::Skeleton17
        )
        .is_err());
    // Padded input must have max_joints joints.
    assert!(enc
        .forward_padded(
            &randn(&[2, 4, 1, 15, 3], 1, DType::F32),
            Modality::Skeleton15
        )
        .is_err());
    assert!(enc.forward_padded(&x17, Modality::Skeleton15).is_ok());
    // Wrong dtype is an error, not a panic.
    assert!(enc
        .forward(
            &randn(&[2, 4, 1, 17, 3], 1, DType::F64),
            Modality::Skeleton17
        )
        .is_err());

    let bad = |f: &dyn Fn(&mut SkeletonEncoderConfig)| {
        let mut c = SkeletonEncoderConfig::preset("tiny").unwrap();
        f(&mut c);
        assert!(c.validate().is_err(), "{c:?}");
        assert!(SkeletonEncoder::new(&ParamStore::new().root(), &c).is_err());
    };
    bad(&|c| c.formats.clear());
    bad(&|c| c.formats = vec![Modality::JointState]);
    bad(&|c| c.formats = vec![Modality::Rgb]);
    bad(&|c| c.formats = vec![Modality::Skeleton, Modality::Skeleton]);
    bad(&|c| c.blocks.clear());
    bad(&|c| c.blocks[1] = (0, 1));
    bad(&|c| c.blocks[1] = (8, 0));
    bad(&|c| c.temporal_kernel = 8);
    bad(&|c| c.dropout = 1.0);
    bad(&|c| c.out_dim = 0);
    bad(&|c| c.in_channels = 0);
}

// ----- speed -----------------------------------------------------------------------------------

/// Forward + backward of `tiny` on the size of a `tiny`-dataset batch (8 samples, T = 8,
/// 1 body, 25 joints). Printed for the record: the fastest of 40 steps, the least disturbed by
/// other work on the machine (one core: `RAYON_NUM_THREADS=1 cargo test --release -p models
/// --test skeleton -- --nocapture tiny_forward_backward_time`); asserted only loosely.
#[test]
fn tiny_forward_backward_time() {
    let store = ParamStore::with_seed(5);
    let enc = SkeletonEncoder::new(
        &store.root(),
        &SkeletonEncoderConfig::preset("tiny").unwrap(),
    )
    .unwrap();
    let x = randn(&[8, 8, 1, 25, 3], 6, DType::F32);
    let step = || {
        store.zero_grad();
        let out = enc.forward(&x, Modality::Skeleton).unwrap();
        out.pooled
            .square()
            .unwrap()
            .mean_all()
            .unwrap()
            .backward()
            .unwrap();
    };
    for _ in 0..3 {
        step();
    }
    let reps = 40;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = Instant::now();
        step();
        best = best.min(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "tiny forward+backward on (8, 8, 1, 25, 3) f32: {best:.2} ms (fastest of {reps} steps)"
    );
    assert!(best < 1000.0, "{best} ms");
}
