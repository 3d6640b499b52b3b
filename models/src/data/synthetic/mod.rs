//! The synthetic multi-modal action dataset: the default dataset, made by the program.
//!
//! A recording is one subject performing one action class once (a replication), filmed at the
//! same time by three cameras (views), like NTU RGB+D. Each (class, subject, replication,
//! camera) is one sample. The motion comes from forward kinematics of a 25-joint body driven by
//! the class's joint-angle program, varied per subject (bone lengths, girth, speed, amplitude,
//! style wobble, idle sway) and per performance (timing, tempo, amplitude); every stream of a
//! sample comes from the same motion and camera:
//!
//! | stream | shape | what |
//! |---|---|---|
//! | `skeleton` | (T, 1, 25, 3) f32 | Kinect layout, metres, camera coordinates, with jitter, inferred (occluded) and lost joints |
//! | `joint_state` | (T, 1, 25) u8 | 2 tracked, 1 inferred, 0 not tracked |
//! | `skeleton17` / `skeleton15` | (T, 1, J, 3) f32 | COCO / OpenNI placements of the same pose (see `layouts`) |
//! | `depth` | (T, H, W) u16 | millimetres, ray-cast capsules, floor and wall, noise, holes (0) |
//! | `rgb` | (T, 3, H, W) u8 | Lambert-shaded clothing and skin, patterned walls, checkered floor |
//! | `points` | (T, P, 3) f32 | back-projected body pixels of a depth map (see `points_supersample`, `sensor::sample_points`) |
//!
//! Camera coordinates and the pinhole model are those of `data::camera` (Kinect's).
//!
//! Everything is deterministic from the seed: each random choice comes from its own stream
//! keyed by what it is for and which recording, so a sample does not depend on the thread
//! count, the order of generation, the other samples of the configuration, or which other
//! streams were asked for. The same (class, subject, replication, camera) in two presets with
//! the same seed and frame count has the same skeleton.
//!
//! ```no_run
//! use models::data::synthetic::{generate_sample, SynthConfig};
//! let cfg = SynthConfig::preset("tiny").unwrap();
//! let spec = cfg.spec();
//! let sample = generate_sample(&cfg, 0).unwrap();
//! let splits = cfg.splits(); // "xsub" and "xview"
//! # let _ = (spec, sample, splits);
//! ```

mod actions;
mod body;
mod render;
mod rng;
mod scene;
mod sensor;
mod store;

pub use actions::{mirror_class, Action, CLASSES};
pub use scene::{CAMERAS, CAMERA_YAW_DEG, SETUPS};
pub use sensor::{INFERRED, NOT_TRACKED, TRACKED};
pub use store::write_dataset;

use std::collections::BTreeMap;
use std::ops::Range;

use rand::Rng;
use rayon::prelude::*;

use super::camera::Intrinsics;
use super::geom::{v3, V3};
use super::layouts::{map_from_kinect25, SkeletonLayout};
use super::{
    Array, ArrayData, DataError, DataResult, DatasetSpec, Modality, Sample, SampleMeta, Split,
    StreamSpec,
};
use body::{forward_kinematics, place_in_world, Pose, StyleNoise, Subject, JOINTS};
use render::{first_hit, render_background, render_body, Rays};
use rng::{stream, Purpose};
use scene::{body_capsules, max_radius, CameraPose, Capsule, Room};

/// The vertical field of view of every synthetic camera, degrees.
pub const VERTICAL_FOV_DEG: f32 = 50.0;

/// How long a clip lasts in seconds, whatever its frame count (sets the idle sway's pace).
const CLIP_SECONDS: f32 = 3.0;

