//! CPU kernels for the hot operations of the UNet and VAE where candle's generic CPU paths are
//! slow: 2D convolution as im2col over row tiles plus one `gemm` call per tile that writes
//! straight into the NCHW output, or as Winograd F(2x2,3x3) / F(4x4,3x3) for the large 3x3
//! ones; group norm (optionally fused with SiLU) in two passes; attention over blocks of queries
//! that never holds the whole score matrix; and the feed-forward's GEGLU in one pass. Each kernel
//! falls back to candle off the CPU or for dtypes other than f32 (attention and convolution in
//! memory-bounded slices, `bounded`), and is tested against candle's own op. On CUDA, optional
//! features add FlashAttention (`flash`) and cuDNN convolutions (`cudnn`). Every entry point is
//! timed by [`crate::profile`] when `SUMI_PROFILE=1`.

mod attention;
mod bf16_gemm;
mod bf16_rows;
mod bounded;
mod common;
mod conv;
#[cfg(feature = "cudnn")]
mod cudnn;
#[cfg(feature = "flash-attn")]
mod flash;
mod geglu;
mod gelu;
mod linear;
mod math;
mod norm;
mod quantized;
mod tiles;
mod token_norm;
mod winograd4;

use candle_core::{Result, Tensor};

use crate::profile;
pub use common::{enabled, KERNELS_ENV};
pub use token_norm::RopeTables;

/// `softmax(q k^T / sqrt(d)) v` over `heads` heads of `[B, L, C]` inputs; `bf16` for a bf16
/// model (bf16 operands, f32 sums, where the CPU has AVX512-BF16).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, bf16: bool) -> Result<Tensor> {
    profile::time("attention", q.device(), || {
        attention::attention(q, k, v, heads, bf16)
    })
}

/// `x q^T` for a block-quantized CPU weight `q` and an f32 `x`, from the blocks as stored (no
/// repacked copy kept), plus `extra`'s low-rank `t u^T` in the same product; `None` where it
/// does not apply.
pub fn quantized_linear(
    q: &candle_core::quantized::QTensor,
    x: &Tensor,
    extra: Option<(&Tensor, &Tensor)>,
) -> Result<Option<Tensor>> {
    profile::time("quantized linear", x.device(), || {
        quantized::linear(q, x, extra)
    })
}

/// `conv2d(x, w) + bias` with zero padding.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    profile::time("convolution", x.device(), || {
        conv::conv2d(x, w, bias, stride, pad)
    })
}

/// The feed-forward's GEGLU.
pub fn geglu(proj: &Tensor) -> Result<Tensor> {
    profile::time("GEGLU", proj.device(), || geglu::geglu(proj))
}

/// The tanh-approximated GELU (Flux's feed-forwards, T5's gated-GELU).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    profile::time("GELU", x.device(), || gelu::gelu_tanh(x))
}

/// `layer_norm(x) * (1 + scale) + shift` over the last dimension of `[B, L, C]` `x`, with
/// per-sample `[B, C]` `shift` and `scale` (a transformer block's modulation).
pub fn layer_norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    profile::time("layer norm", x.device(), || {
        token_norm::layer_norm_modulate(x, shift, scale, eps)
    })
}

/// Each head's RMS norm of `[B, L, C]` queries or keys, then their rotary embedding.
pub fn rms_norm_rope(
    x: &Tensor,
    weight: &Tensor,
    rope: &RopeTables,
    heads: usize,
    eps: f64,
) -> Result<Tensor> {
    profile::time("qk norm and rope", x.device(), || {
        token_norm::rms_norm_rope(x, weight, rope, heads, eps)
    })
}

/// `GroupNorm(groups, eps)` with per-channel `weight` and `bias`, then SiLU when `silu`.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    eps: f64,
    weight: &Tensor,
    bias: &Tensor,
    silu: bool,
) -> Result<Tensor> {
    profile::time("group norm", x.device(), || {
        norm::group_norm(x, groups, eps, weight, bias, silu)
    })
}

/// `x w^T + bias` over the last dimension of `x` as one matrix product over all its rows
/// (candle's `Linear` runs a `[B, T, D]` input as B products, each packing the whole weight
/// matrix again); a bf16 `w` with an f32 `x` on the CPU runs through [`bf16_gemm`].
pub fn linear(w: &Tensor, bias: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
    profile::time("linear", x.device(), || linear::linear(w, bias, x))
}
