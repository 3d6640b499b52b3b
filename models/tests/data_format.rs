//! The on-disk dataset format: round trips, corruption detection, atomic writes.

use models::data::format::{stream_file_name, Dataset, DatasetWriter, Verify, HEADER_FILE};
use models::data::{
    Array, ArrayData, DataError, DatasetSpec, Modality, Sample, SampleMeta, Split, StreamSpec,
};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A small deterministic generator (xorshift64*), so the tests need no rand crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Odd shapes for every modality, so no size is accidentally a multiple of anything.
fn all_modalities_spec() -> DatasetSpec {
    let dims = |m: Modality| -> Vec<usize> {
        match m {
            Modality::Skeleton => vec![3, 2, 25, 3],
            Modality::JointState => vec![3, 2, 25],
            Modality::Skeleton17 => vec![1, 1, 17, 3],
            Modality::Skeleton15 => vec![5, 1, 15, 3],
            Modality::Depth => vec![2, 7, 5],
            Modality::Rgb => vec![3, 3, 5, 7],
            Modality::Points => vec![3, 11, 3],
        }
    };
    DatasetSpec {
        name: "test-all".into(),
        classes: (0..7).map(|c| format!("class {c}")).collect(),
        streams: Modality::ALL
            .iter()
            .map(|&m| StreamSpec {
                modality: m,
                dims: dims(m),
            })
            .collect(),
    }
}

/// A sample with random contents (f32 values as random bit patterns, NaNs included).
fn random_sample(spec: &DatasetSpec, i: usize, rng: &mut Rng) -> Sample {
    let mut streams = BTreeMap::new();
    for s in &spec.streams {
        let n: usize = s.dims.iter().product();
        let data = match s.modality.elem() {
            models::data::Elem::F32 => {
                ArrayData::F32((0..n).map(|_| f32::from_bits(rng.next() as u32)).collect())
            }
            models::data::Elem::U16 => ArrayData::U16((0..n).map(|_| rng.next() as u16).collect()),
            models::data::Elem::U8 => ArrayData::U8((0..n).map(|_| rng.next() as u8).collect()),
        };
        streams.insert(s.modality, Array::new(s.dims.clone(), data).unwrap());
    }
    Sample {
        meta: SampleMeta {
            name: format!("sample-{i:03}"),
            label: (rng.next() % spec.classes.len() as u64) as u16,
            subject: (rng.next() % 40 + 1) as u16,
            camera: (rng.next() % 3 + 1) as u8,
            setup: (rng.next() % 32 + 1) as u16,
            replication: (rng.next() % 2 + 1) as u8,
        },
        streams,
    }
}

/// Arrays equal bit for bit (NaN == NaN of the same bits).
fn same_bits(a: &Array, b: &Array) -> bool {
    a.dims == b.dims
        && match (&a.data, &b.data) {
            (ArrayData::F32(x), ArrayData::F32(y)) => x
                .iter()
                .map(|v| v.to_bits())
                .eq(y.iter().map(|v| v.to_bits())),
            (x, y) => x == y,
        }
}

fn write_dataset(dir: &Path, spec: &DatasetSpec, samples: &[Sample], splits: &[Split]) {
    let mut w = DatasetWriter::create(dir, spec).unwrap();
    for s in samples {
        w.append(s).unwrap();
    }
    w.finish(splits).unwrap();
}

fn sample_set(n: usize) -> (DatasetSpec, Vec<Sample>, Vec<Split>) {
    let spec = all_modalities_spec();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let samples: Vec<Sample> = (0..n).map(|i| random_sample(&spec, i, &mut rng)).collect();
    let splits = vec![
        Split {
            name: "xsub".into(),
            train: (0..n as u32).filter(|i| i % 3 != 0).collect(),
            test: (0..n as u32).filter(|i| i % 3 == 0).collect(),
        },
        Split {
            name: "xview".into(),
            train: vec![0, 1],
            test: vec![],
        },
    ];
    (spec, samples, splits)
}

/// A fresh dataset of 13 random samples in a temporary directory.
fn fixture() -> (tempfile::TempDir, PathBuf, Vec<Sample>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    let (spec, samples, splits) = sample_set(13);
    write_dataset(&dir, &spec, &samples, &splits);
    (tmp, dir, samples)
}

/// The error's file, for errors that carry one.
fn error_path(e: &DataError) -> Option<&Path> {
    match e {
        DataError::Io { path, .. } | DataError::Format { path, .. } => Some(path),
        DataError::Parse { path, .. } => Some(path),
        _ => None,
    }
}

