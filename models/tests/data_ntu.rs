//! The NTU RGB+D importer, on NTU-format files the tests write themselves.

use models::data::format::{Dataset, Verify};
use models::data::ntu::{
    back_project, format_skeleton, frame_indices, import_dir, is_known_missing, known_missing,
    ntu_splits, parse_sample_name, parse_skeleton, pick_bodies, read_depth_png, read_skeleton,
    skeleton_arrays, write_depth_png, BodyRecord, DepthMap, JointRecord, NtuImportConfig,
    NtuVersion, SkeletonSequence, DEPTH_HEIGHT, DEPTH_WIDTH, NTU_JOINTS,
    TRAIN_SUBJECTS_NTU120_EXTRA, TRAIN_SUBJECTS_NTU60,
};
use models::data::{DataError, Modality, SampleMeta};
use std::fs;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Writing NTU-format test files

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value with a few decimals in [lo, lo + span).
    fn value(&mut self, lo: f32, span: f32) -> f32 {
        lo + (self.next() % 100_000) as f32 / 100_000.0 * span
    }
}

/// A body whose joint `j` sits at `xyz(j)`, with the given tracking state for every joint.
fn body(id: u64, state: u8, xyz: impl Fn(usize) -> [f32; 3]) -> BodyRecord {
    BodyRecord {
        id,
        info: [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.01119184, -0.256052, 2.0],
        joints: (0..NTU_JOINTS)
            .map(|j| {
                let p = xyz(j);
                JointRecord {
                    xyz: p,
                    depth_xy: [256.0 + 280.0 * p[0] / p[2], 212.0 - 280.0 * p[1] / p[2]],
                    color_xy: [960.0 + p[0], 540.0 - p[1]],
                    orientation: [0.5, -0.25, 0.125, 1.0],
                    state,
                }
            })
            .collect(),
    }
}

/// A body's joints spread out in space, so that spatial spread alone does not decide which
/// body moves most.
fn layout(j: usize) -> [f32; 3] {
    [0.02 * j as f32, 0.05 * j as f32 - 0.5, 0.01 * j as f32]
}

/// A random body around `centre`, moving with amplitude `amp`.
fn random_body(id: u64, centre: f32, amp: f32, rng: &mut Rng) -> BodyRecord {
    let vals: Vec<[f32; 3]> = (0..NTU_JOINTS)
        .map(|j| {
            let [x, y, z] = layout(j);
            [
                rng.value(centre + x, amp),
                rng.value(y, amp),
                rng.value(3.0 + z, amp),
            ]
        })
        .collect();
    let state = (rng.next() % 3) as u8;
    body(id, state, |j| vals[j])
}

/// A two-person sequence: person 1 in every frame, person 2 from frame 2 on, a static noise
/// body in frames 1-3, and an empty frame 4.
fn two_person_sequence(frames: usize, seed: u64) -> SkeletonSequence {
    let mut rng = Rng(seed | 1);
    // A body that does not move (Kinect sometimes takes furniture for a person).
    let noise = body(99, 1, |j| {
        let [x, y, z] = layout(j);
        [2.0 + x, y, 4.0 + z]
    });
    let frames = (0..frames)
        .map(|t| {
            let mut bodies = Vec::new();
            if t == 4 {
                return bodies;
            }
            if (1..=3).contains(&t) {
                bodies.push(noise.clone());
            }
            bodies.push(random_body(7, -0.8, 0.8, &mut rng));
            if t >= 2 {
                bodies.push(random_body(8, 0.4, 0.3, &mut rng));
            }
            bodies
        })
        .collect();
    SkeletonSequence { frames }
}

fn write_skeleton(dir: &Path, name: &str, seq: &SkeletonSequence) -> PathBuf {
    let path = dir.join(format!("{name}.skeleton"));
    fs::write(&path, format_skeleton(seq)).unwrap();
    path
}

/// The text of a valid two-frame, one-body-per-frame file, as lines (index 0 is line 1):
/// 1 frame count, 2 body count, 3 body line, 4 joint count, 5-29 joints, 30 body count,
/// 31 body line, 32 joint count, 33-57 joints.
fn valid_lines() -> Vec<String> {
    let mut rng = Rng(5);
    let seq = SkeletonSequence {
        frames: vec![
            vec![random_body(1, 0.0, 0.5, &mut rng)],
            vec![random_body(1, 0.0, 0.5, &mut rng)],
        ],
    };
    format_skeleton(&seq).lines().map(str::to_string).collect()
}

