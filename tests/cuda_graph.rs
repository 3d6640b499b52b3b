//! Graph aggregation on CUDA against the CPU: forward, input gradient and adjacency gradient at
//! odd sizes (V = 1, 25, 33, 64 covering both kernel widths; K = 1, 3; C, T, N odd; row counts
//! that do not fill a block; several partial blocks of the adjacency gradient), with and without
//! a joint mask, f32 and f64, garbage (NaN) in padded joints, and run-to-run determinism.
//! Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::{DType, Device, Tensor};

/// A 0/1 mask with every third joint (from 1) padded; all real when `v < 2`.
fn mask(v: usize) -> Tensor {
    let m: Vec<f32> = (0..v)
        .map(|j| if v >= 2 && j % 3 == 1 { 0.0 } else { 1.0 })
        .collect();
    Tensor::from_vec(m, vec![v], Device::Cpu).unwrap()
}

/// (N, K, C, T, V)
fn shapes() -> Vec<(usize, usize, usize, usize, usize)> {
    let mut s = Vec::new();
    for v in [1, 25, 33, 64] {
        for (n, k, c, t) in [(1, 1, 1, 1), (3, 3, 5, 7), (1, 3, 1, 7), (3, 1, 5, 1)] {
            s.push((n, k, c, t, v));
        }
    }
    // Rows per sample not a multiple of the 128-row block; several adjacency partials
    // (N*C*T = 8844 and 13134 rows); the ST-GCN layer shape at a small batch.
    s.extend([
        (4, 3, 33, 67, 25),
        (2, 2, 33, 199, 33),
        (3, 3, 7, 11, 64),
        (2, 3, 64, 50, 25),
    ]);
    s
}

#[test]
fn graph_aggregate_agrees_with_the_cpu() {
    on_each_gpu("graph_aggregate_agrees_with_the_cpu", |device| {
        for (i, &(n, k, c, t, v)) in shapes().iter().enumerate() {
            let x = randn(&[n, k * c, t, v], 10 + i as u64);
            let a = rand_in(&[k, v, v], -0.5, 0.5, 20 + i as u64);
            check_agrees(
                &format!("graph_aggregate {:?}", (n, k, c, t, v)),
                device,
                &[x.clone(), a.clone()],
                |t| t[0].graph_aggregate(&t[1], None),
            );
            check_agrees(
                &format!("graph_aggregate masked {:?}", (n, k, c, t, v)),
                device,
                &[x, a, mask(v)],
                |t| t[0].graph_aggregate(&t[1], Some(&t[2])),
            );
        }
    });
}

#[test]
fn graph_aggregate_agrees_in_f64() {
    on_each_gpu("graph_aggregate_agrees_in_f64", |device| {
        for (i, &(n, k, c, t, v)) in [(3, 3, 5, 7, 25), (2, 2, 3, 5, 64), (1, 1, 1, 1, 1)]
            .iter()
            .enumerate()
        {
            let f64_of = |t: Tensor| t.to_dtype(DType::F64).unwrap();
            let x = f64_of(randn(&[n, k * c, t, v], 40 + i as u64));
            let a = f64_of(randn(&[k, v, v], 50 + i as u64));
            let m = f64_of(mask(v));
            let run = |dev: Device| {
                let x = x.to_device(dev).unwrap().with_requires_grad().unwrap();
                let a = a.to_device(dev).unwrap().with_requires_grad().unwrap();
                let m = m.to_device(dev).unwrap();
                let y = x.graph_aggregate(&a, Some(&m)).unwrap();
                let g = Tensor::rand_normal(y.dims(), 0.0, 1.0, 7, DType::F64, Device::Cpu)
                    .unwrap()
                    .to_device(dev)
                    .unwrap();
                y.backward_with(&g).unwrap();
                [
                    y.to_f64_vec().unwrap(),
                    x.grad().unwrap().to_f64_vec().unwrap(),
                    a.grad().unwrap().to_f64_vec().unwrap(),
                ]
            };
            let (want, got) = (run(Device::Cpu), run(device));
            for (what, (w, g)) in ["y", "dx", "da"].iter().zip(want.iter().zip(&got)) {
                for (j, (p, q)) in w.iter().zip(g).enumerate() {
                    assert!(
                        (p - q).abs() <= 1e-12 * (1.0 + p.abs()),
                        "{what}[{j}]: cpu {p} gpu {q}"
                    );
                }
            }
        }
    });
}

