//! The loader: every sample once per epoch, seeded shuffles, identical batches whatever the
//! thread count, shapes and labels, clean shutdown, errors from corrupt records.

use models::data::degrade::{Degradations, DepthHoles, MaskKind, ModalityDrop, SkeletonMask};
use models::data::format::{stream_file_name, Dataset, DatasetWriter, Verify};
use models::data::loader::{Augmentations, Batch, Loader, LoaderConfig, Part};
use models::data::synthetic::{write_dataset, SynthConfig};
use models::data::{
    Array, ArrayData, DatasetSpec, Modality, Sample, SampleMeta, Split, StreamSpec,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const T: usize = 6;
const H: usize = 12;
const W: usize = 10;
const P: usize = 20;
const CLASSES: usize = 5;
const N: usize = 37;

const ALL: [Modality; 5] = [
    Modality::Skeleton,
    Modality::JointState,
    Modality::Depth,
    Modality::Rgb,
    Modality::Points,
];

fn spec() -> DatasetSpec {
    let dims = |m| match m {
        Modality::Skeleton => vec![T, 2, 25, 3],
        Modality::JointState => vec![T, 2, 25],
        Modality::Depth => vec![T, H, W],
        Modality::Rgb => vec![T, 3, H, W],
        _ => vec![T, P, 3],
    };
    DatasetSpec {
        name: "loader-test".into(),
        classes: (0..CLASSES).map(|c| format!("class {c}")).collect(),
        streams: ALL
            .iter()
            .map(|&m| StreamSpec {
                modality: m,
                dims: dims(m),
            })
            .collect(),
    }
}

fn sample(i: usize, rng: &mut ChaCha8Rng) -> Sample {
    let mut f32s = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(lo..hi)).collect()
    };
    let skeleton = f32s(T * 2 * 25 * 3, 0.5, 3.0);
    let points = f32s(T * P * 3, -1.0, 4.0);
    let states: Vec<u8> = (0..T * 2 * 25).map(|_| rng.gen_range(0..3)).collect();
    let depth: Vec<u16> = (0..T * H * W).map(|_| rng.gen_range(1..5000)).collect();
    let rgb: Vec<u8> = (0..T * 3 * H * W).map(|_| rng.gen()).collect();
    let streams = BTreeMap::from([
        (
            Modality::Skeleton,
            Array::new(vec![T, 2, 25, 3], ArrayData::F32(skeleton)).unwrap(),
        ),
        (
            Modality::JointState,
            Array::new(vec![T, 2, 25], ArrayData::U8(states)).unwrap(),
        ),
        (
            Modality::Depth,
            Array::new(vec![T, H, W], ArrayData::U16(depth)).unwrap(),
        ),
        (
            Modality::Rgb,
            Array::new(vec![T, 3, H, W], ArrayData::U8(rgb)).unwrap(),
        ),
        (
            Modality::Points,
            Array::new(vec![T, P, 3], ArrayData::F32(points)).unwrap(),
        ),
    ]);
    Sample {
        meta: SampleMeta {
            name: format!("s{i:03}"),
            label: (i % CLASSES) as u16,
            subject: 1 + (i % 4) as u16,
            camera: 1 + (i % 3) as u8,
            setup: 1,
            replication: 1,
        },
        streams,
    }
}

