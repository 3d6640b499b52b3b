//! Optimizers against hand-computed PyTorch updates, convergence on a quadratic, learning-rate
//! schedules and gradient clipping.

mod common;
use common::*;
use rcmcl::engine::nn::ParamStore;
use rcmcl::engine::optim::{
    clip_grad_norm, grad_norm, AdamW, AdamWConfig, LrSchedule, Optimizer, Sgd, SgdConfig,
};
use rcmcl::engine::{DType, Device, Tensor};

const P0: [f64; 3] = [1.0, -2.0, 0.5];
const GRADS: [[f64; 3]; 3] = [[0.1, -0.2, 0.3], [0.4, 0.1, -0.5], [-0.3, 0.2, 0.6]];

/// A parameter holding `P0` in `dtype`.
fn param(dtype: DType) -> Tensor {
    t64(&P0, &[3])
        .to_dtype(dtype)
        .unwrap()
        .with_requires_grad()
        .unwrap()
}

fn set_grad(p: &Tensor, g: &[f64]) {
    p.set_grad(Some(t64(g, &[p.numel()]).to_dtype(p.dtype()).unwrap()));
}

/// Runs three steps with `GRADS` and compares the parameter after each with `want`.
fn check_steps(make: impl Fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer>, want: [[f64; 3]; 3]) {
    for (dtype, tol) in [(DType::F64, 1e-13), (DType::F32, 2e-6)] {
        let p = param(dtype);
        let mut opt = make(vec![("w".into(), p.clone())]);
        for (step, (g, w)) in GRADS.iter().zip(&want).enumerate() {
            set_grad(&p, g);
            opt.step().unwrap();
            let got = values(&p);
            for (i, (a, b)) in got.iter().zip(w).enumerate() {
                assert!(
                    (a - b).abs() <= tol * (1.0 + b.abs()),
                    "{dtype} step {step} element {i}: got {a}, want {b}"
                );
            }
        }
    }
}

fn sgd(cfg: SgdConfig) -> impl Fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer> {
    move |params| Box::new(Sgd::new(params, cfg).unwrap())
}

#[test]
fn sgd_plain_matches_hand_computed() {
    check_steps(
        sgd(SgdConfig::new(0.1)),
        [
            [0.99, -1.98, 0.47],
            [0.95, -1.99, 0.52],
            [0.98, -2.01, 0.46],
        ],
    );
}

#[test]
fn sgd_weight_decay_matches_hand_computed() {
    check_steps(
        sgd(SgdConfig::new(0.1).weight_decay(0.01)),
        [
            [0.989, -1.978, 0.4695],
            [0.948011, -1.986022, 0.5190305],
            [0.977062989, -2.004035978, 0.4585114695],
        ],
    );
}

#[test]
fn sgd_momentum_matches_hand_computed() {
    // The buffer starts as the first decayed gradient (no dampening on step 1).
    check_steps(
        sgd(SgdConfig::new(0.1).momentum(0.9).weight_decay(0.01)),
        [
            [0.989, -1.978, 0.4695],
            [0.938111, -1.966222, 0.4915805],
            [0.921372789, -1.973655578, 0.4509613695],
        ],
    );
}

#[test]
fn sgd_nesterov_matches_hand_computed() {
    // Step 1: d = g + 0.01 p = [0.11, -0.22, 0.305]; buf = d; p -= 0.1 * (d + 0.9 buf).
    check_steps(
        sgd(SgdConfig::new(0.1)
            .momentum(0.9)
            .weight_decay(0.01)
            .nesterov(true)),
        [
            [0.9791, -1.9582, 0.44205],
            [0.89232971, -1.95565942, 0.511505105],
            [0.906422212551, -1.980419525102, 0.4144406848005],
        ],
    );
}

#[test]
fn sgd_dampening_matches_hand_computed() {
    check_steps(
        sgd(SgdConfig::new(0.1).momentum(0.9).dampening(0.1)),
        [
            [0.99, -1.98, 0.47],
            [0.945, -1.971, 0.488],
            [0.9315, -1.9809, 0.4502],
        ],
    );
}

