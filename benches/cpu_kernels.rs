//! CPU kernel microbenchmarks: GEMM in GFLOP/s, elementwise and reductions in GB/s, each beside
//! NumPy measured in the same run (benches/numpy_reference.py, when python3 has numpy) and beside
//! a memcpy of the same bytes. Measured, never asserted. Run with `cargo bench --bench cpu_kernels`.

use rayon::prelude::*;
use rcmcl::engine::{DType, Device, Tensor};
use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

/// Median wall time of `f` over `repeats` calls, after one warm-up call.
fn median_time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// NumPy's median seconds per spec, or a reason why there are none.
fn numpy_times(specs: &[String]) -> Result<HashMap<String, f64>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/numpy_reference.py");
    let out = Command::new("python3")
        .arg(script)
        .args(specs)
        .output()
        .map_err(|e| format!("python3 not runnable ({e})"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!("numpy reference failed: {last}"));
    }
    let mut times = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // Lines look like {"name": "gemm:256x256x256", "seconds": 0.00012}
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

struct Row {
    spec: String,
    what: String,
    ours_s: f64,
    /// Work per call: FLOPs for GEMM, bytes moved for the memory-bound ops.
    work: f64,
    unit: &'static str,
}

/// A memory-bound case: its name, bytes moved per call, and the call.
type Case<'a> = Box<dyn Fn() + 'a>;

fn rand32(dims: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(dims.to_vec(), -1.0, 1.0, seed, DType::F32, Device::Cpu).unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut rows = Vec::new();

    let gemms: &[(usize, usize, usize)] = if quick {
        &[(256, 256, 256), (256, 128, 256)]
    } else {
        &[
            (256, 256, 256),
            (512, 512, 512),
            (1024, 1024, 1024),
            (2048, 2048, 2048),
            (256, 128, 256),
        ]
    };
    for &(m, k, n) in gemms {
        let (a, b) = (rand32(&[m, k], 1), rand32(&[k, n], 2));
        let reps = if m * n * k >= 1 << 30 { 3 } else { 10 };
        let t = median_time(reps, || {
            a.matmul(&b).unwrap();
        });
        rows.push(Row {
            spec: format!("gemm:{m}x{k}x{n}"),
            what: format!("matmul f32 ({m}x{k}) @ ({k}x{n})"),
            ours_s: t,
            work: 2.0 * (m * n * k) as f64,
            unit: "GFLOP/s",
        });
    }

    let n = if quick { 1 << 20 } else { 1 << 24 };
    let (a, b) = (rand32(&[n], 3), rand32(&[n], 4));
    let bytes = (n * 4) as f64;
    // The memory reference: the same bytes copied into a warm, preallocated buffer on all cores,
    // the closest a CPU program gets to the machine's bandwidth limit.
    let src = a.to_vec::<f32>().unwrap();
    // (n / 1024, 1024) rows with a (1024) bias: the broadcast of a Linear layer's bias, and
    // the softmax over the last axis of attention scores and logits.
    let matrix = a.reshape([n / 1024, 1024]).unwrap();
    let bias = rand32(&[1024], 5);
    let dst = std::sync::Mutex::new(vec![0.0f32; n]);
    let elementwise: Vec<(&str, f64, Case)> = vec![
        (
            "memcpy",
            2.0 * bytes,
            Box::new(|| {
                let mut d = dst.lock().unwrap();
                d.par_chunks_mut(1 << 16)
                    .zip(src.par_chunks(1 << 16))
                    .for_each(|(d, s)| d.copy_from_slice(s));
            }),
        ),
        ("add", 3.0 * bytes, Box::new(|| drop(a.add(&b).unwrap()))),
        ("mul", 3.0 * bytes, Box::new(|| drop(a.mul(&b).unwrap()))),
        (
            "add_bcast",
            2.0 * bytes,
            Box::new(|| drop(matrix.add(&bias).unwrap())),
        ),
        (
            "softmax",
            2.0 * bytes,
            Box::new(|| drop(matrix.softmax(-1).unwrap())),
        ),
        ("exp", 2.0 * bytes, Box::new(|| drop(a.exp().unwrap()))),
        ("relu", 2.0 * bytes, Box::new(|| drop(a.relu().unwrap()))),
        ("sum", bytes, Box::new(|| drop(a.sum_all().unwrap()))),
        (
            "sum_rows",
            bytes,
            Box::new(|| {
                drop(
                    a.reshape([n / 1024, 1024])
                        .unwrap()
                        .sum(&[1], false)
                        .unwrap(),
                )
            }),
        ),
    ];
    for (kind, work, f) in &elementwise {
        let t = median_time(10, f);
        let what = match *kind {
            "memcpy" => format!("copy of {n} f32 into a warm buffer (the memory reference)"),
            "sum_rows" => format!("sum over rows of ({}, 1024) f32", n / 1024),
            "add_bcast" => format!("add ({}, 1024) + (1024) f32, broadcast", n / 1024),
            "softmax" => format!("softmax over rows of ({}, 1024) f32", n / 1024),
            k => format!("{k} over {n} f32"),
        };
        rows.push(Row {
            spec: format!("{kind}:{n}"),
            what,
            ours_s: t,
            work: *work,
            unit: "GB/s",
        });
    }

    let specs: Vec<String> = rows.iter().map(|r| r.spec.clone()).collect();
    let numpy = numpy_times(&specs);
    if let Err(reason) = &numpy {
        println!("numpy reference skipped: {reason}");
    }
    let memcpy_rate = rows
        .iter()
        .find(|r| r.spec.starts_with("memcpy"))
        .map(|r| r.work / r.ours_s);

    println!("| operation | ours | unit | numpy | ours / numpy | ours / memcpy |");
    println!("|---|---:|---|---:|---:|---:|");
    for r in &rows {
        let ours = r.work / r.ours_s / 1e9;
        let np = numpy
            .as_ref()
            .ok()
            .and_then(|m| m.get(&r.spec))
            .map(|s| r.work / s / 1e9);
        let vs_np = np
            .map(|np| format!("{:.2}x", ours / np))
            .unwrap_or_else(|| "-".into());
        let np = np.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let vs_memcpy = match (r.unit, memcpy_rate) {
            ("GB/s", Some(m)) => format!("{:.2}x", r.work / r.ours_s / m),
            _ => "-".into(),
        };
        println!(
            "| {} | {:.1} | {} | {} | {} | {} |",
            r.what, ours, r.unit, np, vs_np, vs_memcpy
        );
    }
}
