//! End-to-end pre-training throughput: one step of L_total (forward of every term: L_CM, L_IM,
//! L_deg, L_FUSION; backward; AdamW step) on the `tiny` and `small` model presets, ours against
//! the same model in PyTorch (benches/reference/rcmcl_torch.py), in one run.
//!
//! Run: `cargo bench --bench pretrain_step` (both presets, batch 16, on the CPU), or e.g.
//! `cargo bench --bench pretrain_step -- --preset small --batch 16 --steps 5 --warmup 1`;
//! on a GPU: `cargo bench --features cuda --bench pretrain_step -- --device cuda`.
//! Options: `--preset tiny,small`, `--batch N`, `--steps N` and `--warmup N` (defaults per
//! preset: tiny 20 / 3, small 5 / 2), `--device cpu|cuda`, `--threads N` (both sides; default:
//! rayon's default for ours and the same count for torch), `--no-torch`.
//! The Python interpreter is `$RCMCL_PYTHON` (default `python3`); without an importable torch
//! the comparison is skipped with the reason printed.
//!
//! Inputs are random tensors of the loader's shapes for the synthetic preset of the same name
//! (rgb (B, T, 3, H, W) in [0, 1], depth (B, T, 1, H, W) in [1.5, 4] m, skeleton
//! (B, T, 1, 25, 3) in [-0.8, 0.8], points (B, T, P, 3) in [-1, 1]; tiny T/H/W/P = 8/32/32/64,
//! small 32/48/48/256), two views (L_IM), made once: the loader is not timed.
//!
//! Each side runs in its own fresh process (this binary re-runs itself with `--child`), so the
//! memory numbers do not mix presets: on the CPU, peak = VmHWM after the steps minus VmRSS
//! before them (VmHWM reset through /proc/self/clear_refs), i.e. what the steps add over the
//! model and its inputs (activations, gradients, optimizer state, allocator caches); on CUDA,
//! the caching allocators' peak bytes over the same span (ours: `engine::cuda::memory_stats`,
//! torch: `max_memory_allocated`). Time: wall clock of each step after the warm-up (on CUDA,
//! up to a device synchronisation); the median, min and max are printed.
//!
//! The parameter counts of the two models must be equal (checked: a mismatch stops the bench
//! with both per-part counts).

use rcmcl::engine::nn::ParamStore;
use rcmcl::engine::optim::{AdamW, AdamWConfig, Optimizer};
use rcmcl::engine::{DType, Device, Result, Tensor};
use rcmcl::models::data::Modality;
use rcmcl::models::inputs::Inputs;
use rcmcl::models::objective::{ObjectiveConfig, Pretrainer};
use rcmcl::models::rcmcl::{DataShape, Rcmcl, RcmclConfig};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

const TORCH_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/reference/rcmcl_torch.py"
);

/// The synthetic data sizes of a preset: (T, H = W, P).
fn data_sizes(preset: &str) -> Option<(usize, usize, usize)> {
    match preset {
        "tiny" => Some((8, 32, 64)),
        "small" => Some((32, 48, 256)),
        _ => None,
    }
}

