//! The engine's one error type. Every variant names the operation and what was wrong with its
//! inputs (shapes, dtypes, devices, files), so a user can find the call that failed.

use crate::{DType, Device};
use std::path::PathBuf;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("{op}: {msg} (shapes: {shapes:?})")]
    Shape {
        op: &'static str,
        shapes: Vec<Vec<usize>>,
        msg: String,
    },

    #[error("{op}: unsupported dtype {got} ({msg})")]
    DType {
        op: &'static str,
        got: DType,
        msg: String,
    },

    #[error("{op}: dtypes differ: {a} and {b}")]
    DTypeMismatch {
        op: &'static str,
        a: DType,
        b: DType,
    },

    #[error("{op}: tensors are on different devices: {a} and {b}")]
    DeviceMismatch {
        op: &'static str,
        a: Device,
        b: Device,
    },

    #[error("{op}: axis {axis} is out of range for a tensor of rank {rank}")]
    Axis {
        op: &'static str,
        axis: isize,
        rank: usize,
    },

    #[error("{op}: index {index} is out of range for a dimension of size {size}")]
    Index {
        op: &'static str,
        index: i64,
        size: usize,
    },

    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },

    #[error("backward: {0}")]
    Autograd(String),

    #[error("CUDA is unavailable: {0}")]
    CudaUnavailable(String),

    /// A CUDA driver, cuBLAS or launch failure; `context` says what the engine was doing.
    #[error("CUDA error while {context}: {msg}")]
    Cuda { context: String, msg: String },

    #[error("CUDA out of memory on cuda:{device}: asked for {requested} bytes with {in_use} bytes in use by tensors and {cached} cached ({free} of {total} bytes free on the device)")]
    OutOfMemory {
        device: usize,
        requested: usize,
        in_use: usize,
        cached: usize,
        free: usize,
        total: usize,
    },

    /// NVRTC rejected a kernel source; `log` is the compiler's own message.
    #[error("{file}: NVRTC could not compile it for {arch}:\n{log}")]
    KernelCompile {
        file: String,
        arch: String,
        log: String,
    },

    #[error("{}: {msg}{}", path.display(), tensor.as_ref().map(|t| format!(" (tensor '{t}')")).unwrap_or_default())]
    Checkpoint {
        path: PathBuf,
        tensor: Option<String>,
        msg: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: &'static str, shapes: &[&[usize]], msg: impl Into<String>) -> Error {
        Error::Shape {
            op,
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            msg: msg.into(),
        }
    }

    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(context: impl Into<String>, err: impl std::fmt::Debug) -> Error {
        Error::Cuda {
            context: context.into(),
            msg: format!("{err:?}"),
        }
    }

    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}
