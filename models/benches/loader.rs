//! Loader throughput: samples per second with every augmentation, two views per sample, on a
//! temporary dataset of random arrays with the shapes and sample count of the synthetic `small`
//! preset (random rather than generated: generating takes minutes, and the loader's cost does
//! not depend on the values).
//!
//! `cargo bench -p models --bench loader` (env: `LOADER_BENCH_SAMPLES` overrides the sample
//! count; `LOADER_BENCH_EPOCHS`, default 2; `LOADER_BENCH_ONLY=kernels|all|plain|<modality>`
//! times one part, for profiling).

use models::data::format::{Dataset, DatasetWriter, Verify};
use models::data::layouts::KINECT25;
use models::data::loader::{Augmentations, Loader, LoaderConfig};
use models::data::synthetic::SynthConfig;
use models::data::{Array, ArrayData, DatasetSpec, Elem, Modality, Sample, SampleMeta, Split};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Random arrays of the spec's shapes: coordinates about 3 m in front of the camera, depths
/// 0.5-4.5 m with about 11 % holes, any colour, valid joint states.
fn random_sample(spec: &DatasetSpec, rng: &mut ChaCha8Rng, i: usize) -> Sample {
    let mut streams = BTreeMap::new();
    for s in &spec.streams {
        let n: usize = s.dims.iter().product();
        let data = match (s.modality, s.modality.elem()) {
            (_, Elem::F32) => ArrayData::F32(
                (0..n / 3)
                    .flat_map(|_| {
                        [
                            rng.gen_range(-0.8..0.8),
                            rng.gen_range(-1.0..1.0),
                            rng.gen_range(2.5..3.5),
                        ]
                    })
                    .collect(),
            ),
            (Modality::Depth, _) => ArrayData::U16(
                (0..n)
                    .map(|_| match rng.gen_range(0..4500u16) {
                        d if d < 500 => 0,
                        d => d,
                    })
                    .collect(),
            ),
            (Modality::JointState, _) => {
                ArrayData::U8((0..n).map(|_| rng.gen_range(0..3)).collect())
            }
            _ => {
                let mut v = vec![0u8; n];
                rng.fill_bytes(&mut v);
                ArrayData::U8(v)
            }
        };
        streams.insert(
            s.modality,
            Array::new(s.dims.clone(), data).expect("bench shapes"),
        );
    }
    Sample {
        meta: SampleMeta {
            name: format!("bench{i:05}"),
            label: (i % spec.classes.len()) as u16,
            subject: 1 + (i % 20) as u16,
            camera: 1 + (i % 3) as u8,
            setup: 1,
            replication: 1,
        },
        streams,
    }
}

fn write_dataset(dir: &std::path::Path, spec: &DatasetSpec, n: usize) -> Arc<Dataset> {
    let path = dir.join("data");
    let mut w = DatasetWriter::create(&path, spec).expect("create dataset");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in 0..n {
        w.append(&random_sample(spec, &mut rng, i)).expect("append");
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
    cfg.augment = Some(Augmentations::default());
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
    let t = sdims.frames;
    let mut out = vec![0f32; sk_src.len()];
    let us = min_us(|| {
        let p = aug.skeleton.sample(&mut rng, t);
        let centre = Some([0.0, 0.0, 3.0]);
        let pairs = KINECT25.mirror_pairs;
        skeleton_view(
            sk_src,
            sdims,
            centre,
            &p,
            pairs,
            &mut rng,
            &mut out,
            &mut scratch,
        )
        .unwrap();
    });
    println!("| skeleton | {us:.1} |");
    let depth = ds.record(0, Modality::Depth).unwrap();
    let (h, w) = (depth.dims[1], depth.dims[2]);
    let idims = |channels| ImageDims {
        frames: t,
        channels,
        height: h,
        width: w,
    };
    let mut out = vec![0f32; t * h * w];
    let us = min_us(|| {
        let p = aug.rgbd.sample(&mut rng, t, h, w);
        depth_view(
            depth.as_u16().unwrap(),
            idims(1),
            &p,
            (h, w),
            &mut out,
            &mut scratch,
        )
        .unwrap();
    });
    println!("| depth (crop, resize, flip) | {us:.1} |");
    let us = min_us(|| depth_noise(&mut out, 0.01, &mut rng));
    println!("| depth noise | {us:.1} |");
    let rgb = ds.record(0, Modality::Rgb).unwrap();
    let mut out = vec![0f32; t * 3 * h * w];
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
            let p = aug.rgbd.sample(&mut rng, t, h, w);
            let src = rgb.as_u8().unwrap();
            rgb_view(src, idims(3), &p, j, (h, w), &mut out, &mut scratch).unwrap();
        });
        println!("| {name} | {us:.1} |");
    }
    let pts = ds.record(0, Modality::Points).unwrap();
    let points = pts.dims[1];
    let mut out = vec![0f32; pts.numel()];
    let us = min_us(|| {
        let p = aug.points.sample(&mut rng);
        points_view(
            pts.as_f32().unwrap(),
            points,
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
    let preset = SynthConfig::preset("small").expect("the small preset");
    let spec = preset.spec();
    let n = env("LOADER_BENCH_SAMPLES", preset.num_samples());
    let epochs = env("LOADER_BENCH_EPOCHS", 2);
    let only = std::env::var("LOADER_BENCH_ONLY").ok();
    let dir = tempfile::tempdir().expect("temporary directory");
    let start = Instant::now();
    let ds = write_dataset(dir.path(), &spec, n);
    let shapes: Vec<String> = spec
        .streams
        .iter()
        .map(|s| format!("{} {:?} {}", s.modality, s.dims, s.modality.elem().name()))
        .collect();
    println!(
        "dataset: {n} samples of random arrays shaped as the small preset: {}; written in {:.1} s",
        shapes.join(", "),
        start.elapsed().as_secs_f64()
    );
    println!("batch 32, two views per sample, every augmentation at its default");
    let all = Modality::ALL;
    if only.as_deref() == Some("kernels") {
        println!("| one view of | us (fastest round) |\n|---|---:|");
        kernel_costs(&ds);
        return;
    }
    if let Some(name) = only {
        // One part on the calling thread: `all`, `plain`, or a modality name.
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
        "\nper modality, built on the calling thread (threads = 0), one epoch:\n\
         | modality | samples/s | us per sample (CPU) |\n|---|---:|---:|"
    );
    let row = |name: &str, cfg: LoaderConfig| {
        let (wall, cpu) = measure(&ds, cfg, 1);
        let us = cpu.map_or("n/a".into(), |c| format!("{:.0}", 1e6 / c));
        println!("| {name} | {wall:.0} | {us} |");
    };
    for m in all {
        row(m.name(), config(&[m], 0));
    }
    row("all", config(&all, 0));
    let mut plain = config(&all, 0);
    plain.augment = None;
    row("all, no augmentation", plain);
    println!(
        "\none view of sample 0, single thread:\n| part | us (fastest of 15 rounds) |\n|---|---:|"
    );
    kernel_costs(&ds);
}
