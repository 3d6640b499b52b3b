//! The synthetic body: subjects (bone lengths, girth, speed, style, clothing), joint-angle poses
//! and forward kinematics of the 25-joint Kinect skeleton.
//!
//! Body frame: x to the subject's left, y up, z where the subject faces (right-handed). Each
//! joint's rotation turns the bone from its parent to it (and everything beyond), so bone
//! lengths never change. Right-side angles are given as for the left side and mirrored in the
//! kinematics (rotations about y and z change sign), so a program written for one side plays
//! the mirror image on the other.

use rand::Rng;

use super::rng::normal;
use crate::data::geom::{deg, v3, M3, V3};

/// Kinect joint indices (NTU order).
pub use crate::data::layouts::kinect_joints as j;

pub const JOINTS: usize = 25;

/// The kinematic parent of each joint (the root, spine base, has none). This is the anatomical
/// tree, rooted at the pelvis; the layout's bone list (rooted at the spine shoulder) has the
/// same edges.
pub const PARENT: [usize; JOINTS] = [
    0, 0, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 1, 7, 7, 11, 11,
];

/// Joints in an order where every parent comes before its children.
const ORDER: [usize; JOINTS] = [
    0, 1, 20, 2, 3, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24, 12, 13, 14, 15, 16, 17, 18, 19,
];

/// Height of the ankle joint above the floor at rest, for a 1.75 m subject.
pub const ANKLE_HEIGHT: f32 = 0.08;

/// Rest offsets (body frame, metres) of each joint from its parent for a 1.75 m subject with
/// the arms hanging, palms facing the thighs.
fn rest_offset(joint: usize) -> V3 {
    match joint {
        j::SPINE_BASE => V3::ZERO,
        j::SPINE_MID => v3(0.0, 0.23, -0.01),
        j::SPINE_SHOULDER => v3(0.0, 0.23, -0.01),
        j::NECK => v3(0.0, 0.08, 0.01),
        j::HEAD => v3(0.0, 0.12, 0.02),
        j::SHOULDER_L => v3(0.17, -0.03, -0.01),
        j::SHOULDER_R => v3(-0.17, -0.03, -0.01),
        j::ELBOW_L | j::ELBOW_R => v3(0.0, -0.29, 0.0),
        j::WRIST_L | j::WRIST_R => v3(0.0, -0.25, 0.0),
        j::HAND_L | j::HAND_R => v3(0.0, -0.07, 0.0),
        j::TIP_L | j::TIP_R => v3(0.0, -0.09, 0.0),
        j::THUMB_L | j::THUMB_R => v3(0.0, -0.035, 0.045),
        j::HIP_L => v3(0.09, -0.06, 0.0),
        j::HIP_R => v3(-0.09, -0.06, 0.0),
        j::KNEE_L | j::KNEE_R => v3(0.0, -0.43, 0.0),
        j::ANKLE_L | j::ANKLE_R => v3(0.0, -0.42, 0.0),
        j::FOOT_L | j::FOOT_R => v3(0.0, -0.05, 0.13),
        _ => unreachable!("joint {joint}"),
    }
}

/// One performer. Everything here is fixed per subject; per-recording variation is drawn from
/// the recording's own random stream.
#[derive(Clone, Debug)]
pub struct Subject {
    /// Offset of each joint from its kinematic parent at rest (body frame, metres).
    pub offsets: [V3; JOINTS],
    /// Limb thickness factor (multiplies every capsule radius).
    pub girth: f32,
    /// Tempo: > 1 performs faster (the action takes a shorter part of the clip).
    pub speed: f32,
    /// Scales every joint angle's departure from rest.
    pub amplitude: f32,
    /// Standard deviation (degrees) of the slow random wobble added to every angle.
    pub style_deg: f32,
    /// Amplitude (metres) of the idle sway of the whole body.
    pub sway: f32,
    /// Linear RGB in [0, 1].
    pub shirt: [f32; 3],
    pub trousers: [f32; 3],
    pub skin: [f32; 3],
    pub shoes: [f32; 3],
    /// Short sleeves show skin on the forearms.
    pub short_sleeves: bool,
}

