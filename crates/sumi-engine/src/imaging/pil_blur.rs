//! Pillow's `ImageFilter.GaussianBlur`: three passes of an extended box filter in each
//! direction with 8-bit rounding after every pass, reproduced bit for bit.

use image::RgbaImage;

/// The extended box radius Pillow derives from a Gaussian radius (single precision).
fn box_radius(radius: f32, passes: u32) -> f32 {
    let sigma2 = radius * radius / passes as f32;
    let big_l = (12.0 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l = ((f64::from(big_l) - 1.0) / 2.0).floor() as f32;
    let a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    let a = a / (6.0 * (sigma2 - (l + 1.0) * (l + 1.0)));
    l + a
}

/// One box pass over a line of `n` pixels of `c` channels read with `stride`, edges clamped.
fn box_line(line: &[u8], n: usize, c: usize, radius: f32, out: &mut [u8]) {
    let r = radius as i64;
    let ww = ((1u32 << 24) as f32 / (radius * 2.0 + 1.0)) as u64;
    let fw = ((1u64 << 24) - (2 * r as u64 + 1) * ww) / 2;
    let last = n as i64 - 1;
    let px = |i: i64, ch: usize| u64::from(line[i.clamp(0, last) as usize * c + ch]);
    for ch in 0..c {
        let mut acc: u64 = (-r..=r).map(|o| px(o, ch)).sum();
        for x in 0..n as i64 {
            if x > 0 {
                acc = acc + px(x + r, ch) - px(x - r - 1, ch);
            }
            let bulk = acc * ww + (px(x - r - 1, ch) + px(x + r + 1, ch)) * fw;
            out[x as usize * c + ch] = ((bulk + (1 << 23)) >> 24) as u8;
        }
    }
}

/// `img.filter(ImageFilter.GaussianBlur(radius))` on a 4-channel image (A1111 blurs
/// premultiplied "RGBa" pictures); radius 0 is a copy.
pub fn gaussian_blur(img: &RgbaImage, radius: f32) -> RgbaImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if radius == 0.0 || w == 0 || h == 0 {
        return img.clone();
    }
    let r = box_radius(radius, 3);
    let c = 4;
    let mut data = img.as_raw().clone();
    let mut line = vec![0u8; w.max(h) * c];
    for _ in 0..3 {
        for y in 0..h {
            let row = &mut data[y * w * c..(y + 1) * w * c];
            box_line(row, w, c, r, &mut line[..w * c]);
            row.copy_from_slice(&line[..w * c]);
        }
    }
    let mut col = vec![0u8; h * c];
    for _ in 0..3 {
        for x in 0..w {
            for y in 0..h {
                col[y * c..(y + 1) * c]
                    .copy_from_slice(&data[(y * w + x) * c..(y * w + x + 1) * c]);
            }
            box_line(&col, h, c, r, &mut line[..h * c]);
            for y in 0..h {
                data[(y * w + x) * c..(y * w + x + 1) * c]
                    .copy_from_slice(&line[y * c..(y + 1) * c]);
            }
        }
    }
    RgbaImage::from_raw(img.width(), img.height(), data).expect("same size as the input")
}
