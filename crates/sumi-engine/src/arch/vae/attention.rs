//! The single-head spatial self-attention of the VAE's mid blocks.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::Linear;

use crate::nn::{attention, group_norm, GroupNorm};

/// Single-head self-attention over spatial positions (the VAE mid block's attention).
#[derive(Debug)]
pub(crate) struct SpatialSelfAttention {
    norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialSelfAttention {
    /// Loads the layer (diffusers names: `group_norm`, `to_q`, `to_k`, `to_v`, `to_out.0`).
    pub(crate) fn new(c: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: group_norm(groups, c, 1e-6, vb.pp("group_norm"))?,
            to_q: crate::nn::linear(c, c, vb.pp("to_q"))?,
            to_k: crate::nn::linear(c, c, vb.pp("to_k"))?,
            to_v: crate::nn::linear(c, c, vb.pp("to_v"))?,
            to_out: crate::nn::linear(c, c, vb.pp("to_out.0"))?,
        })
    }
}

impl Module for SpatialSelfAttention {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let seq = self
            .norm
            .forward(xs)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.to_q.forward(&seq)?;
        let k = self.to_k.forward(&seq)?;
        let v = self.to_v.forward(&seq)?;
        let bf16 = self.to_q.is_bf16();
        let out = self.to_out.forward(&attention(&q, &k, &v, 1, bf16)?)?;
        let out = out.transpose(1, 2)?.reshape((b, c, h, w))?;
        out + xs
    }
}
