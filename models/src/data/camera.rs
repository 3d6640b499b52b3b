//! The pinhole camera shared by every image-like stream: the synthetic renderer, the point
//! clouds back-projected from depth maps, and the contact sheet's skeleton overlay.
//!
//! Camera coordinates follow Kinect v2 (and so NTU RGB+D skeletons): x grows to the sensor's
//! left, y up, z away from the sensor (the depth value). Kinect's depth frames are mirror
//! images, so a point on the sensor's left (x > 0) lands on the image's right: `u = cx + fx x/z`,
//! `v = cy - fy y/z`, with `u` to the right and `v` down. Pixel (row i, column j) has its centre
//! at `(u, v) = (j + 0.5, i + 0.5)`.

use super::geom::{v3, V3};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Intrinsics {
    pub width: usize,
    pub height: usize,
    pub fx: f32,
    pub fy: f32,
    pub cx: f32,
    pub cy: f32,
}

impl Intrinsics {
    /// A centred camera of `width` x `height` pixels with square pixels and the given vertical
    /// field of view.
    pub fn from_vertical_fov(width: usize, height: usize, fov_deg: f32) -> Intrinsics {
        let f = height as f32 / 2.0 / (fov_deg.to_radians() / 2.0).tan();
        Intrinsics {
            width,
            height,
            fx: f,
            fy: f,
            cx: width as f32 / 2.0,
            cy: height as f32 / 2.0,
        }
    }

    /// The image position `(u, v)` of a camera-space point, or `None` behind the camera.
    pub fn project(&self, p: V3) -> Option<(f32, f32)> {
        if p.z <= 1e-6 {
            return None;
        }
        Some((self.cx + self.fx * p.x / p.z, self.cy - self.fy * p.y / p.z))
    }

    /// The pixel `(row, col)` a camera-space point falls in, if it is inside the image.
    pub fn pixel(&self, p: V3) -> Option<(usize, usize)> {
        let (u, v) = self.project(p)?;
        if u < 0.0 || v < 0.0 {
            return None;
        }
        let (col, row) = (u as usize, v as usize);
        (col < self.width && row < self.height).then_some((row, col))
    }

    /// The camera-space point at image position `(u, v)` and depth `z` (metres).
    pub fn back_project(&self, u: f32, v: f32, z: f32) -> V3 {
        v3((u - self.cx) / self.fx * z, (self.cy - v) / self.fy * z, z)
    }

    /// The direction through image position `(u, v)`, scaled so that its z is 1: a point at
    /// parameter `t` along it has depth `t`.
    pub fn ray(&self, u: f32, v: f32) -> V3 {
        self.back_project(u, v, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_and_back_project_agree() {
        let k = Intrinsics::from_vertical_fov(64, 48, 50.0);
        let p = v3(0.3, -0.2, 2.5);
        let (u, v) = k.project(p).unwrap();
        assert!(
            u > k.cx,
            "a point on the sensor's left lands on the image's right"
        );
        assert!(v > k.cy, "a point below the axis lands in the lower half");
        let q = k.back_project(u, v, p.z);
        assert!((q - p).norm() < 1e-5);
        assert_eq!(k.pixel(v3(0.0, 0.0, 1.0)), Some((24, 32)));
        assert_eq!(k.pixel(v3(0.0, 0.0, -1.0)), None);
    }
}
