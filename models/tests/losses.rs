//! The losses of issue 6: each against a composite of engine ops on random f64 inputs, against an
//! independent plain-f64 loop on a written-out 3x3 example, f64 gradient checks, and the
//! variants' specific properties (soft targets, progressive alpha, MoCo queue, EMA update).

// The references are index loops on purpose: they read like the formulas.
#![allow(clippy::needless_range_loop)]

use engine::gradcheck::{assert_gradients, GradCheck};
use engine::nn::{BatchNorm, BatchNormConfig, Linear, Module, ParamStore};
use engine::{DType, Device, Reduction, Result, Tensor};
use models::losses::*;

type M = Vec<Vec<f64>>;

fn t(rows: &M) -> Tensor {
    let d = rows[0].len();
    let v: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(v, vec![rows.len(), d], Device::Cpu).unwrap()
}

fn tv(v: &[f64], dims: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims.to_vec(), Device::Cpu).unwrap()
}

fn rows(x: &Tensor) -> M {
    let d = x.dims()[1];
    x.to_f64_vec()
        .unwrap()
        .chunks(d)
        .map(|c| c.to_vec())
        .collect()
}

fn unit(n: usize, d: usize, seed: u64) -> Tensor {
    Tensor::rand_normal([n, d], 0.0, 1.0, seed, DType::F64, Device::Cpu)
        .unwrap()
        .l2_normalize(1, 1e-12)
        .unwrap()
}

fn randn(dims: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(dims.to_vec(), 0.0, 1.0, seed, DType::F64, Device::Cpu).unwrap()
}

fn eye(n: usize) -> Tensor {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    tv(&v, &[n, n])
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * (1.0 + b.abs()),
        "{what}: {a} vs {b} (diff {})",
        (a - b).abs()
    );
}

fn val(x: Result<Tensor>) -> f64 {
    x.unwrap().item().unwrap()
}

fn opts() -> GradCheck {
    GradCheck {
        eps: 1e-6,
        atol: 1e-6,
        rtol: 1e-5,
        seed: 3,
    }
}

