//! Building blocks for models: the parameter store (named trainable tensors and buffers, shared
//! by the layers that own them), the `Module` convention, the train/eval flag and initialisers.

pub mod attention;
pub mod batchnorm;
pub mod conv3d;
pub mod dropout;
pub mod init;
pub mod layernorm;
pub mod linear;
pub mod mlp;
pub mod params;

pub use attention::MultiHeadSelfAttention;
pub use batchnorm::{BatchNorm, BatchNormConfig};
pub use conv3d::Conv3d;
pub use dropout::Dropout;
pub use layernorm::LayerNorm;
pub use linear::Linear;
pub use mlp::{Activation, Mlp, MlpConfig};
pub use params::{ParamPath, ParamStore, TrainingFlag};

use crate::{Result, Tensor};

/// A layer or model: a function of one tensor whose parameters live in a [`ParamStore`].
///
/// Layers are built from a [`ParamPath`] (which registers their parameters under a name) and
/// read the store's [`TrainingFlag`] where train and eval differ (dropout, batch norm).
pub trait Module {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}
