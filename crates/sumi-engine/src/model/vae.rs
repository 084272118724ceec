//! The VAE decoder (diffusers' `AutoencoderKL`), built from its `config.json`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{GroupNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::layers::{attention, conv2d, Conv2d, group_norm, ResnetBlock, Upsample};

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
    /// Latent scaling: the sampler works on `latent * scaling_factor`.
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
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
        let q = self.to_q.forward(&seq)?;
        let k = self.to_k.forward(&seq)?;
        let v = self.to_v.forward(&seq)?;
        let out = self.to_out.forward(&attention(&q, &k, &v, 1)?)?;
        let out = out.transpose(1, 2)?.reshape((b, c, h, w))?;
        out + xs
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

    /// Decodes latents `[B, C, h, w]` (already divided by the scaling factor) to images.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
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
        let xs = candle_nn::ops::silu(&self.norm_out.forward(&xs)?)?;
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
        let err: f32 = (out - &refs["vae.image"])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(err < 1e-4, "{model}: vae max abs error {err}");
    }

    #[test]
    fn vae_decoder_matches_diffusers() {
        for m in ["sd15", "sd2v", "sdxl"] {
            check(m);
        }
    }
}
