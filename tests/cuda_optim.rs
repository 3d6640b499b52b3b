//! The fused CUDA optimizers and gradient clipping against the CPU: several AdamW and SGD steps
//! (weight decay, momentum, dampening, Nesterov) from the same start on both devices, parameters
//! of odd sizes (1, 33, 4097, ...) in f32 and f64, compared after every step (within the f32
//! agreement bound, and bit for bit: the kernels do the CPU's arithmetic step by step); skipped
//! parameters (per-parameter step counts), one tensor under two names, optimizer state loaded
//! from the CPU; the global gradient norm and clipping above and below the threshold.
//! Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::optim::{
    clip_grad_norm, grad_norm, AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig,
};
use rcmcl::engine::{DType, Device, Tensor};

/// Parameter shapes: sizes 1, 33, 4097, a matrix, and one of several chunks (4096 elements each).
const SHAPES: &[&[usize]] = &[&[1], &[33], &[4097], &[31, 33], &[3, 4097]];

/// Named parameters.
type Named = Vec<(String, Tensor)>;

/// The same named parameters on the CPU and on `device` (f32, plus one f64 parameter when
/// `with_f64`).
fn params(device: Device, with_f64: bool, seed: u64) -> (Named, Named) {
    let mut cpu = Vec::new();
    let mut gpu = Vec::new();
    for (k, dims) in SHAPES.iter().enumerate() {
        let p = randn(dims, seed + k as u64);
        let p = if with_f64 && k == 2 {
            p.to_dtype(DType::F64).unwrap()
        } else {
            p
        };
        let name = format!("p{k}");
        gpu.push((
            name.clone(),
            p.to_device(device)
                .unwrap()
                .detach()
                .with_requires_grad()
                .unwrap(),
        ));
        cpu.push((name, p.detach().with_requires_grad().unwrap()));
    }
    (cpu, gpu)
}

/// Gives both sets the same random gradient for step `step`; parameter `skip`, if any, gets none.
fn set_grads(cpu: &[(String, Tensor)], gpu: &[(String, Tensor)], step: u64, skip: Option<usize>) {
    for (k, ((_, c), (_, g))) in cpu.iter().zip(gpu).enumerate() {
        if Some(k) == skip {
            c.set_grad(None);
            g.set_grad(None);
            continue;
        }
        let grad = randn(c.dims(), 1000 * step + k as u64)
            .to_dtype(c.dtype())
            .unwrap();
        g.set_grad(Some(grad.to_device(g.device()).unwrap()));
        c.set_grad(Some(grad));
    }
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Both sets agree: within the agreement bound, and (when `exact`) bit for bit.
fn compare(what: &str, cpu: &[(String, Tensor)], gpu: &[(String, Tensor)], exact: bool) {
    for ((name, c), (_, g)) in cpu.iter().zip(gpu) {
        assert_agree(&format!("{what} {name}"), c, g);
        if exact {
            let (a, b) = (bits(c), bits(g));
            if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
                panic!(
                    "{what} {name}: element {i} differs: cpu {} gpu {}",
                    f64::from_bits(a[i]),
                    f64::from_bits(b[i])
                );
            }
        }
    }
}

