//! diffusers' `Transformer2DModel` for spatial latents with text cross-attention, and its blocks.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::linear::Linear;

use super::attention::Attention;
use super::conv::{conv2d, Conv2d};
use super::norm::{group_norm, GroupNorm};
use crate::kernels;

/// diffusers' `BasicTransformerBlock`: self-attention, cross-attention and a GEGLU feed-forward.
#[derive(Debug)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

impl TransformerBlock {
    fn new(dim: usize, heads: usize, ctx_dim: usize, vb: VarBuilder) -> Result<Self> {
        let inner = dim * 4;
        Ok(Self {
            norm1: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, false, vb.pp("attn1"))?,
            norm2: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(dim, ctx_dim, heads, false, vb.pp("attn2"))?,
            norm3: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff_in: super::linear::linear(dim, inner * 2, vb.pp("ff.net.0.proj"))?,
            ff_out: super::linear::linear(inner, dim, vb.pp("ff.net.2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self
            .attn2
            .forward(&self.norm2.forward(&xs)?, Some(context))?
            + xs)?;
        let proj = self.ff_in.forward(&self.norm3.forward(&xs)?)?;
        let ff = self.ff_out.forward(&kernels::geglu(&proj)?)?;
        ff + xs
    }
}

/// Input/output projection of a `Transformer2DModel`: 1x1 conv (SD1) or linear (SD2, SDXL).
#[derive(Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// diffusers' `Transformer2DModel` for spatial latents with text cross-attention.
#[derive(Debug)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

/// Shape parameters of a `SpatialTransformer`.
pub struct TransformerShape {
    /// Channel width of the latent features.
    pub channels: usize,
    /// Number of attention heads.
    pub heads: usize,
    /// Number of stacked transformer blocks.
    pub layers: usize,
    /// Width of the text context.
    pub context_dim: usize,
    /// Group-norm groups.
    pub groups: usize,
    /// Linear (true) or 1x1-conv (false) in/out projections.
    pub linear_projection: bool,
}

impl SpatialTransformer {
    /// Loads the transformer under `vb`.
    pub fn new(s: &TransformerShape, vb: VarBuilder) -> Result<Self> {
        let c = s.channels;
        let proj = |name: &str| -> Result<Projection> {
            Ok(if s.linear_projection {
                Projection::Linear(super::linear::linear(c, c, vb.pp(name))?)
            } else {
                Projection::Conv(conv2d(c, c, 1, 1, 0, vb.pp(name))?)
            })
        };
        let blocks = (0..s.layers)
            .map(|i| {
                TransformerBlock::new(
                    c,
                    s.heads,
                    s.context_dim,
                    vb.pp(format!("transformer_blocks.{i}")),
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            norm: group_norm(s.groups, c, 1e-6, vb.pp("norm"))?,
            proj_in: proj("proj_in")?,
            blocks,
            proj_out: proj("proj_out")?,
        })
    }

    /// Applies the transformer to `[B, C, H, W]` features with `[B, L, D]` context.
    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let normed = self.norm.forward(xs)?;
        let to_seq = |t: Tensor| t.permute((0, 2, 3, 1))?.reshape((b, h * w, c));
        let mut hs = match &self.proj_in {
            Projection::Conv(conv) => to_seq(conv.forward(&normed)?)?,
            Projection::Linear(lin) => lin.forward(&to_seq(normed)?)?,
        };
        for block in &self.blocks {
            hs = block.forward(&hs, context)?;
        }
        let to_img = |t: Tensor| t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous();
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_img(hs)?)?,
            Projection::Linear(lin) => to_img(lin.forward(&hs)?)?,
        };
        out + xs
    }
}
