//! The synthetic dataset: determinism, shapes, kinematic sanity, agreement between streams,
//! splits, and that the task is learnable but not trivial.

use std::collections::BTreeSet;

use models::data::geom::V3;
use models::data::layouts::KINECT25;
use models::data::preview::{write_contact_sheet, SheetOptions};
use models::data::synthetic::{
    clean_poses, generate_range, generate_sample, mirror_class, SynthConfig, CLASSES, TRACKED,
};
use models::data::{ArrayData, Modality, Sample};

fn tiny() -> SynthConfig {
    SynthConfig::preset("tiny").unwrap()
}

/// A cheap configuration with skeletons only, for tests that need many samples.
fn skeletons(subjects: usize, frames: usize) -> SynthConfig {
    SynthConfig {
        subjects,
        frames,
        modalities: vec![Modality::Skeleton, Modality::JointState],
        ..tiny()
    }
}

fn f32s(s: &Sample, m: Modality) -> &[f32] {
    match &s.streams[&m].data {
        ArrayData::F32(v) => v,
        _ => panic!("{m} is not f32"),
    }
}

fn u16s(s: &Sample, m: Modality) -> &[u16] {
    match &s.streams[&m].data {
        ArrayData::U16(v) => v,
        _ => panic!("{m} is not u16"),
    }
}

fn u8s(s: &Sample, m: Modality) -> &[u8] {
    match &s.streams[&m].data {
        ArrayData::U8(v) => v,
        _ => panic!("{m} is not u8"),
    }
}

#[test]
fn same_seed_same_samples_whatever_the_thread_count() {
    let cfg = tiny();
    let range = 0..24;
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| generate_range(&cfg, range.clone()).unwrap());
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(|| generate_range(&cfg, range.clone()).unwrap());
    assert_eq!(one, three);
    // One at a time, out of order, gives the same again.
    for i in range.clone().rev() {
        assert_eq!(generate_sample(&cfg, i).unwrap(), one[i]);
    }
    let other = SynthConfig { seed: 99, ..cfg };
    let different = generate_sample(&other, 5).unwrap();
    assert_eq!(different.meta, one[5].meta);
    assert_ne!(different.streams, one[5].streams);
}

#[test]
fn streams_do_not_depend_on_which_others_were_asked_for() {
    let all = generate_sample(&tiny(), 7).unwrap();
    for m in [Modality::Skeleton, Modality::Depth, Modality::Points] {
        let only = SynthConfig {
            modalities: vec![m],
            ..tiny()
        };
        let s = generate_sample(&only, 7).unwrap();
        assert_eq!(s.streams.len(), 1);
        assert_eq!(s.streams[&m], all.streams[&m], "{m}");
    }
}

#[test]
fn shapes_and_types_match_the_spec() {
    let cfg = tiny();
    let spec = cfg.spec();
    assert_eq!(spec.name, "synthetic-tiny");
    assert_eq!(spec.classes.len(), 32);
    assert_eq!(spec.streams.len(), Modality::ALL.len());
    assert_eq!(spec.dims_of(Modality::Skeleton), Some(&[8, 1, 25, 3][..]));
    assert_eq!(spec.dims_of(Modality::Rgb), Some(&[8, 3, 32, 32][..]));
    assert_eq!(spec.dims_of(Modality::Points), Some(&[8, 64, 3][..]));
    for i in [0, 100, cfg.num_samples() - 1] {
        let s = generate_sample(&cfg, i).unwrap();
        assert_eq!(s.meta, cfg.meta(i));
        for st in &spec.streams {
            let a = &s.streams[&st.modality];
            assert_eq!(a.dims, st.dims, "{}", st.modality);
            assert_eq!(a.elem(), st.modality.elem(), "{}", st.modality);
            assert_eq!(a.numel(), st.dims.iter().product::<usize>());
        }
        let sk = f32s(&s, Modality::Skeleton);
        assert!(sk.iter().all(|v| v.is_finite()));
        assert!(u8s(&s, Modality::JointState).iter().all(|&v| v <= 2));
    }
    assert!(generate_sample(&cfg, cfg.num_samples()).is_err());
    assert!(SynthConfig::preset("huge").is_err());
}

