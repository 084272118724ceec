//! A1111's three ways of fitting a picture to the requested size (`images.resize_image` with
//! no img2img upscaler), Lanczos throughout.

use image::{ImageBuffer, Pixel};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::composite::paste;
use super::pil::{resample, Filter, Image8};

/// How an init picture (or mask) of another size is fitted to the requested size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Stretch to the size (A1111 mode 0, "Just resize").
    #[default]
    Just,
    /// Scale to cover the size, centred, cutting what sticks out (mode 1, "Crop and resize").
    CropAndResize,
    /// Scale to fit inside the size, centred, and fill the empty bands by stretching the
    /// picture's edge rows or columns outwards (mode 2, "Resize and fill").
    ResizeAndFill,
}

impl ResizeMode {
    /// Parses `just`, `crop` or `fill` (and A1111's labels and numbers 0, 1, 2).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "just" | "just resize" | "0" => Some(Self::Just),
            "crop" | "crop and resize" | "1" => Some(Self::CropAndResize),
            "fill" | "resize and fill" | "2" => Some(Self::ResizeAndFill),
            _ => None,
        }
    }

    /// A1111's label (`Resize mode` in infotexts).
    pub fn a1111_name(self) -> &'static str {
        match self {
            Self::Just => "Just resize",
            Self::CropAndResize => "Crop and resize",
            Self::ResizeAndFill => "Resize and fill",
        }
    }
}

fn lanczos<P: Pixel<Subpixel = u8>>(
    img: &Image8<P>,
    w: u32,
    h: u32,
    b: Option<[f32; 4]>,
) -> Image8<P> {
    resample(img, w, h, Filter::Lanczos, b)
}

/// `images.resize_image(mode, img, width, height)`: the picture fitted to `width x height`.
/// The canvas of modes 1 and 2 starts black.
pub fn resize_image<P: Pixel<Subpixel = u8>>(
    mode: ResizeMode,
    img: &Image8<P>,
    width: u32,
    height: u32,
) -> Image8<P> {
    let (iw, ih) = img.dimensions();
    if mode == ResizeMode::Just || iw == 0 || ih == 0 {
        return lanczos(img, width, height, None);
    }
    let target = f64::from(width) / f64::from(height);
    let source = f64::from(iw) / f64::from(ih);
    let wide_target = target > source;
    let (fit_w, fit_h) = match (mode, wide_target) {
        (ResizeMode::CropAndResize, true) | (ResizeMode::ResizeAndFill, false) => (
            width,
            (u64::from(ih) * u64::from(width) / u64::from(iw)) as u32,
        ),
        _ => (
            (u64::from(iw) * u64::from(height) / u64::from(ih)) as u32,
            height,
        ),
    };
    let fitted = lanczos(img, fit_w, fit_h, None);
    let mut canvas: Image8<P> = ImageBuffer::new(width, height);
    let left = i64::from(width / 2) - i64::from(fit_w / 2);
    let top = i64::from(height / 2) - i64::from(fit_h / 2);
    paste(&mut canvas, &fitted, left, top, None);
    if mode == ResizeMode::ResizeAndFill && target != source {
        let (fw, fh) = (fit_w as f32, fit_h as f32);
        if wide_target {
            let band = left.max(0) as u32;
            if band > 0 {
                let l = lanczos(&fitted, band, height, Some([0.0, 0.0, 0.0, height as f32]));
                let r = lanczos(&fitted, band, height, Some([fw, 0.0, fw, height as f32]));
                paste(&mut canvas, &l, 0, 0, None);
                paste(&mut canvas, &r, i64::from(band + fit_w), 0, None);
            }
        } else {
            let band = top.max(0) as u32;
            if band > 0 {
                let t = lanczos(&fitted, width, band, Some([0.0, 0.0, width as f32, 0.0]));
                let b = lanczos(&fitted, width, band, Some([0.0, fh, width as f32, fh]));
                paste(&mut canvas, &t, 0, 0, None);
                paste(&mut canvas, &b, 0, i64::from(band + fit_h), None);
            }
        }
    }
    canvas
}