/// A dataset of N random samples; split "main" trains on the even ones (and sample 1).
fn dataset(dir: &std::path::Path) -> Arc<Dataset> {
    let path = dir.join("ds");
    let mut w = DatasetWriter::create(&path, &spec()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for i in 0..N {
        w.append(&sample(i, &mut rng)).unwrap();
    }
    let mut train: Vec<u32> = (0..N as u32).filter(|i| i % 2 == 0).collect();
    train.push(1);
    let test = (3..N as u32).step_by(2).collect();
    w.finish(&[Split {
        name: "main".into(),
        train,
        test,
    }])
    .unwrap();
    Arc::new(Dataset::open(&path, Verify::Checksums).unwrap())
}

fn full_config(threads: usize) -> LoaderConfig {
    let mut cfg = LoaderConfig::new(&ALL, 4);
    cfg.threads = threads;
    cfg.seed = 11;
    cfg.views = 2;
    // The flip swaps the pairs of the skeleton's layout (layouts::KINECT25).
    cfg.augment = Some(Augmentations::default());
    cfg.degrade = Some(Degradations {
        modality_drop: Some(ModalityDrop::Random {
            p: 0.3,
            keep_one: true,
        }),
        joint_noise: Some(0.02),
        point_sparsity: Some(0.3),
        depth_holes: Some(DepthHoles::default()),
        skeleton_mask: Some(SkeletonMask {
            modality: Modality::Skeleton,
            kind: MaskKind::Joints,
            ratio: 0.2,
        }),
        ..Degradations::default()
    });
    cfg
}

fn all_batches(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

fn values(t: &engine::Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// Every tensor of two batches, bit for bit.
fn assert_same_batch(a: &Batch, b: &Batch) {
    assert_eq!(a.samples, b.samples);
    assert_eq!(
        a.labels.to_vec::<i64>().unwrap(),
        b.labels.to_vec::<i64>().unwrap()
    );
    for (va, vb) in a.views.iter().zip(&b.views) {
        for (m, ta) in &va.streams {
            let ba: Vec<u32> = values(ta).iter().map(|v| v.to_bits()).collect();
            let bb: Vec<u32> = values(&vb.streams[m]).iter().map(|v| v.to_bits()).collect();
            assert!(ba == bb, "{m} differs in batch {}", a.index);
        }
        assert_eq!(values(&va.dropped), values(&vb.dropped));
        assert_eq!(va.mask.as_ref().map(values), vb.mask.as_ref().map(values));
        assert_eq!(va.clean.as_ref().map(values), vb.clean.as_ref().map(values));
    }
}

#[test]
fn every_sample_appears_once_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let train = ds.split("main").unwrap().train.clone();
    for threads in [0, 1, 3] {
        let mut cfg = LoaderConfig::new(&[Modality::Skeleton, Modality::Points], 5);
        cfg.threads = threads;
        let loader = Loader::new(ds.clone(), &train, cfg).unwrap();
        assert_eq!(loader.len(), train.len().div_ceil(5));
        for epoch in 0..3 {
            let batches = all_batches(&loader, epoch);
            assert_eq!(batches.len(), loader.len());
            let mut seen: Vec<u32> = batches.iter().flat_map(|b| b.samples.clone()).collect();
            assert_eq!(seen, loader.order(epoch));
            seen.sort();
            let mut want = train.clone();
            want.sort();
            assert_eq!(seen, want, "threads {threads}, epoch {epoch}");
            for (k, b) in batches.iter().enumerate() {
                assert_eq!(b.index, k);
                assert_eq!(b.epoch, epoch);
            }
        }
    }
}

#[test]
fn an_epoch_can_start_at_any_batch() {
    // A resumed run starts mid-epoch: the batches from position k on are the ones a full epoch
    // yields there, bit for bit, whatever the thread count.
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    for threads in [0, 2, 3] {
        let loader = Loader::new(
            ds.clone(),
            &(0..N as u32).collect::<Vec<_>>(),
            full_config(threads),
        )
        .unwrap();
        let full = all_batches(&loader, 4);
        for first in [0, 1, 4, full.len() - 1, full.len()] {
            let tail: Vec<Batch> = loader.epoch_from(4, first).map(|b| b.unwrap()).collect();
            assert_eq!(
                tail.len(),
                full.len() - first,
                "threads {threads}, first {first}"
            );
            for (a, b) in full[first..].iter().zip(&tail) {
                assert_eq!(a.index, b.index);
                assert_same_batch(a, b);
            }
        }
    }
}

#[test]
fn loaders_from_a_split() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let cfg = LoaderConfig::new(&[Modality::Points], 4);
    for (part, want) in [
        (Part::Train, ds.split("main").unwrap().train.clone()),
        (Part::Test, ds.split("main").unwrap().test.clone()),
    ] {
        let loader = Loader::from_split(ds.clone(), "main", part, cfg.clone()).unwrap();
        assert_eq!(loader.indices(), want.as_slice());
        let mut got: Vec<u32> = loader.epoch(0).flat_map(|b| b.unwrap().samples).collect();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want);
    }
    let err = Loader::from_split(ds, "nope", Part::Train, cfg).unwrap_err();
    assert!(err.to_string().contains("main"), "{err}");
}

#[test]
fn drop_last_leaves_out_the_short_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let idx: Vec<u32> = (0..N as u32).collect();
    let mut cfg = LoaderConfig::new(&[Modality::Points], 5);
    cfg.drop_last = true;
    let loader = Loader::new(ds, &idx, cfg).unwrap();
    let batches = all_batches(&loader, 0);
    assert_eq!(batches.len(), N / 5);
    assert!(batches.iter().all(|b| b.len() == 5));
}

