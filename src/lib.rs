//! RCMCL: robust cross-modal contrastive learning on a compute engine written from scratch.
//!
//! The root package re-exports the workspace crates and owns the integration tests (`tests/`)
//! and the benchmarks (`benches/`).

pub use engine;
pub use models;
