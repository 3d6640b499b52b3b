//! Batch and layer normalisation: statistics of the output, running-stat updates, evaluation
//! mode, gradients against finite differences and against a composite reference on large inputs.

mod common;
use common::*;
use rcmcl::engine::{DType, Result, Tensor};

/// Per-channel (mean, biased variance) of an (N, C, *) row-major tensor, computed naively.
fn channel_stats(x: &[f64], dims: &[usize]) -> Vec<(f64, f64)> {
    let (n, c) = (dims[0], dims[1]);
    let s: usize = dims[2..].iter().product();
    (0..c)
        .map(|ch| {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| x[(i * c + ch) * s..(i * c + ch + 1) * s].to_vec())
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            (mean, var)
        })
        .collect()
}

/// Batch norm (training statistics) from elementwise and reduction ops, for comparison.
fn composite_batch_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let axes: Vec<isize> = (0..x.rank() as isize).filter(|&a| a != 1).collect();
    let mut param_dims = vec![1; x.rank()];
    param_dims[1] = x.dims()[1];
    let mean = x.mean(&axes, true)?;
    let var = x.var(&axes, true, 0)?;
    x.sub(&mean)?
        .div(&var.add_scalar(eps)?.sqrt()?)?
        .mul(&w.reshape(param_dims.clone())?)?
        .add(&b.reshape(param_dims)?)
}

/// Layer norm over the last `k` dims from elementwise and reduction ops.
fn composite_layer_norm(x: &Tensor, k: usize, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let axes: Vec<isize> = (x.rank() - k..x.rank()).map(|a| a as isize).collect();
    let mean = x.mean(&axes, true)?;
    let var = x.var(&axes, true, 0)?;
    x.sub(&mean)?
        .div(&var.add_scalar(eps)?.sqrt()?)?
        .mul(w)?
        .add(b)
}

