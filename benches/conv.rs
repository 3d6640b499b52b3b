//! 3D convolution benchmark on the (2+1)D layers of the issue: N = 16, T = 16, C = 64..256,
//! H = W = 56..14, spatial (1, 3, 3) and temporal (3, 1, 1) kernels, stride 1, "same" padding,
//! with bias. Forward, and forward + backward (input, weight and bias gradients).
//!
//! CPU: the same layers scaled down (N = 1, T = 8, H = W = 28..7), since the full shapes take
//! minutes each on a small CPU; median of 3 calls after one warm-up.
//! CUDA (`--features cuda`, a GPU present): the full shapes, CUDA events around each call after
//! 3 warm-up calls, median of the repeats, L2 flushed before each repeat; cuDNN through
//! benches/torch_conv.py (fp32, TF32 off) in the same run when torch imports. Each row: our
//! time, cuDNN's, the ratio, and the fraction of the fp32 roofline floor (FLOPs / 67 TFLOP/s,
//! an H100 without tensor cores; the bytes floor is far below it for these layers).

use rcmcl::engine::ops::conv::Conv3dParams;
use rcmcl::engine::{DType, Device, Tensor};
use std::time::Instant;

/// One layer: (name, N, C_in, C_out, T, H = W, kernel, padding).
type Layer = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    [usize; 3],
    [usize; 3],
);

fn layers(n: usize, t: usize, sizes: &[(usize, usize)]) -> Vec<Layer> {
    let mut v = Vec::new();
    for &(c, hw) in sizes {
        v.push(("spatial (1,3,3)", n, c, c, t, hw, [1, 3, 3], [0, 1, 1]));
        v.push(("temporal (3,1,1)", n, c, c, t, hw, [3, 1, 1], [1, 0, 0]));
    }
    v
}

/// Forward multiply-adds * 2.
fn flops(l: &Layer) -> f64 {
    let (_, n, ci, co, t, hw, k, _) = *l;
    2.0 * (n * co * t * hw * hw) as f64 * (ci * k.iter().product::<usize>()) as f64
}

fn inputs(l: &Layer, device: Device) -> (Tensor, Tensor, Tensor, Tensor) {
    let (_, n, ci, co, t, hw, k, _) = *l;
    let r = |d: Vec<usize>, s| {
        Tensor::rand_uniform(d, -1.0, 1.0, s, DType::F32, Device::Cpu)
            .unwrap()
            .to_device(device)
            .unwrap()
    };
    (
        r(vec![n, ci, t, hw, hw], 1),
        r(vec![co, ci, k[0], k[1], k[2]], 2),
        r(vec![co], 3),
        r(vec![n, co, t, hw, hw], 4),
    )
}

/// One forward (and, with `backward`, the backward to every input) of the layer.
fn call(l: &Layer, x: &Tensor, w: &Tensor, b: &Tensor, g: &Tensor, backward: bool) {
    let p = Conv3dParams::new([1, 1, 1], l.7);
    if backward {
        let (x, w, b) = (
            x.detach().with_requires_grad().unwrap(),
            w.detach().with_requires_grad().unwrap(),
            b.detach().with_requires_grad().unwrap(),
        );
        x.conv3d(&w, Some(&b), p).unwrap().backward_with(g).unwrap();
    } else {
        x.conv3d(w, Some(b), p).unwrap();
    }
}

