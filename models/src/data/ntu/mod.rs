//! The NTU RGB+D (60 and 120) importer: `.skeleton` files and, when present, masked depth maps,
//! into the dataset format (`format::DatasetWriter`).
//!
//! Per sample (file `SsssCcccPpppRrrrAaaa.skeleton`):
//! - `Skeleton` (T, 2, 25, 3) and `JointState` (T, 2, 25): up to two bodies, the two with the
//!   most motion, most motion first (see [`skeleton_arrays`]); a body missing from a frame,
//!   and a second body that never exists, are zeros.
//! - with a depth folder: `Depth` (T, H, W) resized by nearest neighbour and `Points` (T, P, 3)
//!   back-projected from the original 512x424 maps (see `depth`).
//! - T is fixed by the configuration: every sequence is resampled with [`frame_indices`].
//!
//! Samples that the dataset authors list as having missing skeletons are skipped and reported;
//! files that fail to read are reported with their errors and the import goes on.

mod depth;
mod skeleton_text;

pub use depth::{
    back_project, depth_frame_paths, read_depth_png, resize_nearest, write_depth_png, DepthMap,
    DEPTH_HEIGHT, DEPTH_WIDTH, FOCAL_PX, PRINCIPAL_POINT,
};
pub use skeleton_text::{
    format_skeleton, parse_skeleton, read_skeleton, BodyRecord, JointRecord, SkeletonSequence,
    NTU_JOINTS,
};

use super::format::DatasetWriter;
use super::{
    Array, ArrayData, DataError, DataResult, DatasetSpec, Modality, Sample, SampleMeta, Split,
    StreamSpec,
};
use depth::SplitMix64;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Bodies kept per frame.
pub const MAX_BODIES: usize = 2;

/// Cross-subject training performers of NTU RGB+D 60 (the others test), from Shahroudy et al.,
/// CVPR 2016. Checked against ST-GCN-style `ntu_gendata.py` scripts (e.g.
/// Misterfun88/Skeleton-Action-Understanding, data_gen/ntu_gendata.py) and CTR-GCN's
/// data/ntu120/seq_transformation.py (Uason-Chen/CTR-GCN), whose lists agree.
pub const TRAIN_SUBJECTS_NTU60: [u16; 20] = [
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
];

/// The performers NTU RGB+D 120 adds to the cross-subject training set (Liu et al., TPAMI
/// 2019), from the same two sources.
pub const TRAIN_SUBJECTS_NTU120_EXTRA: [u16; 33] = [
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
    91, 92, 93, 94, 95, 97, 98, 100, 103,
];

/// The dataset authors' list of samples with missing or incomplete skeletons (NTU RGB+D 120;
/// its setups 1-17 are the NTU RGB+D 60 list): github.com/shahroudy/NTURGB-D,
/// Matlab/NTU_RGBD120_samples_with_missing_skeletons.txt. Lines starting with `#` are ours.
const MISSING_SKELETONS: &str = include_str!("missing_skeletons.txt");

/// Action names A1..A120, one a line, from the README of github.com/shahroudy/NTURGB-D.
const ACTION_NAMES: &str = include_str!("action_names.txt");

/// Which release: they differ in setups, classes and training subjects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NtuVersion {
    /// NTU RGB+D: setups 1-17, actions 1-60.
    Ntu60,
    /// NTU RGB+D 120: setups 1-32, actions 1-120.
    Ntu120,
}

