//! Fused InfoNCE and Barlow Twins, forward + backward: `cargo bench --bench contrastive` (CPU)
//! and `cargo bench --features cuda --bench contrastive` (adds the GPU when one is usable).
//!
//! Shapes of issue 4: InfoNCE N in {256, 1024, 4096}, D = 128 (uniform negatives, and hard
//! negatives beta = 1, tau_plus = 0.1); Barlow N = 256, D in {128, 2048, 8192}. The CPU runs
//! InfoNCE up to N = 4096 but Barlow only to D = 2048 (D = 8192 is ~100 GFLOP per step: minutes
//! on a small CPU). Each row: our median time, PyTorch's (benches/torch_contrastive.py, when
//! `python3 -c "import torch"` works; the GPU table compares against torch on the GPU, the CPU
//! table against torch on the CPU), the ratio, and the fraction of the roofline floor.
//!
//! Floor: the products are the unavoidable work (InfoNCE 6 N^2 D FLOPs: S = a b^T, dA, dB;
//! Barlow 6 N D^2: C, dz1n, dz2n), so the floor is FLOPs / fp32 peak (67 TFLOP/s on an H100
//! without tensor cores); on the CPU no floor is printed. GPU timing: CUDA events after 3 warm-up
//! calls, median of the repeats, L2 flushed before every repeat (as benches/cuda_kernels.rs).
//! `-- --quick` runs the smallest shapes only.

use rcmcl::engine::ops::contrastive::{InfoNce, BARLOW_LAMBDA};
use rcmcl::engine::{DType, Device, Result, Tensor};
use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

const TAU: f64 = 0.07;

#[derive(Clone, Copy)]
enum Case {
    InfoNce { n: usize, d: usize, hard: bool },
    Barlow { n: usize, d: usize },
}

impl Case {
    fn spec(&self) -> Option<String> {
        match *self {
            Case::InfoNce { n, d, hard: false } => Some(format!("infonce:{n},{d}")),
            Case::InfoNce { hard: true, .. } => None,
            Case::Barlow { n, d } => Some(format!("barlow:{n},{d}")),
        }
    }

    fn name(&self) -> String {
        match *self {
            Case::InfoNce { n, d, hard } => format!(
                "infonce {} N={n} D={d}",
                if hard { "hard" } else { "uniform" }
            ),
            Case::Barlow { n, d } => format!("barlow N={n} D={d}"),
        }
    }

    fn flops(&self) -> f64 {
        match *self {
            Case::InfoNce { n, d, .. } => 6.0 * (n * n * d) as f64,
            Case::Barlow { n, d } => 6.0 * (n * d * d) as f64,
        }
    }

    /// The inputs on `device` (leaves requiring grad).
    fn inputs(&self, device: Device) -> Result<Vec<Tensor>> {
        let (n, d) = match *self {
            Case::InfoNce { n, d, .. } | Case::Barlow { n, d } => (n, d),
        };
        let make = |seed: u64| -> Result<Tensor> {
            let x = Tensor::rand_normal([n, d], 0.0, 1.0, seed, DType::F32, device)?;
            let x = if matches!(self, Case::InfoNce { .. }) {
                let norm = x.square()?.sum(&[1], true)?.sqrt()?;
                x.div(&norm)?
            } else {
                x
            };
            x.detach().with_requires_grad()
        };
        Ok(vec![make(1)?, make(2)?])
    }

    /// One forward + backward step.
    fn step(&self, t: &[Tensor]) -> Result<()> {
        let loss = match *self {
            Case::InfoNce { hard, .. } => {
                let kind = if hard {
                    InfoNce::Hard {
                        beta: 1.0,
                        tau_plus: 0.1,
                    }
                } else {
                    InfoNce::Uniform
                };
                Tensor::infonce(&t[0], &t[1], TAU, kind)?
            }
            Case::Barlow { .. } => Tensor::barlow_twins(&t[0], &t[1], BARLOW_LAMBDA)?,
        };
        loss.backward()
    }
}

