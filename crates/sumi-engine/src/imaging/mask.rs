//! Masks as A1111 prepares them: any picture to an 8-bit L mask (white repaints), inversion,
//! the "fill" masked content (`masking.fill`), the latent mask, and the 9-channel inpainting
//! models' mask.

use image::{DynamicImage, GrayImage, RgbImage};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::composite::{
    alpha_composite, drop_alpha, luma, opaque, paste, premultiply, unpremultiply,
};
use super::pil::{resample, Filter};
use super::pil_blur::gaussian_blur;

/// What the masked area starts from (A1111's "Masked content").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum MaskedContent {
    /// The picture under the mask filled with blurred colours from around it (A1111's 0,
    /// "fill").
    #[default]
    Fill,
    /// The picture as it is (1, "original").
    Original,
    /// Fresh noise in the latent under the mask (2, "latent noise"); the picture is filled too.
    LatentNoise,
    /// Zeros in the latent under the mask (3, "latent nothing"); the picture is filled too.
    LatentNothing,
}

impl MaskedContent {
    /// Parses `fill`, `original`, `latent-noise`, `latent-nothing` (also with spaces, as A1111
    /// writes them in infotexts).
    pub fn parse(s: &str) -> Option<Self> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], " ")
            .as_str()
        {
            "fill" | "0" => Some(Self::Fill),
            "original" | "1" => Some(Self::Original),
            "latent noise" | "2" => Some(Self::LatentNoise),
            "latent nothing" | "3" => Some(Self::LatentNothing),
            _ => None,
        }
    }

    /// A1111's infotext name.
    pub fn a1111_name(self) -> &'static str {
        match self {
            Self::Fill => "fill",
            Self::Original => "original",
            Self::LatentNoise => "latent noise",
            Self::LatentNothing => "latent nothing",
        }
    }
}

/// A mask picture as an 8-bit L mask, as A1111 reads one (`create_binary_mask` after Gradio
/// turned it into RGBA): when any pixel is not fully opaque the alpha channel decides (alpha >
/// 128 repaints), otherwise the luminance does (white repaints, grey partly).
pub fn binary_mask(img: &DynamicImage) -> GrayImage {
    let rgba = img.to_rgba8();
    if rgba.pixels().any(|p| p[3] != 255) {
        GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            image::Luma([if rgba.get_pixel(x, y)[3] > 128 {
                255
            } else {
                0
            }])
        })
    } else {
        luma(&drop_alpha(&rgba))
    }
}

/// `ImageOps.invert`: white and black swapped.
pub fn invert(mask: &GrayImage) -> GrayImage {
    let mut out = mask.clone();
    out.iter_mut().for_each(|v| *v = 255 - *v);
    out
}

/// A1111's mask for the final composite in whole-picture mode: the blurred mask doubled, so
/// the generated pixels show fully over the inner half of the blur.
pub fn doubled(mask: &GrayImage) -> GrayImage {
    let mut out = mask.clone();
    out.iter_mut().for_each(|v| *v = v.saturating_mul(2));
    out
}

/// A1111's "fill" masked content (`masking.fill`): the unmasked picture blurred at radii 256,
/// 64, 16, 4, 2 and 0 (Pillow's Gaussian on premultiplied colours), the layers composited from
/// the widest to the sharpest, so the masked area takes the colours around it. `mask` has the
/// picture's size.
pub fn fill(image: &RgbImage, mask: &GrayImage) -> RgbImage {
    let keep_mask = invert(mask);
    let mut keep = image::RgbaImage::new(image.width(), image.height());
    paste(
        &mut keep,
        &premultiply(&opaque(image)),
        0,
        0,
        Some(&keep_mask),
    );
    let mut acc = image::RgbaImage::new(image.width(), image.height());
    for (radius, times) in [
        (256.0, 1),
        (64.0, 1),
        (16.0, 2),
        (4.0, 4),
        (2.0, 2),
        (0.0, 1),
    ] {
        let layer = unpremultiply(&gaussian_blur(&keep, radius));
        for _ in 0..times {
            alpha_composite(&mut acc, &layer);
        }
    }
    drop_alpha(&acc)
}

/// The latent mask (1 = repaint) of `width x height` latent cells, row-major: the mask resized
/// with Pillow's default bicubic filter to the latent size, divided by 255 and rounded half to
/// even, as A1111 builds its `nmask`.
pub fn latent_mask(mask: &GrayImage, width: u32, height: u32) -> Vec<f32> {
    resample(mask, width, height, Filter::Bicubic, None)
        .iter()
        .map(|&v| (f32::from(v) / 255.0).round_ties_even())
        .collect()
}

/// The mask a 9-channel inpainting model is given, at full resolution (1 = repaint): the mask
/// divided by 255 and rounded (A1111 rounds half to even, diffusers binarises at 0.5; for 8-bit
/// masks both give 1 from 128 up). Downsample it to the latent with nearest-neighbour
/// interpolation (`interpolate` with `LatentUpscale::Nearest`).
pub fn conditioning_mask(mask: &GrayImage) -> Vec<f32> {
    mask.iter()
        .map(|&v| (f32::from(v) / 255.0).round_ties_even())
        .collect()
}
