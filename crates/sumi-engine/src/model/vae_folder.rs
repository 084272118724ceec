//! A diffusers `vae/` folder: its config and its weights.

use std::path::Path;

use candle_core::{DType, Device};

use crate::arch::vae::{Vae, VaeConfig};
use crate::weights::find::find_weights;
use crate::weights::json::read_json;
use crate::weights::safetensors::build_with_weights;
use crate::{Error, Result};

/// Reads `config.json` in a `vae/` folder.
pub fn read_vae_config(vae_dir: &Path) -> Result<VaeConfig> {
    let path = vae_dir.join("config.json");
    let cfg: VaeConfig = read_json(&path)?;
    cfg.validate().map_err(|e| Error::model(&path, e))?;
    Ok(cfg)
}

/// Loads the VAE weights of a `vae/` folder for `config`.
pub(super) fn load_vae(
    vae_dir: &Path,
    config: VaeConfig,
    device: &Device,
    dtype: DType,
) -> Result<Vae> {
    let files = find_weights(vae_dir, "diffusion_pytorch_model")?;
    build_with_weights(&files, dtype, device, |vb| Vae::new(config, vb))?
        .map_err(|e| Error::model(vae_dir, format!("weights do not match config.json: {e}")))
}
