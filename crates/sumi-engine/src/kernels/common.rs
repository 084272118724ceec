//! What the kernel files share: whether the kernels are on, the optional GPU kernel families
//! that give way after an error, and small helpers for CPU tensors.

use std::sync::OnceLock;

use candle_core::{Result, Tensor};

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
pub(crate) static FLASH: GpuKernel = GpuKernel::new("FlashAttention");

#[cfg(feature = "cudnn")]
pub(crate) static CUDNN: GpuKernel = GpuKernel::new("cuDNN convolution");

#[cfg(feature = "flash-attn")]
pub(crate) fn flash_enabled() -> bool {
    enabled() && kernels_setting() != "no-flash"
}

#[cfg(feature = "cudnn")]
pub(crate) fn cudnn_enabled() -> bool {
    enabled() && kernels_setting() != "no-cudnn"
}

/// An optional GPU kernel family (FlashAttention, cuDNN) that turns itself off for the rest of the
/// run after its first error, which it logs: a driver or library that refuses it costs speed, not
/// the image.
#[cfg(any(feature = "flash-attn", feature = "cudnn"))]
pub(crate) struct GpuKernel {
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
    pub(crate) fn try_run(&self, run: impl FnOnce() -> Result<Option<Tensor>>) -> Option<Tensor> {
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

/// `y + bias` for an NCHW `y` and a per-channel `bias`.
pub(crate) fn add_channel_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(bias) => y.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

/// Runs `f` on the f32 contents of a contiguous CPU tensor.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
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

/// Runs `f` on the bf16 contents of a contiguous CPU tensor.
pub(crate) fn with_bf16<R>(t: &Tensor, f: impl FnOnce(&[half::bf16]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("with_bf16: not a CPU tensor");
    };
    let data = cpu.as_slice::<half::bf16>()?;
    match layout.contiguous_offsets() {
        Some((a, b)) => f(&data[a..b]),
        None => candle_core::bail!("with_bf16: not contiguous"),
    }
}

/// The gemm parallelism matching candle's CPU thread count.
pub(crate) fn parallelism() -> gemm::Parallelism {
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
