//! Layers: forward values against the same computation written out with ops, gradients through
//! the layers in f64, train/eval behaviour, parameter naming.

mod common;
use common::*;
use rcmcl::engine::nn::{
    Activation, BatchNorm, BatchNormConfig, Conv3d, Dropout, LayerNorm, Linear, Mlp, MlpConfig,
    Module, MultiHeadSelfAttention, ParamStore,
};
use rcmcl::engine::ops::conv::Conv3dParams;
use rcmcl::engine::{DType, Tensor};

fn store64(seed: u64) -> ParamStore {
    ParamStore::with_seed(seed).with_dtype(DType::F64)
}

#[test]
fn linear_matches_its_definition_and_pytorch_init_bounds() {
    let store = store64(1);
    let layer = Linear::new(&store.sub("fc"), 5, 3, true).unwrap();
    assert_eq!(layer.weight.dims(), &[3, 5]);
    let bound = 1.0 / 5f64.sqrt();
    assert!(values(&layer.weight).iter().all(|w| w.abs() <= bound));
    assert!(values(layer.bias.as_ref().unwrap())
        .iter()
        .all(|b| b.abs() <= bound));
    let x = rand64(&[2, 4, 5], 2);
    let y = layer.forward(&x).unwrap();
    assert_eq!(y.dims(), &[2, 4, 3]);
    let (xv, wv, bv) = (
        values(&x),
        values(&layer.weight),
        values(layer.bias.as_ref().unwrap()),
    );
    let want: Vec<f64> = (0..8)
        .flat_map(|r| (0..3).map(move |o| (r, o)))
        .map(|(r, o)| bv[o] + (0..5).map(|i| xv[r * 5 + i] * wv[o * 5 + i]).sum::<f64>())
        .collect();
    assert_close(&values(&y), &want, 1e-12);
    let names: Vec<String> = store.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["fc.weight", "fc.bias"]);
    gradcheck("linear layer", |t| layer.forward(&t[0]), &[x]);
}

#[test]
fn mlp_with_batch_norm_and_dropout_trains_and_evaluates() {
    let store = store64(3);
    let config = MlpConfig {
        dims: vec![4, 8, 8, 3],
        activation: Activation::Gelu,
        batch_norm: true,
        dropout: 0.3,
    };
    let mlp = Mlp::new(&store.root(), &config).unwrap();
    let x = rand64(&[6, 4], 4);
    assert_eq!(mlp.forward(&x).unwrap().dims(), &[6, 3]);
    // Dropout draws a fresh mask each call in training mode...
    assert_ne!(
        values(&mlp.forward(&x).unwrap()),
        values(&mlp.forward(&x).unwrap())
    );
    // ...and evaluation is deterministic and uses the running statistics.
    store.set_training(false);
    let a = values(&mlp.forward(&x).unwrap());
    assert_eq!(a, values(&mlp.forward(&x).unwrap()));
    gradcheck(
        "mlp (eval)",
        |t| mlp.forward(&t[0]),
        std::slice::from_ref(&x),
    );
    let plain = Mlp::new(&store64(5).root(), &MlpConfig::new(&[4, 7, 2])).unwrap();
    gradcheck("mlp (train, no dropout)", |t| plain.forward(&t[0]), &[x]);
    assert!(Mlp::new(&store64(6).root(), &MlpConfig::new(&[4])).is_err());
}

#[test]
fn batch_norm_layers_check_rank_and_switch_modes() {
    let store = store64(7);
    let bn2 = BatchNorm::new_2d(&store.sub("bn"), 3, BatchNormConfig::default()).unwrap();
    let x = rand64(&[4, 3, 2, 5], 8);
    let y = bn2.forward(&x).unwrap();
    // Training: each channel of the output has mean 0.
    let m = values(&y.mean(&[0, 2, 3], false).unwrap());
    assert!(m.iter().all(|v| v.abs() < 1e-12), "{m:?}");
    let running = values(&bn2.running_mean);
    let batch_mean = values(&x.mean(&[0, 2, 3], false).unwrap());
    assert_close(
        &running,
        &batch_mean.iter().map(|v| 0.1 * v).collect::<Vec<_>>(),
        1e-12,
    );
    store.set_training(false);
    let y_eval = bn2.forward(&x).unwrap();
    assert_ne!(values(&y_eval), values(&y));
    assert_eq!(
        values(&bn2.running_mean),
        running,
        "eval must not touch the running statistics"
    );
    let err = bn2.forward(&rand64(&[4, 3], 9)).unwrap_err().to_string();
    assert!(
        err.contains("BatchNorm2d") && err.contains("[4, 3]"),
        "{err}"
    );
    assert!(
        BatchNorm::new_1d(&store.sub("bn1"), 3, BatchNormConfig::default())
            .unwrap()
            .forward(&rand64(&[4, 3], 9))
            .is_ok()
    );
    let bn3 = BatchNorm::new_3d(&store.sub("bn3"), 2, BatchNormConfig::default()).unwrap();
    assert!(bn3.forward(&rand64(&[2, 2, 2, 2, 2], 1)).is_ok());
    let buffers: Vec<String> = store.buffers().into_iter().map(|(n, _)| n).collect();
    assert!(
        buffers.contains(&"bn.running_mean".to_string())
            && buffers.contains(&"bn.running_var".to_string())
    );
}

