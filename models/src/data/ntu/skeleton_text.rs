//! The `.skeleton` text format of NTU RGB+D: reading it (with errors that give file and line)
//! and writing it (for tests and for exporting synthetic data in NTU's own format).
//!
//! Layout, one item per line:
//! ```text
//! frameCount
//! per frame:  bodyCount
//!   per body: bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence
//!             handRightState isRestricted leanX leanY trackingState
//!             jointCount
//!     per joint: x y z depthX depthY colorX colorY orientationW orientationX orientationY
//!                orientationZ trackingState
//! ```

use crate::data::{DataError, DataResult};
use std::fmt::Write as _;
use std::path::Path;

/// Joints per body in the Kinect v2 / NTU layout.
pub const NTU_JOINTS: usize = 25;

/// One joint line.
#[derive(Clone, Debug, PartialEq)]
pub struct JointRecord {
    /// Position in metres, camera coordinates.
    pub xyz: [f32; 3],
    /// Pixel position in the depth map.
    pub depth_xy: [f32; 2],
    /// Pixel position in the colour frame.
    pub color_xy: [f32; 2],
    /// Orientation quaternion, w x y z.
    pub orientation: [f32; 4],
    /// 0 not tracked, 1 inferred, 2 tracked.
    pub state: u8,
}

/// One body in one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct BodyRecord {
    /// Kinect's tracking id: the same person keeps it across frames.
    pub id: u64,
    /// The other nine values of the body line, in file order: clippedEdges,
    /// handLeftConfidence, handLeftState, handRightConfidence, handRightState, isRestricted,
    /// leanX, leanY, trackingState. Kept as read; the importer does not use them.
    pub info: [f32; 9],
    pub joints: Vec<JointRecord>,
}

/// A whole `.skeleton` file: per frame, the bodies seen in it (possibly none).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SkeletonSequence {
    pub frames: Vec<Vec<BodyRecord>>,
}

/// Reads and parses the `.skeleton` file at `path`.
pub fn read_skeleton(path: &Path) -> DataResult<SkeletonSequence> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_skeleton(&text, path)
}

/// Parses `.skeleton` text; `path` is only for error messages.
pub fn parse_skeleton(text: &str, path: &Path) -> DataResult<SkeletonSequence> {
    let mut lines = Lines {
        path,
        iter: text.lines().enumerate(),
        last: 0,
    };
    let frame_count = lines.count("the frame count")?;
    let mut frames = Vec::new();
    for f in 1..=frame_count {
        let body_count = lines.count(&format!("the body count of frame {f}"))?;
        let mut bodies = Vec::new();
        for b in 1..=body_count {
            let at = format!("body {b} of frame {f}");
            let (line, values) = lines.values(10, &format!("the body line of {at}"))?;
            let id = values[0].parse::<u64>().map_err(|_| {
                lines.error(
                    line,
                    format!("body id {:?} is not a whole number", values[0]),
                )
            })?;
            let mut info = [0f32; 9];
            for (slot, text) in info.iter_mut().zip(&values[1..]) {
                *slot = lines.number(line, text)?;
            }
            let joint_count = lines.count(&format!("the joint count of {at}"))?;
            if joint_count != NTU_JOINTS {
                return Err(lines.error(
                    lines.last,
                    format!("{at} has {joint_count} joints, NTU skeletons have {NTU_JOINTS}"),
                ));
            }
            let mut joints = Vec::with_capacity(NTU_JOINTS);
            for j in 1..=NTU_JOINTS {
                let (line, v) = lines.values(12, &format!("joint {j} of {at}"))?;
                let mut x = [0f32; 11];
                for (slot, text) in x.iter_mut().zip(&v[..11]) {
                    *slot = lines.number(line, text)?;
                }
                let state = match v[11] {
                    "0" => 0,
                    "1" => 1,
                    "2" => 2,
                    s => {
                        return Err(
                            lines.error(line, format!("tracking state {s:?}, expected 0, 1 or 2"))
                        )
                    }
                };
                joints.push(JointRecord {
                    xyz: [x[0], x[1], x[2]],
                    depth_xy: [x[3], x[4]],
                    color_xy: [x[5], x[6]],
                    orientation: [x[7], x[8], x[9], x[10]],
                    state,
                });
            }
            bodies.push(BodyRecord { id, info, joints });
        }
        frames.push(bodies);
    }
    if let Some((line, _)) = lines.next_nonblank() {
        return Err(lines.error(
            line,
            format!(
                "unexpected data after the last of {frame_count} frames \
                 (is a frame or body count too small?)"
            ),
        ));
    }
    Ok(SkeletonSequence { frames })
}

/// Writes `seq` in the `.skeleton` text format. Numbers are written in Rust's shortest
/// round-trip form, so parsing the text gives back exactly the same values.
pub fn format_skeleton(seq: &SkeletonSequence) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    writeln!(out, "{}", seq.frames.len()).unwrap();
    for bodies in &seq.frames {
        writeln!(out, "{}", bodies.len()).unwrap();
        for body in bodies {
            write!(out, "{}", body.id).unwrap();
            for v in body.info {
                write!(out, " {v}").unwrap();
            }
            writeln!(out).unwrap();
            writeln!(out, "{}", body.joints.len()).unwrap();
            for j in &body.joints {
                let values = j.xyz.iter().chain(&j.depth_xy).chain(&j.color_xy);
                for v in values.chain(&j.orientation) {
                    write!(out, "{v} ").unwrap();
                }
                writeln!(out, "{}", j.state).unwrap();
            }
        }
    }
    out
}

/// Walks the lines of a file, remembering the 1-based number of the last one read.
struct Lines<'a> {
    path: &'a Path,
    iter: std::iter::Enumerate<std::str::Lines<'a>>,
    last: usize,
}

impl<'a> Lines<'a> {
    fn error(&self, line: usize, msg: String) -> DataError {
        DataError::Parse {
            path: self.path.to_path_buf(),
            line,
            msg,
        }
    }

    fn next_nonblank(&mut self) -> Option<(usize, &'a str)> {
        for (i, text) in self.iter.by_ref() {
            self.last = i + 1;
            if !text.trim().is_empty() {
                return Some((i + 1, text));
            }
        }
        None
    }

    /// The next line's values; it must have exactly `n` of them.
    fn values(&mut self, n: usize, what: &str) -> DataResult<(usize, Vec<&'a str>)> {
        let Some((line, text)) = self.next_nonblank() else {
            return Err(self.error(
                self.last + 1,
                format!("the file ends early: expected {what} (truncated?)"),
            ));
        };
        let values: Vec<&str> = text.split_whitespace().collect();
        if values.len() != n {
            return Err(self.error(
                line,
                format!(
                    "expected {what} ({n} value{}), found {} value{} \
                     (does a body count disagree with the bodies listed?)",
                    if n == 1 { "" } else { "s" },
                    values.len(),
                    if values.len() == 1 { "" } else { "s" },
                ),
            ));
        }
        Ok((line, values))
    }

    /// The next line as one count.
    fn count(&mut self, what: &str) -> DataResult<usize> {
        let (line, values) = self.values(1, what)?;
        values[0].parse::<usize>().map_err(|_| {
            self.error(
                line,
                format!("expected {what}, found {:?}, not a count", values[0]),
            )
        })
    }

    /// One finite number on `line`.
    fn number(&self, line: usize, text: &str) -> DataResult<f32> {
        match text.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.error(line, format!("{text:?} is not a finite number"))),
        }
    }
}
