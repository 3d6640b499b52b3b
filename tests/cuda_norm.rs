//! Batch and layer normalisation on CUDA against the CPU: forward and backward (input, weight and
//! bias gradients) in training and evaluation, the running statistics after each training step,
//! odd channel counts, spatial sizes and row lengths (warp-per-row and block-per-row layer norm,
//! one and several partial blocks per channel), f32 and f64, and run-to-run determinism.
//! Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::{DType, Device, Tensor};

const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// Per-channel weight (around 1) and bias for `c` channels.
fn affine(c: usize, seed: u64) -> (Tensor, Tensor) {
    (rand_in(&[c], 0.5, 1.5, seed), randn(&[c], seed + 1))
}

/// Running statistics: a mean and a positive variance.
fn running(c: usize, seed: u64) -> (Tensor, Tensor) {
    (randn(&[c], seed), rand_in(&[c], 0.5, 2.0, seed + 1))
}

/// (N, C, *) shapes: C in {1, 3, 33}, spatial sizes 1 (an (N, C) input), 31, 1023, 4097 and
/// several spatial dims; some with more than 8192 values per channel (several partial blocks).
fn batch_shapes() -> Vec<Vec<usize>> {
    let mut shapes = Vec::new();
    for c in [1, 3, 33] {
        shapes.push(vec![4, c, 31]);
        shapes.push(vec![2, c, 1023]);
        shapes.push(vec![5, c]);
    }
    shapes.extend([
        vec![1, 3, 4097],
        vec![3, 3, 4097],
        vec![2, 3, 7, 11, 3],
        vec![257, 33],
        vec![9, 1, 31, 33],
        vec![16, 3, 65536],
    ]);
    shapes
}

fn input(dims: &[usize], seed: u64) -> Tensor {
    // Mean away from zero and a non-unit scale, so the statistics matter.
    randn(dims, seed)
        .mul_scalar(2.5)
        .unwrap()
        .add_scalar(0.75)
        .unwrap()
}

#[test]
fn batch_norm_training_forward_and_backward() {
    on_each_gpu("batch_norm_training_forward_and_backward", |device| {
        for (k, dims) in batch_shapes().iter().enumerate() {
            let c = dims[1];
            let x = input(dims, 100 + k as u64);
            let (w, b) = affine(c, 200 + k as u64);
            check_agrees(
                &format!("batch_norm train affine {dims:?}"),
                device,
                &[x.clone(), w, b],
                |t| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, MOMENTUM, EPS),
            );
            check_agrees(
                &format!("batch_norm train plain {dims:?}"),
                device,
                std::slice::from_ref(&x),
                |t| t[0].batch_norm(None, None, None, None, true, MOMENTUM, EPS),
            );
            let (w, _) = affine(c, 300 + k as u64);
            check_agrees(
                &format!("batch_norm train weight only {dims:?}"),
                device,
                &[x, w],
                |t| t[0].batch_norm(None, None, Some(&t[1]), None, true, MOMENTUM, EPS),
            );
        }
    });
}

#[test]
fn batch_norm_eval_forward_and_backward() {
    on_each_gpu("batch_norm_eval_forward_and_backward", |device| {
        for (k, dims) in batch_shapes().iter().enumerate() {
            let c = dims[1];
            let x = input(dims, 400 + k as u64);
            let (w, b) = affine(c, 500 + k as u64);
            let (rm, rv) = running(c, 600 + k as u64);
            check_agrees(
                &format!("batch_norm eval affine {dims:?}"),
                device,
                &[x.clone(), w, b, rm.clone(), rv.clone()],
                |t| {
                    t[0].batch_norm(
                        Some(&t[3]),
                        Some(&t[4]),
                        Some(&t[1]),
                        Some(&t[2]),
                        false,
                        MOMENTUM,
                        EPS,
                    )
                },
            );
            check_agrees(
                &format!("batch_norm eval plain {dims:?}"),
                device,
                &[x, rm, rv],
                |t| t[0].batch_norm(Some(&t[1]), Some(&t[2]), None, None, false, MOMENTUM, EPS),
            );
        }
        // One image of one channel in evaluation (a single value per channel is fine there).
        let (rm, rv) = running(1, 7);
        check_agrees(
            "batch_norm eval [1, 1]",
            device,
            &[randn(&[1, 1], 8), rm, rv],
            |t| t[0].batch_norm(Some(&t[1]), Some(&t[2]), None, None, false, MOMENTUM, EPS),
        );
    });
}

