//! Where a pass starts: the picture of an img2img request encoded (with its masks and the
//! extra input of 9-channel inpainting models), and the first pass's result enlarged for the
//! hires pass.

use candle_core::{DType, Tensor};
use image::{GrayImage, RgbImage};

use super::decode::decode;
use super::prompts::GenerateInputs;
use super::request::{Request, MAX_SIZE};
use super::source::{check_source, parse_upscaler, Img2Img, Upscaler};
use crate::imaging::{
    binary_mask, decode_image, extend_canvas, hires_size, init_rgb, inpaint_conditioning,
    interpolate, latent_mask, mask_tensor, prepare, rgb_to_tensor, upscale_image, MaskedContent,
    Overlay,
};
use crate::model::Model;
use crate::preview::{to_rgb_image, Quantize};
use crate::{Error, Result};

/// An img2img request's picture, ready for sampling.
pub(super) struct Source {
    /// The encoded picture `[1, C, h, w]` in f32 (zeros or noise under the mask for masked
    /// content "latent nothing" / "latent noise").
    pub init_latent: Tensor,
    /// `(keep, repaint)` latent masks `[1, 1, h, w]` (A1111's `mask` and `nmask`) when inpainting.
    pub blend: Option<(Tensor, Tensor)>,
    /// The extra input of a 9-channel inpainting model.
    pub concat: Option<Tensor>,
    /// What the final picture is composited with.
    pub overlay: Option<Overlay>,
}

/// Whether `model`'s network takes the 9-channel inpainting input.
pub(super) fn is_inpainting_model(model: &Model) -> bool {
    model.network.in_channels() == model.vae.latent_channels() + 5
}

/// The extra input of a 9-channel model for a run without a mask (text-to-image, hires fix):
/// a mask of ones and an all-grey picture, as A1111 gives it.
pub(super) fn unmasked_conditioning(model: &Model, width: u32, height: u32) -> Result<Tensor> {
    inpaint_conditioning(
        &model.vae,
        &RgbImage::new(width, height),
        None,
        &model.device,
        model.dtype,
    )
}

/// Decodes, fits, masks and encodes the picture of `img` for `request`. `noise0` is the
/// seed's first noise at latent shape (A1111's "latent noise" fill draws the same values).
pub(super) fn prepare_source(
    model: &Model,
    request: &Request,
    img: &Img2Img,
    inputs: &GenerateInputs,
    noise0: &Tensor,
) -> Result<Source> {
    let bytes = check_source("init image", &img.init_image, inputs.init_image)?;
    let mut rgb = init_rgb(&decode_image(bytes, "init image", MAX_SIZE)?);
    let mut mask = match &img.mask {
        Some(name) => {
            let bytes = check_source("mask", name, inputs.mask)?;
            Some(binary_mask(&decode_image(bytes, "mask", MAX_SIZE)?))
        }
        None => None,
    };
    if let Some(ext) = img.outpaint {
        let (canvas, new_area) = extend_canvas(&rgb, ext, MAX_SIZE)?;
        rgb = canvas;
        mask = Some(new_area);
    }
    let prepared = prepare(
        &rgb,
        mask.as_ref(),
        request.width,
        request.height,
        img.resize_mode,
        &img.mask_options(),
    )?;
    let device = &model.device;
    let pixels = rgb_to_tensor(&prepared.image, device, model.dtype)?;
    let mut init_latent = model.vae.encode(&pixels)?.to_dtype(DType::F32)?;
    let blend = match &prepared.mask {
        Some(m) => {
            let (_, _, lh, lw) = init_latent.dims4()?;
            let values = latent_mask(m, lw as u32, lh as u32);
            let repaint = mask_tensor(&values, lh, lw, device, DType::F32)?;
            let keep = (1.0 - &repaint)?;
            init_latent = match img.masked_content {
                MaskedContent::LatentNoise => {
                    (init_latent.broadcast_mul(&keep)? + noise0.broadcast_mul(&repaint)?)?
                }
                MaskedContent::LatentNothing => init_latent.broadcast_mul(&keep)?,
                MaskedContent::Fill | MaskedContent::Original => init_latent,
            };
            Some((keep, repaint))
        }
        None => None,
    };
    let concat = if is_inpainting_model(model) {
        let full;
        let m = match &prepared.mask {
            Some(m) => m,
            None => {
                full = GrayImage::from_pixel(request.width, request.height, image::Luma([255]));
                &full
            }
        };
        Some(inpaint_conditioning(
            &model.vae,
            &prepared.image,
            Some(m),
            device,
            model.dtype,
        )?)
    } else {
        None
    };
    Ok(Source {
        init_latent,
        blend,
        concat,
        overlay: prepared.overlay,
    })
}

/// The first pass's (variance-preserving) latent enlarged as the request's hires fix says, and
/// the size of the picture the second pass makes.
pub(super) fn upscale_first_pass(
    model: &Model,
    request: &Request,
    latent: &Tensor,
) -> Result<(Tensor, u32, u32)> {
    let h = request
        .hires
        .as_ref()
        .ok_or_else(|| Error::InvalidRequest("the request has no hires fix".into()))?;
    let down = model.info.downscale;
    let size = hires_size(request.width, request.height, h.target(), down)?;
    let (lw, lh) = (size.upscale_w / down, size.upscale_h / down);
    let (fw, fh) = (
        (lw.saturating_sub(size.truncate_x)) * down,
        (lh.saturating_sub(size.truncate_y)) * down,
    );
    if size.upscale_w > MAX_SIZE || size.upscale_h > MAX_SIZE || fw == 0 || fh == 0 {
        return Err(Error::InvalidRequest(format!(
            "hires fix to {}x{} is outside 1..{MAX_SIZE} pixels a side; use a smaller scale",
            size.upscale_w, size.upscale_h
        )));
    }
    let up = match parse_upscaler(&h.upscaler)? {
        Upscaler::Latent(mode) => interpolate(latent, lh as usize, lw as usize, mode)?,
        Upscaler::Image(upscaler) => {
            let decoded = decode(model, latent)?;
            // A1111 turns the first pass into 8-bit pixels by truncation before upscaling.
            let pixels = to_rgb_image(&decoded, Quantize::Truncate)?;
            let big = upscale_image(&pixels, size.upscale_w, size.upscale_h, upscaler);
            let t = rgb_to_tensor(&big, &model.device, model.dtype)?;
            model.vae.encode(&t)?.to_dtype(DType::F32)?
        }
    };
    let (_, _, uh, uw) = up.dims4()?;
    let (tx, ty) = (size.truncate_x as usize, size.truncate_y as usize);
    let cut = up
        .narrow(2, ty / 2, uh - ty)?
        .narrow(3, tx / 2, uw - tx)?
        .contiguous()?;
    Ok((cut, fw, fh))
}