#[derive(Clone, Debug)]
struct Args {
    presets: Vec<String>,
    batch: usize,
    steps: Option<usize>,
    warmup: Option<usize>,
    device: String,
    /// Threads for both sides (RAYON_NUM_THREADS for ours, torch.set_num_threads); None:
    /// rayon's default, and the same number for torch.
    threads: Option<usize>,
    torch: bool,
    child: bool,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        presets: vec!["tiny".into(), "small".into()],
        batch: 16,
        steps: None,
        warmup: None,
        device: "cpu".into(),
        threads: None,
        torch: true,
        child: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |v: String, name: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{name} takes a whole number, got {v:?}"))
        };
        match arg.as_str() {
            "--preset" => a.presets = value("--preset")?.split(',').map(String::from).collect(),
            "--batch" => a.batch = number(value("--batch")?, "--batch")?,
            "--steps" => a.steps = Some(number(value("--steps")?, "--steps")?),
            "--warmup" => a.warmup = Some(number(value("--warmup")?, "--warmup")?),
            "--device" => a.device = value("--device")?,
            "--threads" => a.threads = Some(number(value("--threads")?, "--threads")?),
            "--no-torch" => a.torch = false,
            "--child" => a.child = true,
            // cargo bench passes `--bench`; anything else is a mistake.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?} (see the file's docs)")),
        }
    }
    if let Some(p) = a.presets.iter().find(|p| data_sizes(p).is_none()) {
        return Err(format!("unknown preset {p:?}: tiny or small"));
    }
    if a.batch < 2 {
        return Err("--batch must be at least 2 (batch norm and InfoNCE need two rows)".into());
    }
    if a.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    if a.steps == Some(0) {
        return Err("--steps must be at least 1".into());
    }
    if a.device != "cpu" && a.device != "cuda" {
        return Err(format!("--device cpu or cuda, got {:?}", a.device));
    }
    Ok(a)
}

fn steps_for(args: &Args, preset: &str) -> (usize, usize) {
    let (steps, warmup) = if preset == "tiny" { (20, 3) } else { (5, 2) };
    (args.steps.unwrap_or(steps), args.warmup.unwrap_or(warmup))
}

/// A value of /proc/self/status in bytes (the kB fields).
fn proc_status(key: &str) -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<usize>()
        .ok()
        .map(|kb| kb * 1024)
}

/// CPU time (user + system, every thread) of this process in seconds, from /proc/self/stat
/// (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime) = (
        f.get(11)?.parse::<f64>().ok()?,
        f.get(12)?.parse::<f64>().ok()?,
    );
    Some((utime + stime) / 100.0)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn random_view(preset: &str, batch: usize, seed: u64, device: Device) -> Result<Inputs> {
    let (t, hw, p) = data_sizes(preset).expect("checked preset");
    let u = |dims: Vec<usize>, lo: f64, hi: f64, s: u64| {
        Tensor::rand_uniform(dims, lo, hi, seed * 16 + s, DType::F32, Device::Cpu)?
            .to_device(device)
    };
    Ok(Inputs {
        rgb: Some(u(vec![batch, t, 3, hw, hw], 0.0, 1.0, 0)?),
        depth: Some(u(vec![batch, t, 1, hw, hw], 1.5, 4.0, 1)?),
        skeletons: vec![(
            Modality::Skeleton,
            u(vec![batch, t, 1, 25, 3], -0.8, 0.8, 2)?,
        )],
        points: Some(u(vec![batch, t, p, 3], -1.0, 1.0, 3)?),
        presence: [None, None, None],
    })
}

/// Parameter counts per part: `encoder.<name>` for the encoders, the first name component
/// otherwise (`head`, `decoder`, `gate`, `classifier`), as the torch script groups them.
fn parts(store: &ParamStore) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (name, t) in store.params() {
        let mut comps = name.split('.');
        let first = comps.next().unwrap_or("").to_string();
        let key = if first == "encoder" {
            format!("encoder.{}", comps.next().unwrap_or(""))
        } else {
            first
        };
        *out.entry(key).or_insert(0) += t.numel();
    }
    out
}

fn sync(device: Device) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(_) = device {
        return rcmcl::engine::cuda::synchronize(device);
    }
    let _ = device;
    Ok(())
}

/// Bytes in use on a CUDA device and a peak reset; None on the CPU.
fn gpu_in_use_reset(device: Device) -> Result<Option<usize>> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(_) = device {
        let s = rcmcl::engine::cuda::memory_stats(device)?;
        rcmcl::engine::cuda::reset_peak_memory(device)?;
        return Ok(Some(s.in_use_bytes));
    }
    let _ = device;
    Ok(None)
}

fn gpu_peak(device: Device) -> Result<Option<usize>> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(_) = device {
        return Ok(Some(rcmcl::engine::cuda::memory_stats(device)?.peak_bytes));
    }
    let _ = device;
    Ok(None)
}