#[test]
fn adamw_matches_hand_computed() {
    // Step 1: p *= 1 - 0.01 * 0.1, then m/bc1 = g and sqrt(v/bc2) = |g|, so p -= 0.01 sign(g).
    check_steps(
        |params| Box::new(AdamW::new(params, AdamWConfig::new(0.01).weight_decay(0.1)).unwrap()),
        [
            [0.9890000009999999, -1.9880000005, 0.4895000003333333],
            [0.9791672363965117, -1.9833486302713677, 0.4919461123094795],
            [0.9764209861415688, -1.984092249393122, 0.48845257821453414],
        ],
    );
    check_steps(
        |params| {
            let cfg = AdamWConfig::new(0.1)
                .betas(0.8, 0.99)
                .eps(1e-3)
                .weight_decay(0.0);
            Box::new(AdamW::new(params, cfg).unwrap())
        },
        [
            [0.900990099009901, -1.900497512437811, 0.4003322259136213],
            [0.8100375673033664, -1.87951670242455, 0.4352392385196056],
            [0.7984009817163669, -1.9152761269707799, 0.4021130435552457],
        ],
    );
}

#[test]
fn adamw_state_tensors_hold_the_moments() {
    let p = param(DType::F64);
    let mut opt = AdamW::new(vec![("w".into(), p.clone())], AdamWConfig::new(0.01)).unwrap();
    assert!(opt.state_tensors().is_empty());
    for g in &GRADS {
        set_grad(&p, g);
        opt.step().unwrap();
    }
    let state = opt.state_tensors();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["adamw.m.w", "adamw.v.w", "adamw.step.w"]);
    assert_close(&values(&state[0].1), &[0.0141, 0.0128, 0.0393], 1e-13);
    assert_close(
        &values(&state[1].1),
        &[0.00025982001, 8.991004e-05, 0.00069957009],
        1e-12,
    );
    assert_eq!(state[2].1.to_vec::<i64>().unwrap(), vec![3]);
}

#[test]
fn parameters_without_grad_are_skipped() {
    let a = param(DType::F64);
    let b = param(DType::F64);
    let params = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
    let mut adam = AdamW::new(params.clone(), AdamWConfig::new(0.1)).unwrap();
    let mut sgd = Sgd::new(params, SgdConfig::new(0.1).momentum(0.9)).unwrap();
    set_grad(&a, &GRADS[0]);
    adam.step().unwrap();
    sgd.step().unwrap();
    // Weight decay too only applies to parameters with a gradient, as in PyTorch.
    assert_eq!(values(&b), P0.to_vec(), "b has no grad and must not move");
    assert_ne!(values(&a), P0.to_vec());
    assert_eq!(adam.step_count("a"), Some(1));
    assert_eq!(adam.step_count("b"), Some(0));
    assert_eq!(sgd.state_tensors().len(), 1, "only a has a momentum buffer");
    adam.zero_grad();
    assert!(a.grad().is_none());
}