/// What to generate. Build one with `preset` and adjust fields as needed; `validate` says
/// whether a hand-made one makes sense.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// The preset it came from (or any name); the dataset is called `synthetic-{name}`.
    pub name: String,
    pub seed: u64,
    /// Frames per clip (T).
    pub frames: usize,
    /// Depth and RGB image size.
    pub height: usize,
    pub width: usize,
    /// Points per frame (P).
    pub points: usize,
    /// Points are back-projected from a depth map this many times finer than `depth` (same
    /// camera, same noise model), as NTU's point clouds come from the full 512x424 sensor map
    /// while the depth encoder sees a resized one; at 1 they come from `depth` itself. A
    /// 48x48 map has only about 130 body pixels, too few for distinct points.
    pub points_supersample: usize,
    /// The first `classes` entries of `CLASSES` are used.
    pub classes: usize,
    pub subjects: usize,
    pub replications: usize,
    /// The streams each sample holds.
    pub modalities: Vec<Modality>,
}

/// A whole generated dataset, in memory.
#[derive(Clone, Debug)]
pub struct SynthDataset {
    pub spec: DatasetSpec,
    pub samples: Vec<Sample>,
    pub splits: Vec<Split>,
}

/// The motion of one sample before any sensor touches it: joints per frame in the world frame
/// (y up, floor at 0, subject at the origin facing +z) and in camera coordinates.
#[derive(Clone, Debug)]
pub struct CleanPoses {
    pub world: Vec<[V3; JOINTS]>,
    pub camera: Vec<[V3; JOINTS]>,
}