#[test]
fn shuffles_are_seeded_and_differ_between_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let idx: Vec<u32> = (0..N as u32).collect();
    let make = |seed, shuffle| {
        let mut cfg = LoaderConfig::new(&[Modality::Skeleton], 8);
        cfg.seed = seed;
        cfg.shuffle = shuffle;
        Loader::new(ds.clone(), &idx, cfg).unwrap()
    };
    let a = make(1, true);
    assert_ne!(a.order(0), a.order(1));
    assert_ne!(a.order(0), idx);
    assert_eq!(a.order(3), make(1, true).order(3));
    assert_ne!(a.order(0), make(2, true).order(0));
    assert_eq!(make(1, false).order(5), idx);
    // The batches follow the order.
    let got: Vec<u32> = a.epoch(1).flat_map(|b| b.unwrap().samples).collect();
    assert_eq!(got, a.order(1));
}

#[test]
fn batches_are_identical_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let train = ds.split("main").unwrap().train.clone();
    let reference = all_batches(&Loader::new(ds.clone(), &train, full_config(0)).unwrap(), 2);
    for threads in [1, 2, 5] {
        let loader = Loader::new(ds.clone(), &train, full_config(threads)).unwrap();
        let got = all_batches(&loader, 2);
        assert_eq!(got.len(), reference.len());
        for (a, b) in reference.iter().zip(&got) {
            assert_same_batch(a, b);
        }
    }
    // Another epoch augments the same samples differently.
    let mut cfg = full_config(2);
    cfg.shuffle = false;
    let loader = Loader::new(ds.clone(), &train, cfg).unwrap();
    let (a, b) = (all_batches(&loader, 0), all_batches(&loader, 1));
    assert_eq!(a[0].samples, b[0].samples);
    let rgb = |x: &Batch| values(&x.views[0].streams[&Modality::Rgb]);
    assert_ne!(rgb(&a[0]), rgb(&b[0]));
}

#[test]
fn shapes_labels_and_plain_values_are_right() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let idx: Vec<u32> = (0..N as u32).collect();
    let mut cfg = LoaderConfig::new(&ALL, 8);
    cfg.views = 2;
    cfg.centre_skeletons = false;
    let loader = Loader::new(ds.clone(), &idx, cfg).unwrap();
    let batches = all_batches(&loader, 0);
    let last = batches.last().unwrap();
    assert_eq!(last.len(), N % 8);
    for b in &batches {
        let n = b.len();
        assert_eq!(b.labels.dims(), [n]);
        let labels = b.labels.to_vec::<i64>().unwrap();
        for ((&i, meta), &l) in b.samples.iter().zip(&b.metas).zip(&labels) {
            assert_eq!(meta, ds.meta(i as usize).unwrap());
            assert_eq!(l, i64::from(meta.label));
        }
        assert_eq!(b.views.len(), 2);
        let v = &b.views[0];
        assert_eq!(v.streams[&Modality::Skeleton].dims(), [n, T, 2, 25, 3]);
        assert_eq!(v.streams[&Modality::JointState].dims(), [n, T, 2, 25]);
        assert_eq!(v.streams[&Modality::Depth].dims(), [n, T, 1, H, W]);
        assert_eq!(v.streams[&Modality::Rgb].dims(), [n, T, 3, H, W]);
        assert_eq!(v.streams[&Modality::Points].dims(), [n, T, P, 3]);
        assert_eq!(v.dropped.dims(), [n, 5]);
        assert!(values(&v.dropped).iter().all(|&d| d == 0.0));
        assert!(v.mask.is_none() && v.clean.is_none());
        // Without augmentation both views are the record, converted.
        for (view, vv) in b.views.iter().enumerate() {
            let depth = values(&vv.streams[&Modality::Depth]);
            let rgb = values(&vv.streams[&Modality::Rgb]);
            let skel = values(&vv.streams[&Modality::Skeleton]);
            let states = values(&vv.streams[&Modality::JointState]);
            for (k, &i) in b.samples.iter().enumerate() {
                let i = i as usize;
                let d = ds.record(i, Modality::Depth).unwrap();
                let got = &depth[k * T * H * W..(k + 1) * T * H * W];
                for (g, &mm) in got.iter().zip(d.as_u16().unwrap()) {
                    assert_eq!(*g, f32::from(mm) * 0.001, "view {view}");
                }
                let c = ds.record(i, Modality::Rgb).unwrap();
                let got = &rgb[k * T * 3 * H * W..(k + 1) * T * 3 * H * W];
                for (g, &v) in got.iter().zip(c.as_u8().unwrap()) {
                    assert!((g - f32::from(v) / 255.0).abs() < 1e-6);
                }
                let s = ds.record(i, Modality::Skeleton).unwrap();
                let n = T * 2 * 25 * 3;
                assert_eq!(&skel[k * n..(k + 1) * n], s.as_f32().unwrap());
                let j = ds.record(i, Modality::JointState).unwrap();
                let n = T * 2 * 25;
                let want: Vec<f32> = j.as_u8().unwrap().iter().map(|&v| f32::from(v)).collect();
                assert_eq!(&states[k * n..(k + 1) * n], want.as_slice());
            }
        }
    }
}

