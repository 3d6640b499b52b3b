//! Degradations: simulated sensor failure and corruption, for training (modality dropout and
//! the masking behind L_deg) and for the robustness evaluations (modality dropout, dropout from
//! a frame on, skeleton joint noise, point-cloud sparsity, depth holes).
//!
//! They act on the loader's f32 views (skeleton (T, M, J, 3) metres, depth (T, 1, H, W) metres,
//! RGB (T, 3, H, W), points (T, P, 3) metres), one sample at a time, every random choice drawn
//! from the generator handed in. `Degradations::apply` runs the configured ones on one sample.

use super::augment::{drop_points, joint_noise, Scratch, SkeletonDims};
use super::{DataError, DataResult, Modality};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The sensor a modality comes from: what fails as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sensor {
    /// Depth and RGB (the paper's RGB-D stream, encoder E_R).
    Rgbd,
    /// Every skeleton convention and the joint states (E_S).
    Skeleton,
    /// The point cloud (E_P).
    Points,
}

impl Sensor {
    pub const ALL: [Sensor; 3] = [Sensor::Rgbd, Sensor::Skeleton, Sensor::Points];

    pub fn of(m: Modality) -> Sensor {
        match m {
            Modality::Depth | Modality::Rgb => Sensor::Rgbd,
            Modality::Skeleton
            | Modality::JointState
            | Modality::Skeleton17
            | Modality::Skeleton15 => Sensor::Skeleton,
            Modality::Points => Sensor::Points,
        }
    }
}

/// Whole-modality dropout: the dropped streams are all zeros.
#[derive(Clone, Debug, PartialEq)]
pub enum ModalityDrop {
    /// Exactly these modalities, in every sample (evaluation: "RGB-D missing" is
    /// `Fixed(vec![Depth, Rgb])`).
    Fixed(Vec<Modality>),
    /// Each sensor present independently with probability `p` (training); with `keep_one`,
    /// when every sensor would go one random sensor is kept.
    Random { p: f32, keep_one: bool },
}

impl ModalityDrop {
    pub fn check(&self) -> DataResult<()> {
        match self {
            ModalityDrop::Fixed(_) => Ok(()),
            ModalityDrop::Random { p, .. } if (0.0..=1.0).contains(p) => Ok(()),
            ModalityDrop::Random { p, .. } => Err(DataError::Invalid(format!(
                "modality dropout p is a probability, got {p}"
            ))),
        }
    }

    /// Which of `modalities` to drop, one flag each. Always draws the same number of values.
    pub fn choose(&self, modalities: &[Modality], rng: &mut ChaCha8Rng) -> Vec<bool> {
        match self {
            ModalityDrop::Fixed(list) => modalities.iter().map(|m| list.contains(m)).collect(),
            ModalityDrop::Random { p, keep_one } => {
                let present = Sensor::ALL.map(|s| modalities.iter().any(|&m| Sensor::of(m) == s));
                let mut gone = Sensor::ALL.map(|_| rng.gen::<f32>() < *p);
                let keep = rng.gen_range(0..Sensor::ALL.len());
                let n_present = present.iter().filter(|&&x| x).count();
                let n_gone = (0..3).filter(|&k| present[k] && gone[k]).count();
                if *keep_one && n_present > 0 && n_gone == n_present {
                    // Keep the `keep`-th present sensor (counted cyclically).
                    let k = (0..3)
                        .map(|i| (keep + i) % 3)
                        .find(|&k| present[k])
                        .unwrap_or(0);
                    gone[k] = false;
                }
                modalities
                    .iter()
                    .map(|&m| {
                        let k = Sensor::ALL.iter().position(|&s| s == Sensor::of(m));
                        k.is_some_and(|k| gone[k])
                    })
                    .collect()
            }
        }
    }
}

/// A sensor that fails mid-sequence: frames `from..` of these modalities are zeroed (the
/// gate-over-time plot).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameDrop {
    pub modalities: Vec<Modality>,
    pub from: usize,
}

