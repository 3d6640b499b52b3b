//! The trainer's library: everything the `trainer` binary does, testable without the CLI.

pub mod eval;
pub mod plot;