#[test]
fn skeletons_are_centred_and_images_resized() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let idx: Vec<u32> = (0..N as u32).collect();
    let mut cfg = LoaderConfig::new(&[Modality::Skeleton, Modality::Depth, Modality::Rgb], 6);
    cfg.image_size = Some((8, 16));
    let loader = Loader::new(ds, &idx, cfg).unwrap();
    assert_eq!(loader.sample_dims(Modality::Rgb), Some(&[T, 3, 8, 16][..]));
    for b in loader.epoch(0) {
        let b = b.unwrap();
        let v = &b.views[0];
        assert_eq!(v.streams[&Modality::Depth].dims(), [b.len(), T, 1, 8, 16]);
        assert_eq!(v.streams[&Modality::Rgb].dims(), [b.len(), T, 3, 8, 16]);
        let skel = values(&v.streams[&Modality::Skeleton]);
        for s in skel.chunks(T * 2 * 25 * 3) {
            // Body 0's joints in frame 0 average to the origin.
            for k in 0..3 {
                let mean: f32 = s[..75].iter().skip(k).step_by(3).sum::<f32>() / 25.0;
                assert!(mean.abs() < 1e-5);
            }
        }
    }
}

#[test]
fn augmented_views_differ_and_degradation_reports_fit() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let idx: Vec<u32> = (0..N as u32).collect();
    let loader = Loader::new(ds, &idx, full_config(2)).unwrap();
    let mut dropped_any = false;
    for b in loader.epoch(0) {
        let b = b.unwrap();
        let n = b.len();
        let (v0, v1) = (&b.views[0], &b.views[1]);
        assert_ne!(
            values(&v0.streams[&Modality::Points]),
            values(&v1.streams[&Modality::Points])
        );
        let mask = v0.mask.as_ref().unwrap();
        assert_eq!(mask.dims(), [n, T, 2, 25]);
        assert_eq!(v0.clean.as_ref().unwrap().dims(), [n, T, 2, 25, 3]);
        let masked = values(mask).iter().filter(|&&m| m == 1.0).count();
        assert_eq!(masked, n * (0.2f32 * (T * 50) as f32).round() as usize);
        // A stream flagged as dropped is all zeros.
        let flags = values(&v0.dropped);
        for (k, m) in b.modalities.iter().enumerate() {
            let t = values(&v0.streams[m]);
            let per = t.len() / n;
            for j in 0..n {
                if flags[j * 5 + k] == 1.0 {
                    dropped_any = true;
                    assert!(t[j * per..(j + 1) * per].iter().all(|&v| v == 0.0));
                }
            }
        }
        // RGB stays in [0, 1] through crop and jitter.
        assert!(values(&v1.streams[&Modality::Rgb])
            .iter()
            .all(|v| (0.0..=1.0).contains(v)));
    }
    assert!(dropped_any);
}

#[test]
fn dropping_an_epoch_midway_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let idx: Vec<u32> = (0..N as u32).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for threads in [1, 2, 4] {
            let mut cfg = full_config(threads);
            cfg.batch_size = 2;
            cfg.prefetch = 1;
            let loader = Loader::new(ds.clone(), &idx, cfg).unwrap();
            let mut epoch = loader.epoch(0);
            epoch.next().unwrap().unwrap();
            // The threads are blocked on full queues now; dropping must free and join them.
            std::thread::sleep(Duration::from_millis(50));
            drop(epoch);
            // An epoch dropped before its first batch, too.
            drop(loader.epoch(1));
        }
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("dropping an epoch hung");
}

