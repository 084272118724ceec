//! Cheap latent -> RGB previews: a per-family linear map of the x0 estimate, computed on the
//! latent's device so only the small RGB image crosses to the host.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::arch::vae::Vae;
use crate::family::Family;
use crate::noise::torch_cpu::TorchCpuRng;
use crate::Result;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A linear latent -> RGB map: `rgb = latent · weights + bias`, in [-1, 1] colour units.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewMap {
    /// One row per latent channel; columns: R, G, B.
    pub weights: Vec<[f32; 3]>,
    /// Added to R, G, B.
    pub bias: [f32; 3],
}

impl PreviewMap {
    /// The published fit for a family's standard VAE (see FACTS.md).
    pub fn for_family(family: Family) -> Self {
        let p = family.spec().preview;
        Self {
            weights: p.weights.to_vec(),
            bias: p.bias,
        }
    }

    /// The map for `vae`: the family's published fit when the VAE has the family's standard
    /// shape, else a least-squares fit made by decoding a few random latents (cheap for the
    /// small VAEs that are not standard, such as the demo model's).
    pub fn for_vae(vae: &Vae, family: Family, device: &Device, dtype: DType) -> Result<Self> {
        let c = vae.config();
        let standard = Self::for_family(family);
        if c.block_out_channels == [128, 256, 512, 512]
            && c.latent_channels == standard.weights.len()
        {
            return Ok(standard);
        }
        Self::fit(vae, device, crate::device::compute_dtype(dtype, device))
    }

    /// Fits a map to `vae` by least squares over decoded random latents: smooth random fields
    /// (like the flat areas of real pictures) plus some fine noise, each latent pixel against the
    /// mean colour of the image patch it decodes to.
    pub fn fit(vae: &Vae, dev: &Device, dtype: DType) -> Result<Self> {
        const BATCH: usize = 8;
        const SIDE: usize = 16;
        let ch = vae.latent_channels();
        let mut rng = TorchCpuRng::new(20240521);
        let coarse = Tensor::from_vec(rng.randn(BATCH * ch * 4 * 4), (BATCH, ch, 4, 4), dev)?
            .upsample_nearest2d(SIDE, SIDE)?;
        let fine = Tensor::from_vec(
            rng.randn(BATCH * ch * SIDE * SIDE),
            (BATCH, ch, SIDE, SIDE),
            dev,
        )?;
        let latents = (coarse + (fine * 0.3)?)?;
        let image = vae
            .decode(&latents.to_dtype(dtype)?)?
            .to_dtype(DType::F32)?;
        let (_, _, h, _) = image.dims4()?;
        let down = h / SIDE;
        let rgb = image.avg_pool2d(down)?; // [B, 3, SIDE, SIDE]
        let x = latents
            .permute((0, 2, 3, 1))?
            .reshape((BATCH * SIDE * SIDE, ch))?;
        let y = rgb
            .permute((0, 2, 3, 1))?
            .reshape((BATCH * SIDE * SIDE, 3))?;
        let x: Vec<Vec<f32>> = x.to_vec2()?;
        let y: Vec<Vec<f32>> = y.to_vec2()?;
        Ok(least_squares(&x, &y))
    }
}

/// Solves `y ≈ [x, 1] · W` for a C-in, 3-out map with bias (normal equations, a little ridge).
fn least_squares(x: &[Vec<f32>], y: &[Vec<f32>]) -> PreviewMap {
    let c = x.first().map_or(0, Vec::len);
    let n = c + 1;
    let mut a = vec![vec![0f64; n]; n];
    let mut b = vec![[0f64; 3]; n];
    for (xi, yi) in x.iter().zip(y) {
        let v: Vec<f64> = xi.iter().map(|&v| f64::from(v)).chain([1.0]).collect();
        for r in 0..n {
            for col in 0..n {
                a[r][col] += v[r] * v[col];
            }
            for k in 0..3 {
                b[r][k] += v[r] * f64::from(yi[k]);
            }
        }
    }
    for (r, row) in a.iter_mut().enumerate().take(c) {
        row[r] += 1e-6 * x.len() as f64;
    }
    // Gauss-Jordan elimination with partial pivoting.
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-12 {
            continue;
        }
        let (pa, pb) = (a[col].clone(), b[col]);
        for (r, (ra, rb)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            if r != col {
                let f = ra[col] / p;
                for (x, y) in ra.iter_mut().zip(&pa) {
                    *x -= f * y;
                }
                for (x, y) in rb.iter_mut().zip(pb) {
                    *x -= f * y;
                }
            }
        }
    }
    let solve = |r: usize, k: usize| {
        if a[r][r].abs() < 1e-12 {
            0.0
        } else {
            (b[r][k] / a[r][r]) as f32
        }
    };
    PreviewMap {
        weights: (0..c)
            .map(|r| std::array::from_fn(|k| solve(r, k)))
            .collect(),
        bias: std::array::from_fn(|k| solve(c, k)),
    }
}