#[test]
fn batch_norm_output_has_zero_mean_unit_variance_per_channel() {
    for (i, dims) in [&[6, 3][..], &[4, 3, 5], &[2, 3, 4, 3], &[2, 2, 3, 2, 2]]
        .iter()
        .enumerate()
    {
        // Channel-dependent offsets and scales, so a mix-up of channels would show.
        let x = rand64(dims, i as u64)
            .mul_scalar(3.0)
            .unwrap()
            .add_scalar(1.5)
            .unwrap();
        let y = x
            .batch_norm(None, None, None, None, true, 0.1, 0.0)
            .unwrap();
        assert_eq!(y.dims(), *dims);
        for (mean, var) in channel_stats(&values(&y), dims) {
            assert!(mean.abs() < 1e-13, "{dims:?}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-12, "{dims:?}: var {var}");
        }
        // With weight and bias the channel has mean = bias and std = weight.
        let c = dims[1];
        let w = t64(&[2.0, 0.5, 3.0][..c], &[c]);
        let b = t64(&[-1.0, 4.0, 0.25][..c], &[c]);
        let y = x
            .batch_norm(None, None, Some(&w), Some(&b), true, 0.1, 0.0)
            .unwrap();
        for (ch, (mean, var)) in channel_stats(&values(&y), dims).into_iter().enumerate() {
            assert!((mean - values(&b)[ch]).abs() < 1e-12);
            assert!((var - values(&w)[ch].powi(2)).abs() < 1e-11);
        }
    }
}

#[test]
fn batch_norm_values_by_hand() {
    // One channel holding 1, 2, 3, 6 (N = 2, S = 2): mean 3, biased variance 3.5.
    let x = t64(&[1.0, 2.0, 3.0, 6.0], &[2, 1, 2]);
    let eps = 0.5;
    let y = x
        .batch_norm(None, None, None, None, true, 0.1, eps)
        .unwrap();
    let k = 1.0 / (3.5f64 + eps).sqrt();
    assert_close(&values(&y), &[-2.0 * k, -k, 0.0, 3.0 * k], 1e-15);
}

#[test]
fn running_stats_are_updated_after_one_step() {
    let dims = [4, 3, 5];
    let x = rand64(&dims, 3)
        .add(&t64(&[1.0, -2.0, 0.5], &[3, 1]))
        .unwrap();
    let rm = t64(&[0.5, -0.5, 1.0], &[3]);
    let rv = t64(&[1.0, 2.0, 0.5], &[3]);
    let (rm0, rv0) = (values(&rm), values(&rv));
    let momentum = 0.1;
    x.batch_norm(Some(&rm), Some(&rv), None, None, true, momentum, 1e-5)
        .unwrap();
    let count = 20.0;
    for (ch, (mean, var)) in channel_stats(&values(&x), &dims).into_iter().enumerate() {
        let unbiased = var * count / (count - 1.0);
        assert_close(
            &[values(&rm)[ch]],
            &[0.9 * rm0[ch] + momentum * mean],
            1e-14,
        );
        assert_close(
            &[values(&rv)[ch]],
            &[0.9 * rv0[ch] + momentum * unbiased],
            1e-14,
        );
    }
    // Evaluation leaves them alone.
    let (rm1, rv1) = (values(&rm), values(&rv));
    x.batch_norm(Some(&rm), Some(&rv), None, None, false, momentum, 1e-5)
        .unwrap();
    assert_eq!((values(&rm), values(&rv)), (rm1, rv1));
    // f32 running stats are updated in f32.
    let rm32 = Tensor::zeros([3], DType::F32, rcmcl::engine::Device::Cpu).unwrap();
    let rv32 = Tensor::ones([3], DType::F32, rcmcl::engine::Device::Cpu).unwrap();
    x.to_dtype(DType::F32)
        .unwrap()
        .batch_norm(Some(&rm32), Some(&rv32), None, None, true, 0.5, 1e-5)
        .unwrap();
    assert_eq!(rm32.dtype(), DType::F32);
    let stats = channel_stats(&values(&x), &dims);
    let want: Vec<f64> = stats.iter().map(|s| 0.5 * s.0).collect();
    assert_close(&values(&rm32), &want, 1e-6);
}

#[test]
fn eval_mode_uses_running_stats() {
    let x = rand64(&[3, 2, 4], 5);
    let rm = t64(&[0.3, -1.0], &[2]);
    let rv = t64(&[2.0, 0.25], &[2]);
    let w = t64(&[1.5, -0.5], &[2]);
    let b = t64(&[0.1, 0.2], &[2]);
    let eps = 1e-3;
    let y = x
        .batch_norm(Some(&rm), Some(&rv), Some(&w), Some(&b), false, 0.1, eps)
        .unwrap();
    let xv = values(&x);
    let want: Vec<f64> = (0..24)
        .map(|i| {
            let c = (i / 4) % 2;
            let (m, v) = (values(&rm)[c], values(&rv)[c]);
            (xv[i] - m) / (v + eps).sqrt() * values(&w)[c] + values(&b)[c]
        })
        .collect();
    assert_close(&values(&y), &want, 1e-14);
    let err = x
        .batch_norm(None, None, None, None, false, 0.1, eps)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_norm") && err.contains("running"),
        "{err}"
    );
}

#[test]
fn batch_norm_training_gradients() {
    for (i, dims) in [&[5, 3][..], &[3, 2, 4], &[2, 3, 2, 3]].iter().enumerate() {
        let c = dims[1];
        let x = rand64(dims, 70 + i as u64);
        let w = rand64_in(&[c], 0.5, 2.0, 80 + i as u64);
        let b = rand64(&[c], 90 + i as u64);
        gradcheck(
            "batch_norm",
            |t| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5),
            &[x.clone(), w.clone(), b.clone()],
        );
        gradcheck(
            "batch_norm_no_affine",
            |t| t[0].batch_norm(None, None, None, None, true, 0.1, 1e-5),
            std::slice::from_ref(&x),
        );
        // Fresh running stats each call: their in-place update must not disturb the gradient.
        gradcheck(
            "batch_norm_running_stats",
            |t| {
                let rm = Tensor::zeros([c], DType::F64, rcmcl::engine::Device::Cpu)?;
                let rv = Tensor::ones([c], DType::F64, rcmcl::engine::Device::Cpu)?;
                t[0].batch_norm(Some(&rm), Some(&rv), Some(&t[1]), None, true, 0.1, 1e-5)
            },
            &[x.clone(), w.clone()],
        );
    }
}

#[test]
fn batch_norm_eval_gradients() {
    let x = rand64(&[3, 2, 5], 1);
    let rm = t64(&[0.3, -1.0], &[2]);
    let rv = t64(&[2.0, 0.25], &[2]);
    gradcheck(
        "batch_norm_eval",
        |t| {
            t[0].batch_norm(
                Some(&rm),
                Some(&rv),
                Some(&t[1]),
                Some(&t[2]),
                false,
                0.1,
                1e-5,
            )
        },
        &[x, rand64(&[2], 2), rand64(&[2], 3)],
    );
}

