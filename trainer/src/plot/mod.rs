//! Plots: t-SNE and the charts of the reports (PNG and SVG).