/// Runs `steps` steps of the optimizer `make` builds on both devices and compares the parameters
/// and the state after each; parameter 1 gets no gradient at step 2 (so its step count falls
/// behind the others').
fn run_both(
    what: &str,
    device: Device,
    exact: bool,
    make: &dyn Fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer>,
) {
    for with_f64 in [false, true] {
        let (cpu, gpu) = params(device, with_f64, 7);
        let mut oc = make(cpu.clone());
        let mut og = make(gpu.clone());
        for step in 0..5u64 {
            set_grads(&cpu, &gpu, step, (step == 2).then_some(1));
            oc.step().unwrap();
            og.step()
                .unwrap_or_else(|e| panic!("{what} step {step} on {device}: {e}"));
            let label = format!("{what} (f64 param: {with_f64}) step {step}:");
            compare(&label, &cpu, &gpu, exact);
            let (sc, sg) = (oc.state_tensors(), og.state_tensors());
            assert_eq!(sc.len(), sg.len(), "{label} state tensors");
            for ((kc, tc), (kg, tg)) in sc.iter().zip(&sg) {
                assert_eq!(kc, kg, "{label} state names");
                if tc.dtype() == DType::I64 {
                    assert_eq!(
                        tc.to_vec::<i64>().unwrap(),
                        tg.to_vec::<i64>().unwrap(),
                        "{label} {kc}"
                    );
                } else {
                    assert_eq!(tg.device(), device, "{label} {kc} left the device");
                    compare(
                        &format!("{label} state"),
                        &[(kc.clone(), tc.clone())],
                        &[(kg.clone(), tg.clone())],
                        exact,
                    );
                }
            }
        }
    }
}

fn adamw(cfg: AdamWConfig) -> impl Fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer> {
    move |p| Box::new(AdamW::new(p, cfg).unwrap())
}

fn sgd(cfg: SgdConfig) -> impl Fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer> {
    move |p| Box::new(Sgd::new(p, cfg).unwrap())
}

fn adamw_configs() -> Vec<(&'static str, AdamWConfig)> {
    vec![
        ("AdamW defaults", AdamWConfig::new(1e-2)),
        ("AdamW no decay", AdamWConfig::new(3e-3).weight_decay(0.0)),
        (
            "AdamW beta1 0.3 (the other lerp form)",
            AdamWConfig::new(1e-2)
                .betas(0.3, 0.99)
                .eps(1e-6)
                .weight_decay(0.1),
        ),
    ]
}

fn sgd_configs() -> Vec<(&'static str, SgdConfig)> {
    vec![
        ("SGD plain", SgdConfig::new(0.1)),
        ("SGD weight decay", SgdConfig::new(0.1).weight_decay(0.01)),
        ("SGD momentum", SgdConfig::new(0.05).momentum(0.9)),
        (
            "SGD momentum dampening decay",
            SgdConfig::new(0.05)
                .momentum(0.9)
                .dampening(0.2)
                .weight_decay(1e-3),
        ),
        (
            "SGD nesterov",
            SgdConfig::new(0.05)
                .momentum(0.8)
                .nesterov(true)
                .weight_decay(1e-2),
        ),
    ]
}

#[test]
fn adamw_steps_agree_with_the_cpu() {
    on_each_gpu("adamw_steps_agree_with_the_cpu", |device| {
        for (what, cfg) in adamw_configs() {
            run_both(what, device, false, &adamw(cfg));
        }
    });
}

#[test]
fn sgd_steps_agree_with_the_cpu() {
    on_each_gpu("sgd_steps_agree_with_the_cpu", |device| {
        for (what, cfg) in sgd_configs() {
            run_both(what, device, false, &sgd(cfg));
        }
    });
}

/// The kernels round every operation as the CPU does (no FMA contraction, correctly rounded
/// division and square root), so the parameters stay identical bit for bit.
#[test]
fn fused_updates_are_bit_identical_to_the_cpu() {
    on_each_gpu("fused_updates_are_bit_identical_to_the_cpu", |device| {
        for (what, cfg) in adamw_configs() {
            run_both(what, device, true, &adamw(cfg));
        }
        for (what, cfg) in sgd_configs() {
            run_both(what, device, true, &sgd(cfg));
        }
    });
}

/// A learning rate changed between steps (a schedule) reaches the kernel; the table is reused.
#[test]
fn learning_rate_changes_between_steps() {
    on_each_gpu("learning_rate_changes_between_steps", |device| {
        let (cpu, gpu) = params(device, false, 11);
        let mut oc = AdamW::new(cpu.clone(), AdamWConfig::new(1e-2)).unwrap();
        let mut og = AdamW::new(gpu.clone(), AdamWConfig::new(1e-2)).unwrap();
        for step in 0..4u64 {
            let lr = 1e-2 / (1 + step) as f64;
            oc.set_lr(lr);
            og.set_lr(lr);
            set_grads(&cpu, &gpu, step, None);
            oc.step().unwrap();
            og.step().unwrap();
            compare(&format!("AdamW lr {lr}"), &cpu, &gpu, false);
        }
    });
}

