//! OpenCV's `GaussianBlur` on 8-bit single-channel images, reproduced bit for bit: the kernel
//! OpenCV derives for 8-bit data (double-precision Gaussian, rounded to 8 fractional bits with
//! error diffusion, the centre taking the remainder), applied with exact integer sums, the
//! default border `BORDER_REFLECT_101`, and rounding half up at the end.

use image::GrayImage;

/// The kernel size A1111 uses for a mask blur of `b` pixels: `2 * int(2.5 * b + 0.5) + 1`.
pub fn kernel_size(b: u32) -> usize {
    2 * (2.5 * f64::from(b) + 0.5) as usize + 1
}

/// OpenCV's fixed-point Gaussian kernel of odd size `n` and standard deviation `sigma` (> 0):
/// integer taps summing to 256.
pub fn fixed_kernel(n: usize, sigma: f64) -> Vec<i64> {
    let half = (n - 1) / 2;
    let scale2x = -0.125 / (sigma * sigma);
    let values: Vec<f64> = (0..half)
        .map(|i| {
            let x = 2 * i as i64 + 1 - n as i64;
            ((x * x) as f64 * scale2x).exp()
        })
        .collect();
    let sum = values.iter().fold(0.0, |s, v| s + v) * 2.0 + 1.0;
    let mul = 1.0 / sum;
    let mut out = vec![0i64; n];
    let (mut err, mut taken) = (0.0f64, 0i64);
    for (i, v) in values.iter().enumerate() {
        let adjusted = v * mul * 256.0 + err;
        let rounded = adjusted.round_ties_even();
        err = adjusted - rounded;
        out[i] = rounded as i64;
        out[n - 1 - i] = rounded as i64;
        taken += rounded as i64;
    }
    out[half] = 256 - 2 * taken;
    out
}

/// OpenCV's `BORDER_REFLECT_101` index into `0..len` (`gfedcb|abcdefgh|gfedcba`), repeated
/// for kernels wider than the image.
fn reflect101(mut p: i64, len: i64) -> usize {
    if len == 1 {
        return 0;
    }
    while p < 0 || p >= len {
        p = if p < 0 { -p } else { 2 * len - 2 - p };
    }
    p as usize
}

/// One Gaussian pass along rows (`horizontal`) or columns with blur `b` pixels.
fn pass(img: &GrayImage, b: u32, horizontal: bool) -> GrayImage {
    let k = fixed_kernel(kernel_size(b), f64::from(b));
    let half = (k.len() / 2) as i64;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let src = img.as_raw();
    let at = |x: i64, y: i64| i64::from(src[(y * w + x) as usize]);
    GrayImage::from_fn(img.width(), img.height(), |x, y| {
        let (x, y) = (i64::from(x), i64::from(y));
        let sum: i64 = k
            .iter()
            .enumerate()
            .map(|(j, &kj)| {
                let o = j as i64 - half;
                if horizontal {
                    kj * at(reflect101(x + o, w) as i64, y)
                } else {
                    kj * at(x, reflect101(y + o, h) as i64)
                }
            })
            .sum();
        image::Luma([((sum + 128) >> 8) as u8])
    })
}

/// A1111's mask blur: `cv2.GaussianBlur(mask, (k, 1), bx)` then `cv2.GaussianBlur(mask, (1, k),
/// by)`, each pass skipped when its blur is 0.
pub fn blur_mask(mask: &GrayImage, bx: u32, by: u32) -> GrayImage {
    let mut out = mask.clone();
    if bx > 0 {
        out = pass(&out, bx, true);
    }
    if by > 0 {
        out = pass(&out, by, false);
    }
    out
}