impl Subject {
    /// Draw a subject from `rng` (the subject's own stream).
    pub fn sample(rng: &mut impl Rng) -> Subject {
        let height = rng.gen_range(0.88f32..1.12);
        // Segment proportions vary a little on top of the overall size.
        let mut f = || height * rng.gen_range(0.94f32..1.06);
        let (spine, neck, shoulders, upper_arm, forearm, hips, thigh, shank) =
            (f(), f(), f(), f(), f(), f(), f(), f());
        let mut offsets = [V3::ZERO; JOINTS];
        for (joint, off) in offsets.iter_mut().enumerate() {
            let s = match joint {
                j::SPINE_MID | j::SPINE_SHOULDER => spine,
                j::NECK | j::HEAD => neck,
                j::SHOULDER_L | j::SHOULDER_R => shoulders,
                j::ELBOW_L | j::ELBOW_R => upper_arm,
                j::WRIST_L | j::WRIST_R | j::HAND_L | j::HAND_R => forearm,
                j::HIP_L | j::HIP_R => hips,
                j::KNEE_L | j::KNEE_R => thigh,
                j::ANKLE_L | j::ANKLE_R => shank,
                _ => height,
            };
            *off = rest_offset(joint) * s;
        }
        let skin_tones = [
            [0.96, 0.80, 0.69],
            [0.87, 0.67, 0.52],
            [0.72, 0.52, 0.38],
            [0.55, 0.38, 0.26],
            [0.36, 0.24, 0.16],
        ];
        let mut colour = |lo: f32, hi: f32| {
            [
                rng.gen_range(lo..hi),
                rng.gen_range(lo..hi),
                rng.gen_range(lo..hi),
            ]
        };
        let shirt = colour(0.1, 0.95);
        let trousers = colour(0.05, 0.5);
        let shoes = colour(0.05, 0.9);
        Subject {
            offsets,
            girth: rng.gen_range(0.85..1.2),
            speed: rng.gen_range(0.8..1.25),
            amplitude: rng.gen_range(0.82..1.1),
            style_deg: rng.gen_range(2.0..6.0),
            sway: rng.gen_range(0.005..0.03),
            shirt,
            trousers,
            skin: skin_tones[rng.gen_range(0..skin_tones.len())],
            shoes,
            short_sleeves: rng.gen_bool(0.4),
        }
    }

    /// The ankle height above the floor at rest for this subject.
    pub fn ankle_height(&self) -> f32 {
        ANKLE_HEIGHT * (self.offsets[j::KNEE_L].norm() / 0.43)
    }
}

/// One arm's angles in degrees, written for the left arm (the right one is mirrored).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Arm {
    /// Shoulder girdle elevation (shrug).
    pub clav: f32,
    /// Raise the upper arm forward (0 hanging, 90 horizontal forward, 180 overhead).
    pub flex: f32,
    /// Raise the upper arm sideways, away from the body.
    pub abd: f32,
    /// Swing the upper arm about the vertical: negative brings it across the body.
    pub horiz: f32,
    /// Rotate the upper arm about its own axis (turns the plane the elbow bends in).
    pub twist: f32,
    /// Bend the elbow (0 straight).
    pub elbow: f32,
    /// Bend the wrist (palm towards the forearm).
    pub wrist: f32,
}

/// One leg's angles in degrees, written for the left leg.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Leg {
    /// Raise the thigh forward.
    pub flex: f32,
    /// Move the thigh sideways, away from the body.
    pub abd: f32,
    /// Bend the knee (0 straight).
    pub knee: f32,
    /// Point the toes up (+) or down (-) relative to a foot kept flat on the floor.
    pub ankle: f32,
}

