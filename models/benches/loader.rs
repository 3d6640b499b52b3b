//! Loader throughput: samples per second with every augmentation, two views per sample, on a
//! temporary dataset of random arrays with the `small` preset's shapes.
//!
//! `cargo bench -p models --bench loader` (env: `LOADER_BENCH_SAMPLES`, default 2000;
//! `LOADER_BENCH_EPOCHS`, default 2).

use models::data::format::{Dataset, DatasetWriter, Verify};
use models::data::loader::{Augmentations, Loader, LoaderConfig};
use models::data::{
    Array, ArrayData, DatasetSpec, Modality, Sample, SampleMeta, Split, StreamSpec,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const T: usize = 32;
const J: usize = 25;
const HW: usize = 64;
const P: usize = 256;
const CLASSES: usize = 30;

/// NTU-25 left/right pairs (0-based), for the flip; the layouts module will own these.
const NTU25_PAIRS: [(usize, usize); 10] = [
    (4, 8),
    (5, 9),
    (6, 10),
    (7, 11),
    (12, 16),
    (13, 17),
    (14, 18),
    (15, 19),
    (21, 23),
    (22, 24),
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn random_sample(rng: &mut ChaCha8Rng, i: usize) -> Sample {
    let mut skeleton = vec![0f32; T * J * 3];
    for p in skeleton.chunks_exact_mut(3) {
        p[0] = rng.gen_range(-0.8..0.8);
        p[1] = rng.gen_range(-1.0..1.0);
        p[2] = rng.gen_range(2.5..3.5);
    }
    let joint_state: Vec<u8> = (0..T * J).map(|_| rng.gen_range(0..3)).collect();
    let depth: Vec<u16> = (0..T * HW * HW)
        .map(|_| {
            let d: u16 = rng.gen_range(0..4500);
            if d < 500 {
                0
            } else {
                d
            }
        })
        .collect();
    let mut rgb = vec![0u8; T * 3 * HW * HW];
    rng.fill_bytes(&mut rgb);
    let mut points = vec![0f32; T * P * 3];
    for p in points.chunks_exact_mut(3) {
        p[0] = rng.gen_range(-1.0..1.0);
        p[1] = rng.gen_range(-1.0..1.0);
        p[2] = rng.gen_range(2.0..4.0);
    }
    let array = |dims: &[usize], data| Array::new(dims.to_vec(), data).expect("bench shapes");
    let streams = BTreeMap::from([
        (
            Modality::Skeleton,
            array(&[T, 1, J, 3], ArrayData::F32(skeleton)),
        ),
        (
            Modality::JointState,
            array(&[T, 1, J], ArrayData::U8(joint_state)),
        ),
        (Modality::Depth, array(&[T, HW, HW], ArrayData::U16(depth))),
        (Modality::Rgb, array(&[T, 3, HW, HW], ArrayData::U8(rgb))),
        (Modality::Points, array(&[T, P, 3], ArrayData::F32(points))),
    ]);
    Sample {
        meta: SampleMeta {
            name: format!("bench{i:05}"),
            label: (i % CLASSES) as u16,
            subject: 1 + (i % 20) as u16,
            camera: 1 + (i % 3) as u8,
            setup: 1,
            replication: 1,
        },
        streams,
    }
}

fn write_dataset(dir: &std::path::Path, n: usize) -> Arc<Dataset> {
    let spec = DatasetSpec {
        name: "bench-small-shapes".into(),
        classes: (0..CLASSES).map(|c| format!("class{c}")).collect(),
        streams: vec![
            StreamSpec {
                modality: Modality::Skeleton,
                dims: vec![T, 1, J, 3],
            },
            StreamSpec {
                modality: Modality::JointState,
                dims: vec![T, 1, J],
            },
            StreamSpec {
                modality: Modality::Depth,
                dims: vec![T, HW, HW],
            },
            StreamSpec {
                modality: Modality::Rgb,
                dims: vec![T, 3, HW, HW],
            },
            StreamSpec {
                modality: Modality::Points,
                dims: vec![T, P, 3],
            },
        ],
    };
    let path = dir.join("data");
    let mut w = DatasetWriter::create(&path, &spec).expect("create dataset");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in 0..n {
        w.append(&random_sample(&mut rng, i)).expect("append");
    }
    let split = Split {
        name: "all".into(),
        train: (0..n as u32).collect(),
        test: vec![],
    };
    w.finish(&[split]).expect("finish dataset");
    Arc::new(Dataset::open(&path, Verify::SizesOnly).expect("open dataset"))
}

fn config(modalities: &[Modality], threads: usize) -> LoaderConfig {
    let mut cfg = LoaderConfig::new(modalities, 32);
    cfg.views = 2;
    cfg.threads = threads;
    cfg.seed = 7;
    cfg.augment = Some(Augmentations {
        flip_pairs: BTreeMap::from([(Modality::Skeleton, NTU25_PAIRS.to_vec())]),
        ..Augmentations::default()
    });
    cfg
}

/// CPU seconds this process has used (user + system, all threads), from /proc (Linux); the
/// machine is shared, so CPU time says more about the loader's cost than wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// (samples per wall-clock second, samples per CPU second) over `epochs` epochs, after one
/// untimed warm-up batch.
fn measure(ds: &Arc<Dataset>, cfg: LoaderConfig, epochs: usize) -> (f64, Option<f64>) {
    let indices: Vec<u32> = (0..ds.len() as u32).collect();
    let loader = Loader::new(ds.clone(), &indices, cfg).expect("loader");
    if let Some(b) = loader.epoch(1000).next() {
        b.expect("warm-up batch");
    }
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut n = 0usize;
    for e in 0..epochs as u64 {
        for b in loader.epoch(e) {
            n += b.expect("batch").len();
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| b - a);
    (n as f64 / wall, cpu.map(|c| n as f64 / c))
}

/// Microseconds per call of `f`: the fastest of 15 rounds of 20 calls, which filters out the
/// other processes sharing the machine.
fn min_us(mut f: impl FnMut()) -> f64 {
    (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..20 {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / 20.0
        })
        .fold(f64::INFINITY, f64::min)
}

/// One augmented view of sample 0 of each modality, timed alone (single thread).
fn kernel_costs(ds: &Dataset) {
    use models::data::augment::*;
    use models::data::rng::{sample_rng, Purpose};
    let aug = Augmentations::default();
    let mut scratch = Scratch::default();
    let mut rng = sample_rng(1, 0, 0, 0, Purpose::Skeleton);
    let sk = ds.record(0, Modality::Skeleton).unwrap();
    let sk_src = sk.as_f32().unwrap();
    let sdims = SkeletonDims::from_dims(sk.dims).unwrap();
    let mut out = vec![0f32; sk_src.len()];
    let us = min_us(|| {
        let p = aug.skeleton.sample(&mut rng, T);
        skeleton_view(
            sk_src,
            sdims,
            Some([0.0, 0.0, 3.0]),
            &p,
            &NTU25_PAIRS,
            &mut rng,
            &mut out,
            &mut scratch,
        )
        .unwrap();
    });
    println!("| skeleton | {us:.1} |");
    let idims = |c| ImageDims {
        frames: T,
        channels: c,
        height: HW,
        width: HW,
    };
    let depth = ds.record(0, Modality::Depth).unwrap();
    let mut out = vec![0f32; T * HW * HW];
    let us = min_us(|| {
        let p = aug.rgbd.sample(&mut rng, T, HW, HW);
        depth_view(
            depth.as_u16().unwrap(),
            idims(1),
            &p,
            (HW, HW),
            &mut out,
            &mut scratch,
        )
        .unwrap();
    });
    println!("| depth (crop, resize, flip) | {us:.1} |");
    let us = min_us(|| depth_noise(&mut out, 0.01, &mut rng));
    println!("| depth noise | {us:.1} |");
    let rgb = ds.record(0, Modality::Rgb).unwrap();
    let mut out = vec![0f32; T * 3 * HW * HW];
    let jitter = JitterParams {
        brightness: 1.2,
        contrast: 0.8,
        saturation: 1.1,
    };
    for (name, j) in [
        ("rgb (crop, resize, flip)", None),
        ("rgb + colour jitter", Some(&jitter)),
    ] {
        let us = min_us(|| {
            let p = aug.rgbd.sample(&mut rng, T, HW, HW);
            rgb_view(
                rgb.as_u8().unwrap(),
                idims(3),
                &p,
                j,
                (HW, HW),
                &mut out,
                &mut scratch,
            )
            .unwrap();
        });
        println!("| {name} | {us:.1} |");
    }
    let pts = ds.record(0, Modality::Points).unwrap();
    let mut out = vec![0f32; T * P * 3];
    let us = min_us(|| {
        let p = aug.points.sample(&mut rng);
        points_view(
            pts.as_f32().unwrap(),
            P,
            &p,
            &mut rng,
            &mut out,
            &mut scratch,
        )
        .unwrap();
    });
    println!("| points | {us:.1} |");
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.0}"))
}

fn main() {
    let n = env("LOADER_BENCH_SAMPLES", 2000);
    let epochs = env("LOADER_BENCH_EPOCHS", 2);
    let only = std::env::var("LOADER_BENCH_ONLY").ok();
    let dir = tempfile::tempdir().expect("temporary directory");
    let start = Instant::now();
    let ds = write_dataset(dir.path(), n);
    println!(
        "dataset: {n} samples, skeleton ({T}, 1, {J}, 3), joint_state ({T}, 1, {J}), depth ({T}, {HW}, {HW}) u16, \
         rgb ({T}, 3, {HW}, {HW}) u8, points ({T}, {P}, 3); written in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!("batch 32, two views per sample, every augmentation at its default");
    let all = [
        Modality::Skeleton,
        Modality::JointState,
        Modality::Depth,
        Modality::Rgb,
        Modality::Points,
    ];
    if only.as_deref() == Some("kernels") {
        println!("| one view of | us (fastest round) |\n|---|---:|");
        kernel_costs(&ds);
        return;
    }
    if let Some(name) = only {
        // For profiling one part: `all`, `plain`, or a modality name, on the calling thread.
        let mut cfg = match Modality::from_name(&name) {
            Some(m) => config(&[m], 0),
            None => config(&all, 0),
        };
        if name == "plain" {
            cfg.augment = None;
        }
        let (wall, cpu) = measure(&ds, cfg, epochs);
        println!(
            "{name}: {wall:.0} samples/s, {} per CPU second",
            fmt_rate(cpu)
        );
        return;
    }
    println!(
        "\nall modalities:\n| threads | samples/s | samples per CPU second |\n|---:|---:|---:|"
    );
    for threads in [1, 2] {
        let (wall, cpu) = measure(&ds, config(&all, threads), epochs);
        println!("| {threads} | {wall:.0} | {} |", fmt_rate(cpu));
    }
    println!(
        "\nper modality, built on the calling thread (threads = 0):\n\
         | modality | samples/s | us per sample (CPU) |\n|---|---:|---:|"
    );
    let row = |name: &str, cfg: LoaderConfig| {
        let (wall, cpu) = measure(&ds, cfg, 1);
        let us = cpu.map_or("n/a".into(), |c| format!("{:.1}", 1e6 / c));
        println!("| {name} | {wall:.0} | {us} |");
    };
    for m in all {
        row(m.name(), config(&[m], 0));
    }
    row("all", config(&all, 0));
    let mut plain = config(&all, 0);
    plain.augment = None;
    row("all, no augmentation", plain);
}
