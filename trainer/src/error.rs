//! The trainer's errors: each says what to fix (which key, which file, which device).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{}: {msg}", path.display())]
    Io { path: PathBuf, msg: String },
    #[error("dataset: {0}")]
    Data(#[from] models::data::DataError),
    #[error("{0}")]
    Engine(#[from] engine::Error),
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    #[error("device: {0}")]
    Device(String),
    #[error("training stopped: {0}")]
    Diverged(String),
    #[error("plot: {0}")]
    Plot(#[from] crate::plot::PlotError),
}

pub type TrainerResult<T> = Result<T, TrainerError>;

impl TrainerError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> TrainerError {
        TrainerError::Io {
            path: path.into(),
            msg: err.to_string(),
        }
    }
}
