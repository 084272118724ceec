//! Sampled latents to pixels, refusing NaN and infinite results with a hint.

use candle_core::{DType, Tensor};

use crate::model::Model;
use crate::{Error, Result};

/// Decodes a sampled latent to an image tensor `[1, 3, H, W]` in about [-1, 1]; fails with a
/// clear message when the decoder produced NaN or infinite values (a black image otherwise).
pub fn decode(model: &Model, latent: &Tensor) -> Result<Tensor> {
    let image = model
        .vae
        .decode(&latent.to_dtype(model.dtype)?)?
        .to_dtype(DType::F32)?;
    check_finite(&image, model.dtype, &model.info.path)?;
    Ok(image)
}

/// Whether every value of `t` is finite (NaN * 0 and inf * 0 are NaN, finite * 0 is 0: one
/// reduction finds both).
fn all_finite(t: &Tensor) -> Result<bool> {
    let sum = (t.to_dtype(DType::F32)? * 0.0)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(sum.is_finite())
}

/// Errors when the sampled latent holds NaN or infinity: the denoising network, not the VAE,
/// produced them, so the message names the network and what usually fixes it.
pub(super) fn check_sampled(latent: &Tensor, model: &Model) -> Result<()> {
    if all_finite(latent)? {
        return Ok(());
    }
    let hint = if model.dtype == DType::F32 {
        "its weights are broken (NaN or huge values); re-download the model"
    } else {
        "it overflowed in 16-bit precision; run it in f32 (--dtype f32), or check the weights"
    };
    Err(Error::model(
        &model.info.path,
        format!(
            "sampling produced NaN or infinite values: the denoising network failed, not the \
             VAE; {hint}"
        ),
    ))
}

/// Errors when `image` holds NaN or infinity, suggesting what usually fixes it.
pub fn check_finite(image: &Tensor, dtype: DType, model: &std::path::Path) -> Result<()> {
    if all_finite(image)? {
        return Ok(());
    }
    let hint = if dtype == DType::F32 {
        "the VAE weights themselves are broken; try another VAE with --vae"
    } else {
        "the VAE overflowed in 16-bit precision (common with SDXL's VAE): decode in f32, or use an fp16-fixed VAE (e.g. madebyollin/sdxl-vae-fp16-fix) with --vae"
    };
    Err(Error::model(
        model,
        format!("the decoded image contains NaN or infinite values; {hint}"),
    ))
}