/// One tensor given under two names is updated twice per step, one update after the other, on
/// both devices.
#[test]
fn a_parameter_under_two_names_is_updated_twice() {
    on_each_gpu("a_parameter_under_two_names_is_updated_twice", |device| {
        let p = randn(&[33], 12);
        let c = p.detach().with_requires_grad().unwrap();
        let g = p
            .to_device(device)
            .unwrap()
            .detach()
            .with_requires_grad()
            .unwrap();
        let make = |t: &Tensor| vec![("a".to_string(), t.clone()), ("b".to_string(), t.clone())];
        for momentum in [0.0, 0.9] {
            let cfg = SgdConfig::new(0.1).momentum(momentum);
            let (mut oc, mut og) = (
                Sgd::new(make(&c), cfg).unwrap(),
                Sgd::new(make(&g), cfg).unwrap(),
            );
            let (mut ac, mut ag) = (
                AdamW::new(make(&c), AdamWConfig::new(1e-2)).unwrap(),
                AdamW::new(make(&g), AdamWConfig::new(1e-2)).unwrap(),
            );
            for step in 0..3u64 {
                let grad = randn(&[33], 20 + step);
                c.set_grad(Some(grad.clone()));
                g.set_grad(Some(grad.to_device(device).unwrap()));
                oc.step().unwrap();
                og.step().unwrap();
                ac.step().unwrap();
                ag.step().unwrap();
                assert_agree(&format!("twice-named parameter step {step}"), &c, &g);
            }
        }
    });
}

/// State saved on the CPU (as a checkpoint holds it) and loaded into an optimizer over CUDA
/// parameters moves to the device and continues the same trajectory.
#[test]
fn state_loaded_from_the_cpu_moves_to_the_device() {
    on_each_gpu("state_loaded_from_the_cpu_moves_to_the_device", |device| {
        let (cpu, _) = params(device, false, 13);
        let mut oc = AdamW::new(cpu.clone(), AdamWConfig::new(1e-2)).unwrap();
        let mut sc = Sgd::new(cpu.clone(), SgdConfig::new(0.05).momentum(0.9)).unwrap();
        for step in 0..2u64 {
            set_grads(&cpu, &cpu, step, None);
            oc.step().unwrap();
            sc.step().unwrap();
        }
        // CUDA copies of the parameters as they are now, with the CPU state loaded.
        let gpu: Vec<(String, Tensor)> = cpu
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    t.to_device(device)
                        .unwrap()
                        .detach()
                        .with_requires_grad()
                        .unwrap(),
                )
            })
            .collect();
        let mut og = AdamW::new(gpu.clone(), AdamWConfig::new(1e-2)).unwrap();
        og.load_state_tensors(&oc.state_tensors()).unwrap();
        let mut sg = Sgd::new(gpu.clone(), SgdConfig::new(0.05).momentum(0.9)).unwrap();
        sg.load_state_tensors(&sc.state_tensors()).unwrap();
        for (_, t) in og.state_tensors().iter().chain(&sg.state_tensors()) {
            if t.dtype() != DType::I64 {
                assert_eq!(t.device(), device, "loaded state is not on the device");
            }
        }
        for step in 2..4u64 {
            set_grads(&cpu, &gpu, step, None);
            oc.step().unwrap();
            og.step().unwrap();
            compare(&format!("AdamW after load, step {step}"), &cpu, &gpu, false);
            set_grads(&cpu, &gpu, step + 10, None);
            sc.step().unwrap();
            sg.step().unwrap();
            compare(&format!("SGD after load, step {step}"), &cpu, &gpu, false);
        }
    });
}

