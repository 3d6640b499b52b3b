//! The trainer's library: everything the `trainer` binary does, testable without the CLI.

pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod evaluate;
pub mod figures;
pub mod plot;
pub mod pretrain;
pub mod progress;
pub mod run_dir;
pub mod setup;
pub mod supervised;
