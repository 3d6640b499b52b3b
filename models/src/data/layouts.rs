//! Skeleton conventions: joint names, bones, centre joint and left/right pairs of the three
//! layouts the data pipeline emits, and the mapping from a 25-joint Kinect pose to the other two.
//!
//! Bones are `(joint, parent)` pairs with the parent one step closer to the centre joint, as in
//! the NTU RGB+D list that ST-GCN uses; every joint but the centre appears once as a child, so
//! the bones form a tree rooted at the centre.
//!
//! The 17- and 15-joint poses are not subsets of the 25 Kinect joints: they place joints where
//! those conventions do (COCO hips sit lower and wider, face points sit on the face, OpenNI's
//! torso joint sits between the Kinect spine joints, ...), so a model sees a genuinely different
//! skeleton of the same motion (MS-CLR's multi-skeleton views).

use super::geom::{v3, V3};
use super::Modality;

/// One skeleton convention.
#[derive(Debug, PartialEq, Eq)]
pub struct SkeletonLayout {
    pub name: &'static str,
    /// Joint names, indexed by joint.
    pub joints: &'static [&'static str],
    /// `(joint, parent)` pairs, the parent towards `centre`.
    pub bones: &'static [(usize, usize)],
    /// The root of the bone tree (ST-GCN's centre for its spatial partitions).
    pub centre: usize,
    /// `(left, right)` joint pairs: a left-right flip swaps them.
    pub mirror_pairs: &'static [(usize, usize)],
}

impl SkeletonLayout {
    pub fn num_joints(&self) -> usize {
        self.joints.len()
    }

    /// The layout of a skeleton modality (`Skeleton`, `Skeleton17`, `Skeleton15`).
    pub fn of(modality: Modality) -> Option<&'static SkeletonLayout> {
        match modality {
            Modality::Skeleton | Modality::JointState => Some(&KINECT25),
            Modality::Skeleton17 => Some(&COCO17),
            Modality::Skeleton15 => Some(&BODY15),
            _ => None,
        }
    }

    /// The joint permutation of a left-right flip: joint `i` of the flipped pose is joint
    /// `perm[i]` of the original (with its lateral coordinate negated).
    pub fn mirror_permutation(&self) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.num_joints()).collect();
        for &(l, r) in self.mirror_pairs {
            perm[l] = r;
            perm[r] = l;
        }
        perm
    }

    /// The index of the joint called `name`.
    pub fn joint(&self, name: &str) -> Option<usize> {
        self.joints.iter().position(|&j| j == name)
    }
}

/// Kinect v2 / NTU RGB+D, 25 joints (0-based NTU order).
pub const KINECT25: SkeletonLayout = SkeletonLayout {
    name: "kinect25",
    joints: &[
        "spine_base",
        "spine_mid",
        "neck",
        "head",
        "shoulder_left",
        "elbow_left",
        "wrist_left",
        "hand_left",
        "shoulder_right",
        "elbow_right",
        "wrist_right",
        "hand_right",
        "hip_left",
        "knee_left",
        "ankle_left",
        "foot_left",
        "hip_right",
        "knee_right",
        "ankle_right",
        "foot_right",
        "spine_shoulder",
        "hand_tip_left",
        "thumb_left",
        "hand_tip_right",
        "thumb_right",
    ],
    bones: &[
        (0, 1),
        (1, 20),
        (2, 20),
        (3, 2),
        (4, 20),
        (5, 4),
        (6, 5),
        (7, 6),
        (8, 20),
        (9, 8),
        (10, 9),
        (11, 10),
        (12, 0),
        (13, 12),
        (14, 13),
        (15, 14),
        (16, 0),
        (17, 16),
        (18, 17),
        (19, 18),
        (21, 22),
        (22, 7),
        (23, 24),
        (24, 11),
    ],
    centre: 20,
    mirror_pairs: &[
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
    ],
};

/// COCO keypoints, 17 joints: face points, limbs, no spine. Centre at the nose, as PYSKL's
/// `coco` graph does.
pub const COCO17: SkeletonLayout = SkeletonLayout {
    name: "coco17",
    joints: &[
        "nose",
        "eye_left",
        "eye_right",
        "ear_left",
        "ear_right",
        "shoulder_left",
        "shoulder_right",
        "elbow_left",
        "elbow_right",
        "wrist_left",
        "wrist_right",
        "hip_left",
        "hip_right",
        "knee_left",
        "knee_right",
        "ankle_left",
        "ankle_right",
    ],
    bones: &[
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 5),
        (12, 6),
        (9, 7),
        (7, 5),
        (10, 8),
        (8, 6),
        (5, 0),
        (6, 0),
        (1, 0),
        (3, 1),
        (2, 0),
        (4, 2),
    ],
    centre: 0,
    mirror_pairs: &[
        (1, 2),
        (3, 4),
        (5, 6),
        (7, 8),
        (9, 10),
        (11, 12),
        (13, 14),
        (15, 16),
    ],
};

