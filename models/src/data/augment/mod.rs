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
//!
//! This file holds what the modalities share (temporal crop, matrices, checks, scratch
//! buffers); `skeleton`, `rgbd` and `points` hold the rest, re-exported here.

mod points;
mod rgbd;
mod skeleton;

pub use points::*;
pub use rgbd::*;
pub use skeleton::*;

use super::resample::RowResampler;
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

/// Values drawn per block of bulk noise: small enough to stay in L1, and a multiple of 3 so a
/// block of xyz points never splits a point.
const NOISE_BLOCK: usize = 3 * 340;

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

/// Reusable buffers for the transforms, one per worker thread: no transform allocates per
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
