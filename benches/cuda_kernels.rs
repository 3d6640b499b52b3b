//! CUDA kernel benchmarks: elementwise add / mul / GELU and reductions in GB/s beside a
//! device-to-device copy of the same bytes, softmax in rows/s, GEMM in TFLOP/s (f32 with TF32 off
//! and on), the fused AdamW step on 10 M parameters; each beside PyTorch measured in the same run
//! (benches/torch_reference.py, when `python3 -c "import torch"` works) and beside the device's
//! hardware limit. Measured, never asserted.
//!
//! Timing: CUDA events on the engine's stream around each call, after 3 warm-up calls (which
//! also compile the kernels and fill the caching allocator), median over many repeats, the L2
//! cache flushed before every repeat by writing a buffer of twice its size.
//!
//! Run on a GPU machine: `cargo bench --features cuda --bench cuda_kernels` (`-- --quick` for
//! smaller sizes). Without a usable GPU it prints one line saying why and exits 0. An op whose
//! CUDA path is missing or fails is reported as "unavailable: <error>" in its row.

use rcmcl::engine::cuda::{self, cudarc, CudaStorage, Gpu};
use rcmcl::engine::optim::{AdamW, AdamWConfig, Optimizer};
use rcmcl::engine::{DType, Device, Storage, Tensor};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute as Attr, CUevent_flags};
use cudarc::driver::CudaEvent;

type R<T> = std::result::Result<T, String>;

/// A measured case: its torch_reference.py spec, its description, its work per call, the call.
type Case = (String, String, Work, Box<dyn FnMut() -> R<()>>);

/// The events and the L2 flush buffer: everything a measurement needs.
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

    /// Overwrites the flush buffer (twice the L2 size) with a new byte, on the stream.
    fn flush_l2(&self, round: usize) -> R<()> {
        let bytes = self.flush.len() * 4;
        // SAFETY: the buffer is a live allocation of `bytes` bytes on this device, and the
        // memset is ordered on the device's one stream.
        unsafe {
            cudarc::driver::result::memset_d8_async(
                self.flush.ptr(),
                (round & 0xff) as u8,
                bytes,
                self.gpu.stream().cu_stream(),
            )
        }
        .map_err(|e| format!("flushing L2: {e:?}"))
    }

    /// Median seconds per call of `f` over `repeats` event-timed calls after 3 warm-up calls.
    /// Any error (an op without a CUDA path, say) or panic becomes the returned message.
    fn median(&self, repeats: usize, f: &mut dyn FnMut() -> R<()>) -> R<f64> {
        let mut run = || -> R<f64> {
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
        };
        match catch_unwind(AssertUnwindSafe(&mut run)) {
            Ok(r) => r,
            Err(p) => Err(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
            )),
        }
    }
}

/// What one call does, for the derived rates.
#[derive(Clone, Copy, Default)]
struct Work {
    /// Bytes an op must move (reads + writes).
    bytes: f64,
    flops: f64,
    rows: f64,
    /// Counted against the TF32 tensor-core peak rather than the fp32 one.
    tf32: bool,
}

struct Row {
    /// The spec passed to torch_reference.py ("add:67108864").
    spec: String,
    what: String,
    work: Work,
    seconds: R<f64>,
}

/// The device's limits: (bytes/s, where the number comes from), fp32 and TF32 FLOP/s.
struct Limits {
    hbm: Option<(f64, String)>,
    fp32: Option<(f64, String)>,
    tf32: Option<(f64, String)>,
}

