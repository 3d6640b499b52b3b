//! Point-cloud augmentations: rotation about the vertical axis, per-axis scaling, jitter, point
//! dropout (also the sparsity degradation).

use super::{
    check_len, check_nonneg, check_range, is_missing, mat_mul, transform_points, uniform, Mat3,
    Scratch, NOISE_BLOCK,
};
use crate::data::rng::{fill_normal, index_below};
use crate::data::{DataError, DataResult};
use rand_chacha::ChaCha8Rng;

/// Point-cloud augmentations, in this order: point dropout, rotation about the vertical axis
/// and per-axis scaling (about the clip's centroid, so the cloud stays where the body is),
/// jitter.
#[derive(Clone, Debug, PartialEq)]
pub struct PointsAug {
    /// Largest rotation about the vertical (camera y) axis, radians: U(-a, a).
    pub rotate: f32,
    /// Per-axis scale factors U(lo, hi).
    pub scale: (f32, f32),
    /// Jitter: N(0, std^2) per coordinate, clipped to +-clip (metres).
    pub jitter_std: f32,
    pub jitter_clip: f32,
    /// Point dropout: a fraction U(0, max) of each frame's points is replaced by duplicates of
    /// kept points.
    pub dropout_max: f32,
}

impl Default for PointsAug {
    fn default() -> Self {
        // PointNet / PointNet++: scaling U(0.9, 1.1) here per axis, jitter 0.01 clipped at
        // 0.05; dropout up to half the points (PointNet++ goes to 0.875 with 1024+ points; a
        // frame here may hold only a few hundred). Rotation up to 45 degrees, the spread of
        // the camera views.
        PointsAug {
            rotate: std::f32::consts::FRAC_PI_4,
            scale: (0.9, 1.1),
            jitter_std: 0.01,
            jitter_clip: 0.05,
            dropout_max: 0.5,
        }
    }
}

/// One view's point-cloud transform.
#[derive(Clone, Debug, PartialEq)]
pub struct PointsParams {
    /// Rotation about the vertical axis, radians.
    pub angle: f32,
    /// Scale factors along x, y, z.
    pub scale: [f32; 3],
    pub jitter_std: f32,
    pub jitter_clip: f32,
    /// Fraction of each frame's points dropped (and refilled by duplicates).
    pub dropout: f32,
}

impl PointsParams {
    pub fn identity() -> PointsParams {
        PointsParams {
            angle: 0.0,
            scale: [1.0; 3],
            jitter_std: 0.0,
            jitter_clip: 0.0,
            dropout: 0.0,
        }
    }
}

impl PointsAug {
    pub fn check(&self) -> DataResult<()> {
        check_nonneg("points rotation", self.rotate)?;
        check_range("points scale", self.scale, 1e-3, 1e3)?;
        check_nonneg("points jitter_std", self.jitter_std)?;
        check_nonneg("points jitter_clip", self.jitter_clip)?;
        check_range("points dropout_max", (0.0, self.dropout_max), 0.0, 1.0)
    }

    pub fn sample(&self, rng: &mut ChaCha8Rng) -> PointsParams {
        let angle = uniform(rng, -self.rotate, self.rotate);
        let scale = [(); 3].map(|_| uniform(rng, self.scale.0, self.scale.1));
        let dropout = uniform(rng, 0.0, self.dropout_max);
        PointsParams {
            angle,
            scale,
            jitter_std: self.jitter_std,
            jitter_clip: self.jitter_clip,
            dropout,
        }
    }
}

