//! Plots: t-SNE and the charts of the reports (PNG and SVG).
//!
//! - [`tsne`](mod@tsne): exact t-SNE (van der Maaten & Hinton 2008) in f64, parallel over rows.
//! - [`charts`]: the paper's figures as PNG + SVG files through `plotters`: the embedding scatter
//!   (Fig. 6), gate values over time (Fig. 7), line charts for accuracy versus degradation
//!   (Fig. 4) and loss curves. Text is drawn with DejaVu Sans embedded in the binary, so the
//!   charts render the same on a machine with no fonts installed.
//!
//! Everything takes plain data (slices of numbers and strings) and writes files; nothing here
//! knows about models or datasets. See docs/plots.md.

pub mod charts;
pub mod tsne;

use std::path::PathBuf;

pub use charts::{
    class_color, embedding_scatter, gates_over_time, lines, CHART_SIZE, MODALITY_NAMES,
    SCATTER_SIZE,
};
pub use tsne::{tsne, tsne_traced, TsneConfig, TsneTrace};

/// Errors of the plotting library. Bad input is always reported, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The data given cannot be plotted or embedded (empty, NaN, mismatched lengths, ...).
    #[error("invalid plot input: {0}")]
    Invalid(String),
    /// The drawing library failed.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// Writing or encoding an output file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl PlotError {
    /// An [`PlotError::Invalid`] with the given message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        PlotError::Invalid(msg.into())
    }
}
