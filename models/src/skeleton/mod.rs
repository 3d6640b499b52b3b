//! E_S, the skeleton encoder: ST-GCN (Yan et al. 2018) over one or several skeleton conventions
//! (MS-CLR's multi-skeleton setting, paper 003).
//!
//! - [`graph`]: [`SkeletonGraph`], the K = 3 spatial-partition adjacency of one layout, padded to
//!   a common joint count, and its joint mask.
//! - [`encoder`]: [`SkeletonEncoder`] and its [`SkeletonEncoderConfig`] (presets `tiny`, `ssl`,
//!   `stgcn`), built from ST-GCN blocks ([`block`]).
//!
//! docs/models.md (section "Skeleton encoder (E_S)") explains the choices: how padded joints are
//! masked, which parameters are per format, and the partition convention.

pub mod block;
pub mod encoder;
pub mod graph;

pub use block::StGcnBlock;
pub use encoder::{SkeletonEncoder, SkeletonEncoderConfig};
pub use graph::{SkeletonGraph, NUM_PARTITIONS};

use engine::Error;

/// A shape error naming the layer (the engine's constructor is crate-private).
pub(crate) fn shape_err(op: &'static str, shapes: &[&[usize]], msg: impl Into<String>) -> Error {
    Error::Shape {
        op,
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        msg: msg.into(),
    }
}

/// An invalid-argument error naming the layer.
pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Error {
    Error::Invalid {
        op,
        msg: msg.into(),
    }
}