#[test]
fn presets_have_the_promised_sizes() {
    let small = SynthConfig::preset("small").unwrap();
    assert!(small.subjects >= 20 && small.classes >= 30);
    let bytes = small.bytes_per_sample() * small.num_samples();
    assert!(bytes < 1_000_000_000, "small is {bytes} bytes");
    let paper = SynthConfig::preset("paper").unwrap();
    assert_eq!(paper.dims(Modality::Rgb), vec![64, 3, 112, 112]);
    assert_eq!(paper.dims(Modality::Depth), vec![64, 112, 112]);
    assert_eq!(paper.dims(Modality::Points), vec![64, 2048, 3]);
    for name in SynthConfig::PRESETS {
        SynthConfig::preset(name).unwrap().validate().unwrap();
    }
    let bad = SynthConfig {
        modalities: vec![Modality::Depth, Modality::Depth],
        ..tiny()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn bone_lengths_are_constant_over_time() {
    let cfg = SynthConfig {
        frames: 24,
        ..tiny()
    };
    for (label, (name, _)) in CLASSES.iter().enumerate().take(cfg.classes) {
        let poses = clean_poses(&cfg, cfg.index_of(label, 2, 1, 2).unwrap()).unwrap();
        for &(a, b) in KINECT25.bones {
            let lens: Vec<f32> = poses.camera.iter().map(|f| (f[a] - f[b]).norm()).collect();
            let (lo, hi) = lens
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            assert!(lo > 0.01, "{}: bone ({a}, {b}) has length {lo}", name);
            assert!(
                hi - lo < 1e-4,
                "{}: bone ({a}, {b}) varies {lo}..{hi}",
                name
            );
        }
    }
}

/// Per-class mean trajectories of the clean world pose (frame-major, joints, xyz), over
/// subjects; the world pose is the same for every camera.
fn class_means(cfg: &SynthConfig) -> Vec<Vec<f32>> {
    (0..cfg.classes)
        .map(|label| {
            let mut sum = vec![0.0f32; cfg.frames * 25 * 3];
            for subject in 1..=cfg.subjects as u16 {
                let i = cfg.index_of(label, subject, 1, 2).unwrap();
                let poses = clean_poses(cfg, i).unwrap();
                for (k, v) in poses
                    .world
                    .iter()
                    .flatten()
                    .flat_map(|p| p.to_array())
                    .enumerate()
                {
                    sum[k] += v / cfg.subjects as f32;
                }
            }
            sum
        })
        .collect()
}

/// Root-mean-square distance per joint between two trajectories.
fn rms(a: &[f32], b: &[f32]) -> f32 {
    let ss: f32 = a
        .chunks(3)
        .zip(b.chunks(3))
        .map(|(p, q)| (V3::from_slice(p) - V3::from_slice(q)).norm().powi(2))
        .sum();
    (ss / (a.len() / 3) as f32).sqrt()
}

#[test]
fn classes_differ_and_mirrored_classes_are_mirror_images() {
    let cfg = skeletons(8, 16);
    let means = class_means(&cfg);
    for a in 0..cfg.classes {
        for b in 0..a {
            let d = rms(&means[a], &means[b]);
            assert!(
                d > 0.01,
                "{} and {} differ by only {d} m",
                CLASSES[a].0,
                CLASSES[b].0
            );
        }
    }
    // Mirror images, measured in a way that does not depend on each performance's timing: how
    // much each joint moves (its variance over time, averaged over subjects). In class a the
    // left hand moves as the right hand does in its mirror class b.
    let energy = |label: usize| -> Vec<f32> {
        let mut e = vec![0.0f32; 25];
        for subject in 1..=cfg.subjects as u16 {
            let poses = clean_poses(&cfg, cfg.index_of(label, subject, 1, 2).unwrap()).unwrap();
            for (jt, e) in e.iter_mut().enumerate() {
                let n = poses.world.len() as f32;
                let mean = poses.world.iter().fold(V3::ZERO, |acc, f| acc + f[jt]) * (1.0 / n);
                *e += poses
                    .world
                    .iter()
                    .map(|f| (f[jt] - mean).norm().powi(2))
                    .sum::<f32>()
                    / n;
            }
        }
        e
    };
    let perm = KINECT25.mirror_permutation();
    let dist = |x: &[f32], y: &[f32]| -> f32 {
        x.iter()
            .zip(y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let mut pairs = 0;
    for (a, (name, _)) in CLASSES.iter().enumerate().take(cfg.classes) {
        let Some(b) = mirror_class(a) else { continue };
        let (ea, eb) = (energy(a), energy(b));
        let flipped: Vec<f32> = perm.iter().map(|&src| eb[src]).collect();
        let (d_flip, d_same) = (dist(&ea, &flipped), dist(&ea, &eb));
        assert!(
            d_flip < 0.3 * d_same,
            "{name} vs mirrored {}: {d_flip} (unmirrored {d_same})",
            CLASSES[b].0
        );
        pairs += 1;
    }
    assert_eq!(pairs, 12);
}

#[test]
fn depth_agrees_with_the_skeleton() {
    let cfg = SynthConfig {
        height: 64,
        width: 64,
        ..tiny()
    };
    let k = cfg.intrinsics();
    let (mut near, mut total) = (0, 0);
    for i in (0..cfg.num_samples()).step_by(37) {
        let s = generate_sample(&cfg, i).unwrap();
        let sk = f32s(&s, Modality::Skeleton);
        let states = u8s(&s, Modality::JointState);
        let depth = u16s(&s, Modality::Depth);
        for t in 0..cfg.frames {
            for jt in 0..25 {
                if states[t * 25 + jt] != TRACKED {
                    continue;
                }
                let p = V3::from_slice(&sk[(t * 25 + jt) * 3..]);
                let Some((row, col)) = k.pixel(p) else {
                    continue;
                };
                let mm = depth[t * k.width * k.height + row * k.width + col];
                if mm == 0 {
                    continue; // a hole
                }
                total += 1;
                // The surface is in front of the joint by at most a limb's radius.
                let gap = p.z - mm as f32 / 1000.0;
                if (-0.05..0.25).contains(&gap) {
                    near += 1;
                }
            }
        }
    }
    let frac = near as f32 / total as f32;
    assert!(
        total > 500 && frac > 0.8,
        "{near} of {total} tracked joints agree"
    );
}

/// Distance from `p` to the segment `a`-`b`.
fn to_segment(p: V3, a: V3, b: V3) -> f32 {
    let ab = b - a;
    let t = ((p - a).dot(ab) / ab.dot(ab).max(1e-12)).clamp(0.0, 1.0);
    (p - (a + ab * t)).norm()
}

/// The fraction of `cfg`'s points (every 29th sample) within 0.25 m of a bone of the clean
/// skeleton; `check(sample, frame, point)` checks each point against the sample's depth map.
fn points_on_body(cfg: &SynthConfig, check: impl Fn(&Sample, usize, V3)) -> f32 {
    let (mut on_body, mut total) = (0, 0);
    for i in (0..cfg.num_samples()).step_by(29) {
        let s = generate_sample(cfg, i).unwrap();
        let pts = f32s(&s, Modality::Points);
        let clean = clean_poses(cfg, i).unwrap().camera;
        for t in 0..cfg.frames {
            for p in pts[t * cfg.points * 3..][..cfg.points * 3].chunks(3) {
                let p = V3::from_slice(p);
                check(&s, t, p);
                let d = KINECT25
                    .bones
                    .iter()
                    .map(|&(a, b)| to_segment(p, clean[t][a], clean[t][b]))
                    .fold(f32::MAX, f32::min);
                total += 1;
                if d < 0.25 {
                    on_body += 1;
                }
            }
        }
    }
    on_body as f32 / total as f32
}

#[test]
fn points_come_from_the_depth_map_and_lie_on_the_body() {
    // From the depth stream itself: each point is the back-projection of a depth pixel.
    let cfg = tiny();
    assert_eq!(cfg.points_supersample, 1);
    let k = cfg.intrinsics();
    let frac = points_on_body(&cfg, |s, t, p| {
        let (row, col) = k.pixel(p).expect("a point outside the image");
        let mm = u16s(s, Modality::Depth)[t * k.width * k.height + row * k.width + col];
        assert!((p.z - mm as f32 / 1000.0).abs() < 1e-4, "{p:?} vs {mm} mm");
    });
    assert!(frac > 0.99, "{frac} of the points lie on the body");

    // From a finer map of the same camera: inside the same frustum, and mostly on pixels the
    // depth stream also sees as the body (the rest fall just outside its coarser silhouette).
    let cfg = SynthConfig {
        points_supersample: 2,
        ..tiny()
    };
    let k = cfg.intrinsics();
    let agree = std::cell::Cell::new((0usize, 0usize));
    let frac = points_on_body(&cfg, |s, t, p| {
        let (row, col) = k.pixel(p).expect("a point outside the image");
        let mm = u16s(s, Modality::Depth)[t * k.width * k.height + row * k.width + col];
        if mm > 0 {
            let (near, all) = agree.get();
            let close = (p.z - mm as f32 / 1000.0).abs() < 0.3;
            agree.set((near + close as usize, all + 1));
        }
    });
    assert!(frac > 0.99, "{frac} of the points lie on the body");
    let (near, all) = agree.get();
    assert!(
        near as f32 > 0.85 * all as f32,
        "{near} of {all} points agree with the depth stream"
    );
}

#[test]
fn splits_are_disjoint_and_cover_every_sample() {
    let cfg = SynthConfig::preset("small").unwrap();
    let splits = cfg.splits();
    let names: Vec<&str> = splits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["xsub", "xview"]);
    for split in &splits {
        let train: BTreeSet<u32> = split.train.iter().copied().collect();
        let test: BTreeSet<u32> = split.test.iter().copied().collect();
        assert_eq!(train.len(), split.train.len());
        assert!(train.is_disjoint(&test), "{}", split.name);
        assert_eq!(
            train.len() + test.len(),
            cfg.num_samples(),
            "{}",
            split.name
        );
        for part in [&split.train, &split.test] {
            let classes: BTreeSet<u16> = part.iter().map(|&i| cfg.meta(i as usize).label).collect();
            assert_eq!(
                classes.len(),
                cfg.classes,
                "{}: every class on both sides",
                split.name
            );
        }
    }
    let xsub = &splits[0];
    let train_subjects: BTreeSet<u16> = xsub
        .train
        .iter()
        .map(|&i| cfg.meta(i as usize).subject)
        .collect();
    let test_subjects: BTreeSet<u16> = xsub
        .test
        .iter()
        .map(|&i| cfg.meta(i as usize).subject)
        .collect();
    assert!(train_subjects.is_disjoint(&test_subjects));
    assert_eq!(train_subjects.len(), cfg.subjects / 2);
    let xview = &splits[1];
    assert!(xview.test.iter().all(|&i| cfg.meta(i as usize).camera == 1));
    assert!(xview
        .train
        .iter()
        .all(|&i| cfg.meta(i as usize).camera != 1));
    // Every setup appears on both sides of the cross-subject split.
    for part in [&xsub.train, &xsub.test] {
        let setups: BTreeSet<u16> = part.iter().map(|&i| cfg.meta(i as usize).setup).collect();
        assert_eq!(setups.len(), 4);
    }
}

#[test]
fn nearest_centroid_on_skeletons_does_well_but_not_perfectly() {
    let cfg = skeletons(10, 16);
    let samples = generate_range(&cfg, 0..cfg.num_samples()).unwrap();
    // Features: joints relative to the first frame's spine base, so the camera's distance
    // does not dominate.
    let features: Vec<Vec<f32>> = samples
        .iter()
        .map(|s| {
            let sk = f32s(s, Modality::Skeleton);
            let origin = [sk[0], sk[1], sk[2]];
            sk.iter()
                .enumerate()
                .map(|(i, v)| v - origin[i % 3])
                .collect()
        })
        .collect();
    let split = &cfg.splits()[0];
    let dim = features[0].len();
    let mut centroids = vec![vec![0.0f32; dim]; cfg.classes];
    let mut counts = vec![0usize; cfg.classes];
    for &i in &split.train {
        let label = samples[i as usize].meta.label as usize;
        counts[label] += 1;
        for (c, v) in centroids[label].iter_mut().zip(&features[i as usize]) {
            *c += v;
        }
    }
    for (c, n) in centroids.iter_mut().zip(&counts) {
        c.iter_mut().for_each(|v| *v /= *n as f32);
    }
    let correct = split
        .test
        .iter()
        .filter(|&&i| {
            let f = &features[i as usize];
            let best = (0..cfg.classes)
                .min_by(|&a, &b| {
                    let da: f32 = centroids[a]
                        .iter()
                        .zip(f)
                        .map(|(c, v)| (c - v).powi(2))
                        .sum();
                    let db: f32 = centroids[b]
                        .iter()
                        .zip(f)
                        .map(|(c, v)| (c - v).powi(2))
                        .sum();
                    da.total_cmp(&db)
                })
                .unwrap();
            best == samples[i as usize].meta.label as usize
        })
        .count();
    let acc = correct as f32 / split.test.len() as f32;
    println!("nearest-centroid cross-subject accuracy: {acc:.3}");
    assert!(acc > 0.3 && acc < 0.97, "accuracy {acc}");
}

#[test]
fn contact_sheet_is_a_png_of_the_expected_size() {
    let cfg = tiny();
    let samples: Vec<Sample> = [0, 50]
        .iter()
        .map(|&i| generate_sample(&cfg, i).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sheet.png");
    let opts = SheetOptions {
        frames: 3,
        min_cell: 64,
    };
    write_contact_sheet(
        &path,
        &samples,
        &cfg.intrinsics(),
        &cfg.class_names(),
        &opts,
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, right after the chunk header.
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(width, 80 + 3 * (64 + 4));
    assert_eq!(height, 2 * (16 + 6 * (64 + 4) + 4));
}