fn limits(gpu: &Gpu) -> Limits {
    let attr = |a: Attr| gpu.context().attribute(a).ok().filter(|&v| v > 0);
    let name = gpu.name();
    let sxm_like = !name.contains("PCIe") && !name.contains("NVL");
    let hbm_named = if name.contains("H200") {
        Some((4.8e12, "H200 datasheet (HBM3e)"))
    } else if name.contains("H100") && name.contains("PCIe") {
        Some((2.0e12, "H100 PCIe datasheet"))
    } else if name.contains("H100") && name.contains("NVL") {
        Some((3.9e12, "H100 NVL datasheet"))
    } else if name.contains("H100") {
        Some((3.35e12, "H100 SXM datasheet (HBM3)"))
    } else if name.contains("A100") && name.contains("80GB") {
        Some((2.039e12, "A100 80GB datasheet"))
    } else if name.contains("A100") {
        Some((1.555e12, "A100 40GB datasheet"))
    } else {
        None
    };
    let hbm_attr = match (
        attr(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE),
        attr(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH),
    ) {
        // Double data rate: two transfers per clock of bus_width bits.
        (Some(khz), Some(bits)) => Some(2.0 * khz as f64 * 1e3 * bits as f64 / 8.0),
        _ => None,
    };
    let hbm = hbm_named
        .map(|(v, s)| (v, s.to_string()))
        .or(hbm_attr.map(|v| {
            (
                v,
                "2 x memory clock x bus width (driver attributes)".to_string(),
            )
        }));
    // FP32 lanes per SM: 64 on sm_70/75/80, 128 on sm_86/89/90 and later.
    let lanes = match gpu.arch() {
        70 | 72 | 75 | 80 => 64.0,
        _ => 128.0,
    };
    let fp32 = attr(Attr::CU_DEVICE_ATTRIBUTE_CLOCK_RATE).map(|khz| {
        (
            gpu.sm_count() as f64 * lanes * 2.0 * khz as f64 * 1e3,
            format!(
                "{} SMs x {lanes} FP32 lanes x 2 x {:.2} GHz boost",
                gpu.sm_count(),
                khz as f64 / 1e6
            ),
        )
    });
    let tf32 = if (name.contains("H100") || name.contains("H200")) && sxm_like {
        Some((494.7e12, "H100/H200 SXM datasheet, dense".to_string()))
    } else if name.contains("A100") {
        Some((156e12, "A100 datasheet, dense".to_string()))
    } else {
        None
    };
    Limits { hbm, fp32, tf32 }
}

/// PyTorch's median seconds per spec (errors per spec as messages), or why there are none.
fn torch_times(specs: &[String], repeats: usize) -> R<HashMap<String, R<f64>>> {
    let probe = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .map_err(|e| format!("python3 not runnable ({e})"))?;
    if !probe.status.success() {
        return Err("python3 cannot import torch".into());
    }
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_reference.py");
    let script = if std::path::Path::new(here).exists() {
        here.to_string()
    } else {
        "benches/torch_reference.py".to_string()
    };
    let out = Command::new("python3")
        .arg(&script)
        .args(["--repeats", &repeats.to_string()])
        .args(specs)
        .output()
        .map_err(|e| format!("python3 {script} did not start ({e})"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "torch reference failed: {}",
            err.lines().last().unwrap_or("(no output)")
        ));
    }
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = line.split(&format!("\"{key}\": ")).nth(1)?;
        if let Some(s) = rest.strip_prefix('"') {
            // A JSON string: up to the next unescaped quote (messages are short; escapes kept).
            let mut end = 0;
            let bytes = s.as_bytes();
            while end < bytes.len()
                && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
            {
                end += 1;
            }
            Some(s[..end].to_string())
        } else {
            Some(rest.split([',', '}']).next()?.trim().to_string())
        }
    };
    let mut times = HashMap::new();
    for line in stdout.lines() {
        if let Some(dev) = field(line, "device") {
            let version = field(line, "torch").unwrap_or_default();
            println!("PyTorch {version} on {dev}");
            continue;
        }
        let Some(name) = field(line, "name") else {
            continue;
        };
        let value = match (field(line, "seconds"), field(line, "error")) {
            (Some(s), _) => s.parse::<f64>().map_err(|e| format!("bad time {s}: {e}")),
            (None, Some(e)) => Err(e),
            (None, None) => Err("no time reported".into()),
        };
        times.insert(name, value);
    }
    Ok(times)
}

fn rand(dims: &[usize], seed: u64, device: Device) -> R<Tensor> {
    Tensor::rand_uniform(dims.to_vec(), -1.0, 1.0, seed, DType::F32, device)
        .map_err(|e| format!("making the inputs: {e}"))
}

fn engine<T>(r: rcmcl::engine::Result<T>) -> R<()> {
    r.map(drop).map_err(|e| e.to_string())
}

