//! Adaptive Modality Gating (paper 000, Eq. 4 and 5).