#[test]
fn a_corrupt_record_is_an_error_at_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let path = ds.dir().to_path_buf();
    drop(ds);
    // Overwrite one coordinate of sample 13's skeleton with a NaN. The sizes still match, so
    // a size-only open succeeds; the loader must notice.
    let file = path.join(stream_file_name(Modality::Skeleton));
    let mut bytes = std::fs::read(&file).unwrap();
    let record = T * 2 * 25 * 3 * 4;
    let at = 128 + 13 * record + 40;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&file, bytes).unwrap();
    let ds = Arc::new(Dataset::open(&path, Verify::SizesOnly).unwrap());
    let idx: Vec<u32> = (0..N as u32).collect();
    for threads in [0, 2] {
        let mut cfg = LoaderConfig::new(&[Modality::Skeleton, Modality::Depth], 4);
        cfg.shuffle = false;
        cfg.threads = threads;
        let loader = Loader::new(ds.clone(), &idx, cfg).unwrap();
        let results: Vec<_> = loader.epoch(0).collect();
        // Batches 0..3 hold samples 0..12; batch 3 holds 12..16 and fails; nothing follows.
        assert_eq!(results.len(), 4, "threads {threads}");
        assert!(results[..3].iter().all(|r| r.is_ok()));
        let err = results[3].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("sample 13") && err.contains("skeleton.bin"),
            "{err}"
        );
    }
}

/// The loader on what the generator really writes (lost joints, holes, background): every
/// modality, two augmented views, degradations, two threads.
#[test]
fn a_synthetic_tiny_dataset_loads_with_everything_on() {
    let cfg = SynthConfig::preset("tiny").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    write_dataset(&cfg, &out, false, |_, _| {}).unwrap();
    let ds = Arc::new(Dataset::open(&out, Verify::Checksums).unwrap());
    let mut lc = full_config(2);
    lc.modalities = Modality::ALL.to_vec();
    lc.batch_size = 16;
    let loader = Loader::from_split(ds.clone(), "xsub", Part::Train, lc).unwrap();
    let mut seen = 0;
    for b in loader.epoch(0) {
        let b = b.unwrap();
        seen += b.len();
        for v in &b.views {
            for (m, t) in &v.streams {
                let mut want = vec![b.len()];
                want.extend_from_slice(loader.sample_dims(*m).unwrap());
                assert_eq!(t.dims(), want.as_slice(), "{m}");
                let x = values(t);
                assert!(x.iter().all(|v| v.is_finite()), "{m}");
                match m {
                    Modality::Rgb => assert!(x.iter().all(|v| (0.0..=1.0).contains(v))),
                    Modality::Depth => assert!(x.iter().all(|&v| v >= 0.0)),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(seen, ds.split("xsub").unwrap().train.len());
}

#[test]
fn bad_configurations_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let idx: Vec<u32> = (0..N as u32).collect();
    let ok = LoaderConfig::new(&[Modality::Skeleton], 4);
    assert!(Loader::new(ds.clone(), &idx, ok.clone()).is_ok());
    let bad = |f: &dyn Fn(&mut LoaderConfig)| {
        let mut cfg = ok.clone();
        f(&mut cfg);
        Loader::new(ds.clone(), &idx, cfg).is_err()
    };
    assert!(bad(&|c| c.modalities = vec![Modality::Skeleton17]));
    assert!(bad(&|c| c.modalities = vec![]));
    assert!(bad(
        &|c| c.modalities = vec![Modality::Skeleton, Modality::Skeleton]
    ));
    assert!(bad(&|c| c.batch_size = 0));
    assert!(bad(&|c| c.views = 3));
    assert!(bad(&|c| c.image_size = Some((0, 4))));
    // Flip pairs must name joints the stream has (unless there is no flip).
    let wrong_pairs = |flip_p: f32| {
        let mut a = Augmentations::default();
        a.flip_pairs
            .insert(Modality::Skeleton, vec![(4, 8), (30, 2)]);
        a.skeleton.flip_p = flip_p;
        a
    };
    assert!(!bad(&|c| c.augment = Some(Augmentations::default())));
    assert!(bad(&|c| c.augment = Some(wrong_pairs(0.5))));
    assert!(!bad(&|c| c.augment = Some(wrong_pairs(0.0))));
    assert!(bad(&|c| {
        c.degrade = Some(Degradations {
            point_sparsity: Some(2.0),
            ..Degradations::default()
        })
    }));
    assert!(Loader::new(ds.clone(), &[0, N as u32], ok.clone()).is_err());
}