/// Ours, in this process: prints the setup and result JSON lines the parent reads.
fn child(args: &Args) -> Result<()> {
    let preset = args.presets[0].as_str();
    let (steps, warmup) = steps_for(args, preset);
    let device = match args.device.as_str() {
        "cuda" => Device::cuda(0)?,
        _ => Device::Cpu,
    };
    let (t, _, _) = data_sizes(preset).expect("checked preset");
    let shape = DataShape {
        frames: t,
        bodies: 1,
        joints: 25,
        classes: 32,
        rgb: true,
    };
    let store = ParamStore::with_seed(0).with_device(device);
    let model = Rcmcl::new(&store, &RcmclConfig::preset(preset, shape)?)?;
    let parts = parts(&store);
    let parts_json: Vec<String> = parts.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!(
        "{{\"kind\": \"setup\", \"device\": \"{device}\", \"threads\": {}, \"params\": {}, \"parts\": {{{}}}}}",
        rayon::current_num_threads(),
        store.num_params(),
        parts_json.join(", ")
    );
    let views = [
        random_view(preset, args.batch, 1, device)?,
        random_view(preset, args.batch, 2, device)?,
    ];
    let mut pre = Pretrainer::new(model, ObjectiveConfig::default())?;
    let mut opt = AdamW::from_store(&store, AdamWConfig::new(2e-3))?;
    sync(device)?;
    let base_rss = proc_status("VmRSS");
    let base_gpu = gpu_in_use_reset(device)?;
    let reset = reset_peak_rss();
    let mut times = Vec::new();
    let mut losses = Vec::new();
    let total_steps = warmup + steps;
    let mut cpu_start = None;
    for step in 0..total_steps {
        if step == warmup {
            cpu_start = cpu_seconds();
        }
        let t0 = Instant::now();
        let terms = pre.loss(&views, step, total_steps)?;
        terms.total.backward()?;
        opt.step()?;
        opt.zero_grad();
        pre.after_step()?;
        losses.push(terms.total.item()?);
        sync(device)?;
        if step >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let cpu_per_step = cpu_start
        .zip(cpu_seconds())
        .map_or("null".to_string(), |(a, b)| {
            format!("{:.4}", (b - a) / steps as f64)
        });
    let (peak, total, kind) = match (base_gpu, gpu_peak(device)?) {
        (Some(base), Some(peak)) => (
            Some(peak.saturating_sub(base)),
            Some(peak),
            "engine cuda allocator peak (delta over the model and inputs)".to_string(),
        ),
        _ => {
            let hwm = proc_status("VmHWM");
            let delta = hwm.zip(base_rss).map(|(h, b)| h.saturating_sub(b));
            let note = if reset { "" } else { " (HWM not reset)" };
            (delta, hwm, format!("VmHWM - VmRSS before the steps{note}"))
        }
    };
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0;
    let fmt_opt = |v: Option<usize>| v.map_or("null".to_string(), |v| v.to_string());
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{{\"kind\": \"result\", \"step_seconds\": [{}], \"median_s\": {median}, \"min_s\": {}, \"max_s\": {}, \"samples_per_s\": {}, \"cpu_s_per_step\": {cpu_per_step}, \"losses\": [{}], \"peak_bytes\": {}, \"peak_total_bytes\": {}, \"peak_kind\": \"{kind}\", \"cpu_cache_bytes\": {}}}",
        list(&times),
        sorted[0],
        sorted[sorted.len() - 1],
        args.batch as f64 / median,
        list(&losses),
        fmt_opt(peak),
        fmt_opt(total),
        rcmcl::engine::buffer_cache::stats().cached_bytes,
    );
    Ok(())
}

/// The value of `"key": ...` in a flat JSON line: a number, a string, or the raw text of an
/// object or array (enough for the lines both sides print).
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
    let rest = &line[start..];
    let end = match rest.chars().next()? {
        '"' => return rest[1..].split('"').next().map(String::from),
        '{' => rest.find('}')? + 1,
        '[' => rest.find(']')? + 1,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(rest[..end].trim().to_string())
}

fn num(line: &str, key: &str) -> Option<f64> {
    field(line, key)?.parse().ok()
}

/// One side's report: the setup line and the result line.
#[derive(Default)]
struct Side {
    setup: String,
    result: String,
}

fn run_side(mut cmd: Command, what: &str) -> std::result::Result<Side, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what} could not start ({e})"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut side = Side::default();
    for line in stdout.lines() {
        match field(line, "kind").as_deref() {
            Some("setup") => side.setup = line.to_string(),
            Some("result") => side.result = line.to_string(),
            _ => {}
        }
    }
    if !out.status.success() || side.result.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        // Keep the setup line: a parameter-count mismatch is reported from it.
        if !side.setup.is_empty() && side.result.is_empty() && out.status.code() == Some(3) {
            return Ok(side);
        }
        return Err(format!("{what} failed ({}): {last}", out.status));
    }
    Ok(side)
}

