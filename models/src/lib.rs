//! RCMCL on the engine: the data pipeline (synthetic generator, storage format, importers,
//! augmentations, degradations, loader), the three encoders, the heads, the AMG gate, the
//! losses and the whole model.

pub mod data;
pub mod encoder;
pub mod gate;
pub mod heads;
pub mod losses;
pub mod point;
pub mod rgbd;
pub mod skeleton;

pub use encoder::EncoderOutput;