/// A device copy of a tensor's storage (for the copy reference).
fn storage_of(t: &Tensor) -> R<CudaStorage> {
    match &*t.storage() {
        Storage::Cuda(c) => c.duplicate().map_err(|e| e.to_string()),
        Storage::Cpu(_) => Err("the tensor is on the CPU".into()),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let device = match Device::cuda(0) {
        Ok(d) => d,
        Err(e) => {
            println!("cuda_kernels bench skipped: {e}");
            return;
        }
    };
    let gpu = match cuda::gpu(0) {
        Ok(g) => g,
        Err(e) => {
            println!("cuda_kernels bench skipped: {e}");
            return;
        }
    };
    if let Err(e) = run(device, gpu, quick) {
        println!("cuda_kernels bench stopped: {e}");
    }
}

fn run(device: Device, gpu: Arc<Gpu>, quick: bool) -> R<()> {
    cuda::set_poison_outputs(false);
    cuda::set_allow_tf32(false);
    let l2 = gpu
        .context()
        .attribute(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        .unwrap_or(0)
        .max(0) as usize;
    let lim = limits(&gpu);
    let repeats = if quick { 10 } else { 50 };
    let timer = Timer::new(gpu.clone(), l2)?;
    println!(
        "device: {} (sm_{}, {} SMs, L2 {:.0} MiB, flushed before each repeat with {:.0} MiB)",
        gpu.name(),
        gpu.arch(),
        gpu.sm_count(),
        l2 as f64 / (1 << 20) as f64,
        timer.flush.len() as f64 * 4.0 / (1 << 20) as f64
    );
    let show = |what: &str, l: &Option<(f64, String)>, unit: f64, u: &str| match l {
        Some((v, src)) => println!("limit {what}: {:.2} {u} ({src})", v / unit),
        None => println!("limit {what}: unknown for this device"),
    };
    show("memory bandwidth", &lim.hbm, 1e12, "TB/s");
    show("fp32 (no tensor cores)", &lim.fp32, 1e12, "TFLOP/s");
    show("TF32 tensor cores", &lim.tf32, 1e12, "TFLOP/s");

    let mut rows: Vec<Row> = Vec::new();
    let n: usize = if quick { 1 << 24 } else { 1 << 26 };
    let cols = 1024;
    let nrows = n / cols;
    let bytes = (n * 4) as f64;
    {
        let inputs = rand(&[n], 1, device).and_then(|x| Ok((x, rand(&[n], 2, device)?)));
        let mut cases: Vec<Case> = Vec::new();
        match &inputs {
            Ok((x, y)) => {
                let (src, dst) = match (storage_of(x), storage_of(x)) {
                    (Ok(s), Ok(d)) => (Some(s), Some(d)),
                    _ => (None, None),
                };
                let mem = |b: f64| Work {
                    bytes: b,
                    ..Work::default()
                };
                cases.push((
                    format!("copy:{n}"),
                    format!("device-to-device copy of {n} f32 (the reference)"),
                    mem(2.0 * bytes),
                    Box::new(move || match (&src, &dst) {
                        (Some(s), Some(d)) => d.copy_from(s).map_err(|e| e.to_string()),
                        _ => Err("no device buffers".into()),
                    }),
                ));
                let (xa, ya) = (x.clone(), y.clone());
                cases.push((
                    format!("add:{n}"),
                    format!("add {n} f32"),
                    mem(3.0 * bytes),
                    Box::new(move || engine(xa.add(&ya))),
                ));
                let (xm, ym) = (x.clone(), y.clone());
                cases.push((
                    format!("mul:{n}"),
                    format!("mul {n} f32"),
                    mem(3.0 * bytes),
                    Box::new(move || engine(xm.mul(&ym))),
                ));
                let xg = x.clone();
                cases.push((
                    format!("gelu:{n}"),
                    format!("gelu (erf) {n} f32"),
                    mem(2.0 * bytes),
                    Box::new(move || engine(xg.gelu())),
                ));
                let xr = x.reshape([nrows, cols]).map_err(|e| e.to_string())?;
                let xs = xr.clone();
                cases.push((
                    format!("sum_rows:{nrows},{cols}"),
                    format!("sum over the last axis of ({nrows}, {cols}) f32"),
                    mem(bytes + (nrows * 4) as f64),
                    Box::new(move || engine(xs.sum(&[1], false))),
                ));
                let xa = x.clone();
                cases.push((
                    format!("sum_all:{n}"),
                    format!("sum of all {n} f32"),
                    mem(bytes),
                    Box::new(move || engine(xa.sum_all())),
                ));
                let xsm = xr.clone();
                cases.push((
                    format!("softmax:{nrows},{cols}"),
                    format!("softmax over rows of ({nrows}, {cols}) f32"),
                    Work {
                        bytes: 2.0 * bytes,
                        rows: nrows as f64,
                        ..Work::default()
                    },
                    Box::new(move || engine(xsm.softmax(-1))),
                ));
            }
            Err(e) => println!("elementwise inputs unavailable: {e}"),
        }
        for (spec, what, work, mut f) in cases {
            let seconds = timer.median(repeats, &mut *f);
            rows.push(Row {
                spec,
                what,
                work,
                seconds,
            });
        }
    }

    let sizes: &[usize] = if quick {
        &[1024, 4096]
    } else {
        &[1024, 4096, 8192]
    };
    for tf32 in [false, true] {
        for &s in sizes {
            let reps = if s >= 8192 {
                (repeats / 5).max(3)
            } else {
                repeats
            };
            let spec = format!("{}:{s}", if tf32 { "gemm_tf32" } else { "gemm" });
            let what = format!(
                "matmul f32 {s}x{s} @ {s}x{s}, TF32 {}",
                if tf32 { "on" } else { "off" }
            );
            let work = Work {
                flops: 2.0 * (s as f64).powi(3),
                tf32,
                ..Work::default()
            };
            let seconds = rand(&[s, s], 3, device)
                .and_then(|a| Ok((a, rand(&[s, s], 4, device)?)))
                .and_then(|(a, b)| {
                    cuda::set_allow_tf32(tf32);
                    let t = timer.median(reps, &mut || engine(a.matmul(&b)));
                    cuda::set_allow_tf32(false);
                    t
                });
            rows.push(Row {
                spec,
                what,
                work,
                seconds,
            });
        }
    }

    let params = 10_000_000usize;
    let seconds = (|| -> R<f64> {
        let p = rand(&[params], 5, device)?
            .with_requires_grad()
            .map_err(|e| e.to_string())?;
        p.set_grad(Some(rand(&[params], 6, device)?));
        let mut opt = AdamW::new(
            vec![("w".into(), p)],
            AdamWConfig::new(1e-3).weight_decay(0.01),
        )
        .map_err(|e| e.to_string())?;
        timer.median(repeats, &mut || opt.step().map_err(|e| e.to_string()))
    })();
    rows.push(Row {
        spec: format!("adamw:{params}"),
        what: format!("fused AdamW step, {params} f32 parameters"),
        // Reads parameter, gradient and both moments; writes parameter and moments.
        work: Work {
            bytes: 7.0 * 4.0 * params as f64,
            ..Work::default()
        },
        seconds,
    });

    // Give the memory back before PyTorch runs in its own process on the same device.
    let _ = cuda::empty_cache(device);
    let specs: Vec<String> = rows.iter().map(|r| r.spec.clone()).collect();
    let torch = torch_times(&specs, repeats);
    if let Err(reason) = &torch {
        println!("PyTorch reference skipped: {reason}");
    }
    print_table(&rows, torch.as_ref().ok(), &lim);
    Ok(())
}

fn print_table(rows: &[Row], torch: Option<&HashMap<String, R<f64>>>, lim: &Limits) {
    let copy = rows
        .iter()
        .find(|r| r.spec.starts_with("copy:"))
        .and_then(|r| r.seconds.as_ref().ok().map(|s| r.work.bytes / s));
    let rate = |w: &Work, s: f64| -> String {
        if w.flops > 0.0 {
            format!("{:.1} TFLOP/s", w.flops / s / 1e12)
        } else if w.rows > 0.0 {
            format!(
                "{:.1} Mrows/s ({:.0} GB/s)",
                w.rows / s / 1e6,
                w.bytes / s / 1e9
            )
        } else {
            format!("{:.0} GB/s", w.bytes / s / 1e9)
        }
    };
    println!();
    println!(
        "| operation | median ms | ours | PyTorch | ours / PyTorch | % of copy | % of limit |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let s = match &r.seconds {
            Ok(s) => *s,
            Err(e) => {
                println!(
                    "| {} | unavailable: {} | | | | | |",
                    r.what,
                    e.replace('|', "/")
                );
                continue;
            }
        };
        let (torch_rate, vs_torch) = match torch.and_then(|t| t.get(&r.spec)) {
            Some(Ok(ts)) => (rate(&r.work, *ts), format!("{:.2}x", ts / s)),
            Some(Err(e)) => (format!("error: {}", e.replace('|', "/")), "-".into()),
            None => ("-".into(), "-".into()),
        };
        let vs_copy = match copy {
            Some(c) if r.work.flops == 0.0 => format!("{:.0} %", r.work.bytes / s / c * 100.0),
            _ => "-".into(),
        };
        let limit = if r.work.flops > 0.0 {
            let peak = if r.work.tf32 { &lim.tf32 } else { &lim.fp32 };
            peak.as_ref().map(|(peak, _)| r.work.flops / s / peak)
        } else {
            lim.hbm.as_ref().map(|(peak, _)| r.work.bytes / s / peak)
        };
        let limit = limit.map_or("-".into(), |f| format!("{:.0} %", f * 100.0));
        println!(
            "| {} | {:.3} | {} | {} | {} | {} | {} |",
            r.what,
            s * 1e3,
            rate(&r.work, s),
            torch_rate,
            vs_torch,
            vs_copy,
            limit
        );
    }
    if let Some(c) = copy {
        for r in rows
            .iter()
            .filter(|r| r.spec.starts_with("add:") || r.spec.starts_with("mul:"))
        {
            if let Ok(s) = r.seconds {
                let pct = r.work.bytes / s / c * 100.0;
                println!(
                    "target: {} at {pct:.0} % of the copy bandwidth (issue target >= 85 %): {}",
                    r.what,
                    if pct >= 85.0 { "met" } else { "NOT met" }
                );
            }
        }
    }
}
