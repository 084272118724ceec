//! Fused attention on CUDA for f16 and bf16 through FlashAttention-2 (`candle-flash-attn`, the
//! `flash-attn` feature): the scores never leave on-chip memory, where [`super::bounded`] writes
//! them to GPU memory and reads them back three times per slice.

use candle_core::{DType, Result, Tensor};

/// The kernels' limits on the size of one head.
fn head_fits(d: usize) -> bool {
    d.is_multiple_of(8) && d <= 256
}

/// Whether `kernels` (the `SUMI_FLASH_KERNELS` this was built with, e.g. "hdim64_fp16
/// hdim96_fp16"; unset or "all" for every one) has the kernel for heads of size `d`: the rest are
/// stand-ins that stop the program (see scripts/nvcc-cached).
fn kernel_built(kernels: Option<&str>, d: usize, dtype: DType) -> bool {
    let Some(kernels) = kernels.filter(|k| *k != "all") else {
        return true;
    };
    let Some(size) = [32, 64, 96, 128, 160, 192, 224, 256]
        .into_iter()
        .find(|&s| d <= s)
    else {
        return false;
    };
    let name = format!(
        "hdim{size}_{}",
        if dtype == DType::BF16 { "bf16" } else { "fp16" }
    );
    kernels.split_whitespace().any(|k| k == name)
}

/// `softmax(q k^T / sqrt(d)) v` over `heads` heads of `[B, L, C]` inputs, or `None` where the
/// kernels do not apply (not CUDA, not f16/bf16, a head size they do not cover).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    let (b, lq, c) = q.dims3()?;
    let lk = k.dim(1)?;
    let half = matches!(q.dtype(), DType::F16 | DType::BF16);
    if !q.device().is_cuda() || !half || heads == 0 || !c.is_multiple_of(heads) {
        return Ok(None);
    }
    let d = c / heads;
    if !head_fits(d) || !kernel_built(option_env!("SUMI_FLASH_KERNELS"), d, q.dtype()) {
        return Ok(None);
    }
    // `[B, L, C]` is already the kernels' `[B, L, heads, d]` layout: no transposes.
    let split = |x: &Tensor, l: usize| x.contiguous()?.reshape((b, l, heads, d));
    let scale = (d as f32).powf(-0.5);
    let out = candle_flash_attn::flash_attn(
        &split(q, lq)?,
        &split(k, lk)?,
        &split(v, lk)?,
        scale,
        false,
    )?;
    Ok(Some(out.reshape((b, lq, c))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_sizes_of_the_sd_models_fit() {
        // SD1.5: 40, 80, 160; SDXL and SD2: 64.
        assert!([40, 64, 80, 160].into_iter().all(head_fits));
        assert!(!head_fits(36) && !head_fits(264));
    }

    #[test]
    fn only_the_kernels_built_are_used() {
        let sd = Some("hdim64_fp16 hdim96_fp16 hdim160_fp16");
        for d in [40, 64, 80, 160] {
            assert!(kernel_built(sd, d, DType::F16), "{d}");
            assert!(!kernel_built(sd, d, DType::BF16), "{d}");
            assert!(kernel_built(None, d, DType::BF16) && kernel_built(Some("all"), d, DType::F16));
        }
        assert!(!kernel_built(sd, 32, DType::F16) && !kernel_built(sd, 128, DType::F16));
        assert!(!kernel_built(sd, 512, DType::F16));
    }
}
