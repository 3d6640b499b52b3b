//! RGB-D augmentations: random resized crop, temporal crop and flip shared by depth and RGB,
//! colour jitter for RGB, noise for depth.

use super::{
    check_len, check_nonneg, check_prob, check_range, uniform, window_nearest, Scratch,
    TemporalCrop, Window, NOISE_BLOCK,
};
use crate::data::resample::{linear_table, nearest_table, ROW_PAD};
use crate::data::rng::fill_normal;
use crate::data::{DataError, DataResult};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

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
