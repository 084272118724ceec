//! A VAE loaded on its own, in place of the one a model ships with (`--vae`).

use std::path::Path;

use candle_core::{DType, Device};

use super::folder::{load_vae, read_vae_config};
use crate::arch::vae::Vae;
use crate::weights::ldm::{is_pickle_extension, refuse_pickle, standalone_vae};
use crate::{Error, Result};

/// Loads a separate VAE: a diffusers `vae/` folder, a model folder with `vae/`, or a
/// `.safetensors` file (LDM or diffusers names). `scaling` is the model's latent scaling factor.
pub fn load_vae_override(path: &Path, scaling: f64, device: &Device, dtype: DType) -> Result<Vae> {
    if path.is_dir() {
        let dir = if path.join("vae").join("config.json").is_file() {
            path.join("vae")
        } else {
            path.to_path_buf()
        };
        let cfg = read_vae_config(&dir)?;
        return load_vae(&dir, cfg, device, dtype);
    }
    if is_pickle_extension(path) {
        return Err(refuse_pickle(path));
    }
    if !path.is_file() {
        return Err(Error::model(path, "VAE file or folder does not exist"));
    }
    // A config.json beside the file (a diffusers `vae/` folder) describes it; else infer.
    let beside = path.parent().map(|d| d.join("config.json"));
    let config = match beside {
        Some(c) if c.is_file() => Some(read_vae_config(c.parent().unwrap_or(Path::new(".")))?),
        _ => None,
    };
    let (cfg, vb) = standalone_vae(path, config, dtype, device, scaling)?;
    Vae::new(cfg, vb).map_err(|e| Error::model(path, format!("VAE weights do not load: {e}")))
}
