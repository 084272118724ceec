//! Loading and assembling a model ready to generate: its parts (text encoders, denoising
//! network, VAE, noise schedule) from a diffusers folder or a single-file checkpoint, the facts
//! the family and configs imply, and the defaults for new requests.

pub mod companions;
mod flux_file;
mod flux_folder;
mod flux_parts;
mod folder;
mod info;
pub mod offload;
mod options;
mod patch;
pub mod recommended;
mod single_file;
mod tokenizers;
mod vae_file;
mod vae_folder;

use std::path::Path;

use candle_core::{DType, Device};

use crate::arch::network::DenoisingNetwork;
use crate::arch::vae::Vae;
use crate::preview::PreviewMap;
use crate::sampling::schedules::{NoiseLevels, SchedulerConfig};
use crate::text::TextEncoder;
use crate::Result;
pub use flux_file::{default_part, is_flux_file};
pub use flux_folder::{flux_levels, is_flux_folder};
pub use folder::{folder_family, read_scheduler_config, read_unet_config};
pub use info::{model_name, Defaults, ModelInfo};
use offload::{Offload, PartBytes};
pub use options::{LoadOptions, LoadStage};
pub use patch::{
    LoraApplied, LoraBackup, LoraReport, LoraUse, ModelParams, Patcher, MAX_LORA_WEIGHT,
};
pub use recommended::Recommended;
pub use tokenizers::{find_tokenizer, is_tokenizer_dir};
pub use vae_file::{load_vae_override, load_vae_with_shift};
pub use vae_folder::read_vae_config;

/// A model ready to generate: text encoders, denoising network, VAE and noise schedule.
pub struct Model {
    /// Facts and defaults.
    pub info: ModelInfo,
    /// Prompt encoder(s).
    pub text: TextEncoder,
    /// The denoising network.
    pub network: Box<dyn DenoisingNetwork>,
    /// Latent decoder (and encoder).
    pub vae: Vae,
    /// The scheduler config the model shipped with.
    pub scheduler: SchedulerConfig,
    /// Training noise levels.
    pub levels: NoiseLevels,
    /// Device the weights live on.
    pub device: Device,
    /// Compute dtype.
    pub dtype: DType,
    /// The dtype it was loaded for: the compute dtype, or bf16 on the CPU, where the weight
    /// matrices are kept in bf16 and the model computes in f32.
    pub weights_dtype: DType,
    /// How previews turn latents into colours (fitted to the VAE when it is not a standard one).
    pub preview: PreviewMap,
    /// Which parts are loaded only while used.
    pub offload: Offload,
    /// The memory each part holds when loaded (measured at load; 0 where not measured).
    pub memory: PartBytes,
    /// The networks' parameters and the LoRAs patched into them.
    lora: Patcher,
}

impl Model {
    /// Loads a diffusers-layout model folder or a single-file `.safetensors` checkpoint on
    /// `device` in `dtype`.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default(), device, dtype)
    }

    /// [`Model::load`] with options (prediction override, config folder, tokenizers, VAE).
    pub fn load_with(
        path: &Path,
        options: &LoadOptions,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        Self::load_with_progress(path, options, device, dtype, &mut |_| {})
    }

    /// [`Model::load_with`], calling `progress` as each stage (config, text encoder, UNet, VAE) starts.
    pub fn load_with_progress(
        path: &Path,
        options: &LoadOptions,
        device: &Device,
        dtype: DType,
        progress: &mut dyn FnMut(LoadStage),
    ) -> Result<Self> {
        progress(LoadStage {
            name: "config",
            fraction: 0.0,
        });
        refuse_special(path)?;
        if let Some(vae) = &options.vae {
            refuse_special(vae)?;
        }
        let mut parts = if path.is_file() && flux_file::is_flux_file(path) {
            flux_file::load(path, options, device, dtype, progress)?
        } else if path.is_file() {
            single_file::load(path, options, device, dtype, progress)?
        } else {
            folder::load(path, options, device, dtype, progress)?
        };
        if let Some(name) = &options.name {
            parts.info.name = name.clone();
        }
        if let Some(vae_path) = &options.vae {
            let (scaling, shift) = (
                parts.vae.config().scaling_factor,
                parts.vae.config().shift_factor,
            );
            parts.vae = load_vae_with_shift(vae_path, scaling, shift, device, dtype)?;
            parts.info.downscale = parts.vae.downscale() as u32;
        }
        let preview = PreviewMap::for_vae(&parts.vae, parts.info.family, device, dtype)?;
        tracing::info!(name = %parts.info.name, family = ?parts.info.family, prediction = ?parts.info.prediction, "model loaded");
        Ok(Self {
            info: parts.info,
            text: parts.text,
            network: parts.network,
            vae: parts.vae,
            scheduler: parts.scheduler,
            levels: parts.levels,
            device: device.clone(),
            dtype: crate::device::compute_dtype(dtype, device),
            weights_dtype: dtype,
            preview,
            offload: options.offload,
            memory: parts.memory,
            lora: Patcher::new(parts.params),
        })
    }

    /// Makes `loras` (in order, each with its text-encoder and UNet weight) the LoRAs patched
    /// into the model, rewriting only the weights whose LoRAs change; an empty list removes
    /// them all and gives back the loaded weights bit for bit. All or nothing: on an error the
    /// previous set stays applied.
    pub fn set_loras(&mut self, loras: &[LoraUse]) -> Result<LoraReport> {
        if self.offload.network() && !loras.is_empty() {
            return Err(crate::Error::InvalidRequest(
                "LoRAs patch the transformer's weights, which --offload sequential releases \
                 after each image: use --offload encoders or none with LoRAs"
                    .into(),
            ));
        }
        self.lora.set(loras, self.info.family)
    }

    /// Removes every applied LoRA.
    pub fn clear_loras(&mut self) -> Result<()> {
        self.lora.set(&[], self.info.family).map(|_| ())
    }

    /// The LoRAs applied now, in order.
    pub fn loras(&self) -> &[LoraUse] {
        self.lora.applied()
    }

    /// How untouched weights are kept while LoRAs are applied (default: read again from the
    /// model's files).
    pub fn set_lora_backup(&mut self, backup: LoraBackup) {
        self.lora.set_backup(backup);
    }

    /// Bytes of weight copies held for [`LoraBackup::Memory`].
    pub fn lora_backup_bytes(&self) -> usize {
        self.lora.backup_bytes()
    }

    /// The parameters of the networks by name, as the layers hold them.
    pub fn params(&self) -> &ModelParams {
        self.lora.params()
    }
}

/// Refuses a path that exists but is neither a regular file nor a folder (a FIFO, socket or
/// device would make the load wait forever or read garbage).
fn refuse_special(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => Err(crate::Error::model(
            path,
            "is not a regular file or folder (a FIFO, socket or device?): give a model file or folder",
        )),
        _ => Ok(()),
    }
}
