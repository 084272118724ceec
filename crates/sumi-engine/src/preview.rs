//! Cheap latent -> RGB previews: a per-family linear map of the x0 estimate, computed on the
//! latent's device so only the small RGB image crosses to the host.

use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::model::Family;
use crate::Result;

/// Rows: latent channels 0..3; columns: R, G, B (ComfyUI's fits, see FACTS.md).
fn coefficients(family: Family) -> ([[f32; 3]; 4], [f32; 3]) {
    match family {
        Family::Sd1 | Family::Sd2 => (
            [
                [0.3512, 0.2297, 0.3227],
                [0.3250, 0.4974, 0.2350],
                [-0.2829, 0.1762, 0.2721],
                [-0.2120, -0.2616, -0.7177],
            ],
            [0.0, 0.0, 0.0],
        ),
        Family::Sdxl => (
            [
                [0.3651, 0.4232, 0.4341],
                [-0.2533, -0.0042, 0.1068],
                [0.1076, 0.1111, -0.0362],
                [-0.3165, -0.2492, -0.2188],
            ],
            [0.1084, -0.0175, -0.0011],
        ),
    }
}

/// An RGB picture of the latent `x0` (`[1, 4, h, w]`, scaled latent space) at latent resolution.
pub fn latent_preview(x0: &Tensor, family: Family) -> Result<Option<RgbImage>> {
    let (_, c, h, w) = x0.dims4()?;
    if c != 4 {
        return Ok(None);
    }
    let (m, b) = coefficients(family);
    let dev = x0.device();
    let m = Tensor::new(&m, dev)?;
    let b = Tensor::new(&b, dev)?;
    let pixels = x0.get(0)?.to_dtype(DType::F32)?.reshape((4, h * w))?.t()?;
    let rgb = pixels.matmul(&m)?.broadcast_add(&b)?;
    let bytes = ((((rgb + 1.0)? * 127.5)?.clamp(0.0, 255.0)?.round()?).to_dtype(DType::U8)?)
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(RgbImage::from_raw(w as u32, h as u32, bytes))
}

/// Converts decoded images `[1, 3, H, W]` in about [-1, 1] to an 8-bit RGB image.
pub fn to_rgb_image(decoded: &Tensor) -> Result<RgbImage> {
    let (_, _, h, w) = decoded.dims4()?;
    let img = ((decoded.get(0)?.to_dtype(DType::F32)? / 2.0)? + 0.5)?.clamp(0.0, 1.0)?;
    let bytes = (img * 255.0)?
        .round()?
        .to_dtype(DType::U8)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(RgbImage::from_raw(w as u32, h as u32, bytes).expect("buffer size matches"))
}