impl NtuVersion {
    /// The dataset name stored in the header.
    pub fn name(self) -> &'static str {
        match self {
            NtuVersion::Ntu60 => "ntu60",
            NtuVersion::Ntu120 => "ntu120",
        }
    }

    pub fn classes(self) -> u16 {
        match self {
            NtuVersion::Ntu60 => 60,
            NtuVersion::Ntu120 => 120,
        }
    }

    pub fn setups(self) -> u16 {
        match self {
            NtuVersion::Ntu60 => 17,
            NtuVersion::Ntu120 => 32,
        }
    }

    /// The cross-subject training performers.
    pub fn train_subjects(self) -> Vec<u16> {
        match self {
            NtuVersion::Ntu60 => TRAIN_SUBJECTS_NTU60.to_vec(),
            NtuVersion::Ntu120 => TRAIN_SUBJECTS_NTU60
                .iter()
                .chain(&TRAIN_SUBJECTS_NTU120_EXTRA)
                .copied()
                .collect(),
        }
    }

    /// Class names, indexed by label.
    pub fn class_names(self) -> Vec<String> {
        ACTION_NAMES
            .lines()
            .take(usize::from(self.classes()))
            .map(str::to_string)
            .collect()
    }

    /// Whether a sample of this setup and action belongs to this release.
    fn contains(self, meta: &SampleMeta) -> bool {
        meta.setup <= self.setups() && meta.label < self.classes()
    }
}

/// The samples the dataset authors list as having missing or incomplete skeletons, in
/// `version` (302 in NTU RGB+D 60, 535 in NTU RGB+D 120).
pub fn known_missing(version: NtuVersion) -> Vec<&'static str> {
    MISSING_SKELETONS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| parse_sample_name(l).is_some_and(|m| version.contains(&m)))
        .collect()
}

/// Whether the dataset authors list `name` (e.g. `S001C002P005R002A008`) as having a missing
/// or incomplete skeleton.
pub fn is_known_missing(name: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| known_missing(NtuVersion::Ntu120).into_iter().collect())
        .contains(name)
}