fn parse_lines(lines: &[String]) -> Result<SkeletonSequence, DataError> {
    parse_skeleton(&lines.join("\n"), Path::new("bad.skeleton"))
}

/// Asserts a parse error at `line` whose message mentions `words`.
fn assert_parse_error(result: Result<SkeletonSequence, DataError>, line: usize, words: &str) {
    match result {
        Err(DataError::Parse {
            path,
            line: got,
            msg,
        }) => {
            assert_eq!(path, Path::new("bad.skeleton"));
            assert_eq!(got, line, "{msg}");
            assert!(msg.contains(words), "{msg:?} should mention {words:?}");
        }
        other => panic!("expected a parse error at line {line}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The .skeleton text format

#[test]
fn a_hand_written_file_parses() {
    // The style of NTU's own files: a body line with a Kinect id, joints with trailing values.
    let mut text = String::from("2\n1\n72057594037944738 0 1 1 1 1 0 0.01119184 -0.256052 2\n25\n");
    for j in 0..25 {
        text.push_str(&format!(
            "0.{j:02}181153 0.1725972 3.785547 277.419 191.8218 1036.233 519.1677 \
             -0.2669241 0.0155198 0.9488521 -0.1680148 {}\n",
            j % 3
        ));
    }
    text.push_str("0\n");
    let seq = parse_skeleton(&text, Path::new("x.skeleton")).unwrap();
    assert_eq!(seq.frames.len(), 2);
    assert!(seq.frames[1].is_empty());
    let b = &seq.frames[0][0];
    assert_eq!(b.id, 72057594037944738);
    assert_eq!(b.info[6], 0.01119184);
    assert_eq!(b.info[7], -0.256052);
    assert_eq!(b.joints.len(), 25);
    assert_eq!(b.joints[3].xyz, [0.03181153, 0.1725972, 3.785547]);
    assert_eq!(b.joints[3].depth_xy, [277.419, 191.8218]);
    assert_eq!(b.joints[3].color_xy, [1036.233, 519.1677]);
    assert_eq!(
        b.joints[3].orientation,
        [-0.2669241, 0.0155198, 0.9488521, -0.1680148]
    );
    assert_eq!(b.joints[3].state, 0);
    assert_eq!(b.joints[4].state, 1);
}

#[test]
fn written_files_parse_back_exactly() {
    let seq = two_person_sequence(9, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = write_skeleton(dir.path(), "S001C001P001R001A001", &seq);
    assert_eq!(read_skeleton(&path).unwrap(), seq);
    // Windows line endings and trailing blank lines are fine.
    let crlf = format_skeleton(&seq).replace('\n', "\r\n") + "\r\n\r\n";
    assert_eq!(parse_skeleton(&crlf, &path).unwrap(), seq);
}

#[test]
fn malformed_files_name_the_file_and_line() {
    let good = valid_lines();
    assert_eq!(good.len(), 57);
    assert!(parse_lines(&good).is_ok());

    let truncated = good[..40].to_vec();
    assert_parse_error(parse_lines(&truncated), 41, "ends early");

    let mut non_numeric = good.clone();
    non_numeric[9] = non_numeric[9].replacen(' ', " abc ", 1);
    // One value too many now; make it the same count again.
    let fields: Vec<&str> = non_numeric[9].split_whitespace().collect();
    non_numeric[9] = fields[..12].join(" ");
    assert_parse_error(
        parse_lines(&non_numeric),
        10,
        "\"abc\" is not a finite number",
    );

    let mut nan = good.clone();
    nan[11] = format!("nan {}", good[11].split_once(' ').unwrap().1);
    assert_parse_error(parse_lines(&nan), 12, "not a finite number");

    let mut joints = good.clone();
    joints[3] = "24".into();
    assert_parse_error(parse_lines(&joints), 4, "24 joints");

    let mut short_line = good.clone();
    short_line[20] = "0.1 0.2 0.3".into();
    assert_parse_error(parse_lines(&short_line), 21, "found 3 values");

    let mut state = good.clone();
    state[4] = format!("{} 3", good[4].rsplit_once(' ').unwrap().0);
    assert_parse_error(parse_lines(&state), 5, "tracking state");

    // Two bodies announced, one given: the next frame's body count is read as a body line.
    let mut too_many = good.clone();
    too_many[1] = "2".into();
    assert_parse_error(parse_lines(&too_many), 30, "body line of body 2 of frame 1");

    // Two bodies given, one announced: the second body's line is read as a body count.
    let mut rng = Rng(11);
    let seq = SkeletonSequence {
        frames: vec![vec![
            random_body(1, 0.0, 0.5, &mut rng),
            random_body(2, 1.0, 0.5, &mut rng),
        ]],
    };
    let mut too_few: Vec<String> = format_skeleton(&seq).lines().map(str::to_string).collect();
    too_few[1] = "1".into();
    assert_parse_error(parse_lines(&too_few), 30, "unexpected data after the last");
    too_few[0] = "2".into();
    assert_parse_error(parse_lines(&too_few), 30, "body count of frame 2");

    let mut frames = good.clone();
    frames[0] = "1".into();
    assert_parse_error(parse_lines(&frames), 30, "after the last of 1 frames");

    let mut count = good.clone();
    count[0] = "two".into();
    assert_parse_error(parse_lines(&count), 1, "not a count");

    let mut id = good;
    id[2] = format!("-5 {}", id[2].split_once(' ').unwrap().1);
    assert_parse_error(parse_lines(&id), 3, "body id");

    assert_parse_error(parse_lines(&[]), 1, "ends early");
}

// ---------------------------------------------------------------------------------------------
// Names, lists, splits

#[test]
fn sample_names_give_the_metadata() {
    let m = parse_sample_name("S001C002P003R002A013").unwrap();
    assert_eq!(
        m,
        SampleMeta {
            name: "S001C002P003R002A013".into(),
            label: 12,
            subject: 3,
            camera: 2,
            setup: 1,
            replication: 2,
        }
    );
    let m = parse_sample_name("S032C003P106R001A120").unwrap();
    assert_eq!((m.setup, m.subject, m.label), (32, 106, 119));
    for bad in [
        "S001C002P003R002A01",
        "S001C002P003R002A0133",
        "S001C002P003R002B013",
        "S001C002P0x3R002A013",
        "S001C002P003R002A000",
        "s001c002p003r002a013",
        "S001C256P003R002A013",
    ] {
        assert!(parse_sample_name(bad).is_none(), "{bad}");
    }
}

#[test]
fn the_authors_missing_skeleton_lists() {
    assert_eq!(known_missing(NtuVersion::Ntu60).len(), 302);
    assert_eq!(known_missing(NtuVersion::Ntu120).len(), 535);
    assert!(is_known_missing("S001C002P005R002A008"));
    assert!(is_known_missing("S017C003P020R001A059"));
    assert!(is_known_missing("S032C003P067R002A077"));
    assert!(!is_known_missing("S001C001P001R001A001"));
}

#[test]
fn cross_subject_view_and_setup_splits() {
    assert_eq!(TRAIN_SUBJECTS_NTU60.len(), 20);
    assert_eq!(TRAIN_SUBJECTS_NTU120_EXTRA.len(), 33);
    assert_eq!(NtuVersion::Ntu120.train_subjects().len(), 53);
    let names = [
        "S001C001P001R001A001", // subject 1 trains; camera 1 tests
        "S001C002P003R001A001", // subject 3 tests; camera 2 trains
        "S002C003P045R001A001", // subject 45: NTU-120 trains it; camera 3 trains; setup 2 even
        "S003C001P038R001A001", // subject 38 trains; setup 3 odd
    ];
    let metas: Vec<SampleMeta> = names
        .iter()
        .map(|n| parse_sample_name(n).unwrap())
        .collect();
    let s60 = ntu_splits(NtuVersion::Ntu60, &metas);
    assert_eq!(s60.len(), 2);
    assert_eq!(
        (s60[0].name.as_str(), &s60[0].train[..], &s60[0].test[..]),
        ("xsub", &[0, 3][..], &[1, 2][..])
    );
    assert_eq!(
        (s60[1].name.as_str(), &s60[1].train[..], &s60[1].test[..]),
        ("xview", &[1, 2][..], &[0, 3][..])
    );
    let s120 = ntu_splits(NtuVersion::Ntu120, &metas);
    assert_eq!(s120.len(), 3);
    assert_eq!(
        (&s120[0].train[..], &s120[0].test[..]),
        (&[0, 2, 3][..], &[1][..])
    );
    assert_eq!(s120[1], s60[1]);
    assert_eq!(
        (s120[2].name.as_str(), &s120[2].train[..], &s120[2].test[..]),
        ("xset", &[2][..], &[0, 1, 3][..])
    );
}

#[test]
fn class_names_follow_the_action_numbers() {
    let names = NtuVersion::Ntu120.class_names();
    assert_eq!(names.len(), 120);
    assert_eq!(names[0], "drink water");
    assert_eq!(names[59], "walking apart from each other");
    assert_eq!(
        names[119],
        "finger-guessing game (playing rock-paper-scissors)"
    );
    assert_eq!(NtuVersion::Ntu60.class_names()[..], names[..60]);
}

// ---------------------------------------------------------------------------------------------
// Bodies and frames

#[test]
fn frames_are_resampled_evenly() {
    assert_eq!(frame_indices(10, 5), vec![0, 2, 4, 6, 8]);
    assert_eq!(frame_indices(3, 7), vec![0, 0, 0, 1, 1, 2, 2]);
    assert_eq!(frame_indices(4, 4), vec![0, 1, 2, 3]);
    assert_eq!(frame_indices(300, 64).last(), Some(&295));
    assert!(frame_indices(0, 4).is_empty());
}

#[test]
fn the_two_most_moving_bodies_are_kept() {
    let seq = two_person_sequence(8, 21);
    // Person 1 moves over 0.8 m, person 2 over 0.3 m, the noise body stands still.
    assert_eq!(pick_bodies(&seq), vec![7, 8]);

    // A single body that moves less than a later one still comes second.
    let still = |t: usize| body(1, 2, move |j| [0.01 * t as f32, 0.1 * j as f32, 3.0]);
    let moving = |t: usize| body(2, 2, move |j| [0.5 * t as f32, 0.1 * j as f32, 3.0]);
    let seq = SkeletonSequence {
        frames: (0..4).map(|t| vec![still(t), moving(t)]).collect(),
    };
    assert_eq!(pick_bodies(&seq), vec![2, 1]);
    assert!(pick_bodies(&SkeletonSequence::default()).is_empty());
}

#[test]
fn skeleton_arrays_place_bodies_and_zeros() {
    let seq = two_person_sequence(8, 4);
    let (xyz, state) = skeleton_arrays(&seq, 8);
    assert_eq!(xyz.dims, vec![8, 2, 25, 3]);
    assert_eq!(state.dims, vec![8, 2, 25]);
    let models::data::ArrayData::F32(xyz) = xyz.data else {
        panic!()
    };
    let models::data::ArrayData::U8(state) = state.data else {
        panic!()
    };
    for (t, bodies) in seq.frames.iter().enumerate() {
        for (slot, id) in [7u64, 8].iter().enumerate() {
            let got = &xyz[(t * 2 + slot) * 75..(t * 2 + slot + 1) * 75];
            let got_state = &state[(t * 2 + slot) * 25..(t * 2 + slot + 1) * 25];
            match bodies.iter().find(|b| b.id == *id) {
                Some(b) => {
                    let want: Vec<f32> = b.joints.iter().flat_map(|j| j.xyz).collect();
                    let want_state: Vec<u8> = b.joints.iter().map(|j| j.state).collect();
                    assert_eq!(got, &want[..], "frame {t} body {id}");
                    assert_eq!(got_state, &want_state[..]);
                }
                None => {
                    assert!(got.iter().all(|&v| v == 0.0), "frame {t} body {id}");
                    assert!(got_state.iter().all(|&s| s == 0));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Depth maps

/// A 512x424 depth map, zero except for the given (u, v, millimetres).
fn depth_map(pixels: &[(usize, usize, u16)]) -> DepthMap {
    let mut mm = vec![0u16; DEPTH_WIDTH * DEPTH_HEIGHT];
    for &(u, v, d) in pixels {
        mm[v * DEPTH_WIDTH + u] = d;
    }
    DepthMap {
        width: DEPTH_WIDTH,
        height: DEPTH_HEIGHT,
        mm,
    }
}

fn project(u: usize, v: usize, d: u16) -> [f32; 3] {
    let z = f32::from(d) / 1000.0;
    [
        (u as f32 - 256.0) * z / 280.0,
        -(v as f32 - 212.0) * z / 280.0,
        z,
    ]
}

#[test]
fn depth_pngs_round_trip_16_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("MDepth-00000001.png");
    let map = depth_map(&[(0, 0, 1), (511, 423, 65535), (256, 212, 3021)]);
    write_depth_png(&path, &map).unwrap();
    assert_eq!(read_depth_png(&path).unwrap(), map);

    // 8-bit images are refused with the file named.
    let eight = dir.path().join("eight.png");
    let file = fs::File::create(&eight).unwrap();
    let mut enc = png::Encoder::new(file, 4, 2);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(&[0; 8])
        .unwrap();
    let e = read_depth_png(&eight).unwrap_err();
    assert!(
        matches!(&e, DataError::Format { path, .. } if path == &eight),
        "{e}"
    );
    assert!(e.to_string().contains("16-bit grayscale"), "{e}");

    let junk = dir.path().join("junk.png");
    fs::write(&junk, b"not a png").unwrap();
    assert!(matches!(
        read_depth_png(&junk),
        Err(DataError::Format { .. })
    ));
}

#[test]
fn back_projection_uses_the_ntu_intrinsics() {
    // Fewer valid pixels than points: each once, in raster order, then draws among them.
    let pixels = [(10, 5, 2000), (256, 212, 3000), (500, 400, 1500)];
    let map = depth_map(&pixels);
    let pts = back_project(&map, 5, 42);
    assert_eq!(pts.len(), 15);
    for (k, &(u, v, d)) in pixels.iter().enumerate() {
        assert_eq!(pts[3 * k..3 * k + 3], project(u, v, d));
    }
    let all: Vec<[f32; 3]> = pixels.iter().map(|&(u, v, d)| project(u, v, d)).collect();
    for p in pts.chunks(3).skip(3) {
        assert!(all.iter().any(|a| a[..] == *p));
    }
    assert_eq!(back_project(&map, 5, 42), pts);

    // More valid pixels than points: distinct ones, in raster order, seed-dependent.
    let many: Vec<(usize, usize, u16)> = (0..40)
        .map(|k| (k * 7 % 512, k * 10, 1000 + k as u16))
        .collect();
    let map = depth_map(&many);
    let a = back_project(&map, 8, 1);
    let b = back_project(&map, 8, 2);
    assert_eq!(a, back_project(&map, 8, 1));
    assert_ne!(a, b);
    let candidates: Vec<[f32; 3]> = many.iter().map(|&(u, v, d)| project(u, v, d)).collect();
    let idx: Vec<usize> = a
        .chunks(3)
        .map(|p| candidates.iter().position(|c| c[..] == *p).unwrap())
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");

    // No reading at all: zeros.
    assert!(back_project(&depth_map(&[]), 4, 0)
        .iter()
        .all(|&v| v == 0.0));
}

// ---------------------------------------------------------------------------------------------
// Whole imports

/// A skeleton folder with good files, a listed-missing one, a malformed one, a badly named
/// one and an NTU-120 one; returns the good names and their sequences, in name order.
fn skeleton_folder(dir: &Path) -> Vec<(String, SkeletonSequence)> {
    fs::create_dir_all(dir).unwrap();
    let good: Vec<(String, SkeletonSequence)> = [
        ("S001C001P001R001A010", 6),
        ("S001C002P003R002A013", 9),
        ("S002C003P006R001A055", 5),
        ("S003C001P004R002A060", 6),
    ]
    .iter()
    .enumerate()
    .map(|(k, &(name, frames))| (name.to_string(), two_person_sequence(frames, k as u64 + 1)))
    .collect();
    for (name, seq) in &good {
        write_skeleton(dir, name, seq);
    }
    // On the authors' list: skipped, even though the file is fine.
    write_skeleton(dir, "S001C002P005R002A008", &two_person_sequence(5, 9));
    // Truncated.
    let text = format_skeleton(&two_person_sequence(5, 10));
    let half: Vec<&str> = text.lines().take(text.lines().count() / 2).collect();
    fs::write(dir.join("S004C001P001R001A001.skeleton"), half.join("\n")).unwrap();
    // Not an NTU name.
    write_skeleton(dir, "walking", &two_person_sequence(5, 11));
    // An NTU-120 sample.
    write_skeleton(dir, "S018C001P041R001A061", &two_person_sequence(5, 12));
    // No body in any frame.
    let empty = SkeletonSequence {
        frames: vec![vec![]; 3],
    };
    write_skeleton(dir, "S005C001P001R001A001", &empty);
    // Not a skeleton file at all.
    fs::write(dir.join("README.txt"), b"ignore me").unwrap();
    good
}

#[test]
fn import_dir_writes_exact_values_and_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let skel = tmp.path().join("nturgb+d_skeletons");
    let good = skeleton_folder(&skel);
    let out = tmp.path().join("ntu60");
    let mut cfg = NtuImportConfig::new(NtuVersion::Ntu60, &skel);
    cfg.frames = 6;
    let report = import_dir(&cfg, &out).unwrap();

    assert_eq!(report.imported, 4);
    assert_eq!(report.skipped_missing, vec!["S001C002P005R002A008"]);
    assert_eq!(report.skipped_other_release, vec!["S018C001P041R001A061"]);
    let failed: Vec<(String, &DataError)> = report
        .failures
        .iter()
        .map(|f| {
            (
                f.path.file_name().unwrap().to_str().unwrap().to_string(),
                &f.error,
            )
        })
        .collect();
    assert_eq!(failed.len(), 3, "{report}");
    assert_eq!(failed[0].0, "S004C001P001R001A001.skeleton");
    assert!(matches!(failed[0].1, DataError::Parse { msg, .. } if msg.contains("ends early")));
    assert_eq!(failed[1].0, "S005C001P001R001A001.skeleton");
    assert!(
        failed[1].1.to_string().contains("no body"),
        "{}",
        failed[1].1
    );
    assert_eq!(failed[2].0, "walking.skeleton");
    assert!(
        report.to_string().contains("imported 4 samples"),
        "{report}"
    );

    let ds = Dataset::open(&out, Verify::Checksums).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.spec().name, "ntu60");
    assert_eq!(ds.spec().classes.len(), 60);
    assert_eq!(
        ds.spec().dims_of(Modality::Skeleton),
        Some(&[6, 2, 25, 3][..])
    );
    assert_eq!(ds.spec().dims_of(Modality::Depth), None);
    for (i, (name, seq)) in good.iter().enumerate() {
        assert_eq!(ds.meta(i).unwrap(), &parse_sample_name(name).unwrap());
        let (want_xyz, want_state) = skeleton_arrays(seq, 6);
        assert_eq!(
            ds.record(i, Modality::Skeleton).unwrap().to_array(),
            want_xyz
        );
        assert_eq!(
            ds.record(i, Modality::JointState).unwrap().to_array(),
            want_state
        );
    }
    // Frame 0 of the first sample, checked by hand: person 1 in slot 0, nobody in slot 1.
    let xyz = ds.record(0, Modality::Skeleton).unwrap();
    let xyz = xyz.as_f32().unwrap();
    assert_eq!(xyz[..3], good[0].1.frames[0][0].joints[0].xyz);
    assert!(xyz[75..150].iter().all(|&v| v == 0.0));
    // Performers 1 and 4 train under NTU-60 cross-subject, 3 and 6 test.
    let xsub = ds.split("xsub").unwrap();
    assert_eq!(
        (&xsub.train[..], &xsub.test[..]),
        (&[0, 3][..], &[1, 2][..])
    );
    let xview = ds.split("xview").unwrap();
    assert_eq!(
        (&xview.train[..], &xview.test[..]),
        (&[1, 2][..], &[0, 3][..])
    );
    assert!(ds.split("xset").is_none());

    // The output is not overwritten unless asked.
    let e = import_dir(&cfg, &out).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    cfg.replace = true;
    cfg.frames = 3;
    import_dir(&cfg, &out).unwrap();
    let ds = Dataset::open(&out, Verify::Checksums).unwrap();
    assert_eq!(
        ds.spec().dims_of(Modality::Skeleton),
        Some(&[3, 2, 25, 3][..])
    );
}

#[test]
fn ntu120_imports_its_own_setups_with_the_cross_setup_split() {
    let tmp = tempfile::tempdir().unwrap();
    let skel = tmp.path().join("skeletons");
    skeleton_folder(&skel);
    let out = tmp.path().join("ntu120");
    let mut cfg = NtuImportConfig::new(NtuVersion::Ntu120, &skel);
    cfg.frames = 4;
    let report = import_dir(&cfg, &out).unwrap();
    assert_eq!(report.imported, 5);
    assert!(report.skipped_other_release.is_empty());
    let ds = Dataset::open(&out, Verify::SizesOnly).unwrap();
    assert_eq!(ds.spec().classes.len(), 120);
    assert_eq!(ds.meta(4).unwrap().name, "S018C001P041R001A061");
    let xset = ds.split("xset").unwrap();
    assert_eq!(
        (&xset.train[..], &xset.test[..]),
        (&[2, 4][..], &[0, 1, 3][..])
    );
}

#[test]
fn an_import_of_nothing_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let skel = tmp.path().join("skeletons");
    fs::create_dir(&skel).unwrap();
    fs::write(skel.join("S001C001P001R001A001.skeleton"), "3\n1\n").unwrap();
    let out = tmp.path().join("out");
    let cfg = NtuImportConfig::new(NtuVersion::Ntu60, &skel);
    let e = import_dir(&cfg, &out).unwrap_err();
    assert!(e.to_string().contains("no sample imported"), "{e}");
    assert!(
        e.to_string().contains("S001C001P001R001A001.skeleton:3"),
        "{e}"
    );
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the skeleton folder remains");
}

#[test]
fn depth_folders_become_depth_maps_and_point_clouds() {
    let tmp = tempfile::tempdir().unwrap();
    let skel = tmp.path().join("skeletons");
    let depth = tmp.path().join("nturgb+d_depth_masked");
    fs::create_dir_all(&skel).unwrap();
    let names = ["S001C001P001R001A001", "S001C002P002R001A002"];
    for (k, name) in names.iter().enumerate() {
        write_skeleton(&skel, name, &two_person_sequence(5, k as u64 + 30));
    }
    // Sample 0: three depth frames, each with a few readings; sample 1 has no depth folder.
    let frames = [
        vec![(0, 0, 1000), (300, 100, 2500)],
        vec![(511, 423, 4000), (255, 211, 3000), (256, 212, 3100)],
        vec![(100, 350, 1234)],
    ];
    let folder = depth.join(names[0]);
    fs::create_dir_all(&folder).unwrap();
    for (f, pixels) in frames.iter().enumerate() {
        let path = folder.join(format!("MDepth-{:08}.png", f + 1));
        write_depth_png(&path, &depth_map(pixels)).unwrap();
    }

    let out = tmp.path().join("ds");
    let mut cfg = NtuImportConfig::new(NtuVersion::Ntu60, &skel);
    cfg.depth_dir = Some(depth.clone());
    cfg.frames = 4;
    cfg.depth_size = (4, 8); // 106 x 64 source pixels per output pixel
    cfg.points = 3;
    let report = import_dir(&cfg, &out).unwrap();
    assert_eq!(report.imported, 1, "{report}");
    assert_eq!(report.failures.len(), 1);
    assert!(
        matches!(&report.failures[0].error, DataError::Io { path, .. } if path.ends_with(names[1]))
    );

    let ds = Dataset::open(&out, Verify::Checksums).unwrap();
    assert_eq!(ds.spec().dims_of(Modality::Depth), Some(&[4, 4, 8][..]));
    assert_eq!(ds.spec().dims_of(Modality::Points), Some(&[4, 3, 3][..]));
    // Four output frames from three depth frames: 0, 0, 1, 2.
    let src = frame_indices(3, 4);
    assert_eq!(src, vec![0, 0, 1, 2]);

    // Nearest neighbour: output (r, c) reads source row (2r+1)*424/8, column (2c+1)*512/16.
    let d = ds.record(0, Modality::Depth).unwrap();
    let d = d.as_u16().unwrap();
    for (t, &s) in src.iter().enumerate() {
        let map = depth_map(&frames[s]);
        for r in 0..4 {
            for c in 0..8 {
                let (sr, sc) = ((2 * r + 1) * 424 / 8, (2 * c + 1) * 512 / 16);
                assert_eq!(
                    d[(t * 4 + r) * 8 + c],
                    map.mm[sr * 512 + sc],
                    "t {t} r {r} c {c}"
                );
            }
        }
    }
    // Points: frames with at least 3 readings give exactly those pixels, back-projected.
    let p = ds.record(0, Modality::Points).unwrap();
    let p = p.as_f32().unwrap();
    let frame1: Vec<f32> = frames[1]
        .iter()
        .flat_map(|&(u, v, d)| project(u, v, d))
        .collect();
    // Raster order: (255, 211) comes before (256, 212), which comes before (511, 423).
    let mut sorted = frames[1].clone();
    sorted.sort_by_key(|&(u, v, _)| v * 512 + u);
    let frame1_sorted: Vec<f32> = sorted
        .iter()
        .flat_map(|&(u, v, d)| project(u, v, d))
        .collect();
    assert_ne!(frame1, frame1_sorted);
    assert_eq!(p[2 * 9..3 * 9], frame1_sorted[..]);
    // Frames with fewer readings: each reading once first, then repeats of them.
    let f0: Vec<[f32; 3]> = frames[0]
        .iter()
        .map(|&(u, v, d)| project(u, v, d))
        .collect();
    assert_eq!(p[0..3], f0[0]);
    assert_eq!(p[3..6], f0[1]);
    assert!(f0.iter().any(|q| q[..] == p[6..9]));
    assert_eq!(
        p[0..9],
        p[9..18],
        "repeated source frames repeat their points"
    );
    let f2 = project(100, 350, 1234);
    for q in p[27..36].chunks(3) {
        assert_eq!(q, f2);
    }

    // Same seed, same dataset; another seed may choose other repeats but the same readings.
    let out2 = tmp.path().join("ds2");
    import_dir(&cfg, &out2).unwrap();
    let again = Dataset::open(&out2, Verify::Checksums).unwrap();
    assert_eq!(
        again.record(0, Modality::Points).unwrap().to_array(),
        ds.record(0, Modality::Points).unwrap().to_array()
    );
}

#[test]
fn a_wrong_size_depth_map_fails_its_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let skel = tmp.path().join("skeletons");
    let depth = tmp.path().join("depth");
    fs::create_dir_all(&skel).unwrap();
    let names = ["S001C001P001R001A001", "S001C001P001R001A002"];
    for name in names {
        write_skeleton(&skel, name, &two_person_sequence(5, 1));
        fs::create_dir_all(depth.join(name)).unwrap();
    }
    write_depth_png(
        &depth.join(names[0]).join("MDepth-00000001.png"),
        &depth_map(&[(1, 1, 900)]),
    )
    .unwrap();
    let small = DepthMap {
        width: 4,
        height: 3,
        mm: vec![7; 12],
    };
    let bad = depth.join(names[1]).join("MDepth-00000001.png");
    write_depth_png(&bad, &small).unwrap();
    let mut cfg = NtuImportConfig::new(NtuVersion::Ntu60, &skel);
    cfg.depth_dir = Some(depth);
    cfg.frames = 2;
    cfg.points = 2;
    cfg.depth_size = (2, 2);
    let report = import_dir(&cfg, &tmp.path().join("ds")).unwrap();
    assert_eq!(report.imported, 1);
    let e = &report.failures[0].error;
    assert!(
        matches!(e, DataError::Format { path, .. } if path == &bad),
        "{e}"
    );
    assert!(e.to_string().contains("4x3"), "{e}");
}
