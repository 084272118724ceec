//! Hires fix on pixels and sizes: A1111's target size rule and its image-space "Lanczos" and
//! "Nearest" upscalers (`upscaler.py` through `images.resize_image`).

use image::RgbImage;

use super::pil::{resample, Filter};
use crate::{Error, Result};

/// How far the hires pass enlarges the first pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HiresTarget {
    /// A factor (A1111's "Upscale by").
    Scale(f64),
    /// A size (A1111's "Resize width/height to"); 0 on one side keeps the aspect ratio.
    Size {
        /// Target width, or 0.
        width: u32,
        /// Target height, or 0.
        height: u32,
    },
}

/// The hires pass's size in A1111's terms (`calculate_target_resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiresSize {
    /// Width the first pass is upscaled to (`hr_upscale_to_x`).
    pub upscale_w: u32,
    /// Height the first pass is upscaled to.
    pub upscale_h: u32,
    /// Latent cells cut off across the width after upscaling (`truncate_x`; a `Size` target of
    /// another aspect ratio is covered, then cut): `truncate / 2` on the left, the rest right.
    pub truncate_x: u32,
    /// Latent cells cut off across the height (`truncate_y`), split the same way.
    pub truncate_y: u32,
}

/// A1111's hires size for a first pass of `width x height`: `int(w * scale)` for a factor;
/// for a size, the side that keeps the aspect ratio and covers the target, with the overflow
/// truncated in latent cells of `downscale` pixels.
pub fn hires_size(
    width: u32,
    height: u32,
    target: HiresTarget,
    downscale: u32,
) -> Result<HiresSize> {
    let (w, h) = (u64::from(width), u64::from(height));
    let (uw, uh, tx, ty) = match target {
        HiresTarget::Scale(s) => {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::InvalidRequest(format!(
                    "hires scale {s} must be a positive number"
                )));
            }
            ((w as f64 * s) as u64, (h as f64 * s) as u64, 0, 0)
        }
        HiresTarget::Size {
            width: 0,
            height: 0,
        } => {
            return Err(Error::InvalidRequest(
                "hires size 0x0: give a width or a height".into(),
            ));
        }
        HiresTarget::Size {
            width: rx,
            height: 0,
        } => (u64::from(rx), u64::from(rx) * h / w, 0, 0),
        HiresTarget::Size {
            width: 0,
            height: ry,
        } => (u64::from(ry) * w / h, u64::from(ry), 0, 0),
        HiresTarget::Size {
            width: rx,
            height: ry,
        } => {
            let (rx, ry) = (u64::from(rx), u64::from(ry));
            let (uw, uh) = if (w as f64 / h as f64) < (rx as f64 / ry as f64) {
                (rx, rx * h / w)
            } else {
                (ry * w / h, ry)
            };
            let d = u64::from(downscale.max(1));
            (uw, uh, (uw - rx) / d, (uh - ry) / d)
        }
    };
    let fits = |v: u64| u32::try_from(v).ok().filter(|&v| v > 0);
    match (fits(uw), fits(uh)) {
        (Some(upscale_w), Some(upscale_h)) => Ok(HiresSize {
            upscale_w,
            upscale_h,
            truncate_x: tx as u32,
            truncate_y: ty as u32,
        }),
        _ => Err(Error::InvalidRequest(format!(
            "hires target {uw}x{uh} from {width}x{height} is not a usable size"
        ))),
    }
}

/// A1111's image-space upscalers Sumi has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageUpscaler {
    /// Pillow's Lanczos ("Lanczos").
    Lanczos,
    /// Pillow's nearest neighbour ("Nearest").
    Nearest,
}

/// `images.resize_image(0, img, width, height, upscaler)` with A1111's "Lanczos" or "Nearest"
/// upscaler: when enlarging, the upscaler runs at the larger side ratio (up to three times,
/// while it changes the size and stays below the size rounded down to 8), then Lanczos to that
/// rounded size and Lanczos to the exact size; when shrinking, Lanczos alone.
pub fn upscale_image(img: &RgbImage, width: u32, height: u32, upscaler: ImageUpscaler) -> RgbImage {
    let (iw, ih) = (f64::from(img.width()), f64::from(img.height()));
    let scale = (f64::from(width) / iw).max(f64::from(height) / ih);
    let mut im = img.clone();
    if scale > 1.0 {
        let dw = ((iw * scale) / 8.0).floor() as u32 * 8;
        let dh = ((ih * scale) / 8.0).floor() as u32 * 8;
        let filter = match upscaler {
            ImageUpscaler::Lanczos => Filter::Lanczos,
            ImageUpscaler::Nearest => Filter::Nearest,
        };
        for _ in 0..3 {
            let before = im.dimensions();
            let (nw, nh) = (
                (f64::from(im.width()) * scale) as u32,
                (f64::from(im.height()) * scale) as u32,
            );
            im = resample(&im, nw, nh, filter, None);
            if before == im.dimensions() || (im.width() >= dw && im.height() >= dh) {
                break;
            }
        }
        if im.dimensions() != (dw, dh) {
            im = resample(&im, dw, dh, Filter::Lanczos, None);
        }
    }
    if im.dimensions() != (width, height) {
        im = resample(&im, width, height, Filter::Lanczos, None);
    }
    im
}
