//! A1111's preparation of an img2img or inpainting run (`StableDiffusionProcessingImg2Img.init`)
//! and its final composite (`apply_overlay`), on pixels: what the VAE encodes, the mask the
//! latent mask and the 9-channel models are made from, and the overlay pasted back at the end.

use image::{imageops, GrayImage, RgbImage, RgbaImage};

use super::composite::{alpha_composite, drop_alpha, opaque, paste, premultiply, unpremultiply};
use super::cv_blur::blur_mask;
use super::mask::{doubled, fill, invert, MaskedContent};
use super::pil::{resample, Filter};
use super::region::{crop_region, expand_crop_region, Region};
use super::resize::{resize_image, ResizeMode};
use crate::{Error, Result};

/// Which part of the picture an inpainting run repaints at the requested size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InpaintArea {
    /// The whole picture at the requested size (A1111's "Whole picture").
    #[default]
    WholePicture,
    /// Only the mask's bounding box plus `padding` pixels, grown to the requested aspect
    /// ratio, cut out and scaled to the requested size, then pasted back (A1111's "Only
    /// masked" with "Masked area padding").
    OnlyMasked {
        /// Pixels added around the mask's bounding box.
        padding: u32,
    },
}

/// How a mask is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaskOptions {
    /// Gaussian blur in pixels, horizontal and vertical (A1111's "Mask blur", default 4).
    pub blur_x: u32,
    /// See `blur_x`.
    pub blur_y: u32,
    /// Repaint the black part instead of the white.
    pub invert: bool,
    /// What the masked area starts from.
    pub content: MaskedContent,
    /// Whole picture or only the masked area.
    pub area: InpaintArea,
}

/// What the end of an inpainting run pastes the generated pixels into: the prepared picture
/// with alpha `255 - mask`, and, for "only masked", where the generated rectangle goes.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// The picture (requested size for the whole picture, the init picture's size for "only
    /// masked") with the blurred (whole picture: doubled) mask turned into transparency.
    pub image: RgbaImage,
    /// `(x, y, w, h)`: where the generated picture goes, scaled to `w x h` ("only masked").
    pub paste_to: Option<(i64, i64, u32, u32)>,
}

/// The pixels of an img2img or inpainting run, ready for the VAE.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What the VAE encodes (`width x height`): the init picture fitted, cut out for "only
    /// masked", and filled under the mask unless the content is `Original`.
    pub image: RgbImage,
    /// The mask at `width x height` after blur and fitting (1 = repaint from 128 up): the
    /// source of the latent mask (`latent_mask`) and of 9-channel models' mask
    /// (`conditioning_mask`). `None` without a mask.
    pub mask: Option<GrayImage>,
    /// For the final composite (`apply_overlay`); `None` without a mask.
    pub overlay: Option<Overlay>,
}

/// Prepares `init` (RGB, already flattened) and an optional L `mask` (white repaints; any size:
/// A1111 fits it with the same resize mode as the picture; for "only masked" Sumi first
/// stretches a mask of another size to the picture's size) for a run at `width x height`.
///
/// Errors when the mask is empty after inversion and blur: nothing would be repainted. A full
/// mask is allowed: everything is repainted (with `LatentNoise` content, close to
/// text-to-image at the picture's composition).
pub fn prepare(
    init: &RgbImage,
    mask: Option<&GrayImage>,
    width: u32,
    height: u32,
    mode: ResizeMode,
    opts: &MaskOptions,
) -> Result<Prepared> {
    if width == 0 || height == 0 || init.width() == 0 || init.height() == 0 {
        return Err(Error::InvalidRequest(format!(
            "cannot fit a {}x{} picture to {width}x{height}",
            init.width(),
            init.height()
        )));
    }
    let Some(mask) = mask else {
        return Ok(Prepared {
            image: resize_image(mode, init, width, height),
            mask: None,
            overlay: None,
        });
    };
    let mut m = if opts.invert {
        invert(mask)
    } else {
        mask.clone()
    };
    m = blur_mask(&m, opts.blur_x, opts.blur_y);
    let nothing = || {
        Error::InvalidRequest(
            "the mask is empty (all black after inversion and blur): nothing would be \
             repainted. Paint the area to change in white, or leave the mask out for plain \
             img2img"
                .into(),
        )
    };
    let (mut image, image_mask, overlay) = match opts.area {
        InpaintArea::WholePicture => {
            let image_mask = resize_image(mode, &m, width, height);
            if image_mask.iter().all(|&v| v == 0) {
                return Err(nothing());
            }
            let image = resize_image(mode, init, width, height);
            let overlay = overlay_image(&image, &doubled(&image_mask));
            (
                image,
                image_mask,
                Overlay {
                    image: overlay,
                    paste_to: None,
                },
            )
        }
        InpaintArea::OnlyMasked { padding } => {
            if m.dimensions() != init.dimensions() {
                m = resample(&m, init.width(), init.height(), Filter::Lanczos, None);
            }
            let region = crop_region(&m, padding).ok_or_else(nothing)?;
            let r = expand_crop_region(region, width, height, m.width(), m.height());
            let image_mask = resize_image(ResizeMode::ResizeAndFill, &crop(&m, r), width, height);
            let image = resize_image(ResizeMode::ResizeAndFill, &crop(init, r), width, height);
            let paste_to = Some((r.x1, r.y1, r.width() as u32, r.height() as u32));
            let overlay = Overlay {
                image: overlay_image(init, &m),
                paste_to,
            };
            (image, image_mask, overlay)
        }
    };
    if opts.content != MaskedContent::Original {
        image = fill(&image, &image_mask);
    }
    Ok(Prepared {
        image,
        mask: Some(image_mask),
        overlay: Some(overlay),
    })
}

/// The region of a picture (the region lies inside it).
fn crop<P: image::Pixel<Subpixel = u8> + 'static>(
    img: &super::pil::Image8<P>,
    r: Region,
) -> super::pil::Image8<P> {
    imageops::crop_imm(
        img,
        r.x1 as u32,
        r.y1 as u32,
        r.width() as u32,
        r.height() as u32,
    )
    .to_image()
}

/// The picture made transparent where the mask is white (Pillow: RGBa pasted through the
/// inverted mask onto transparent black, back to RGBA).
pub fn overlay_image(image: &RgbImage, mask: &GrayImage) -> RgbaImage {
    let mut out = RgbaImage::new(image.width(), image.height());
    paste(
        &mut out,
        &premultiply(&opaque(image)),
        0,
        0,
        Some(&invert(mask)),
    );
    unpremultiply(&out)
}

/// A1111's `apply_overlay`: the generated picture (for "only masked" scaled with "crop and
/// resize" into its rectangle of a transparent canvas) with the overlay composited over it, so
/// pixels outside the mask are the original ones.
pub fn apply_overlay(generated: &RgbImage, overlay: &Overlay) -> RgbImage {
    let mut base = match overlay.paste_to {
        Some((x, y, w, h)) => {
            let mut base = RgbaImage::new(overlay.image.width(), overlay.image.height());
            let fitted = resize_image(ResizeMode::CropAndResize, generated, w, h);
            paste(&mut base, &opaque(&fitted), x, y, None);
            base
        }
        None => opaque(generated),
    };
    if base.dimensions() == overlay.image.dimensions() {
        alpha_composite(&mut base, &overlay.image);
    }
    drop_alpha(&base)
}
