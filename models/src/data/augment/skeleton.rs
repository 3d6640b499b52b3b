//! Skeleton augmentations: shear, rotation, mirrored temporal crop, left-right flip with joint
//! swap, temporal blur, Gaussian joint noise; and the joint states that follow their skeleton.

use super::{
    check_len, check_nonneg, check_prob, check_range, is_missing, mat_mul, mirror, temporal_crop,
    transform_points, uniform, window_nearest, Mat3, Scratch, TemporalCrop, Window, IDENTITY,
    NOISE_BLOCK,
};
use crate::data::rng::fill_normal;
use crate::data::{DataError, DataResult};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Skeleton augmentations, applied in this order: temporal crop, shear and rotation (one
/// linear map), left-right flip, temporal blur, Gaussian noise.
#[derive(Clone, Debug, PartialEq)]
pub struct SkeletonAug {
    /// Shear magnitude r: off-diagonal entries of the shear matrix are U(-r, r).
    pub shear: f32,
    /// Largest rotation about each axis, radians: angles U(-a, a) about x, y and z.
    pub rotate: f32,
    pub crop: TemporalCrop,
    /// Probability of the left-right flip (needs the format's left/right joint pairs).
    pub flip_p: f32,
    /// Probability and standard deviation (metres) of Gaussian noise on every joint.
    pub noise_p: f32,
    pub noise_std: f32,
    /// Probability and sigma range (frames) of the Gaussian blur along time.
    pub blur_p: f32,
    pub blur_sigma: (f32, f32),
}

impl Default for SkeletonAug {
    fn default() -> Self {
        // Shear 0.5 as in SkeletonCLR / CrosSCLR / AimCLR; noise and blur as AimCLR's
        // (std 0.01, kernel 15 with sigma U(0.1, 2), each with probability 0.5).
        SkeletonAug {
            shear: 0.5,
            rotate: 0.3,
            crop: TemporalCrop::default(),
            flip_p: 0.5,
            noise_p: 0.5,
            noise_std: 0.01,
            blur_p: 0.5,
            blur_sigma: (0.1, 2.0),
        }
    }
}

/// One view's skeleton transform.
#[derive(Clone, Debug, PartialEq)]
pub struct SkeletonParams {
    pub window: Window,
    /// Rotation times shear.
    pub matrix: Mat3,
    pub flip: bool,
    /// Temporal blur sigma in frames; 0 for none.
    pub blur_sigma: f32,
    /// Noise standard deviation in metres; 0 for none.
    pub noise_std: f32,
}

impl SkeletonParams {
    /// No augmentation: the view is the (centred) record.
    pub fn identity(frames: usize) -> SkeletonParams {
        SkeletonParams {
            window: Window::full(frames),
            matrix: IDENTITY,
            flip: false,
            blur_sigma: 0.0,
            noise_std: 0.0,
        }
    }
}

impl SkeletonAug {
    pub fn check(&self) -> DataResult<()> {
        check_nonneg("skeleton shear", self.shear)?;
        check_nonneg("skeleton rotation", self.rotate)?;
        self.crop.check()?;
        check_prob("skeleton flip_p", self.flip_p)?;
        check_prob("skeleton noise_p", self.noise_p)?;
        check_nonneg("skeleton noise_std", self.noise_std)?;
        check_prob("skeleton blur_p", self.blur_p)?;
        check_range("skeleton blur_sigma", self.blur_sigma, 0.0, 16.0)
    }

    /// Draws one view's parameters for a clip of `frames` frames. The draws always happen in
    /// the same order and number, so a stream can be replayed (joint states follow their
    /// skeleton this way).
    pub fn sample(&self, rng: &mut ChaCha8Rng, frames: usize) -> SkeletonParams {
        let window = self.crop.sample(rng, frames);
        let shear = shear_matrix(rng, self.shear);
        let a = self.rotate;
        let (ax, ay, az) = (
            uniform(rng, -a, a),
            uniform(rng, -a, a),
            uniform(rng, -a, a),
        );
        let flip = rng.gen::<f32>() < self.flip_p;
        let blur = rng.gen::<f32>() < self.blur_p;
        let blur_sigma = uniform(rng, self.blur_sigma.0, self.blur_sigma.1);
        let noise = rng.gen::<f32>() < self.noise_p;
        SkeletonParams {
            window,
            matrix: mat_mul(&rotation_matrix(ax, ay, az), &shear),
            flip,
            blur_sigma: if blur { blur_sigma } else { 0.0 },
            noise_std: if noise { self.noise_std } else { 0.0 },
        }
    }
}

/// A shear matrix: ones on the diagonal, off-diagonal entries U(-r, r).
pub fn shear_matrix(rng: &mut ChaCha8Rng, r: f32) -> Mat3 {
    let mut m = IDENTITY;
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            if i != j {
                *v = uniform(rng, -r, r);
            }
        }
    }
    m
}

