//! Pillow's 8-bit compositing, reproduced bit for bit: pasting through a mask, alpha
//! premultiplication and its inverse, `alpha_composite`, and the RGB to L conversion.

use image::{GrayImage, ImageBuffer, Pixel, Rgb, RgbImage, Rgba, RgbaImage};

use super::pil::Image8;

/// `v / 255` rounded, as Pillow's `DIV255` computes it.
fn div255(v: u32) -> u8 {
    let t = v + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Pillow's `BLEND`: `dst` and `src` mixed by `m` / 255.
fn blend(m: u8, dst: u8, src: u8) -> u8 {
    div255(u32::from(dst) * (255 - u32::from(m)) + u32::from(src) * u32::from(m))
}

/// `dst.paste(src, (x, y), mask)`: `src` (clipped to `dst`) copied in, or blended channel by
/// channel (alpha too) by an L `mask` the size of `src`.
pub fn paste<P: Pixel<Subpixel = u8>>(
    dst: &mut Image8<P>,
    src: &Image8<P>,
    x: i64,
    y: i64,
    mask: Option<&GrayImage>,
) {
    let c = usize::from(P::CHANNEL_COUNT);
    let (dw, dh) = (i64::from(dst.width()), i64::from(dst.height()));
    let (sw, sh) = (i64::from(src.width()), i64::from(src.height()));
    let (x0, x1) = (x.max(0), (x + sw).min(dw));
    let (y0, y1) = (y.max(0), (y + sh).min(dh));
    let src_raw = src.as_raw();
    let dst_w = dw as usize;
    let dst_raw: &mut [u8] = dst;
    for ty in y0..y1 {
        let sy = (ty - y) as usize;
        for tx in x0..x1 {
            let sx = (tx - x) as usize;
            let s = (sy * sw as usize + sx) * c;
            let d = (ty as usize * dst_w + tx as usize) * c;
            match mask {
                None => dst_raw[d..d + c].copy_from_slice(&src_raw[s..s + c]),
                Some(m) => {
                    let mv = m.as_raw()[sy * sw as usize + sx];
                    for ch in 0..c {
                        dst_raw[d + ch] = blend(mv, dst_raw[d + ch], src_raw[s + ch]);
                    }
                }
            }
        }
    }
}

/// RGBA to Pillow's premultiplied "RGBa".
pub fn premultiply(img: &RgbaImage) -> RgbaImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let a = u32::from(p[3]);
        for ch in 0..3 {
            p[ch] = div255(u32::from(p[ch]) * a);
        }
    }
    out
}

/// Pillow's premultiplied "RGBa" back to RGBA (truncating division, clipped).
pub fn unpremultiply(img: &RgbaImage) -> RgbaImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let a = u32::from(p[3]);
        if a != 0 && a != 255 {
            for ch in 0..3 {
                p[ch] = (255 * u32::from(p[ch]) / a).min(255) as u8;
            }
        }
    }
    out
}

/// `dst.alpha_composite(src)`: `src` over `dst` (same size) with Pillow's integer arithmetic.
pub fn alpha_composite(dst: &mut RgbaImage, src: &RgbaImage) {
    let shift = |a: u32| ((a >> 8) + a) >> 8;
    for (d, s) in dst.pixels_mut().zip(src.pixels()) {
        let (sa, da) = (u32::from(s[3]), u32::from(d[3]));
        if sa == 0 {
            continue;
        }
        let outa255 = sa * 255 + da * (255 - sa);
        let coef1 = sa * 255 * 255 * 128 / outa255;
        let coef2 = 255 * 128 - coef1;
        for ch in 0..3 {
            let t = u32::from(s[ch]) * coef1 + u32::from(d[ch]) * coef2;
            d[ch] = (shift(t + (0x80 << 7)) >> 7) as u8;
        }
        d[3] = shift(outa255 + 0x80) as u8;
    }
}

/// An RGBA picture composited on white, A1111's default background for transparent init
/// images (`img2img_background_color`, `#ffffff`): `background.paste(img, mask=img)`.
pub fn flatten_on_white(img: &RgbaImage) -> RgbImage {
    ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y);
        Rgb([
            blend(p[3], 255, p[0]),
            blend(p[3], 255, p[1]),
            blend(p[3], 255, p[2]),
        ])
    })
}

/// Pillow's RGB to L conversion (ITU-R 601-2 luma in 16-bit fixed point).
pub fn luma(img: &RgbImage) -> GrayImage {
    ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y);
        let v = u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000;
        image::Luma([(v >> 16) as u8])
    })
}

/// An RGB picture as opaque RGBA.
pub fn opaque(img: &RgbImage) -> RgbaImage {
    ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y);
        Rgba([p[0], p[1], p[2], 255])
    })
}

/// The RGB channels of an RGBA picture (Pillow's RGBA to RGB drops alpha).
pub fn drop_alpha(img: &RgbaImage) -> RgbImage {
    ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y);
        Rgb([p[0], p[1], p[2]])
    })
}
