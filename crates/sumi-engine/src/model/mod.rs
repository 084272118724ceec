//! Finding and loading checkpoints: diffusers folders (and repo ids in the local Hugging Face
//! cache), model-family detection and per-family defaults.

pub mod demo;
pub mod hub;
pub mod layers;
pub mod unet;
pub mod vae;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::sampling::schedules::{NoiseLevels, SchedulerConfig};
use crate::text::TextEncoder;
use crate::{Error, Result};
pub use demo::{builtin_demo_model, DEMO_MODEL_ENV};
use unet::{UNet, UNetConfig};
use vae::{VaeConfig, VaeDecoder};
use weights::{find_weights, read_json, var_builder};

/// The architecture family of a model; decides defaults and preview coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Stable Diffusion 1.x (CLIP ViT-L text encoder, conv projections).
    Sd1,
    /// Stable Diffusion 2.x (OpenCLIP text encoder, linear projections).
    Sd2,
    /// Stable Diffusion XL (two text encoders, added size/crop conditioning).
    Sdxl,
}

impl Family {
    /// Human-readable name.
    pub fn display_name(self) -> &'static str {
        match self {
            Family::Sd1 => "SD 1.x",
            Family::Sd2 => "SD 2.x",
            Family::Sdxl => "SDXL",
        }
    }
}

/// What the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The added noise (most models).
    Epsilon,
    /// v = alpha * noise - sigma * x0 (SD 2.x 768 models).
    V,
}

/// Facts about a loaded model and the defaults they imply.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Display name (folder or repo name).
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Architecture family.
    pub family: Family,
    /// eps or v prediction.
    pub prediction: Prediction,
    /// Distilled few-step model (trailing timesteps in its scheduler config).
    pub turbo: bool,
    /// The resolution it was trained at (UNet sample size times the VAE's downscale).
    pub native_size: u32,
    /// Pixels per latent cell.
    pub downscale: u32,
    /// Latent scaling factor of the VAE.
    pub scaling_factor: f64,
}

/// Defaults a family implies for a new request.
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    /// Steps.
    pub steps: u32,
    /// CFG scale.
    pub cfg: f64,
    /// Sampler display name.
    pub sampler: &'static str,
    /// Schedule display name.
    pub schedule: &'static str,
    /// Width and height.
    pub size: u32,
}

impl ModelInfo {
    /// Request defaults for this model.
    pub fn defaults(&self) -> Defaults {
        if self.turbo {
            Defaults {
                steps: 1,
                cfg: 1.0,
                sampler: "Euler a",
                schedule: "Normal",
                size: self.native_size,
            }
        } else {
            Defaults {
                steps: 20,
                cfg: if self.family == Family::Sdxl {
                    6.0
                } else {
                    7.0
                },
                sampler: "DPM++ 2M",
                schedule: "Karras",
                size: self.native_size,
            }
        }
    }
}

/// A model ready to generate: text encoders, UNet, VAE decoder and noise schedule.
pub struct Model {
    /// Facts and defaults.
    pub info: ModelInfo,
    /// Prompt encoder(s).
    pub text: TextEncoder,
    /// Denoising UNet.
    pub unet: UNet,
    /// Latent decoder.
    pub vae: VaeDecoder,
    /// The scheduler config the model shipped with.
    pub scheduler: SchedulerConfig,
    /// Training noise levels.
    pub levels: NoiseLevels,
    /// Device the weights live on.
    pub device: Device,
    /// Compute dtype.
    pub dtype: DType,
}

/// Which compute dtype to use on `device`: f32 on CPU, f16 on GPUs.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::F16
    }
}

#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
}

/// Resolves what the user typed for `--model`: a folder, or a repo id in the local HF cache.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if hub::looks_like_repo_id(spec) {
        return hub::cached_snapshot(spec);
    }
    Err(Error::model(
        path,
        "no such file or folder (pass a diffusers model folder, or a Hugging Face repo id that is in the local cache)",
    ))
}