/// The metadata in an NTU name `SsssCcccPpppRrrrAaaa` (label = action - 1), or None if `name`
/// is not of that form or a number is 0 or out of range.
pub fn parse_sample_name(name: &str) -> Option<SampleMeta> {
    let b = name.as_bytes();
    if b.len() != 20 {
        return None;
    }
    let field = |k: usize, tag: u8| -> Option<u16> {
        let part = &b[4 * k..4 * k + 4];
        if part[0] != tag || !part[1..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part[1..]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        (n > 0).then_some(n)
    };
    Some(SampleMeta {
        name: name.to_string(),
        setup: field(0, b'S')?,
        camera: u8::try_from(field(1, b'C')?).ok()?,
        subject: field(2, b'P')?,
        replication: u8::try_from(field(3, b'R')?).ok()?,
        label: field(4, b'A')? - 1,
    })
}

/// The evaluation protocols over `metas` (indices in that order):
/// - `xsub`: the training performers of `version` train, the others test;
/// - `xview`: cameras 2 and 3 train, camera 1 tests;
/// - `xset` (NTU RGB+D 120 only): even setups train, odd setups test.
pub fn ntu_splits(version: NtuVersion, metas: &[SampleMeta]) -> Vec<Split> {
    let split = |name: &str, train: &dyn Fn(&SampleMeta) -> bool| {
        let (mut tr, mut te) = (Vec::new(), Vec::new());
        for (i, m) in metas.iter().enumerate() {
            let side = if train(m) { &mut tr } else { &mut te };
            side.push(i as u32);
        }
        Split {
            name: name.into(),
            train: tr,
            test: te,
        }
    };
    let subjects = version.train_subjects();
    let mut splits = vec![
        split("xsub", &|m| subjects.contains(&m.subject)),
        split("xview", &|m| m.camera == 2 || m.camera == 3),
    ];
    if version == NtuVersion::Ntu120 {
        splits.push(split("xset", &|m| m.setup % 2 == 0));
    }
    splits
}

/// Which source frame each of `dst` output frames takes: frame `t` takes `floor(t * src / dst)`.
/// Longer sequences are subsampled evenly (keeping the whole action, not its start); shorter
/// ones are stretched by repeating frames, so no sample ends in a run of zero frames. Empty
/// when `src` is 0.
pub fn frame_indices(src: usize, dst: usize) -> Vec<usize> {
    if src == 0 {
        return Vec::new();
    }
    (0..dst).map(|t| t * src / dst).collect()
}

/// The (up to two) bodies to keep, by Kinect body id, most motion first. Motion is the NTU
/// authors' heuristic: the variance of x, of y and of z over all joints of all frames the body
/// appears in, summed (github.com/shahroudy/NTURGB-D, README, FAQ). Ties go to the body seen
/// first, so the choice is deterministic.
pub fn pick_bodies(seq: &SkeletonSequence) -> Vec<u64> {
    // In order of first appearance.
    let mut stats: Vec<BodyStats> = Vec::new();
    for body in seq.frames.iter().flatten() {
        let k = match stats.iter().position(|s| s.id == body.id) {
            Some(k) => k,
            None => {
                stats.push(BodyStats {
                    id: body.id,
                    ..BodyStats::default()
                });
                stats.len() - 1
            }
        };
        for j in &body.joints {
            stats[k].add(j.xyz);
        }
    }
    let mut order: Vec<(f64, u64)> = stats.iter().map(|s| (s.motion(), s.id)).collect();
    // A stable sort: equal motion keeps first-appearance order.
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    order.iter().take(MAX_BODIES).map(|&(_, id)| id).collect()
}

/// Running sums of one body's joint positions, for their variance.
#[derive(Default)]
struct BodyStats {
    id: u64,
    n: f64,
    sum: [f64; 3],
    sum_sq: [f64; 3],
}

impl BodyStats {
    fn add(&mut self, xyz: [f32; 3]) {
        self.n += 1.0;
        for (c, &v) in xyz.iter().enumerate() {
            let v = f64::from(v);
            self.sum[c] += v;
            self.sum_sq[c] += v * v;
        }
    }

    /// var(x) + var(y) + var(z).
    fn motion(&self) -> f64 {
        if self.n == 0.0 {
            return 0.0;
        }
        (0..3)
            .map(|c| {
                let mean = self.sum[c] / self.n;
                (self.sum_sq[c] / self.n - mean * mean).max(0.0)
            })
            .sum()
    }
}

/// The `Skeleton` (frames, 2, 25, 3) and `JointState` (frames, 2, 25) arrays of `seq`: bodies
/// from [`pick_bodies`] in slots 0 and 1, frames from [`frame_indices`], zeros where a body is
/// absent. A body listed twice in one frame keeps its first entry.
pub fn skeleton_arrays(seq: &SkeletonSequence, frames: usize) -> (Array, Array) {
    let bodies = pick_bodies(seq);
    let per_frame = MAX_BODIES * NTU_JOINTS;
    let mut xyz = vec![0f32; frames * per_frame * 3];
    let mut state = vec![0u8; frames * per_frame];
    for (t, src) in frame_indices(seq.frames.len(), frames)
        .into_iter()
        .enumerate()
    {
        for (slot, id) in bodies.iter().enumerate() {
            let Some(body) = seq.frames[src].iter().find(|b| b.id == *id) else {
                continue;
            };
            for (j, joint) in body.joints.iter().enumerate() {
                let at = (t * MAX_BODIES + slot) * NTU_JOINTS + j;
                xyz[3 * at..3 * at + 3].copy_from_slice(&joint.xyz);
                state[at] = joint.state;
            }
        }
    }
    // The shapes match the element counts by construction.
    (
        Array::new(vec![frames, MAX_BODIES, NTU_JOINTS, 3], ArrayData::F32(xyz)).unwrap(),
        Array::new(vec![frames, MAX_BODIES, NTU_JOINTS], ArrayData::U8(state)).unwrap(),
    )
}

/// What to import and how.
#[derive(Clone, Debug)]
pub struct NtuImportConfig {
    pub version: NtuVersion,
    /// The folder of `.skeleton` files (not searched recursively).
    pub skeleton_dir: PathBuf,
    /// The masked depth folder (`nturgb+d_depth_masked`, one sub-folder per sample); None
    /// imports skeletons only.
    pub depth_dir: Option<PathBuf>,
    /// Frames per sample (T).
    pub frames: usize,
    /// Depth maps are resized to this (height, width).
    pub depth_size: (usize, usize),
    /// Points per frame (P).
    pub points: usize,
    /// Seeds the choice of depth pixels for the point clouds.
    pub seed: u64,
    /// Replace an existing dataset at the output.
    pub replace: bool,
}

impl NtuImportConfig {
    /// Skeletons only, 64 frames; with a depth folder, 112x112 depth and 2048 points per
    /// frame (the paper's sizes).
    pub fn new(version: NtuVersion, skeleton_dir: impl Into<PathBuf>) -> NtuImportConfig {
        NtuImportConfig {
            version,
            skeleton_dir: skeleton_dir.into(),
            depth_dir: None,
            frames: 64,
            depth_size: (112, 112),
            points: 2048,
            seed: 0,
            replace: false,
        }
    }

    /// The dataset spec an import with this configuration writes.
    pub fn spec(&self) -> DatasetSpec {
        let t = self.frames;
        let mut streams = vec![
            StreamSpec {
                modality: Modality::Skeleton,
                dims: vec![t, MAX_BODIES, NTU_JOINTS, 3],
            },
            StreamSpec {
                modality: Modality::JointState,
                dims: vec![t, MAX_BODIES, NTU_JOINTS],
            },
        ];
        if self.depth_dir.is_some() {
            let (h, w) = self.depth_size;
            streams.push(StreamSpec {
                modality: Modality::Depth,
                dims: vec![t, h, w],
            });
            streams.push(StreamSpec {
                modality: Modality::Points,
                dims: vec![t, self.points, 3],
            });
        }
        DatasetSpec {
            name: self.version.name().into(),
            classes: self.version.class_names(),
            streams,
        }
    }
}

/// One file that could not be imported.
#[derive(Debug)]
pub struct ImportFailure {
    pub path: PathBuf,
    pub error: DataError,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Samples written.
    pub imported: usize,
    /// Names skipped because the dataset authors list their skeletons as missing.
    pub skipped_missing: Vec<String>,
    /// Names skipped because their setup or action is not in the chosen release (NTU RGB+D
    /// 120 files met while importing NTU RGB+D 60).
    pub skipped_other_release: Vec<String>,
    /// Files that failed, with why.
    pub failures: Vec<ImportFailure>,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "imported {} samples; skipped {} with known missing skeletons, {} of another \
             release; {} failed",
            self.imported,
            self.skipped_missing.len(),
            self.skipped_other_release.len(),
            self.failures.len()
        )?;
        for fail in &self.failures {
            // Errors name their file already.
            writeln!(f, "  {}", fail.error)?;
        }
        Ok(())
    }
}