impl SynthConfig {
    pub const PRESETS: [&'static str; 3] = ["tiny", "small", "paper"];

    /// `tiny` (tests: 8 frames, 32x32, 64 points from the depth map itself, 4 subjects, 384
    /// samples, about a second), `small` (the default: 32 frames, 48x48, 256 points from a
    /// 96x96 map, 20 subjects, 1920 samples, about 0.94 GB), `paper` (NTU-like sizes: 64
    /// frames, 112x112, 2048 points from a 224x224 map, 40 subjects,
    /// 3840 samples, about 21 GB). All have the 32 classes, 3 cameras and every modality.
    pub fn preset(name: &str) -> DataResult<SynthConfig> {
        let (frames, size, points, supersample, subjects) = match name {
            "tiny" => (8, 32, 64, 1, 4),
            "small" => (32, 48, 256, 2, 20),
            "paper" => (64, 112, 2048, 2, 40),
            _ => {
                return Err(DataError::Invalid(format!(
                    "unknown synthetic preset {name:?} (expected one of {:?})",
                    Self::PRESETS
                )))
            }
        };
        Ok(SynthConfig {
            name: name.to_string(),
            seed: 0x5eed_2024,
            frames,
            height: size,
            width: size,
            points,
            points_supersample: supersample,
            classes: CLASSES.len(),
            subjects,
            replications: 1,
            modalities: Modality::ALL.to_vec(),
        })
    }

    pub fn validate(&self) -> DataResult<()> {
        let bad = |msg: String| Err(DataError::Invalid(format!("synthetic config: {msg}")));
        if !(2..=100_000).contains(&self.frames) {
            return bad(format!("frames must be in 2..=100000, got {}", self.frames));
        }
        if !(8..=4096).contains(&self.height) || !(8..=4096).contains(&self.width) {
            return bad(format!(
                "image size must be in 8..=4096, got {}x{}",
                self.height, self.width
            ));
        }
        if self.points == 0 || !(1..=8).contains(&self.points_supersample) {
            return bad(format!(
                "points must be at least 1 and points_supersample in 1..=8, got {} and {}",
                self.points, self.points_supersample
            ));
        }
        if !(1..=CLASSES.len()).contains(&self.classes) {
            return bad(format!(
                "classes must be in 1..={}, got {}",
                CLASSES.len(),
                self.classes
            ));
        }
        if !(1..=999).contains(&self.subjects) || !(1..=255).contains(&self.replications) {
            return bad(format!(
                "subjects must be in 1..=999 and replications in 1..=255, got {} and {}",
                self.subjects, self.replications
            ));
        }
        if self.modalities.is_empty() {
            return bad("no modalities".into());
        }
        for (i, m) in self.modalities.iter().enumerate() {
            if self.modalities[..i].contains(m) {
                return bad(format!("modality {m} listed twice"));
            }
        }
        Ok(())
    }

    pub fn num_samples(&self) -> usize {
        self.classes * self.subjects * self.replications * CAMERAS
    }

    pub fn class_names(&self) -> Vec<String> {
        CLASSES[..self.classes]
            .iter()
            .map(|c| c.0.to_string())
            .collect()
    }

    /// The per-sample shape of `modality`.
    pub fn dims(&self, modality: Modality) -> Vec<usize> {
        let (t, h, w, p) = (self.frames, self.height, self.width, self.points);
        match modality {
            Modality::Skeleton => vec![t, 1, JOINTS, 3],
            Modality::JointState => vec![t, 1, JOINTS],
            Modality::Skeleton17 => vec![t, 1, 17, 3],
            Modality::Skeleton15 => vec![t, 1, 15, 3],
            Modality::Depth => vec![t, h, w],
            Modality::Rgb => vec![t, 3, h, w],
            Modality::Points => vec![t, p, 3],
        }
    }

    pub fn spec(&self) -> DatasetSpec {
        DatasetSpec {
            name: format!("synthetic-{}", self.name),
            classes: self.class_names(),
            streams: self
                .modalities
                .iter()
                .map(|&m| StreamSpec {
                    modality: m,
                    dims: self.dims(m),
                })
                .collect(),
        }
    }

    /// Bytes of array data per sample (what a fixed-record store holds).
    pub fn bytes_per_sample(&self) -> usize {
        self.modalities
            .iter()
            .map(|&m| self.dims(m).iter().product::<usize>() * m.elem().size())
            .sum()
    }

    /// The camera of the depth and RGB frames.
    pub fn intrinsics(&self) -> Intrinsics {
        Intrinsics::from_vertical_fov(self.width, self.height, VERTICAL_FOV_DEG)
    }

    /// The camera of the depth map the points are back-projected from: `intrinsics` with
    /// `points_supersample` times as many pixels each way.
    pub fn point_intrinsics(&self) -> Intrinsics {
        let s = self.points_supersample;
        Intrinsics::from_vertical_fov(self.width * s, self.height * s, VERTICAL_FOV_DEG)
    }

    /// Who did what, where, for sample `index` (cheap: nothing is generated). Samples are
    /// ordered replication, subject, class, camera (camera fastest).
    pub fn meta(&self, index: usize) -> SampleMeta {
        let r = Recording::of(self, index);
        SampleMeta {
            name: format!(
                "S{:03}C{:03}P{:03}R{:03}A{:03}",
                r.setup,
                r.camera,
                r.subject,
                r.replication,
                r.label + 1
            ),
            label: r.label as u16,
            subject: r.subject,
            camera: r.camera,
            setup: r.setup,
            replication: r.replication,
        }
    }

    /// The index of the sample of class `label` (0-based) by `subject`, `replication` and
    /// `camera` (1-based), if the configuration has it.
    pub fn index_of(
        &self,
        label: usize,
        subject: u16,
        replication: u8,
        camera: u8,
    ) -> Option<usize> {
        let ok = label < self.classes
            && (1..=self.subjects).contains(&(subject as usize))
            && (1..=self.replications).contains(&(replication as usize))
            && (1..=CAMERAS).contains(&(camera as usize));
        ok.then(|| {
            let rest = (replication as usize - 1) * self.subjects + subject as usize - 1;
            (rest * self.classes + label) * CAMERAS + camera as usize - 1
        })
    }

    /// Cross-subject (`xsub`: odd-numbered subjects train, half of them as in NTU) and
    /// cross-view (`xview`: cameras 2 and 3 train, camera 1 tests).
    pub fn splits(&self) -> Vec<Split> {
        let metas: Vec<SampleMeta> = (0..self.num_samples()).map(|i| self.meta(i)).collect();
        let split = |name: &str, train: &dyn Fn(&SampleMeta) -> bool| {
            let (tr, te): (Vec<u32>, Vec<u32>) =
                (0..metas.len() as u32).partition(|&i| train(&metas[i as usize]));
            Split {
                name: name.to_string(),
                train: tr,
                test: te,
            }
        };
        vec![
            split("xsub", &|m| m.subject % 2 == 1),
            split("xview", &|m| m.camera != 1),
        ]
    }
}

/// The identity of one sample.
#[derive(Clone, Copy, Debug)]
struct Recording {
    label: usize,
    /// 1-based.
    subject: u16,
    camera: u8,
    setup: u16,
    replication: u8,
}

impl Recording {
    fn of(cfg: &SynthConfig, index: usize) -> Recording {
        let camera = index % CAMERAS;
        let rest = index / CAMERAS;
        let label = rest % cfg.classes;
        let rest = rest / cfg.classes;
        let subject = rest % cfg.subjects;
        let replication = rest / cfg.subjects;
        // Pairs of subjects share a setup and replications move on to the next one, so both
        // halves of the cross-subject split see every setup.
        let setup = 1 + (subject / 2 + replication) % SETUPS;
        Recording {
            label,
            subject: subject as u16 + 1,
            camera: camera as u8 + 1,
            setup: setup as u16,
            replication: replication as u8 + 1,
        }
    }

