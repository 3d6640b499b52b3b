//! RCMCL on the engine: the data pipeline (synthetic generator, storage format, importers,
//! augmentations, degradations, loader); the encoders, heads and losses follow.

pub mod data;
