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
mod conv;
#[cfg(feature = "cudnn")]
mod cudnn;
#[cfg(feature = "flash-attn")]
mod flash;
mod geglu;
mod norm;
mod winograd4;

use std::sync::OnceLock;

use candle_core::{Result, Tensor};

use crate::profile;

/// Set to `candle` to run candle's own ops instead of these kernels, or to `no-flash` or
/// `no-cudnn` to leave out FlashAttention or the cuDNN convolutions only (for A/B timing).
pub const KERNELS_ENV: &str = "SUMI_KERNELS";

fn kernels_setting() -> &'static str {
    static SETTING: OnceLock<String> = OnceLock::new();
    SETTING.get_or_init(|| std::env::var(KERNELS_ENV).unwrap_or_default())
}

/// Whether the kernels are on (the default) or `SUMI_KERNELS=candle` turned them off.
pub fn enabled() -> bool {
    kernels_setting() != "candle"
}

#[cfg(feature = "flash-attn")]
static FLASH: GpuKernel = GpuKernel::new("FlashAttention");

#[cfg(feature = "cudnn")]
static CUDNN: GpuKernel = GpuKernel::new("cuDNN convolution");

#[cfg(feature = "flash-attn")]
fn flash_enabled() -> bool {
    enabled() && kernels_setting() != "no-flash"
}

#[cfg(feature = "cudnn")]
fn cudnn_enabled() -> bool {
    enabled() && kernels_setting() != "no-cudnn"
}

/// An optional GPU kernel family (FlashAttention, cuDNN) that turns itself off for the rest of the
/// run after its first error, which it logs: a driver or library that refuses it costs speed, not
/// the image.
#[cfg(any(feature = "flash-attn", feature = "cudnn"))]
struct GpuKernel {
    name: &'static str,
    failed: std::sync::atomic::AtomicBool,
}

#[cfg(any(feature = "flash-attn", feature = "cudnn"))]
impl GpuKernel {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `run`'s result, or `None` (fall back to candle's ops) where it declined or failed.
    fn try_run(&self, run: impl FnOnce() -> Result<Option<Tensor>>) -> Option<Tensor> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.failed.load(Relaxed) {
            return None;
        }
        run().unwrap_or_else(|e| {
            if !self.failed.swap(true, Relaxed) {
                tracing::warn!(
                    "{} failed ({e}); using candle's ops instead from now on",
                    self.name
                );
            }
            None
        })
    }
}

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

/// `y + bias` for an NCHW `y` and a per-channel `bias`.
fn add_channel_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(bias) => y.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

/// Runs `f` on the f32 contents of a contiguous CPU tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("with_f32: not a CPU tensor");
    };
    let data = cpu.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((a, b)) => f(&data[a..b]),
        None => candle_core::bail!("with_f32: not contiguous"),
    }
}

/// The gemm parallelism matching candle's CPU thread count.
fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

#[cfg(all(test, any(feature = "flash-attn", feature = "cudnn")))]
mod tests {
    use super::*;

    #[test]
    fn a_failing_gpu_kernel_gives_way_for_the_rest_of_the_run() {
        let kernel = GpuKernel::new("test");
        let t = Tensor::zeros(2, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        assert!(kernel.try_run(|| Ok(None)).is_none());
        assert!(kernel.try_run(|| Ok(Some(t.clone()))).is_some());
        assert!(kernel.try_run(|| candle_core::bail!("refused")).is_none());
        assert!(
            kernel.try_run(|| Ok(Some(t.clone()))).is_none(),
            "off after its first error"
        );
    }
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