/// A whole-body pose: root motion plus joint angles (degrees). `arms[0]`, `legs[0]` are left.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pose {
    /// Root displacement (body frame at zero yaw, metres) on top of the planted stance.
    pub root: V3,
    /// Turn of the whole body about the vertical (counter-clockwise seen from above).
    pub yaw: f32,
    /// Bend of the lower spine: forward, sideways (towards the left), twist (towards the left).
    pub trunk_flex: f32,
    pub trunk_side: f32,
    pub trunk_twist: f32,
    /// Bend of the upper spine forward.
    pub chest_flex: f32,
    pub neck_flex: f32,
    /// Nod forward, turn left, tilt towards the left shoulder.
    pub head_flex: f32,
    pub head_yaw: f32,
    pub head_side: f32,
    pub arms: [Arm; 2],
    pub legs: [Leg; 2],
}

pub const LEFT: usize = 0;
pub const RIGHT: usize = 1;

/// The number of scalar parameters of a `Pose`.
pub const POSE_DOFS: usize = 12 + 2 * 7 + 2 * 4;

impl Pose {
    /// Standing, arms hanging slightly away from the body.
    pub fn rest() -> Pose {
        let arm = Arm {
            abd: 6.0,
            elbow: 8.0,
            ..Arm::default()
        };
        let leg = Leg {
            abd: 2.0,
            ..Leg::default()
        };
        Pose {
            arms: [arm; 2],
            legs: [leg; 2],
            ..Pose::default()
        }
    }

    /// Mutable references to every scalar, in a fixed order (for scaling and noise).
    fn scalars_mut(&mut self) -> Vec<&mut f32> {
        let mut v: Vec<&mut f32> = vec![
            &mut self.root.x,
            &mut self.root.y,
            &mut self.root.z,
            &mut self.yaw,
            &mut self.trunk_flex,
            &mut self.trunk_side,
            &mut self.trunk_twist,
            &mut self.chest_flex,
            &mut self.neck_flex,
            &mut self.head_flex,
            &mut self.head_yaw,
            &mut self.head_side,
        ];
        for a in self.arms.iter_mut() {
            v.extend([
                &mut a.clav,
                &mut a.flex,
                &mut a.abd,
                &mut a.horiz,
                &mut a.twist,
                &mut a.elbow,
                &mut a.wrist,
            ]);
        }
        for l in self.legs.iter_mut() {
            v.extend([&mut l.flex, &mut l.abd, &mut l.knee, &mut l.ankle]);
        }
        v
    }

    /// Apply `f(index, value)` to every scalar.
    pub fn map(mut self, mut f: impl FnMut(usize, f32) -> f32) -> Pose {
        for (i, x) in self.scalars_mut().into_iter().enumerate() {
            *x = f(i, *x);
        }
        self
    }

    /// Every scalar, in the fixed order `map` uses.
    pub fn values(mut self) -> Vec<f32> {
        self.scalars_mut().into_iter().map(|x| *x).collect()
    }

    /// This pose's departure from rest scaled by `amp` (the turn and the root motion are kept:
    /// a shy subject still turns all the way round).
    pub fn scaled(self, amp: f32) -> Pose {
        let rest = Pose::rest().values();
        let scaled = self.map(|i, x| rest[i] + (x - rest[i]) * amp);
        Pose {
            root: self.root,
            yaw: self.yaw,
            ..scaled
        }
    }
}

/// Rotation of the upper arm bone for the left arm; the right arm mirrors y and z angles.
fn arm_rotation(a: &Arm, sign: f32) -> M3 {
    M3::rot_y(deg(a.horiz * sign))
        * M3::rot_z(deg(a.abd * sign))
        * M3::rot_x(deg(-a.flex))
        * M3::rot_y(deg(a.twist * sign))
}

