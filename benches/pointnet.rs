//! Point-cloud op benchmarks (PointNet++): farthest point sampling, ball query, grouping
//! (forward and scatter-add backward) and neighbourhood max-pool.
//!
//! CPU part (always): wall-clock median of a few runs of the CPU reference, on the FPS
//! shapes scaled down in the batch (B = 512 clouds of 2048 -> 512 becomes B = 16; B = 64 of
//! 16384 -> 2048 becomes B = 2: the full shapes take minutes on a laptop CPU; the time per cloud
//! is what to compare), plus the time per cloud of FPS 1024 of 4096 points on one thread
//! against the fpsample project's published single-thread vanilla FPS figure (12.6 ms).
//!
//! CUDA part (`--features cuda` and a GPU): CUDA events around each call after 3 warm-up calls,
//! median of repeats, L2 flushed before every repeat, on the full issue shapes; beside PyTorch
//! (benches/torch_pointnet.py: the vectorised loop FPS, gather / scatter_add, a sort-based ball
//! query, torch.max) when `python3 -c "import torch"` works, and beside the roofline floor of
//! an H100 (3.3 TB/s, 67 TFLOP/s fp32). Without a GPU it prints one line saying why.
//!
//! Run: `cargo bench --bench pointnet` (add `--features cuda` on a GPU machine).

use rcmcl::engine::ops::pointnet::{
    ball_query, farthest_point_sample, group_points, group_points_grad, neighbour_max_pool,
};
use rcmcl::engine::{DType, Device, Tensor};
use std::time::Instant;

type R<T> = std::result::Result<T, String>;

fn rand(dims: &[usize], seed: u64, device: Device) -> R<Tensor> {
    Tensor::rand_uniform(dims.to_vec(), -1.0, 1.0, seed, DType::F32, device)
        .map_err(|e| format!("making the inputs: {e}"))
}

fn indices(b: usize, m: usize, s: usize, n: usize, device: Device) -> R<Tensor> {
    let mut x = 0x2545F4914F6CDD1Du64;
    let v: Vec<i64> = (0..b * m * s)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as i64
        })
        .collect();
    Tensor::from_vec(v, [b, m, s], device).map_err(|e| e.to_string())
}

