//! The sensor model: what a Kinect-like camera makes of the clean scene. Skeletons get jitter,
//! occluded joints are inferred and some joints are briefly lost; depth gets distance-dependent
//! noise, millimetre quantisation and holes; colour gets a little noise; point clouds are
//! back-projected from the noisy depth of the body pixels.

use rand::Rng;

use super::body::{j, JOINTS, PARENT};
use super::render::Frame;
use super::rng::normal;
use crate::data::camera::Intrinsics;
use crate::data::geom::{v3, V3};

/// Kinect tracking states.
pub const NOT_TRACKED: u8 = 0;
pub const INFERRED: u8 = 1;
pub const TRACKED: u8 = 2;

/// Joints Kinect loses most often: hand tips, thumbs, hands, feet, wrists, ankles.
const FRAGILE: [usize; 12] = [
    j::TIP_L,
    j::THUMB_L,
    j::TIP_R,
    j::THUMB_R,
    j::HAND_L,
    j::HAND_R,
    j::FOOT_L,
    j::FOOT_R,
    j::WRIST_L,
    j::WRIST_R,
    j::ANKLE_L,
    j::ANKLE_R,
];

/// The skeleton as the sensor reports it: positions (frame-major, 25 per frame) and states.
pub struct ObservedSkeleton {
    pub joints: Vec<V3>,
    pub states: Vec<u8>,
}

/// Observe `clean` (camera-space joints per frame); `hidden[t][j]` says that joint `j` is
/// behind the body at frame `t`.
pub fn observe_skeleton(
    clean: &[[V3; JOINTS]],
    hidden: &[[bool; JOINTS]],
    rng: &mut impl Rng,
) -> ObservedSkeleton {
    let frames = clean.len();
    let mut joints: Vec<[V3; JOINTS]> = clean.to_vec();
    let mut states = vec![[TRACKED; JOINTS]; frames];

    // Hidden joints are inferred from the body's shape: near, but off by a few centimetres,
    // the same way for the whole recording.
    let bias: Vec<V3> = (0..JOINTS)
        .map(|_| v3(normal(rng), normal(rng), normal(rng)) * 0.03)
        .collect();
    for t in 0..frames {
        for jt in 0..JOINTS {
            if hidden[t][jt] {
                states[t][jt] = INFERRED;
                joints[t][jt] += bias[jt];
            }
        }
    }

    // Brief tracking losses of fragile joints: Kinect either infers the joint from its parent
    // (keeping the limb's last direction) or reports it where it last saw it.
    let events = [0, 0, 1, 1, 1, 2, 2, 3][rng.gen_range(0..8)];
    for _ in 0..events {
        let jt = FRAGILE[rng.gen_range(0..FRAGILE.len())];
        let len = rng.gen_range(1..=(frames / 6).max(1));
        let start = rng.gen_range(0..frames);
        let keep = start.saturating_sub(1);
        let lost = rng.gen_bool(0.25);
        for t in start..(start + len).min(frames) {
            if lost {
                joints[t][jt] = clean[keep][jt];
                states[t][jt] = NOT_TRACKED;
            } else {
                let p = PARENT[jt];
                joints[t][jt] = clean[t][p] + (clean[keep][jt] - clean[keep][p]);
                states[t][jt] = INFERRED;
            }
        }
    }

    // Jitter: temporally correlated (AR(1)), growing with distance, larger at the extremities
    // and for joints the sensor is unsure of.
    let mut prev = [V3::ZERO; JOINTS];
    let rho: f32 = 0.6;
    for t in 0..frames {
        for jt in 0..JOINTS {
            let z = joints[t][jt].z.max(0.5);
            let mut sigma = 0.004 * z / 2.5;
            if FRAGILE.contains(&jt) {
                sigma *= 1.8;
            }
            if states[t][jt] != TRACKED {
                sigma *= 2.0;
            }
            let fresh = v3(normal(rng), normal(rng), normal(rng)) * sigma;
            prev[jt] = prev[jt] * rho + fresh * (1.0 - rho * rho).sqrt();
            joints[t][jt] += prev[jt];
        }
    }
    ObservedSkeleton {
        joints: joints.into_iter().flatten().collect(),
        states: states.into_iter().flatten().collect(),
    }
}

