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
