//! Evaluation: features of a frozen model, linear probes, kNN, robustness (RDP, RGS).
//!
//! - [`extract_features`]: one pass of a (possibly degraded) loader through a frozen model:
//!   Z_fusion, each sensor's Z_M, the AMG gates, labels.
//! - [`linear_probe`]: a linear classifier on fixed features (paper 000's protocol).
//! - [`knn_top1`]: the weighted kNN protocol (paper 002).
//! - [`label_subset`]: the labelled fraction of the semi-supervised protocols.
//! - [`dropout_scenarios`], [`corruption_scenarios`]: the conditions of paper 000 Tables II
//!   and III as loader degradations; [`rdp`] and [`rgs`] score them.
//!
//! Every accuracy is a percentage in [0, 100]. docs/method.md ("Evaluation protocols") gives
//! the protocols and the formulas.

pub mod features;
pub mod knn;
pub mod metrics;
pub mod probe;
pub mod robustness;

pub use features::{extract_features, Features};
pub use knn::{knn_predict, knn_top1, KNN_DEFAULT_K, KNN_DEFAULT_T};
pub use metrics::{average_rdp, average_rgs, dataset_labels, label_subset, rdp, rgs, top1};
pub use probe::{feature_stats, linear_probe, ProbeConfig, ProbeResult};
pub use robustness::{applicable, corruption_scenarios, dropout_scenarios, Scenario};