    /// The key of the performance (shared by its cameras).
    fn performance_id(&self) -> u64 {
        ((self.replication as u64) << 40) | ((self.subject as u64) << 16) | self.label as u64
    }

    /// The key of this camera's recording of the performance.
    fn recording_id(&self) -> u64 {
        self.performance_id() | ((self.camera as u64) << 56)
    }
}

/// The performance's motion in the world frame, one pose per frame.
fn perform(cfg: &SynthConfig, rec: &Recording, subject: &Subject) -> Vec<[V3; JOINTS]> {
    let mut rng = stream(cfg.seed, Purpose::Motion, rec.performance_id());
    let action = CLASSES[rec.label].1;
    // Tempo sets how much of the clip the action takes; the rest is standing before and after.
    let speed = subject.speed * rng.gen_range(0.9..1.1);
    let span = (0.8 / speed).clamp(0.5, 0.95);
    let start = rng.gen_range(0.02..(0.98 - span));
    let amplitude = subject.amplitude * rng.gen_range(0.93..1.07);
    let style = StyleNoise::sample(&mut rng, subject.style_deg);
    let tau = std::f32::consts::TAU;
    let sway_hz = [rng.gen_range(0.15..0.4), rng.gen_range(0.15..0.4)];
    let sway_phase = [rng.gen_range(0.0..tau), rng.gen_range(0.0..tau)];

    let rest = forward_kinematics(subject, &Pose::rest());
    let rest_feet = (rest[body::j::ANKLE_L] + rest[body::j::ANKLE_R]) * 0.5;
    (0..cfg.frames)
        .map(|t| {
            let u = (t as f32 + 0.5) / cfg.frames as f32;
            let s = (u - start) / span;
            let mut pose = style.apply(action.pose(s).scaled(amplitude), u);
            let secs = u * CLIP_SECONDS;
            let sway = |k: usize| (tau * sway_hz[k] * secs + sway_phase[k]).sin();
            pose.root += v3(subject.sway * sway(0), 0.0, 0.6 * subject.sway * sway(1));
            pose.trunk_side += 40.0 * subject.sway * sway(0);
            let mut joints = forward_kinematics(subject, &pose);
            place_in_world(
                subject,
                &mut joints,
                pose.root,
                action.plants_feet(),
                (rest_feet.x, rest_feet.z),
            );
            joints
        })
        .collect()
}

/// Everything about a sample before the sensors: its identity, subject, room, camera, and the
/// clean motion in both frames.
struct Scene {
    rec: Recording,
    subject: Subject,
    room: Room,
    cam: CameraPose,
    poses: CleanPoses,
}

fn scene(cfg: &SynthConfig, index: usize) -> DataResult<Scene> {
    cfg.validate()?;
    if index >= cfg.num_samples() {
        return Err(DataError::Invalid(format!(
            "sample {index} out of range: the configuration has {}",
            cfg.num_samples()
        )));
    }
    let rec = Recording::of(cfg, index);
    let subject = Subject::sample(&mut stream(cfg.seed, Purpose::Subject, rec.subject as u64));
    let world = perform(cfg, &rec, &subject);
    let room = Room::of_setup(cfg.seed, rec.setup);
    let mut placement = stream(cfg.seed, Purpose::Placement, rec.recording_id());
    let cam = CameraPose::for_view(&room, rec.camera, &mut placement);
    let camera = world
        .iter()
        .map(|frame| frame.map(|p| cam.world_to_camera(p)))
        .collect();
    Ok(Scene {
        rec,
        subject,
        room,
        cam,
        poses: CleanPoses { world, camera },
    })
}

/// The clean motion of sample `index` (what the sensors see, before they add their errors).
pub fn clean_poses(cfg: &SynthConfig, index: usize) -> DataResult<CleanPoses> {
    Ok(scene(cfg, index)?.poses)
}

/// Generate sample `index` of `cfg`.
pub fn generate_sample(cfg: &SynthConfig, index: usize) -> DataResult<Sample> {
    let sc = scene(cfg, index)?;
    let seed = cfg.seed;
    let id = sc.rec.recording_id();
    let wants = |m: Modality| cfg.modalities.contains(&m);
    let frames = cfg.frames;
    let mut streams = BTreeMap::new();
    let mut put = |m: Modality, data: ArrayData| -> DataResult<()> {
        if wants(m) {
            streams.insert(m, Array::new(cfg.dims(m), data)?);
        }
        Ok(())
    };

    if wants(Modality::Skeleton) || wants(Modality::JointState) {
        // A joint is hidden when the body is in front of it by more than any limb's radius.
        let margin = max_radius(&sc.subject) + 0.02;
        let hidden: Vec<[bool; JOINTS]> = sc
            .poses
            .camera
            .iter()
            .map(|joints| {
                let caps = body_capsules(&sc.subject, joints);
                joints.map(|p| {
                    let dist = p.norm();
                    first_hit(&caps, p * (1.0 / dist)).is_some_and(|t| t < dist - margin)
                })
            })
            .collect();
        let mut rng = stream(seed, Purpose::Skeleton, id);
        let obs = sensor::observe_skeleton(&sc.poses.camera, &hidden, &mut rng);
        put(Modality::Skeleton, ArrayData::F32(flatten(&obs.joints)))?;
        put(Modality::JointState, ArrayData::U8(obs.states))?;
    }

    let mut estimator = stream(seed, Purpose::Estimator, id);
    for m in [Modality::Skeleton17, Modality::Skeleton15] {
        if !wants(m) {
            continue;
        }
        let layout = SkeletonLayout::of(m).expect("a skeleton modality");
        let mut joints: Vec<V3> = sc
            .poses
            .camera
            .iter()
            .flat_map(|frame| map_from_kinect25(layout, frame))
            .collect();
        sensor::estimator_noise(&mut joints, &mut estimator);
        put(m, ArrayData::F32(flatten(&joints)))?;
    }

    // The body as capsules, per frame, for every image-like stream.
    let capsules: Vec<Vec<Capsule>> = sc
        .poses
        .camera
        .iter()
        .map(|joints| body_capsules(&sc.subject, joints))
        .collect();
    let fine_points = cfg.points_supersample > 1;
    let points_from_depth = wants(Modality::Points) && !fine_points;
    if wants(Modality::Depth) || wants(Modality::Rgb) || points_from_depth {
        let k = cfg.intrinsics();
        let want_rgb = wants(Modality::Rgb);
        let camera = Camera::new(k, &sc, want_rgb);
        let (mut depth_rng, mut colour_rng, mut point_rng) = (
            stream(seed, Purpose::Depth, id),
            stream(seed, Purpose::Colour, id),
            stream(seed, Purpose::Points, id),
        );
        let mut depth = Vec::with_capacity(frames * k.width * k.height);
        let mut rgb = Vec::with_capacity(if want_rgb { depth.capacity() * 3 } else { 0 });
        let mut points = Vec::with_capacity(frames * cfg.points * 3);
        for caps in &capsules {
            let frame = camera.shoot(caps);
            let mm = sensor::depth_mm(&frame, &k, false, &mut depth_rng);
            if want_rgb {
                rgb.extend(sensor::rgb_u8(&frame, &mut colour_rng));
            }
            if points_from_depth {
                let p = sensor::sample_points(&mm, &frame.body, &k, cfg.points, &mut point_rng);
                points.extend(p);
            }
            depth.extend(mm);
        }
        put(Modality::Depth, ArrayData::U16(depth))?;
        put(Modality::Rgb, ArrayData::U8(rgb))?;
        if points_from_depth {
            put(Modality::Points, ArrayData::F32(points))?;
        }
    }
    if wants(Modality::Points) && fine_points {
        // The sensor's full-resolution depth map, which only the point cloud sees.
        let k = cfg.point_intrinsics();
        let camera = Camera::new(k, &sc, false);
        let mut rng = stream(seed, Purpose::Points, id);
        let mut points = Vec::with_capacity(frames * cfg.points * 3);
        for caps in &capsules {
            let frame = camera.shoot(caps);
            let mm = sensor::depth_mm(&frame, &k, true, &mut rng);
            points.extend(sensor::sample_points(
                &mm,
                &frame.body,
                &k,
                cfg.points,
                &mut rng,
            ));
        }
        put(Modality::Points, ArrayData::F32(points))?;
    }

    Ok(Sample {
        meta: cfg.meta(index),
        streams,
    })
}

/// One sample's camera, ready to shoot frames: the rays, the static background, the light.
struct Camera {
    k: Intrinsics,
    rays: Rays,
    background: render::Frame,
    light: V3,
}

impl Camera {
    fn new(k: Intrinsics, sc: &Scene, want_rgb: bool) -> Camera {
        let rays = Rays::new(&k);
        let background = render_background(&k, &rays, &sc.cam, &sc.room, sc.rec.camera, want_rgb);
        Camera {
            k,
            rays,
            background,
            light: sc.cam.rot * sc.room.light,
        }
    }