fn assert_format_error(e: DataError, file: &str, words: &str) {
    let text = e.to_string();
    assert!(
        matches!(e, DataError::Format { .. }),
        "expected a format error, got {text}"
    );
    assert_eq!(
        error_path(&e).and_then(|p| p.file_name()).unwrap(),
        file,
        "{text}"
    );
    assert!(text.contains(words), "{text:?} should mention {words:?}");
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

fn edit_header(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(HEADER_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn random_samples_round_trip_in_every_modality() {
    let (_tmp, dir, samples) = fixture();
    let (spec, _, splits) = sample_set(13);
    for verify in [Verify::Checksums, Verify::SizesOnly] {
        let ds = Dataset::open(&dir, verify).unwrap();
        assert_eq!(ds.len(), samples.len());
        assert_eq!(ds.spec(), &spec);
        assert_eq!(ds.splits(), splits.as_slice());
        assert_eq!(ds.split("xsub"), Some(&splits[0]));
        for (i, s) in samples.iter().enumerate() {
            assert_eq!(ds.meta(i).unwrap(), &s.meta);
            for m in Modality::ALL {
                let view = ds.record(i, m).unwrap();
                assert_eq!(view.elem(), m.elem());
                assert!(
                    same_bits(&view.to_array(), &s.streams[&m]),
                    "sample {i} {m}"
                );
            }
            let owned = ds.sample(i, &Modality::ALL).unwrap();
            assert_eq!(owned.meta, s.meta);
            for m in Modality::ALL {
                assert!(same_bits(&owned.streams[&m], &s.streams[&m]));
            }
        }
        // A subset of streams comes back as just that subset.
        let some = ds.sample(4, &[Modality::Depth, Modality::Points]).unwrap();
        assert_eq!(
            some.streams.keys().copied().collect::<Vec<_>>(),
            vec![Modality::Depth, Modality::Points]
        );
    }
}

#[test]
fn records_are_borrowed_typed_slices() {
    let (_tmp, dir, samples) = fixture();
    let ds = Dataset::open(&dir, Verify::SizesOnly).unwrap();
    let v = ds.record(5, Modality::Points).unwrap();
    assert_eq!(v.dims, &[3, 11, 3]);
    let xs = v.as_f32().unwrap();
    assert_eq!(xs.as_ptr() as usize % std::mem::align_of::<f32>(), 0);
    let ArrayData::F32(want) = &samples[5].streams[&Modality::Points].data else {
        unreachable!()
    };
    assert_eq!(xs.len(), want.len());
    assert!(xs.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()));
    let d = ds.record(12, Modality::Depth).unwrap();
    assert_eq!(d.as_u16().unwrap().as_ptr() as usize % 2, 0);
    assert!(d.as_f32().is_none());
}

#[test]
fn out_of_range_and_missing_streams_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    let (mut spec, samples, _) = sample_set(3);
    spec.streams.retain(|s| s.modality == Modality::Skeleton);
    let mut w = DatasetWriter::create(&dir, &spec).unwrap();
    for s in &samples {
        let mut s = s.clone();
        s.streams.retain(|m, _| *m == Modality::Skeleton);
        w.append(&s).unwrap();
    }
    w.finish(&[]).unwrap();
    let ds = Dataset::open(&dir, Verify::Checksums).unwrap();
    assert!(matches!(
        ds.record(3, Modality::Skeleton),
        Err(DataError::Invalid(_))
    ));
    assert!(matches!(ds.meta(3), Err(DataError::Invalid(_))));
    let e = ds.record(0, Modality::Depth).unwrap_err();
    assert!(e.to_string().contains("no depth stream"), "{e}");
}

#[test]
fn an_empty_dataset_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty");
    let (spec, _, _) = sample_set(0);
    write_dataset(&dir, &spec, &[], &[]);
    let ds = Dataset::open(&dir, Verify::Checksums).unwrap();
    assert!(ds.is_empty());
    assert_eq!(ds.spec(), &spec);
}

#[test]
fn a_truncated_file_is_named() {
    let (_tmp, dir, _) = fixture();
    let path = dir.join(stream_file_name(Modality::Rgb));
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    for verify in [Verify::Checksums, Verify::SizesOnly] {
        let e = Dataset::open(&dir, verify).unwrap_err();
        assert_format_error(e, "rgb.bin", "truncated");
    }
}

