//! The contact sheet: one PNG showing a few samples, every stream they have, over a few
//! frames, so a person can see what the data looks like.
//!
//! Per sample: a title (name and class), then one row per stream: skeletons drawn as bones
//! projected through the camera (left side blue, right side red, inferred joints orange, lost
//! joints red), depth as grey (near is bright, stretched over each frame's range, holes
//! black), RGB as is, and the point cloud
//! turned 60 degrees about the vertical so its depth shows.

use std::io::BufWriter;
use std::path::Path;

use super::camera::Intrinsics;
use super::geom::{v3, M3, V3};
use super::layouts::SkeletonLayout;
use super::{ArrayData, DataError, DataResult, Modality, Sample};

/// An 8-bit RGB image, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Image {
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Image {
        Image {
            width,
            height,
            data: fill.repeat(width * height),
        }
    }

    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Set a pixel; outside the image does nothing.
    pub fn put(&mut self, x: isize, y: isize, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.data[i..i + 3].copy_from_slice(&c);
        }
    }

    fn fill_rect(&mut self, x: isize, y: isize, w: usize, h: usize, c: [u8; 3]) {
        for dy in 0..h as isize {
            for dx in 0..w as isize {
                self.put(x + dx, y + dy, c);
            }
        }
    }

    /// A line from `a` to `b` (Bresenham), `thick` pixels wide.
    fn line(&mut self, a: (f32, f32), b: (f32, f32), thick: usize, c: [u8; 3]) {
        let (mut x0, mut y0) = (a.0.round() as isize, a.1.round() as isize);
        let (x1, y1) = (b.0.round() as isize, b.1.round() as isize);
        // Guard against absurd coordinates from points near the camera plane.
        if [x0, y0, x1, y1].iter().any(|v| v.abs() > 100_000) {
            return;
        }
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        let off = thick as isize / 2;
        loop {
            self.fill_rect(x0 - off, y0 - off, thick, thick, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// Upper-case text in a 3x5 pixel font, `scale` times bigger; unknown characters are blank.
    pub fn text(&mut self, x: usize, y: usize, s: &str, scale: usize, c: [u8; 3]) {
        for (n, ch) in s.chars().enumerate() {
            let Some(bits) = glyph(ch.to_ascii_uppercase()) else {
                continue;
            };
            let gx = x + n * 4 * scale;
            for (k, bit) in bits.bytes().enumerate() {
                if bit == b'1' {
                    let (px, py) = (gx + (k % 3) * scale, y + (k / 3) * scale);
                    self.fill_rect(px as isize, py as isize, scale, scale, c);
                }
            }
        }
    }

    /// Copy `src` with its top-left corner at `(x, y)`.
    fn blit(&mut self, src: &Image, x: usize, y: usize) {
        for sy in 0..src.height {
            for sx in 0..src.width {
                self.put((x + sx) as isize, (y + sy) as isize, src.get(sx, sy));
            }
        }
    }

    pub fn write_png(&self, path: &Path) -> DataResult<()> {
        let io = |e: std::io::Error| DataError::io(path, e);
        let png = |e: png::EncodingError| DataError::io(path, std::io::Error::other(e));
        let file = std::fs::File::create(path).map_err(io)?;
        let mut enc =
            png::Encoder::new(BufWriter::new(file), self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(png)?;
        writer.write_image_data(&self.data).map_err(png)?;
        writer.finish().map_err(png)
    }
}

/// 3x5 glyphs, rows top to bottom, as '0'/'1' strings.
fn glyph(c: char) -> Option<&'static str> {
    Some(match c {
        'A' => "010101111101101",
        'B' => "110101110101110",
        'C' => "011100100100011",
        'D' => "110101101101110",
        'E' => "111100110100111",
        'F' => "111100110100100",
        'G' => "011100101101011",
        'H' => "101101111101101",
        'I' => "111010010010111",
        'J' => "001001001101010",
        'K' => "101101110101101",
        'L' => "100100100100111",
        'M' => "101111111101101",
        'N' => "110101101101101",
        'O' => "010101101101010",
        'P' => "110101110100100",
        'Q' => "010101101110011",
        'R' => "110101110101101",
        'S' => "011100010001110",
        'T' => "111010010010010",
        'U' => "101101101101111",
        'V' => "101101101101010",
        'W' => "101101111111101",
        'X' => "101101010101101",
        'Y' => "101101010010010",
        'Z' => "111001010100111",
        '0' => "111101101101111",
        '1' => "010110010010111",
        '2' => "110001010100111",
        '3' => "110001010001110",
        '4' => "101101111001001",
        '5' => "111100110001110",
        '6' => "011100111101111",
        '7' => "111001010010010",
        '8' => "111101111101111",
        '9' => "111101111001110",
        ':' => "000010000010000",
        '-' => "000000111000000",
        '(' => "001010010010001",
        ')' => "100010010010100",
        '.' => "000000000000010",
        '/' => "001001010100100",
        _ => return None,
    })
}

/// What goes on the sheet.
pub struct SheetOptions {
    /// Frames shown per stream, spread evenly over the clip.
    pub frames: usize,
    /// The smallest cell side in pixels; images are enlarged by a whole factor to reach it.
    pub min_cell: usize,
}

impl Default for SheetOptions {
    fn default() -> SheetOptions {
        SheetOptions {
            frames: 6,
            min_cell: 96,
        }
    }
}

/// The rows a sample gets, in order.
const ROWS: [Modality; 6] = [
    Modality::Skeleton,
    Modality::Skeleton17,
    Modality::Skeleton15,
    Modality::Depth,
    Modality::Rgb,
    Modality::Points,
];

const LABEL_WIDTH: usize = 80;
const TITLE_HEIGHT: usize = 16;
const GAP: usize = 4;
const BACKGROUND: [u8; 3] = [24, 24, 28];
const INK: [u8; 3] = [230, 230, 230];

/// A contact sheet of `samples`, whose image-like streams were taken with camera `k`.
/// `class_names[label]` titles each sample.
pub fn contact_sheet(
    samples: &[Sample],
    k: &Intrinsics,
    class_names: &[String],
    opts: &SheetOptions,
) -> DataResult<Image> {
    let scale = opts.min_cell.div_ceil(k.width.max(k.height)).max(1);
    let (cw, ch) = (k.width * scale, k.height * scale);
    let rows_of = |s: &Sample| ROWS.iter().filter(|m| s.streams.contains_key(m)).count();
    let height: usize = samples
        .iter()
        .map(|s| TITLE_HEIGHT + rows_of(s) * (ch + GAP) + GAP)
        .sum::<usize>()
        .max(1);
    let width = LABEL_WIDTH + opts.frames.max(1) * (cw + GAP);
    let mut sheet = Image::new(width, height, BACKGROUND);
    let mut y = 0;
    for sample in samples {
        let class = class_names
            .get(sample.meta.label as usize)
            .map_or("?", |s| s.as_str());
        sheet.text(
            4,
            y + 4,
            &format!("{}  {}", sample.meta.name, class),
            2,
            INK,
        );
        y += TITLE_HEIGHT;
        for &m in ROWS.iter().filter(|m| sample.streams.contains_key(m)) {
            sheet.text(4, y + ch / 2 - 5, m.name(), 2, INK);
            let t_total = sample.streams[&m].dims[0];
            for col in 0..opts.frames.max(1) {
                let t = (col * t_total) / opts.frames.max(1) + t_total / (2 * opts.frames.max(1));
                let cell = draw_cell(sample, m, t.min(t_total - 1), k, scale)?;
                sheet.blit(&cell, LABEL_WIDTH + col * (cw + GAP), y);
            }
            y += ch + GAP;
        }
        y += GAP;
    }
    Ok(sheet)
}

/// Write the contact sheet of `samples` to `path` as PNG.
pub fn write_contact_sheet(
    path: &Path,
    samples: &[Sample],
    k: &Intrinsics,
    class_names: &[String],
    opts: &SheetOptions,
) -> DataResult<()> {
    contact_sheet(samples, k, class_names, opts)?.write_png(path)
}

fn f32_data(sample: &Sample, m: Modality) -> DataResult<&[f32]> {
    match &sample.streams[&m].data {
        ArrayData::F32(v) => Ok(v),
        _ => Err(DataError::Shape(format!("{m} should hold f32"))),
    }
}

/// One cell: frame `t` of stream `m`.
fn draw_cell(
    sample: &Sample,
    m: Modality,
    t: usize,
    k: &Intrinsics,
    s: usize,
) -> DataResult<Image> {
    let (w, h) = (k.width, k.height);
    let mut img = Image::new(w * s, h * s, [40, 40, 46]);
    let arr = &sample.streams[&m];
    let project = |p: V3| k.project(p).map(|(u, v)| (u * s as f32, v * s as f32));
    match m {
        Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15 => {
            let layout = SkeletonLayout::of(m).expect("a skeleton modality");
            let nj = layout.num_joints();
            let data = f32_data(sample, m)?;
            // The first body only; a body of zeros is absent.
            let frame = &data[t * arr.dims[1] * nj * 3..][..nj * 3];
            let joints: Vec<V3> = frame.chunks(3).map(V3::from_slice).collect();
            if joints.iter().all(|&p| p == V3::ZERO) {
                return Ok(img);
            }
            let states: Option<&[u8]> = match sample.streams.get(&Modality::JointState) {
                Some(a) if m == Modality::Skeleton => match &a.data {
                    ArrayData::U8(v) => Some(&v[t * a.dims[1] * nj..][..nj]),
                    _ => None,
                },
                _ => None,
            };
            let side = |j: usize| {
                let name = layout.joints[j];
                if name.contains("left") {
                    [90, 150, 255]
                } else if name.contains("right") {
                    [255, 90, 90]
                } else {
                    [120, 230, 120]
                }
            };
            for &(a, b) in layout.bones {
                if let (Some(pa), Some(pb)) = (project(joints[a]), project(joints[b])) {
                    img.line(pa, pb, 2, side(a));
                }
            }
            for (j, &p) in joints.iter().enumerate() {
                let colour = match states.map(|st| st[j]) {
                    Some(0) => [255, 0, 0],
                    Some(1) => [255, 170, 0],
                    _ => [255, 255, 255],
                };
                if let Some((u, v)) = project(p) {
                    img.fill_rect(u as isize - 1, v as isize - 1, 3, 3, colour);
                }
            }
        }
        Modality::Depth => {
            let ArrayData::U16(d) = &arr.data else {
                return Err(DataError::Shape("depth should hold u16".into()));
            };
            let frame = &d[t * h * w..][..h * w];
            // Stretch grey over this frame's own depth range, so the body stands out.
            let (lo, hi) = frame
                .iter()
                .filter(|&&mm| mm > 0)
                .fold((u16::MAX, 0), |(lo, hi), &mm| (lo.min(mm), hi.max(mm)));
            let range = (hi.saturating_sub(lo)).max(1) as f32;
            for y in 0..h * s {
                for x in 0..w * s {
                    let mm = frame[(y / s) * w + x / s];
                    let g = if mm == 0 {
                        0
                    } else {
                        (255.0 - (mm.saturating_sub(lo)) as f32 / range * 200.0) as u8
                    };
                    img.put(x as isize, y as isize, [g, g, g]);
                }
            }
        }
        Modality::Rgb => {
            let ArrayData::U8(d) = &arr.data else {
                return Err(DataError::Shape("rgb should hold u8".into()));
            };
            let plane = h * w;
            let frame = &d[t * 3 * plane..][..3 * plane];
            for y in 0..h * s {
                for x in 0..w * s {
                    let i = (y / s) * w + x / s;
                    let c = [frame[i], frame[plane + i], frame[2 * plane + i]];
                    img.put(x as isize, y as isize, c);
                }
            }
        }
        Modality::Points => {
            let data = f32_data(sample, m)?;
            let p = arr.dims[1];
            let pts: Vec<V3> = data[t * p * 3..][..p * 3]
                .chunks(3)
                .map(V3::from_slice)
                .filter(|q| q.z > 0.0)
                .collect();
            if pts.is_empty() {
                return Ok(img);
            }
            let centre = pts.iter().fold(V3::ZERO, |a, &q| a + q) * (1.0 / pts.len() as f32);
            let turn = M3::rot_y(60f32.to_radians());
            let turned: Vec<V3> = pts.iter().map(|&q| turn * (q - centre) + centre).collect();
            let (zmin, zmax) = turned
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), q| (a.min(q.z), b.max(q.z)));
            for q in turned {
                let near = 1.0 - (q.z - zmin) / (zmax - zmin + 1e-6);
                let c = [
                    (80.0 + 175.0 * near) as u8,
                    (200.0 * near + 40.0) as u8,
                    (255.0 - 150.0 * near) as u8,
                ];
                if let Some((u, v)) = project(q) {
                    img.fill_rect(u as isize, v as isize, 2, 2, c);
                }
            }
            // A short vertical tick at the centre marks the turned cloud's axis.
            if let (Some(a), Some(b)) = (
                project(centre + v3(0.0, -0.1, 0.0)),
                project(centre + v3(0.0, 0.1, 0.0)),
            ) {
                img.line(a, b, 1, [120, 120, 120]);
            }
        }
        Modality::JointState => {}
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_fifteen_bits() {
        for c in ('A'..='Z').chain('0'..='9').chain(":-()./".chars()) {
            let g = glyph(c).unwrap_or_else(|| panic!("no glyph for {c}"));
            assert_eq!(g.len(), 15, "{c}");
            assert!(g.bytes().all(|b| b == b'0' || b == b'1'));
        }
    }
}
