//! Multi-head attention with diffusers' projection names.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;

use crate::kernels;

/// Multi-head scaled dot-product attention over `[B, L, C]` inputs already projected; `bf16`
/// for a bf16 model (its products then take bf16 operands where the CPU has AVX512-BF16).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, bf16: bool) -> Result<Tensor> {
    kernels::attention(q, k, v, heads, bf16)
}

/// diffusers' `Attention` with `to_q`/`to_k`/`to_v` (no bias unless asked) and `to_out.0`.
#[derive(Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    /// Loads an attention layer of width `dim` whose keys/values come from width `kv_dim`.
    pub fn new(
        dim: usize,
        kv_dim: usize,
        heads: usize,
        qkv_bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let lin = |i, o, name: &str| {
            if qkv_bias {
                super::linear::linear(i, o, vb.pp(name))
            } else {
                super::linear::linear_no_bias(i, o, vb.pp(name))
            }
        };
        Ok(Self {
            to_q: lin(dim, dim, "to_q")?,
            to_k: lin(kv_dim, dim, "to_k")?,
            to_v: lin(kv_dim, dim, "to_v")?,
            to_out: super::linear::linear(dim, dim, vb.pp("to_out.0"))?,
            heads,
        })
    }

    /// Self-attention when `context` is `None`, cross-attention otherwise.
    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let ctx = context.unwrap_or(xs);
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(ctx)?;
        let v = self.to_v.forward(ctx)?;
        let bf16 = self.to_q.is_bf16();
        self.to_out
            .forward(&attention(&q, &k, &v, self.heads, bf16)?)
    }
}
