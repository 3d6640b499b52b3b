//! Adaptive Modality Gating (paper 000, Eq. 4 and 5) and average fusion: a hand-computed
//! 3-modality example, agreement with a plain composite of engine ops, f64 gradient checks
//! w.r.t. features and gate parameters (with and without presence masks, per sample and per
//! time step), absent modalities, all-absent errors, shared vs per-modality parameters.

use engine::gradcheck::{assert_gradients, assert_parameter_gradients, GradCheck};
use engine::nn::ParamStore;
use engine::{CpuStorage, DType, Device, Result, Storage, Tensor};
use models::gate::{average_fusion, Amg, AmgConfig};

fn store64(seed: u64) -> ParamStore {
    ParamStore::with_seed(seed).with_dtype(DType::F64)
}

fn rand64(dims: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(dims.to_vec(), -2.0, 2.0, seed, DType::F64, Device::Cpu).unwrap()
}

fn t64(v: &[f64], dims: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims.to_vec(), Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

fn set_values(t: &Tensor, v: &[f64]) {
    match &mut *t.storage_mut() {
        Storage::Cpu(CpuStorage::F64(x)) => x.copy_from_slice(v),
        _ => panic!("f64 CPU parameters expected"),
    }
}

fn cfg(dim: usize, shared: bool) -> AmgConfig {
    AmgConfig {
        dim,
        modalities: 3,
        shared,
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn hand_computed_three_modality_example() {
    let store = store64(1);
    let amg = Amg::new(&store.sub("gate"), &cfg(2, false)).unwrap();
    let l3 = 3f64.ln();
    // W_G^M, b_G^M chosen so sample 0's gates are 1/2, 3/4, 1/4.
    let params = [([1.0, -1.0], 0.0), ([0.5, 1.0], l3), ([2.0, 0.0], -l3)];
    for (m, (w, b)) in params.iter().enumerate() {
        set_values(&store.get(&format!("gate.m{m}.weight")).unwrap(), w);
        set_values(&store.get(&format!("gate.m{m}.bias")).unwrap(), &[*b]);
    }
    let z = [
        [[2.0, 2.0], [1.0, -2.0]],
        [[2.0, -1.0], [-2.0, 0.5]],
        [[0.0, 3.0], [-0.5, 4.0]],
    ];
    let zt: Vec<Tensor> = z
        .iter()
        .map(|m| t64(&[m[0][0], m[0][1], m[1][0], m[1][1]], &[2, 2]))
        .collect();
    let feats = [Some(&zt[0]), Some(&zt[1]), Some(&zt[2])];
    let out = amg.fuse(&feats, &[]).unwrap();
    // Sample 0: logits 0, ln 3, -ln 3 -> gates 0.5, 0.75, 0.25 (sum 1.5):
    // (0.5 [2, 2] + 0.75 [2, -1] + 0.25 [0, 3]) / 1.5 = [2.5, 1] / 1.5.
    // Sample 1: logits 3, ln 3 - 0.5, -1 - ln 3.
    let g1 = [sigmoid(3.0), sigmoid(l3 - 0.5), sigmoid(-1.0 - l3)];
    let s1: f64 = g1.iter().sum();
    let fused1: Vec<f64> = (0..2)
        .map(|c| (0..3).map(|m| g1[m] * z[m][1][c]).sum::<f64>() / s1)
        .collect();
    assert_close(
        &values(&out.fused),
        &[5.0 / 3.0, 2.0 / 3.0, fused1[0], fused1[1]],
        1e-14,
    );
    let gates: Vec<Vec<f64>> = out
        .gates
        .iter()
        .map(|g| values(g.as_ref().unwrap()))
        .collect();
    assert_eq!(out.gates[0].as_ref().unwrap().dims(), &[2, 1]);
    assert_close(&gates[0], &[0.5, g1[0]], 1e-14);
    assert_close(&gates[1], &[0.75, g1[1]], 1e-14);
    assert_close(&gates[2], &[0.25, g1[2]], 1e-14);
    // Sample 1 loses the skeleton (modality 1): its weight goes to 0, sample 0 is unchanged.
    let p1 = t64(&[1.0, 0.0], &[2]);
    let out = amg.fuse(&feats, &[None, Some(&p1), None]).unwrap();
    let fused1: Vec<f64> = (0..2)
        .map(|c| (g1[0] * z[0][1][c] + g1[2] * z[2][1][c]) / (g1[0] + g1[2]))
        .collect();
    assert_close(
        &values(&out.fused),
        &[5.0 / 3.0, 2.0 / 3.0, fused1[0], fused1[1]],
        1e-14,
    );
    assert_close(&values(out.gates[1].as_ref().unwrap()), &[0.75, 0.0], 1e-14);
    // Average fusion of the same features: the plain mean.
    let avg = average_fusion(&feats, &[]).unwrap();
    assert_close(
        &values(&avg),
        &[4.0 / 3.0, 4.0 / 3.0, -1.5 / 3.0, 2.5 / 3.0],
        1e-14,
    );
}

/// Eq. 4 and 5 written with engine ops, for the comparison.
fn composite(
    store: &ParamStore,
    names: [&str; 3],
    feats: &[Option<&Tensor>],
    presence: &[Option<&Tensor>],
) -> Tensor {
    let mut num: Option<Tensor> = None;
    let mut den: Option<Tensor> = None;
    for m in 0..3 {
        let Some(z) = feats[m] else { continue };
        let w = store.get(&format!("gate.{}.weight", names[m])).unwrap();
        let b = store.get(&format!("gate.{}.bias", names[m])).unwrap();
        let mut g = Tensor::linear(z, &w, Some(&b)).unwrap().sigmoid().unwrap();
        if let Some(p) = presence.get(m).copied().flatten() {
            g = g.mul(&p.unsqueeze(-1).unwrap()).unwrap();
        }
        let t = z.mul(&g).unwrap();
        num = Some(num.map_or(t.clone(), |n| n.add(&t).unwrap()));
        den = Some(den.map_or(g.clone(), |d| d.add(&g).unwrap()));
    }
    num.unwrap().div(&den.unwrap()).unwrap()
}

#[test]
fn fuse_matches_a_composite_of_engine_ops() {
    for shared in [false, true] {
        let store = store64(2);
        let amg = Amg::new(&store.sub("gate"), &cfg(4, shared)).unwrap();
        let names = if shared {
            ["shared"; 3]
        } else {
            ["m0", "m1", "m2"]
        };
        for dims in [vec![3, 4], vec![2, 3, 4]] {
            let z: Vec<Tensor> = (0..3).map(|m| rand64(&dims, 10 + m)).collect();
            let feats = [Some(&z[0]), Some(&z[1]), Some(&z[2])];
            let got = amg.fuse(&feats, &[]).unwrap().fused;
            assert_eq!(got.dims(), &dims[..]);
            let want = composite(&store, names, &feats, &[]);
            assert_close(&values(&got), &values(&want), 1e-13);
            // With masks (per position) and one absent modality.
            let lead = &dims[..dims.len() - 1];
            let n: usize = lead.iter().product();
            let p0 = t64(&(0..n).map(|i| (i % 2) as f64).collect::<Vec<_>>(), lead);
            let feats = [Some(&z[0]), None, Some(&z[2])];
            let presence = [Some(&p0), None, None];
            let got = amg.fuse(&feats, &presence).unwrap().fused;
            let want = composite(&store, names, &feats, &presence);
            assert_close(&values(&got), &values(&want), 1e-13);
        }
    }
}

#[test]
fn gates_over_time_have_shape_b_t_1() {
    let store = store64(3);
    let amg = Amg::new(&store.root(), &cfg(4, false)).unwrap();
    let z = rand64(&[2, 5, 4], 4);
    let g = amg.gates(&[None, Some(&z), None]).unwrap();
    assert!(g[0].is_none() && g[2].is_none());
    let g1 = g[1].as_ref().unwrap();
    assert_eq!(g1.dims(), &[2, 5, 1]);
    assert!(values(g1).iter().all(|&v| v > 0.0 && v < 1.0));
}

#[test]
fn fuse_gradients_wrt_features() {
    let store = store64(4);
    let amg = Amg::new(&store.sub("gate"), &cfg(3, false)).unwrap();
    for dims in [vec![4, 3], vec![2, 3, 3]] {
        let lead = dims[..dims.len() - 1].to_vec();
        let n: usize = lead.iter().product();
        let z: Vec<Tensor> = (0..3).map(|m| rand64(&dims, 20 + m)).collect();
        // Modality 0 dropped at every third position, modality 2 at every other.
        let p0 = t64(
            &(0..n)
                .map(|i| (i % 3 != 0) as u8 as f64)
                .collect::<Vec<_>>(),
            &lead,
        );
        let p2 = t64(&(0..n).map(|i| (i % 2) as f64).collect::<Vec<_>>(), &lead);
        for presence in [vec![], vec![Some(&p0), None, Some(&p2)]] {
            let f = |t: &[Tensor]| -> Result<Tensor> {
                let out = amg.fuse(&[Some(&t[0]), Some(&t[1]), Some(&t[2])], &presence)?;
                let g: Vec<&Tensor> = out.gates.iter().map(|g| g.as_ref().unwrap()).collect();
                Tensor::concat(&[&out.fused, g[0], g[1], g[2]], -1)
            };
            assert_gradients(
                &format!("fuse w.r.t. features {dims:?}, {} masks", presence.len()),
                f,
                &z,
                GradCheck::default(),
            );
        }
        // One modality absent from the batch.
        let f = |t: &[Tensor]| -> Result<Tensor> {
            Ok(amg
                .fuse(&[Some(&t[0]), None, Some(&t[1])], &[Some(&p0), None, None])?
                .fused)
        };
        assert_gradients(
            "fuse w.r.t. features, modality 1 absent",
            f,
            &[z[0].clone(), z[2].clone()],
            GradCheck::default(),
        );
    }
}

#[test]
fn fuse_gradients_wrt_gate_parameters() {
    for shared in [false, true] {
        let store = store64(5);
        let amg = Amg::new(&store.sub("gate"), &cfg(3, shared)).unwrap();
        for dims in [vec![4, 3], vec![2, 3, 3]] {
            let lead = dims[..dims.len() - 1].to_vec();
            let n: usize = lead.iter().product();
            let z: Vec<Tensor> = (0..3).map(|m| rand64(&dims, 30 + m)).collect();
            let p1 = t64(&(0..n).map(|i| (i % 2) as f64).collect::<Vec<_>>(), &lead);
            for presence in [vec![], vec![None, Some(&p1), None]] {
                // Default tolerances; the weight on the output seeded 11.
                assert_parameter_gradients(
                    &format!("fuse w.r.t. gate parameters (shared {shared}, {dims:?})"),
                    &store.params(),
                    || {
                        amg.fuse(&[Some(&z[0]), Some(&z[1]), Some(&z[2])], &presence)
                            .map(|o| o.fused)
                    },
                    GradCheck {
                        seed: 11,
                        ..GradCheck::default()
                    },
                );
            }
        }
    }
}

#[test]
fn an_absent_modality_contributes_nothing() {
    let store = store64(6);
    let amg = Amg::new(&store.root(), &cfg(3, false)).unwrap();
    for dims in [vec![4, 3], vec![2, 3, 3]] {
        let lead = dims[..dims.len() - 1].to_vec();
        let (a, c) = (rand64(&dims, 40), rand64(&dims, 41));
        // Finite garbage in the dropped modality's place.
        let garbage = Tensor::rand_uniform(dims.clone(), -1e3, 1e3, 42, DType::F64, Device::Cpu)
            .unwrap()
            .with_requires_grad()
            .unwrap();
        let zeros = Tensor::zeros(lead.clone(), DType::F64, Device::Cpu).unwrap();
        let absent = amg.fuse(&[Some(&a), None, Some(&c)], &[]).unwrap();
        let masked = amg
            .fuse(
                &[Some(&a), Some(&garbage), Some(&c)],
                &[None, Some(&zeros), None],
            )
            .unwrap();
        assert_close(&values(&masked.fused), &values(&absent.fused), 1e-14);
        assert!(absent.gates[1].is_none());
        assert!(values(masked.gates[1].as_ref().unwrap())
            .iter()
            .all(|&g| g == 0.0));
        masked.fused.sum_all().unwrap().backward().unwrap();
        let g = values(&garbage.grad().unwrap());
        assert!(
            g.iter().all(|&v| v == 0.0),
            "the dropped features got a gradient"
        );
        // The same for average fusion.
        let avg_absent = average_fusion(&[Some(&a), None, Some(&c)], &[]).unwrap();
        let avg_masked = average_fusion(
            &[Some(&a), Some(&garbage), Some(&c)],
            &[None, Some(&zeros), None],
        )
        .unwrap();
        let mean: Vec<f64> = values(&a)
            .iter()
            .zip(values(&c))
            .map(|(x, y)| (x + y) / 2.0)
            .collect();
        assert_close(&values(&avg_absent), &mean, 1e-14);
        assert_close(&values(&avg_masked), &mean, 1e-14);
    }
}

#[test]
fn presence_per_sample_broadcasts_over_time() {
    let store = store64(7);
    let amg = Amg::new(&store.root(), &cfg(3, false)).unwrap();
    let z: Vec<Tensor> = (0..3).map(|m| rand64(&[2, 4, 3], 50 + m)).collect();
    let feats = [Some(&z[0]), Some(&z[1]), Some(&z[2])];
    let per_sample = t64(&[0.0, 1.0], &[2]);
    let per_time = t64(&[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], &[2, 4]);
    let a = amg.fuse(&feats, &[Some(&per_sample), None, None]).unwrap();
    let b = amg.fuse(&feats, &[Some(&per_time), None, None]).unwrap();
    assert_close(&values(&a.fused), &values(&b.fused), 1e-14);
    assert_eq!(a.gates[0].as_ref().unwrap().dims(), &[2, 4, 1]);
    let avg_a = average_fusion(&feats, &[Some(&per_sample), None, None]).unwrap();
    let avg_b = average_fusion(&feats, &[Some(&per_time), None, None]).unwrap();
    assert_close(&values(&avg_a), &values(&avg_b), 1e-14);
}

#[test]
fn all_absent_is_an_error_naming_the_sample() {
    let store = store64(8);
    let amg = Amg::new(&store.root(), &cfg(3, false)).unwrap();
    let err = amg.fuse(&[None, None, None], &[]).unwrap_err().to_string();
    assert!(err.contains("absent"), "{err}");
    assert!(average_fusion(&[None, None, None], &[]).is_err());
    assert!(average_fusion(&[], &[]).is_err());
    // Sample 2 has every present modality dropped.
    let (a, c) = (rand64(&[3, 3], 60), rand64(&[3, 3], 61));
    let pa = t64(&[1.0, 0.0, 0.0], &[3]);
    let pc = t64(&[0.0, 1.0, 0.0], &[3]);
    let feats = [Some(&a), None, Some(&c)];
    let presence = [Some(&pa), None, Some(&pc)];
    let err = amg.fuse(&feats, &presence).unwrap_err().to_string();
    assert!(err.contains("sample 2"), "{err}");
    let err = average_fusion(&feats, &presence).unwrap_err().to_string();
    assert!(err.contains("sample 2"), "{err}");
    // The absent modality's mask is ignored, so it cannot rescue sample 2.
    let ones = t64(&[1.0, 1.0, 1.0], &[3]);
    assert!(amg
        .fuse(&feats, &[Some(&pa), Some(&ones), Some(&pc)])
        .is_err());
    // Per time step: sample 1, time step 2.
    let (a, c) = (rand64(&[2, 3, 3], 62), rand64(&[2, 3, 3], 63));
    let pa = t64(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], &[2, 3]);
    let pc = t64(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[2, 3]);
    let err = amg
        .fuse(&[Some(&a), None, Some(&c)], &[Some(&pa), None, Some(&pc)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample 1, time step 2"), "{err}");
}

#[test]
fn shared_and_per_modality_parameters() {
    let d = 5;
    let store = store64(9);
    Amg::new(&store.sub("gate"), &cfg(d, false)).unwrap();
    assert_eq!(store.num_params(), 3 * (d + 1));
    let names: Vec<String> = store.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "gate.m0.weight",
            "gate.m0.bias",
            "gate.m1.weight",
            "gate.m1.bias",
            "gate.m2.weight",
            "gate.m2.bias"
        ]
    );
    let store = store64(9);
    let amg = Amg::new(&store.sub("gate"), &cfg(d, true)).unwrap();
    assert_eq!(store.num_params(), d + 1);
    let names: Vec<String> = store.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["gate.shared.weight", "gate.shared.bias"]);
    // Shared: the same features give the same gate in every slot.
    let z = rand64(&[2, d], 70);
    let g = amg.gates(&[Some(&z), Some(&z), Some(&z)]).unwrap();
    let g: Vec<Vec<f64>> = g.iter().map(|g| values(g.as_ref().unwrap())).collect();
    assert_eq!(g[0], g[1]);
    assert_eq!(g[0], g[2]);
    for name in AmgConfig::PRESETS {
        assert_eq!(AmgConfig::preset(name).unwrap().modalities, 3);
    }
    let err = AmgConfig::preset("nope").unwrap_err().to_string();
    assert!(err.contains("tiny"), "{err}");
}

#[test]
fn bad_shapes_are_errors() {
    let store = store64(10);
    let amg = Amg::new(&store.root(), &cfg(3, false)).unwrap();
    let a = rand64(&[2, 3], 80);
    let b = rand64(&[3, 3], 81);
    let wrong_d = rand64(&[2, 4], 82);
    let vector = rand64(&[3], 83);
    // Wrong number of modalities.
    assert!(amg.fuse(&[Some(&a), Some(&a)], &[]).is_err());
    assert!(amg.gates(&[Some(&a)]).is_err());
    // Mismatched feature shapes, wrong feature size, no batch dimension.
    assert!(amg.fuse(&[Some(&a), Some(&b), None], &[]).is_err());
    assert!(amg.fuse(&[Some(&wrong_d), None, None], &[]).is_err());
    assert!(amg.gates(&[Some(&vector), None, None]).is_err());
    assert!(average_fusion(&[Some(&a), Some(&b)], &[]).is_err());
    assert!(average_fusion(&[Some(&vector)], &[]).is_err());
    // Presence: wrong count, wrong shape, values outside [0, 1], wrong dtype.
    let p = t64(&[1.0, 1.0], &[2]);
    assert!(amg.fuse(&[Some(&a), None, None], &[Some(&p)]).is_err());
    let p3 = t64(&[1.0, 1.0, 1.0], &[3]);
    assert!(amg
        .fuse(&[Some(&a), None, None], &[Some(&p3), None, None])
        .is_err());
    let p2x1 = t64(&[1.0, 1.0], &[2, 1]);
    assert!(amg
        .fuse(&[Some(&a), None, None], &[Some(&p2x1), None, None])
        .is_err());
    let p_bad = t64(&[1.0, 2.0], &[2]);
    assert!(amg
        .fuse(&[Some(&a), None, None], &[Some(&p_bad), None, None])
        .is_err());
    let p_f32 = Tensor::from_vec(vec![1f32, 1.0], vec![2], Device::Cpu).unwrap();
    assert!(amg
        .fuse(&[Some(&a), None, None], &[Some(&p_f32), None, None])
        .is_err());
    assert!(Amg::new(&store.sub("bad"), &cfg(0, false)).is_err());
}
