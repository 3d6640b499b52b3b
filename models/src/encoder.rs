//! What every modality encoder returns: the pooled feature `Z_M` and the per-time-step features
//! it was pooled from.

use engine::Tensor;

/// The output of an encoder (E_R, E_S, E_P).
///
/// `per_time` is `(B, T', d)`: one d-dimensional feature per (possibly strided) time step, in
/// the same space as `pooled`; `pooled` is `(B, d)`, the mean of `per_time` over time (each
/// encoder ends in a linear map, which commutes with the mean, so pooling before or after it
/// is the same). The AMG gate runs on `pooled` for fusion and on `per_time` for gate values
/// over time (paper 000, Fig. 7).
#[derive(Clone, Debug)]
pub struct EncoderOutput {
    pub pooled: Tensor,
    pub per_time: Tensor,
}
