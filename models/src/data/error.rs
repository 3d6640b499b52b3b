//! Errors of the data pipeline: each says which file (and line, where there is one).

use std::path::PathBuf;

pub type DataResult<T> = std::result::Result<T, DataError>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose content is not what its format says (bad magic, version, size, checksum).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A text file that does not parse, with the 1-based line.
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// Arrays or specs whose shapes do not fit together.
    #[error("shape: {0}")]
    Shape(String),
    /// A bad argument (preset name, modality name, ratio out of range, ...).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