/// Rotation by `angle` about the vertical axis (camera y, which points up).
pub fn rotation_y(angle: f32) -> Mat3 {
    let (s, c) = angle.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

/// The mean of the present (non-zero) points, or the origin if there are none.
pub fn centroid(data: &[f32]) -> [f32; 3] {
    let (mut c, mut n) = ([0f64; 3], 0usize);
    for p in data.chunks_exact(3).filter(|p| !is_missing(p)) {
        for k in 0..3 {
            c[k] += f64::from(p[k]);
        }
        n += 1;
    }
    if n == 0 {
        return [0.0; 3];
    }
    c.map(|v| (v / n as f64) as f32)
}

/// Adds clipped N(0, std^2) noise to every coordinate of every present point.
pub fn jitter_points(data: &mut [f32], std: f32, clip: f32, rng: &mut ChaCha8Rng) {
    if std <= 0.0 || clip <= 0.0 {
        return;
    }
    let mut z = [0f32; NOISE_BLOCK];
    for block in data.chunks_mut(NOISE_BLOCK) {
        let z = &mut z[..block.len()];
        fill_normal(rng, z);
        for (p, z) in block.chunks_exact_mut(3).zip(z.chunks_exact(3)) {
            // Without a branch: a missing point gets zero noise.
            let keep = if is_missing(p) { 0.0 } else { 1.0 };
            for (v, &z) in p.iter_mut().zip(z) {
                *v += keep * (std * z).max(-clip).min(clip);
            }
        }
    }
}

/// Keeps `P' = round((1 - fraction) P)` points of each frame of (frames, P, 3) `data` (at least
/// one), chosen uniformly, and overwrites every other slot with a copy of a random kept point,
/// so the shape stays (frames, P, 3), every point is one of the originals and each frame holds
/// exactly `P'` distinct slots' worth of points. Used both for point dropout (augmentation) and
/// point-cloud sparsity (degradation).
pub fn drop_points(
    data: &mut [f32],
    points: usize,
    fraction: f32,
    rng: &mut ChaCha8Rng,
    scratch: &mut Scratch,
) -> DataResult<()> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(DataError::Invalid(format!(
            "the fraction of points to drop must be in [0, 1], got {fraction}"
        )));
    }
    if points == 0 || data.len() % (points * 3) != 0 {
        return Err(DataError::Shape(format!(
            "point dropout: {} values are not frames of {points} xyz points",
            data.len()
        )));
    }
    let keep = (((1.0 - fraction) * points as f32).round() as usize).clamp(1, points);
    if keep == points {
        return Ok(());
    }
    let drop = points - keep;
    let idx = &mut scratch.index;
    for frame in data.chunks_exact_mut(points * 3) {
        idx.clear();
        idx.extend(0..points);
        // A partial Fisher-Yates shuffle from the end: idx[keep..] is a uniform random subset
        // of `drop` slots, idx[..keep] the rest (`drop` draws rather than `points`).
        for i in (keep..points).rev() {
            let j = index_below(rng, i + 1);
            idx.swap(i, j);
        }
        // Kept slots are left untouched, so dropped ones can copy from them in place.
        for k in 0..drop {
            let d = idx[keep + k];
            let s = idx[index_below(rng, keep)];
            frame.copy_within(s * 3..s * 3 + 3, d * 3);
        }
    }
    Ok(())
}

/// Writes one augmented view of point clouds `src` (frames, P, 3) into `dst`.
pub fn points_view(
    src: &[f32],
    points: usize,
    p: &PointsParams,
    rng: &mut ChaCha8Rng,
    dst: &mut [f32],
    scratch: &mut Scratch,
) -> DataResult<()> {
    check_len("points output", dst.len(), src.len())?;
    dst.copy_from_slice(src);
    drop_points(dst, points, p.dropout, rng, scratch)?;
    if p.angle != 0.0 || p.scale != [1.0; 3] {
        let c = centroid(dst);
        let s = p.scale;
        let scale = [[s[0], 0.0, 0.0], [0.0, s[1], 0.0], [0.0, 0.0, s[2]]];
        let m = mat_mul(&scale, &rotation_y(p.angle));
        transform_points(dst, &m, c, c);
    }
    jitter_points(dst, p.jitter_std, p.jitter_clip, rng);
    Ok(())
}