fn cases(cpu: bool, quick: bool) -> Vec<Case> {
    let ns: &[usize] = if quick { &[256] } else { &[256, 1024, 4096] };
    let ds: &[usize] = match (quick, cpu) {
        (true, _) => &[128],
        (false, true) => &[128, 2048],
        (false, false) => &[128, 2048, 8192],
    };
    let mut out = Vec::new();
    for &n in ns {
        for hard in [false, true] {
            out.push(Case::InfoNce { n, d: 128, hard });
        }
    }
    out.extend(ds.iter().map(|&d| Case::Barlow { n: 256, d }));
    out
}

/// PyTorch's median seconds per spec (torch on the GPU when `gpu`), or why there are none.
fn torch_times(
    specs: &[String],
    repeats: usize,
) -> std::result::Result<HashMap<String, f64>, String> {
    let ok = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Err("python3 cannot import torch".into());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_contrastive.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--repeats", &repeats.to_string()])
        .args(specs)
        .output()
        .map_err(|e| format!("python3 not runnable ({e})"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "torch reference failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let mut times = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line
            .split("\"name\": \"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        let secs = line
            .split("\"seconds\": ")
            .nth(1)
            .and_then(|s| s.trim_end_matches('}').trim().parse::<f64>().ok());
        if let (Some(n), Some(s)) = (name, secs) {
            times.insert(n.to_string(), s);
        }
    }
    Ok(times)
}

fn print_rows(
    title: &str,
    rows: &[(Case, std::result::Result<f64, String>)],
    torch: &std::result::Result<HashMap<String, f64>, String>,
    peak_flops: Option<f64>,
) {
    println!("\n{title}");
    if let Err(why) = torch {
        println!("(no PyTorch reference: {why})");
    }
    println!(
        "{:<28} {:>12} {:>12} {:>8} {:>10}",
        "case", "ours ms", "torch ms", "ratio", "% floor"
    );
    for (case, secs) in rows {
        let ours = match secs {
            Ok(s) => *s,
            Err(e) => {
                println!("{:<28} unavailable: {e}", case.name());
                continue;
            }
        };
        let theirs = case
            .spec()
            .and_then(|s| torch.as_ref().ok().and_then(|t| t.get(&s).copied()));
        let (t, ratio) = match theirs {
            Some(t) => (format!("{:.3}", t * 1e3), format!("{:.2}x", t / ours)),
            None => ("-".into(), "-".into()),
        };
        let floor = peak_flops.map_or("-".into(), |p| {
            format!("{:.1}", 100.0 * case.flops() / p / ours)
        });
        println!(
            "{:<28} {:>12.3} {:>12} {:>8} {:>10}",
            case.name(),
            ours * 1e3,
            t,
            ratio,
            floor
        );
    }
    println!("(ratio = torch time / our time: above 1 means ours is faster)");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cases_cpu = cases(true, quick);
    let mut rows = Vec::new();
    for case in &cases_cpu {
        let repeats = if case.flops() > 5e9 { 3 } else { 10 };
        let r = case.inputs(Device::Cpu).and_then(|t| {
            case.step(&t)?;
            let mut times = Vec::new();
            for _ in 0..repeats {
                let t0 = Instant::now();
                case.step(&t)?;
                times.push(t0.elapsed().as_secs_f64());
            }
            times.sort_by(|a, b| a.total_cmp(b));
            Ok(times[times.len() / 2])
        });
        rows.push((*case, r.map_err(|e| e.to_string())));
    }
    let specs: Vec<String> = cases_cpu.iter().filter_map(Case::spec).collect();
    // The CPU reference only where torch would run on the CPU (no GPU visible to it).
    let torch = if cfg!(feature = "cuda") && !Device::cuda_devices().is_empty() {
        Err("torch is compared on the GPU below".into())
    } else {
        torch_times(&specs, 5)
    };
    println!(
        "contrastive bench, CPU ({} threads), f32, forward + backward",
        rayon::current_num_threads()
    );
    print_rows(
        "CPU (Barlow D = 8192 left out: ~100 GFLOP per step)",
        &rows,
        &torch,
        None,
    );

    #[cfg(feature = "cuda")]
    gpu::run(quick);
    #[cfg(not(feature = "cuda"))]
    println!("\nGPU: skipped (built without the `cuda` feature)");
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use cudarc::driver::sys::{CUdevice_attribute as Attr, CUevent_flags};
    use rcmcl::engine::cuda::{self, cudarc, CudaStorage};

    type R<T> = std::result::Result<T, String>;

    pub fn run(quick: bool) {
        let device = match Device::cuda(0) {
            Ok(d) => d,
            Err(e) => {
                println!("\nGPU: skipped ({e})");
                return;
            }
        };
        if let Err(e) = measure(device, quick) {
            println!("\nGPU: stopped ({e})");
        }
    }

    fn measure(device: Device, quick: bool) -> R<()> {
        let gpu = cuda::gpu(0).map_err(|e| e.to_string())?;
        let ctx = gpu.context().clone();
        let l2 = ctx
            .attribute(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
            .map_err(|e| format!("{e:?}"))? as usize;
        let flush = CudaStorage::zeros(&gpu, (2 * l2).max(1 << 20) / 4, DType::F32)
            .map_err(|e| e.to_string())?;
        let event = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| format!("{e:?}"))
        };
        let (start, end) = (event()?, event()?);
        // fp32 peak without tensor cores: 128 FP32 lanes per SM (sm_80 has 64) x 2 x clock.
        let clock_khz = ctx
            .attribute(Attr::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)
            .map_err(|e| format!("{e:?}"))? as f64;
        let lanes = if gpu.arch() >= 86 { 128.0 } else { 64.0 };
        let peak = gpu.sm_count() as f64 * lanes * 2.0 * clock_khz * 1e3;
        println!(
            "\nGPU: {} ({} SMs, fp32 peak {:.1} TFLOP/s from the clock)",
            gpu.name(),
            gpu.sm_count(),
            peak / 1e12
        );
        let stream = gpu.stream().clone();
        let mut rows = Vec::new();
        let cs = cases(false, quick);
        for case in &cs {
            let r = (|| -> R<f64> {
                let t = case.inputs(device).map_err(|e| e.to_string())?;
                for _ in 0..3 {
                    case.step(&t).map_err(|e| e.to_string())?;
                }
                gpu.synchronize().map_err(|e| e.to_string())?;
                let mut times = Vec::new();
                for r in 0..20usize {
                    // SAFETY: a live allocation of this many bytes, on the device's one stream.
                    unsafe {
                        cudarc::driver::result::memset_d8_async(
                            flush.ptr(),
                            (r & 0xff) as u8,
                            flush.len() * 4,
                            stream.cu_stream(),
                        )
                    }
                    .map_err(|e| format!("{e:?}"))?;
                    start.record(&stream).map_err(|e| format!("{e:?}"))?;
                    case.step(&t).map_err(|e| e.to_string())?;
                    end.record(&stream).map_err(|e| format!("{e:?}"))?;
                    let ms = start.elapsed_ms(&end).map_err(|e| format!("{e:?}"))?;
                    times.push(ms as f64 / 1e3);
                }
                times.sort_by(|a, b| a.total_cmp(b));
                Ok(times[times.len() / 2])
            })();
            rows.push((*case, r));
        }
        let specs: Vec<String> = cs.iter().filter_map(Case::spec).collect();
        let torch = torch_times(&specs, 20);
        print_rows("GPU, f32, TF32 off", &rows, &torch, Some(peak));
        Ok(())
    }
}
