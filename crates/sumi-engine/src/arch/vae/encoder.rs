//! The VAE encoder (diffusers' `AutoencoderKL` encoder and `quant_conv`), built from its config:
//! images in [-1, 1] to the mean of the latent distribution.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::SpatialSelfAttention;
use super::config::VaeConfig;
use super::tiles::{tile_starts, Blend, Tiling};
use crate::device::free_memory;
use crate::nn::{conv2d, group_norm, Conv2d, Downsample, GroupNorm, ResnetBlock};

/// A loaded VAE encoder: images `[B, C, H, W]` in [-1, 1] to the (unscaled) latent mean.
#[derive(Debug)]
pub struct VaeEncoder {
    config: VaeConfig,
    conv_in: Conv2d,
    down: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid_a: ResnetBlock,
    mid_attn: Option<SpatialSelfAttention>,
    mid_b: ResnetBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl VaeEncoder {
    /// Builds the encoder described by `config` from the VAE weights in `vb` (`encoder.*` and
    /// `quant_conv.*`).
    pub fn new(config: VaeConfig, vb: VarBuilder) -> Result<Self> {
        let boc = &config.block_out_channels;
        let n = boc.len();
        let g = config.norm_num_groups;
        let lat2 = 2 * config.latent_channels;
        let enc = vb.pp("encoder");
        let mut down = Vec::with_capacity(n);
        let mut cin = boc[0];
        for (i, &cout) in boc.iter().enumerate() {
            let vb = enc.pp(format!("down_blocks.{i}"));
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    let c = if j == 0 { cin } else { cout };
                    ResnetBlock::new(c, cout, None, g, 1e-6, vb.pp(format!("resnets.{j}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let downsample = if i + 1 < n {
                Some(Downsample::padded_after(cout, vb.pp("downsamplers.0"))?)
            } else {
                None
            };
            down.push((resnets, downsample));
            cin = cout;
        }
        let top = boc[n - 1];
        let mid = enc.pp("mid_block");
        Ok(Self {
            conv_in: conv2d(config.in_channels, boc[0], 3, 1, 1, enc.pp("conv_in"))?,
            down,
            mid_a: ResnetBlock::new(top, top, None, g, 1e-6, mid.pp("resnets.0"))?,
            mid_attn: if config.mid_block_add_attention {
                Some(SpatialSelfAttention::new(top, g, mid.pp("attentions.0"))?)
            } else {
                None
            },
            mid_b: ResnetBlock::new(top, top, None, g, 1e-6, mid.pp("resnets.1"))?,
            norm_out: group_norm(g, top, 1e-6, enc.pp("conv_norm_out"))?,
            conv_out: conv2d(top, lat2, 3, 1, 1, enc.pp("conv_out"))?,
            quant_conv: if config.use_quant_conv {
                Some(conv2d(lat2, lat2, 1, 1, 0, vb.pp("quant_conv"))?)
            } else {
                None
            },
            config,
        })
    }

    /// The config the encoder was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The latent mean `[B, latent_channels, H / s, W / s]` (not scaled) of images whose sides
    /// are multiples of the downscale `s`; encodes in tiles when the untiled pass would need more
    /// than half the device's free memory.
    pub fn encode(&self, images: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = images.dims4()?;
        let need = self.encode_bytes(b, h, w, images.dtype().size_in_bytes());
        let short = free_memory(images.device()).is_some_and(|m| need > m / 2);
        if short {
            tracing::info!(need, "memory is short: encoding in tiles");
            self.encode_tiled(images, Tiling::default())
        } else {
            self.encode_full(images)
        }
    }

    /// A rough size in bytes of the largest activations alive at once in an untiled encode
    /// (about six tensors of the widest full-resolution level).
    pub fn encode_bytes(&self, batch: usize, h: usize, w: usize, elem: usize) -> usize {
        6 * batch * self.config.block_out_channels[0] * h * w * elem
    }

    /// Encodes overlapping image tiles (`tiling` counted in latent cells) one at a time and
    /// blends their latents linearly across the overlaps, so memory follows the tile size
    /// rather than the image size. Group-norm statistics are per tile, so the result is close
    /// to, not equal to, the untiled encode.
    pub fn encode_tiled(&self, images: &Tensor, tiling: Tiling) -> Result<Tensor> {
        let (b, _, h, w) = images.dims4()?;
        let s = self.config.downscale();
        let c = self.config.latent_channels;
        let (lh, lw) = (h / s, w / s);
        let mut blend = Blend::new(b * c, lh, lw);
        for y0 in tile_starts(lh, tiling) {
            for x0 in tile_starts(lw, tiling) {
                let (th, tw) = (tiling.tile.min(lh), tiling.tile.min(lw));
                let tile = images
                    .narrow(2, y0 * s, th * s)?
                    .narrow(3, x0 * s, tw * s)?;
                let lat = self.encode_full(&tile)?.to_dtype(DType::F32)?;
                let lat = lat.flatten_all()?.to_vec1::<f32>()?;
                blend.add(&lat, (y0, x0), (th, tw), tiling.overlap as f32);
            }
        }
        Tensor::from_vec(blend.finish(), (b, c, lh, lw), images.device())?.to_dtype(images.dtype())
    }

    /// Encodes the whole image at once: the mean half of the encoder's output.
    pub fn encode_full(&self, images: &Tensor) -> Result<Tensor> {
        let mut xs = self.conv_in.forward(images)?;
        for (resnets, downsample) in &self.down {
            for r in resnets {
                xs = r.forward(&xs, None)?;
            }
            if let Some(ds) = downsample {
                xs = ds.forward(&xs)?;
            }
        }
        xs = self.mid_a.forward(&xs, None)?;
        if let Some(attn) = &self.mid_attn {
            xs = attn.forward(&xs)?;
        }
        xs = self.mid_b.forward(&xs, None)?;
        let xs = self.conv_out.forward(&self.norm_out.forward_silu(&xs)?)?;
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(&xs)?,
            None => xs,
        };
        moments.narrow(1, 0, self.config.latent_channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    fn refs() -> std::collections::HashMap<String, Tensor> {
        candle_core::safetensors::load(fixtures().join("img/reference.safetensors"), &Device::Cpu)
            .unwrap()
    }

    /// The encoder of a fixture model's `vae/` folder.
    fn folder_encoder(model: &str) -> VaeEncoder {
        let dir = fixtures().join(model).join("vae");
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
        VaeEncoder::new(cfg, vb).unwrap()
    }

    #[test]
    fn encoder_mean_matches_diffusers_on_every_fixture() {
        let r = refs();
        for model in ["sd15", "sd2v", "sdxl"] {
            let mean = folder_encoder(model).encode_full(&r["vae.image"]).unwrap();
            let err = crate::test_util::max_abs_diff(&mean, &r[&format!("vae.{model}.mean")]);
            eprintln!("{model}: encoder mean max abs difference to diffusers {err}");
            assert!(err < 1e-4, "{model}: mean max abs error {err}");
        }
    }

    #[test]
    fn one_tile_equals_untiled_encode_and_tiles_stay_close() {
        let r = refs();
        let enc = folder_encoder("sd15");
        let image = r["vae.image"].narrow(0, 0, 1).unwrap();
        let full = enc.encode_full(&image).unwrap();
        let one = enc
            .encode_tiled(
                &image,
                Tiling {
                    tile: 16,
                    overlap: 4,
                },
            )
            .unwrap();
        assert!(crate::test_util::max_abs_diff(&full, &one) < 1e-6);
        // Two tiles across the width (10 cells, tiles of 8 overlapping by 6).
        let tiled = enc
            .encode_tiled(
                &image,
                Tiling {
                    tile: 8,
                    overlap: 6,
                },
            )
            .unwrap();
        assert_eq!(tiled.dims(), full.dims());
        let diff: f32 = (&full - &tiled)
            .unwrap()
            .abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        let spread: f32 = full.abs().unwrap().mean_all().unwrap().to_scalar().unwrap();
        eprintln!("tiled vs untiled encode: mean abs difference {diff}, latent magnitude {spread}");
        assert!(diff < 0.25 * spread, "{diff} vs {spread}");
    }
}