#[test]
fn layer_norm_layer() {
    let store = store64(10);
    let ln = LayerNorm::new(&store.sub("ln"), &[6], 1e-5, true).unwrap();
    let x = rand64(&[3, 6], 11);
    let y = ln.forward(&x).unwrap();
    let means = values(&y.mean(&[1], false).unwrap());
    assert!(means.iter().all(|v| v.abs() < 1e-12));
    gradcheck("layer norm layer", |t| ln.forward(&t[0]), &[x]);
}

#[test]
fn dropout_layer_is_identity_in_eval_and_reproducible_per_seed() {
    let x = rand64(&[1000], 12);
    let run = |seed| {
        let store = ParamStore::with_seed(seed).with_dtype(DType::F64);
        let d = Dropout::new(&store.sub("drop"), 0.5).unwrap();
        let first = values(&d.forward(&x).unwrap());
        let second = values(&d.forward(&x).unwrap());
        store.set_training(false);
        assert_eq!(values(&d.forward(&x).unwrap()), values(&x));
        (first, second)
    };
    let (a1, a2) = run(1);
    assert_ne!(a1, a2, "each call draws a new mask");
    assert_eq!(
        run(1),
        (a1.clone(), a2),
        "the same seed gives the same sequence of masks"
    );
    assert_ne!(run(2).0, a1);
    assert!(Dropout::new(&ParamStore::new().root(), 1.0).is_err());
}

/// Attention written out head by head with plain ops, to compare with the layer.
fn reference_attention(
    layer: &MultiHeadSelfAttention,
    x: &Tensor,
    heads: usize,
    mask: Option<&[Vec<bool>]>,
) -> Vec<f64> {
    let (b, t, e) = (x.dims()[0], x.dims()[1], x.dims()[2]);
    let d = e / heads;
    let qkv = values(&layer.qkv.forward(x).unwrap()); // (b, t, 3e)
    let mut context = vec![0.0; b * t * e];
    for bi in 0..b {
        for h in 0..heads {
            for i in 0..t {
                let q = |c: usize| qkv[(bi * t + i) * 3 * e + h * d + c];
                let mut scores: Vec<f64> = (0..t)
                    .map(|j| {
                        (0..d)
                            .map(|c| q(c) * qkv[(bi * t + j) * 3 * e + e + h * d + c])
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                if let Some(m) = mask {
                    for (j, s) in scores.iter_mut().enumerate() {
                        if m[bi][j] {
                            *s = f64::NEG_INFINITY;
                        }
                    }
                }
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for c in 0..d {
                    context[(bi * t + i) * e + h * d + c] = (0..t)
                        .map(|j| {
                            (scores[j] - max).exp() / z
                                * qkv[(bi * t + j) * 3 * e + 2 * e + h * d + c]
                        })
                        .sum();
                }
            }
        }
    }
    let context = t64(&context, &[b, t, e]);
    values(&layer.out.forward(&context).unwrap())
}

#[test]
fn self_attention_matches_a_head_by_head_reference() {
    let store = store64(13);
    let attn = MultiHeadSelfAttention::new(&store.sub("attn"), 8, 2, 0.0).unwrap();
    let x = rand64(&[2, 5, 8], 14);
    let y = attn.forward(&x).unwrap();
    assert_eq!(y.dims(), &[2, 5, 8]);
    assert_close(&values(&y), &reference_attention(&attn, &x, 2, None), 1e-10);

    let pad = vec![vec![false, false, false, true, true], vec![false; 5]];
    let mask_values: Vec<f64> = pad
        .iter()
        .flatten()
        .map(|&p| if p { 1.0 } else { 0.0 })
        .collect();
    let mask = t64(&mask_values, &[2, 5]);
    let ym = attn.forward_masked(&x, Some(&mask)).unwrap();
    assert_close(
        &values(&ym),
        &reference_attention(&attn, &x, 2, Some(&pad)),
        1e-10,
    );
    // Changing a padded position does not change any output.
    let mut xv = values(&x);
    for c in 0..8 {
        xv[4 * 8 + c] += 3.0;
    }
    let ym2 = attn
        .forward_masked(&t64(&xv, &[2, 5, 8]), Some(&mask))
        .unwrap();
    let (a, b) = (values(&ym), values(&ym2));
    assert_close(&a[..3 * 8], &b[..3 * 8], 1e-12);

    gradcheck(
        "self-attention",
        |t| attn.forward_masked(&t[0], Some(&mask)),
        &[x],
    );
    assert!(MultiHeadSelfAttention::new(&store.sub("bad"), 10, 3, 0.0).is_err());
    assert!(attn
        .forward(&rand64(&[2, 5, 6], 1))
        .unwrap_err()
        .to_string()
        .contains("[2, 5, 6]"));
}

#[test]
fn parameters_get_hierarchical_names_and_duplicates_fail() {
    let store = ParamStore::new();
    let mlp = Mlp::new(
        &store.sub("head"),
        &MlpConfig {
            batch_norm: true,
            ..MlpConfig::new(&[4, 8, 2])
        },
    )
    .unwrap();
    let _ = mlp;
    let names: Vec<String> = store.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "head.layers.0.linear.weight",
            "head.layers.0.norm.weight",
            "head.layers.0.norm.bias",
            "head.output.weight",
            "head.output.bias"
        ]
    );
    assert!(Linear::new(&store.sub("head").sub("output"), 8, 2, true).is_err());
}