/// Forward kinematics: joint positions in the body frame (x left, y up, z forward at zero yaw)
/// with the spine base at the origin, before planting on the floor.
pub fn forward_kinematics(subject: &Subject, pose: &Pose) -> [V3; JOINTS] {
    let mut local = [M3::IDENTITY; JOINTS];
    local[j::SPINE_BASE] = M3::rot_y(deg(pose.yaw));
    local[j::SPINE_MID] = M3::rot_y(deg(pose.trunk_twist))
        * M3::rot_z(deg(-pose.trunk_side))
        * M3::rot_x(deg(pose.trunk_flex));
    local[j::SPINE_SHOULDER] = M3::rot_x(deg(pose.chest_flex));
    local[j::NECK] = M3::rot_x(deg(pose.neck_flex));
    local[j::HEAD] = M3::rot_y(deg(pose.head_yaw))
        * M3::rot_z(deg(-pose.head_side))
        * M3::rot_x(deg(pose.head_flex));
    let sides = [
        (
            LEFT,
            1.0,
            [j::SHOULDER_L, j::ELBOW_L, j::WRIST_L, j::HAND_L],
        ),
        (
            RIGHT,
            -1.0,
            [j::SHOULDER_R, j::ELBOW_R, j::WRIST_R, j::HAND_R],
        ),
    ];
    for (side, sign, [sh, el, wr, hd]) in sides {
        let a = &pose.arms[side];
        // The clavicle turns about the forward axis: positive lifts the shoulder.
        local[sh] = M3::rot_z(deg(a.clav * sign));
        local[el] = arm_rotation(a, sign);
        // Elbow and wrist bend forward in the upper arm's (twisted) frame.
        local[wr] = M3::rot_x(deg(-a.elbow));
        local[hd] = M3::rot_x(deg(-a.wrist));
    }
    let legs = [
        (LEFT, 1.0, [j::KNEE_L, j::ANKLE_L, j::FOOT_L]),
        (RIGHT, -1.0, [j::KNEE_R, j::ANKLE_R, j::FOOT_R]),
    ];
    for (side, sign, [kn, an, ft]) in legs {
        let l = &pose.legs[side];
        local[kn] = M3::rot_z(deg(l.abd * sign)) * M3::rot_x(deg(-l.flex));
        local[an] = M3::rot_x(deg(l.knee));
        // Undo the shank's pitch so the foot stays flat, then add the program's ankle angle.
        local[ft] = M3::rot_x(deg(l.flex - l.knee - l.ankle));
    }

    let mut global = [M3::IDENTITY; JOINTS];
    let mut pos = [V3::ZERO; JOINTS];
    global[j::SPINE_BASE] = local[j::SPINE_BASE];
    for &joint in &ORDER[1..] {
        let p = PARENT[joint];
        global[joint] = global[p] * local[joint];
        pos[joint] = pos[p] + global[joint] * subject.offsets[joint];
    }
    pos
}

/// Place a body-frame pose in the world: the lower ankle rests on the floor (y = 0) and, when
/// `plant_feet`, the feet keep their rest position on the floor (crouching moves the hips back
/// instead of sliding the feet forward); then add the program's root motion.
pub fn place_in_world(
    subject: &Subject,
    joints: &mut [V3; JOINTS],
    root: V3,
    plant_feet: bool,
    rest_feet_xz: (f32, f32),
) {
    let (al, ar) = (joints[j::ANKLE_L], joints[j::ANKLE_R]);
    let mut shift = v3(0.0, subject.ankle_height() - al.y.min(ar.y), 0.0);
    if plant_feet {
        let mid = (al + ar) * 0.5;
        shift.x = rest_feet_xz.0 - mid.x;
        shift.z = rest_feet_xz.1 - mid.z;
    }
    for p in joints.iter_mut() {
        *p += shift + root;
    }
}

/// A smooth random wobble per pose scalar: two sines per scalar with random frequencies
/// (cycles per clip) and phases, so style differs between recordings but moves slowly.
#[derive(Clone, Debug)]
pub struct StyleNoise {
    terms: Vec<[f32; 5]>,
}