/// Imports every `.skeleton` file of `cfg.skeleton_dir` (in name order) into a dataset at
/// `out`, with the `xsub`, `xview` (and for NTU RGB+D 120 `xset`) splits.
///
/// Bad files are reported, not fatal. Fails (leaving nothing at `out`) if `out` exists and
/// `cfg.replace` is off, if no sample could be imported, or on an I/O error while writing.
pub fn import_dir(cfg: &NtuImportConfig, out: &Path) -> DataResult<ImportReport> {
    if cfg.frames == 0 || cfg.depth_size.0 == 0 || cfg.depth_size.1 == 0 || cfg.points == 0 {
        return Err(DataError::Invalid(format!(
            "frames ({}), depth size ({:?}) and points ({}) must be positive",
            cfg.frames, cfg.depth_size, cfg.points
        )));
    }
    let dir = &cfg.skeleton_dir;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "skeleton") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();

    let spec = cfg.spec();
    // Created first, so an existing output fails before a long parse.
    let mut writer = if cfg.replace {
        DatasetWriter::create_replacing(out, &spec)?
    } else {
        DatasetWriter::create(out, &spec)?
    };
    let mut report = ImportReport::default();
    let mut metas = Vec::new();
    for path in files {
        // Listed files have a name; a non-UTF-8 one fails the name check below.
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if let Some(meta) = parse_sample_name(stem) {
            if !cfg.version.contains(&meta) {
                report.skipped_other_release.push(meta.name);
                continue;
            }
            if is_known_missing(&meta.name) {
                report.skipped_missing.push(meta.name);
                continue;
            }
        }
        match import_sample(cfg, &path) {
            Ok(sample) => {
                // A shape error here would be our bug; I/O errors end the import.
                writer.append(&sample)?;
                metas.push(sample.meta);
            }
            Err(error) => report.failures.push(ImportFailure { path, error }),
        }
    }
    report.imported = metas.len();
    if metas.is_empty() {
        return Err(DataError::Invalid(format!(
            "no sample imported from {}: {report}",
            dir.display()
        )));
    }
    writer.finish(&ntu_splits(cfg.version, &metas))?;
    Ok(report)
}

