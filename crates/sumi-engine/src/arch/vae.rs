//! The VAE decoder (diffusers' `AutoencoderKL`), built from its `config.json`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::Deserialize;

use crate::device::free_memory;
use crate::kernels;
use crate::nn::{attention, conv2d, group_norm, Conv2d, GroupNorm, ResnetBlock, Upsample};

/// The fields of diffusers' `vae/config.json` that Sumi uses.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    /// Channel width of each resolution level (encoder order).
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block (the decoder has one more).
    #[serde(default = "one")]
    pub layers_per_block: usize,
    /// Latent channels.
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// Image channels.
    #[serde(default = "three")]
    pub out_channels: usize,
    /// Group-norm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Latent scaling: the sampler works on `(latent - shift_factor) * scaling_factor`.
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    /// Latent shift (16-channel VAEs such as Flux's; none for SD's).
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Whether a 1x1 conv precedes the decoder.
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    /// Whether the mid block has attention.
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    /// Image size the VAE was trained at.
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn yes() -> bool {
    true
}
fn default_groups() -> usize {
    32
}
fn default_scaling() -> f64 {
    0.18215
}

impl VaeConfig {
    /// Checks the config describes a VAE this implementation can build.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.block_out_channels.is_empty() {
            return Err("block_out_channels is empty".into());
        }
        let g = self.norm_num_groups;
        if g == 0 || self.block_out_channels.iter().any(|c| c % g != 0) {
            return Err("norm_num_groups must divide every block_out_channels entry".into());
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor > 0.0) {
            return Err("scaling_factor must be a positive number".into());
        }
        if self.shift_factor.is_some_and(|s| !s.is_finite()) {
            return Err("shift_factor must be a finite number".into());
        }
        Ok(())
    }

    /// How many pixels one latent cell covers on each side.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

/// Single-head self-attention over spatial positions (the VAE mid block's attention).
#[derive(Debug)]
struct SpatialSelfAttention {
    norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialSelfAttention {
    fn new(c: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: group_norm(groups, c, 1e-6, vb.pp("group_norm"))?,
            to_q: candle_nn::linear(c, c, vb.pp("to_q"))?,
            to_k: candle_nn::linear(c, c, vb.pp("to_k"))?,
            to_v: candle_nn::linear(c, c, vb.pp("to_v"))?,
            to_out: candle_nn::linear(c, c, vb.pp("to_out.0"))?,
        })
    }
}

impl Module for SpatialSelfAttention {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let seq = self
            .norm
            .forward(xs)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = kernels::linear(&self.to_q, &seq)?;
        let k = kernels::linear(&self.to_k, &seq)?;
        let v = kernels::linear(&self.to_v, &seq)?;
        let out = kernels::linear(&self.to_out, &attention(&q, &k, &v, 1)?)?;
        let out = out.transpose(1, 2)?.reshape((b, c, h, w))?;
        out + xs
    }
}

/// Tile size and overlap of a tiled VAE decode, in latent cells.
#[derive(Debug, Clone, Copy)]
pub struct Tiling {
    /// Tile side (64 latent cells: 512 pixels for SD).
    pub tile: usize,
    /// Cells shared by neighbouring tiles, blended linearly.
    pub overlap: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile: 64,
            overlap: 16,
        }
    }
}

/// Start offsets of tiles covering `n` cells: `tile - overlap` apart, the last flush with the end.
fn tile_starts(n: usize, t: Tiling) -> Vec<usize> {
    if n <= t.tile {
        return vec![0];
    }
    let stride = t.tile.saturating_sub(t.overlap).max(1);
    let mut starts: Vec<usize> = (0..n - t.tile).step_by(stride).collect();
    starts.push(n - t.tile);
    starts
}

/// A model's VAE: its config (latent channels, downscale, scaling and shift) and its decoder; the
/// encoder is loaded by image-to-image work.
#[derive(Debug)]
pub struct Vae {
    /// Latents (unscaled) to images.
    pub decoder: VaeDecoder,
}

impl Vae {
    /// The VAE's config.
    pub fn config(&self) -> &VaeConfig {
        self.decoder.config()
    }

    /// Latent channels.
    pub fn latent_channels(&self) -> usize {
        self.config().latent_channels
    }

    /// Pixels per latent cell on each side.
    pub fn downscale(&self) -> usize {
        self.config().downscale()
    }

    /// Decodes a latent in the sampler's (scaled, shifted) space to an image `[B, 3, H, W]` in
    /// about [-1, 1], computing in `latent`'s dtype.
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let c = self.config();
        let mut z = (latent / c.scaling_factor)?;
        if let Some(shift) = c.shift_factor {
            z = (z + shift)?;
        }
        self.decoder.decode(&z)
    }
}