#[test]
fn batch_norm_matches_composite_on_the_parallel_path() {
    // 64 x 8 x 128 = 65536 elements: the parallel kernels.
    let dims = [64, 8, 128];
    let x = rand64(&dims, 11).with_requires_grad().unwrap();
    let w = rand64(&[8], 12).with_requires_grad().unwrap();
    let b = rand64(&[8], 13).with_requires_grad().unwrap();
    let (xr, wr, br) = (
        x.detach().with_requires_grad().unwrap(),
        w.detach().with_requires_grad().unwrap(),
        b.detach().with_requires_grad().unwrap(),
    );
    let g = rand64(&dims, 14);
    let y = x
        .batch_norm(None, None, Some(&w), Some(&b), true, 0.1, 1e-5)
        .unwrap();
    let yr = composite_batch_norm(&xr, &wr, &br, 1e-5).unwrap();
    assert_close(&values(&y), &values(&yr), 1e-12);
    y.backward_with(&g).unwrap();
    yr.backward_with(&g).unwrap();
    assert_grads_match(&[(&x, &xr), (&w, &wr), (&b, &br)]);
}

#[test]
fn batch_norm_f32_matches_f64() {
    let x = rand64(&[4, 3, 6], 2);
    let w = rand64(&[3], 3);
    let b = rand64(&[3], 4);
    let f32_of = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let y = x
        .batch_norm(None, None, Some(&w), Some(&b), true, 0.1, 1e-5)
        .unwrap();
    let y32 = f32_of(&x)
        .batch_norm(
            None,
            None,
            Some(&f32_of(&w)),
            Some(&f32_of(&b)),
            true,
            0.1,
            1e-5,
        )
        .unwrap();
    assert_close(&values(&y32), &values(&y), 1e-5);
}

#[test]
fn batch_norm_errors() {
    let x = rand64(&[4, 3], 1);
    let c3 = rand64(&[3], 2);
    let err = x
        .batch_norm(None, None, Some(&rand64(&[4], 3)), None, true, 0.1, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_norm") && err.contains("weight"),
        "{err}"
    );
    assert!(rand64(&[4], 1)
        .batch_norm(None, None, None, None, true, 0.1, 1e-5)
        .is_err());
    // One value per channel has no batch variance.
    assert!(rand64(&[1, 3], 1)
        .batch_norm(None, None, None, None, true, 0.1, 1e-5)
        .is_err());
    assert!(x
        .batch_norm(Some(&c3), None, None, None, true, 0.1, 1e-5)
        .is_err());
    assert!(x
        .batch_norm(None, None, None, None, true, 1.5, 1e-5)
        .is_err());
    assert!(x
        .batch_norm(None, None, None, None, true, 0.1, -1.0)
        .is_err());
    let c3_32 = c3.to_dtype(DType::F32).unwrap();
    assert!(x
        .batch_norm(None, None, Some(&c3_32), None, true, 0.1, 1e-5)
        .is_err());
}

#[test]
fn layer_norm_values() {
    // Row 1, 2, 3, 4: mean 2.5, biased variance 1.25.
    let x = t64(&[1.0, 2.0, 3.0, 4.0, -2.0, 0.0, 0.0, 2.0], &[2, 4]);
    let eps = 0.25;
    let y = values(&x.layer_norm(1, None, None, eps).unwrap());
    let k = 1.0 / (1.25f64 + eps).sqrt();
    assert_close(&y[..4], &[-1.5 * k, -0.5 * k, 0.5 * k, 1.5 * k], 1e-15);
    let k2 = 1.0 / (2.0f64 + eps).sqrt();
    assert_close(&y[4..], &[-2.0 * k2, 0.0, 0.0, 2.0 * k2], 1e-15);
    // Weight and bias act per feature.
    let w = t64(&[1.0, 2.0, 3.0, 4.0], &[4]);
    let b = t64(&[0.5, 0.0, 0.0, -0.5], &[4]);
    let yw = values(&x.layer_norm(1, Some(&w), Some(&b), eps).unwrap());
    let want: Vec<f64> = (0..8)
        .map(|i| y[i] * values(&w)[i % 4] + values(&b)[i % 4])
        .collect();
    assert_close(&yw, &want, 1e-15);
}