/// Zeroes frames `from..` of `data`, which holds `frames` equal frames (any layout with time
/// first: skeleton, depth, RGB, points).
pub fn zero_from_frame(data: &mut [f32], frames: usize, from: usize) -> DataResult<()> {
    if frames == 0 || data.len() % frames != 0 {
        return Err(DataError::Shape(format!(
            "{} values are not {frames} whole frames",
            data.len()
        )));
    }
    let n = data.len() / frames;
    data[from.min(frames) * n..].fill(0.0);
    Ok(())
}

/// Masking for the reconstruction loss L_deg: what is hidden from the skeleton encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKind {
    /// Single joints: (frame, body, joint) cells.
    Joints,
    /// Whole frames (every body and joint of a frame).
    Frames,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SkeletonMask {
    /// The skeleton stream masked (usually `Skeleton`).
    pub modality: Modality,
    pub kind: MaskKind,
    /// Fraction of the units (joints or frames) masked: exactly `round(ratio * units)`.
    pub ratio: f32,
}

/// Draws a mask over a skeleton of shape `dims` into `mask` (T, M, J): 1 where masked, 0
/// elsewhere. Exactly `round(ratio * units)` units are masked, chosen uniformly.
pub fn skeleton_mask(
    kind: MaskKind,
    ratio: f32,
    dims: SkeletonDims,
    rng: &mut ChaCha8Rng,
    mask: &mut [f32],
    scratch: &mut Scratch,
) -> DataResult<()> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err(DataError::Invalid(format!(
            "mask ratio must be in [0, 1], got {ratio}"
        )));
    }
    let cells = dims.frames * dims.bodies * dims.joints;
    if mask.len() != cells {
        return Err(DataError::Shape(format!(
            "a mask over {dims:?} has {cells} cells, got {}",
            mask.len()
        )));
    }
    let (units, unit_len) = match kind {
        MaskKind::Joints => (cells, 1),
        MaskKind::Frames => (dims.frames, dims.bodies * dims.joints),
    };
    let n = ((ratio * units as f32).round() as usize).min(units);
    // A partial Fisher-Yates shuffle: the first n of the units are a uniform subset.
    let idx = &mut scratch.index;
    idx.clear();
    idx.extend(0..units);
    for i in 0..n {
        let j = rng.gen_range(i..units);
        idx.swap(i, j);
    }
    mask.fill(0.0);
    for &u in &idx[..n] {
        mask[u * unit_len..(u + 1) * unit_len].fill(1.0);
    }
    Ok(())
}

/// Zeroes the joints of skeleton `data` (T, M, J, 3) where `mask` (T, M, J) is non-zero.
pub fn apply_skeleton_mask(data: &mut [f32], mask: &[f32]) -> DataResult<()> {
    if data.len() != mask.len() * 3 {
        return Err(DataError::Shape(format!(
            "a mask of {} cells does not fit {} skeleton values",
            mask.len(),
            data.len()
        )));
    }
    for (p, &m) in data.chunks_exact_mut(3).zip(mask) {
        if m != 0.0 {
            p.fill(0.0);
        }
    }
    Ok(())
}

/// Depth holes: random discs with no reading (0), as a failing or occluded depth sensor gives.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthHoles {
    /// Each frame gets U{1..=max_holes} holes.
    pub max_holes: usize,
    /// Hole radius as a fraction of the shorter image side, U(lo, hi).
    pub radius: (f32, f32),
}

impl Default for DepthHoles {
    fn default() -> Self {
        DepthHoles {
            max_holes: 3,
            radius: (0.05, 0.15),
        }
    }
}

impl DepthHoles {
    pub fn check(&self) -> DataResult<()> {
        let (lo, hi) = self.radius;
        if self.max_holes == 0 || !(0.0 <= lo && lo <= hi && hi <= 1.0) {
            return Err(DataError::Invalid(format!(
                "depth holes need max_holes >= 1 and radius within [0, 1], got {self:?}"
            )));
        }
        Ok(())
    }
}