/// An RGB picture of the latent `x0` (`[1, C, h, w]`, scaled latent space) at latent resolution;
/// `None` when the map is for another number of channels.
pub fn latent_preview(x0: &Tensor, map: &PreviewMap) -> Result<Option<RgbImage>> {
    let (_, c, h, w) = x0.dims4()?;
    if c != map.weights.len() {
        return Ok(None);
    }
    let dev = x0.device();
    let flat: Vec<f32> = map.weights.iter().flatten().copied().collect();
    let m = Tensor::from_vec(flat, (c, 3), dev)?;
    let b = Tensor::new(&map.bias, dev)?;
    let pixels = x0.get(0)?.to_dtype(DType::F32)?.reshape((c, h * w))?.t()?;
    let rgb = pixels.matmul(&m)?.broadcast_add(&b)?;
    let bytes = ((((rgb + 1.0)? * 127.5)?.clamp(0.0, 255.0)?.round()?).to_dtype(DType::U8)?)
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(RgbImage::from_raw(w as u32, h as u32, bytes))
}

/// How [0, 1] colours become 8-bit values: diffusers rounds, A1111 and ComfyUI truncate
/// (`(255 * x).astype(uint8)`); an image re-made for another tool follows that tool's rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// Round to the nearest value (diffusers, Sumi's own images).
    #[default]
    Round,
    /// Round down (A1111, ComfyUI).
    Truncate,
}

/// Converts decoded images `[1, 3, H, W]` in about [-1, 1] to an 8-bit RGB image.
pub fn to_rgb_image(decoded: &Tensor, quantize: Quantize) -> Result<RgbImage> {
    let (_, _, h, w) = decoded.dims4()?;
    let img = ((decoded.get(0)?.to_dtype(DType::F32)? / 2.0)? + 0.5)?.clamp(0.0, 1.0)?;
    let scaled = (img * 255.0)?;
    let levels = match quantize {
        Quantize::Round => scaled.round()?,
        Quantize::Truncate => scaled.floor()?,
    };
    let bytes = levels
        .to_dtype(DType::U8)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(RgbImage::from_raw(w as u32, h as u32, bytes).expect("buffer size matches"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Model, Request};
    use std::sync::atomic::AtomicBool;

    /// The last step's preview and the finished image scaled down to the preview's size.
    fn last_preview_and_image(model: &Model, prompt: &str) -> (RgbImage, RgbImage) {
        let req = Request::with_defaults(&model.info, prompt, 11);
        let mut last = None;
        let img = crate::generate(model, &req, &AtomicBool::new(false), &mut |e| {
            if let Event::Step {
                preview: Some(p), ..
            } = e
            {
                last = Some(p);
            }
        })
        .unwrap();
        let last = last.expect("previews were sent");
        let small = image::imageops::resize(
            &img,
            last.width(),
            last.height(),
            image::imageops::FilterType::Triangle,
        );
        (last, small)
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        let sum: f64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum();
        sum / a.as_raw().len() as f64
    }

    #[test]
    fn least_squares_recovers_a_known_map() {
        let truth = PreviewMap {
            weights: vec![
                [0.5, -0.2, 0.1],
                [0.0, 0.3, -0.4],
                [0.2, 0.2, 0.2],
                [-0.1, 0.0, 0.6],
            ],
            bias: [0.05, -0.1, 0.2],
        };
        let mut rng = TorchCpuRng::new(1);
        let v = rng.randn(400 * 4);
        let x: Vec<Vec<f32>> = v.chunks(4).map(<[f32]>::to_vec).collect();
        let y: Vec<Vec<f32>> = x
            .iter()
            .map(|xi| {
                (0..3)
                    .map(|k| {
                        (0..4).map(|r| xi[r] * truth.weights[r][k]).sum::<f32>() + truth.bias[k]
                    })
                    .collect()
            })
            .collect();
        let got = least_squares(&x, &y);
        for r in 0..4 {
            for k in 0..3 {
                assert!(
                    (got.weights[r][k] - truth.weights[r][k]).abs() < 1e-3,
                    "{got:?}"
                );
            }
        }
        for k in 0..3 {
            assert!((got.bias[k] - truth.bias[k]).abs() < 1e-3, "{got:?}");
        }
    }

    #[test]
    fn demo_model_previews_match_the_decoded_colours() {
        let dir = crate::test_util::demo_model();
        let mut model = Model::load(&dir, &Device::Cpu, DType::F32).unwrap();
        let fitted = model.preview.clone();
        assert_ne!(fitted, PreviewMap::for_family(model.info.family));
        // Measured: fitted 29.6-30.9, SD 1.x coefficients ~82 mean abs error (of 255).
        let prompt = "a yellow star on a purple background";
        model.preview = fitted;
        let (preview, image) = last_preview_and_image(&model, prompt);
        let fit_err = mean_abs_diff(&preview, &image);
        model.preview = PreviewMap::for_family(model.info.family);
        let (preview, image) = last_preview_and_image(&model, prompt);
        let sd_err = mean_abs_diff(&preview, &image);
        eprintln!("{prompt}: fitted {fit_err:.1}, SD 1.x coefficients {sd_err:.1} (of 255)");
        assert!(
            fit_err < 40.0,
            "{prompt}: fitted preview off by {fit_err:.1}"
        );
        assert!(
            fit_err * 2.0 < sd_err,
            "{prompt}: {fit_err:.1} vs {sd_err:.1}"
        );
    }
}
