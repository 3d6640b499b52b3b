//! Evaluation: features of a frozen model, linear probes, kNN, robustness (RDP, RGS).
