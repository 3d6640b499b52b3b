//! Multi-head self-attention over (batch, time, embed) sequences, as in PyTorch's
//! `nn.MultiheadAttention` with `batch_first=True` and one input for query, key and value.

use super::{Dropout, Linear, Module, ParamPath};
use crate::{Error, Result, Tensor};

pub struct MultiHeadSelfAttention {
    /// Projects to queries, keys and values at once: (3 * embed, embed).
    pub qkv: Linear,
    pub out: Linear,
    heads: usize,
    dropout: Option<Dropout>,
}

impl MultiHeadSelfAttention {
    pub fn new(
        path: &ParamPath,
        embed_dim: usize,
        heads: usize,
        dropout: f64,
    ) -> Result<MultiHeadSelfAttention> {
        if heads == 0 || embed_dim % heads != 0 {
            return Err(Error::invalid(
                "MultiHeadSelfAttention",
                format!("embed_dim {embed_dim} must be a positive multiple of heads {heads}"),
            ));
        }
        Ok(MultiHeadSelfAttention {
            qkv: Linear::new(&path.sub("qkv"), embed_dim, 3 * embed_dim, true)?,
            out: Linear::new(&path.sub("out"), embed_dim, embed_dim, true)?,
            heads,
            dropout: (dropout > 0.0)
                .then(|| Dropout::new(&path.sub("dropout"), dropout))
                .transpose()?,
        })
    }

    /// `x` of shape (B, T, E). `key_padding_mask`, if given, has shape (B, T) and is non-zero at
    /// padded positions, which no query attends to. Returns (B, T, E).
    pub fn forward_masked(&self, x: &Tensor, key_padding_mask: Option<&Tensor>) -> Result<Tensor> {
        let embed = self.qkv.in_features();
        if x.rank() != 3 || x.dims()[2] != embed {
            return Err(Error::shape(
                "MultiHeadSelfAttention",
                &[x.dims()],
                format!("expected (batch, time, {embed})"),
            ));
        }
        let (b, t) = (x.dims()[0], x.dims()[1]);
        let (h, d) = (self.heads, embed / self.heads);
        // (B, T, 3E) -> (3, B, H, T, d)
        let qkv = self
            .qkv
            .forward(x)?
            .reshape([b, t, 3, h, d])?
            .permute(&[2, 0, 3, 1, 4])?;
        let part = |i: usize| qkv.narrow(0, i, 1)?.reshape([b, h, t, d]);
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let mut scores = q
            .matmul(&k.transpose(-1, -2)?)?
            .mul_scalar(1.0 / (d as f64).sqrt())?;
        if let Some(mask) = key_padding_mask {
            if mask.dims() != [b, t] {
                return Err(Error::shape(
                    "MultiHeadSelfAttention",
                    &[x.dims(), mask.dims()],
                    "key_padding_mask must have shape (batch, time)",
                ));
            }
            // A large finite value rather than -inf keeps a fully padded row finite (uniform weights).
            scores = scores.masked_fill(&mask.reshape([b, 1, 1, t])?, -1e9)?;
        }
        let mut weights = scores.softmax(-1)?;
        if let Some(dropout) = &self.dropout {
            weights = dropout.forward(&weights)?;
        }
        // (B, H, T, d) -> (B, T, H, d) -> (B, T, E)
        let context = weights
            .matmul(&v)?
            .permute(&[0, 2, 1, 3])?
            .reshape([b, t, embed])?;
        self.out.forward(&context)
    }
}

impl Module for MultiHeadSelfAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_masked(x, None)
    }
}
