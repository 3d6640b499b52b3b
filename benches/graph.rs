//! Graph aggregation (ST-GCN spatial step) benchmark on the ST-GCN layer shapes
//! (N = 64, C = 64..256, T = 50..100, V = 25, K = 3).
//!
//! CPU: the reference kernels, forward and forward + backward (dx and dA), with N scaled down to
//! 4 (the CPU would take minutes per call at N = 64); median of 5 wall-clock repeats.
//! CUDA (`--features cuda`, a usable GPU): the full shapes, 3 warm-up calls, median of 20
//! repeats, each timed by wall clock around a device synchronisation with the L2 flushed first
//! (a 256 MiB device buffer rewritten); beside PyTorch's einsum timed by benches/torch_graph.py
//! (CUDA events) when `python3 -c "import torch"` works, and beside the roofline floor on an
//! H100 (3.3 TB/s, 67 TFLOP/s fp32). Without a GPU the CUDA part prints one line saying why.
//!
//! Run: `cargo bench --bench graph` / `cargo bench --features cuda --bench graph`.

use rcmcl::engine::{DType, Device, Tensor};
use std::time::Instant;

const SHAPES: &[(usize, usize, usize, usize)] = &[
    // (C, T, V, K) at N = 64 on the GPU
    (64, 100, 25, 3),
    (128, 75, 25, 3),
    (256, 50, 25, 3),
    (256, 100, 25, 3),
];
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
const HBM: f64 = 3.3e12;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
const FP32: f64 = 67e12;

fn median(mut f: impl FnMut(), warm: usize, reps: usize, mut before: impl FnMut()) -> f64 {
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            before();
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

/// (bytes, flops) of the forward and of forward + backward, f32.
fn work(n: usize, c: usize, t: usize, v: usize, k: usize) -> ((f64, f64), (f64, f64)) {
    let x = (n * k * c * t * v * 4) as f64;
    let y = (n * c * t * v * 4) as f64;
    let f = 2.0 * (n * k * c * t * v * v) as f64;
    // forward: x in, y out; backward: dy in, dx out (dx) + x and dy in (dA).
    ((x + y, f), (x + y + y + x + x + y, 3.0 * f))
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn floor((bytes, flops): (f64, f64)) -> f64 {
    (bytes / HBM).max(flops / FP32)
}

#[allow(clippy::too_many_arguments)]
fn run(
    device: Device,
    n: usize,
    c: usize,
    t: usize,
    v: usize,
    k: usize,
    reps: usize,
    flush: &mut dyn FnMut(),
) -> (f64, f64) {
    let x = Tensor::rand_normal([n, k * c, t, v], 0.0, 1.0, 1, DType::F32, device).unwrap();
    let a = Tensor::rand_uniform([k, v, v], -0.5, 0.5, 2, DType::F32, device).unwrap();
    let g = Tensor::rand_normal([n, c, t, v], 0.0, 1.0, 3, DType::F32, device).unwrap();
    let sync = || {
        // Reading one element waits for the stream.
        #[cfg(feature = "cuda")]
        if !device.is_cpu() {
            rcmcl::engine::cuda::gpu(0).unwrap().synchronize().unwrap();
        }
    };
    let fwd = median(
        || {
            let _ = x.graph_aggregate(&a, None).unwrap();
            sync();
        },
        3,
        reps,
        &mut *flush,
    );
    let fb = median(
        || {
            let xg = x.detach().with_requires_grad().unwrap();
            let ag = a.detach().with_requires_grad().unwrap();
            xg.graph_aggregate(&ag, None)
                .unwrap()
                .backward_with(&g)
                .unwrap();
            sync();
        },
        3,
        reps,
        &mut *flush,
    );
    (fwd, fb)
}

fn main() {
    println!("graph aggregation, CPU reference (N scaled down from 64 to 4), f32, median of 5");
    for &(c, t, v, k) in SHAPES {
        let n = 4;
        let (fwd, fb) = run(Device::Cpu, n, c, t, v, k, 5, &mut || {});
        let (wf, wb) = work(n, c, t, v, k);
        println!(
            "  N={n} C={c} T={t} V={v} K={k}: forward {:8.3} ms ({:5.1} GFLOP/s), forward+backward {:8.3} ms ({:5.1} GFLOP/s)",
            fwd * 1e3,
            wf.1 / fwd / 1e9,
            fb * 1e3,
            wb.1 / fb / 1e9
        );
    }
    gpu_part();
}

#[cfg(not(feature = "cuda"))]
fn gpu_part() {
    println!("CUDA: skipped (built without the `cuda` feature)");
}

#[cfg(feature = "cuda")]
fn gpu_part() {
    use std::collections::HashMap;
    let devices = Device::cuda_devices();
    let Some(&device) = devices.first() else {
        println!(
            "CUDA: skipped ({})",
            Device::cuda_unavailable_reason().unwrap_or_else(|| "no CUDA device".into())
        );
        return;
    };
    let n = 64;
    let flush_buf = Tensor::zeros([64 << 20], DType::F32, device).unwrap();
    let mut round = 0.0;
    let mut flush = || {
        round += 1.0;
        let _ = flush_buf.add_scalar(round).unwrap();
        rcmcl::engine::cuda::gpu(0).unwrap().synchronize().unwrap();
    };
    let specs: Vec<String> = SHAPES
        .iter()
        .map(|&(c, t, v, k)| format!("{n},{k},{c},{t},{v}"))
        .collect();
    let mut ours = Vec::new();
    for &(c, t, v, k) in SHAPES {
        ours.push(run(device, n, c, t, v, k, 20, &mut flush));
    }
    let mut torch: HashMap<String, (f64, f64)> = HashMap::new();
    match std::process::Command::new("python3")
        .arg("benches/torch_graph.py")
        .args(["--repeats", "20"])
        .args(&specs)
        .output()
    {
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let get = |key: &str| -> Option<f64> {
                    let i = line.find(&format!("\"{key}\": "))? + key.len() + 4;
                    line[i..].split([',', '}']).next()?.trim().parse().ok()
                };
                let name = line
                    .split("\"name\": \"")
                    .nth(1)
                    .and_then(|s| s.split('"').next());
                if let (Some(name), Some(f), Some(fb)) = (name, get("fwd"), get("fwd_bwd")) {
                    torch.insert(name.to_string(), (f, fb));
                } else {
                    println!("  torch: {line}");
                }
            }
        }
        Err(e) => println!("  torch reference unavailable: {e}"),
    }
    println!("graph aggregation on {device}, f32, N = 64, median of 20 (ratio = torch / ours)");
    for ((&(c, t, v, k), spec), (fwd, fb)) in SHAPES.iter().zip(&specs).zip(ours) {
        let (wf, wb) = work(n, c, t, v, k);
        let (tf, tfb) = torch.get(spec).copied().unwrap_or((f64::NAN, f64::NAN));
        println!(
            "  C={c} T={t} V={v} K={k}: forward {:.3} ms (torch {:.3} ms, ratio {:.2}, {:.0}% of floor) | fwd+bwd {:.3} ms (torch {:.3} ms, ratio {:.2}, {:.0}% of floor)",
            fwd * 1e3, tf * 1e3, tf / fwd, 100.0 * floor(wf) / fwd,
            fb * 1e3, tfb * 1e3, tfb / fb, 100.0 * floor(wb) / fb
        );
    }
}
