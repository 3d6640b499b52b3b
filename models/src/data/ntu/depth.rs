//! NTU's masked depth maps: 512x424 16-bit grayscale PNGs in millimetres (0 where there is no
//! reading or the pixel is masked out), one folder per sample
//! (`nturgb+d_depth_masked/S001C001P001R001A001/MDepth-00000001.png`, ...). They are resized
//! for the RGB-D encoder and back-projected to point clouds.

use crate::data::{DataError, DataResult};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// NTU depth maps are this wide and high; the intrinsics below are for this resolution.
pub const DEPTH_WIDTH: usize = 512;
pub const DEPTH_HEIGHT: usize = 424;
/// Focal length in pixels, as commonly used to back-project NTU depth maps.
pub const FOCAL_PX: f32 = 280.0;
/// Principal point (u, v) in pixels: the image centre.
pub const PRINCIPAL_POINT: [f32; 2] = [256.0, 212.0];

/// One depth map, row-major, millimetres.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthMap {
    pub width: usize,
    pub height: usize,
    pub mm: Vec<u16>,
}

/// Reads a 16-bit grayscale PNG.
pub fn read_depth_png(path: &Path) -> DataResult<DepthMap> {
    let bad = |msg: String| DataError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let decoder = png::Decoder::new(BufReader::new(file));
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let (color, bits) = {
        let info = reader.info();
        (info.color_type, info.bit_depth)
    };
    if color != png::ColorType::Grayscale || bits != png::BitDepth::Sixteen {
        return Err(bad(format!(
            "is {color:?} with {} bits per sample; depth maps are 16-bit grayscale",
            bits as u8
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("is too large to decode".into()))?;
    let mut buf = vec![0u8; size];
    let out = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    let (width, height) = (out.width as usize, out.height as usize);
    let mut mm = Vec::with_capacity(width * height);
    for row in buf.chunks(out.line_size).take(height) {
        // PNG stores 16-bit samples big-endian.
        mm.extend(
            row[..2 * width]
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]])),
        );
    }
    Ok(DepthMap { width, height, mm })
}

/// Writes `map` as a 16-bit grayscale PNG, as NTU stores masked depth.
pub fn write_depth_png(path: &Path, map: &DepthMap) -> DataResult<()> {
    if map.mm.len() != map.width * map.height {
        return Err(DataError::Shape(format!(
            "a {}x{} depth map needs {} values, got {}",
            map.width,
            map.height,
            map.width * map.height,
            map.mm.len()
        )));
    }
    let io = |e: png::EncodingError| DataError::io(path, std::io::Error::other(e));
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), map.width as u32, map.height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().map_err(io)?;
    let bytes: Vec<u8> = map.mm.iter().flat_map(|v| v.to_be_bytes()).collect();
    writer.write_image_data(&bytes).map_err(io)?;
    writer.finish().map_err(io)
}

/// The `MDepth-<number>.png` files in a sample's folder, in frame order.
pub fn depth_frame_paths(dir: &Path) -> DataResult<Vec<PathBuf>> {
    let mut frames = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("MDepth-"))
            .and_then(|n| n.strip_suffix(".png"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            frames.push((number, path));
        }
    }
    if frames.is_empty() {
        return Err(DataError::Format {
            path: dir.to_path_buf(),
            msg: "no MDepth-<number>.png depth frames in this folder".into(),
        });
    }
    frames.sort();
    Ok(frames.into_iter().map(|(_, p)| p).collect())
}

/// Resizes by nearest neighbour: output pixel (r, c) takes the source pixel under its centre,
/// `floor((r + 0.5) * src_h / h)`. Nearest rather than area averaging so no depth is invented
/// where a body edge meets a hole or the masked-out background (averaging a reading with a 0
/// gives a point floating in between).
pub fn resize_nearest(map: &DepthMap, height: usize, width: usize) -> Vec<u16> {
    if map.mm.is_empty() {
        return vec![0; height * width];
    }
    let mut out = Vec::with_capacity(height * width);
    for r in 0..height {
        let sr = ((2 * r + 1) * map.height) / (2 * height);
        for c in 0..width {
            let sc = ((2 * c + 1) * map.width) / (2 * width);
            out.push(map.mm[sr * map.width + sc]);
        }
    }
    out
}

/// Back-projects `points` pixels with a reading (depth > 0) to camera coordinates in metres,
/// Kinect's convention (x to the image's right, y up, z away from the camera):
/// `z = d / 1000`, `x = (u - cx) z / f`, `y = -(v - cy) z / f`, with the NTU intrinsics above
/// (so `map` should be at the original 512x424 resolution).
///
/// Which pixels, deterministically from `seed`: with at least `points` valid pixels, a seeded
/// partial Fisher-Yates shuffle picks `points` distinct ones; with fewer, every valid pixel is
/// taken once and the rest are seeded draws with replacement; with none, all points are zero.
/// Points come out in raster order of their pixels (then the extra draws), as (P, 3) row-major.
pub fn back_project(map: &DepthMap, points: usize, seed: u64) -> Vec<f32> {
    let valid: Vec<usize> = (0..map.mm.len()).filter(|&i| map.mm[i] > 0).collect();
    let mut out = vec![0f32; 3 * points];
    if valid.is_empty() {
        return out;
    }
    let mut rng = SplitMix64(seed);
    let chosen: Vec<usize> = if valid.len() >= points {
        let mut pool = valid;
        for k in 0..points {
            let j = k + (rng.next() % (pool.len() - k) as u64) as usize;
            pool.swap(k, j);
        }
        pool.truncate(points);
        pool.sort_unstable();
        pool
    } else {
        let extra: Vec<usize> = (valid.len()..points)
            .map(|_| valid[(rng.next() % valid.len() as u64) as usize])
            .collect();
        valid.into_iter().chain(extra).collect()
    };
    let [cx, cy] = PRINCIPAL_POINT;
    for (p, &i) in out.chunks_exact_mut(3).zip(&chosen) {
        let (u, v) = ((i % map.width) as f32, (i / map.width) as f32);
        let z = f32::from(map.mm[i]) / 1000.0;
        p[0] = (u - cx) * z / FOCAL_PX;
        p[1] = -(v - cy) * z / FOCAL_PX;
        p[2] = z;
    }
    out
}

/// SplitMix64: a tiny seeded generator, enough for choosing pixels reproducibly.
pub(crate) struct SplitMix64(pub u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