impl StyleNoise {
    pub fn sample(rng: &mut impl Rng, sigma_deg: f32) -> StyleNoise {
        let terms = (0..POSE_DOFS)
            .map(|_| {
                [
                    sigma_deg * normal(rng),
                    rng.gen_range(0.3..1.5),
                    rng.gen_range(0.0..std::f32::consts::TAU),
                    rng.gen_range(1.5..3.0),
                    rng.gen_range(0.0..std::f32::consts::TAU),
                ]
            })
            .collect();
        StyleNoise { terms }
    }

    /// Add the wobble at clip time `u` in [0, 1] to the pose's angles (not its root motion).
    pub fn apply(&self, pose: Pose, u: f32) -> Pose {
        let tau = std::f32::consts::TAU;
        pose.map(|i, x| {
            if i < 4 {
                return x;
            }
            let [a, f1, p1, f2, p2] = self.terms[i];
            x + a * ((tau * f1 * u + p1).sin() + 0.4 * (tau * f2 * u + p2).sin())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn subject() -> Subject {
        Subject::sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3))
    }

    #[test]
    fn pose_scalar_order_is_complete() {
        let mut p = Pose::rest();
        assert_eq!(p.scalars_mut().len(), POSE_DOFS);
        let q = p.map(|i, _| i as f32);
        assert_eq!(q.values()[POSE_DOFS - 1], (POSE_DOFS - 1) as f32);
        assert_eq!(q.arms[RIGHT].elbow, (12 + 7 + 5) as f32);
    }

    #[test]
    fn rest_pose_stands_upright_facing_forward() {
        let s = subject();
        let p = forward_kinematics(&s, &Pose::rest());
        assert!(p[j::HEAD].y > 0.5 && p[j::ANKLE_L].y < -0.7);
        assert!(p[j::SHOULDER_L].x > 0.1 && p[j::SHOULDER_R].x < -0.1);
        assert!(
            p[j::FOOT_L].z > p[j::ANKLE_L].z + 0.08,
            "toes point forward"
        );
        assert!((p[j::HAND_L].x + p[j::HAND_R].x).abs() < 1e-5, "symmetric");
    }

    #[test]
    fn arm_angles_do_what_their_names_say() {
        let s = subject();
        let mut pose = Pose::rest();
        pose.arms[LEFT] = Arm {
            flex: 90.0,
            ..Arm::default()
        };
        pose.arms[RIGHT] = Arm {
            abd: 90.0,
            ..Arm::default()
        };
        let p = forward_kinematics(&s, &pose);
        let l = p[j::WRIST_L] - p[j::SHOULDER_L];
        assert!(l.z > 0.4 && l.y.abs() < 0.02, "left arm forward: {l:?}");
        let r = p[j::WRIST_R] - p[j::SHOULDER_R];
        assert!(
            r.x < -0.4 && r.y.abs() < 0.02,
            "right arm out to the right: {r:?}"
        );
        // The wave pose: arm out sideways, twisted, elbow bent: the forearm points up.
        pose.arms[LEFT] = Arm {
            abd: 90.0,
            twist: 90.0,
            elbow: 90.0,
            ..Arm::default()
        };
        let p = forward_kinematics(&s, &pose);
        let fore = p[j::WRIST_L] - p[j::ELBOW_L];
        assert!(fore.y > 0.2, "forearm up: {fore:?}");
    }

    #[test]
    fn feet_stay_flat_when_crouching() {
        let s = subject();
        let mut pose = Pose::rest();
        pose.legs[LEFT] = Leg {
            flex: 90.0,
            knee: 100.0,
            ..Leg::default()
        };
        let p = forward_kinematics(&s, &pose);
        let foot = p[j::FOOT_L] - p[j::ANKLE_L];
        let rest = s.offsets[j::FOOT_L];
        assert!((foot - rest).norm() < 1e-4, "{foot:?} vs {rest:?}");
    }
}
