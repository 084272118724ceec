//! The VAE's config (diffusers' `vae/config.json`).

use serde::Deserialize;

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
    /// Image channels the encoder takes.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels the decoder makes.
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
    /// Whether a 1x1 conv follows the encoder.
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
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
        use crate::weights::bounds::{check, check_all};
        if self.block_out_channels.is_empty() {
            return Err("block_out_channels is empty".into());
        }
        check("blocks", self.block_out_channels.len())?;
        check_all(
            "block_out_channels",
            self.block_out_channels.iter().copied(),
        )?;
        check("layers_per_block", self.layers_per_block)?;
        check("latent_channels", self.latent_channels)?;
        check("in_channels", self.in_channels)?;
        check("out_channels", self.out_channels)?;
        check("norm_num_groups", self.norm_num_groups)?;
        if let Some(s) = self.sample_size {
            check("sample_size", s)?;
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
