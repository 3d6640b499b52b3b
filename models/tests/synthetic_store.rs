//! The synthetic dataset on disk: written through the dataset writer and read back equal to what
//! the generator makes, and a synthetic skeleton written as an NTU `.skeleton` file and
//! re-imported unchanged (the importer and the generator agree on layout, units and names).

use models::data::format::{Dataset, Verify};
use models::data::ntu::{
    format_skeleton, import_sample, BodyRecord, JointRecord, NtuImportConfig, NtuVersion,
    SkeletonSequence,
};
use models::data::synthetic::{generate_sample, write_dataset, SynthConfig};
use models::data::{ArrayData, Modality, Sample};

fn f32s(s: &Sample, m: Modality) -> &[f32] {
    match &s.streams[&m].data {
        ArrayData::F32(v) => v,
        other => panic!("{m} holds {other:?}"),
    }
}

fn u8s(s: &Sample, m: Modality) -> &[u8] {
    match &s.streams[&m].data {
        ArrayData::U8(v) => v,
        other => panic!("{m} holds {other:?}"),
    }
}

#[test]
fn a_written_synthetic_dataset_reads_back_as_generated() {
    let cfg = SynthConfig::preset("tiny").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    let mut calls = Vec::new();
    write_dataset(&cfg, &out, false, |done, total| calls.push((done, total))).unwrap();
    let total = cfg.num_samples();
    assert_eq!(
        calls.last(),
        Some(&(total, total)),
        "progress reaches the end"
    );
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));

    let ds = Dataset::open(&out, Verify::Checksums).unwrap();
    assert_eq!(ds.len(), total);
    assert_eq!(ds.spec(), &cfg.spec());
    assert_eq!(ds.splits(), cfg.splits().as_slice());
    // Every tenth sample, all streams, bit for bit.
    for i in (0..total).step_by(10) {
        let want = generate_sample(&cfg, i).unwrap();
        let got = ds.sample(i, &cfg.modalities).unwrap();
        assert_eq!(got, want, "sample {i}");
    }

    // An existing dataset is only replaced when asked.
    assert!(write_dataset(&cfg, &out, false, |_, _| {}).is_err());
    let small = SynthConfig {
        subjects: 2,
        modalities: vec![Modality::Skeleton],
        ..cfg.clone()
    };
    write_dataset(&small, &out, true, |_, _| {}).unwrap();
    let ds = Dataset::open(&out, Verify::Checksums).unwrap();
    assert_eq!(ds.len(), small.num_samples());
}

/// A synthetic sample as the Kinect would have written it: one body per frame.
fn as_skeleton_file(s: &Sample) -> SkeletonSequence {
    let xyz = f32s(s, Modality::Skeleton);
    let state = u8s(s, Modality::JointState);
    let frames = s.streams[&Modality::Skeleton].dims[0];
    let joints = 25;
    SkeletonSequence {
        frames: (0..frames)
            .map(|t| {
                vec![BodyRecord {
                    id: 72057594037931101,
                    info: [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.1, -0.2, 2.0],
                    joints: (0..joints)
                        .map(|j| {
                            let p = &xyz[(t * joints + j) * 3..][..3];
                            JointRecord {
                                xyz: [p[0], p[1], p[2]],
                                depth_xy: [
                                    256.0 + 280.0 * p[0] / p[2],
                                    212.0 - 280.0 * p[1] / p[2],
                                ],
                                color_xy: [960.0, 540.0],
                                orientation: [1.0, 0.0, 0.0, 0.0],
                                state: state[t * joints + j],
                            }
                        })
                        .collect(),
                }]
            })
            .collect(),
    }
}

#[test]
fn a_synthetic_skeleton_survives_the_ntu_text_format() {
    let cfg = SynthConfig {
        modalities: vec![Modality::Skeleton, Modality::JointState],
        ..SynthConfig::preset("tiny").unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut import = NtuImportConfig::new(NtuVersion::Ntu60, dir.path());
    import.frames = cfg.frames;
    for i in [0, 7, cfg.num_samples() - 1] {
        let s = generate_sample(&cfg, i).unwrap();
        let path = dir.path().join(format!("{}.skeleton", s.meta.name));
        std::fs::write(&path, format_skeleton(&as_skeleton_file(&s))).unwrap();
        let got = import_sample(&import, &path).unwrap();
        assert_eq!(got.meta, s.meta, "the NTU name carries the same metadata");

        // Body 0 is the synthetic body exactly; the second body slot is empty.
        let per_body = 25 * 3;
        let (want, have) = (f32s(&s, Modality::Skeleton), f32s(&got, Modality::Skeleton));
        let (want_state, have_state) = (
            u8s(&s, Modality::JointState),
            u8s(&got, Modality::JointState),
        );
        for t in 0..cfg.frames {
            assert_eq!(
                &have[2 * t * per_body..][..per_body],
                &want[t * per_body..][..per_body],
                "sample {i} frame {t}"
            );
            assert!(have[(2 * t + 1) * per_body..][..per_body]
                .iter()
                .all(|&v| v == 0.0));
            assert_eq!(&have_state[2 * t * 25..][..25], &want_state[t * 25..][..25]);
        }
    }
}
