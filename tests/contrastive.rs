//! Fused InfoNCE (uniform, hard-negative, debiased, soft-target, MoCo queue) and Barlow Twins on
//! the CPU: forward values and gradients against plain composites of engine ops (log_softmax,
//! exp, sums, matmul, mean/var) and naive loops, f64 finite-difference gradient checks of every
//! option at odd sizes, large-logit stability, and the error cases.

mod common;
use common::*;
use rcmcl::engine::ops::contrastive::{InfoNce, BARLOW_EPS, BARLOW_LAMBDA};
use rcmcl::engine::{Device, Error, Reduction, Result, Tensor};

const TAU: f64 = 0.5;

fn eye(n: usize) -> Tensor {
    let v: Vec<f64> = (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect();
    t64(&v, &[n, n])
}

/// L2-normalised rows, as the embeddings of a contrastive head are.
fn unit_rows(dims: &[usize], seed: u64) -> Tensor {
    let x = rand64(dims, seed);
    let norm = x.square().unwrap().sum(&[1], true).unwrap().sqrt().unwrap();
    x.div(&norm).unwrap().detach()
}

/// A soft target matrix: a row softmax of random scores (rows sum to 1).
fn soft_targets(n: usize, seed: u64) -> Tensor {
    rand64(&[n, n], seed).softmax(1).unwrap().detach()
}

/// -mean over lanes of sum_k q_k log softmax(S) along `axis` (1: rows, 0: columns).
fn ce_dir(s: &Tensor, q: &Tensor, axis: isize) -> Result<Tensor> {
    let lanes = s.dims()[(1 - axis) as usize] as f64;
    s.log_softmax(axis)?
        .mul(q)?
        .sum_all()?
        .neg()?
        .div_scalar(lanes)
}

/// The HCL row loss of logits `s` (n x m, positive on the diagonal), from elementwise ops.
fn hcl_rows(s: &Tensor, beta: f64, tau_plus: f64, tau: f64) -> Result<Tensor> {
    let n = s.dims()[0];
    let e = eye(n);
    let negs = (n - 1) as f64;
    let mask = e.neg()?.add_scalar(1.0)?;
    let pos = s.mul(&e)?.sum(&[1], false)?.exp()?;
    let neg = s.exp()?.mul(&mask)?;
    let imp = s.mul_scalar(beta)?.exp()?.mul(&mask)?;
    let reweight = imp
        .mul(&neg)?
        .sum(&[1], false)?
        .div(&imp.sum(&[1], false)?.div_scalar(negs)?)?;
    let ng = pos
        .mul_scalar(-tau_plus * negs)?
        .add(&reweight)?
        .div_scalar(1.0 - tau_plus)?
        .clamp(negs * (-1.0 / tau).exp(), f64::INFINITY)?;
    pos.div(&pos.add(&ng)?)?.log()?.neg()?.mean_all()
}

/// The composite reference of each InfoNCE variant on logits `s`.
fn composite(s: &Tensor, loss: InfoNce, tau: f64) -> Result<Tensor> {
    let n = s.dims()[0];
    match loss {
        InfoNce::Uniform => {
            let e = eye(n);
            ce_dir(s, &e, 1)?.add(&ce_dir(s, &e, 0)?)?.mul_scalar(0.5)
        }
        InfoNce::Soft(q) => ce_dir(s, q, 1)?.add(&ce_dir(s, q, 0)?)?.mul_scalar(0.5),
        InfoNce::Hard { beta, tau_plus } => hcl_rows(s, beta, tau_plus, tau)?
            .add(&hcl_rows(&s.t()?, beta, tau_plus, tau)?)?
            .mul_scalar(0.5),
        InfoNce::Queue => {
            let zeros = idx(&vec![0; n], &[n]);
            s.cross_entropy(&zeros, Reduction::Mean, 0.0)
        }
    }
}

/// Runs `fused` and `reference` on fresh leaves made from `inputs`, compares the loss and every
/// input gradient (relative `tol`).
fn agree(
    what: &str,
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Result<Tensor>,
    reference: impl Fn(&[Tensor]) -> Result<Tensor>,
    tol: f64,
) {
    let leaves = || -> Vec<Tensor> {
        inputs
            .iter()
            .map(|t| t.detach().with_requires_grad().unwrap())
            .collect()
    };
    let (a, b) = (leaves(), leaves());
    let (lf, lr) = (fused(&a).unwrap(), reference(&b).unwrap());
    assert_eq!(lf.dims(), &[] as &[usize], "{what}: the loss is a scalar");
    let (vf, vr) = (lf.item().unwrap(), lr.item().unwrap());
    assert!(
        (vf - vr).abs() <= tol * (1.0 + vr.abs()),
        "{what}: loss {vf} vs composite {vr}"
    );
    lf.backward().unwrap();
    lr.backward().unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let (gx, gy) = (values(&x.grad().unwrap()), values(&y.grad().unwrap()));
        let num: f64 = gx.iter().zip(&gy).map(|(p, q)| (p - q).powi(2)).sum();
        let den: f64 = gy.iter().map(|q| q * q).sum();
        assert!(
            num.sqrt() <= tol * (1e-12 + den.sqrt()),
            "{what}: gradient {i} differs (rel {:.3e})",
            (num / den).sqrt()
        );
    }
}

