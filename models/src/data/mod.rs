//! The data pipeline: the types every part shares. A dataset is a list of samples; a sample is
//! one recording (one subject doing one action under one camera) holding one array per stream
//! (skeleton, depth, RGB, point cloud, ...), all from the same motion and camera.
//!
//! Parts: `synthetic` makes the default dataset, `format` stores datasets on disk (memory-mapped,
//! fixed-size records), `ntu` imports NTU RGB+D; `loader` batches a dataset into tensors on
//! background threads, with `augment` (the two views of each sample) and `degrade` (simulated
//! sensor failure), every random choice drawn from `rng`'s per-sample seeded streams.

pub mod augment;
pub mod camera;
pub mod degrade;
mod error;
pub mod format;
pub mod geom;
pub mod layouts;
pub mod loader;
pub mod ntu;
pub mod preview;
pub mod resample;
pub mod rng;
pub mod synthetic;

pub use error::{DataError, DataResult};

use std::collections::BTreeMap;

/// One kind of per-sample array. Shapes are per sample; `T` frames, `M` bodies, `J` joints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Modality {
    /// (T, M, 25, 3) f32: joint positions in metres, camera coordinates, the Kinect v2 / NTU
    /// 25-joint layout. A missing body is all zeros.
    Skeleton,
    /// (T, M, 25) u8: the Kinect tracking state of each joint of `Skeleton` (0 not tracked,
    /// 1 inferred, 2 tracked).
    JointState,
    /// (T, M, 17, 3) f32: the same motion in a 17-joint convention (other joint placement).
    Skeleton17,
    /// (T, M, 15, 3) f32: the same motion in a 15-joint convention.
    Skeleton15,
    /// (T, H, W) u16: depth in millimetres; 0 is a hole (no reading).
    Depth,
    /// (T, 3, H, W) u8: colour frames.
    Rgb,
    /// (T, P, 3) f32: points in metres, camera coordinates, back-projected from `Depth`.
    Points,
}

impl Modality {
    /// Every modality, in storage order.
    pub const ALL: [Modality; 7] = [
        Modality::Skeleton,
        Modality::JointState,
        Modality::Skeleton17,
        Modality::Skeleton15,
        Modality::Depth,
        Modality::Rgb,
        Modality::Points,
    ];

    /// The name used in headers, file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Skeleton => "skeleton",
            Modality::JointState => "joint_state",
            Modality::Skeleton17 => "skeleton17",
            Modality::Skeleton15 => "skeleton15",
            Modality::Depth => "depth",
            Modality::Rgb => "rgb",
            Modality::Points => "points",
        }
    }

    /// The modality called `name`.
    pub fn from_name(name: &str) -> Option<Modality> {
        Modality::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The element type its arrays hold.
    pub fn elem(self) -> Elem {
        match self {
            Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15 | Modality::Points => {
                Elem::F32
            }
            Modality::JointState | Modality::Rgb => Elem::U8,
            Modality::Depth => Elem::U16,
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Element types stored on disk (little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    U16,
    U8,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::U16 => 2,
            Elem::U8 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::U16 => "u16",
            Elem::U8 => "u8",
        }
    }

    /// The element type called `name`.
    pub fn from_name(name: &str) -> Option<Elem> {
        [Elem::F32, Elem::U16, Elem::U8]
            .into_iter()
            .find(|e| e.name() == name)
    }
}

/// The elements of one array.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    U16(Vec<u16>),
    U8(Vec<u8>),
}

/// A dense row-major array of one sample's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub dims: Vec<usize>,
    pub data: ArrayData,
}

impl Array {
    /// An array, after checking that `dims` matches the element count.
    pub fn new(dims: Vec<usize>, data: ArrayData) -> DataResult<Array> {
        let n: usize = dims.iter().product();
        let len = match &data {
            ArrayData::F32(v) => v.len(),
            ArrayData::U16(v) => v.len(),
            ArrayData::U8(v) => v.len(),
        };
        if n != len {
            return Err(DataError::Shape(format!(
                "an array of shape {dims:?} needs {n} elements, got {len}"
            )));
        }
        Ok(Array { dims, data })
    }