/// OpenNI / NiTE (Kinect v1 era), 15 joints: one torso joint, hands at the palm, feet between
/// ankle and toes.
pub const BODY15: SkeletonLayout = SkeletonLayout {
    name: "body15",
    joints: &[
        "head",
        "neck",
        "torso",
        "shoulder_left",
        "elbow_left",
        "hand_left",
        "shoulder_right",
        "elbow_right",
        "hand_right",
        "hip_left",
        "knee_left",
        "foot_left",
        "hip_right",
        "knee_right",
        "foot_right",
    ],
    bones: &[
        (0, 1),
        (1, 2),
        (3, 1),
        (4, 3),
        (5, 4),
        (6, 1),
        (7, 6),
        (8, 7),
        (9, 2),
        (10, 9),
        (11, 10),
        (12, 2),
        (13, 12),
        (14, 13),
    ],
    centre: 2,
    mirror_pairs: &[(3, 6), (4, 7), (5, 8), (9, 12), (10, 13), (11, 14)],
};

/// Kinect v2 / NTU joint indices, by name.
pub mod kinect_joints {
    pub const SPINE_BASE: usize = 0;
    pub const SPINE_MID: usize = 1;
    pub const NECK: usize = 2;
    pub const HEAD: usize = 3;
    pub const SHOULDER_L: usize = 4;
    pub const ELBOW_L: usize = 5;
    pub const WRIST_L: usize = 6;
    pub const HAND_L: usize = 7;
    pub const SHOULDER_R: usize = 8;
    pub const ELBOW_R: usize = 9;
    pub const WRIST_R: usize = 10;
    pub const HAND_R: usize = 11;
    pub const HIP_L: usize = 12;
    pub const KNEE_L: usize = 13;
    pub const ANKLE_L: usize = 14;
    pub const FOOT_L: usize = 15;
    pub const HIP_R: usize = 16;
    pub const KNEE_R: usize = 17;
    pub const ANKLE_R: usize = 18;
    pub const FOOT_R: usize = 19;
    pub const SPINE_SHOULDER: usize = 20;
    pub const TIP_L: usize = 21;
    pub const THUMB_L: usize = 22;
    pub const TIP_R: usize = 23;
    pub const THUMB_R: usize = 24;
}
use kinect_joints as k;

/// The body's own axes, from joint positions alone (so the mapping also works on imported
/// skeletons): `left` (the subject's left), `up` (along the spine), `fwd` (where the chest
/// faces), and the same for the head; `scale` is the torso length over a typical 0.5 m, so
/// offsets follow the body's size.
struct BodyFrame {
    left: V3,
    up: V3,
    fwd: V3,
    head_left: V3,
    head_up: V3,
    head_fwd: V3,
    scale: f32,
}

impl BodyFrame {
    fn of(p: &[V3]) -> BodyFrame {
        let spine = p[k::SPINE_SHOULDER] - p[k::SPINE_BASE];
        let up = spine.normalized();
        let lateral = (p[k::SHOULDER_L] - p[k::SHOULDER_R]) + (p[k::HIP_L] - p[k::HIP_R]);
        let left = (lateral - up * lateral.dot(up)).normalized();
        // x left, y up, z forward is right-handed: forward = left x up.
        let fwd = left.cross(up);
        let head_up = (p[k::HEAD] - p[k::NECK]).normalized();
        let head_left = (left - head_up * left.dot(head_up)).normalized();
        let head_fwd = head_left.cross(head_up);
        BodyFrame {
            left,
            up,
            fwd,
            head_left,
            head_up,
            head_fwd,
            scale: spine.norm() / 0.5,
        }
    }
}

/// The pose in `layout` from a 25-joint Kinect pose (`pose.len() == 25`, metres, any right-handed
/// frame). A pose of all zeros (a missing body) maps to all zeros.
pub fn map_from_kinect25(layout: &SkeletonLayout, pose: &[V3]) -> Vec<V3> {
    assert_eq!(pose.len(), 25, "a Kinect pose has 25 joints");
    if layout == &KINECT25 {
        return pose.to_vec();
    }
    if pose.iter().all(|&j| j == V3::ZERO) {
        return vec![V3::ZERO; layout.num_joints()];
    }
    let f = BodyFrame::of(pose);
    if layout == &COCO17 {
        to_coco17(pose, &f)
    } else if layout == &BODY15 {
        to_body15(pose, &f)
    } else {
        panic!("no mapping from kinect25 to {}", layout.name)
    }
}