/// Median wall-clock seconds of `f` over `repeats` runs after one warm-up run.
fn cpu_median(repeats: usize, mut f: impl FnMut() -> R<()>) -> R<f64> {
    f()?;
    let mut t: Vec<f64> = (0..repeats)
        .map(|_| {
            let s = Instant::now();
            f().map(|_| s.elapsed().as_secs_f64())
        })
        .collect::<R<_>>()?;
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn ok<T>(r: rcmcl::engine::Result<T>) -> R<()> {
    r.map(drop).map_err(|e| e.to_string())
}

fn cpu_part() -> R<()> {
    let cpu = Device::Cpu;
    println!(
        "CPU ({} rayon threads); FPS batches scaled down from the issue's shapes",
        rayon::current_num_threads()
    );
    // One cloud runs on one thread (the CPU kernel parallelises over clouds only).
    let one = rand(&[1, 4096, 3], 1, cpu)?;
    let t = cpu_median(5, || ok(farthest_point_sample(&one, 1024, None)))?;
    println!(
        "fps 1024 of 4096, one cloud, one thread: {:8.3} ms per cloud (fpsample vanilla FPS: 12.6 ms, ratio {:.2})",
        t * 1e3,
        12.6e-3 / t
    );
    for &(b, n, m, full_b) in &[
        (16usize, 2048usize, 512usize, 512usize),
        (2, 16384, 2048, 64),
    ] {
        let pts = rand(&[b, n, 3], 2, cpu)?;
        let t = cpu_median(3, || ok(farthest_point_sample(&pts, m, None)))?;
        println!(
            "fps B={b} (issue: {full_b}) N={n} M={m}: {:9.3} ms, {:8.3} ms per cloud",
            t * 1e3,
            t * 1e3 / b as f64
        );
    }
    // A PointNet++ set-abstraction level: 16 clouds of 2048 points, 512 centres, r 0.2, 32
    // neighbours, 64 channels.
    let (b, n, m, s, c) = (16, 2048, 512, 32, 64);
    let pts = rand(&[b, n, 3], 3, cpu)?;
    let ctr = pts.narrow(1, 0, m).map_err(|e| e.to_string())?;
    let t = cpu_median(5, || ok(ball_query(&pts, &ctr, 0.2, s)))?;
    println!(
        "ball_query B={b} N={n} M={m} r=0.2 S={s}: {:9.3} ms",
        t * 1e3
    );
    let f = rand(&[b, c, n], 4, cpu)?;
    let ix = indices(b, m, s, n, cpu)?;
    let t = cpu_median(5, || ok(group_points(&f, &ix)))?;
    println!(
        "group_points B={b} C={c} N={n} M={m} S={s}: {:9.3} ms",
        t * 1e3
    );
    let g = rand(&[b, c, m, s], 5, cpu)?;
    let t = cpu_median(5, || ok(group_points_grad(&g, &ix, n)))?;
    println!("group_points backward (scatter-add): {:9.3} ms", t * 1e3);
    let t = cpu_median(5, || ok(neighbour_max_pool(&g)))?;
    println!(
        "neighbour_max_pool B={b} C={c} M={m} S={s}: {:9.3} ms",
        t * 1e3
    );
    Ok(())
}

fn main() {
    if let Err(e) = cpu_part() {
        println!("CPU part stopped: {e}");
    }
    #[cfg(feature = "cuda")]
    gpu::run();
    #[cfg(not(feature = "cuda"))]
    println!("CUDA part skipped: built without the `cuda` feature");
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use rcmcl::engine::cuda::{self, cudarc, CudaStorage, Gpu};
    use std::collections::HashMap;
    use std::process::Command;
    use std::sync::Arc;

    use cudarc::driver::sys::{CUdevice_attribute as Attr, CUevent_flags};
    use cudarc::driver::CudaEvent;

    /// The events and the L2 flush buffer (as benches/cuda_kernels.rs).
    struct Timer {
        gpu: Arc<Gpu>,
        flush: CudaStorage,
        start: CudaEvent,
        end: CudaEvent,
    }

    impl Timer {
        fn new(gpu: Arc<Gpu>, l2_bytes: usize) -> R<Timer> {
            let flush_len = (2 * l2_bytes).max(1 << 20) / 4;
            let flush = CudaStorage::zeros(&gpu, flush_len, DType::F32)
                .map_err(|e| format!("allocating the L2 flush buffer: {e}"))?;
            let event = || {
                gpu.context()
                    .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .map_err(|e| format!("creating a CUDA event: {e:?}"))
            };
            let (start, end) = (event()?, event()?);
            Ok(Timer {
                gpu,
                flush,
                start,
                end,
            })
        }

        fn flush_l2(&self, round: usize) -> R<()> {
            // SAFETY: a live allocation of this many bytes on this device; the memset is
            // ordered on the device's one stream.
            unsafe {
                cudarc::driver::result::memset_d8_async(
                    self.flush.ptr(),
                    (round & 0xff) as u8,
                    self.flush.len() * 4,
                    self.gpu.stream().cu_stream(),
                )
            }
            .map_err(|e| format!("flushing L2: {e:?}"))
        }

        fn median(&self, repeats: usize, f: &mut dyn FnMut() -> R<()>) -> R<f64> {
            for _ in 0..3 {
                f()?;
            }
            self.gpu.synchronize().map_err(|e| e.to_string())?;
            let stream = self.gpu.stream();
            let mut times = Vec::with_capacity(repeats);
            for r in 0..repeats {
                self.flush_l2(r)?;
                self.start.record(stream).map_err(|e| format!("{e:?}"))?;
                f()?;
                self.end.record(stream).map_err(|e| format!("{e:?}"))?;
                let ms = self
                    .start
                    .elapsed_ms(&self.end)
                    .map_err(|e| format!("reading the events: {e:?}"))?;
                times.push(ms as f64 / 1e3);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            Ok(times[times.len() / 2])
        }
    }

    /// PyTorch's median seconds per spec, parsed from the script's JSON lines.
    fn torch_times(specs: &[String], repeats: usize) -> R<HashMap<String, f64>> {
        let probe = Command::new("python3")
            .args(["-c", "import torch"])
            .output()
            .map_err(|e| format!("python3 not runnable ({e})"))?;
        if !probe.status.success() {
            return Err("python3 cannot import torch".into());
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_pointnet.py");
        let out = Command::new("python3")
            .arg(script)
            .args(["--repeats", &repeats.to_string()])
            .args(specs)
            .output()
            .map_err(|e| format!("python3 {script} did not start ({e})"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "torch reference failed: {}",
                err.lines().last().unwrap_or("")
            ));
        }
        let mut times = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let get = |key: &str| -> Option<String> {
                let rest = line.split(&format!("\"{key}\": ")).nth(1)?;
                let rest = rest.trim_start_matches('"');
                Some(rest.split(['"', ',', '}']).next()?.trim().to_string())
            };
            if let Some(dev) = get("device") {
                println!("PyTorch {} on {dev}", get("torch").unwrap_or_default());
            } else if let (Some(name), Some(s)) = (get("name"), get("seconds")) {
                if let Ok(s) = s.parse() {
                    times.insert(name, s);
                }
            }
        }
        Ok(times)
    }

    /// A case: torch spec, description, bytes and FLOPs of the floor, the call.
    type Case = (String, String, f64, f64, Box<dyn FnMut() -> R<()>>);

    pub fn run() {
        if let Err(e) = run_inner() {
            println!("CUDA part skipped or stopped: {e}");
        }
    }

    fn run_inner() -> R<()> {
        let device = Device::cuda(0).map_err(|e| e.to_string())?;
        let gpu = cuda::gpu(0).map_err(|e| e.to_string())?;
        let l2 = gpu
            .context()
            .attribute(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
            .map_err(|e| format!("{e:?}"))? as usize;
        let timer = Timer::new(gpu.clone(), l2)?;
        println!("CUDA: {} (sm_{})", gpu.name(), gpu.arch());
        let mut cases: Vec<Case> = Vec::new();
        for &(b, n, m) in &[(512usize, 2048usize, 512usize), (64, 16384, 2048)] {
            let pts = rand(&[b, n, 3], 1, device)?;
            // Floor: the points read once; ~9 FLOPs per point per step.
            let (bytes, flops) = ((b * n * 12 + b * m * 8) as f64, (b * m * n * 9) as f64);
            cases.push((
                format!("fps:{b}:{n}:{m}"),
                format!("fps B={b} N={n} M={m}"),
                bytes,
                flops,
                Box::new(move || ok(farthest_point_sample(&pts, m, None))),
            ));
        }
        let (b, n, m, s, c) = (64, 4096, 1024, 32, 128);
        let pts = rand(&[b, n, 3], 2, device)?;
        let ctr = pts.narrow(1, 0, m).map_err(|e| e.to_string())?;
        cases.push((
            format!("ballq:{b}:{n}:{m}:{s}:0.2"),
            format!("ball_query B={b} N={n} M={m} S={s} r=0.2"),
            (b * n * 12 + b * m * s * 8) as f64,
            (b * m * n * 9) as f64,
            Box::new(move || ok(ball_query(&pts, &ctr, 0.2, s))),
        ));
        let f = rand(&[b, c, n], 3, device)?;
        let ix = indices(b, m, s, n, device)?;
        let g = rand(&[b, c, m, s], 4, device)?;
        let moved = (b * c * m * s * 4 + b * m * s * 8 + b * c * n * 4) as f64;
        let (f2, ix2) = (f.clone(), ix.clone());
        cases.push((
            format!("group:{b}:{c}:{n}:{m}:{s}"),
            format!("group_points B={b} C={c} N={n} M={m} S={s}"),
            moved,
            0.0,
            Box::new(move || ok(group_points(&f2, &ix2))),
        ));
        let (g2, ix3) = (g.clone(), ix.clone());
        cases.push((
            format!("groupbwd:{b}:{c}:{n}:{m}:{s}"),
            "group_points backward (scatter-add)".into(),
            moved,
            (b * c * m * s) as f64,
            Box::new(move || ok(group_points_grad(&g2, &ix3, n))),
        ));
        cases.push((
            format!("maxpool:{b}:{c}:{m}:{s}"),
            format!("neighbour_max_pool B={b} C={c} M={m} S={s}"),
            (b * c * m * s * 4 + b * c * m * 12) as f64,
            (b * c * m * s) as f64,
            Box::new(move || ok(neighbour_max_pool(&g))),
        ));
        let specs: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
        let torch = torch_times(&specs, 20);
        if let Err(e) = &torch {
            println!("PyTorch reference: {e}");
        }
        println!(
            "{:<48} {:>11} {:>11} {:>8} {:>9}",
            "op", "ours ms", "torch ms", "speedup", "floor %"
        );
        for (spec, what, bytes, flops, mut f) in cases {
            let ours = timer.median(20, &mut *f);
            let floor = (bytes / 3.3e12).max(flops / 67e12);
            let theirs = torch.as_ref().ok().and_then(|t| t.get(&spec).copied());
            match ours {
                Ok(t) => println!(
                    "{:<48} {:>11.4} {:>11} {:>8} {:>8.1}%",
                    what,
                    t * 1e3,
                    theirs.map_or("-".into(), |x| format!("{:.4}", x * 1e3)),
                    theirs.map_or("-".into(), |x| format!("{:.1}x", x / t)),
                    100.0 * floor / t
                ),
                Err(e) => println!("{what:<48} unavailable: {e}"),
            }
        }
        Ok(())
    }
}
