//! What an image-to-image or hires-fix request asks for, as serialisable request fields, and
//! the checks on them.
//!
//! The init picture and the mask are named by the SHA-256 of their file bytes, not by a path:
//! a request then says exactly which pixels it started from, stays valid when files move, and
//! the gallery can keep sources content-addressed. Whoever runs the request (the runtime)
//! resolves the names and hands the bytes over in [`super::GenerateInputs`]; the engine checks
//! that the bytes are the ones named.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use super::limits::{MAX_SIZE, MAX_STEPS};
use crate::imaging::{Extend, InpaintArea, MaskOptions, MaskedContent, ResizeMode};
use crate::sampling::img2img::check_strength;
use crate::{Error, Result};

/// An image-to-image run (img2img, inpainting, outpainting): the picture to start from and
/// how it is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct Img2Img {
    /// SHA-256 (lowercase hex) of the init picture's file bytes (see [`source_hash`]).
    pub init_image: String,
    /// Denoising strength, 0 (keep) to 1 (repaint fully).
    pub strength: f64,
    /// How a picture of another size is fitted to the requested size.
    pub resize_mode: ResizeMode,
    /// A1111's "img2img fix steps": run exactly `steps` steps of a longer schedule.
    pub fixed_steps: bool,
    /// SHA-256 of the mask's file bytes (white repaints); `None`: plain img2img.
    #[ts(type = "string | null")]
    pub mask: Option<String>,
    /// Mask blur in pixels (A1111's "Mask blur").
    pub mask_blur: u32,
    /// Repaint the black part of the mask instead of the white.
    pub invert_mask: bool,
    /// What the masked area starts from.
    pub masked_content: MaskedContent,
    /// Repaint only the masked area (plus `masked_padding`) at the requested size.
    pub only_masked: bool,
    /// Pixels around the mask for `only_masked` (A1111's "Masked area padding").
    pub masked_padding: u32,
    /// Pixels added on each side before inpainting the new area (outpainting).
    #[ts(type = "Extend | null")]
    pub outpaint: Option<Extend>,
}

impl Default for Img2Img {
    fn default() -> Self {
        Self {
            init_image: String::new(),
            strength: 0.75,
            resize_mode: ResizeMode::Just,
            fixed_steps: false,
            mask: None,
            mask_blur: 4,
            invert_mask: false,
            masked_content: MaskedContent::Original,
            only_masked: false,
            masked_padding: 32,
            outpaint: None,
        }
    }
}

