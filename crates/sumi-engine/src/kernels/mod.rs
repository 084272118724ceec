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
mod bounded;
mod common;
mod conv;
#[cfg(feature = "cudnn")]
mod cudnn;
#[cfg(feature = "flash-attn")]
mod flash;
mod geglu;
mod math;
mod norm;
mod tiles;
mod winograd4;

use candle_core::{Result, Tensor};

use crate::profile;
pub use common::{enabled, KERNELS_ENV};

/// `softmax(q k^T / sqrt(d)) v` over `heads` heads of `[B, L, C]` inputs.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    profile::time("attention", q.device(), || {
        attention::attention(q, k, v, heads)
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

/// `lin` over the last dimension of `x` as one matrix product over all its rows: candle's `Linear`
/// runs a `[B, T, D]` input as B products, each packing the whole weight matrix again.
pub fn linear(lin: &candle_nn::Linear, x: &Tensor) -> Result<Tensor> {
    use candle_core::Module;
    profile::time("linear", x.device(), || {
        let mut dims = x.dims().to_vec();
        let d = dims.pop().unwrap_or(1);
        if dims.len() < 2 {
            return lin.forward(x);
        }
        let y = lin.forward(&x.reshape((x.elem_count() / d.max(1), d))?)?;
        dims.push(y.dim(1)?);
        y.reshape(dims)
    })
}

#[cfg(test)]
mod linear_tests {
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn linear_over_all_rows_matches_candles_batched_one() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
        let lin = candle_nn::Linear::new(w, Some(b));
        for dims in [vec![3, 4], vec![2, 3, 4], vec![2, 2, 3, 4]] {
            let x = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev).unwrap();
            let ours = super::linear(&lin, &x).unwrap();
            let theirs = lin.forward(&x).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let diff = (ours - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap();
            assert!(
                diff.max(0).unwrap().to_scalar::<f32>().unwrap() < 1e-5,
                "{dims:?}"
            );
        }
    }
}
