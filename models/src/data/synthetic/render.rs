//! Ray casting of the scene: a floor, a back wall and the body's capsules, seen through the
//! pinhole camera. One ray per pixel centre; the background is static for a recording, so it
//! is cast once and each frame only casts the capsules, each within its projected bounding box.
//!
//! Output is clean: true depth (z, metres) per pixel, which pixels are the body, and shaded
//! colour (Lambert with an ambient term). The sensor model adds noise and holes afterwards.

use super::scene::{CameraPose, Capsule, Pattern, Room};
use crate::data::camera::Intrinsics;
use crate::data::geom::{v3, V3};

/// One frame, row-major `height x width`.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Depth (z) in metres; infinity where the ray hits nothing.
    pub depth: Vec<f32>,
    pub body: Vec<bool>,
    /// Linear colour in [0, 1]; empty when colour was not asked for.
    pub rgb: Vec<[f32; 3]>,
}

/// The unit ray direction through each pixel centre.
pub struct Rays {
    dirs: Vec<V3>,
}

impl Rays {
    pub fn new(k: &Intrinsics) -> Rays {
        let mut dirs = Vec::with_capacity(k.width * k.height);
        for row in 0..k.height {
            for col in 0..k.width {
                dirs.push(k.ray(col as f32 + 0.5, row as f32 + 0.5).normalized());
            }
        }
        Rays { dirs }
    }
}

const AMBIENT: f32 = 0.35;

fn lambert(albedo: [f32; 3], normal: V3, light: V3) -> [f32; 3] {
    let s = AMBIENT + (1.0 - AMBIENT) * normal.dot(light).max(0.0);
    albedo.map(|c| (c * s).min(1.0))
}

/// Distance along the unit ray `rd` from the origin to a sphere, if it hits it in front.
fn hit_sphere(rd: V3, c: V3, r: f32) -> Option<f32> {
    let b = -rd.dot(c);
    let h = b * b - (c.dot(c) - r * r);
    if h < 0.0 {
        return None;
    }
    let t = -b - h.sqrt();
    (t > 0.0).then_some(t)
}