/// Punches holes into depth `data` (T, 1, H, W) (or (T, H, W)) frame by frame.
pub fn depth_holes(
    data: &mut [f32],
    frames: usize,
    height: usize,
    width: usize,
    holes: &DepthHoles,
    rng: &mut ChaCha8Rng,
) -> DataResult<()> {
    holes.check()?;
    if data.len() != frames * height * width {
        return Err(DataError::Shape(format!(
            "depth holes: {} values are not {frames} frames of {height}x{width}",
            data.len()
        )));
    }
    if height == 0 || width == 0 {
        return Ok(());
    }
    let side = height.min(width) as f32;
    for frame in data.chunks_exact_mut(height * width) {
        let n = rng.gen_range(1..=holes.max_holes);
        for _ in 0..n {
            let cy = rng.gen_range(0.0..height as f32);
            let cx = rng.gen_range(0.0..width as f32);
            let r = side * uniform(rng, holes.radius.0, holes.radius.1);
            let y0 = (cy - r).floor().max(0.0) as usize;
            let y1 = ((cy + r).ceil() as usize).min(height);
            let x0 = (cx - r).floor().max(0.0) as usize;
            let x1 = ((cx + r).ceil() as usize).min(width);
            for y in y0..y1 {
                let dy = y as f32 + 0.5 - cy;
                for x in x0..x1 {
                    let dx = x as f32 + 0.5 - cx;
                    if dx * dx + dy * dy <= r * r {
                        frame[y * width + x] = 0.0;
                    }
                }
            }
        }
    }
    Ok(())
}

fn uniform(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

/// The degradations the loader applies to every view, in this order: modality dropout,
/// dropout from a frame on, joint noise, point sparsity, depth holes, skeleton masking.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Degradations {
    pub modality_drop: Option<ModalityDrop>,
    pub frame_drop: Option<FrameDrop>,
    /// Gaussian noise on every present joint of every skeleton stream, sigma in metres (the
    /// paper's SJN test: 0.02 .. 0.10).
    pub joint_noise: Option<f32>,
    /// Fraction D of each frame's points dropped (the paper's PCS test: 0.3, 0.5, 0.7); see
    /// `drop_points`: the dropped slots hold duplicates of kept points.
    pub point_sparsity: Option<f32>,
    pub depth_holes: Option<DepthHoles>,
    pub skeleton_mask: Option<SkeletonMask>,
}

/// One sample's stream of one view, as the loader lays it out: f32, its per-sample shape.
pub struct StreamMut<'a> {
    pub modality: Modality,
    pub dims: &'a [usize],
    pub data: &'a mut [f32],
}

/// What `Degradations::apply` reports for one sample.
pub struct Report<'a> {
    /// One flag per stream (1 dropped, 0 kept), in the order the streams were given.
    pub dropped: &'a mut [f32],
    /// With `skeleton_mask`: the (T, M, J) mask (1 masked).
    pub mask: Option<&'a mut [f32]>,
    /// With `skeleton_mask`: the masked stream before any degradation (the reconstruction
    /// target).
    pub clean: Option<&'a mut [f32]>,
}

impl Degradations {
    /// Checks parameters, and that the streams they name are among `modalities`.
    pub fn check(&self, modalities: &[Modality]) -> DataResult<()> {
        if let Some(d) = &self.modality_drop {
            d.check()?;
        }
        if let Some(s) = self.joint_noise {
            if !(s.is_finite() && s >= 0.0) {
                return Err(DataError::Invalid(format!(
                    "joint noise sigma must be >= 0, got {s}"
                )));
            }
        }
        if let Some(d) = self.point_sparsity {
            if !(0.0..=1.0).contains(&d) {
                return Err(DataError::Invalid(format!(
                    "point sparsity must be in [0, 1], got {d}"
                )));
            }
        }
        if let Some(h) = &self.depth_holes {
            h.check()?;
        }
        if let Some(m) = &self.skeleton_mask {
            if !matches!(
                m.modality,
                Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15
            ) {
                return Err(DataError::Invalid(format!(
                    "skeleton masking needs a skeleton stream, got {}",
                    m.modality
                )));
            }
            if !modalities.contains(&m.modality) {
                return Err(DataError::Invalid(format!(
                    "skeleton masking of {}, which the loader does not load",
                    m.modality
                )));
            }
            if !(0.0..=1.0).contains(&m.ratio) {
                return Err(DataError::Invalid(format!(
                    "mask ratio must be in [0, 1], got {}",
                    m.ratio
                )));
            }
        }
        Ok(())
    }

