//! Pixels to the tensors the sampler and the VAE take: pictures in [-1, 1], masks, and the
//! extra input of 9-channel inpainting models.

use candle_core::{DType, Device, Tensor};
use image::{GrayImage, RgbImage};

use super::interpolate::{interpolate, LatentUpscale};
use super::mask::conditioning_mask;
use crate::arch::vae::Vae;
use crate::Result;

/// An RGB picture as `[1, 3, H, W]` in [-1, 1] (`v / 255 * 2 - 1` in f32, as A1111 feeds the
/// VAE), in `dtype` on `device`.
pub fn rgb_to_tensor(img: &RgbImage, device: &Device, dtype: DType) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut planes = vec![0f32; 3 * w * h];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            planes[c * w * h + i] = f32::from(p[c]) / 255.0 * 2.0 - 1.0;
        }
    }
    Ok(Tensor::from_vec(planes, (1, 3, h, w), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// A mask of `height x width` values (row-major, e.g. from `latent_mask`) as `[1, 1, H, W]`,
/// which broadcasts over a latent's channels.
pub fn mask_tensor(
    values: &[f32],
    height: usize,
    width: usize,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    Ok(
        Tensor::from_slice(values, (1, 1, height, width), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?,
    )
}

/// The picture with the masked part set to 0 (grey in [-1, 1]), as A1111 and diffusers give
/// it to inpainting models: `image * (1 - round(mask / 255))`.
pub fn masked_image_tensor(
    img: &RgbImage,
    mask: &GrayImage,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let keep: Vec<f32> = conditioning_mask(mask).iter().map(|m| 1.0 - m).collect();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let keep = Tensor::from_vec(keep, (1, 1, h, w), &Device::Cpu)?;
    let image = rgb_to_tensor(img, &Device::Cpu, DType::F32)?;
    Ok(image
        .broadcast_mul(&keep)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// The extra input of 9-channel inpainting UNets, `[1, 5, H / s, W / s]`: the mask (1 =
/// repaint, rounded, nearest-downsampled to the latent) then the latent of the masked picture
/// (the VAE's mean, scaled: A1111 and diffusers sample it). The UNet's input is
/// `cat([x, this], dim 1)`. Without a mask (text-to-image and hires fix on an inpainting model)
/// A1111 uses a mask of ones and an all-grey picture (0.5 in [0, 1], 0 in [-1, 1]): the same as
/// any picture under a full mask.
pub fn inpaint_conditioning(
    vae: &Vae,
    img: &RgbImage,
    mask: Option<&GrayImage>,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let s = vae.downscale();
    let (lh, lw) = (h / s, w / s);
    let (masked, full_mask) = match mask {
        Some(m) => (
            masked_image_tensor(img, m, device, dtype)?,
            Tensor::from_vec(conditioning_mask(m), (1, 1, h, w), &Device::Cpu)?,
        ),
        None => (
            Tensor::zeros((1, 3, h, w), dtype, device)?,
            Tensor::ones((1, 1, h, w), DType::F32, &Device::Cpu)?,
        ),
    };
    let small = interpolate(&full_mask, lh, lw, LatentUpscale::Nearest)?
        .to_dtype(dtype)?
        .to_device(device)?;
    let latent = vae.encode(&masked)?;
    Ok(Tensor::cat(&[small, latent], 1)?)
}
