//! Reading init images and masks with bounded decoding: the size is read from the file's
//! header and refused above the engine's limit before any pixel is decoded; files that are not
//! images or are cut short get messages that say so.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use super::composite::flatten_on_white;
use crate::{Error, Result};

fn bad(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("{what}: {reason}"))
}

/// Decodes `bytes` (PNG, JPEG or WebP) as `what` ("init image", "mask"), refusing pictures
/// wider or taller than `max_side` (pass `pipeline::MAX_SIZE`) from the header alone, and
/// applying the EXIF orientation as A1111 does (`ImageOps.exif_transpose`).
pub fn decode_image(bytes: &[u8], what: &str, max_side: u32) -> Result<DynamicImage> {
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| bad(what, e))
    };
    match reader()?.format() {
        None => return Err(bad(what, "not a picture (Sumi reads PNG, JPEG and WebP)")),
        Some(f) if !f.reading_enabled() => {
            return Err(bad(
                what,
                format!("a {f:?} picture; Sumi reads PNG, JPEG and WebP"),
            ))
        }
        Some(_) => {}
    }
    let (w, h) = reader()?.into_dimensions().map_err(|e| {
        bad(
            what,
            format!("the header cannot be read ({e}); the file is damaged"),
        )
    })?;
    if w == 0 || h == 0 {
        return Err(bad(
            what,
            format!("the picture is {w}x{h}: it has no pixels"),
        ));
    }
    if w > max_side || h > max_side {
        return Err(bad(
            what,
            format!("the picture is {w}x{h}, over the limit of {max_side} pixels per side; scale it down first"),
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    // Room for the largest picture allowed, at 16-bit RGBA.
    limits.max_alloc = Some(u64::from(max_side) * u64::from(max_side) * 8 + (64 << 20));
    let mut r = reader()?;
    r.limits(limits);
    let decode_err = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => {
            bad(what, format!("the picture is too large to decode ({e})"))
        }
        image::ImageError::Unsupported(_) => bad(
            what,
            format!("the picture uses a variant Sumi cannot read ({e})"),
        ),
        _ => bad(
            what,
            format!("the picture cannot be decoded; the file is truncated or damaged ({e})"),
        ),
    };
    let mut decoder = r.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Reads the file at `path` and decodes it with [`decode_image`].
pub fn read_image(path: &Path, what: &str, max_side: u32) -> Result<DynamicImage> {
    let bytes = std::fs::read(path)
        .map_err(|e| bad(what, format!("{} cannot be read: {e}", path.display())))?;
    decode_image(&bytes, what, max_side).map_err(|e| match e {
        Error::InvalidRequest(m) => Error::InvalidRequest(format!("{m} ({})", path.display())),
        other => other,
    })
}

/// An init picture as RGB: a picture with an alpha channel is composited on white first
/// (A1111's default background), any other converted as it is.
pub fn init_rgb(img: &DynamicImage) -> RgbImage {
    if img.color().has_alpha() {
        flatten_on_white(&img.to_rgba8())
    } else {
        img.to_rgb8()
    }
}