/// A pose estimator's small independent error, for the 17- and 15-joint skeletons.
pub fn estimator_noise(joints: &mut [V3], rng: &mut impl Rng) {
    for p in joints.iter_mut() {
        *p += v3(normal(rng), normal(rng), normal(rng)) * 0.006;
    }
}

/// Kinect v2's working range in metres; outside it the sensor reads nothing.
const RANGE: (f32, f32) = (0.5, 8.0);

/// Depth in millimetres from a clean frame: axial noise growing with the square of distance
/// (Nguyen et al.'s Kinect model), rounding to millimetres, holes (0) at the body's edges
/// (mixed pixels the sensor rejects) and at random. With `body_only`, background pixels are left
/// at 0 (for the point cloud's map, whose background nobody reads).
pub fn depth_mm(frame: &Frame, k: &Intrinsics, body_only: bool, rng: &mut impl Rng) -> Vec<u16> {
    let (w, h) = (k.width, k.height);
    let (clean, body) = (&frame.depth, &frame.body);
    let mut out = vec![0u16; w * h];
    for row in 0..h {
        for col in 0..w {
            let i = row * w + col;
            let z = clean[i];
            if !(RANGE.0..RANGE.1).contains(&z) || (body_only && !body[i]) {
                continue;
            }
            // Silhouette edges (body next to background) and jumps where one limb passes in front
            // of another; the floor's steady slope is no edge.
            let edge = [(0, 1), (0, -1), (1, 0), (-1, 0)].iter().any(|&(dr, dc)| {
                let (r, c) = (row as isize + dr, col as isize + dc);
                if r < 0 || c < 0 || r >= h as isize || c >= w as isize {
                    return false;
                }
                let n = r as usize * w + c as usize;
                body[n] != body[i] || (body[i] && (clean[n] - z).abs() > 0.25)
            });
            if (edge && rng.gen_bool(0.5)) || rng.gen_bool(0.004) {
                continue;
            }
            let sigma = 0.0012 + 0.0019 * (z - 0.4).powi(2);
            // Rounding to the nearest millimetre (z is positive, so + 0.5 and truncate).
            let mm = (z + sigma * normal(rng)) * 1000.0 + 0.5;
            out[i] = mm.clamp(1.0, u16::MAX as f32) as u16;
        }
    }
    out
}

/// Colour frame to planar u8 (3, H, W) with a little sensor noise (uniform, +-3 levels per
/// channel, from one 64-bit draw per pixel).
pub fn rgb_u8(frame: &Frame, rng: &mut impl Rng) -> Vec<u8> {
    let n = frame.rgb.len();
    let mut out = vec![0u8; 3 * n];
    for (i, px) in frame.rgb.iter().enumerate() {
        let bits: u64 = rng.gen();
        for (c, &v) in px.iter().enumerate() {
            let noise = ((bits >> (16 * c)) & 0xffff) as f32 / 65535.0 * 6.0 - 3.0;
            out[c * n + i] = (v * 255.0 + noise + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `count` points (x, y, z flattened) back-projected from the body pixels that have a depth
/// reading. With more such pixels than `count`, a random subset without repetition; with
/// fewer, all of them in turn, repeated from the start until `count` are taken; with none, all
/// zeros.
pub fn sample_points(
    depth: &[u16],
    body: &[bool],
    k: &Intrinsics,
    count: usize,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let mut valid: Vec<usize> = (0..depth.len())
        .filter(|&i| body[i] && depth[i] > 0)
        .collect();
    if valid.is_empty() {
        return vec![0.0; count * 3];
    }
    let n = valid.len();
    if n > count {
        // A partial Fisher-Yates shuffle: the first `count` entries are a uniform subset.
        for i in 0..count {
            let pick = rng.gen_range(i..n);
            valid.swap(i, pick);
        }
    }
    let mut out = Vec::with_capacity(count * 3);
    for i in 0..count {
        let px = valid[i % n];
        let (row, col) = (px / k.width, px % k.width);
        let z = depth[px] as f32 / 1000.0;
        let p = k.back_project(col as f32 + 0.5, row as f32 + 0.5, z);
        out.extend(p.to_array());
    }
    out
}