/// Three training steps on each device from the same running statistics, then one in
/// evaluation: outputs and running statistics agree after every step.
#[test]
fn batch_norm_running_statistics_follow_the_cpu() {
    on_each_gpu("batch_norm_running_statistics_follow_the_cpu", |device| {
        for dtype in [DType::F32, DType::F64] {
            for dims in [
                vec![4, 3, 31],
                vec![2, 33, 1023],
                vec![7, 1],
                vec![3, 3, 4097],
            ] {
                let c = dims[1];
                let (rm, rv) = running(c, 9);
                let (rm, rv) = (rm.to_dtype(dtype).unwrap(), rv.to_dtype(dtype).unwrap());
                let (w, b) = affine(c, 10);
                let (w, b) = (w.to_dtype(dtype).unwrap(), b.to_dtype(dtype).unwrap());
                let on = |t: &Tensor| t.to_device(device).unwrap();
                let (grm, grv, gw, gb) = (on(&rm), on(&rv), on(&w), on(&b));
                for step in 0..4u64 {
                    let training = step < 3;
                    let x = input(&dims, 20 + step).to_dtype(dtype).unwrap();
                    let momentum = 0.1 + 0.2 * step as f64;
                    let want = x
                        .batch_norm(
                            Some(&rm),
                            Some(&rv),
                            Some(&w),
                            Some(&b),
                            training,
                            momentum,
                            EPS,
                        )
                        .unwrap();
                    let got = on(&x)
                        .batch_norm(
                            Some(&grm),
                            Some(&grv),
                            Some(&gw),
                            Some(&gb),
                            training,
                            momentum,
                            EPS,
                        )
                        .unwrap();
                    let what = format!("{dtype} {dims:?} step {step}");
                    assert_agree(&format!("batch_norm output {what}"), &want, &got);
                    assert_agree(&format!("running_mean {what}"), &rm, &grm);
                    assert_agree(&format!("running_var {what}"), &rv, &grv);
                    assert_eq!(grm.device(), device, "running_mean left the device");
                }
            }
        }
    });
}

#[test]
fn batch_norm_in_f64() {
    on_each_gpu("batch_norm_in_f64", |device| {
        for dims in [vec![4, 3, 31], vec![2, 33, 1023], vec![3, 1, 4097]] {
            let c = dims[1];
            let x = input(&dims, 30).to_dtype(DType::F64).unwrap();
            let (w, b) = affine(c, 31);
            let (w, b) = (
                w.to_dtype(DType::F64).unwrap(),
                b.to_dtype(DType::F64).unwrap(),
            );
            check_agrees(
                &format!("batch_norm f64 train {dims:?}"),
                device,
                &[x.clone(), w.clone(), b.clone()],
                |t| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, MOMENTUM, EPS),
            );
            let (rm, rv) = running(c, 32);
            let (rm, rv) = (
                rm.to_dtype(DType::F64).unwrap(),
                rv.to_dtype(DType::F64).unwrap(),
            );
            check_agrees(
                &format!("batch_norm f64 eval {dims:?}"),
                device,
                &[x, w, b, rm, rv],
                |t| {
                    t[0].batch_norm(
                        Some(&t[3]),
                        Some(&t[4]),
                        Some(&t[1]),
                        Some(&t[2]),
                        false,
                        MOMENTUM,
                        EPS,
                    )
                },
            );
        }
    });
}

/// (rows, row length) pairs: 4097 rows of lengths on both sides of a warp and of the
/// warp-per-row limit (1024), and long rows (a block per row).
fn layer_shapes() -> Vec<(usize, usize)> {
    let mut shapes: Vec<(usize, usize)> = [1, 31, 33, 1023, 1024, 1025]
        .iter()
        .map(|&d| (4097, d))
        .collect();
    shapes.extend([(1, 1), (3, 4097), (31, 4097), (5, 1), (7, 2049)]);
    shapes
}

