//! Outpainting: the canvas extended on any side, the new area filled from the picture's edge
//! and masked, for the inpainting path to repaint.
//!
//! A1111's two outpainting scripts differ from this: "Outpainting mk2" fills the new area
//! with noise matched to the picture's spectrum, "Poor man's outpainting" repaints one side
//! at a time. Sumi extends all sides at once, stretches the edge pixels outwards (clamp to
//! edge) and marks the new area white in the mask; with masked content "fill" (the default)
//! the inpainting path then blurs the picture's colours into it, as "Poor man's outpainting"
//! does with "fill", in one pass.

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::{Error, Result};

/// Pixels added on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct Extend {
    /// Added on the left.
    pub left: u32,
    /// Added on the right.
    pub right: u32,
    /// Added on the top.
    pub top: u32,
    /// Added on the bottom.
    pub bottom: u32,
}

/// The picture on a canvas extended by `ext` (each new pixel a copy of the nearest edge pixel)
/// and the mask of the new area (white). Refuses a canvas wider or taller than `max_side`
/// (the engine's size limit) and an extension of nothing.
pub fn extend_canvas(
    image: &RgbImage,
    ext: Extend,
    max_side: u32,
) -> Result<(RgbImage, GrayImage)> {
    let (w, h) = image.dimensions();
    if ext == Extend::default() {
        return Err(Error::InvalidRequest(
            "outpainting adds nothing: give at least one side a positive number of pixels".into(),
        ));
    }
    let nw = u64::from(w) + u64::from(ext.left) + u64::from(ext.right);
    let nh = u64::from(h) + u64::from(ext.top) + u64::from(ext.bottom);
    if w == 0 || h == 0 || nw > u64::from(max_side) || nh > u64::from(max_side) {
        return Err(Error::InvalidRequest(format!(
            "outpainting a {w}x{h} picture by {}/{}/{}/{} (left/right/top/bottom) makes it \
             {nw}x{nh}, over the limit of {max_side} pixels per side; extend it less",
            ext.left, ext.right, ext.top, ext.bottom
        )));
    }
    let (nw, nh) = (nw as u32, nh as u32);
    let inside = |x: u32, y: u32| {
        let sx = i64::from(x) - i64::from(ext.left);
        let sy = i64::from(y) - i64::from(ext.top);
        (sx, sy)
    };
    let canvas = RgbImage::from_fn(nw, nh, |x, y| {
        let (sx, sy) = inside(x, y);
        *image.get_pixel(
            sx.clamp(0, i64::from(w) - 1) as u32,
            sy.clamp(0, i64::from(h) - 1) as u32,
        )
    });
    let mask = GrayImage::from_fn(nw, nh, |x, y| {
        let (sx, sy) = inside(x, y);
        let old = (0..i64::from(w)).contains(&sx) && (0..i64::from(h)).contains(&sy);
        image::Luma([if old { 0 } else { 255 }])
    });
    Ok((canvas, mask))
}