    /// Degrades one sample's `streams` in place, drawing from `rng`.
    pub fn apply(
        &self,
        streams: &mut [StreamMut<'_>],
        rng: &mut ChaCha8Rng,
        scratch: &mut Scratch,
        report: Report<'_>,
    ) -> DataResult<()> {
        if report.dropped.len() != streams.len() {
            return Err(DataError::Shape(format!(
                "{} drop flags for {} streams",
                report.dropped.len(),
                streams.len()
            )));
        }
        let masked = self.skeleton_mask.as_ref();
        if let (Some(m), Some(clean)) = (masked, report.clean) {
            let s = find(streams, m.modality)?;
            if clean.len() != s.data.len() {
                return Err(DataError::Shape(format!(
                    "a clean copy of {} values for a stream of {}",
                    clean.len(),
                    s.data.len()
                )));
            }
            clean.copy_from_slice(s.data);
        }

        let modalities: Vec<Modality> = streams.iter().map(|s| s.modality).collect();
        let drop = match &self.modality_drop {
            Some(d) => d.choose(&modalities, rng),
            None => vec![false; streams.len()],
        };
        for ((s, &gone), flag) in streams.iter_mut().zip(&drop).zip(report.dropped.iter_mut()) {
            *flag = if gone { 1.0 } else { 0.0 };
            if gone {
                s.data.fill(0.0);
            }
        }

        for s in streams.iter_mut() {
            let frames = s.dims.first().copied().unwrap_or(0);
            if let Some(fd) = &self.frame_drop {
                if fd.modalities.contains(&s.modality) {
                    zero_from_frame(s.data, frames, fd.from)?;
                }
            }
            match s.modality {
                Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15 => {
                    if let Some(sigma) = self.joint_noise {
                        joint_noise(s.data, sigma, rng);
                    }
                }
                Modality::Points => {
                    if let Some(d) = self.point_sparsity {
                        let points = s.dims.get(1).copied().unwrap_or(0);
                        drop_points(s.data, points, d, rng, scratch)?;
                    }
                }
                Modality::Depth => {
                    if let Some(h) = &self.depth_holes {
                        let (hh, ww) = match *s.dims {
                            [_, 1, h, w] | [_, h, w] => (h, w),
                            _ => {
                                return Err(DataError::Shape(format!(
                                    "depth of shape {:?}",
                                    s.dims
                                )))
                            }
                        };
                        depth_holes(s.data, frames, hh, ww, h, rng)?;
                    }
                }
                Modality::JointState | Modality::Rgb => {}
            }
        }

        if let Some(m) = masked {
            let mask = report.mask.ok_or_else(|| {
                DataError::Invalid("skeleton masking needs somewhere to put the mask".into())
            })?;
            let s = find(streams, m.modality)?;
            let dims = SkeletonDims::from_dims(s.dims)?;
            skeleton_mask(m.kind, m.ratio, dims, rng, mask, scratch)?;
            apply_skeleton_mask(s.data, mask)?;
        }
        Ok(())
    }
}

fn find<'s, 'a>(
    streams: &'s mut [StreamMut<'a>],
    m: Modality,
) -> DataResult<&'s mut StreamMut<'a>> {
    streams
        .iter_mut()
        .find(|s| s.modality == m)
        .ok_or_else(|| DataError::Invalid(format!("no {m} stream to degrade")))
}