// ----- plain f64 references ------------------------------------------------------------------

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn lse(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn softmax(v: &[f64]) -> Vec<f64> {
    let l = lse(v);
    v.iter().map(|x| (x - l).exp()).collect()
}

fn logits(a: &M, b: &M, tau: f64) -> M {
    a.iter()
        .map(|ai| b.iter().map(|bj| dot(ai, bj) / tau).collect())
        .collect()
}

fn transpose(s: &M) -> M {
    (0..s[0].len())
        .map(|j| s.iter().map(|r| r[j]).collect())
        .collect()
}

/// Cross-entropy of one lane against its positive at `p`.
fn lane_ce(lane: &[f64], p: usize) -> f64 {
    lse(lane) - lane[p]
}

/// HCL (paper 004 Eq. 3, the public code's form) for one lane with its positive at `p`.
fn lane_hcl(lane: &[f64], p: usize, beta: f64, tau_plus: f64, tau: f64) -> f64 {
    let n = (lane.len() - 1) as f64;
    let pos = lane[p].exp();
    let negs: Vec<f64> = (0..lane.len())
        .filter(|&k| k != p)
        .map(|k| lane[k])
        .collect();
    let imp: Vec<f64> = negs.iter().map(|s| (beta * s).exp()).collect();
    let reweight = imp.iter().zip(&negs).map(|(i, s)| i * s.exp()).sum::<f64>()
        / (imp.iter().sum::<f64>() / n);
    let ng = ((-tau_plus * n * pos + reweight) / (1.0 - tau_plus)).max(n * (-1.0 / tau).exp());
    -(pos / (pos + ng)).ln()
}

/// Symmetric loss of a square logit matrix given a per-lane function.
fn symmetric(s: &M, lane: impl Fn(&[f64], usize) -> f64) -> f64 {
    let n = s.len();
    let st = transpose(s);
    let row: f64 = (0..n).map(|i| lane(&s[i], i)).sum::<f64>() / n as f64;
    let col: f64 = (0..n).map(|j| lane(&st[j], j)).sum::<f64>() / n as f64;
    (row + col) / 2.0
}

fn ref_pair(a: &M, b: &M, tau: f64, neg: Negatives) -> f64 {
    let s = logits(a, b, tau);
    match neg {
        Negatives::Uniform => symmetric(&s, lane_ce),
        Negatives::Hard { beta, tau_plus } => {
            symmetric(&s, |l, p| lane_hcl(l, p, beta, tau_plus, tau))
        }
        Negatives::Debiased { tau_plus } => {
            symmetric(&s, |l, p| lane_hcl(l, p, 0.0, tau_plus, tau))
        }
    }
}

fn ref_cross_modal(h: &[&M], tau: f64, neg: Negatives) -> f64 {
    let mut total = 0.0;
    for i in 0..h.len() {
        for j in i + 1..h.len() {
            total += ref_pair(h[i], h[j], tau, neg);
        }
    }
    total
}

fn ref_barlow(z1: &M, z2: &M, lambda: f64) -> f64 {
    let (n, d) = (z1.len(), z1[0].len());
    let std = |z: &M| -> M {
        let mut out = z.clone();
        for c in 0..d {
            let mean = z.iter().map(|r| r[c]).sum::<f64>() / n as f64;
            let var = z.iter().map(|r| (r[c] - mean).powi(2)).sum::<f64>() / n as f64;
            for k in 0..n {
                out[k][c] = (z[k][c] - mean) / (var + 1e-5).sqrt();
            }
        }
        out
    };
    let (a, b) = (std(z1), std(z2));
    let mut loss = 0.0;
    for p in 0..d {
        for q in 0..d {
            let c = (0..n).map(|k| a[k][p] * b[k][q]).sum::<f64>() / n as f64;
            loss += if p == q {
                (1.0 - c).powi(2)
            } else {
                lambda * c * c
            };
        }
    }
    loss
}

/// One direction `x2y` of the soft loss written as paper 002 Eq. 12 reads: the first `ni` rows
/// against the intra targets of `x`, the rest against the inter targets `softmax(y_i x^T)`.
fn ref_soft_dir(x: &M, y: &M, tau: f64, beta: f64, tau_t: f64, alpha: f64, ni: usize) -> f64 {
    let n = x.len();
    let s = logits(x, y, tau);
    let ce = |i: usize, target: &[f64]| -> f64 {
        let l = lse(&s[i]);
        -(0..n).map(|j| target[j] * (s[i][j] - l)).sum::<f64>()
    };
    let intra = |i: usize| -> Vec<f64> {
        let sm = softmax(
            &x.iter()
                .map(|xj| dot(&x[i], xj) / tau_t)
                .collect::<Vec<_>>(),
        );
        (0..n)
            .map(|j| beta * sm[j] + (1.0 - beta) * if i == j { 1.0 } else { 0.0 })
            .collect()
    };
    let inter = |i: usize| -> Vec<f64> {
        softmax(
            &x.iter()
                .map(|xj| dot(&y[i], xj) / tau_t)
                .collect::<Vec<_>>(),
        )
    };
    let h_intra = (0..ni).map(|i| ce(i, &intra(i))).sum::<f64>() / ni.max(1) as f64;
    let h_inter = (ni..n).map(|i| ce(i, &inter(i))).sum::<f64>() / (n - ni).max(1) as f64;
    if ni == n {
        h_intra
    } else if ni == 0 {
        h_inter
    } else {
        alpha * h_intra + (1.0 - alpha) * h_inter
    }
}

fn ref_soft(h: &[&M], tau: f64, beta: f64, tau_t: f64, alpha: f64) -> f64 {
    let n = h[0].len();
    let ni = ((alpha * n as f64) + 1e-9).floor() as usize;
    let mut total = 0.0;
    for i in 0..h.len() {
        for j in i + 1..h.len() {
            total += 0.5
                * (ref_soft_dir(h[i], h[j], tau, beta, tau_t, alpha, ni)
                    + ref_soft_dir(h[j], h[i], tau, beta, tau_t, alpha, ni));
        }
    }
    total
}

// ----- composites of engine ops --------------------------------------------------------------

fn comp_uniform(a: &Tensor, b: &Tensor, tau: f64) -> Result<Tensor> {
    let n = a.dims()[0];
    let s = a.matmul(&b.t()?)?.div_scalar(tau)?;
    let e = eye(n);
    let row = s.log_softmax(1)?.mul(&e)?.sum_all()?;
    let col = s.log_softmax(0)?.mul(&e)?.sum_all()?;
    row.add(&col)?.mul_scalar(-0.5 / n as f64)
}

fn comp_hard_dir(s: &Tensor, beta: f64, tau_plus: f64, tau: f64) -> Result<Tensor> {
    let n = s.dims()[0];
    let e = eye(n);
    let off = e.neg()?.add_scalar(1.0)?;
    let ex = s.exp()?;
    let pos = ex.mul(&e)?.sum(&[1], false)?;
    let neg = ex.mul(&off)?;
    let imp = s.mul_scalar(beta)?.exp()?.mul(&off)?;
    let nn = (n - 1) as f64;
    let reweight = imp
        .mul(&neg)?
        .sum(&[1], false)?
        .div(&imp.sum(&[1], false)?.div_scalar(nn)?)?;
    let ng = reweight
        .sub(&pos.mul_scalar(tau_plus * nn)?)?
        .div_scalar(1.0 - tau_plus)?;
    let floor = Tensor::full([n], nn * (-1.0 / tau).exp(), DType::F64, Device::Cpu)?;
    let ng = ng.maximum(&floor)?;
    pos.div(&pos.add(&ng)?)?.log()?.mean_all()?.neg()
}

fn comp_hard(a: &Tensor, b: &Tensor, tau: f64, beta: f64, tau_plus: f64) -> Result<Tensor> {
    let s = a.matmul(&b.t()?)?.div_scalar(tau)?;
    comp_hard_dir(&s, beta, tau_plus, tau)?
        .add(&comp_hard_dir(&s.t()?, beta, tau_plus, tau)?)?
        .mul_scalar(0.5)
}

fn comp_barlow(z1: &Tensor, z2: &Tensor, lambda: f64) -> Result<Tensor> {
    let (n, d) = (z1.dims()[0], z1.dims()[1]);
    let std = |z: &Tensor| -> Result<Tensor> {
        let m = z.mean(&[0], true)?;
        let v = z.var(&[0], true, 0)?;
        z.sub(&m)?.div(&v.add_scalar(1e-5)?.sqrt()?)
    };
    let c = std(z1)?.t()?.matmul(&std(z2)?)?.div_scalar(n as f64)?;
    let e = eye(d);
    let off = e.neg()?.add_scalar(1.0)?;
    let on = c.neg()?.add_scalar(1.0)?.mul(&e)?.square()?.sum_all()?;
    let offd = c.mul(&off)?.square()?.sum_all()?.mul_scalar(lambda)?;
    on.add(&offd)
}

// ----- the 3x3 example -----------------------------------------------------------------------

fn ex_a() -> M {
    vec![
        vec![1.0, 0.0, 0.0],
        vec![0.6, 0.8, 0.0],
        vec![0.0, 0.6, 0.8],
    ]
}
fn ex_b() -> M {
    vec![
        vec![0.0, 1.0, 0.0],
        vec![0.8, 0.0, 0.6],
        vec![0.6, 0.8, 0.0],
    ]
}
fn ex_c() -> M {
    vec![
        vec![0.0, 0.0, 1.0],
        vec![1.0, 0.0, 0.0],
        vec![0.0, 0.8, 0.6],
    ]
}

// ----- L_CM ----------------------------------------------------------------------------------

#[test]
fn cross_modal_closed_form_on_orthonormal_rows() {
    // a = b = I, tau = 1: every lane is [1, 0, 0] up to order, loss log(1 + 2/e) both ways.
    let i = eye(3);
    let got = val(cross_modal(&[&i, &i], 1.0, Negatives::Uniform));
    close(
        got,
        (1.0 + 2.0 / std::f64::consts::E).ln(),
        1e-12,
        "closed form",
    );
}

#[test]
fn cross_modal_matches_plain_loops_on_3x3() {
    let (a, b, c) = (ex_a(), ex_b(), ex_c());
    let (ta, tb, tc) = (t(&a), t(&b), t(&c));
    for neg in [
        Negatives::Uniform,
        Negatives::Hard {
            beta: 0.5,
            tau_plus: 0.1,
        },
        Negatives::Debiased { tau_plus: 0.1 },
    ] {
        let got = val(cross_modal(&[&ta, &tb, &tc], 0.5, neg));
        let want = ref_cross_modal(&[&a, &b, &c], 0.5, neg);
        close(got, want, 1e-12, &format!("{neg:?}"));
        // Two modalities: exactly one pair.
        let got2 = val(cross_modal(&[&ta, &tc], 0.5, neg));
        close(got2, ref_pair(&a, &c, 0.5, neg), 1e-12, "one pair");
    }
    // Written-out value of the uniform pair (a, b) at tau = 0.5, from the loop above, pinned so
    // a change of convention (sum vs mean of directions) shows.
    let s = logits(&a, &b, 0.5);
    let by_hand = 0.5
        * ((0..3).map(|i| lse(&s[i]) - s[i][i]).sum::<f64>() / 3.0
            + (0..3)
                .map(|j| lse(&[s[0][j], s[1][j], s[2][j]]) - s[j][j])
                .sum::<f64>()
                / 3.0);
    close(
        val(cross_modal(&[&ta, &tb], 0.5, Negatives::Uniform)),
        by_hand,
        1e-12,
        "by hand",
    );
}

#[test]
fn cross_modal_matches_composites_on_random() {
    let (a, b, c) = (unit(7, 5, 1), unit(7, 5, 2), unit(7, 5, 3));
    let tau = 0.2;
    let want = [(&a, &b), (&a, &c), (&b, &c)]
        .iter()
        .map(|(x, y)| val(comp_uniform(x, y, tau)))
        .sum::<f64>();
    close(
        val(cross_modal(&[&a, &b, &c], tau, Negatives::Uniform)),
        want,
        1e-10,
        "uniform",
    );
    let (beta, tp) = (0.7, 0.15);
    let want = [(&a, &b), (&a, &c), (&b, &c)]
        .iter()
        .map(|(x, y)| val(comp_hard(x, y, tau, beta, tp)))
        .sum::<f64>();
    close(
        val(cross_modal(
            &[&a, &b, &c],
            tau,
            Negatives::Hard { beta, tau_plus: tp },
        )),
        want,
        1e-10,
        "hard",
    );
    let want = val(comp_hard(&a, &b, tau, 0.0, tp));
    close(
        val(cross_modal(
            &[&a, &b],
            tau,
            Negatives::Debiased { tau_plus: tp },
        )),
        want,
        1e-10,
        "debiased",
    );
}

#[test]
fn cross_modal_gradients() {
    let inputs = [unit(4, 3, 11), unit(4, 3, 12), unit(4, 3, 13)];
    for neg in [
        Negatives::Uniform,
        Negatives::Hard {
            beta: 0.5,
            tau_plus: 0.1,
        },
        Negatives::Debiased { tau_plus: 0.1 },
    ] {
        assert_gradients(
            &format!("cross_modal {neg:?}"),
            |x| cross_modal(&[&x[0], &x[1], &x[2]], 0.5, neg),
            &inputs,
            opts(),
        );
    }
}

#[test]
fn cross_modal_errors() {
    let a = unit(4, 3, 1);
    assert!(cross_modal(&[&a], 0.1, Negatives::Uniform).is_err());
    assert!(cross_modal(&[], 0.1, Negatives::Uniform).is_err());
    assert!(cross_modal(&[&a, &unit(5, 3, 2)], 0.1, Negatives::Uniform).is_err());
    assert!(cross_modal(&[&a, &unit(4, 2, 2)], 0.1, Negatives::Uniform).is_err());
    assert!(cross_modal(&[&a, &randn(&[4, 3, 1], 2)], 0.1, Negatives::Uniform).is_err());
    assert!(cross_modal(&[&a, &a], 0.0, Negatives::Uniform).is_err());
    assert!(cross_modal(
        &[&a, &a],
        0.1,
        Negatives::Hard {
            beta: 0.5,
            tau_plus: 1.0
        }
    )
    .is_err());
    assert!(multi_view(&[&a], 0.1, Negatives::Uniform).is_err());
}

// ----- multi-view (paper 003) ----------------------------------------------------------------

#[test]
fn multi_view_is_the_mean_over_pairs() {
    let (a, b, c) = (ex_a(), ex_b(), ex_c());
    let got = val(multi_view(
        &[&t(&a), &t(&b), &t(&c)],
        0.5,
        Negatives::Uniform,
    ));
    close(
        got,
        ref_cross_modal(&[&a, &b, &c], 0.5, Negatives::Uniform) / 3.0,
        1e-12,
        "3 views",
    );
    let v: Vec<Tensor> = (0..4).map(|s| unit(6, 4, 20 + s)).collect();
    let mut want = 0.0;
    for i in 0..4 {
        for j in i + 1..4 {
            want += val(comp_uniform(&v[i], &v[j], 0.1));
        }
    }
    let refs: Vec<&Tensor> = v.iter().collect();
    close(
        val(multi_view(&refs, 0.1, Negatives::Uniform)),
        want / 6.0,
        1e-10,
        "4 views",
    );
    assert_gradients(
        "multi_view",
        |x| multi_view(&[&x[0], &x[1], &x[2]], 0.5, Negatives::Uniform),
        &[unit(4, 3, 31), unit(4, 3, 32), unit(4, 3, 33)],
        opts(),
    );
}

// ----- L_IM ----------------------------------------------------------------------------------

#[test]
fn intra_modal_matches_loops_and_composite() {
    let z1: M = vec![
        vec![1.0, 2.0, 0.0],
        vec![0.0, 1.0, 3.0],
        vec![2.0, 0.0, 1.0],
    ];
    let z2: M = vec![
        vec![0.5, 1.0, -1.0],
        vec![2.0, -1.0, 0.0],
        vec![1.0, 3.0, 2.0],
    ];
    let w1: M = vec![
        vec![0.0, 1.0, 1.0],
        vec![1.0, -2.0, 0.5],
        vec![3.0, 0.0, -1.0],
    ];
    let w2: M = vec![
        vec![1.0, 1.0, 0.0],
        vec![-1.0, 0.0, 2.0],
        vec![0.0, 2.5, 1.0],
    ];
    let lambda = 0.3;
    let got = val(intra_modal(
        &[(&t(&z1), &t(&z2)), (&t(&w1), &t(&w2))],
        lambda,
    ));
    let want = ref_barlow(&z1, &z2, lambda) + ref_barlow(&w1, &w2, lambda);
    close(got, want, 1e-10, "3x3 barlow");

    let (a1, a2, b1, b2) = (
        randn(&[8, 5], 1),
        randn(&[8, 5], 2),
        randn(&[8, 6], 3),
        randn(&[8, 6], 4),
    );
    let got = val(intra_modal(&[(&a1, &a2), (&b1, &b2)], LAMBDA));
    let want = val(comp_barlow(&a1, &a2, LAMBDA)) + val(comp_barlow(&b1, &b2, LAMBDA));
    close(got, want, 1e-10, "random barlow");

    assert_gradients(
        "intra_modal",
        |x| intra_modal(&[(&x[0], &x[1]), (&x[2], &x[3])], 0.1),
        &[
            randn(&[4, 3], 5),
            randn(&[4, 3], 6),
            randn(&[4, 2], 7),
            randn(&[4, 2], 8),
        ],
        opts(),
    );
    assert!(intra_modal(&[], 0.1).is_err());
    assert!(intra_modal(&[(&a1, &b1)], 0.1).is_err());
}

// ----- L_deg ---------------------------------------------------------------------------------

#[test]
fn degradation_plain_and_weighted() {
    let dims = [2, 3, 4, 3];
    let (r, x) = (randn(&dims, 1), randn(&dims, 2));
    let (rv, xv) = (r.to_f64_vec().unwrap(), x.to_f64_vec().unwrap());
    let plain = rv
        .iter()
        .zip(&xv)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / rv.len() as f64;
    close(val(degradation(&r, &x, None)), plain, 1e-12, "plain mean");
    close(
        val(degradation(&r, &x, None)),
        val(r.sub(&x).unwrap().square().unwrap().mean_all()),
        1e-12,
        "composite",
    );

    // A joint mask (B, 1, J, 1) with fractional weights: sum(w (r - x)^2) / sum(broadcast w).
    let wv = [1.0, 0.0, 0.5, 1.0, 0.0, 2.0, 1.0, 0.0];
    let w = tv(&wv, &[2, 1, 4, 1]);
    let (mut num, mut den) = (0.0, 0.0);
    for b in 0..2 {
        for tt in 0..3 {
            for j in 0..4 {
                for c in 0..3 {
                    let i = ((b * 3 + tt) * 4 + j) * 3 + c;
                    let wt = wv[b * 4 + j];
                    num += wt * (rv[i] - xv[i]).powi(2);
                    den += wt;
                }
            }
        }
    }
    close(
        val(degradation(&r, &x, Some(&w))),
        num / den,
        1e-12,
        "weighted",
    );
    // Weights of ones: the plain mean.
    let ones = Tensor::ones([4, 1], DType::F64, Device::Cpu).unwrap();
    close(val(degradation(&r, &x, Some(&ones))), plain, 1e-12, "ones");
    // All weights 0: 0, not NaN.
    let zeros = Tensor::zeros([1], DType::F64, Device::Cpu).unwrap();
    assert_eq!(val(degradation(&r, &x, Some(&zeros))), 0.0);

    // 3x3 by hand: r - x = [[1, 0, -1], [2, 0, 0], [0, 3, 0]], row weights [1, 0, 2]:
    // (1 + 1) * 1 + 4 * 0 + 9 * 2 = 20 over 3 * (1 + 0 + 2) = 9.
    let r3 = tv(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[3, 3]);
    let x3 = tv(&[0.0, 2.0, 4.0, 2.0, 5.0, 6.0, 7.0, 5.0, 9.0], &[3, 3]);
    let w3 = tv(&[1.0, 0.0, 2.0], &[3, 1]);
    close(
        val(degradation(&r3, &x3, Some(&w3))),
        20.0 / 9.0,
        1e-14,
        "3x3 by hand",
    );
    close(
        val(degradation(&r3, &x3, None)),
        15.0 / 9.0,
        1e-14,
        "3x3 plain",
    );

    assert_gradients(
        "degradation weighted",
        |t| degradation(&t[0], &t[1], Some(&w)),
        &[r.clone(), x.clone()],
        opts(),
    );
    assert_gradients(
        "degradation plain",
        |t| degradation(&t[0], &t[1], None),
        &[r.clone(), x.clone()],
        opts(),
    );
    assert!(degradation(&r, &randn(&[2, 3, 4, 2], 3), None).is_err());
    assert!(degradation(&r, &x, Some(&tv(&[1.0; 10], &[2, 1, 5, 1]))).is_err());
    assert!(degradation(&r, &x, Some(&randn(&[1, 2, 3, 4, 3], 4))).is_err());
}

// ----- L_FUSION ------------------------------------------------------------------------------

#[test]
fn fusion_is_the_mean_infonce_to_each_clean_embedding() {
    let (a, b, c) = (ex_a(), ex_b(), ex_c());
    let got = val(fusion(&t(&a), &[&t(&b), &t(&c)], 0.5));
    let want = (ref_pair(&a, &b, 0.5, Negatives::Uniform)
        + ref_pair(&a, &c, 0.5, Negatives::Uniform))
        / 2.0;
    close(got, want, 1e-12, "3x3");
    let (f, x, y, z) = (unit(6, 4, 1), unit(6, 4, 2), unit(6, 4, 3), unit(6, 4, 4));
    let want = (val(comp_uniform(&f, &x, 0.1))
        + val(comp_uniform(&f, &y, 0.1))
        + val(comp_uniform(&f, &z, 0.1)))
        / 3.0;
    close(val(fusion(&f, &[&x, &y, &z], 0.1)), want, 1e-10, "random");
    assert_gradients(
        "fusion",
        |t| fusion(&t[0], &[&t[1], &t[2]], 0.5),
        &[unit(4, 3, 5), unit(4, 3, 6), unit(4, 3, 7)],
        opts(),
    );
    assert!(fusion(&f, &[], 0.1).is_err());
    assert!(fusion(&f, &[&unit(5, 4, 9)], 0.1).is_err());
}

// ----- CE ------------------------------------------------------------------------------------

#[test]
fn classification_matches_loops_and_composite() {
    let logits: M = vec![
        vec![1.0, 2.0, 0.5],
        vec![0.0, -1.0, 3.0],
        vec![2.0, 2.5, -0.5],
    ];
    let labels = [1i64, 2, 0];
    let lt = Tensor::from_vec(labels.to_vec(), [3], Device::Cpu).unwrap();
    let want = (0..3)
        .map(|i| lse(&logits[i]) - logits[i][labels[i] as usize])
        .sum::<f64>()
        / 3.0;
    close(val(classification(&t(&logits), &lt)), want, 1e-12, "3x3");

    let x = randn(&[5, 4], 9);
    let y = Tensor::from_vec(vec![3i64, 0, 1, 1, 2], [5], Device::Cpu).unwrap();
    let onehot = {
        let mut v = vec![0.0; 20];
        for (i, c) in [3, 0, 1, 1, 2].iter().enumerate() {
            v[i * 4 + c] = 1.0;
        }
        tv(&v, &[5, 4])
    };
    let comp = val(x
        .log_softmax(1)
        .unwrap()
        .mul(&onehot)
        .unwrap()
        .sum_all()
        .unwrap()
        .mul_scalar(-1.0 / 5.0));
    close(val(classification(&x, &y)), comp, 1e-12, "composite");
    close(
        val(classification(&x, &y)),
        val(x.cross_entropy(&y, Reduction::Mean, 0.0)),
        1e-14,
        "engine CE",
    );
    let y2 = y.clone();
    assert_gradients(
        "classification",
        move |t| classification(&t[0], &y2),
        std::slice::from_ref(&x),
        opts(),
    );
    assert!(classification(
        &x,
        &Tensor::from_vec(vec![0i64; 4], [4], Device::Cpu).unwrap()
    )
    .is_err());
    assert!(classification(&randn(&[5], 1), &y).is_err());
}

// ----- soft targets (paper 002) --------------------------------------------------------------

#[test]
fn progressive_alpha_endpoints_and_midpoint() {
    close(progressive_alpha(0, 100, 0.9, 0.1), 0.9, 1e-15, "start");
    close(progressive_alpha(100, 100, 0.9, 0.1), 0.1, 1e-15, "end");
    close(progressive_alpha(50, 100, 0.9, 0.1), 0.5, 1e-15, "midpoint");
    close(
        progressive_alpha(25, 100, 0.9, 0.1),
        0.1 + 0.8 * (1.0 + (0.25f64 * std::f64::consts::PI).cos()) / 2.0,
        1e-15,
        "quarter",
    );
    close(
        progressive_alpha(500, 100, 0.9, 0.1),
        0.1,
        1e-15,
        "past the end",
    );
    close(progressive_alpha(0, 0, 0.9, 0.1), 0.1, 1e-15, "no steps");
    let mut prev = f64::INFINITY;
    for s in 0..=20 {
        let a = progressive_alpha(s, 20, 0.9, 0.1);
        assert!(a <= prev && (0.1..=0.9).contains(&a));
        prev = a;
    }
}

#[test]
fn soft_with_identity_targets_is_the_uniform_loss() {
    let (a, b, c) = (unit(6, 4, 41), unit(6, 4, 42), unit(6, 4, 43));
    let uniform = val(cross_modal(&[&a, &b, &c], 0.1, Negatives::Uniform));
    let identity = SoftTargets {
        beta: 0.0,
        ..SoftTargets::default()
    };
    close(
        val(cross_modal_soft(&[&a, &b, &c], 0.1, &identity, 1.0)),
        uniform,
        1e-10,
        "beta 0, alpha 1",
    );
    // Intra targets everywhere (inter off): alpha no longer matters.
    let intra_only = SoftTargets {
        beta: 0.0,
        inter: false,
        ..SoftTargets::default()
    };
    for alpha in [0.0, 0.3, 0.9] {
        close(
            val(cross_modal_soft(&[&a, &b, &c], 0.1, &intra_only, alpha)),
            uniform,
            1e-10,
            "inter off",
        );
    }
    // And a real beta changes the loss.
    let soft = val(cross_modal_soft(
        &[&a, &b, &c],
        0.1,
        &SoftTargets::default(),
        1.0,
    ));
    assert!((soft - uniform).abs() > 1e-6);
}

#[test]
fn soft_targets_rows_are_distributions() {
    let (a, b) = (unit(5, 3, 1), unit(5, 3, 2));
    let st = SoftTargets {
        beta: 0.2,
        tau_target: 0.3,
        inter: true,
    };
    let p = st.intra(&a).unwrap();
    let q = st.inter(&a, &b).unwrap();
    for m in [&p, &q] {
        for r in rows(m) {
            close(r.iter().sum::<f64>(), 1.0, 1e-12, "row sum");
            assert!(r.iter().all(|&x| x >= 0.0));
        }
    }
    // beta = 1: the pure self-similarity softmax; beta = 0: the identity.
    let (ar, br) = (rows(&a), rows(&b));
    let p1 = rows(&SoftTargets { beta: 1.0, ..st }.intra(&a).unwrap());
    let p0 = rows(&SoftTargets { beta: 0.0, ..st }.intra(&a).unwrap());
    for i in 0..5 {
        let sm = softmax(
            &ar.iter()
                .map(|aj| dot(&ar[i], aj) / 0.3)
                .collect::<Vec<_>>(),
        );
        let qi = softmax(
            &ar.iter()
                .map(|aj| dot(&br[i], aj) / 0.3)
                .collect::<Vec<_>>(),
        );
        for j in 0..5 {
            close(p1[i][j], sm[j], 1e-12, "beta 1");
            close(p0[i][j], if i == j { 1.0 } else { 0.0 }, 1e-15, "beta 0");
            close(rows(&q)[i][j], qi[j], 1e-12, "inter");
        }
    }
    // The split: floor(alpha N) rows of intra targets.
    assert_eq!(st.n_intra(10, 0.3), 3);
    assert_eq!(st.n_intra(10, 0.9), 9);
    assert_eq!(st.n_intra(8, 0.1), 0);
    assert_eq!(st.n_intra(8, 1.0), 8);
    let (tg, w) = st.pair_targets(&a, &b, 0.5).unwrap(); // n_intra = 2
    let (tg, w) = (rows(&tg), w.to_f64_vec().unwrap());
    let (pr, qr) = (rows(&p), rows(&q));
    assert_eq!(tg[..2], pr[..2]);
    assert_eq!(tg[2..], qr[2..]);
    assert_eq!(w, vec![0.25, 0.25, 0.5 / 3.0, 0.5 / 3.0, 0.5 / 3.0]);
}

#[test]
fn soft_matches_plain_loops_on_3x3() {
    let (a, b, c) = (ex_a(), ex_b(), ex_c());
    let (ta, tb, tc) = (t(&a), t(&b), t(&c));
    let st = SoftTargets {
        beta: 0.2,
        tau_target: 0.4,
        inter: true,
    };
    // alpha 0.5: 1 intra row, 2 inter; 0.9: 2 and 1; 0.2: all inter; 1: all intra.
    for alpha in [0.5, 0.9, 0.2, 1.0] {
        let got = val(cross_modal_soft(&[&ta, &tb, &tc], 0.5, &st, alpha));
        let want = ref_soft(&[&a, &b, &c], 0.5, 0.2, 0.4, alpha);
        close(got, want, 1e-12, &format!("alpha {alpha}"));
    }
}

/// The soft loss written as paper 002 Eq. 12 reads, with engine ops on row subsets: `H(P rows,
/// softmax(a_bar b^T))` on the first `n_intra` rows of `a`, `H(Q rows, softmax(a_under b^T))`
/// on the rest.
fn comp_soft_pair(a: &Tensor, b: &Tensor, tau: f64, beta: f64, tau_t: f64, alpha: f64) -> Tensor {
    let n = a.dims()[0];
    let ni = (alpha * n as f64 + 1e-9).floor() as usize;
    let dir = |x: &Tensor, y: &Tensor| -> Tensor {
        let p = x
            .matmul(&x.t().unwrap())
            .unwrap()
            .div_scalar(tau_t)
            .unwrap()
            .softmax(1)
            .unwrap()
            .mul_scalar(beta)
            .unwrap()
            .add(&eye(n).mul_scalar(1.0 - beta).unwrap())
            .unwrap();
        let q = y
            .matmul(&x.t().unwrap())
            .unwrap()
            .div_scalar(tau_t)
            .unwrap()
            .softmax(1)
            .unwrap();
        let h = |rows_of: &Tensor, start: usize, len: usize| -> Tensor {
            let xs = x.narrow(0, start, len).unwrap();
            let s = xs.matmul(&y.t().unwrap()).unwrap().div_scalar(tau).unwrap();
            s.log_softmax(1)
                .unwrap()
                .mul(&rows_of.narrow(0, start, len).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .mul_scalar(-1.0 / len as f64)
                .unwrap()
        };
        h(&p, 0, ni)
            .mul_scalar(alpha)
            .unwrap()
            .add(&h(&q, ni, n - ni).mul_scalar(1.0 - alpha).unwrap())
            .unwrap()
    };
    dir(a, b).add(&dir(b, a)).unwrap().mul_scalar(0.5).unwrap()
}

#[test]
fn soft_matches_the_paper_composite_and_has_gradients() {
    let (a, b, c) = (unit(10, 4, 51), unit(10, 4, 52), unit(10, 4, 53));
    let st = SoftTargets {
        beta: 0.2,
        tau_target: 0.1,
        inter: true,
    };
    for alpha in [0.7, 0.35] {
        let want = [(&a, &b), (&a, &c), (&b, &c)]
            .iter()
            .map(|(x, y)| comp_soft_pair(x, y, 0.1, 0.2, 0.1, alpha).item().unwrap())
            .sum::<f64>();
        close(
            val(cross_modal_soft(&[&a, &b, &c], 0.1, &st, alpha)),
            want,
            1e-10,
            &format!("alpha {alpha}"),
        );
    }
    // The targets are constants: check the gradient with targets fixed from the inputs.
    let (x, y) = (unit(5, 3, 61), unit(5, 3, 62));
    let st = SoftTargets {
        beta: 0.3,
        tau_target: 0.5,
        inter: true,
    };
    let (t_ab, w) = st.pair_targets(&x, &y, 0.5).unwrap();
    let (t_ba, _) = st.pair_targets(&y, &x, 0.5).unwrap();
    close(
        val(soft_pair_loss(&x, &y, 0.5, &t_ab, &t_ba, &w)),
        val(cross_modal_soft(&[&x, &y], 0.5, &st, 0.5)),
        1e-14,
        "soft_pair_loss",
    );
    assert_gradients(
        "soft_pair_loss",
        |t| soft_pair_loss(&t[0], &t[1], 0.5, &t_ab, &t_ba, &w),
        &[x.clone(), y.clone()],
        opts(),
    );
    // Gradient flows to every modality through cross_modal_soft.
    let xs: Vec<Tensor> = [&x, &y, &unit(5, 3, 63)]
        .iter()
        .map(|t| t.detach().with_requires_grad().unwrap())
        .collect();
    cross_modal_soft(&[&xs[0], &xs[1], &xs[2]], 0.5, &st, 0.5)
        .unwrap()
        .backward()
        .unwrap();
    for t in &xs {
        let g = t.grad().expect("a gradient").to_f64_vec().unwrap();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
    }
}

#[test]
fn soft_errors() {
    let (a, b) = (unit(4, 3, 1), unit(4, 3, 2));
    let st = SoftTargets::default();
    assert!(cross_modal_soft(&[&a], 0.1, &st, 0.5).is_err());
    assert!(cross_modal_soft(&[&a, &unit(5, 3, 3)], 0.1, &st, 0.5).is_err());
    assert!(cross_modal_soft(&[&a, &b], 0.1, &st, 1.5).is_err());
    assert!(cross_modal_soft(&[&a, &b], 0.0, &st, 0.5).is_err());
    let bad = SoftTargets { beta: 1.2, ..st };
    assert!(cross_modal_soft(&[&a, &b], 0.1, &bad, 0.5).is_err());
    let bad = SoftTargets {
        tau_target: 0.0,
        ..st
    };
    assert!(cross_modal_soft(&[&a, &b], 0.1, &bad, 0.5).is_err());
    let (t, w) = st.pair_targets(&a, &b, 0.5).unwrap();
    assert!(soft_pair_loss(&a, &b, 0.1, &t, &t, &w.reshape([1, 4]).unwrap()).is_err());
}

// ----- MoCo (paper 003) ----------------------------------------------------------------------

fn comp_moco(q: &Tensor, k: &Tensor, queue: &Tensor, tau: f64) -> Result<Tensor> {
    let pos = q.mul(k)?.sum(&[1], true)?;
    let neg = q.matmul(&queue.t()?)?;
    let l = Tensor::concat(&[&pos, &neg], 1)?.div_scalar(tau)?;
    l.log_softmax(1)?.narrow(1, 0, 1)?.mean_all()?.neg()
}

#[test]
fn moco_queue_starts_with_seeded_unit_keys() {
    let q = MocoQueue::new(4, 6, 7, DType::F64, Device::Cpu).unwrap();
    assert_eq!(q.keys().dims(), &[6, 4]);
    assert_eq!((q.len(), q.ptr(), q.is_empty()), (6, 0, false));
    for r in rows(q.keys()) {
        close(dot(&r, &r), 1.0, 1e-12, "unit key");
    }
    let again = MocoQueue::new(4, 6, 7, DType::F64, Device::Cpu).unwrap();
    assert_eq!(rows(q.keys()), rows(again.keys()));
    let other = MocoQueue::new(4, 6, 8, DType::F64, Device::Cpu).unwrap();
    assert_ne!(rows(q.keys()), rows(other.keys()));
    assert!(!q.keys().requires_grad());
    assert!(MocoQueue::new(0, 6, 7, DType::F64, Device::Cpu).is_err());
    assert!(MocoQueue::new(4, 0, 7, DType::F64, Device::Cpu).is_err());
}

#[test]
fn moco_enqueue_wraps_around() {
    let mut q = MocoQueue::new(3, 5, 1, DType::F64, Device::Cpu).unwrap();
    let init = rows(q.keys());
    let batch = |start: usize, n: usize| -> M {
        (0..n)
            .map(|r| vec![(start + r) as f64, 10.0 + r as f64, -1.0])
            .collect()
    };
    let (b1, b2, b3) = (batch(1, 2), batch(3, 2), batch(5, 3));
    q.enqueue(&t(&b1)).unwrap();
    assert_eq!(q.ptr(), 2);
    q.enqueue(&t(&b2)).unwrap();
    assert_eq!(q.ptr(), 4);
    let k = rows(q.keys());
    assert_eq!(k[..2], b1[..]);
    assert_eq!(k[2..4], b2[..]);
    assert_eq!(k[4], init[4]);
    // Three more: slots 4, 0, 1.
    q.enqueue(&t(&b3)).unwrap();
    assert_eq!(q.ptr(), 2);
    let k = rows(q.keys());
    assert_eq!(
        k,
        vec![
            b3[1].clone(),
            b3[2].clone(),
            b2[0].clone(),
            b2[1].clone(),
            b3[0].clone()
        ]
    );
    // A batch larger than the queue: the last K rows win, in FIFO slots.
    let mut small = MocoQueue::new(3, 3, 2, DType::F64, Device::Cpu).unwrap();
    small.enqueue(&t(&batch(0, 1))).unwrap(); // ptr 1
    let big = batch(100, 5); // rows r -> slot (1 + r) % 3
    small.enqueue(&t(&big)).unwrap();
    assert_eq!(small.ptr(), 0);
    assert_eq!(
        rows(small.keys()),
        vec![big[2].clone(), big[3].clone(), big[4].clone()]
    );
    // State round trip and errors.
    let restored = MocoQueue::from_state(q.keys().clone(), q.ptr()).unwrap();
    assert_eq!((rows(restored.keys()), restored.ptr()), (rows(q.keys()), 2));
    assert!(MocoQueue::from_state(q.keys().clone(), 5).is_err());
    assert!(q.enqueue(&randn(&[2, 4], 1)).is_err());
    assert!(q
        .enqueue(&Tensor::zeros([2, 3], DType::F32, Device::Cpu).unwrap())
        .is_err());
}

#[test]
fn moco_loss_matches_composite_and_loops() {
    let queue = MocoQueue::new(4, 9, 3, DType::F64, Device::Cpu).unwrap();
    let (q, k) = (unit(5, 4, 71), unit(5, 4, 72));
    let want = val(comp_moco(&q, &k, queue.keys(), 0.2));
    close(val(queue.loss(&q, &k, 0.2)), want, 1e-10, "composite");

    // 3x3: queries a, keys b, queue c, tau 0.5: row i is [a_i.b_i, a_i.c_0, a_i.c_1, a_i.c_2].
    let (a, b, c) = (ex_a(), ex_b(), ex_c());
    let qq = MocoQueue::from_state(t(&c), 0).unwrap();
    let want = (0..3)
        .map(|i| {
            let mut lane = vec![dot(&a[i], &b[i]) / 0.5];
            lane.extend(c.iter().map(|cj| dot(&a[i], cj) / 0.5));
            lane_ce(&lane, 0)
        })
        .sum::<f64>()
        / 3.0;
    close(val(qq.loss(&t(&a), &t(&b), 0.5)), want, 1e-12, "3x3");

    let (k2, qk) = (k.clone(), queue.clone());
    assert_gradients(
        "moco q",
        move |t| qk.loss(&t[0], &k2, 0.5),
        std::slice::from_ref(&q),
        opts(),
    );
    // The key gets no gradient (the key encoder moves by EMA only).
    let (ql, kl) = (
        q.with_requires_grad().unwrap(),
        k.with_requires_grad().unwrap(),
    );
    queue.loss(&ql, &kl, 0.5).unwrap().backward().unwrap();
    assert!(ql.grad().is_some() && kl.grad().is_none());
    assert!(queue.loss(&unit(5, 3, 1), &unit(5, 3, 2), 0.5).is_err());
}

// ----- EMA update ----------------------------------------------------------------------------

fn model(seed: u64, out: usize, name: &str) -> (ParamStore, Linear, BatchNorm) {
    let store = ParamStore::with_seed(seed).with_dtype(DType::F64);
    let fc = Linear::new(&store.sub(name), 4, out, true).unwrap();
    let bn = BatchNorm::new_1d(&store.sub("bn"), out, BatchNormConfig::default()).unwrap();
    (store, fc, bn)
}

#[test]
fn ema_update_moves_params_and_copies_buffers() {
    let (target, t_fc, _t_bn) = model(1, 3, "fc");
    let (source, s_fc, s_bn) = model(2, 3, "fc");
    // Move the source's running statistics away from their initial values.
    s_bn.forward(&s_fc.forward(&randn(&[6, 4], 5)).unwrap())
        .unwrap();
    let before: Vec<(String, Vec<f64>)> = target
        .params()
        .into_iter()
        .map(|(n, t)| (n, t.to_f64_vec().unwrap()))
        .collect();
    assert_ne!(
        target.buffers()[0].1.to_f64_vec().unwrap(),
        source.buffers()[0].1.to_f64_vec().unwrap()
    );
    ema_update(&target, &source, 0.9).unwrap();
    for (name, old) in &before {
        let now = target.get(name).unwrap().to_f64_vec().unwrap();
        let src = source.get(name).unwrap().to_f64_vec().unwrap();
        for i in 0..old.len() {
            close(now[i], 0.9 * old[i] + 0.1 * src[i], 1e-15, name);
        }
        let p = target.get(name).unwrap();
        assert!(
            p.requires_grad() && p.is_leaf(),
            "{name} stays a trainable leaf"
        );
    }
    // The layer's own handle sees the update (in place).
    assert_eq!(
        t_fc.weight.to_f64_vec().unwrap(),
        target.get("fc.weight").unwrap().to_f64_vec().unwrap()
    );
    for (name, b) in target.buffers() {
        assert_eq!(
            b.to_f64_vec().unwrap(),
            source.get(&name).unwrap().to_f64_vec().unwrap(),
            "{name}"
        );
    }
    // m = 1 keeps the target, m = 0 copies the source.
    let kept = target.get("fc.weight").unwrap().to_f64_vec().unwrap();
    ema_update(&target, &source, 1.0).unwrap();
    assert_eq!(target.get("fc.weight").unwrap().to_f64_vec().unwrap(), kept);
    ema_update(&target, &source, 0.0).unwrap();
    assert_eq!(
        target.get("fc.weight").unwrap().to_f64_vec().unwrap(),
        source.get("fc.weight").unwrap().to_f64_vec().unwrap()
    );
}

#[test]
fn ema_update_rejects_mismatched_stores() {
    let (target, _, _) = model(1, 3, "fc");
    let snapshot: Vec<Vec<f64>> = target
        .state_tensors()
        .iter()
        .map(|(_, t)| t.to_f64_vec().unwrap())
        .collect();
    let (renamed, _, _) = model(2, 3, "head");
    let (wider, _, _) = model(2, 2, "fc");
    let (source, _, _) = model(2, 3, "fc");
    assert!(ema_update(&target, &renamed, 0.9).is_err());
    assert!(ema_update(&target, &wider, 0.9).is_err());
    assert!(ema_update(&target, &source, 1.5).is_err());
    assert!(ema_update(&target, &source, f64::NAN).is_err());
    let extra = ParamStore::with_seed(2).with_dtype(DType::F64);
    Linear::new(&extra.sub("fc"), 4, 3, true).unwrap();
    BatchNorm::new_1d(&extra.sub("bn"), 3, BatchNormConfig::default()).unwrap();
    Linear::new(&extra.sub("more"), 3, 3, false).unwrap();
    assert!(ema_update(&target, &extra, 0.9).is_err());
    let after: Vec<Vec<f64>> = target
        .state_tensors()
        .iter()
        .map(|(_, t)| t.to_f64_vec().unwrap())
        .collect();
    assert_eq!(snapshot, after, "a failed update changes nothing");
}

// ----- loss weights --------------------------------------------------------------------------

#[test]
fn loss_weights_defaults_and_total() {
    let w = LossWeights::default();
    assert_eq!((w.cm, w.im, w.deg, w.fusion), (1.0, 0.5, 0.2, 0.5));
    assert_eq!(LossWeights::paper().fusion, 0.0);
    let s = |v: f64| Tensor::scalar(v, DType::F64, Device::Cpu).unwrap();
    let terms = LossTerms {
        cm: Some(s(2.0)),
        im: Some(s(3.0)),
        deg: Some(s(5.0)),
        fusion: Some(s(7.0)),
    };
    close(val(w.total(&terms)), 2.0 + 1.5 + 1.0 + 3.5, 1e-15, "total");
    close(val(LossWeights::paper().total(&terms)), 4.5, 1e-15, "paper");
    // A switched-off term need not be computed; a switched-on one must be.
    let partial = LossTerms {
        cm: Some(s(2.0)),
        ..LossTerms::default()
    };
    let cm_only = LossWeights {
        cm: 1.0,
        im: 0.0,
        deg: 0.0,
        fusion: 0.0,
    };
    close(val(cm_only.total(&partial)), 2.0, 1e-15, "cm only");
    assert!(w.total(&partial).is_err());
    let off = LossWeights { cm: 0.0, ..cm_only };
    assert!(off.total(&terms).is_err());
}