#[test]
fn conv3d_layer_matches_a_naive_convolution_and_pytorch_init_bounds() {
    let store = store64(7);
    let params = Conv3dParams {
        stride: [1, 2, 1],
        padding: [1, 0, 1],
    };
    let layer = Conv3d::new(&store.sub("conv"), 2, 3, [3, 2, 1], params, true).unwrap();
    assert_eq!(layer.weight.dims(), &[3, 2, 3, 2, 1]);
    assert_eq!(
        (layer.in_channels(), layer.out_channels(), layer.kernel()),
        (2, 3, [3, 2, 1])
    );
    let bound = 1.0 / ((2 * 3 * 2) as f64).sqrt();
    assert!(values(&layer.weight).iter().all(|w| w.abs() <= bound));
    assert!(values(layer.bias.as_ref().unwrap())
        .iter()
        .all(|b| b.abs() <= bound));

    let xd = [2, 2, 4, 5, 3];
    let x = rand64(&xd, 8);
    let y = layer.forward(&x).unwrap();
    // Do = 4 + 2 - 3 + 1, Ho = (5 - 2) / 2 + 1, Wo = 3 + 2 - 1 + 1.
    let yd = [2, 3, 4, 2, 5];
    assert_eq!(y.dims(), &yd);
    let (xv, wv, bv) = (
        values(&x),
        values(&layer.weight),
        values(layer.bias.as_ref().unwrap()),
    );
    let want: Vec<f64> = (0..yd.iter().product::<usize>())
        .map(|i| {
            let o = unravel(i, &yd);
            let mut acc = bv[o[1]];
            for c in 0..2 {
                for (kt, kh) in (0..3).flat_map(|a| (0..2).map(move |b| (a, b))) {
                    let d = (o[2] + kt) as isize - 1;
                    let h = o[3] * 2 + kh;
                    let w = o[4] as isize - 1;
                    if !(0..4).contains(&d) || !(0..3).contains(&w) {
                        continue;
                    }
                    let xi = ravel(&[o[0], c, d as usize, h, w as usize], &xd);
                    acc += xv[xi] * wv[ravel(&[o[1], c, kt, kh, 0], &[3, 2, 3, 2, 1])];
                }
            }
            acc
        })
        .collect();
    assert_close(&values(&y), &want, 1e-12);
    let names: Vec<String> = store.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["conv.weight", "conv.bias"]);
    gradcheck("conv3d layer", |t| layer.forward(&t[0]), &[x]);

    let no_bias = Conv3d::new(
        &store.sub("c2"),
        2,
        1,
        [1, 1, 1],
        Conv3dParams::default(),
        false,
    );
    assert!(no_bias.unwrap().bias.is_none());
    assert!(Conv3d::new(
        &store.sub("c3"),
        2,
        1,
        [0, 1, 1],
        Conv3dParams::default(),
        true
    )
    .is_err());
}