    pub fn elem(&self) -> Elem {
        match self.data {
            ArrayData::F32(_) => Elem::F32,
            ArrayData::U16(_) => Elem::U16,
            ArrayData::U8(_) => Elem::U8,
        }
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// The elements of one array, borrowed (e.g. straight from a memory-mapped file).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArrayViewData<'a> {
    F32(&'a [f32]),
    U16(&'a [u16]),
    U8(&'a [u8]),
}

/// A borrowed dense row-major array: what `format::Dataset::record` hands out without copying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayView<'a> {
    pub dims: &'a [usize],
    pub data: ArrayViewData<'a>,
}

impl<'a> ArrayView<'a> {
    pub fn elem(&self) -> Elem {
        match self.data {
            ArrayViewData::F32(_) => Elem::F32,
            ArrayViewData::U16(_) => Elem::U16,
            ArrayViewData::U8(_) => Elem::U8,
        }
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The elements as f32, if that is what the array holds.
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        match self.data {
            ArrayViewData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as u16, if that is what the array holds.
    pub fn as_u16(&self) -> Option<&'a [u16]> {
        match self.data {
            ArrayViewData::U16(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as u8, if that is what the array holds.
    pub fn as_u8(&self) -> Option<&'a [u8]> {
        match self.data {
            ArrayViewData::U8(v) => Some(v),
            _ => None,
        }
    }

    /// An owned copy.
    pub fn to_array(&self) -> Array {
        let data = match self.data {
            ArrayViewData::F32(v) => ArrayData::F32(v.to_vec()),
            ArrayViewData::U16(v) => ArrayData::U16(v.to_vec()),
            ArrayViewData::U8(v) => ArrayData::U8(v.to_vec()),
        };
        Array {
            dims: self.dims.to_vec(),
            data,
        }
    }
}

impl Array {
    /// A borrowed view of this array.
    pub fn view(&self) -> ArrayView<'_> {
        let data = match &self.data {
            ArrayData::F32(v) => ArrayViewData::F32(v),
            ArrayData::U16(v) => ArrayViewData::U16(v),
            ArrayData::U8(v) => ArrayViewData::U8(v),
        };
        ArrayView {
            dims: &self.dims,
            data,
        }
    }
}

/// Who did what, where: NTU's naming (SsssCcccPpppRrrrAaaa) carries the same fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleMeta {
    /// A unique name, e.g. `S001C002P003R001A004` for NTU.
    pub name: String,
    /// The action class, 0-based.
    pub label: u16,
    /// The performer, 1-based as in NTU.
    pub subject: u16,
    /// The camera (view), 1-based as in NTU.
    pub camera: u8,
    /// The setup (scene/session), 1-based as in NTU.
    pub setup: u16,
    /// The replication, 1-based as in NTU.
    pub replication: u8,
}

/// One recording: its metadata and one array per stream it has.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub meta: SampleMeta,
    pub streams: BTreeMap<Modality, Array>,
}

/// The shape every sample's array of one modality has in a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    pub modality: Modality,
    pub dims: Vec<usize>,
}

/// Train and test sample indices of one evaluation protocol (cross-subject, cross-view, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub name: String,
    pub train: Vec<u32>,
    pub test: Vec<u32>,
}

/// What a dataset holds: its classes and streams. Samples and splits come with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Where it came from, e.g. `synthetic-small` or `ntu60`.
    pub name: String,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    pub streams: Vec<StreamSpec>,
}

impl DatasetSpec {
    /// The per-sample shape of `modality`, if the dataset has it.
    pub fn dims_of(&self, modality: Modality) -> Option<&[usize]> {
        self.streams
            .iter()
            .find(|s| s.modality == modality)
            .map(|s| s.dims.as_slice())
    }
}
