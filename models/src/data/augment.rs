//! Augmentations: the random transforms that make the two views of a sample for the intra-modal
//! loss L_IM.
//!
//! Each modality has a config struct (defaults from the skeleton, video and point-cloud
//! contrastive-learning papers), a `sample` that draws one view's parameters from a seeded
//! generator, and a `*_view` function that writes the augmented view of one sample straight
//! into its slot of a batch buffer (f32), reading the stored record (u8 / u16 / f32) once.
//! The building blocks (shear matrix, mirrored temporal crop, flip with joint swap, ...) are
//! public so they can be tested and reused on their own.
//!
//! Conventions: a joint or point whose three coordinates are exactly zero is missing (a body
//! that is not there, a lost joint, a padded point); it stays zero through every transform.

use super::resample::{linear_table, nearest_table, RowResampler, ROW_PAD};
use super::rng::{fill_normal, standard_normal};
use super::{DataError, DataResult};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A 3x3 matrix, row-major: `y = M x` for column vectors.
pub type Mat3 = [[f32; 3]; 3];

pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// `a b`.
pub fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for (i, row) in c.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

#[inline]
fn is_missing(p: &[f32]) -> bool {
    p[0] == 0.0 && p[1] == 0.0 && p[2] == 0.0
}

/// U(lo, hi); exactly `lo` when the range is empty (a disabled augmentation).
fn uniform(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

fn check_prob(name: &str, p: f32) -> DataResult<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{name} is a probability, got {p}"
        )))
    }
}

fn check_range(name: &str, (lo, hi): (f32, f32), min: f32, max: f32) -> DataResult<()> {
    if lo.is_finite() && hi.is_finite() && min <= lo && lo <= hi && hi <= max {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{name} must be a range within [{min}, {max}], got ({lo}, {hi})"
        )))
    }
}

fn check_nonneg(name: &str, x: f32) -> DataResult<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{name} must be finite and >= 0, got {x}"
        )))
    }
}

