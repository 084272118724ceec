//! Pillow's resampling of 8-bit images (`Image.resize` with NEAREST, BILINEAR, BICUBIC or
//! LANCZOS, and an optional source box), reproduced bit for bit: coefficients in double
//! precision rounded to 22-bit fixed point, the horizontal pass first (Pillow up to 12.x, which
//! A1111 pins; Pillow 13 may run the vertical pass first and then differs by at most 1/255).

use image::{ImageBuffer, Pixel};

/// An 8-bit image of any pixel layout (`RgbImage`, `GrayImage`, `RgbaImage`, ...).
pub type Image8<P> = ImageBuffer<P, Vec<u8>>;

/// A Pillow resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Nearest neighbour (Pillow's affine scaling).
    Nearest,
    /// Triangle filter, support 1.
    Bilinear,
    /// Keys cubic with a = -0.5, support 2 (Pillow's default for `resize`).
    Bicubic,
    /// Lanczos-3 (A1111's resampler everywhere).
    Lanczos,
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

impl Filter {
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Nearest => 0.0,
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Bicubic => {
                let (a, x) = (-0.5, x.abs());
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest => 0.0,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }
}

/// Per output position: the first input index and the fixed-point weights from there on.
struct Coeffs {
    taps: Vec<(usize, Vec<i64>)>,
}

fn coeffs(in_size: usize, in0: f32, in1: f32, out_size: usize, filter: Filter) -> Coeffs {
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let inv = 1.0 / filterscale;
    let in0 = f64::from(in0);
    let taps = (0..out_size)
        .map(|xx| {
            let center = in0 + (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let mut w: Vec<f64> = (0..xmax.max(0))
                .map(|x| filter.weight(((x + xmin) as f64 - center + 0.5) * inv))
                .collect();
            let total: f64 = w.iter().fold(0.0, |s, v| s + v);
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            let one = f64::from(1u32 << PRECISION_BITS);
            let fixed = w
                .iter()
                .map(|&k| {
                    if k < 0.0 {
                        (-0.5 + k * one) as i64
                    } else {
                        (0.5 + k * one) as i64
                    }
                })
                .collect();
            (xmin as usize, fixed)
        })
        .collect();
    Coeffs { taps }
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples rows `first..first + rows` of a `w`-wide, `c`-channel buffer to `out_w` columns.
fn horizontal(src: &[u8], w: usize, c: usize, first: usize, rows: usize, k: &Coeffs) -> Vec<u8> {
    let out_w = k.taps.len();
    let mut out = vec![0u8; out_w * rows * c];
    for y in 0..rows {
        let line = &src[(first + y) * w * c..(first + y + 1) * w * c];
        for (xx, (xmin, taps)) in k.taps.iter().enumerate() {
            for ch in 0..c {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (j, &t) in taps.iter().enumerate() {
                    ss += i64::from(line[(xmin + j) * c + ch]) * t;
                }
                out[(y * out_w + xx) * c + ch] = clip8(ss);
            }
        }
    }
    out
}

/// Resamples a `w`-wide, `c`-channel buffer vertically; tap rows are offset by `shift`.
fn vertical(src: &[u8], w: usize, c: usize, shift: usize, k: &Coeffs) -> Vec<u8> {
    let out_h = k.taps.len();
    let mut out = vec![0u8; w * out_h * c];
    for (yy, (ymin, taps)) in k.taps.iter().enumerate() {
        for i in 0..w * c {
            let mut ss: i64 = 1 << (PRECISION_BITS - 1);
            for (j, &t) in taps.iter().enumerate() {
                ss += i64::from(src[(ymin - shift + j) * w * c + i]) * t;
            }
            out[yy * w * c + i] = clip8(ss);
        }
    }
    out
}

/// Pillow's nearest-neighbour scaling: source positions stepped in double precision from the
/// first pixel's centre.
fn nearest(
    src: &[u8],
    (w, h, c): (usize, usize, usize),
    out: (usize, usize),
    b: [f32; 4],
) -> Vec<u8> {
    let (ow, oh) = out;
    let positions = |n: usize, lo: f32, hi: f32, size: usize| -> Vec<Option<usize>> {
        let step = f64::from(hi - lo) / n as f64;
        let mut at = f64::from(lo) + step * 0.5;
        (0..n)
            .map(|_| {
                let i = if at < 0.0 { -1 } else { at as i64 };
                at += step;
                (0..size as i64).contains(&i).then_some(i as usize)
            })
            .collect()
    };
    let xs = positions(ow, b[0], b[2], w);
    let ys = positions(oh, b[1], b[3], h);
    let mut dst = vec![0u8; ow * oh * c];
    for (y, sy) in ys.iter().enumerate() {
        let Some(sy) = sy else { continue };
        for (x, sx) in xs.iter().enumerate() {
            if let Some(sx) = sx {
                let s = (sy * w + sx) * c;
                dst[(y * ow + x) * c..(y * ow + x + 1) * c].copy_from_slice(&src[s..s + c]);
            }
        }
    }
    dst
}

/// `img.resize((out_w, out_h), filter, box)` as Pillow computes it for 8-bit images without
/// alpha (Pillow premultiplies RGBA first; callers here resize RGB and L images). `source_box`
/// is `(left, top, right, bottom)` within the image (the whole image when `None`); a box of zero
/// height or width stretches the filter's taps around that edge, as A1111's fill bands use.
pub fn resample<P: Pixel<Subpixel = u8>>(
    img: &Image8<P>,
    out_w: u32,
    out_h: u32,
    filter: Filter,
    source_box: Option<[f32; 4]>,
) -> Image8<P> {
    let (w, h) = img.dimensions();
    if out_w == 0 || out_h == 0 || w == 0 || h == 0 {
        return ImageBuffer::new(out_w, out_h);
    }
    let c = usize::from(P::CHANNEL_COUNT);
    let b = source_box.unwrap_or([0.0, 0.0, w as f32, h as f32]);
    let (ow, oh) = (out_w as usize, out_h as usize);
    let src = img.as_raw();
    let whole_pixels = b[0].fract() == 0.0 && b[1].fract() == 0.0;
    let data = if whole_pixels && b[2] - b[0] == out_w as f32 && b[3] - b[1] == out_h as f32 {
        let (x0, y0) = (b[0] as usize, b[1] as usize);
        let mut out = Vec::with_capacity(ow * oh * c);
        for y in y0..y0 + oh {
            out.extend_from_slice(&src[(y * w as usize + x0) * c..(y * w as usize + x0 + ow) * c]);
        }
        out
    } else if filter == Filter::Nearest {
        nearest(src, (w as usize, h as usize, c), (ow, oh), b)
    } else {
        let need_h = out_w != w || b[0] != 0.0 || b[2] != out_w as f32;
        let need_v = out_h != h || b[1] != 0.0 || b[3] != out_h as f32;
        let vk = coeffs(h as usize, b[1], b[3], oh, filter);
        let (mut cur, mut cur_w, mut shift) = (src.clone(), w as usize, 0);
        if need_h {
            let first = vk.taps[0].0;
            let (last_min, last_taps) = &vk.taps[oh - 1];
            let rows = last_min + last_taps.len() - first;
            let hk = coeffs(w as usize, b[0], b[2], ow, filter);
            cur = horizontal(src, w as usize, c, first, rows, &hk);
            cur_w = ow;
            shift = first;
        }
        if need_v {
            cur = vertical(&cur, cur_w, c, shift, &vk);
        }
        cur
    };
    ImageBuffer::from_raw(out_w, out_h, data).expect("resampled buffer has the output's size")
}
