//! The temporal transformer encoder of E_P: pre-norm layers over the per-frame features.
//!
//! Pre-norm (`x + attn(LN(x))`, `x + mlp(LN(x))`, a final LayerNorm) rather than the original
//! post-norm: the residual path stays an identity, which trains without a learning-rate
//! warm-up at these small depths and is what ViT-style encoders use.

use engine::nn::{Dropout, LayerNorm, Linear, Module, MultiHeadSelfAttention, ParamPath};
use engine::{Result, Tensor};

const LN_EPS: f64 = 1e-5;

/// One layer: `x + drop(attn(norm1(x)))`, then `x + drop(fc2(gelu(fc1(norm2(x)))))`.
struct Layer {
    norm1: LayerNorm,
    attn: MultiHeadSelfAttention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    dropout: Option<Dropout>,
}

impl Layer {
    fn new(path: &ParamPath, d: usize, heads: usize, mlp_ratio: usize, p: f64) -> Result<Layer> {
        Ok(Layer {
            norm1: LayerNorm::new(&path.sub("norm1"), &[d], LN_EPS, true)?,
            attn: MultiHeadSelfAttention::new(&path.sub("attn"), d, heads, p)?,
            norm2: LayerNorm::new(&path.sub("norm2"), &[d], LN_EPS, true)?,
            fc1: Linear::new(&path.sub("mlp").sub("fc1"), d, d * mlp_ratio, true)?,
            fc2: Linear::new(&path.sub("mlp").sub("fc2"), d * mlp_ratio, d, true)?,
            dropout: (p > 0.0)
                .then(|| Dropout::new(&path.sub("dropout"), p))
                .transpose()?,
        })
    }

    fn drop(&self, x: Tensor) -> Result<Tensor> {
        match &self.dropout {
            Some(d) => d.forward(&x),
            None => Ok(x),
        }
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let a = self.attn.forward_masked(&self.norm1.forward(x)?, mask)?;
        let x = x.add(&self.drop(a)?)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?.gelu()?;
        x.add(&self.drop(self.fc2.forward(&h)?)?)
    }
}

/// `layers` pre-norm transformer layers and a final LayerNorm over `(B, T, d)` sequences.
/// Parameters `layer<i>.{norm1,attn.qkv,attn.out,norm2,mlp.fc1,mlp.fc2}.*`, `norm.*`.
pub struct TemporalEncoder {
    layers: Vec<Layer>,
    norm: LayerNorm,
}

impl TemporalEncoder {
    /// `d` must be a multiple of `heads` (checked by the attention layer).
    pub fn new(
        path: &ParamPath,
        d: usize,
        heads: usize,
        layers: usize,
        mlp_ratio: usize,
        dropout: f64,
    ) -> Result<TemporalEncoder> {
        let layers = (0..layers)
            .map(|i| {
                Layer::new(
                    &path.sub(&format!("layer{i}")),
                    d,
                    heads,
                    mlp_ratio,
                    dropout,
                )
            })
            .collect::<Result<_>>()?;
        Ok(TemporalEncoder {
            layers,
            norm: LayerNorm::new(&path.sub("norm"), &[d], LN_EPS, true)?,
        })
    }

    /// `x` `(B, T, d)`; `mask` `(B, T)` non-zero at frames no query may attend to.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h, mask)?;
        }
        self.norm.forward(&h)
    }
}
