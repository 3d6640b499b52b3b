//! Multi-layer perceptron: Linear -> [BatchNorm] -> activation -> [Dropout] for each hidden layer,
//! and a final Linear. Covers the projection heads (2 layers, BN, ReLU) and plain classifiers.

use super::{BatchNorm, BatchNormConfig, Dropout, Linear, Module, ParamPath};
use crate::{Error, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    LeakyRelu(f64),
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
            Activation::LeakyRelu(s) => x.leaky_relu(s),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MlpConfig {
    /// Layer widths: input, hidden..., output (at least two entries).
    pub dims: Vec<usize>,
    pub activation: Activation,
    /// Batch norm after each hidden Linear (inputs must then be (N, features)).
    pub batch_norm: bool,
    /// Dropout after each hidden activation (0 for none).
    pub dropout: f64,
}

impl MlpConfig {
    pub fn new(dims: &[usize]) -> MlpConfig {
        MlpConfig {
            dims: dims.to_vec(),
            activation: Activation::Relu,
            batch_norm: false,
            dropout: 0.0,
        }
    }
}

struct Hidden {
    linear: Linear,
    norm: Option<BatchNorm>,
    dropout: Option<Dropout>,
}

pub struct Mlp {
    hidden: Vec<Hidden>,
    output: Linear,
    activation: Activation,
}

impl Mlp {
    /// Layers are registered as `layers.<i>.linear`, `layers.<i>.norm`, `layers.<i>.dropout`, `output`.
    pub fn new(path: &ParamPath, config: &MlpConfig) -> Result<Mlp> {
        let dims = &config.dims;
        if dims.len() < 2 || dims.contains(&0) {
            return Err(Error::invalid(
                "Mlp",
                format!("need at least an input and an output width, all > 0; got {dims:?}"),
            ));
        }
        let mut hidden = Vec::new();
        for i in 0..dims.len() - 2 {
            let p = path.sub("layers").sub(&i.to_string());
            // A bias before batch norm would be cancelled by the mean subtraction.
            let linear = Linear::new(&p.sub("linear"), dims[i], dims[i + 1], !config.batch_norm)?;
            let norm = config
                .batch_norm
                .then(|| BatchNorm::new_1d(&p.sub("norm"), dims[i + 1], BatchNormConfig::default()))
                .transpose()?;
            let dropout = (config.dropout > 0.0)
                .then(|| Dropout::new(&p.sub("dropout"), config.dropout))
                .transpose()?;
            hidden.push(Hidden {
                linear,
                norm,
                dropout,
            });
        }
        let output = Linear::new(
            &path.sub("output"),
            dims[dims.len() - 2],
            dims[dims.len() - 1],
            true,
        )?;
        Ok(Mlp {
            hidden,
            output,
            activation: config.activation,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = layer.linear.forward(&h)?;
            if let Some(norm) = &layer.norm {
                h = norm.forward(&h)?;
            }
            h = self.activation.apply(&h)?;
            if let Some(dropout) = &layer.dropout {
                h = dropout.forward(&h)?;
            }
        }
        self.output.forward(&h)
    }
}