#[test]
fn layer_norm_forward_and_backward() {
    on_each_gpu("layer_norm_forward_and_backward", |device| {
        for (k, &(rows, d)) in layer_shapes().iter().enumerate() {
            let seed = 700 + 10 * k as u64;
            let x = input(&[rows, d], seed);
            let w = rand_in(&[d], 0.5, 1.5, seed + 1);
            let b = randn(&[d], seed + 2);
            check_agrees(
                &format!("layer_norm affine [{rows}, {d}]"),
                device,
                &[x.clone(), w.clone(), b],
                |t| t[0].layer_norm(1, Some(&t[1]), Some(&t[2]), EPS),
            );
            check_agrees(
                &format!("layer_norm plain [{rows}, {d}]"),
                device,
                std::slice::from_ref(&x),
                |t| t[0].layer_norm(1, None, None, EPS),
            );
            check_agrees(
                &format!("layer_norm weight only [{rows}, {d}]"),
                device,
                &[x, w],
                |t| t[0].layer_norm(1, Some(&t[1]), None, EPS),
            );
        }
        // Over two trailing dims, with a leading batch of rows.
        let x = input(&[5, 3, 7, 33], 900);
        let w = rand_in(&[7, 33], 0.5, 1.5, 901);
        let b = randn(&[7, 33], 902);
        check_agrees(
            "layer_norm rank 2 of [5, 3, 7, 33]",
            device,
            &[x, w, b],
            |t| t[0].layer_norm(2, Some(&t[1]), Some(&t[2]), EPS),
        );
        // A bias alone, and a large eps.
        let x = input(&[33, 31], 903);
        let b = randn(&[31], 904);
        check_agrees("layer_norm bias only", device, &[x, b], |t| {
            t[0].layer_norm(1, None, Some(&t[1]), 0.5)
        });
    });
}

#[test]
fn layer_norm_in_f64() {
    on_each_gpu("layer_norm_in_f64", |device| {
        for (rows, d) in [(4097, 33), (31, 4097), (3, 1)] {
            let x = input(&[rows, d], 1000).to_dtype(DType::F64).unwrap();
            let w = rand_in(&[d], 0.5, 1.5, 1001).to_dtype(DType::F64).unwrap();
            let b = randn(&[d], 1002).to_dtype(DType::F64).unwrap();
            check_agrees(
                &format!("layer_norm f64 [{rows}, {d}]"),
                device,
                &[x, w, b],
                |t| t[0].layer_norm(1, Some(&t[1]), Some(&t[2]), EPS),
            );
        }
    });
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Runs `f` twice on the device from the same inputs and checks that the output and every input
/// gradient are identical bit for bit (no atomics, fixed reduction orders).
fn assert_deterministic(
    name: &str,
    device: Device,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> rcmcl::engine::Result<Tensor>,
) {
    let run = || {
        let leaves: Vec<Tensor> = inputs
            .iter()
            .map(|t| {
                t.to_device(device)
                    .unwrap()
                    .detach()
                    .with_requires_grad()
                    .unwrap()
            })
            .collect();
        let y = f(&leaves).unwrap();
        let g = Tensor::rand_normal(y.dims(), 0.0, 1.0, 5, y.dtype(), device).unwrap();
        y.backward_with(&g).unwrap();
        let mut all = vec![bits(&y)];
        all.extend(leaves.iter().map(|l| bits(&l.grad().unwrap())));
        all
    };
    assert!(run() == run(), "{name}: two runs differ");
}

#[test]
fn normalisation_is_deterministic() {
    on_each_gpu("normalisation_is_deterministic", |device| {
        let x = input(&[16, 3, 65536], 1100);
        let (w, b) = affine(3, 1101);
        assert_deterministic("batch_norm", device, &[x, w, b], |t| {
            t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, MOMENTUM, EPS)
        });
        let x = input(&[4097, 1025], 1102);
        let w = rand_in(&[1025], 0.5, 1.5, 1103);
        let b = randn(&[1025], 1104);
        assert_deterministic("layer_norm", device, &[x, w, b], |t| {
            t[0].layer_norm(1, Some(&t[1]), Some(&t[2]), EPS)
        });
    });
}

#[test]
fn normalisation_errors_on_the_device() {
    on_each_gpu("normalisation_errors_on_the_device", |device| {
        let x = input(&[4, 3, 5], 1200).to_device(device).unwrap();
        // A weight on the CPU with the input on the GPU.
        let w = rand_in(&[3], 0.5, 1.5, 1201);
        let err = x
            .batch_norm(None, None, Some(&w), None, true, MOMENTUM, EPS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_norm"), "{err}");
        // Training with one value per channel.
        let one = input(&[1, 3], 1202).to_device(device).unwrap();
        assert!(one
            .batch_norm(None, None, None, None, true, MOMENTUM, EPS)
            .is_err());
        // Evaluation without running statistics.
        assert!(x
            .batch_norm(None, None, None, None, false, MOMENTUM, EPS)
            .is_err());
        let err = x
            .layer_norm(1, Some(&rand_in(&[5], 0.5, 1.5, 1203)), None, EPS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer_norm"), "{err}");
        // Empty inputs give empty outputs.
        let e = Tensor::zeros([0, 7], DType::F32, device).unwrap();
        assert_eq!(e.layer_norm(1, None, None, EPS).unwrap().numel(), 0);
    });
}