    /// The clean frame with the body `caps` in front of the background.
    fn shoot(&self, caps: &[Capsule]) -> render::Frame {
        let mut frame = self.background.clone();
        render_body(&mut frame, &self.k, &self.rays, caps, self.light);
        frame
    }
}

fn flatten(joints: &[V3]) -> Vec<f32> {
    joints.iter().flat_map(|p| p.to_array()).collect()
}

/// Samples `range` of `cfg`, generated in parallel on the current rayon pool, in order.
pub fn generate_range(cfg: &SynthConfig, range: Range<usize>) -> DataResult<Vec<Sample>> {
    cfg.validate()?;
    range
        .into_par_iter()
        .map(|i| generate_sample(cfg, i))
        .collect()
}

/// The whole dataset in memory. For large presets prefer `chunks`.
pub fn generate(cfg: &SynthConfig) -> DataResult<SynthDataset> {
    Ok(SynthDataset {
        spec: cfg.spec(),
        samples: generate_range(cfg, 0..cfg.num_samples())?,
        splits: cfg.splits(),
    })
}

/// The dataset in consecutive chunks of `chunk` samples (the last may be shorter), each made
/// in parallel: what a writer streaming to disk wants.
pub fn chunks(
    cfg: &SynthConfig,
    chunk: usize,
) -> impl Iterator<Item = DataResult<Vec<Sample>>> + '_ {
    let n = cfg.num_samples();
    let chunk = chunk.max(1);
    (0..n)
        .step_by(chunk)
        .map(move |start| generate_range(cfg, start..(start + chunk).min(n)))
}