fn check_len(what: &str, got: usize, want: usize) -> DataResult<()> {
    if got == want {
        Ok(())
    } else {
        Err(DataError::Shape(format!(
            "{what}: {got} elements, expected {want}"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Temporal crop with mirrored padding (every modality)

/// Crops a random window of frames and stretches it back to the clip length. The window may
/// run past either end of the clip by up to `pad`; frames out there are mirrored
/// (`..., 2, 1, [0, 1, ..., T-1], T-2, ...`).
#[derive(Clone, Debug, PartialEq)]
pub struct TemporalCrop {
    /// Window length as a fraction of the clip, drawn from U(min_ratio, max_ratio).
    pub min_ratio: f32,
    pub max_ratio: f32,
    /// How far the window may run past either end, as a fraction of the clip.
    pub pad: f32,
}

impl Default for TemporalCrop {
    fn default() -> Self {
        // The crop-and-resize interval of AimCLR / CTR-GCN, and SkeletonCLR's padding of 6
        // frames out of 50.
        TemporalCrop {
            min_ratio: 0.5,
            max_ratio: 1.0,
            pad: 0.12,
        }
    }
}

/// A window of `len` source frames starting at `start` (which may be negative, or run past
/// the end: those frames are mirrored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: isize,
    pub len: usize,
}

impl Window {
    /// The whole clip: no temporal augmentation.
    pub fn full(frames: usize) -> Window {
        Window {
            start: 0,
            len: frames.max(1),
        }
    }
}

impl TemporalCrop {
    pub fn check(&self) -> DataResult<()> {
        check_range(
            "temporal crop ratio",
            (self.min_ratio, self.max_ratio),
            0.0,
            1.0,
        )?;
        if self.min_ratio <= 0.0 {
            return Err(DataError::Invalid(
                "temporal crop ratio must be above 0".into(),
            ));
        }
        check_range("temporal crop pad", (self.pad, self.pad), 0.0, 1.0)
    }

    /// A window for a clip of `frames` frames.
    pub fn sample(&self, rng: &mut ChaCha8Rng, frames: usize) -> Window {
        let ratio = uniform(rng, self.min_ratio, self.max_ratio);
        let len = ((ratio * frames as f32).round() as usize).clamp(1, frames.max(1));
        let pad = (self.pad * frames as f32).round() as i64;
        let lo = -pad;
        let hi = frames as i64 - len as i64 + pad;
        Window {
            start: rng.gen_range(lo..=hi) as isize,
            len,
        }
    }
}

/// Index `i` reflected into `0..n` (mirrored padding without repeating the edge frame).
pub fn mirror(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let k = i.rem_euclid(period);
    (if k < n as isize { k } else { period - k }) as usize
}

/// Where output frame `j` of `out` frames reads in the source when `w` is stretched end to end.
pub fn window_position(w: Window, j: usize, out: usize) -> f64 {
    if out <= 1 {
        return w.start as f64 + (w.len as f64 - 1.0) / 2.0;
    }
    // Integer numerator: when the window is as long as the output, positions are exact.
    w.start as f64 + (j * (w.len - 1)) as f64 / (out - 1) as f64
}

/// Output frame `j` by linear interpolation: (frame a, frame b, weight of b), mirrored into
/// a clip of `frames` frames.
pub fn window_lerp(w: Window, j: usize, out: usize, frames: usize) -> (usize, usize, f32) {
    let p = window_position(w, j, out);
    let i = p.floor();
    let f = (p - i) as f32;
    let i = i as isize;
    (mirror(i, frames), mirror(i + 1, frames), f)
}

/// Output frame `j` by nearest frame, mirrored into a clip of `frames` frames.
pub fn window_nearest(w: Window, j: usize, out: usize, frames: usize) -> usize {
    mirror(window_position(w, j, out).round() as isize, frames)
}

/// Resamples `src` (`frames` frames of `frame_len` values) through window `w` into `dst` (the
/// same shape), interpolating linearly between frames.
pub fn temporal_crop(src: &[f32], frames: usize, w: Window, dst: &mut [f32]) -> DataResult<()> {
    check_len("temporal crop output", dst.len(), src.len())?;
    if frames == 0 || src.len() % frames != 0 {
        return Err(DataError::Shape(format!(
            "temporal crop: {} values are not {frames} whole frames",
            src.len()
        )));
    }
    let n = src.len() / frames;
    for (j, out) in dst.chunks_exact_mut(n).enumerate() {
        let (a, b, f) = window_lerp(w, j, frames, frames);
        let fa = &src[a * n..(a + 1) * n];
        if f == 0.0 {
            out.copy_from_slice(fa);
        } else {
            let fb = &src[b * n..(b + 1) * n];
            for ((o, &x), &y) in out.iter_mut().zip(fa).zip(fb) {
                *o = x + (y - x) * f;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Skeleton

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

/// `p <- M (p - from) + to` for every present point (xyz triples) of `data`; missing ones stay
/// zero. With `from` and `to` zero this is the plain linear map, which keeps the origin in
/// place.
pub fn transform_points(data: &mut [f32], m: &Mat3, from: [f32; 3], to: [f32; 3]) {
    for p in data.chunks_exact_mut(3) {
        if is_missing(p) {
            continue;
        }
        let (x, y, z) = (p[0] - from[0], p[1] - from[1], p[2] - from[2]);
        p[0] = m[0][0] * x + m[0][1] * y + m[0][2] * z + to[0];
        p[1] = m[1][0] * x + m[1][1] * y + m[1][2] * z + to[1];
        p[2] = m[2][0] * x + m[2][1] * y + m[2][2] * z + to[2];
    }
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

/// Adds N(0, std^2) noise to every coordinate of every present joint (metres).
pub fn joint_noise(data: &mut [f32], std: f32, rng: &mut ChaCha8Rng) {
    if std <= 0.0 {
        return;
    }
    for p in data.chunks_exact_mut(3) {
        if is_missing(p) {
            continue;
        }
        for v in p {
            let z = standard_normal(rng);
            *v += std * z;
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

// ---------------------------------------------------------------------------------------------
// RGB-D

/// Colour jitter: brightness, contrast and saturation factors drawn from U(1 - s, 1 + s).
#[derive(Clone, Debug, PartialEq)]
pub struct ColorJitter {
    /// Probability of jittering a view at all.
    pub p: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
}

impl Default for ColorJitter {
    fn default() -> Self {
        // SimCLR's colour distortion at strength 0.5 (0.8 s), applied with probability 0.8.
        ColorJitter {
            p: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
        }
    }
}

/// One view's colour factors (1 leaves the image as it is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterParams {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
}

impl ColorJitter {
    pub fn check(&self) -> DataResult<()> {
        check_prob("colour jitter p", self.p)?;
        check_range("colour jitter brightness", (0.0, self.brightness), 0.0, 1.0)?;
        check_range("colour jitter contrast", (0.0, self.contrast), 0.0, 1.0)?;
        check_range("colour jitter saturation", (0.0, self.saturation), 0.0, 1.0)
    }

    /// A view's factors, or None when this view is not jittered.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Option<JitterParams> {
        let on = rng.gen::<f32>() < self.p;
        let mut factor = |s: f32| uniform(rng, 1.0 - s, 1.0 + s);
        let j = JitterParams {
            brightness: factor(self.brightness),
            contrast: factor(self.contrast),
            saturation: factor(self.saturation),
        };
        on.then_some(j)
    }
}

/// The colour jitter as one affine map per pixel: brightness, then contrast (towards the
/// frame's mean grey), then saturation (towards the pixel's grey), as torchvision defines them
/// (ITU-R 601 grey weights). The three are linear, so `out = kx x + kg grey(x) + k0`, clamped
/// to [0, 1] once at the end (torchvision clamps after each step).
#[derive(Clone, Copy, Debug)]
struct JitterMap {
    kx: f32,
    kg: f32,
    k0: f32,
}

#[inline(always)]
fn grey(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

impl JitterMap {
    fn new(j: &JitterParams, mean_grey: f32) -> JitterMap {
        let (b, c, s) = (j.brightness, j.contrast, j.saturation);
        JitterMap {
            kx: s * c * b,
            kg: (1.0 - s) * c * b,
            k0: (1.0 - c) * b * mean_grey,
        }
    }

    #[inline(always)]
    #[allow(clippy::manual_clamp)]
    fn apply(&self, r: f32, g: f32, b: f32) -> (f32, f32, f32) {
        let base = self.kg * grey(r, g, b) + self.k0;
        // max/min rather than clamp: they map straight to vector instructions.
        let c = |x: f32| (self.kx * x + base).max(0.0).min(1.0);
        (c(r), c(g), c(b))
    }
}

/// A sum the compiler can vectorise (eight independent partial sums).
fn sum_f32(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// RGB-D augmentations. Depth and RGB of one view share the geometry (temporal window, crop
/// box, flip) so the two streams stay aligned; colour jitter is RGB's, noise is depth's.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbdAug {
    pub crop: TemporalCrop,
    /// Random resized crop: area fraction and aspect-ratio (w / h) ranges.
    pub scale: (f32, f32),
    pub ratio: (f32, f32),
    pub flip_p: f32,
    pub jitter: ColorJitter,
    /// Probability and standard deviation (metres) of Gaussian noise on valid depth pixels.
    pub depth_noise_p: f32,
    pub depth_noise_std: f32,
}

impl Default for RgbdAug {
    fn default() -> Self {
        // Aspect ratios as torchvision's RandomResizedCrop; areas from 0.3 as in video
        // contrastive learning (CVRL), which finds 0.08 too aggressive for clips; Kinect-like
        // depth noise of 1 cm.
        RgbdAug {
            crop: TemporalCrop::default(),
            scale: (0.3, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter: ColorJitter::default(),
            depth_noise_p: 0.5,
            depth_noise_std: 0.01,
        }
    }
}

/// A crop of the source frames, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// One view's RGB-D geometry.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbdParams {
    pub window: Window,
    pub crop: CropBox,
    pub flip: bool,
}

impl RgbdParams {
    /// No augmentation: all frames, the whole image, no flip.
    pub fn identity(frames: usize, height: usize, width: usize) -> RgbdParams {
        RgbdParams {
            window: Window::full(frames),
            crop: CropBox {
                top: 0,
                left: 0,
                height,
                width,
            },
            flip: false,
        }
    }
}

impl RgbdAug {
    pub fn check(&self) -> DataResult<()> {
        self.crop.check()?;
        check_range("RGB-D crop scale", self.scale, 0.0, 1.0)?;
        if self.scale.0 <= 0.0 {
            return Err(DataError::Invalid(
                "RGB-D crop scale must be above 0".into(),
            ));
        }
        check_range("RGB-D crop ratio", self.ratio, 1e-3, 1e3)?;
        check_prob("RGB-D flip_p", self.flip_p)?;
        self.jitter.check()?;
        check_prob("depth_noise_p", self.depth_noise_p)?;
        check_nonneg("depth_noise_std", self.depth_noise_std)
    }

    /// Draws one view's geometry for clips of `frames` frames of `height` x `width`.
    pub fn sample(
        &self,
        rng: &mut ChaCha8Rng,
        frames: usize,
        height: usize,
        width: usize,
    ) -> RgbdParams {
        let window = self.crop.sample(rng, frames);
        let crop = random_resized_crop(rng, height, width, self.scale, self.ratio);
        let flip = rng.gen::<f32>() < self.flip_p;
        RgbdParams { window, crop, flip }
    }
}

/// torchvision's RandomResizedCrop box: up to ten tries at a random area fraction and
/// log-uniform aspect ratio that fit, else the largest centred box of a ratio in range.
pub fn random_resized_crop(
    rng: &mut ChaCha8Rng,
    height: usize,
    width: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
) -> CropBox {
    let area = (height * width) as f32;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, lr0, lr1).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f32 / height.max(1) as f32;
    let (w, h) = if in_ratio < ratio.0 {
        (
            width,
            ((width as f32 / ratio.0).round() as usize).min(height),
        )
    } else if in_ratio > ratio.1 {
        (
            ((height as f32 * ratio.1).round() as usize).min(width),
            height,
        )
    } else {
        (width, height)
    };
    let (w, h) = (w.max(1), h.max(1));
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// The shape of one image-stream record: frames of `channels` planes of height x width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageDims {
    pub frames: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageDims {
    pub fn numel(&self) -> usize {
        self.frames * self.channels * self.height * self.width
    }

    fn check_crop(&self, c: &CropBox) -> DataResult<()> {
        if c.height == 0
            || c.width == 0
            || c.top + c.height > self.height
            || c.left + c.width > self.width
        {
            return Err(DataError::Invalid(format!(
                "crop box {c:?} does not fit {}x{} frames",
                self.height, self.width
            )));
        }
        Ok(())
    }
}

/// Writes one view of depth `src` (T, H, W) u16 millimetres into `dst` (T, 1, out_h, out_w)
/// f32 metres: frames through the window, the crop box resized by nearest neighbour (depth
/// must not be blended across edges into depths nobody measured), flipped if asked.
pub fn depth_view(
    src: &[u16],
    dims: ImageDims,
    p: &RgbdParams,
    out_hw: (usize, usize),
    dst: &mut [f32],
    scratch: &mut Scratch,
) -> DataResult<()> {
    let (oh, ow) = out_hw;
    check_len("depth record", src.len(), dims.numel())?;
    check_len("depth output", dst.len(), dims.frames * oh * ow)?;
    dims.check_crop(&p.crop)?;
    if oh == 0 || ow == 0 {
        return Ok(());
    }
    let c = &p.crop;
    nearest_table(oh, c.top, c.height, false, &mut scratch.rows);
    scratch.xpass.plan_nearest(ow, c.width, p.flip);
    // The frame's rows of the crop converted to metres (each followed by the padding the x
    // pass reads), then resized along x. All rows are converted before any is read back: the
    // x pass loads 8 values at offsets the conversion did not store at, and reading them while
    // the stores are still in flight stalls the CPU.
    let stride = c.width + ROW_PAD;
    scratch.values.resize(oh * stride, 0.0);
    let plane = dims.height * dims.width;
    for (j, out) in dst.chunks_exact_mut(oh * ow).enumerate() {
        let f = window_nearest(p.window, j, dims.frames, dims.frames);
        let frame = &src[f * plane..(f + 1) * plane];
        for (buf, &y) in scratch.values.chunks_exact_mut(stride).zip(&scratch.rows) {
            let row = &frame[y * dims.width + c.left..][..c.width];
            for (v, &d) in buf.iter_mut().zip(row) {
                *v = f32::from(d) * 0.001;
            }
            let last = buf[c.width - 1];
            buf[c.width..].fill(last);
        }
        for (orow, buf) in out
            .chunks_exact_mut(ow)
            .zip(scratch.values.chunks_exact(stride))
        {
            scratch.xpass.run(buf, orow);
        }
    }
    Ok(())
}

/// Writes one view of RGB `src` (T, 3, H, W) u8 into `dst` (T, 3, out_h, out_w) f32 in [0, 1]:
/// frames through the window, the crop box resized bilinearly (see `resample`), flipped if
/// asked, colour jittered if `jitter` is given (contrast pulls towards the mean grey of the
/// frame's crop).
pub fn rgb_view(
    src: &[u8],
    dims: ImageDims,
    p: &RgbdParams,
    jitter: Option<&JitterParams>,
    out_hw: (usize, usize),
    dst: &mut [f32],
    scratch: &mut Scratch,
) -> DataResult<()> {
    let (oh, ow) = out_hw;
    if dims.channels != 3 {
        return Err(DataError::Shape(format!(
            "RGB frames have 3 channels, got {}",
            dims.channels
        )));
    }
    check_len("RGB record", src.len(), dims.numel())?;
    check_len("RGB output", dst.len(), dims.frames * 3 * oh * ow)?;
    dims.check_crop(&p.crop)?;
    if oh == 0 || ow == 0 {
        return Ok(());
    }
    linear_table(oh, p.crop.height, false, &mut scratch.lrows);
    scratch.xpass.plan(ow, p.crop.width, p.flip);
    let frames = RgbFrames {
        src,
        dims,
        p,
        jitter,
    };
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { frames.run_avx2(dst, scratch) };
            return Ok(());
        }
    }
    frames.run(dst, scratch);
    Ok(())
}

/// The arguments of `rgb_view`'s loop over frames, checked.
struct RgbFrames<'a> {
    src: &'a [u8],
    dims: ImageDims,
    p: &'a RgbdParams,
    jitter: Option<&'a JitterParams>,
}

impl RgbFrames<'_> {
    #[inline(always)]
    fn run(&self, dst: &mut [f32], scratch: &mut Scratch) {
        let d = self.dims;
        let frame_len = 3 * d.height * d.width;
        let oframe = 3 * scratch.lrows.len() * scratch.xpass.out_len();
        for (j, out) in dst.chunks_exact_mut(oframe).enumerate() {
            let f = window_nearest(self.p.window, j, d.frames, d.frames);
            let frame = &self.src[f * frame_len..(f + 1) * frame_len];
            rgb_frame(frame, d, &self.p.crop, self.jitter, out, scratch);
        }
    }

    /// `run` compiled for AVX2: the build targets baseline x86-64, whose vectors are 4 lanes
    /// wide, and the row blends and the jitter are worth the wider ones. Results are the same
    /// bit for bit (no FMA contraction), so batches do not depend on the machine.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&self, dst: &mut [f32], scratch: &mut Scratch) {
        self.run(dst, scratch)
    }
}

/// One RGB frame: each output row of each channel is blended from its two source rows across
/// the crop's width into a row buffer, resized along x by `scratch.xpass`, and finally the
/// colour jitter maps the three output planes.
#[inline(always)]
fn rgb_frame(
    frame: &[u8],
    dims: ImageDims,
    c: &CropBox,
    jitter: Option<&JitterParams>,
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    const INV: f32 = 1.0 / 255.0;
    let cw = c.width;
    let stride = cw + ROW_PAD;
    let oh = scratch.lrows.len();
    let ow = scratch.xpass.out_len();
    // Every row buffer is filled before any is read back (see `depth_view` on why).
    scratch.values.resize(3 * oh * stride, 0.0);
    let plane = dims.height * dims.width;
    let mut sums = [0f32; 3];
    let buffers = scratch.values.chunks_exact_mut(oh * stride);
    for ((bufs, splane), sum) in buffers.zip(frame.chunks_exact(plane)).zip(&mut sums) {
        for (vrow, &(a, fy)) in bufs.chunks_exact_mut(stride).zip(&scratch.lrows) {
            let y0 = c.top + a;
            let y1 = c.top + (a + 1).min(c.height - 1);
            let r0 = &splane[y0 * dims.width + c.left..][..cw];
            let r1 = &splane[y1 * dims.width + c.left..][..cw];
            for ((v, &x), &y) in vrow[..cw].iter_mut().zip(r0).zip(r1) {
                let x = f32::from(x);
                *v = (x + (f32::from(y) - x) * fy) * INV;
            }
            if jitter.is_some() {
                *sum += sum_f32(&vrow[..cw]);
            }
            let last = vrow[cw - 1];
            vrow[cw..].fill(last);
        }
    }
    // Row by row: the x pass of the three channels, then (while the row is in L1) the
    // colour jitter, whose mean grey the blends above have already summed.
    let map = jitter.map(|j| JitterMap::new(j, grey(sums[0], sums[1], sums[2]) / (oh * cw) as f32));
    let (o0, rest) = out.split_at_mut(oh * ow);
    let (o1, o2) = rest.split_at_mut(oh * ow);
    let (b0, rest) = scratch.values.split_at(oh * stride);
    let (b1, b2) = rest.split_at(oh * stride);
    for y in 0..oh {
        let rows = y * ow..(y + 1) * ow;
        let (r, g, b) = (&mut o0[rows.clone()], &mut o1[rows.clone()], &mut o2[rows]);
        let bufs = y * stride..(y + 1) * stride;
        scratch.xpass.run(&b0[bufs.clone()], r);
        scratch.xpass.run(&b1[bufs.clone()], g);
        scratch.xpass.run(&b2[bufs], b);
        if let Some(map) = &map {
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                (*r, *g, *b) = map.apply(*r, *g, *b);
            }
        }
    }
}

/// Values drawn per block of bulk noise: small enough to stay in L1.
const NOISE_BLOCK: usize = 1024;

/// Adds N(0, std^2) noise (metres) to every valid (non-zero) depth pixel; holes stay holes and
/// depths stay non-negative. Draws a value for every pixel (holes too), so the loop has no
/// data-dependent branch.
pub fn depth_noise(data: &mut [f32], std: f32, rng: &mut ChaCha8Rng) {
    if std <= 0.0 {
        return;
    }
    let mut z = [0f32; NOISE_BLOCK];
    for block in data.chunks_mut(NOISE_BLOCK) {
        let z = &mut z[..block.len()];
        fill_normal(rng, z);
        for (v, &z) in block.iter_mut().zip(z.iter()) {
            let noisy = (*v + std * z).max(0.0);
            *v = if *v != 0.0 { noisy } else { 0.0 };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Point clouds

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
            let j = rng.gen_range(0..=i);
            idx.swap(i, j);
        }
        // Kept slots are left untouched, so dropped ones can copy from them in place.
        for k in 0..drop {
            let d = idx[keep + k];
            let s = idx[rng.gen_range(0..keep)];
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

// ---------------------------------------------------------------------------------------------

/// Reusable buffers for the transforms, one per worker thread: nothing above allocates per
/// sample once these have grown to size.
#[derive(Debug, Default)]
pub struct Scratch {
    values: Vec<f32>,
    kernel: Vec<f32>,
    pub(crate) index: Vec<usize>,
    rows: Vec<usize>,
    lrows: Vec<(usize, f32)>,
    xpass: RowResampler,
}