fn variants(n: usize, seed: u64) -> Vec<(&'static str, Option<Tensor>, f64, f64)> {
    // (name, soft targets, beta, tau_plus); the name picks the variant.
    vec![
        ("uniform", None, 0.0, 0.0),
        ("hard", None, 1.0, 0.1),
        ("hard_beta_half", None, 0.5, 0.05),
        ("debiased", None, 0.0, 0.1),
        ("hard_no_prior", None, 2.0, 0.0),
        ("soft", Some(soft_targets(n, seed)), 0.0, 0.0),
    ]
}

fn pick<'a>(name: &str, q: &'a Option<Tensor>, beta: f64, tau_plus: f64) -> InfoNce<'a> {
    match name {
        "uniform" => InfoNce::Uniform,
        "soft" => InfoNce::Soft(q.as_ref().unwrap()),
        _ => InfoNce::Hard { beta, tau_plus },
    }
}

#[test]
fn every_variant_matches_its_composite_on_embeddings() {
    for (k, &(n, d)) in [(2, 3), (3, 5), (33, 7), (65, 31)].iter().enumerate() {
        let a = unit_rows(&[n, d], 10 + k as u64);
        let b = unit_rows(&[n, d], 20 + k as u64);
        for (name, q, beta, tp) in variants(n, 30 + k as u64) {
            let loss = pick(name, &q, beta, tp);
            agree(
                &format!("infonce {name} N={n} D={d}"),
                &[a.clone(), b.clone()],
                |t| Tensor::infonce(&t[0], &t[1], TAU, loss),
                |t| {
                    let s = t[0]
                        .matmul_transposed(&t[1], false, true)?
                        .div_scalar(TAU)?;
                    composite(&s, loss, TAU)
                },
                1e-11,
            );
        }
    }
}

#[test]
fn every_variant_matches_its_composite_on_logits() {
    // Raw logits (not from unit vectors), including large ones: the fused kernels stay finite.
    for (k, &n) in [1usize, 3, 33, 65].iter().enumerate() {
        for spread in [1.0, 40.0] {
            let s = rand64(&[n, n], 40 + k as u64).mul_scalar(spread).unwrap();
            for (name, q, beta, tp) in variants(n, 50 + k as u64) {
                if n < 2 && name != "uniform" && name != "soft" {
                    continue;
                }
                if spread > 1.0 && name.starts_with("hard") {
                    // exp(40 * 2) in the composite's plain exponentials is still finite in f64,
                    // but exp(beta * ...) of the composite loses the comparison's precision.
                    continue;
                }
                let loss = pick(name, &q, beta, tp);
                agree(
                    &format!("infonce_logits {name} N={n} spread {spread}"),
                    std::slice::from_ref(&s),
                    |t| t[0].infonce_logits(loss, TAU),
                    |t| composite(&t[0], loss, TAU),
                    1e-10,
                );
            }
        }
    }
}

