//! A VAE loaded on its own, in place of the one a model ships with (`--vae`).

use std::path::Path;

use candle_core::{DType, Device};

use super::vae_folder::{load_vae, read_vae_config};
use crate::arch::vae::Vae;
use crate::weights::ldm::{is_pickle_extension, refuse_pickle, standalone_vae};
use crate::{Error, Result};

/// Loads a separate VAE: a diffusers `vae/` folder, a model folder with `vae/`, or a
/// `.safetensors` file (LDM or diffusers names). `scaling` is the model's latent scaling factor.
pub fn load_vae_override(path: &Path, scaling: f64, device: &Device, dtype: DType) -> Result<Vae> {
    load_vae_with_shift(path, scaling, None, device, dtype)
}

/// [`load_vae_override`] for a model whose latents are also shifted (Flux): a file that carries
/// no config gets `shift`.
pub fn load_vae_with_shift(
    path: &Path,
    scaling: f64,
    shift: Option<f64>,
    device: &Device,
    dtype: DType,
) -> Result<Vae> {
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
    let configured = config.is_some();
    let (mut cfg, vb) = standalone_vae(path, config, dtype, device, scaling)?;
    if !configured && cfg.shift_factor.is_none() {
        cfg.shift_factor = shift;
    }
    Vae::new(cfg, vb).map_err(|e| Error::model(path, format!("VAE weights do not load: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_standalone_vae_file_brings_its_encoder() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let file = root.join("sd15/vae/diffusion_pytorch_model.safetensors");
        let vae = load_vae_override(&file, 0.18215, &Device::Cpu, DType::F32).unwrap();
        assert!(vae.encoder.is_some());
        let refs =
            candle_core::safetensors::load(root.join("img/reference.safetensors"), &Device::Cpu)
                .unwrap();
        let latent = vae.encode(&refs["vae.image"]).unwrap();
        let diff = (latent - &refs["vae.sd15.latent"])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "max abs error {diff}");
    }

    #[test]
    fn single_file_checkpoints_bring_their_encoder() {
        use crate::arch::vae::VaeConfig;
        use crate::weights::ldm::{vae_builder, Checkpoint};
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let refs =
            candle_core::safetensors::load(root.join("img/reference.safetensors"), &Device::Cpu)
                .unwrap();
        for model in ["sd15", "sd2v", "sdxl"] {
            let ck = std::sync::Arc::new(
                Checkpoint::open(&root.join(format!("single/{model}.safetensors"))).unwrap(),
            );
            let cfg: VaeConfig = serde_json::from_str(
                &std::fs::read_to_string(root.join(model).join("vae/config.json")).unwrap(),
            )
            .unwrap();
            let levels = cfg.block_out_channels.len();
            let vb = vae_builder(&ck, "first_stage_model.", levels, DType::F32, &Device::Cpu);
            let vae = Vae::new(cfg, vb).unwrap();
            let latent = vae.encode(&refs["vae.image"]).unwrap();
            let diff = (latent - &refs[&format!("vae.{model}.latent")])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{model} single file: max abs error {diff}");
        }
    }
}