fn python() -> String {
    std::env::var("RCMCL_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn torch_available() -> std::result::Result<(), String> {
    let py = python();
    let out = Command::new(&py)
        .args(["-c", "import torch"])
        .output()
        .map_err(|e| format!("{py} not runnable ({e}); set RCMCL_PYTHON"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{py} cannot import torch (set RCMCL_PYTHON to an interpreter that can; see benches/reference/README.md)"
        ))
    }
}

/// The 1-minute load average (the machine may be shared: it says how much the timings can be
/// trusted).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

fn mib(v: Option<f64>) -> String {
    v.map_or("-".into(), |b| format!("{:.0}", b / (1 << 20) as f64))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pretrain_step: {e}");
            std::process::exit(2);
        }
    };
    if args.child {
        if let Err(e) = child(&args) {
            eprintln!("pretrain_step (ours): {e}");
            std::process::exit(1);
        }
        return;
    }
    let exe = std::env::current_exe().expect("the bench binary's path");
    let torch = if args.torch {
        torch_available()
    } else {
        Err("--no-torch".into())
    };
    println!(
        "pre-training step (L_CM + L_IM + L_deg + L_FUSION, backward, AdamW), f32, device {}",
        args.device
    );
    if let Err(why) = &torch {
        println!("(no PyTorch reference: {why})");
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for preset in &args.presets {
        let (steps, warmup) = steps_for(&args, preset);
        let mut cmd = Command::new(&exe);
        cmd.args(["--child", "--preset", preset, "--device", &args.device])
            .args(["--batch", &args.batch.to_string()])
            .args([
                "--steps",
                &steps.to_string(),
                "--warmup",
                &warmup.to_string(),
            ]);
        if let Some(n) = args.threads {
            cmd.env("RAYON_NUM_THREADS", n.to_string());
        }
        let load_before = load_average();
        let ours = match run_side(cmd, "ours") {
            Ok(s) => s,
            Err(e) => {
                println!("{preset}: {e}");
                failed = true;
                continue;
            }
        };
        let our_params = num(&ours.setup, "params").unwrap_or(0.0) as usize;
        let our_threads = num(&ours.setup, "threads").unwrap_or(0.0) as usize;
        println!(
            "\n{preset}: ours {} ({} rayon threads), {our_params} parameters {}",
            field(&ours.setup, "device").unwrap_or_default(),
            our_threads,
            field(&ours.setup, "parts").unwrap_or_default()
        );
        println!(
            "  ours  step s: {} (median {:.4}; load average {load_before} -> {})",
            field(&ours.result, "step_seconds").unwrap_or_default(),
            num(&ours.result, "median_s").unwrap_or(f64::NAN),
            load_average()
        );
        let load_before = load_average();
        let theirs = torch.as_ref().map_err(Clone::clone).and_then(|()| {
            let mut cmd = Command::new(python());
            cmd.arg(TORCH_SCRIPT)
                .args(["--preset", preset, "--device", &args.device])
                .args(["--batch", &args.batch.to_string()])
                .args([
                    "--steps",
                    &steps.to_string(),
                    "--warmup",
                    &warmup.to_string(),
                ])
                .args(["--threads", &our_threads.max(1).to_string()])
                .args(["--expect-params", &our_params.to_string()]);
            run_side(cmd, "the torch reference")
        });
        match &theirs {
            Ok(t) => {
                let their_params = num(&t.setup, "params").unwrap_or(0.0) as usize;
                println!(
                    "  torch {} on {} ({} threads), {their_params} parameters {}",
                    field(&t.setup, "torch").unwrap_or_default(),
                    field(&t.setup, "device").unwrap_or_default(),
                    num(&t.setup, "threads").unwrap_or(0.0),
                    field(&t.setup, "parts").unwrap_or_default()
                );
                if their_params != our_params {
                    eprintln!(
                        "parameter counts differ for {preset}: ours {our_params}, torch {their_params}: the reference does not mirror the model"
                    );
                    std::process::exit(1);
                }
                println!(
                    "  torch step s: {} (median {:.4}; load average {load_before} -> {})",
                    field(&t.result, "step_seconds").unwrap_or_default(),
                    num(&t.result, "median_s").unwrap_or(f64::NAN),
                    load_average()
                );
            }
            Err(e) if args.torch && torch.is_ok() => println!("  torch: {e}"),
            Err(_) => {}
        }
        rows.push((preset.clone(), steps, warmup, ours, theirs.ok()));
    }

    println!(
        "\n{:<6} {:>5} {:>7} {:>7} {:>11} {:>11} {:>6} {:>10} {:>10} {:>6} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9}",
        "preset",
        "batch",
        "steps",
        "threads",
        "ours smp/s",
        "torch smp/s",
        "ratio",
        "ours best",
        "torch best",
        "ratio",
        "ours cpu",
        "torch cpu",
        "ratio",
        "ours MiB",
        "cache MiB",
        "torch MiB"
    );
    let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let ratio = |o: Option<f64>, t: Option<f64>| {
        o.zip(t)
            .map_or("-".into(), |(o, t)| format!("{:.2}x", o / t))
    };
    for (preset, steps, warmup, ours, theirs) in &rows {
        let rate = |s: &Side, key: &str| num(&s.result, key).map(|sec| args.batch as f64 / sec);
        let (o, ob) = (rate(ours, "median_s"), rate(ours, "min_s"));
        let t = theirs.as_ref().and_then(|t| rate(t, "median_s"));
        let tb = theirs.as_ref().and_then(|t| rate(t, "min_s"));
        let oc = num(&ours.result, "cpu_s_per_step");
        let tc = theirs
            .as_ref()
            .and_then(|t| num(&t.result, "cpu_s_per_step"));
        let threads = format!(
            "{}/{}",
            num(&ours.setup, "threads").unwrap_or(0.0),
            theirs
                .as_ref()
                .and_then(|t| num(&t.setup, "threads"))
                .map_or("-".into(), |n| n.to_string())
        );
        let peak = |s: &Side| num(&s.result, "peak_bytes");
        println!(
            "{:<6} {:>5} {:>7} {:>7} {:>11} {:>11} {:>6} {:>10} {:>10} {:>6} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9}",
            preset,
            args.batch,
            format!("{steps}+{warmup}w"),
            threads,
            cell(o),
            cell(t),
            ratio(o, t),
            cell(ob),
            cell(tb),
            ratio(ob, tb),
            cell(oc),
            cell(tc),
            ratio(tc, oc),
            mib(peak(ours)),
            mib(num(&ours.result, "cpu_cache_bytes")),
            mib(theirs.as_ref().and_then(peak)),
        );
    }
    println!(
        "(smp/s = batch / median step time, best = batch / fastest step; cpu = process CPU seconds per step (all threads);\n ratio = ours / torch rate (torch / ours CPU time): above 1 means ours is faster;\n threads = ours (rayon) / torch; cache = ours' CPU buffer cache at the end, included in ours' peak;\n peak = {})",
        rows.first()
            .and_then(|r| field(&r.3.result, "peak_kind"))
            .unwrap_or_default()
    );
    if failed {
        std::process::exit(1);
    }
}
