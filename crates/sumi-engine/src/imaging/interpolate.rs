//! `torch.nn.functional.interpolate` on latents `[B, C, H, W]`, in the modes of A1111's
//! "Latent" upscalers, computed as PyTorch's CPU kernels do in single precision (results agree
//! to float rounding, about 1e-6).

use candle_core::{DType, Device, Result, Tensor};

/// A1111's latent upscalers (`shared.latent_upscale_modes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatentUpscale {
    /// "Latent": bilinear, no antialiasing.
    Bilinear,
    /// "Latent (antialiased)": bilinear with antialiasing (a triangle filter widened when
    /// shrinking, renormalised at the borders).
    BilinearAntialias,
    /// "Latent (bicubic)": bicubic with a = -0.75, edges clamped.
    Bicubic,
    /// "Latent (bicubic antialiased)": bicubic with antialiasing (a = -0.5, renormalised).
    BicubicAntialias,
    /// "Latent (nearest)": `nearest` (floor of `dst * in / out`).
    Nearest,
    /// "Latent (nearest-exact)": `nearest-exact` (floor of `(dst + 0.5) * in / out`).
    NearestExact,
}

impl LatentUpscale {
    /// The mode for an A1111 upscaler name such as `Latent (bicubic antialiased)`.
    pub fn from_a1111_name(name: &str) -> Option<Self> {
        Some(match name.trim() {
            "Latent" => Self::Bilinear,
            "Latent (antialiased)" => Self::BilinearAntialias,
            "Latent (bicubic)" => Self::Bicubic,
            "Latent (bicubic antialiased)" => Self::BicubicAntialias,
            "Latent (nearest)" => Self::Nearest,
            "Latent (nearest-exact)" => Self::NearestExact,
            _ => return None,
        })
    }
}

/// One output position: input indices and their weights.
type Taps = Vec<(Vec<usize>, Vec<f32>)>;

fn nearest_taps(input: usize, output: usize, exact: bool) -> Taps {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let src = if input == output {
                i
            } else if exact {
                (((i as f64 + 0.5) * f64::from(scale)).floor() as usize).min(input - 1)
            } else if output == 2 * input {
                i >> 1
            } else {
                ((i as f32 * scale).floor() as usize).min(input - 1)
            };
            (vec![src], vec![1.0])
        })
        .collect()
}

fn linear_taps(input: usize, output: usize) -> Taps {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real.floor() as usize).min(input - 1);
            let l = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            (vec![i0, i1], vec![1.0 - l, l])
        })
        .collect()
}

fn cubic_taps(input: usize, output: usize) -> Taps {
    let scale = input as f32 / output as f32;
    let a = -0.75f32;
    let near = |x: f32| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    (0..output)
        .map(|i| {
            let real = scale * (i as f32 + 0.5) - 0.5;
            let i0 = (real.floor() as i64).min(input as i64 - 1);
            let t = (real - i0 as f32).clamp(0.0, 1.0);
            let w = vec![far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            let idx = (0..4)
                .map(|j| (i0 - 1 + j).clamp(0, input as i64 - 1) as usize)
                .collect();
            (idx, w)
        })
        .collect()
}

fn antialias_taps(input: usize, output: usize, cubic: bool) -> Taps {
    let scale = input as f32 / output as f32;
    let size = if cubic { 4.0f32 } else { 2.0 };
    let support = if scale >= 1.0 {
        size * 0.5 * scale
    } else {
        size * 0.5
    };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let max_taps = support.ceil() as i64 * 2 + 1;
    let filter = |x: f32| {
        let x = x.abs();
        if cubic {
            let a = -0.5f32;
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        } else if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    };
    (0..output)
        .map(|i| {
            let center = scale * (i as f32 + 0.5);
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xsize = ((center + support + 0.5) as i64).min(input as i64) - xmin;
            let xsize = xsize.clamp(0, max_taps);
            let mut w: Vec<f32> = (0..xsize)
                .map(|j| filter(((j + xmin) as f32 - center + 0.5) * invscale))
                .collect();
            let total: f32 = w.iter().fold(0.0, |s, v| s + v);
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            ((0..xsize).map(|j| (xmin + j) as usize).collect(), w)
        })
        .collect()
}

fn weighted(taps: &(Vec<usize>, Vec<f32>), at: impl Fn(usize) -> f32) -> f32 {
    let mut it = taps.0.iter().zip(&taps.1);
    let Some((&i, &w)) = it.next() else {
        return 0.0;
    };
    it.fold(at(i) * w, |s, (&i, &w)| s + at(i) * w)
}

/// Upscales (or shrinks) `x` `[B, C, H, W]` to `height x width` as `F.interpolate(x, size,
/// mode, align_corners=False)` does, computing in f32 on the CPU and returning `x`'s dtype and
/// device.
pub fn interpolate(x: &Tensor, height: usize, width: usize, mode: LatentUpscale) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if height == 0 || width == 0 || h == 0 || w == 0 {
        candle_core::bail!("cannot interpolate {h}x{w} to {height}x{width}");
    }
    let data = x
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let (ty, tx) = match mode {
        LatentUpscale::Nearest => (
            nearest_taps(h, height, false),
            nearest_taps(w, width, false),
        ),
        LatentUpscale::NearestExact => {
            (nearest_taps(h, height, true), nearest_taps(w, width, true))
        }
        LatentUpscale::Bilinear => (linear_taps(h, height), linear_taps(w, width)),
        LatentUpscale::Bicubic => (cubic_taps(h, height), cubic_taps(w, width)),
        LatentUpscale::BilinearAntialias => (
            antialias_taps(h, height, false),
            antialias_taps(w, width, false),
        ),
        LatentUpscale::BicubicAntialias => (
            antialias_taps(h, height, true),
            antialias_taps(w, width, true),
        ),
    };
    let separable = matches!(
        mode,
        LatentUpscale::BilinearAntialias | LatentUpscale::BicubicAntialias
    );
    let mut out = Vec::with_capacity(b * c * height * width);
    for plane in data.chunks(h * w) {
        if separable {
            // PyTorch's antialiased kernels: a width pass, then a height pass, each skipped
            // when that side keeps its size.
            let rows: Vec<f32> = if width == w {
                plane.to_vec()
            } else {
                (0..h)
                    .flat_map(|y| tx.iter().map(move |t| (y, t)))
                    .map(|(y, t)| weighted(t, |i| plane[y * w + i]))
                    .collect()
            };
            if height == h {
                out.extend(rows);
            } else {
                for t in &ty {
                    out.extend((0..width).map(|xx| weighted(t, |i| rows[i * width + xx])));
                }
            }
        } else {
            for t in &ty {
                for s in &tx {
                    out.push(weighted(t, |yi| weighted(s, |xi| plane[yi * w + xi])));
                }
            }
        }
    }
    Tensor::from_vec(out, (b, c, height, width), &Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())
}