#[test]
fn a_flipped_byte_fails_the_checksum_but_opens_unverified() {
    let (_tmp, dir, samples) = fixture();
    let path = dir.join(stream_file_name(Modality::Depth));
    // A byte inside sample 3's depth record.
    let record = 2 * 7 * 5 * 2;
    flip_byte(&path, 128 + 3 * record + 9);
    let e = Dataset::open(&dir, Verify::Checksums).unwrap_err();
    assert_format_error(e, "depth.bin", "checksum");
    let ds = Dataset::open(&dir, Verify::SizesOnly).unwrap();
    let got = ds.record(3, Modality::Depth).unwrap().to_array();
    assert_ne!(got, samples[3].streams[&Modality::Depth]);
    assert_eq!(
        ds.record(2, Modality::Depth).unwrap().to_array(),
        samples[2].streams[&Modality::Depth]
    );
}

#[test]
fn bad_magic_is_named() {
    let (_tmp, dir, _) = fixture();
    flip_byte(&dir.join(stream_file_name(Modality::Skeleton)), 0);
    for verify in [Verify::Checksums, Verify::SizesOnly] {
        let e = Dataset::open(&dir, verify).unwrap_err();
        assert_format_error(e, "skeleton.bin", "magic");
    }
}

#[test]
fn a_wrong_version_is_named() {
    let (_tmp, dir, _) = fixture();
    let path = dir.join(stream_file_name(Modality::Points));
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&path, bytes).unwrap();
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, "points.bin", "version 2");

    let (_tmp, dir, _) = fixture();
    edit_header(&dir, |h| h["version"] = 99.into());
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, HEADER_FILE, "version 99");
}

#[test]
fn a_header_that_disagrees_with_a_file_is_named() {
    // Same byte count, other shape.
    let (_tmp, dir, _) = fixture();
    edit_header(&dir, |h| {
        let streams = h["streams"].as_array_mut().unwrap();
        let s = streams
            .iter_mut()
            .find(|s| s["modality"] == "depth")
            .unwrap();
        s["dims"] = serde_json::json!([2, 5, 7]);
    });
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, "depth.bin", "shape");

    // A record count the files do not hold.
    let (_tmp, dir, _) = fixture();
    edit_header(&dir, |h| {
        h["count"] = 12.into();
        h["samples"].as_array_mut().unwrap().pop();
        h["splits"] = serde_json::json!([]);
    });
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, "skeleton.bin", "records");

    // A byte count the file does not have.
    let (_tmp, dir, _) = fixture();
    edit_header(&dir, |h| {
        let s = &mut h["streams"][1];
        let bytes = s["bytes"].as_u64().unwrap();
        s["bytes"] = (bytes + 1).into();
    });
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, "joint_state.bin", "header says");

    // A sample count that disagrees with the sample list.
    let (_tmp, dir, _) = fixture();
    edit_header(&dir, |h| h["count"] = 14.into());
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, HEADER_FILE, "count");

    // A split naming a sample that is not there.
    let (_tmp, dir, _) = fixture();
    edit_header(&dir, |h| h["splits"][0]["test"] = serde_json::json!([13]));
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, HEADER_FILE, "sample 13");

    // A label without a class.
    let (_tmp, dir, _) = fixture();
    edit_header(&dir, |h| h["samples"][5]["label"] = 7.into());
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, HEADER_FILE, "label 7");

    // A stream file that is missing altogether.
    let (_tmp, dir, _) = fixture();
    fs::remove_file(dir.join("skeleton15.bin")).unwrap();
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
    assert!(error_path(&e).unwrap().ends_with("skeleton15.bin"));

    // Garbage where the header should be.
    let (_tmp, dir, _) = fixture();
    fs::write(dir.join(HEADER_FILE), b"{ not json").unwrap();
    let e = Dataset::open(&dir, Verify::SizesOnly).unwrap_err();
    assert_format_error(e, HEADER_FILE, "not a valid dataset header");
}

