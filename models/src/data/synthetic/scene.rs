//! Where a recording happens: the room of a setup (floor, back wall, light, colours), the
//! camera's placement for a view, and the body as capsules for the renderer.
//!
//! World frame: y up, floor at y = 0, the subject stands at the origin facing +z. Camera 1, 2
//! and 3 look at the subject from yaw -45, 0 and +45 degrees (positive yaw is the subject's
//! left), at the setup's height and distance.

use rand::Rng;

use super::body::{j, Subject};
use super::rng::{stream, Purpose};
use crate::data::geom::{v3, M3, V3};

/// The number of cameras (views), as in NTU RGB+D.
pub const CAMERAS: usize = 3;

/// The yaw of each camera around the subject, degrees (camera 1 first).
pub const CAMERA_YAW_DEG: [f32; CAMERAS] = [-45.0, 0.0, 45.0];

/// The number of setups (rooms and camera heights/distances).
pub const SETUPS: usize = 4;

/// Base camera height and distance (metres) of each setup; each recording jitters them.
const SETUP_PLACEMENT: [(f32, f32); SETUPS] = [(0.9, 2.7), (1.25, 3.1), (1.6, 2.8), (1.05, 3.4)];

/// A room: the same for every camera and recording of a setup.
#[derive(Clone, Debug)]
pub struct Room {
    pub cam_height: f32,
    pub cam_distance: f32,
    /// How far behind the subject the back wall stands (along the camera's view).
    pub wall_gap: f32,
    /// Direction towards the light (world frame, unit).
    pub light: V3,
    pub floor: [[f32; 3]; 2],
    /// Per camera: two wall colours and the pattern mixing them.
    pub walls: [([f32; 3], [f32; 3], Pattern); CAMERAS],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Plain,
    Stripes,
    Checker,
    Gradient,
}

impl Room {
    /// Setup `setup` (1-based) of the dataset with `seed`.
    pub fn of_setup(seed: u64, setup: u16) -> Room {
        let mut rng = stream(seed, Purpose::Setup, setup as u64);
        let (cam_height, cam_distance) = SETUP_PLACEMENT[(setup as usize - 1) % SETUPS];
        let mut colour = |lo: f32, hi: f32| {
            [
                rng.gen_range(lo..hi),
                rng.gen_range(lo..hi),
                rng.gen_range(lo..hi),
            ]
        };
        let floor_a = colour(0.2, 0.6);
        let floor_b = floor_a.map(|c| c * 0.75);
        let walls = std::array::from_fn(|_| {
            let a = colour(0.3, 0.95);
            let b = colour(0.1, 0.8);
            (a, b, Pattern::Plain)
        });
        let mut room = Room {
            cam_height,
            cam_distance,
            wall_gap: rng.gen_range(1.0..2.2),
            light: v3(rng.gen_range(-0.6..0.6), 1.0, rng.gen_range(0.3..1.0)).normalized(),
            floor: [floor_a, floor_b],
            walls,
        };
        let patterns = [
            Pattern::Plain,
            Pattern::Stripes,
            Pattern::Checker,
            Pattern::Gradient,
        ];
        for wall in room.walls.iter_mut() {
            wall.2 = patterns[rng.gen_range(0..patterns.len())];
        }
        room
    }
}

/// A camera's pose: `rot` takes world directions to camera coordinates (rows: the camera's
/// left, up and forward axes), `position` is its centre in the world.
#[derive(Clone, Copy, Debug)]
pub struct CameraPose {
    pub position: V3,
    pub rot: M3,
}

impl CameraPose {
    /// A camera at `position` looking at `target`, level (no roll).
    pub fn look_at(position: V3, target: V3) -> CameraPose {
        let fwd = (target - position).normalized();
        let left = v3(0.0, 1.0, 0.0).cross(fwd).normalized();
        let up = fwd.cross(left);
        CameraPose {
            position,
            rot: M3::from_rows(left, up, fwd),
        }
    }

    /// Camera 1..=3 of `room`, with this recording's jitter from `rng`.
    pub fn for_view(room: &Room, camera: u8, rng: &mut impl Rng) -> CameraPose {
        let yaw = (CAMERA_YAW_DEG[camera as usize - 1] + rng.gen_range(-3.0..3.0)).to_radians();
        let d = room.cam_distance + rng.gen_range(-0.15..0.15);
        let h = room.cam_height + rng.gen_range(-0.05..0.05);
        let position = v3(d * yaw.sin(), h, d * yaw.cos());
        let target = v3(
            rng.gen_range(-0.05..0.05),
            rng.gen_range(0.95..1.1),
            rng.gen_range(-0.05..0.05),
        );
        CameraPose::look_at(position, target)
    }

    pub fn world_to_camera(&self, p: V3) -> V3 {
        self.rot * (p - self.position)
    }

    pub fn camera_to_world(&self, q: V3) -> V3 {
        self.position + self.rot.transpose() * q
    }

    /// The camera's viewing direction flattened onto the floor.
    pub fn horizontal_forward(&self) -> V3 {
        let f = V3::from_slice(&self.rot.0[2]);
        v3(f.x, 0.0, f.z).normalized()
    }
}