#[test]
fn optimizers_minimise_a_quadratic() {
    // L = sum(c * (p - t)^2) with different curvatures per coordinate.
    let target = t64(&[3.0, -1.0, 0.5, 2.0], &[4]);
    let curvature = t64(&[1.0, 0.5, 2.0, 0.25], &[4]);
    let loss_of = |p: &Tensor| {
        p.sub(&target.to_dtype(p.dtype()).unwrap())
            .unwrap()
            .square()
            .unwrap()
            .mul(&curvature.to_dtype(p.dtype()).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let run = |opt: &mut dyn Optimizer, p: &Tensor, steps: usize| {
        let first = loss_of(p).item().unwrap();
        for _ in 0..steps {
            opt.zero_grad();
            loss_of(p).backward().unwrap();
            opt.step().unwrap();
        }
        (first, loss_of(p).item().unwrap())
    };
    let store = ParamStore::new();
    let p = store
        .root()
        .param("p", Tensor::zeros([4], DType::F64, Device::Cpu).unwrap())
        .unwrap();
    let mut sgd =
        Sgd::from_store(&store, SgdConfig::new(0.05).momentum(0.9).nesterov(true)).unwrap();
    let (first, last) = run(&mut sgd, &p, 300);
    assert!(first > 5.0 && last < 1e-10, "SGD: {first} -> {last}");
    assert_close(&values(&p), &[3.0, -1.0, 0.5, 2.0], 1e-6);

    let store = ParamStore::new();
    let p = store
        .root()
        .param("p", Tensor::zeros([4], DType::F32, Device::Cpu).unwrap())
        .unwrap();
    let mut adam = AdamW::from_store(&store, AdamWConfig::new(0.05).weight_decay(0.0)).unwrap();
    let (first, last) = run(&mut adam, &p, 1500);
    assert!(first > 5.0 && last < 1e-6, "AdamW: {first} -> {last}");
}

#[test]
fn large_parameters_update_in_parallel_like_small_ones() {
    // Above the parallel threshold the kernel splits into chunks; every element must match the
    // serial result for the same values.
    let n = 100_003;
    let big = rand64(&[n], 5).with_requires_grad().unwrap();
    let g = rand64(&[n], 6);
    let small_idx = [0usize, 1, 16_383, 16_384, 50_000, n - 1];
    let smalls: Vec<Tensor> = small_idx
        .iter()
        .map(|&i| t64(&[values(&big)[i]], &[1]).with_requires_grad().unwrap())
        .collect();
    let mut params = vec![("big".to_string(), big.clone())];
    params.extend(
        smalls
            .iter()
            .enumerate()
            .map(|(k, t)| (format!("s{k}"), t.clone())),
    );
    let mut opt = AdamW::new(params, AdamWConfig::new(0.01)).unwrap();
    let gv = values(&g);
    for _ in 0..2 {
        big.set_grad(Some(g.clone()));
        for (t, &i) in smalls.iter().zip(&small_idx) {
            t.set_grad(Some(t64(&[gv[i]], &[1])));
        }
        opt.step().unwrap();
    }
    let bv = values(&big);
    for (t, &i) in smalls.iter().zip(&small_idx) {
        assert_eq!(values(t)[0], bv[i], "element {i}");
    }
}

#[test]
fn invalid_configs_are_errors() {
    let p = || vec![("w".to_string(), param(DType::F64))];
    assert!(Sgd::new(p(), SgdConfig::new(-1.0)).is_err());
    assert!(Sgd::new(p(), SgdConfig::new(0.1).nesterov(true)).is_err());
    assert!(Sgd::new(
        p(),
        SgdConfig::new(0.1)
            .momentum(0.9)
            .dampening(0.5)
            .nesterov(true)
    )
    .is_err());
    assert!(AdamW::new(p(), AdamWConfig::new(0.1).betas(1.0, 0.9)).is_err());
    assert!(AdamW::new(p(), AdamWConfig::new(f64::NAN)).is_err());
    let w = param(DType::F64);
    let dup = vec![("w".to_string(), w.clone()), ("w".to_string(), w)];
    let err = AdamW::new(dup, AdamWConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("'w'"), "{err}");
    let not_leaf = vec![("x".to_string(), t64(&P0, &[3]))];
    let err = Sgd::new(not_leaf, SgdConfig::new(0.1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("'x'") && err.contains("requires a gradient"),
        "{err}"
    );
    // A gradient of the wrong shape is reported, naming the parameter.
    let w = param(DType::F64);
    let mut opt = Sgd::new(vec![("w".into(), w.clone())], SgdConfig::new(0.1)).unwrap();
    w.set_grad(Some(t64(&[1.0, 2.0], &[2])));
    let err = opt.step().unwrap_err().to_string();
    assert!(
        err.contains("'w'") && err.contains("[2]") && err.contains("[3]"),
        "{err}"
    );
}

#[test]
fn set_lr_changes_the_next_step() {
    let p = param(DType::F64);
    let mut opt = Sgd::new(vec![("w".into(), p.clone())], SgdConfig::new(0.1)).unwrap();
    opt.set_lr(0.5);
    assert_eq!(opt.lr(), 0.5);
    set_grad(&p, &[1.0, 1.0, 1.0]);
    opt.step().unwrap();
    assert_close(&values(&p), &[0.5, -2.5, 0.0], 1e-15);
}

#[test]
fn warmup_cosine_schedule_values() {
    let s = LrSchedule::WarmupCosine {
        base_lr: 1.0,
        warmup_steps: 10,
        total_steps: 110,
        min_lr: 0.1,
    };
    s.validate().unwrap();
    let at = |step| s.lr_at(step);
    assert_eq!(at(0), 0.0);
    assert_close(&[at(1), at(5), at(10)], &[0.1, 0.5, 1.0], 1e-15);
    // Halfway through the decay the cosine is 0: the midpoint of base and min.
    assert_close(&[at(60)], &[0.55], 1e-15);
    // A quarter of the way: min + (base - min) * (1 + cos(pi/4)) / 2.
    let quarter = 0.1 + 0.9 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
    assert_close(&[at(35)], &[quarter], 1e-15);
    assert_close(
        &[at(109), at(110), at(1000)],
        &[
            0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 0.99).cos()),
            0.1,
            0.1,
        ],
        1e-15,
    );
    // Monotone: up during warm-up, down after.
    for step in 0..10 {
        assert!(at(step) < at(step + 1));
    }
    for step in 10..110 {
        assert!(at(step) > at(step + 1));
    }
    let bad = LrSchedule::WarmupCosine {
        base_lr: 1.0,
        warmup_steps: 10,
        total_steps: 5,
        min_lr: 0.0,
    };
    assert!(bad.validate().is_err());
}

#[test]
fn step_decay_schedule_values() {
    let s = LrSchedule::StepDecay {
        base_lr: 0.1,
        step_size: 30,
        gamma: 0.1,
    };
    s.validate().unwrap();
    assert_close(
        &[
            s.lr_at(0),
            s.lr_at(29),
            s.lr_at(30),
            s.lr_at(59),
            s.lr_at(61),
        ],
        &[0.1, 0.1, 0.01, 0.01, 0.001],
        1e-14,
    );
    assert!(LrSchedule::StepDecay {
        base_lr: 0.1,
        step_size: 0,
        gamma: 0.5
    }
    .validate()
    .is_err());
    assert_eq!(LrSchedule::Constant { lr: 0.3 }.lr_at(12345), 0.3);
}

#[test]
fn clip_grad_norm_scales_to_max_norm() {
    let a = t64(&[0.0, 0.0], &[2]).with_requires_grad().unwrap();
    let b = t64(&[0.0], &[1]).with_requires_grad().unwrap();
    let c = t64(&[0.0], &[1]).with_requires_grad().unwrap(); // no grad: skipped
    a.set_grad(Some(t64(&[3.0, 4.0], &[2])));
    b.set_grad(Some(t64(&[12.0], &[1])));
    let params = [a.clone(), b.clone(), c.clone()];
    assert_close(&[grad_norm(&params).unwrap()], &[13.0], 1e-15);
    // Above the limit: nothing changes, the norm is still reported.
    assert_close(&[clip_grad_norm(&params, 100.0).unwrap()], &[13.0], 1e-15);
    assert_eq!(values(&a.grad().unwrap()), vec![3.0, 4.0]);
    let total = clip_grad_norm(&params, 6.5).unwrap();
    assert_close(&[total], &[13.0], 1e-15);
    let coef = 6.5 / (13.0 + 1e-6);
    assert_close(
        &values(&a.grad().unwrap()),
        &[3.0 * coef, 4.0 * coef],
        1e-15,
    );
    assert_close(&values(&b.grad().unwrap()), &[12.0 * coef], 1e-15);
    assert!(c.grad().is_none());
    assert_close(&[grad_norm(&params).unwrap()], &[6.5], 1e-6);
    assert!(clip_grad_norm(&params, -1.0).is_err());
}

#[test]
fn clip_grad_norm_with_shared_gradient_storage_scales_once() {
    // y = a + b hands the same gradient tensor to both inputs.
    let a = t64(&[1.0, 2.0], &[2]).with_requires_grad().unwrap();
    let b = t64(&[3.0, 4.0], &[2]).with_requires_grad().unwrap();
    a.add(&b)
        .unwrap()
        .backward_with(&t64(&[3.0, 4.0], &[2]))
        .unwrap();
    let params = [a.clone(), b.clone()];
    let total = clip_grad_norm(&params, 1.0).unwrap();
    assert_close(&[total], &[50f64.sqrt()], 1e-15);
    let coef = 1.0 / (50f64.sqrt() + 1e-6);
    assert_close(
        &values(&a.grad().unwrap()),
        &[3.0 * coef, 4.0 * coef],
        1e-14,
    );
    assert_close(
        &values(&b.grad().unwrap()),
        &[3.0 * coef, 4.0 * coef],
        1e-14,
    );
}

#[test]
fn clip_grad_norm_leaves_non_finite_gradients_alone() {
    let a = t64(&[0.0, 0.0], &[2]).with_requires_grad().unwrap();
    a.set_grad(Some(t64(&[f64::INFINITY, 1.0], &[2])));
    let total = clip_grad_norm(std::slice::from_ref(&a), 1.0).unwrap();
    assert!(total.is_infinite());
    assert_eq!(values(&a.grad().unwrap()), vec![f64::INFINITY, 1.0]);
}

#[test]
fn clip_grad_norm_in_f32_over_many_elements() {
    let n = 70_000; // above the parallel threshold
    let a = Tensor::zeros([n], DType::F32, Device::Cpu)
        .unwrap()
        .with_requires_grad()
        .unwrap();
    a.set_grad(Some(
        Tensor::full([n], 0.5, DType::F32, Device::Cpu).unwrap(),
    ));
    let total = clip_grad_norm(std::slice::from_ref(&a), 1.0).unwrap();
    assert_close(&[total], &[0.5 * (n as f64).sqrt()], 1e-12);
    assert_close(
        &[grad_norm(std::slice::from_ref(&a)).unwrap()],
        &[1.0],
        1e-5,
    );
}