fn to_coco17(p: &[V3], f: &BodyFrame) -> Vec<V3> {
    let s = f.scale;
    let head = p[k::HEAD];
    // Kinect's head joint is the centre of the head; COCO's face points are on its surface.
    let face = |fwd: f32, up: f32, left: f32| {
        head + f.head_fwd * (fwd * s) + f.head_up * (up * s) + f.head_left * (left * s)
    };
    // COCO shoulders are the acromion: a little higher and further out than Kinect's.
    let shoulder = |sh: usize| {
        p[sh] + f.up * (0.025 * s) + (p[sh] - p[k::SPINE_SHOULDER]).normalized() * (0.02 * s)
    };
    // COCO hips are lower and wider (greater trochanter) than Kinect's hip joints.
    let hip = |hp: usize, knee: usize, side: f32| {
        p[hp] + (p[knee] - p[hp]) * 0.12 + f.left * (side * 0.03 * s)
    };
    vec![
        face(0.10, -0.02, 0.0),
        face(0.08, 0.025, 0.033),
        face(0.08, 0.025, -0.033),
        face(-0.01, 0.0, 0.075),
        face(-0.01, 0.0, -0.075),
        shoulder(k::SHOULDER_L),
        shoulder(k::SHOULDER_R),
        p[k::ELBOW_L],
        p[k::ELBOW_R],
        p[k::WRIST_L],
        p[k::WRIST_R],
        hip(k::HIP_L, k::KNEE_L, 1.0),
        hip(k::HIP_R, k::KNEE_R, -1.0),
        p[k::KNEE_L],
        p[k::KNEE_R],
        p[k::ANKLE_L],
        p[k::ANKLE_R],
    ]
}

fn to_body15(p: &[V3], f: &BodyFrame) -> Vec<V3> {
    let s = f.scale;
    // OpenNI shoulders sit nearer the midline, hips nearer the pelvis centre.
    let shoulder = |sh: usize| p[k::SPINE_SHOULDER].lerp(p[sh], 0.88);
    let hip =
        |hp: usize, knee: usize| p[k::SPINE_BASE].lerp(p[hp], 0.85) + (p[knee] - p[hp]) * 0.05;
    // The hand joint is the palm centre, between Kinect's hand and hand-tip joints.
    let hand = |hd: usize, tip: usize| p[hd].lerp(p[tip], 0.4);
    let knee = |kn: usize| p[kn] + f.fwd * (0.03 * s);
    let foot = |an: usize, ft: usize| p[an].lerp(p[ft], 0.5);
    vec![
        p[k::HEAD] + f.head_up * (0.04 * s),
        p[k::SPINE_SHOULDER].lerp(p[k::NECK], 0.5),
        p[k::SPINE_BASE].lerp(p[k::SPINE_MID], 0.7),
        shoulder(k::SHOULDER_L),
        p[k::ELBOW_L],
        hand(k::HAND_L, k::TIP_L),
        shoulder(k::SHOULDER_R),
        p[k::ELBOW_R],
        hand(k::HAND_R, k::TIP_R),
        hip(k::HIP_L, k::KNEE_L),
        knee(k::KNEE_L),
        foot(k::ANKLE_L, k::FOOT_L),
        hip(k::HIP_R, k::KNEE_R),
        knee(k::KNEE_R),
        foot(k::ANKLE_R, k::FOOT_R),
    ]
}

/// Mirror a pose in `layout` across the plane `x = 0` of its frame, swapping left and right
/// joints (the flip augmentation, and what the tests use to compare mirrored classes).
pub fn mirror_pose(layout: &SkeletonLayout, pose: &[V3]) -> Vec<V3> {
    let perm = layout.mirror_permutation();
    perm.iter()
        .map(|&src| {
            let q = pose[src];
            v3(-q.x, q.y, q.z)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_tree(l: &SkeletonLayout) {
        let n = l.num_joints();
        assert_eq!(l.bones.len(), n - 1, "{}: a tree has n - 1 bones", l.name);
        let mut parent = vec![None; n];
        for &(j, p) in l.bones {
            assert!(
                j < n && p < n && j != l.centre,
                "{}: bad bone ({j}, {p})",
                l.name
            );
            assert!(parent[j].is_none(), "{}: joint {j} has two parents", l.name);
            parent[j] = Some(p);
        }
        // Every joint reaches the centre by following parents.
        for start in 0..n {
            let mut j = start;
            for _ in 0..n {
                if j == l.centre {
                    break;
                }
                j = parent[j].unwrap();
            }
            assert_eq!(
                j, l.centre,
                "{}: joint {start} does not reach the centre",
                l.name
            );
        }
        let perm = l.mirror_permutation();
        for (i, &p) in perm.iter().enumerate() {
            assert_eq!(perm[p], i, "{}: mirror is not an involution", l.name);
        }
        for &(a, b) in l.mirror_pairs {
            assert!(l.joints[a].contains("left") && l.joints[b].contains("right"));
        }
    }

    #[test]
    fn layouts_are_trees_with_consistent_mirrors() {
        for l in [&KINECT25, &COCO17, &BODY15] {
            check_tree(l);
        }
        assert_eq!(KINECT25.centre, 20);
        assert_eq!(KINECT25.joint("spine_shoulder"), Some(20));
        assert_eq!(KINECT25.bones.len(), 24);
    }

    #[test]
    fn missing_body_maps_to_zeros() {
        let zeros = vec![V3::ZERO; 25];
        assert!(map_from_kinect25(&COCO17, &zeros)
            .iter()
            .all(|&j| j == V3::ZERO));
        assert_eq!(map_from_kinect25(&BODY15, &zeros).len(), 15);
    }
}