/// What a capsule is covered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cover {
    Skin,
    Shirt,
    /// Shirt with long sleeves, skin with short ones.
    Sleeve,
    Trousers,
    Shoes,
}

/// The body as capsules: (joint a, joint b, radius at girth 1, cover). A capsule from a joint
/// to itself is a sphere.
const BODY: [(usize, usize, f32, Cover); 29] = [
    (j::SPINE_BASE, j::SPINE_MID, 0.12, Cover::Shirt),
    (j::SPINE_MID, j::SPINE_SHOULDER, 0.13, Cover::Shirt),
    (j::SHOULDER_L, j::SHOULDER_R, 0.06, Cover::Shirt),
    (j::SHOULDER_L, j::HIP_L, 0.075, Cover::Shirt),
    (j::SHOULDER_R, j::HIP_R, 0.075, Cover::Shirt),
    (j::HIP_L, j::HIP_R, 0.09, Cover::Trousers),
    (j::SPINE_SHOULDER, j::NECK, 0.05, Cover::Skin),
    (j::NECK, j::HEAD, 0.06, Cover::Skin),
    (j::HEAD, j::HEAD, 0.1, Cover::Skin),
    (j::SHOULDER_L, j::ELBOW_L, 0.05, Cover::Shirt),
    (j::ELBOW_L, j::WRIST_L, 0.04, Cover::Sleeve),
    (j::WRIST_L, j::HAND_L, 0.035, Cover::Skin),
    (j::HAND_L, j::TIP_L, 0.03, Cover::Skin),
    (j::HAND_L, j::THUMB_L, 0.015, Cover::Skin),
    (j::SHOULDER_R, j::ELBOW_R, 0.05, Cover::Shirt),
    (j::ELBOW_R, j::WRIST_R, 0.04, Cover::Sleeve),
    (j::WRIST_R, j::HAND_R, 0.035, Cover::Skin),
    (j::HAND_R, j::TIP_R, 0.03, Cover::Skin),
    (j::HAND_R, j::THUMB_R, 0.015, Cover::Skin),
    (j::HIP_L, j::KNEE_L, 0.075, Cover::Trousers),
    (j::KNEE_L, j::ANKLE_L, 0.055, Cover::Trousers),
    (j::ANKLE_L, j::FOOT_L, 0.045, Cover::Shoes),
    (j::HIP_R, j::KNEE_R, 0.075, Cover::Trousers),
    (j::KNEE_R, j::ANKLE_R, 0.055, Cover::Trousers),
    (j::ANKLE_R, j::FOOT_R, 0.045, Cover::Shoes),
    // Buttocks and chest fill the gaps between the spine and the side capsules.
    (j::SPINE_BASE, j::SPINE_BASE, 0.13, Cover::Trousers),
    (j::SPINE_SHOULDER, j::SPINE_SHOULDER, 0.12, Cover::Shirt),
    (j::ANKLE_L, j::ANKLE_L, 0.05, Cover::Shoes),
    (j::ANKLE_R, j::ANKLE_R, 0.05, Cover::Shoes),
];

/// One capsule in camera coordinates.
#[derive(Clone, Copy, Debug)]
pub struct Capsule {
    pub a: V3,
    pub b: V3,
    pub r: f32,
    pub albedo: [f32; 3],
}

/// The body of `subject` with camera-space joints `joints`, as capsules.
pub fn body_capsules(subject: &Subject, joints: &[V3]) -> Vec<Capsule> {
    BODY.iter()
        .map(|&(a, b, r, cover)| Capsule {
            a: joints[a],
            b: joints[b],
            r: r * subject.girth,
            albedo: match cover {
                Cover::Skin => subject.skin,
                Cover::Shirt => subject.shirt,
                Cover::Sleeve if subject.short_sleeves => subject.skin,
                Cover::Sleeve => subject.shirt,
                Cover::Trousers => subject.trousers,
                Cover::Shoes => subject.shoes,
            },
        })
        .collect()
}

/// The largest capsule radius: a joint is hidden when something is this much nearer the
/// camera along its ray (anything closer is its own flesh).
pub fn max_radius(subject: &Subject) -> f32 {
    BODY.iter().map(|c| c.2).fold(0.0, f32::max) * subject.girth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_look_at_the_subject_from_their_yaw() {
        let room = Room::of_setup(1, 2);
        let mut rng = stream(1, Purpose::Placement, 0);
        for cam in 1..=3u8 {
            let pose = CameraPose::for_view(&room, cam, &mut rng);
            let c = pose.world_to_camera(v3(0.0, 0.9, 0.0));
            assert!(c.z > 2.5 && c.x.abs() < 0.2 && c.y.abs() < 0.2, "{c:?}");
            let back = pose.camera_to_world(c);
            assert!((back - v3(0.0, 0.9, 0.0)).norm() < 1e-4);
        }
        // Camera 3 is on the subject's left: the subject's left hand is nearer to it.
        let pose = CameraPose::for_view(&room, 3, &mut rng);
        let l = pose.world_to_camera(v3(0.3, 1.0, 0.0));
        let r = pose.world_to_camera(v3(-0.3, 1.0, 0.0));
        assert!(l.z < r.z);
    }
}