/// Rotation by `ax`, `ay`, `az` radians about x, then y, then z: `Rz Ry Rx`.
pub fn rotation_matrix(ax: f32, ay: f32, az: f32) -> Mat3 {
    let (sx, cx) = ax.sin_cos();
    let (sy, cy) = ay.sin_cos();
    let (sz, cz) = az.sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    mat_mul(&rz, &mat_mul(&ry, &rx))
}

/// The centre a skeleton is moved to the origin by: the mean of body 0's present joints in the
/// first frame where body 0 is present (layout-free, so it serves every joint convention).
/// `None` for a skeleton with no present joint.
pub fn skeleton_centre(data: &[f32], bodies: usize, joints: usize) -> Option<[f32; 3]> {
    let frame = bodies * joints * 3;
    if frame == 0 {
        return None;
    }
    for f in data.chunks_exact(frame) {
        let (mut c, mut n) = ([0f64; 3], 0usize);
        for p in f[..joints * 3].chunks_exact(3).filter(|p| !is_missing(p)) {
            for k in 0..3 {
                c[k] += f64::from(p[k]);
            }
            n += 1;
        }
        if n > 0 {
            return Some(c.map(|v| (v / n as f64) as f32));
        }
    }
    None
}

/// Mirrors skeletons left to right: negates x and swaps each (left, right) joint pair.
/// `data` holds `rows` (frames x bodies) rows of `joints` xyz joints. Flipping twice is the
/// identity.
pub fn flip_skeleton(data: &mut [f32], joints: usize, pairs: &[(usize, usize)]) -> DataResult<()> {
    check_pairs(pairs, joints)?;
    if joints == 0 || data.len() % (joints * 3) != 0 {
        return Err(DataError::Shape(format!(
            "flip: {} values are not whole rows of {joints} xyz joints",
            data.len()
        )));
    }
    for row in data.chunks_exact_mut(joints * 3) {
        for p in row.chunks_exact_mut(3) {
            p[0] = -p[0];
        }
        for &(l, r) in pairs {
            for k in 0..3 {
                row.swap(l * 3 + k, r * 3 + k);
            }
        }
    }
    Ok(())
}

fn check_pairs(pairs: &[(usize, usize)], joints: usize) -> DataResult<()> {
    match pairs.iter().find(|&&(l, r)| l >= joints || r >= joints) {
        Some(&(l, r)) => Err(DataError::Invalid(format!(
            "flip pair ({l}, {r}) names a joint beyond the {joints} joints"
        ))),
        None => Ok(()),
    }
}

/// A normalised Gaussian kernel of radius `ceil(3 sigma)` (at most 7: AimCLR's 15 taps).
fn gaussian_kernel(sigma: f32, kernel: &mut Vec<f32>) -> usize {
    let radius = ((3.0 * sigma).ceil() as usize).clamp(1, 7);
    kernel.clear();
    kernel.extend((0..=2 * radius).map(|k| {
        let d = k as f32 - radius as f32;
        (-0.5 * d * d / (sigma * sigma)).exp()
    }));
    let s: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|w| *w /= s);
    radius
}

/// Smooths every joint's trajectory with a Gaussian of `sigma` frames (ends mirrored).
/// Missing joints are neither smoothed nor smoothed into: the weights are renormalised over
/// the present neighbours.
pub fn temporal_blur(
    data: &mut [f32],
    frames: usize,
    sigma: f32,
    scratch: &mut Scratch,
) -> DataResult<()> {
    if frames == 0 || data.len() % (frames * 3) != 0 {
        return Err(DataError::Shape(format!(
            "temporal blur: {} values are not {frames} frames of xyz points",
            data.len()
        )));
    }
    if sigma <= 0.0 || frames == 1 {
        return Ok(());
    }
    let n = data.len() / frames;
    let radius = gaussian_kernel(sigma, &mut scratch.kernel);
    let src = &mut scratch.values;
    src.clear();
    src.extend_from_slice(data);
    for t in 0..frames {
        for q in (0..n).step_by(3) {
            let o = t * n + q;
            if is_missing(&src[o..o + 3]) {
                continue;
            }
            let (mut acc, mut wsum) = ([0f32; 3], 0f32);
            for (k, &w) in scratch.kernel.iter().enumerate() {
                let s = mirror(t as isize + k as isize - radius as isize, frames) * n + q;
                let p = &src[s..s + 3];
                if !is_missing(p) {
                    for c in 0..3 {
                        acc[c] += w * p[c];
                    }
                    wsum += w;
                }
            }
            for c in 0..3 {
                data[o + c] = acc[c] / wsum;
            }
        }
    }
    Ok(())
}

