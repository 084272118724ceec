//! The VAE decoder (diffusers' `AutoencoderKL` decoder), built from its config.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::SpatialSelfAttention;
use super::config::VaeConfig;
use super::tiles::{tile_starts, Blend, Tiling};
use crate::device::free_memory;
use crate::nn::{conv2d, group_norm, Conv2d, GroupNorm, ResnetBlock, Upsample};

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
        let mut blend = Blend::new(b * c, ph, pw);
        for y0 in tile_starts(h, tiling) {
            for x0 in tile_starts(w, tiling) {
                let (th, tw) = (tiling.tile.min(h), tiling.tile.min(w));
                let tile = latents.narrow(2, y0, th)?.narrow(3, x0, tw)?;
                let img = self.decode_full(&tile)?.to_dtype(candle_core::DType::F32)?;
                let img = img.flatten_all()?.to_vec1::<f32>()?;
                let ramp = (tiling.overlap * s) as f32;
                blend.add(&img, (y0 * s, x0 * s), (th * s, tw * s), ramp);
            }
        }
        Tensor::from_vec(blend.finish(), (b, c, ph, pw), latents.device())?
            .to_dtype(latents.dtype())
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