fn main() {
    println!(
        "conv3d CPU (scaled down: N = 1, T = 8, H = W = 28..7; threads: {})",
        rayon::current_num_threads()
    );
    println!(
        "{:<18} {:>4} {:>3} {:>10} {:>12} {:>9}",
        "layer", "C", "HW", "pass", "time", "GFLOP/s"
    );
    for l in layers(1, 8, &[(64, 28), (128, 14), (256, 7)]) {
        let (x, w, b, g) = inputs(&l, Device::Cpu);
        for backward in [false, true] {
            call(&l, &x, &w, &b, &g, backward);
            let mut times: Vec<f64> = (0..3)
                .map(|_| {
                    let t0 = Instant::now();
                    call(&l, &x, &w, &b, &g, backward);
                    t0.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(|a, b| a.total_cmp(b));
            let f = flops(&l) * if backward { 3.0 } else { 1.0 };
            println!(
                "{:<18} {:>4} {:>3} {:>10} {:>9.2} ms {:>9.1}",
                l.0,
                l.2,
                l.5,
                if backward { "fwd+bwd" } else { "fwd" },
                times[1] * 1e3,
                f / times[1] / 1e9
            );
        }
    }
    gpu::run(layers(16, 16, &[(64, 56), (128, 28), (256, 14)]));
}

#[cfg(not(feature = "cuda"))]
mod gpu {
    pub fn run(_: Vec<super::Layer>) {
        println!("conv3d CUDA: skipped (built without the `cuda` feature)");
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use cudarc::driver::sys::CUevent_flags;
    use rcmcl::engine::cuda::{self, cudarc, CudaStorage};
    use std::collections::HashMap;
    use std::process::Command;

    const REPEATS: usize = 20;
    /// fp32 peak of an H100 without tensor cores.
    const FP32_PEAK: f64 = 67e12;

    pub fn run(layers: Vec<Layer>) {
        let (device, gpu) = match (Device::cuda(0), cuda::gpu(0)) {
            (Ok(d), Ok(g)) => (d, g),
            (Err(e), _) | (_, Err(e)) => {
                println!("conv3d CUDA: skipped ({e})");
                return;
            }
        };
        println!(
            "conv3d CUDA on {} (N = 16, T = 16, full shapes)",
            gpu.name()
        );
        let flush = CudaStorage::zeros(&gpu, (256 << 20) / 4, DType::F32).unwrap();
        let event = || {
            gpu.context()
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .unwrap()
        };
        let (start, end) = (event(), event());
        let mut rows = Vec::new();
        for l in &layers {
            let (x, w, b, g) = inputs(l, device);
            for backward in [false, true] {
                for _ in 0..3 {
                    call(l, &x, &w, &b, &g, backward);
                }
                gpu.synchronize().unwrap();
                let mut times = Vec::new();
                for r in 0..REPEATS {
                    // SAFETY: a live allocation of this size on this device, on its one stream.
                    unsafe {
                        cudarc::driver::result::memset_d8_async(
                            flush.ptr(),
                            (r & 0xff) as u8,
                            flush.len() * 4,
                            gpu.stream().cu_stream(),
                        )
                    }
                    .unwrap();
                    start.record(gpu.stream()).unwrap();
                    call(l, &x, &w, &b, &g, backward);
                    end.record(gpu.stream()).unwrap();
                    times.push(start.elapsed_ms(&end).unwrap() as f64 / 1e3);
                }
                times.sort_by(|a, b| a.total_cmp(b));
                let (_, n, ci, co, t, hw, k, p) = *l;
                let spec = format!(
                    "{}:{n},{ci},{co},{t},{hw},{hw},{},{},{},{},{},{}",
                    if backward { "fwdbwd" } else { "fwd" },
                    k[0],
                    k[1],
                    k[2],
                    p[0],
                    p[1],
                    p[2]
                );
                let f = flops(l) * if backward { 3.0 } else { 1.0 };
                rows.push((l.0, co, hw, backward, spec, times[REPEATS / 2], f));
            }
        }
        let specs: Vec<String> = rows.iter().map(|r| r.4.clone()).collect();
        let torch = torch_times(&specs);
        if let Err(e) = &torch {
            println!("cuDNN reference: {e}");
        }
        println!(
            "{:<18} {:>4} {:>3} {:>8} {:>10} {:>10} {:>7} {:>9}",
            "layer", "C", "HW", "pass", "ours", "cuDNN", "ratio", "roofline"
        );
        for (name, c, hw, bwd, spec, s, f) in rows {
            let reference = torch.as_ref().ok().and_then(|t| t.get(&spec).copied());
            println!(
                "{:<18} {:>4} {:>3} {:>8} {:>7.3} ms {:>10} {:>7} {:>8.1}%",
                name,
                c,
                hw,
                if bwd { "fwd+bwd" } else { "fwd" },
                s * 1e3,
                reference.map_or("-".into(), |r| format!("{:.3} ms", r * 1e3)),
                reference.map_or("-".into(), |r| format!("{:.2}", s / r)),
                100.0 * f / FP32_PEAK / s
            );
        }
    }

    /// Runs benches/torch_conv.py on the specs: spec -> median seconds.
    fn torch_times(specs: &[String]) -> Result<HashMap<String, f64>, String> {
        let ok = Command::new("python3")
            .args(["-c", "import torch"])
            .output()
            .map_err(|e| format!("python3 not runnable ({e})"))?;
        if !ok.status.success() {
            return Err("python3 cannot import torch".into());
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_conv.py");
        let out = Command::new("python3")
            .arg(script)
            .args(["--repeats", &REPEATS.to_string()])
            .args(specs)
            .output()
            .map_err(|e| format!("{script} did not start ({e})"))?;
        let mut times = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("\"device\"") {
                println!("reference: {line}");
                continue;
            }
            let name = line
                .split("\"name\": \"")
                .nth(1)
                .and_then(|r| r.split('"').next());
            let secs = line
                .split("\"seconds\": ")
                .nth(1)
                .and_then(|r| r.trim_end_matches('}').trim().parse::<f64>().ok());
            match (name, secs) {
                (Some(n), Some(s)) => {
                    times.insert(n.to_string(), s);
                }
                (Some(n), None) => println!("cuDNN {n}: {line}"),
                _ => {}
            }
        }
        Ok(times)
    }
}