/// Distance along the unit ray `rd` from the origin to the capsule `(a, b, r)`, if it hits it
/// in front (Quilez's capsule intersection, with the ray starting at the origin).
pub fn hit_capsule(rd: V3, a: V3, b: V3, r: f32) -> Option<f32> {
    let ba = b - a;
    let baba = ba.dot(ba);
    if baba < 1e-10 {
        return hit_sphere(rd, a, r);
    }
    let oa = -a;
    let bard = ba.dot(rd);
    let baoa = ba.dot(oa);
    let rdoa = rd.dot(oa);
    let oaoa = oa.dot(oa);
    let qa = baba - bard * bard;
    let qb = baba * rdoa - baoa * bard;
    let qc = baba * oaoa - baoa * baoa - r * r * baba;
    let h = qb * qb - qa * qc;
    if h < 0.0 {
        return None;
    }
    if qa > 1e-9 {
        let t = (-qb - h.sqrt()) / qa;
        let y = baoa + t * bard;
        if y > 0.0 && y < baba {
            return (t > 0.0).then_some(t);
        }
        // Outside the cylinder's length: the hit, if any, is on an end cap.
        return hit_sphere(rd, if y <= 0.0 { a } else { b }, r);
    }
    // Looking straight down the axis: the nearer cap.
    match (hit_sphere(rd, a, r), hit_sphere(rd, b, r)) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The outward unit normal of the capsule at a surface point `q`.
fn capsule_normal(c: &Capsule, q: V3) -> V3 {
    let ba = c.b - c.a;
    let baba = ba.dot(ba);
    let h = if baba < 1e-10 {
        0.0
    } else {
        ((q - c.a).dot(ba) / baba).clamp(0.0, 1.0)
    };
    (q - (c.a + ba * h)).normalized()
}

/// The nearest capsule hit along the unit ray `rd`, as a distance.
pub fn first_hit(capsules: &[Capsule], rd: V3) -> Option<f32> {
    capsules
        .iter()
        .filter_map(|c| hit_capsule(rd, c.a, c.b, c.r))
        .min_by(f32::total_cmp)
}

/// The room behind the subject as seen by `cam` (camera `camera`, 1-based): floor and wall.
pub fn render_background(
    k: &Intrinsics,
    rays: &Rays,
    cam: &CameraPose,
    room: &Room,
    camera: u8,
    want_rgb: bool,
) -> Frame {
    let n = k.width * k.height;
    let up = v3(0.0, 1.0, 0.0);
    let fh = cam.horizontal_forward();
    // Planes as (camera-space normal, offset): n . q = c for points q on the plane.
    let floor = (cam.rot * up, -cam.position.y);
    let wall = (cam.rot * fh, room.wall_gap - fh.dot(cam.position));
    let along_wall = up.cross(fh);
    let (wall_a, wall_b, pattern) = room.walls[camera as usize - 1];
    let mut frame = Frame {
        depth: vec![f32::INFINITY; n],
        body: vec![false; n],
        rgb: if want_rgb { vec![[0.0; 3]; n] } else { vec![] },
    };
    for (i, &rd) in rays.dirs.iter().enumerate() {
        let dist = |(nrm, c): (V3, f32)| {
            let d = nrm.dot(rd);
            let t = c / d;
            (d.abs() > 1e-6 && t > 0.0).then_some(t)
        };
        let (tf, tw) = (dist(floor), dist(wall));
        let (t, on_floor) = match (tf, tw) {
            (Some(a), Some(b)) if a < b => (a, true),
            (Some(a), None) => (a, true),
            (_, Some(b)) => (b, false),
            (None, None) => continue,
        };
        frame.depth[i] = t * rd.z;
        if !want_rgb {
            continue;
        }
        let p = cam.camera_to_world(rd * t);
        let (albedo, normal) = if on_floor {
            let tile = ((p.x / 0.6).floor() + (p.z / 0.6).floor()) as i64;
            (room.floor[tile.rem_euclid(2) as usize], up)
        } else {
            let a = p.dot(along_wall);
            let pick = |second: bool| if second { wall_b } else { wall_a };
            let albedo = match pattern {
                Pattern::Plain => wall_a,
                Pattern::Stripes => pick(((a / 0.35).floor() as i64).rem_euclid(2) == 1),
                Pattern::Checker => {
                    pick((((a / 0.5).floor() + (p.y / 0.5).floor()) as i64).rem_euclid(2) == 1)
                }
                Pattern::Gradient => {
                    let t = (p.y / 2.5).clamp(0.0, 1.0);
                    std::array::from_fn(|c| wall_a[c] + (wall_b[c] - wall_a[c]) * t)
                }
            };
            (albedo, -fh)
        };
        frame.rgb[i] = lambert(albedo, normal, room.light);
    }
    frame
}

/// Draw the body's capsules over `frame` (a copy of the background), nearest surface wins.
/// `light` is the direction towards the light in camera coordinates.
pub fn render_body(
    frame: &mut Frame,
    k: &Intrinsics,
    rays: &Rays,
    capsules: &[Capsule],
    light: V3,
) {
    let want_rgb = !frame.rgb.is_empty();
    for c in capsules {
        let Some((r0, r1, c0, c1)) = pixel_box(k, c) else {
            continue;
        };
        for row in r0..r1 {
            for col in c0..c1 {
                let i = row * k.width + col;
                let rd = rays.dirs[i];
                let Some(t) = hit_capsule(rd, c.a, c.b, c.r) else {
                    continue;
                };
                let z = t * rd.z;
                if z >= frame.depth[i] {
                    continue;
                }
                frame.depth[i] = z;
                frame.body[i] = true;
                if want_rgb {
                    frame.rgb[i] = lambert(c.albedo, capsule_normal(c, rd * t), light);
                }
            }
        }
    }
}

/// The rows and columns `[r0, r1) x [c0, c1)` a capsule can cover; `None` when it is off the
/// image. A capsule reaching near or behind the camera covers the whole image.
fn pixel_box(k: &Intrinsics, c: &Capsule) -> Option<(usize, usize, usize, usize)> {
    let near = c.a.z.min(c.b.z) - c.r;
    if near < 0.05 {
        return Some((0, k.height, 0, k.width));
    }
    let (ua, va) = k.project(c.a)?;
    let (ub, vb) = k.project(c.b)?;
    let rad = c.r * k.fx.max(k.fy) / near + 1.0;
    let clamp = |x: f32, hi: usize| x.clamp(0.0, hi as f32) as usize;
    let (c0, c1) = (
        clamp(ua.min(ub) - rad, k.width),
        clamp(ua.max(ub) + rad + 1.0, k.width),
    );
    let (r0, r1) = (
        clamp(va.min(vb) - rad, k.height),
        clamp(va.max(vb) + rad + 1.0, k.height),
    );
    (c0 < c1 && r0 < r1).then_some((r0, r1, c0, c1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capsule_hits_front_surface() {
        let rd = v3(0.0, 0.0, 1.0);
        // Across the ray: hit at distance 3 - r.
        let t = hit_capsule(rd, v3(-0.5, 0.0, 3.0), v3(0.5, 0.0, 3.0), 0.1).unwrap();
        assert!((t - 2.9).abs() < 1e-5);
        // Along the ray: the nearer cap.
        let t = hit_capsule(rd, v3(0.0, 0.0, 4.0), v3(0.0, 0.0, 3.0), 0.1).unwrap();
        assert!((t - 2.9).abs() < 1e-5);
        // Beside the ray: a miss.
        assert!(hit_capsule(rd, v3(0.3, -1.0, 3.0), v3(0.3, 1.0, 3.0), 0.1).is_none());
        // Behind the camera: a miss.
        assert!(hit_capsule(rd, v3(-0.5, 0.0, -3.0), v3(0.5, 0.0, -3.0), 0.1).is_none());
        // A sphere.
        let t = hit_capsule(rd, v3(0.0, 0.0, 2.0), v3(0.0, 0.0, 2.0), 0.2).unwrap();
        assert!((t - 1.8).abs() < 1e-5);
    }
}