/// Reads one sample: the `.skeleton` file at `path` and, if `cfg.depth_dir` is set, its depth
/// folder.
pub fn import_sample(cfg: &NtuImportConfig, path: &Path) -> DataResult<Sample> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let meta = parse_sample_name(stem).ok_or_else(|| DataError::Format {
        path: path.to_path_buf(),
        msg: "the name is not an NTU sample name SsssCcccPpppRrrrAaaa".into(),
    })?;
    if !cfg.version.contains(&meta) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            msg: format!(
                "setup {} / action {} is not in {}",
                meta.setup,
                meta.label + 1,
                cfg.version.name()
            ),
        });
    }
    let seq = read_skeleton(path)?;
    if seq.frames.iter().all(|bodies| bodies.is_empty()) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            msg: format!("no body in any of its {} frames", seq.frames.len()),
        });
    }
    let (skeleton, state) = skeleton_arrays(&seq, cfg.frames);
    let mut streams = BTreeMap::new();
    streams.insert(Modality::Skeleton, skeleton);
    streams.insert(Modality::JointState, state);
    if let Some(depth_root) = &cfg.depth_dir {
        let (depth, points) = depth_arrays(cfg, &depth_root.join(&meta.name), &meta.name)?;
        streams.insert(Modality::Depth, depth);
        streams.insert(Modality::Points, points);
    }
    Ok(Sample { meta, streams })
}

/// `Depth` (T, H, W) and `Points` (T, P, 3) from a sample's depth folder. Frames are chosen
/// with [`frame_indices`] over the depth frames (their count can differ from the skeleton's);
/// each frame's pixel choice is seeded by `cfg.seed`, the sample name and the source frame.
fn depth_arrays(cfg: &NtuImportConfig, dir: &Path, name: &str) -> DataResult<(Array, Array)> {
    let paths = depth_frame_paths(dir)?;
    let (h, w) = cfg.depth_size;
    let t = cfg.frames;
    let mut depth = Vec::with_capacity(t * h * w);
    let mut points = Vec::with_capacity(t * cfg.points * 3);
    let mut last: Option<(usize, Vec<u16>, Vec<f32>)> = None;
    for src in frame_indices(paths.len(), t) {
        // Stretched sequences repeat frames: decode each once.
        if last.as_ref().map(|l| l.0) != Some(src) {
            let map = read_depth_png(&paths[src])?;
            if (map.width, map.height) != (DEPTH_WIDTH, DEPTH_HEIGHT) {
                return Err(DataError::Format {
                    path: paths[src].clone(),
                    msg: format!(
                        "is {}x{}; NTU depth maps are {DEPTH_WIDTH}x{DEPTH_HEIGHT}, which the \
                         back-projection intrinsics assume",
                        map.width, map.height
                    ),
                });
            }
            let seed = frame_seed(cfg.seed, name, src);
            last = Some((
                src,
                resize_nearest(&map, h, w),
                back_project(&map, cfg.points, seed),
            ));
        }
        // Set just above.
        let (_, d, p) = last.as_ref().unwrap();
        depth.extend_from_slice(d);
        points.extend_from_slice(p);
    }
    Ok((
        Array::new(vec![t, h, w], ArrayData::U16(depth))?,
        Array::new(vec![t, cfg.points, 3], ArrayData::F32(points))?,
    ))
}

/// A per-frame seed from the import seed, the sample name (FNV-1a, stable across runs and
/// platforms) and the source frame.
fn frame_seed(seed: u64, name: &str, frame: usize) -> u64 {
    let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = SplitMix64(seed ^ name_hash);
    rng.0 ^= (frame as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    rng.next()
}