#[test]
fn gradients_of_every_variant_against_finite_differences() {
    // D = 1 unit rows put cosines at exactly -1, the hard-negative clamp's kink (n * e^(-1/tau)
    // is reached exactly): the D = 1 case uses unnormalised rows instead.
    for (k, &(n, d)) in [(1, 3), (3, 5), (5, 1), (8, 4)].iter().enumerate() {
        let (a, b) = if d == 1 {
            (
                rand64(&[n, d], 60 + k as u64),
                rand64(&[n, d], 70 + k as u64),
            )
        } else {
            (
                unit_rows(&[n, d], 60 + k as u64),
                unit_rows(&[n, d], 70 + k as u64),
            )
        };
        for (name, q, beta, tp) in variants(n, 80 + k as u64) {
            if n < 2 && name != "uniform" && name != "soft" {
                continue;
            }
            let loss = pick(name, &q, beta, tp);
            gradcheck(
                &format!("infonce {name} N={n} D={d}"),
                |t| Tensor::infonce(&t[0], &t[1], TAU, loss),
                &[a.clone(), b.clone()],
            );
            let s = rand64(&[n, n], 90 + k as u64);
            gradcheck(
                &format!("infonce_logits {name} N={n}"),
                |t| t[0].infonce_logits(loss, TAU),
                &[s],
            );
        }
    }
}

#[test]
fn queue_matches_cross_entropy_and_its_gradients() {
    let kq = 7;
    for (k, &(n, d)) in [(1, 3), (3, 5), (33, 31), (65, 130)].iter().enumerate() {
        let q = unit_rows(&[n, d], 100 + k as u64);
        let key = unit_rows(&[n, d], 110 + k as u64);
        let queue = unit_rows(&[kq, d], 120 + k as u64);
        agree(
            &format!("infonce_queue N={n} D={d} K={kq}"),
            &[q.clone(), key.clone(), queue.clone()],
            |t| Tensor::infonce_queue(&t[0], &t[1], &t[2], TAU),
            |t| {
                let pos = t[0].mul(&t[1])?.sum(&[1], true)?;
                let neg = t[0].matmul_transposed(&t[2], false, true)?;
                let s = Tensor::concat(&[&pos, &neg], 1)?.div_scalar(TAU)?;
                composite(&s, InfoNce::Queue, TAU)
            },
            1e-11,
        );
        if n <= 33 && d <= 31 {
            gradcheck(
                &format!("infonce_queue N={n} D={d}"),
                |t| Tensor::infonce_queue(&t[0], &t[1], &t[2], TAU),
                &[q, key, queue],
            );
        }
    }
    // Rectangular logits directly, and an empty queue (K = 0: the loss is 0).
    let s = rand64(&[5, 1 + kq], 130);
    gradcheck(
        "infonce_logits queue",
        |t| t[0].infonce_logits(InfoNce::Queue, TAU),
        &[s],
    );
    let l = rand64(&[4, 1], 131)
        .infonce_logits(InfoNce::Queue, TAU)
        .unwrap();
    assert!(l.item().unwrap().abs() < 1e-15);
}