#[test]
fn layer_norm_rows_have_zero_mean_unit_variance() {
    let x = rand64(&[3, 4, 5], 6)
        .mul_scalar(4.0)
        .unwrap()
        .add_scalar(2.0)
        .unwrap();
    for k in 1..=3usize {
        let y = values(&x.layer_norm(k, None, None, 0.0).unwrap());
        let d: usize = [3, 4, 5][3 - k..].iter().product();
        for row in y.chunks(d) {
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            assert!(
                mean.abs() < 1e-13 && (var - 1.0).abs() < 1e-12,
                "k = {k}: {mean} {var}"
            );
        }
    }
}

#[test]
fn layer_norm_gradients() {
    let cases: [(&[usize], usize); 4] = [(&[3, 5], 1), (&[2, 3, 4], 2), (&[2, 3, 4], 3), (&[7], 1)];
    for (i, (dims, k)) in cases.iter().enumerate() {
        let feat = &dims[dims.len() - k..];
        let x = rand64(dims, 100 + i as u64);
        let w = rand64_in(feat, 0.5, 2.0, 110 + i as u64);
        let b = rand64(feat, 120 + i as u64);
        gradcheck(
            "layer_norm",
            |t| t[0].layer_norm(*k, Some(&t[1]), Some(&t[2]), 1e-5),
            &[x.clone(), w.clone(), b.clone()],
        );
        gradcheck(
            "layer_norm_no_affine",
            |t| t[0].layer_norm(*k, None, None, 1e-5),
            std::slice::from_ref(&x),
        );
        gradcheck(
            "layer_norm_weight_only",
            |t| t[0].layer_norm(*k, Some(&t[1]), None, 1e-5),
            &[x.clone(), w.clone()],
        );
    }
}

#[test]
fn layer_norm_matches_composite_on_the_parallel_path() {
    let dims = [300, 256];
    let x = rand64(&dims, 21).with_requires_grad().unwrap();
    let w = rand64(&[256], 22).with_requires_grad().unwrap();
    let b = rand64(&[256], 23).with_requires_grad().unwrap();
    let (xr, wr, br) = (
        x.detach().with_requires_grad().unwrap(),
        w.detach().with_requires_grad().unwrap(),
        b.detach().with_requires_grad().unwrap(),
    );
    let g = rand64(&dims, 24);
    let y = x.layer_norm(1, Some(&w), Some(&b), 1e-5).unwrap();
    let yr = composite_layer_norm(&xr, 1, &wr, &br, 1e-5).unwrap();
    assert_close(&values(&y), &values(&yr), 1e-12);
    y.backward_with(&g).unwrap();
    yr.backward_with(&g).unwrap();
    assert_grads_match(&[(&x, &xr), (&w, &wr), (&b, &br)]);
    // f32 agrees with f64.
    let y32 = x
        .detach()
        .to_dtype(DType::F32)
        .unwrap()
        .layer_norm(
            1,
            Some(&w.detach().to_dtype(DType::F32).unwrap()),
            None,
            1e-5,
        )
        .unwrap();
    let y64 = x
        .detach()
        .layer_norm(1, Some(&w.detach()), None, 1e-5)
        .unwrap();
    assert_close(&values(&y32), &values(&y64), 1e-5);
}

#[test]
fn layer_norm_errors() {
    let x = rand64(&[2, 3, 4], 1);
    assert!(x.layer_norm(0, None, None, 1e-5).is_err());
    assert!(x.layer_norm(4, None, None, 1e-5).is_err());
    let err = x
        .layer_norm(2, Some(&rand64(&[4], 2)), None, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer_norm") && err.contains("[3, 4]"),
        "{err}"
    );
    assert!(x.layer_norm(1, None, Some(&rand64(&[3], 2)), 1e-5).is_err());
    assert!(x.layer_norm(1, None, None, f64::NAN).is_err());
}

/// Each pair of leaves (fused kernel, composite reference) got the same gradient.
fn assert_grads_match(pairs: &[(&Tensor, &Tensor)]) {
    for (fused, reference) in pairs {
        assert_close(
            &values(&fused.grad().unwrap()),
            &values(&reference.grad().unwrap()),
            1e-10,
        );
    }
}