#[test]
fn padded_joints_stay_exactly_zero_on_the_device() {
    on_each_gpu("padded_joints_stay_exactly_zero_on_the_device", |device| {
        for (n, k, c, t, v) in [(3, 3, 5, 7, 25), (2, 2, 3, 5, 64)] {
            let m = mask(v);
            let on: Vec<bool> = m.to_f64_vec().unwrap().iter().map(|&e| e != 0.0).collect();
            // NaN in x at padded joints and in the adjacency's padded rows and columns.
            let mut xv = randn(&[n, k * c, t, v], 1).to_vec::<f32>().unwrap();
            for (i, e) in xv.iter_mut().enumerate() {
                if !on[i % v] {
                    *e = f32::NAN;
                }
            }
            let mut av = randn(&[k, v, v], 2).to_vec::<f32>().unwrap();
            for (i, e) in av.iter_mut().enumerate() {
                if !on[i % v] || !on[(i / v) % v] {
                    *e = f32::NAN;
                }
            }
            let x = Tensor::from_vec(xv, vec![n, k * c, t, v], Device::Cpu).unwrap();
            let a = Tensor::from_vec(av, vec![k, v, v], Device::Cpu).unwrap();
            // The CPU gives finite values everywhere, so the device must too.
            let y = check_agrees(
                "graph_aggregate padded",
                device,
                &[x.clone(), a.clone(), m.clone()],
                |t| t[0].graph_aggregate(&t[1], Some(&t[2])),
            );
            for (i, e) in y.to_f64_vec().unwrap().iter().enumerate() {
                if !on[i % v] {
                    assert_eq!(e.to_bits(), 0u64, "y[{i}]");
                }
            }
            let xd = x.to_device(device).unwrap().with_requires_grad().unwrap();
            let ad = a.to_device(device).unwrap().with_requires_grad().unwrap();
            let y = xd
                .graph_aggregate(&ad, Some(&m.to_device(device).unwrap()))
                .unwrap();
            y.sum_all().unwrap().backward().unwrap();
            for (i, e) in xd.grad().unwrap().to_f64_vec().unwrap().iter().enumerate() {
                assert!(
                    if on[i % v] {
                        e.is_finite()
                    } else {
                        e.to_bits() == 0
                    },
                    "dx[{i}] = {e}"
                );
            }
            for (i, e) in ad.grad().unwrap().to_f64_vec().unwrap().iter().enumerate() {
                let real = on[i % v] && on[(i / v) % v];
                assert!(
                    if real {
                        e.is_finite()
                    } else {
                        e.to_bits() == 0
                    },
                    "da[{i}] = {e}"
                );
            }
        }
    });
}

#[test]
fn adjacency_gradient_is_deterministic() {
    on_each_gpu("adjacency_gradient_is_deterministic", |device| {
        let (n, k, c, t, v) = (8, 3, 64, 50, 25);
        let x = randn(&[n, k * c, t, v], 3).to_device(device).unwrap();
        let g = randn(&[n, c, t, v], 4).to_device(device).unwrap();
        let a = randn(&[k, v, v], 5).to_device(device).unwrap();
        let da = || {
            let a = a.detach().with_requires_grad().unwrap();
            x.graph_aggregate(&a, None)
                .unwrap()
                .backward_with(&g)
                .unwrap();
            a.grad().unwrap().to_vec::<f32>().unwrap()
        };
        let first = da();
        for _ in 0..3 {
            assert!(
                first
                    .iter()
                    .zip(da())
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "two runs differ"
            );
        }
    });
}