impl Model {
    /// Loads a diffusers-layout model folder on `device` in `dtype`.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::model(
                dir,
                "not a folder; Sumi loads diffusers model folders",
            ));
        }
        let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
        let scheduler = read_scheduler_config(&dir.join("scheduler/scheduler_config.json"))?;
        let levels = NoiseLevels::from_config(&scheduler).map_err(|e| {
            Error::model(dir.join("scheduler/scheduler_config.json"), e.to_string())
        })?;

        let unet_cfg = read_unet_config(&dir.join("unet"))?;
        let vae_cfg = read_vae_config(&dir.join("vae"))?;

        let prediction = match scheduler.prediction_type.as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::V,
            other => {
                return Err(Error::model(
                    dir.join("scheduler/scheduler_config.json"),
                    format!("prediction_type {other:?} is not supported (epsilon or v_prediction)"),
                ))
            }
        };
        let family = detect_family(&unet_cfg, index.class_name.as_deref(), dir);
        let turbo = scheduler.timestep_spacing == "trailing";
        let downscale = vae_cfg.downscale() as u32;
        let info = ModelInfo {
            name: model_name(dir),
            path: dir.to_path_buf(),
            family,
            prediction,
            turbo,
            native_size: unet_cfg.sample_size as u32 * downscale,
            downscale,
            scaling_factor: vae_cfg.scaling_factor,
        };
        tracing::info!(name = %info.name, family = ?family, ?prediction, "loading model");

        let text = TextEncoder::load(dir, device, dtype)?;
        let unet = load_unet(&dir.join("unet"), unet_cfg, device, dtype)?;
        let vae = load_vae(&dir.join("vae"), vae_cfg, device, dtype)?;
        Ok(Self {
            info,
            text,
            unet,
            vae,
            scheduler,
            levels,
            device: device.clone(),
            dtype,
        })
    }
}

/// Reads a `scheduler_config.json`. Stable Diffusion configs that do not say otherwise keep
/// DDIM's last step at the first training level (`set_alpha_to_one: false`), as SD 1.x ships it.
pub fn read_scheduler_config(path: &Path) -> Result<SchedulerConfig> {
    let mut json: serde_json::Value = read_json(path)?;
    if let Some(obj) = json.as_object_mut() {
        obj.entry("set_alpha_to_one")
            .or_insert(serde_json::Value::Bool(false));
    }
    serde_json::from_value(json).map_err(|e| Error::model(path, format!("invalid config: {e}")))
}

/// Reads `config.json` in a `unet/` folder.
pub fn read_unet_config(unet_dir: &Path) -> Result<UNetConfig> {
    let path = unet_dir.join("config.json");
    let cfg: UNetConfig = read_json(&path)?;
    cfg.validate().map_err(|e| Error::model(&path, e))?;
    Ok(cfg)
}

/// Reads `config.json` in a `vae/` folder.
pub fn read_vae_config(vae_dir: &Path) -> Result<VaeConfig> {
    let path = vae_dir.join("config.json");
    let cfg: VaeConfig = read_json(&path)?;
    cfg.validate().map_err(|e| Error::model(&path, e))?;
    Ok(cfg)
}

/// Loads the UNet weights of a `unet/` folder for `config`.
pub fn load_unet(
    unet_dir: &Path,
    config: UNetConfig,
    device: &Device,
    dtype: DType,
) -> Result<UNet> {
    let vb = var_builder(
        &find_weights(unet_dir, "diffusion_pytorch_model")?,
        dtype,
        device,
    )?;
    UNet::new(config, vb)
        .map_err(|e| Error::model(unet_dir, format!("weights do not match config.json: {e}")))
}

/// Loads the VAE decoder weights of a `vae/` folder for `config`.
pub fn load_vae(
    vae_dir: &Path,
    config: VaeConfig,
    device: &Device,
    dtype: DType,
) -> Result<VaeDecoder> {
    let vb = var_builder(
        &find_weights(vae_dir, "diffusion_pytorch_model")?,
        dtype,
        device,
    )?;
    VaeDecoder::new(config, vb)
        .map_err(|e| Error::model(vae_dir, format!("weights do not match config.json: {e}")))
}

/// Detects the family from the model's structure, never from its name.
fn detect_family(unet: &UNetConfig, class_name: Option<&str>, dir: &Path) -> Family {
    let xl = unet.addition_embed_type.as_deref() == Some("text_time")
        || class_name.is_some_and(|c| c.contains("XL"))
        || dir.join("text_encoder_2").is_dir();
    if xl {
        Family::Sdxl
    } else if unet.use_linear_projection {
        Family::Sd2
    } else {
        Family::Sd1
    }
}

fn model_name(dir: &Path) -> String {
    // A hub snapshot folder is named by its commit hash; show the repo instead.
    if let Some(repo) = hub::repo_of_snapshot(dir) {
        return repo;
    }
    dir.canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}