/// Gradients of odd sizes (and one f64, one large) with `scale` times normal values.
fn with_grads(device: Device, scale: f64, seed: u64) -> (Vec<Tensor>, Vec<Tensor>) {
    let mut shapes: Vec<Vec<usize>> = SHAPES.iter().map(|d| d.to_vec()).collect();
    shapes.push(vec![1 << 20]);
    let (mut cpu, mut gpu) = (Vec::new(), Vec::new());
    for (k, dims) in shapes.iter().enumerate() {
        let dtype = if k == 1 { DType::F64 } else { DType::F32 };
        let p = randn(dims, seed + k as u64).to_dtype(dtype).unwrap();
        let g = randn(dims, seed + 100 + k as u64)
            .mul_scalar(scale)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let pc = p.detach().with_requires_grad().unwrap();
        let pg = p
            .to_device(device)
            .unwrap()
            .detach()
            .with_requires_grad()
            .unwrap();
        pg.set_grad(Some(g.to_device(device).unwrap()));
        pc.set_grad(Some(g));
        cpu.push(pc);
        gpu.push(pg);
    }
    // A parameter without a gradient is skipped on both.
    let lone = randn(&[5], seed + 99);
    cpu.push(lone.detach().with_requires_grad().unwrap());
    gpu.push(
        lone.to_device(device)
            .unwrap()
            .detach()
            .with_requires_grad()
            .unwrap(),
    );
    (cpu, gpu)
}

#[test]
fn grad_norm_agrees_and_is_deterministic() {
    on_each_gpu("grad_norm_agrees_and_is_deterministic", |device| {
        let (cpu, gpu) = with_grads(device, 1.0, 14);
        let (want, got) = (grad_norm(&cpu).unwrap(), grad_norm(&gpu).unwrap());
        assert!(
            (want - got).abs() <= 1e-12 * want,
            "grad_norm: cpu {want} gpu {got}"
        );
        assert_eq!(
            got.to_bits(),
            grad_norm(&gpu).unwrap().to_bits(),
            "grad_norm differs between runs"
        );
        // No gradients at all: 0.
        let bare = vec![randn(&[3], 1)
            .to_device(device)
            .unwrap()
            .with_requires_grad()
            .unwrap()];
        assert_eq!(grad_norm(&bare).unwrap(), 0.0);
        // A gradient on each device: both are summed.
        let mixed = vec![cpu[0].clone(), gpu[2].clone()];
        let sep = grad_norm(&cpu[0..1]).unwrap().powi(2) + grad_norm(&cpu[2..3]).unwrap().powi(2);
        assert!((grad_norm(&mixed).unwrap() - sep.sqrt()).abs() <= 1e-12 * sep.sqrt());
    });
}

#[test]
fn clipping_above_and_below_the_threshold() {
    on_each_gpu("clipping_above_and_below_the_threshold", |device| {
        for (scale, max_norm) in [(3.0, 1.0), (1e-3, 1.0), (1.0, 1e6)] {
            let (cpu, gpu) = with_grads(device, scale, 15);
            let want = clip_grad_norm(&cpu, max_norm).unwrap();
            let got = clip_grad_norm(&gpu, max_norm).unwrap();
            assert!(
                (want - got).abs() <= 1e-12 * want,
                "clip_grad_norm total: cpu {want} gpu {got}"
            );
            let clipped = want > max_norm;
            for (k, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
                match (c.grad(), g.grad()) {
                    (Some(cg), Some(gg)) => {
                        assert_eq!(gg.device(), device);
                        assert_agree(
                            &format!("clipped gradient {k} (scale {scale}, clipped {clipped})"),
                            &cg,
                            &gg,
                        );
                    }
                    (None, None) => {}
                    _ => panic!("gradient {k} on one device only"),
                }
            }
            if clipped {
                let after = grad_norm(&gpu).unwrap();
                assert!(
                    (after - max_norm).abs() <= 1e-5 * max_norm,
                    "norm after clipping {after}"
                );
            }
        }
    });
}
