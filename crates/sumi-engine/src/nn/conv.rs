//! Convolutions with diffusers' weight names, and the up/down sampling layers built on them.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

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