#[test]
fn uniform_loss_of_a_known_matrix() {
    // S = [[2, 0], [1, 3]]: rows: -(2 - ln(e^2 + 1)), -(3 - ln(e + e^3)); columns:
    // -(2 - ln(e^2 + e)), -(3 - ln(1 + e^3)).
    let s = t64(&[2.0, 0.0, 1.0, 3.0], &[2, 2]);
    let e = std::f64::consts::E;
    let rows = (-(2.0 - (e * e + 1.0).ln()) - (3.0 - (e + e.powi(3)).ln())) / 2.0;
    let cols = (-(2.0 - (e * e + e).ln()) - (3.0 - (1.0 + e.powi(3)).ln())) / 2.0;
    let l = s
        .infonce_logits(InfoNce::Uniform, 1.0)
        .unwrap()
        .item()
        .unwrap();
    assert!((l - (rows + cols) / 2.0).abs() < 1e-14, "{l}");
    // N = 1: one positive and no negative: the loss is 0.
    let l = t64(&[5.0], &[1, 1])
        .infonce_logits(InfoNce::Uniform, 1.0)
        .unwrap();
    assert!(l.item().unwrap().abs() < 1e-15);
}

#[test]
fn hard_negative_loss_of_a_naive_loop_and_the_clamp() {
    // The HCL formula written out per row with plain exponentials.
    let naive = |s: &[f64], n: usize, beta: f64, tp: f64, tau: f64| -> f64 {
        let mut total = 0.0;
        for dir in 0..2 {
            for i in 0..n {
                let at = |j: usize| if dir == 0 { s[i * n + j] } else { s[j * n + i] };
                let pos = at(i).exp();
                let negs: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| at(j).exp()).collect();
                let k = negs.len() as f64;
                let imp: Vec<f64> = negs.iter().map(|v| v.powf(beta)).collect();
                let rw = imp.iter().zip(&negs).map(|(a, b)| a * b).sum::<f64>()
                    / (imp.iter().sum::<f64>() / k);
                let ng = ((-tp * k * pos + rw) / (1.0 - tp)).max(k * (-1.0 / tau).exp());
                total += -(pos / (pos + ng)).ln() / n as f64 / 2.0;
            }
        }
        total
    };
    for (n, beta, tp) in [(2, 1.0, 0.1), (5, 0.5, 0.2), (9, 0.0, 0.1), (9, 3.0, 0.0)] {
        let s = rand64(&[n, n], n as u64);
        let want = naive(&values(&s), n, beta, tp, TAU);
        let got = s
            .infonce_logits(InfoNce::Hard { beta, tau_plus: tp }, TAU)
            .unwrap()
            .item()
            .unwrap();
        assert!(
            (got - want).abs() < 1e-12 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }
    // A large class prior drives Ng below the floor: the clamp holds it at n * e^(-1/tau), and
    // no gradient flows to the negatives.
    let n = 4;
    let s = eye(n)
        .mul_scalar(3.0)
        .unwrap()
        .with_requires_grad()
        .unwrap();
    let (beta, tp) = (1.0, 0.9);
    let l = s
        .infonce_logits(InfoNce::Hard { beta, tau_plus: tp }, TAU)
        .unwrap();
    let want = naive(&values(&s), n, beta, tp, TAU);
    assert!((l.item().unwrap() - want).abs() < 1e-12);
    l.backward().unwrap();
    let g = values(&s.grad().unwrap());
    for (k, v) in g.iter().enumerate() {
        if k / n != k % n {
            assert_eq!(*v, 0.0, "clamped: no gradient to negative {k}");
        } else {
            assert!(*v < 0.0);
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let a = unit_rows(&[33, 31], 140);
    let b = unit_rows(&[33, 31], 141);
    let q = soft_targets(33, 142);
    let (a32, b32, q32) = (
        a.to_dtype(rcmcl::engine::DType::F32).unwrap(),
        b.to_dtype(rcmcl::engine::DType::F32).unwrap(),
        q.to_dtype(rcmcl::engine::DType::F32).unwrap(),
    );
    for (l64, l32) in [
        (InfoNce::Uniform, InfoNce::Uniform),
        (
            InfoNce::Hard {
                beta: 1.0,
                tau_plus: 0.1,
            },
            InfoNce::Hard {
                beta: 1.0,
                tau_plus: 0.1,
            },
        ),
        (InfoNce::Soft(&q), InfoNce::Soft(&q32)),
    ] {
        let x = Tensor::infonce(&a, &b, 0.07, l64).unwrap().item().unwrap();
        let y = Tensor::infonce(&a32, &b32, 0.07, l32)
            .unwrap()
            .item()
            .unwrap();
        assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn infonce_errors() {
    let a = rand64(&[3, 4], 1);
    let b = rand64(&[3, 5], 2);
    let bad = |r: Result<Tensor>| assert!(r.is_err(), "expected an error");
    bad(Tensor::infonce(&a, &b, TAU, InfoNce::Uniform));
    bad(Tensor::infonce(&a, &a, 0.0, InfoNce::Uniform));
    bad(Tensor::infonce(&a, &a, TAU, InfoNce::Queue));
    bad(rand64(&[3, 4], 3).infonce_logits(InfoNce::Uniform, TAU));
    bad(rand64(&[3], 3).infonce_logits(InfoNce::Uniform, TAU));
    bad(rand64(&[0, 0], 3).infonce_logits(InfoNce::Queue, TAU));
    let s = rand64(&[3, 3], 4);
    for (beta, tp) in [(-1.0, 0.1), (1.0, 1.0), (1.0, -0.1), (f64::NAN, 0.1)] {
        bad(s.infonce_logits(InfoNce::Hard { beta, tau_plus: tp }, TAU));
    }
    bad(s.infonce_logits(
        InfoNce::Hard {
            beta: 1.0,
            tau_plus: 0.1,
        },
        0.0,
    ));
    bad(rand64(&[1, 1], 5).infonce_logits(
        InfoNce::Hard {
            beta: 1.0,
            tau_plus: 0.1,
        },
        TAU,
    ));
    bad(s.infonce_logits(InfoNce::Soft(&rand64(&[3, 4], 6)), TAU));
    bad(s.infonce_logits(InfoNce::Soft(&t32(&[0.5; 9], &[3, 3])), TAU));
    let q = rand64(&[3, 4], 7);
    bad(Tensor::infonce_queue(
        &q,
        &rand64(&[2, 4], 8),
        &rand64(&[5, 4], 9),
        TAU,
    ));
    bad(Tensor::infonce_queue(&q, &q, &rand64(&[5, 3], 9), TAU));
    let i = idx(&[1, 2, 3, 4], &[2, 2]);
    assert!(matches!(
        i.infonce_logits(InfoNce::Uniform, TAU),
        Err(Error::DType { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Barlow Twins

/// The public Barlow Twins loss from engine ops: batch-norm standardisation (biased variance),
/// C = z1n^T z2n / N, on- and off-diagonal terms.
fn composite_barlow(z1: &Tensor, z2: &Tensor, lambda: f64) -> Result<Tensor> {
    let n = z1.dims()[0] as f64;
    let d = z1.dims()[1];
    let bn = |z: &Tensor| -> Result<Tensor> {
        let mean = z.mean(&[0], true)?;
        let var = z.var(&[0], true, 0)?;
        z.sub(&mean)?.div(&var.add_scalar(BARLOW_EPS)?.sqrt()?)
    };
    let c = bn(z1)?
        .matmul_transposed(&bn(z2)?, true, false)?
        .div_scalar(n)?;
    let e = eye(d);
    let on = c
        .mul(&e)?
        .sum(&[1], false)?
        .sub_scalar(1.0)?
        .square()?
        .sum_all()?;
    let off = c.mul(&e.neg()?.add_scalar(1.0)?)?.square()?.sum_all()?;
    on.add(&off.mul_scalar(lambda)?)
}

/// A batch with column means and scales far from 0 and 1, so the standardisation matters.
fn batch(n: usize, d: usize, seed: u64) -> Tensor {
    let scale = rand64_in(&[1, d], 0.5, 3.0, seed + 1);
    let shift = rand64(&[1, d], seed + 2);
    rand64(&[n, d], seed)
        .mul(&scale)
        .unwrap()
        .add(&shift)
        .unwrap()
        .detach()
}

#[test]
fn barlow_matches_the_composite() {
    for (k, &(n, d)) in [(2, 1), (3, 5), (33, 31), (65, 130), (5, 1)]
        .iter()
        .enumerate()
    {
        for lambda in [BARLOW_LAMBDA, 0.5] {
            agree(
                &format!("barlow N={n} D={d} lambda {lambda}"),
                &[batch(n, d, 200 + k as u64), batch(n, d, 210 + k as u64)],
                |t| Tensor::barlow_twins(&t[0], &t[1], lambda),
                |t| composite_barlow(&t[0], &t[1], lambda),
                1e-10,
            );
        }
    }
}

#[test]
fn barlow_gradients_against_finite_differences() {
    for (k, &(n, d)) in [(2, 1), (3, 5), (4, 3), (9, 4)].iter().enumerate() {
        gradcheck(
            &format!("barlow N={n} D={d}"),
            |t| Tensor::barlow_twins(&t[0], &t[1], 0.3),
            &[batch(n, d, 300 + k as u64), batch(n, d, 310 + k as u64)],
        );
    }
}

#[test]
fn barlow_of_identical_views_has_a_unit_diagonal() {
    // z1 = z2: C is the correlation matrix, C_ii = var / (var + eps) ~ 1.
    let z = batch(33, 5, 400);
    let l = Tensor::barlow_twins(&z, &z, 0.0).unwrap().item().unwrap();
    assert!(l < 1e-6, "{l}");
    // A naive loop on a small case.
    let (n, d) = (4, 3);
    let (z1, z2) = (batch(n, d, 401), batch(n, d, 402));
    let (v1, v2) = (values(&z1), values(&z2));
    let std = |v: &[f64], c: usize| -> Vec<f64> {
        let col: Vec<f64> = (0..n).map(|i| v[i * d + c]).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        col.iter()
            .map(|x| (x - mean) / (var + BARLOW_EPS).sqrt())
            .collect()
    };
    let mut want = 0.0;
    for i in 0..d {
        for j in 0..d {
            let (a, b) = (std(&v1, i), std(&v2, j));
            let c: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() / n as f64;
            want += if i == j {
                (1.0 - c).powi(2)
            } else {
                0.0051 * c * c
            };
        }
    }
    let got = Tensor::barlow_twins(&z1, &z2, BARLOW_LAMBDA)
        .unwrap()
        .item()
        .unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn barlow_errors() {
    let bad = |r: Result<Tensor>| assert!(r.is_err(), "expected an error");
    bad(Tensor::barlow_twins(
        &rand64(&[1, 4], 1),
        &rand64(&[1, 4], 2),
        0.1,
    ));
    bad(Tensor::barlow_twins(
        &rand64(&[3, 4], 1),
        &rand64(&[3, 5], 2),
        0.1,
    ));
    bad(Tensor::barlow_twins(
        &rand64(&[3, 4], 1),
        &rand64(&[4, 4], 2),
        0.1,
    ));
    bad(Tensor::barlow_twins(
        &rand64(&[3, 0], 1),
        &rand64(&[3, 0], 2),
        0.1,
    ));
    bad(Tensor::barlow_twins(
        &rand64(&[12], 1),
        &rand64(&[12], 2),
        0.1,
    ));
    bad(Tensor::barlow_twins(
        &rand64(&[3, 4], 1),
        &rand64(&[3, 4], 2),
        f64::NAN,
    ));
    let f = Tensor::rand_uniform(
        vec![3, 4],
        -1.0,
        1.0,
        3,
        rcmcl::engine::DType::F32,
        Device::Cpu,
    )
    .unwrap();
    bad(Tensor::barlow_twins(&rand64(&[3, 4], 1), &f, 0.1));
}