/// Adds N(0, std^2) noise to every coordinate of every present joint (metres), drawn by
/// `rng::fill_normal` (exact up to 4096-level quantisation, tails cut at 3.5 sigma).
pub fn joint_noise(data: &mut [f32], std: f32, rng: &mut ChaCha8Rng) {
    if std <= 0.0 {
        return;
    }
    let mut z = [0f32; NOISE_BLOCK];
    for block in data.chunks_mut(NOISE_BLOCK) {
        let z = &mut z[..block.len()];
        fill_normal(rng, z);
        for (p, z) in block.chunks_exact_mut(3).zip(z.chunks_exact(3)) {
            if !is_missing(p) {
                for (v, &z) in p.iter_mut().zip(z) {
                    *v += std * z;
                }
            }
        }
    }
}

/// The shape of one skeleton record: (frames, bodies, joints, 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkeletonDims {
    pub frames: usize,
    pub bodies: usize,
    pub joints: usize,
}

impl SkeletonDims {
    /// From a record shape (T, M, J, 3).
    pub fn from_dims(dims: &[usize]) -> DataResult<SkeletonDims> {
        match dims {
            &[frames, bodies, joints, 3] if frames > 0 => Ok(SkeletonDims {
                frames,
                bodies,
                joints,
            }),
            _ => Err(DataError::Shape(format!(
                "a skeleton is (T, M, J, 3) with T > 0, got {dims:?}"
            ))),
        }
    }

    pub fn numel(&self) -> usize {
        self.frames * self.bodies * self.joints * 3
    }
}

/// Writes one augmented view of skeleton `src` into `dst` (same shape, f32): moved so that
/// `centre` is at the origin (if given), then `p`'s transforms; `rng` draws the noise.
#[allow(clippy::too_many_arguments)]
pub fn skeleton_view(
    src: &[f32],
    dims: SkeletonDims,
    centre: Option<[f32; 3]>,
    p: &SkeletonParams,
    pairs: &[(usize, usize)],
    rng: &mut ChaCha8Rng,
    dst: &mut [f32],
    scratch: &mut Scratch,
) -> DataResult<()> {
    check_len("skeleton record", src.len(), dims.numel())?;
    temporal_crop(src, dims.frames, p.window, dst)?;
    let centre = centre.unwrap_or([0.0; 3]);
    if p.matrix != IDENTITY || centre != [0.0; 3] {
        transform_points(dst, &p.matrix, centre, [0.0; 3]);
    }
    if p.flip {
        flip_skeleton(dst, dims.joints, pairs)?;
    }
    temporal_blur(dst, dims.frames, p.blur_sigma, scratch)?;
    joint_noise(dst, p.noise_std, rng);
    Ok(())
}

/// Writes the joint states (T, M, J) u8 of the view whose skeleton was drawn with `p`, as f32:
/// the same frames (nearest, since states are categories) and the same joint swap.
pub fn joint_state_view(
    src: &[u8],
    frames: usize,
    joints: usize,
    p: &SkeletonParams,
    pairs: &[(usize, usize)],
    dst: &mut [f32],
) -> DataResult<()> {
    check_len("joint-state output", dst.len(), src.len())?;
    if frames == 0 || joints == 0 || src.len() % (frames * joints) != 0 {
        return Err(DataError::Shape(format!(
            "joint states: {} values are not {frames} frames of {joints} joints",
            src.len()
        )));
    }
    check_pairs(pairs, joints)?;
    let n = src.len() / frames;
    for (j, out) in dst.chunks_exact_mut(n).enumerate() {
        let a = window_nearest(p.window, j, frames, frames);
        for (o, &s) in out.iter_mut().zip(&src[a * n..(a + 1) * n]) {
            *o = f32::from(s);
        }
        if p.flip {
            for row in out.chunks_exact_mut(joints) {
                for &(l, r) in pairs {
                    row.swap(l, r);
                }
            }
        }
    }
    Ok(())
}