/// A loaded VAE decoder: latents (unscaled) to images in about [-1, 1].
#[derive(Debug)]
pub struct VaeDecoder {
    config: VaeConfig,
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid_a: ResnetBlock,
    mid_attn: Option<SpatialSelfAttention>,
    mid_b: ResnetBlock,
    up: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl VaeDecoder {
    /// Builds the decoder described by `config` from the VAE weights in `vb`.
    pub fn new(config: VaeConfig, vb: VarBuilder) -> Result<Self> {
        let boc = &config.block_out_channels;
        let n = boc.len();
        let g = config.norm_num_groups;
        let lat = config.latent_channels;
        let dec = vb.pp("decoder");
        let top = boc[n - 1];
        let mid = dec.pp("mid_block");
        let mut up = Vec::with_capacity(n);
        let mut cin = top;
        for i in 0..n {
            let cout = boc[n - 1 - i];
            let vb = dec.pp(format!("up_blocks.{i}"));
            let resnets = (0..config.layers_per_block + 1)
                .map(|j| {
                    ResnetBlock::new(
                        if j == 0 { cin } else { cout },
                        cout,
                        None,
                        g,
                        1e-6,
                        vb.pp(format!("resnets.{j}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let upsample = if i + 1 < n {
                Some(Upsample::new(cout, vb.pp("upsamplers.0"))?)
            } else {
                None
            };
            up.push((resnets, upsample));
            cin = cout;
        }
        Ok(Self {
            post_quant_conv: if config.use_post_quant_conv {
                Some(conv2d(lat, lat, 1, 1, 0, vb.pp("post_quant_conv"))?)
            } else {
                None
            },
            conv_in: conv2d(lat, top, 3, 1, 1, dec.pp("conv_in"))?,
            mid_a: ResnetBlock::new(top, top, None, g, 1e-6, mid.pp("resnets.0"))?,
            mid_attn: if config.mid_block_add_attention {
                Some(SpatialSelfAttention::new(top, g, mid.pp("attentions.0"))?)
            } else {
                None
            },
            mid_b: ResnetBlock::new(top, top, None, g, 1e-6, mid.pp("resnets.1"))?,
            up,
            norm_out: group_norm(g, boc[0], 1e-6, dec.pp("conv_norm_out"))?,
            conv_out: conv2d(boc[0], config.out_channels, 3, 1, 1, dec.pp("conv_out"))?,
            config,
        })
    }

    /// The config the decoder was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Decodes latents `[B, C, h, w]` (already divided by the scaling factor) to images; tiles
    /// the decode when the untiled one would need more than half the device's free memory.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = latents.dims4()?;
        let need = self.decode_bytes(b, h, w, latents.dtype().size_in_bytes());
        let short = free_memory(latents.device()).is_some_and(|m| need > m / 2);
        if short {
            tracing::info!(need, "memory is short: decoding in tiles");
            self.decode_tiled(latents, Tiling::default())
        } else {
            self.decode_full(latents)
        }
    }

    /// A rough size in bytes of the largest activations alive at once in an untiled decode
    /// (about six tensors of the widest full-resolution level).
    pub fn decode_bytes(&self, batch: usize, h: usize, w: usize, elem: usize) -> usize {
        let s = self.config.downscale();
        6 * batch * self.config.block_out_channels[0] * h * s * w * s * elem
    }

    /// Decodes overlapping latent tiles one at a time and blends them linearly across the
    /// overlaps, so memory follows the tile size rather than the image size. Group norm statistics
    /// are per tile, so the result is close to, not equal to, the untiled decode.
    pub fn decode_tiled(&self, latents: &Tensor, tiling: Tiling) -> Result<Tensor> {
        let (b, _, h, w) = latents.dims4()?;
        let s = self.config.downscale();
        let c = self.config.out_channels;
        let (ph, pw) = (h * s, w * s);
        let mut acc = vec![0f32; b * c * ph * pw];
        let mut weight = vec![0f32; ph * pw];
        for y0 in tile_starts(h, tiling) {
            for x0 in tile_starts(w, tiling) {
                let (th, tw) = (tiling.tile.min(h), tiling.tile.min(w));
                let tile = latents.narrow(2, y0, th)?.narrow(3, x0, tw)?;
                let img = self.decode_full(&tile)?.to_dtype(candle_core::DType::F32)?;
                let img = img.flatten_all()?.to_vec1::<f32>()?;
                let ramp = (tiling.overlap * s) as f32;
                let edge = |i: usize, n: usize, first: bool, last: bool| -> f32 {
                    let lo = if first {
                        1.0
                    } else {
                        ((i as f32 + 0.5) / ramp).min(1.0)
                    };
                    let hi = if last {
                        1.0
                    } else {
                        ((n - i) as f32 - 0.5) / ramp
                    };
                    lo.min(hi.min(1.0))
                };
                let (tph, tpw) = (th * s, tw * s);
                for py in 0..tph {
                    let wy = edge(py, tph, y0 == 0, y0 + th == h);
                    for px in 0..tpw {
                        let wgt = wy * edge(px, tpw, x0 == 0, x0 + tw == w);
                        let o = (y0 * s + py) * pw + x0 * s + px;
                        weight[o] += wgt;
                        for plane in 0..b * c {
                            acc[plane * ph * pw + o] +=
                                wgt * img[plane * tph * tpw + py * tpw + px];
                        }
                    }
                }
            }
        }
        for plane in acc.chunks_mut(ph * pw) {
            for (v, &wgt) in plane.iter_mut().zip(&weight) {
                *v /= wgt;
            }
        }
        Tensor::from_vec(acc, (b, c, ph, pw), latents.device())?.to_dtype(latents.dtype())
    }

    /// Decodes the whole latent at once.
    pub fn decode_full(&self, latents: &Tensor) -> Result<Tensor> {
        let mut xs = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents)?,
            None => latents.clone(),
        };
        xs = self.conv_in.forward(&xs)?;
        xs = self.mid_a.forward(&xs, None)?;
        if let Some(attn) = &self.mid_attn {
            xs = attn.forward(&xs)?;
        }
        xs = self.mid_b.forward(&xs, None)?;
        for (resnets, upsample) in &self.up {
            for r in resnets {
                xs = r.forward(&xs, None)?;
            }
            if let Some(us) = upsample {
                xs = us.forward(&xs, None)?;
            }
        }
        let xs = self.norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::path::PathBuf;

    fn check(model: &str) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let dir = root.join(model).join("vae");
        let refs = candle_core::safetensors::load(
            root.join(format!("ref/{model}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let cfg: VaeConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let files: Vec<_> = [
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
        ]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect();
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }
            .unwrap();
        let vae = VaeDecoder::new(cfg, vb).unwrap();
        let out = vae.decode(&refs["vae.latent"]).unwrap();
        let err = crate::test_util::max_abs_diff(&out, &refs["vae.image"]);
        assert!(err < 1e-4, "{model}: vae max abs error {err}");
    }

    fn sd15_fixture_vae() -> (VaeDecoder, Tensor) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let dir = root.join("sd15/vae");
        let cfg: VaeConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let files = vec![dir.join("diffusion_pytorch_model.safetensors")];
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }
            .unwrap();
        let vae = VaeDecoder::new(cfg, vb).unwrap();
        // A pattern with period 4 in both directions: every tile whose sides are multiples of
        // 4 has the same group-norm statistics as the whole latent, so what remains between
        // tiled and untiled decodes is the tiles' borders, which the overlap blending must hide.
        let (h, w) = (12usize, 16usize);
        let q = std::f32::consts::FRAC_PI_2;
        let vals: Vec<f32> = (0..4 * h * w)
            .map(|i| {
                let (c, y, x) = (i / (h * w), (i / w) % h, i % w);
                ((x as f32 * q + c as f32).sin() + (y as f32 * q - c as f32).cos()) * 0.8
            })
            .collect();
        let z = Tensor::from_vec(vals, (1, 4, h, w), &Device::Cpu).unwrap();
        (vae, z)
    }

    #[test]
    fn tile_starts_cover_and_overlap() {
        let t = Tiling {
            tile: 8,
            overlap: 2,
        };
        assert_eq!(tile_starts(5, t), vec![0]);
        assert_eq!(tile_starts(8, t), vec![0]);
        assert_eq!(tile_starts(20, t), vec![0, 6, 12]);
        assert_eq!(tile_starts(15, t), vec![0, 6, 7]);
    }

    #[test]
    fn one_tile_equals_untiled_decode() {
        let (vae, z) = sd15_fixture_vae();
        let full = vae.decode_full(&z).unwrap();
        let tiled = vae
            .decode_tiled(
                &z,
                Tiling {
                    tile: 16,
                    overlap: 4,
                },
            )
            .unwrap();
        let err = crate::test_util::max_abs_diff(&full, &tiled);
        assert!(err < 1e-6, "max abs difference {err}");
    }

    #[test]
    fn tiled_decode_is_close_to_untiled() {
        let (vae, z) = sd15_fixture_vae();
        let full = vae.decode_full(&z).unwrap();
        // Two tiles across the width, measured against the image's own spread.
        let tiled = vae
            .decode_tiled(
                &z,
                Tiling {
                    tile: 12,
                    overlap: 8,
                },
            )
            .unwrap();
        assert_eq!(full.dims(), tiled.dims());
        let mean_abs = |t: &Tensor| -> f32 {
            t.abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .mean(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let centred = full.broadcast_sub(&full.mean_all().unwrap()).unwrap();
        let (diff, spread) = (mean_abs(&(&full - &tiled).unwrap()), mean_abs(&centred));
        eprintln!("tiled vs untiled: mean abs difference {diff}, image spread {spread}");
        assert!(
            diff < 0.2 * spread,
            "mean abs difference {diff} vs spread {spread}"
        );
    }

    #[test]
    fn vae_decoder_matches_diffusers() {
        for m in ["sd15", "sd2v", "sdxl"] {
            check(m);
        }
    }
}
