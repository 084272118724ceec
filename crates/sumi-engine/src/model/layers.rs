//! Building blocks shared by the UNet and the VAE: resnet blocks, attention, transformer blocks,
//! timestep embeddings, up/down sampling. Tensor names follow diffusers.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use crate::kernels;

/// A square-kernel 2D convolution with bias, run by [`kernels::conv2d`].
#[derive(Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    pad: usize,
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::conv2d(xs, &self.weight, Some(&self.bias), self.stride, self.pad)
    }
}

/// A 2D convolution with diffusers' weight names (`weight`, `bias`).
pub fn conv2d(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    Ok(Conv2d {
        weight: vb.get((cout, cin, k, k), "weight")?,
        bias: vb.get(cout, "bias")?,
        stride,
        pad,
    })
}

/// Group norm with learned affine parameters, run by [`kernels::group_norm`].
#[derive(Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// The normalised input followed by SiLU, in one kernel.
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::group_norm(xs, self.groups, self.eps, &self.weight, &self.bias, true)
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::group_norm(xs, self.groups, self.eps, &self.weight, &self.bias, false)
    }
}

/// Group norm with learned affine parameters (`weight`, `bias`).
pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        candle_core::bail!("group norm: {channels} channels do not split into {groups} groups");
    }
    Ok(GroupNorm {
        weight: vb.get(channels, "weight")?,
        bias: vb.get(channels, "bias")?,
        groups,
        eps,
    })
}

/// The sinusoidal timestep features of diffusers' `Timesteps` (computed in f32).
pub fn timestep_features(
    t: &Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Result<Tensor> {
    let half = dim / 2;
    let exponent = (Tensor::arange(0u32, half as u32, t.device())?.to_dtype(DType::F32)?
        * (-(10000f64.ln()) / (half as f64 - freq_shift)))?;
    let freqs = exponent.exp()?;
    let args = t
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs.unsqueeze(0)?)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[cos, sin], D::Minus1)?
    } else {
        Tensor::cat(&[sin, cos], D::Minus1)?
    };
    if dim % 2 == 1 {
        emb.pad_with_zeros(D::Minus1, 0, 1)
    } else {
        Ok(emb)
    }
}

/// diffusers' `TimestepEmbedding`: linear, SiLU, linear.
#[derive(Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    /// Loads `linear_1`/`linear_2` under `vb`.
    pub fn new(cin: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: candle_nn::linear(cin, dim, vb.pp("linear_1"))?,
            linear_2: candle_nn::linear(dim, dim, vb.pp("linear_2"))?,
        })
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear_2
            .forward(&candle_nn::ops::silu(&self.linear_1.forward(xs)?)?)
    }
}

/// diffusers' `ResnetBlock2D` (pre-norm, optional time-embedding projection and 1x1 shortcut).
#[derive(Debug)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// Loads a block mapping `cin` to `cout` channels; `temb` is the time-embedding width, if any.
    pub fn new(
        cin: usize,
        cout: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(groups, cin, eps, vb.pp("norm1"))?,
            conv1: conv2d(cin, cout, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj: match temb {
                Some(t) => Some(candle_nn::linear(t, cout, vb.pp("time_emb_proj"))?),
                None => None,
            },
            norm2: group_norm(groups, cout, eps, vb.pp("norm2"))?,
            conv2: conv2d(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut: if cin != cout {
                Some(conv2d(cin, cout, 1, 1, 0, vb.pp("conv_shortcut"))?)
            } else {
                None
            },
        })
    }

    /// Applies the block; `temb` is the (already computed) time embedding for UNet blocks.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward_silu(xs)?)?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj
                .forward(&candle_nn::ops::silu(temb)?)?
                .unsqueeze(2)?
                .unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(xs)?,
            None => xs.clone(),
        };
        skip + h
    }
}

/// Multi-head scaled dot-product attention over `[B, L, C]` inputs already projected.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    kernels::attention(q, k, v, heads)
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
                candle_nn::linear(i, o, vb.pp(name))
            } else {
                candle_nn::linear_no_bias(i, o, vb.pp(name))
            }
        };
        Ok(Self {
            to_q: lin(dim, dim, "to_q")?,
            to_k: lin(kv_dim, dim, "to_k")?,
            to_v: lin(kv_dim, dim, "to_v")?,
            to_out: candle_nn::linear(dim, dim, vb.pp("to_out.0"))?,
            heads,
        })
    }

    /// Self-attention when `context` is `None`, cross-attention otherwise.
    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let ctx = context.unwrap_or(xs);
        let q = kernels::linear(&self.to_q, xs)?;
        let k = kernels::linear(&self.to_k, ctx)?;
        let v = kernels::linear(&self.to_v, ctx)?;
        kernels::linear(&self.to_out, &attention(&q, &k, &v, self.heads)?)
    }
}

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
            ff_in: candle_nn::linear(dim, inner * 2, vb.pp("ff.net.0.proj"))?,
            ff_out: candle_nn::linear(inner, dim, vb.pp("ff.net.2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self
            .attn2
            .forward(&self.norm2.forward(&xs)?, Some(context))?
            + xs)?;
        let proj = kernels::linear(&self.ff_in, &self.norm3.forward(&xs)?)?;
        let ff = kernels::linear(&self.ff_out, &kernels::geglu(&proj)?)?;
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
                Projection::Linear(candle_nn::linear(c, c, vb.pp(name))?)
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
            Projection::Linear(lin) => kernels::linear(lin, &to_seq(normed)?)?,
        };
        for block in &self.blocks {
            hs = block.forward(&hs, context)?;
        }
        let to_img = |t: Tensor| t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous();
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_img(hs)?)?,
            Projection::Linear(lin) => to_img(kernels::linear(lin, &hs)?)?,
        };
        out + xs
    }
}

/// Stride-2 3x3 convolution (diffusers' `Downsample2D` with a conv).
#[derive(Debug)]
pub struct Downsample(Conv2d);

impl Downsample {
    /// Loads `conv` under `vb`.
    pub fn new(c: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self(conv2d(c, c, 3, 2, padding, vb.pp("conv"))?))
    }
}

impl Module for Downsample {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.0.forward(xs)
    }
}

/// Nearest 2x upsampling followed by a 3x3 convolution (diffusers' `Upsample2D`).
#[derive(Debug)]
pub struct Upsample(Conv2d);

impl Upsample {
    /// Loads `conv` under `vb`.
    pub fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self(conv2d(c, c, 3, 1, 1, vb.pp("conv"))?))
    }

    /// Upsamples to `size` (the matching skip's spatial size) or to twice the input.
    pub fn forward(&self, xs: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = xs.dims4()?;
        let (th, tw) = size.unwrap_or((h * 2, w * 2));
        self.0.forward(&xs.upsample_nearest2d(th, tw)?)
    }
}
