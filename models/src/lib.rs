//! RCMCL on the engine: the data pipeline (synthetic generator, storage format, importers,
//! augmentations, degradations, loader), the three encoders, the heads, the AMG gate, the
//! losses, the whole model and its pre-training objective.

pub mod ablation;
pub mod data;
pub mod encoder;
pub mod gate;
pub mod heads;
pub mod inputs;
pub mod losses;
pub mod objective;
pub mod point;
pub mod rcmcl;
pub mod rgbd;
pub mod skeleton;

pub use encoder::EncoderOutput;
pub use inputs::Inputs;
pub use rcmcl::{Rcmcl, RcmclConfig};
