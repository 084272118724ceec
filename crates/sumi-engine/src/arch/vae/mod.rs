//! The VAE (diffusers' `AutoencoderKL`): its config, the decoder (latents to images) and the
//! encoder (images to latents, for image-to-image work), both tiled for large images.

mod attention;
mod config;
mod decoder;
mod encoder;
mod tiles;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use config::VaeConfig;
pub use decoder::VaeDecoder;
pub use encoder::VaeEncoder;
pub use tiles::Tiling;

/// A model's VAE: its config (latent channels, downscale, scaling and shift), its decoder and,
/// when the weights carry one, its encoder.
#[derive(Debug)]
pub struct Vae {
    /// Latents (unscaled) to images.
    pub decoder: VaeDecoder,
    /// Images to latents (unscaled); `None` when the weights have no usable encoder.
    pub encoder: Option<VaeEncoder>,
}

impl Vae {
    /// Builds the decoder from `vb`, and the encoder too when `vb` has `encoder.*` weights.
    /// Encoder weights that do not load are logged and left out, so text-to-image still works.
    pub fn new(config: VaeConfig, vb: VarBuilder) -> Result<Self> {
        let encoder = if vb.contains_tensor("encoder.conv_in.weight") {
            match VaeEncoder::new(config.clone(), vb.clone()) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!("the VAE's encoder weights do not load ({e}); image-to-image is unavailable");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            decoder: VaeDecoder::new(config, vb)?,
            encoder,
        })
    }

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

    /// Encodes images `[B, 3, H, W]` in [-1, 1] (sides multiples of [`Vae::downscale`]) to
    /// latents in the sampler's space, computing in `image`'s dtype: the mean of the latent
    /// distribution (not a sample: A1111 samples it with a global random state no one can
    /// reproduce, diffusers with the request's generator), then `(mean - shift) * scaling`.
    pub fn encode(&self, image: &Tensor) -> crate::Result<Tensor> {
        let encoder = self.encoder.as_ref().ok_or_else(|| {
            crate::Error::InvalidRequest(
                "this VAE has no encoder weights, so it cannot turn an image into latents; \
                 image-to-image needs a full VAE: pass one with --vae"
                    .into(),
            )
        })?;
        let (_, c, h, w) = image.dims4()?;
        let s = self.downscale();
        if c != self.config().in_channels || h == 0 || w == 0 || h % s != 0 || w % s != 0 {
            return Err(crate::Error::InvalidRequest(format!(
                "cannot encode a {c}-channel {w}x{h} image: the VAE takes {} channels and sides \
                 that are positive multiples of {s}",
                self.config().in_channels
            )));
        }
        let c = self.config();
        let mut z = encoder.encode(image)?;
        if let Some(shift) = c.shift_factor {
            z = (z - shift)?;
        }
        Ok((z * c.scaling_factor)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::path::PathBuf;

    fn fixture_vae(model: &str) -> Vae {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(model)
            .join("vae");
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
        Vae::new(cfg, vb).unwrap()
    }

    #[test]
    fn encode_gives_the_scaled_latent_diffusers_gives() {
        let refs = candle_core::safetensors::load(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/img/reference.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        for model in ["sd15", "sd2v", "sdxl"] {
            let vae = fixture_vae(model);
            assert!(vae.encoder.is_some(), "{model}: encoder not loaded");
            let latent = vae.encode(&refs["vae.image"]).unwrap();
            let err =
                crate::test_util::max_abs_diff(&latent, &refs[&format!("vae.{model}.latent")]);
            assert!(err < 1e-4, "{model}: scaled latent max abs error {err}");
        }
    }

    #[test]
    fn encode_refuses_sizes_the_vae_cannot_take_and_missing_encoders() {
        let mut vae = fixture_vae("sd15");
        let odd = Tensor::zeros((1, 3, 20, 16), DType::F32, &Device::Cpu).unwrap();
        let e = vae.encode(&odd).unwrap_err().to_string();
        assert!(e.contains("multiples of 8"), "{e}");
        vae.encoder = None;
        let ok = Tensor::zeros((1, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
        let e = vae.encode(&ok).unwrap_err().to_string();
        assert!(e.contains("no encoder"), "{e}");
    }
}
