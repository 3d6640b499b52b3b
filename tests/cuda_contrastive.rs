//! The fused InfoNCE (every variant) and Barlow Twins on CUDA against the CPU: loss and input
//! gradients at odd sizes (row-per-block and column-tile kernels with partial tiles, grid-stride
//! rows beyond 1024 blocks), f32 and f64, and run-to-run determinism. Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::ops::contrastive::{InfoNce, BARLOW_LAMBDA};
use rcmcl::engine::{DType, Device, Result, Tensor};

const TAU: f64 = 0.1;

/// Rows scaled to unit length, as a projection head's embeddings are.
fn unit(t: &Tensor) -> Result<Tensor> {
    let norm = t.square()?.sum(&[1], true)?.sqrt()?;
    t.div(&norm)
}

fn variant<'a>(name: &str, q: Option<&'a Tensor>) -> InfoNce<'a> {
    match name {
        "uniform" => InfoNce::Uniform,
        "hard" => InfoNce::Hard {
            beta: 1.0,
            tau_plus: 0.1,
        },
        "debiased" => InfoNce::Hard {
            beta: 0.0,
            tau_plus: 0.1,
        },
        "soft" => InfoNce::Soft(q.expect("soft targets")),
        _ => unreachable!(),
    }
}

#[test]
fn infonce_every_variant_on_embeddings() {
    on_each_gpu("infonce_every_variant_on_embeddings", |device| {
        for (k, &(n, d)) in [(1, 5), (3, 5), (33, 31), (65, 130), (1023, 64), (1031, 33)]
            .iter()
            .enumerate()
        {
            let a = randn(&[n, d], 10 + k as u64);
            let b = randn(&[n, d], 20 + k as u64);
            let scores = randn(&[n, n], 30 + k as u64);
            for name in ["uniform", "hard", "debiased", "soft"] {
                if n < 2 && (name == "hard" || name == "debiased") {
                    continue;
                }
                check_agrees(
                    &format!("infonce {name} N={n} D={d}"),
                    device,
                    &[a.clone(), b.clone(), scores.clone()],
                    |t| {
                        let q = t[2].softmax(1)?;
                        let loss = variant(name, Some(&q));
                        Tensor::infonce(&unit(&t[0])?, &unit(&t[1])?, TAU, loss)
                    },
                );
            }
        }
    });
}

#[test]
fn infonce_on_raw_logits() {
    on_each_gpu("infonce_on_raw_logits", |device| {
        // Large spreads: the online maximum keeps every exponential finite.
        for (k, &n) in [1usize, 2, 7, 33, 4097].iter().enumerate() {
            for spread in [1.0, 30.0] {
                let s = randn(&[n, n], 40 + k as u64);
                for name in ["uniform", "hard", "debiased"] {
                    if n < 2 && name != "uniform" {
                        continue;
                    }
                    check_agrees(
                        &format!("infonce_logits {name} N={n} spread {spread}"),
                        device,
                        std::slice::from_ref(&s),
                        |t| {
                            t[0].mul_scalar(spread)?
                                .infonce_logits(variant(name, None), TAU)
                        },
                    );
                }
            }
        }
    });
}

#[test]
fn infonce_queue_rectangular() {
    on_each_gpu("infonce_queue_rectangular", |device| {
        for (k, &(n, d, kq)) in [
            (1, 5, 7),
            (3, 5, 7),
            (33, 31, 7),
            (65, 130, 4097),
            (257, 128, 0),
        ]
        .iter()
        .enumerate()
        {
            let q = randn(&[n, d], 50 + k as u64);
            let key = randn(&[n, d], 60 + k as u64);
            let queue = randn(&[kq, d], 70 + k as u64);
            check_agrees(
                &format!("infonce_queue N={n} D={d} K={kq}"),
                device,
                &[q, key, queue],
                |t| Tensor::infonce_queue(&unit(&t[0])?, &unit(&t[1])?, &unit(&t[2])?, TAU),
            );
        }
    });
}

#[test]
fn barlow_twins_odd_sizes() {
    on_each_gpu("barlow_twins_odd_sizes", |device| {
        for (k, &(n, d)) in [(2, 1), (3, 5), (33, 31), (65, 130), (256, 1031), (31, 8)]
            .iter()
            .enumerate()
        {
            let z1 = randn(&[n, d], 80 + k as u64);
            let z2 = randn(&[n, d], 90 + k as u64);
            for lambda in [BARLOW_LAMBDA, 0.5] {
                check_agrees(
                    &format!("barlow N={n} D={d} lambda {lambda}"),
                    device,
                    &[z1.clone(), z2.clone()],
                    |t| {
                        // Means and scales away from 0 and 1 so the standardisation matters.
                        let a = t[0].mul_scalar(2.5)?.add_scalar(0.75)?;
                        Tensor::barlow_twins(&a, &t[1], lambda)
                    },
                );
            }
        }
    });
}

#[test]
fn f64_agrees() {
    on_each_gpu("f64_agrees", |device| {
        let a = randn(&[65, 31], 100).to_dtype(DType::F64).unwrap();
        let b = randn(&[65, 31], 101).to_dtype(DType::F64).unwrap();
        let run = |dev: Device, name: &str| -> (f64, Vec<f64>) {
            let x = a.to_device(dev).unwrap().with_requires_grad().unwrap();
            let y = b.to_device(dev).unwrap();
            let l = if name == "barlow" {
                Tensor::barlow_twins(&x, &y, BARLOW_LAMBDA).unwrap()
            } else {
                Tensor::infonce(
                    &unit(&x).unwrap(),
                    &unit(&y).unwrap(),
                    TAU,
                    variant(name, None),
                )
                .unwrap()
            };
            l.backward().unwrap();
            (l.item().unwrap(), x.grad().unwrap().to_f64_vec().unwrap())
        };
        for name in ["uniform", "hard", "barlow"] {
            let (lc, gc) = run(Device::Cpu, name);
            let (lg, gg) = run(device, name);
            assert!(
                (lc - lg).abs() < 1e-12 * (1.0 + lc.abs()),
                "{name}: {lc} vs {lg}"
            );
            let num: f64 = gc.iter().zip(&gg).map(|(p, q)| (p - q).powi(2)).sum();
            let den: f64 = gc.iter().map(|p| p * p).sum();
            assert!(num.sqrt() < 1e-10 * den.sqrt(), "{name}: gradients differ");
        }
    });
}

#[test]
fn deterministic_from_run_to_run() {
    on_each_gpu("deterministic_from_run_to_run", |device| {
        let a = randn(&[1031, 64], 110).to_device(device).unwrap();
        let b = randn(&[1031, 64], 111).to_device(device).unwrap();
        let run = |name: &str| -> (Vec<f32>, Vec<f32>) {
            let x = a.detach().with_requires_grad().unwrap();
            let l = if name == "barlow" {
                Tensor::barlow_twins(&x, &b, BARLOW_LAMBDA).unwrap()
            } else {
                Tensor::infonce(
                    &unit(&x).unwrap(),
                    &unit(&b).unwrap(),
                    TAU,
                    variant(name, None),
                )
                .unwrap()
            };
            l.backward().unwrap();
            (l.to_vec().unwrap(), x.grad().unwrap().to_vec().unwrap())
        };
        for name in ["uniform", "hard", "barlow"] {
            assert_eq!(run(name), run(name), "{name}: results differ between runs");
        }
    });
}