#[test]
fn append_names_the_sample_and_stream_that_do_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    let (spec, samples, _) = sample_set(4);
    let mut w = DatasetWriter::create(&dir, &spec).unwrap();
    w.append(&samples[0]).unwrap();
    w.append(&samples[1]).unwrap();

    let mut bad = samples[2].clone();
    let depth = bad.streams.get_mut(&Modality::Depth).unwrap();
    depth.dims = vec![2, 5, 7];
    let e = w.append(&bad).unwrap_err().to_string();
    assert!(
        e.contains("sample 2 (sample-002)") && e.contains("depth") && e.contains("[2, 5, 7]"),
        "{e}"
    );

    let mut bad = samples[2].clone();
    bad.streams.remove(&Modality::Rgb);
    let e = w.append(&bad).unwrap_err().to_string();
    assert!(e.contains("sample 2") && e.contains("no rgb stream"), "{e}");

    let mut bad = samples[2].clone();
    bad.streams.insert(
        Modality::Skeleton,
        Array::new(vec![3, 2, 25, 3], ArrayData::U8(vec![0; 450])).unwrap(),
    );
    let e = w.append(&bad).unwrap_err().to_string();
    assert!(
        e.contains("sample 2") && e.contains("skeleton holds u8"),
        "{e}"
    );

    let mut bad = samples[2].clone();
    bad.meta.label = 7;
    let e = w.append(&bad).unwrap_err().to_string();
    assert!(e.contains("sample 2") && e.contains("label 7"), "{e}");

    // Rejected samples leave nothing behind: the rest still writes a consistent dataset.
    w.append(&samples[2]).unwrap();
    w.append(&samples[3]).unwrap();
    w.finish(&[]).unwrap();
    let ds = Dataset::open(&dir, Verify::Checksums).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.meta(3).unwrap(), &samples[3].meta);

    // A stream the dataset does not store.
    let tmp = tempfile::tempdir().unwrap();
    let mut small = spec.clone();
    small.streams.retain(|s| s.modality != Modality::Rgb);
    let mut w = DatasetWriter::create(tmp.path().join("small"), &small).unwrap();
    let e = w.append(&samples[0]).unwrap_err().to_string();
    assert!(
        e.contains("sample 0") && e.contains("rgb") && e.contains("does not store"),
        "{e}"
    );
}

#[test]
fn finish_checks_the_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    let (spec, samples, _) = sample_set(2);
    let mut w = DatasetWriter::create(&dir, &spec).unwrap();
    w.append(&samples[0]).unwrap();
    w.append(&samples[1]).unwrap();
    let bad = Split {
        name: "xsub".into(),
        train: vec![0],
        test: vec![2],
    };
    let e = w.finish(&[bad]).unwrap_err().to_string();
    assert!(e.contains("sample 2"), "{e}");
    assert!(!dir.exists());
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn a_dropped_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    let (spec, samples, _) = sample_set(3);
    let mut w = DatasetWriter::create(&dir, &spec).unwrap();
    w.append(&samples[0]).unwrap();
    w.append(&samples[1]).unwrap();
    drop(w);
    assert!(!dir.exists());
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn a_killed_writer_leaves_no_valid_looking_directory() {
    // As if the process died mid-write: no destructor runs.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    let (spec, samples, _) = sample_set(3);
    let mut w = DatasetWriter::create(&dir, &spec).unwrap();
    w.append(&samples[0]).unwrap();
    std::mem::forget(w);
    assert!(!dir.exists());
    let leftovers: Vec<PathBuf> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(leftovers.len(), 1);
    let name = leftovers[0].file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(".ds.partial-"), "{name}");
    assert!(!leftovers[0].join(HEADER_FILE).exists());
    assert!(Dataset::open(&leftovers[0], Verify::SizesOnly).is_err());
}

#[test]
fn existing_datasets_are_not_overwritten_unless_asked() {
    let (tmp, dir, samples) = fixture();
    let (spec, _, _) = sample_set(0);
    let e = DatasetWriter::create(&dir, &spec).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");

    // Replacing swaps the whole dataset, and leaves no side directories.
    let mut w = DatasetWriter::create_replacing(&dir, &spec).unwrap();
    w.append(&samples[7]).unwrap();
    w.finish(&[]).unwrap();
    let ds = Dataset::open(&dir, Verify::Checksums).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds.meta(0).unwrap(), &samples[7].meta);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);

    // A directory that is not a dataset is never replaced.
    let other = tmp.path().join("notes");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("todo.txt"), b"keep me").unwrap();
    let e = DatasetWriter::create_replacing(&other, &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither a dataset"), "{e}");
    assert!(other.join("todo.txt").exists());

    // Something that appears at the target while writing is not overwritten either.
    let late = tmp.path().join("late");
    let w = DatasetWriter::create(&late, &spec).unwrap();
    fs::create_dir(&late).unwrap();
    let e = w.finish(&[]).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert!(fs::read_dir(&late).unwrap().next().is_none());
}
