//! Timestep features and their embedding MLP (diffusers' `Timesteps` and `TimestepEmbedding`).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::linear::Linear;

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
            linear_1: super::linear::linear(cin, dim, vb.pp("linear_1"))?,
            linear_2: super::linear::linear(dim, dim, vb.pp("linear_2"))?,
        })
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear_2
            .forward(&candle_nn::ops::silu(&self.linear_1.forward(xs)?)?)
    }
}