impl Img2Img {
    /// The imaging layer's mask options.
    pub fn mask_options(&self) -> MaskOptions {
        MaskOptions {
            blur_x: self.mask_blur,
            blur_y: self.mask_blur,
            invert: self.invert_mask,
            content: self.masked_content,
            area: if self.only_masked {
                InpaintArea::OnlyMasked {
                    padding: self.masked_padding,
                }
            } else {
                InpaintArea::WholePicture
            },
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_hash("init image", &self.init_image)?;
        if let Some(m) = &self.mask {
            check_hash("mask", m)?;
        }
        check_strength(self.strength)?;
        if self.mask_blur > 64 {
            return Err(Error::InvalidRequest(format!(
                "mask blur {} is too large: give 0 to 64 pixels",
                self.mask_blur
            )));
        }
        if self.masked_padding > MAX_SIZE {
            return Err(Error::InvalidRequest(format!(
                "masked area padding {} is larger than any picture Sumi makes",
                self.masked_padding
            )));
        }
        if self.outpaint.is_some() && self.mask.is_some() {
            return Err(Error::InvalidRequest(
                "outpainting makes its own mask (the new area): leave out the mask, or \
                 outpaint first and inpaint the result"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Hires fix: a second, img2img pass over the first pass's result at a larger size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct Hires {
    /// Upscale factor (A1111's "Upscale by"); used when `width` and `height` are both 0.
    pub scale: f64,
    /// Target width (A1111's "Resize width to"; 0 keeps the aspect ratio or uses `scale`).
    pub width: u32,
    /// Target height (0 keeps the aspect ratio or uses `scale`).
    pub height: u32,
    /// A1111 upscaler name: `Latent`, `Latent (antialiased)`, `Latent (bicubic)`,
    /// `Latent (bicubic antialiased)`, `Latent (nearest)`, `Latent (nearest-exact)`, `Lanczos`,
    /// `Nearest`.
    pub upscaler: String,
    /// Steps of the second pass (0: the first pass's steps).
    pub steps: u32,
    /// Denoising strength of the second pass.
    pub strength: f64,
    /// Sampler of the second pass (empty: the first pass's).
    pub sampler: String,
    /// Schedule of the second pass (empty: the first pass's).
    pub schedule: String,
    /// Prompt of the second pass (empty: the first pass's).
    pub prompt: String,
    /// Negative prompt of the second pass (empty: the first pass's).
    pub negative_prompt: String,
}

impl Default for Hires {
    fn default() -> Self {
        Self {
            scale: 2.0,
            width: 0,
            height: 0,
            upscaler: "Latent".into(),
            steps: 0,
            strength: 0.7,
            sampler: String::new(),
            schedule: String::new(),
            prompt: String::new(),
            negative_prompt: String::new(),
        }
    }
}

/// How the hires pass enlarges the first pass's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Upscaler {
    /// `F.interpolate` on the latent.
    Latent(crate::imaging::LatentUpscale),
    /// Decode, resize the pixels, encode.
    Image(crate::imaging::ImageUpscaler),
}

/// The upscalers Sumi has, by A1111 name, for messages.
pub const UPSCALERS: [&str; 8] = [
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
    "Lanczos",
    "Nearest",
];

/// The upscaler an A1111 name (or Sumi's short lowercase form such as `latent-bicubic`) means.
pub fn parse_upscaler(name: &str) -> Result<Upscaler> {
    use crate::imaging::{ImageUpscaler, LatentUpscale};
    let short = name.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    let latent = match short.as_str() {
        "latent" | "latent-bilinear" => Some(LatentUpscale::Bilinear),
        "latent-antialiased" | "latent-(antialiased)" => Some(LatentUpscale::BilinearAntialias),
        "latent-bicubic" | "latent-(bicubic)" => Some(LatentUpscale::Bicubic),
        "latent-bicubic-antialiased" | "latent-(bicubic-antialiased)" => {
            Some(LatentUpscale::BicubicAntialias)
        }
        "latent-nearest" | "latent-(nearest)" => Some(LatentUpscale::Nearest),
        "latent-nearest-exact" | "latent-(nearest-exact)" => Some(LatentUpscale::NearestExact),
        _ => LatentUpscale::from_a1111_name(name),
    };
    if let Some(mode) = latent {
        return Ok(Upscaler::Latent(mode));
    }
    match short.as_str() {
        "lanczos" => Ok(Upscaler::Image(ImageUpscaler::Lanczos)),
        "nearest" => Ok(Upscaler::Image(ImageUpscaler::Nearest)),
        _ => Err(Error::InvalidRequest(format!(
            "Sumi has no hires upscaler {name:?} (model upscalers such as ESRGAN are not \
             supported); use one of: {}. Pixels will differ from an image made with another \
             upscaler",
            UPSCALERS.join(", ")
        ))),
    }
}

impl Hires {
    /// The imaging layer's target.
    pub fn target(&self) -> crate::imaging::HiresTarget {
        if self.width == 0 && self.height == 0 {
            crate::imaging::HiresTarget::Scale(self.scale)
        } else {
            crate::imaging::HiresTarget::Size {
                width: self.width,
                height: self.height,
            }
        }
    }

    /// Checks every field but the sampler and schedule (checked with the request's).
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 && self.height == 0 && !(self.scale.is_finite() && self.scale >= 1.0) {
            return Err(Error::InvalidRequest(format!(
                "hires scale {} must be 1 or more (or give a hires size)",
                self.scale
            )));
        }
        parse_upscaler(&self.upscaler)?;
        if self.steps > MAX_STEPS {
            return Err(Error::InvalidRequest(format!(
                "hires steps {} must be at most {}",
                self.steps, MAX_STEPS
            )));
        }
        check_strength(self.strength)?;
        if self.strength == 0.0 {
            return Err(Error::InvalidRequest(
                "a hires denoising strength of 0 would only upscale: give a value above 0".into(),
            ));
        }
        crate::text::check_prompt("hires prompt", &self.prompt)?;
        crate::text::check_prompt("hires negative prompt", &self.negative_prompt)?;
        Ok(())
    }
}

/// The name a source picture goes by: the SHA-256 of its file bytes, lowercase hex.
pub fn source_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that `name` looks like a [`source_hash`].
pub fn check_hash(what: &str, name: &str) -> Result<()> {
    if name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "{what} {name:?} is not a SHA-256 content name (64 lowercase hex digits); give the \
             picture as a file and let Sumi name it"
        )))
    }
}

/// The bytes `bytes` when they are the source named `name`; otherwise an error saying which.
pub fn check_source<'a>(what: &str, name: &str, bytes: Option<&'a [u8]>) -> Result<&'a [u8]> {
    let bytes = bytes.ok_or_else(|| {
        Error::InvalidRequest(format!(
            "the request names {what} {name} but its picture was not supplied; give the file \
             (e.g. --init-image / --mask)"
        ))
    })?;
    let got = source_hash(bytes);
    if got != name {
        return Err(Error::InvalidRequest(format!(
            "the {what} supplied (SHA-256 {got}) is not the one the request names ({name})"
        )));
    }
    Ok(bytes)
}
