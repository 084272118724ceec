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
pub struct Downsample {
    conv: Conv2d,
    /// Pad one zero row and column at the bottom and right first (the VAE encoder's layout,
    /// whose conv has no padding of its own).
    pad_after: bool,
}

impl Downsample {
    /// Loads `conv` under `vb`, padded by `padding` on every side (the UNet's layout).
    pub fn new(c: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(c, c, 3, 2, padding, vb.pp("conv"))?,
            pad_after: false,
        })
    }

    /// Loads `conv` under `vb` for the VAE encoder: no padding in the conv, one zero row and
    /// column added at the bottom and right before it.
    pub fn padded_after(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(c, c, 3, 2, 0, vb.pp("conv"))?,
            pad_after: true,
        })
    }
}

impl Module for Downsample {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.pad_after {
            let xs = xs.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
            self.conv.forward(&xs)
        } else {
            self.conv.forward(xs)
        }
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
