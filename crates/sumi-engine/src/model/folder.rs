//! Loading a diffusers-layout model folder: `model_index.json`, `scheduler/`, `unet/`, `vae/`,
//! `text_encoder(_2)/` and `tokenizer(_2)/`.

use std::path::Path;

use candle_core::{DType, Device};
use serde::Deserialize;

use super::flux_folder::is_flux_folder;
use super::info::{model_name, ModelInfo};
use super::options::{LoadOptions, LoadStage, Parts};
use super::patch::ModelParams;
use super::recommended;
use super::vae_folder::{load_vae, read_vae_config};
use crate::arch::unet::{UNet, UNetConfig};
use crate::family::Family;
use crate::parametrization::Parametrization;
use crate::sampling::schedules::{NoiseLevels, SchedulerConfig};
use crate::text::TextEncoder;
use crate::weights::find::find_weights;
use crate::weights::json::read_json;
use crate::weights::ldm::LdmUnetNames;
use crate::weights::params::{record, ParamTable};
use crate::weights::safetensors::build_with_weights;
use crate::{Error, Result};

#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
}

/// Bytes of the `.safetensors` files directly in `dir` (0 when unreadable).
fn weight_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Loads the folder `dir`, reporting each stage with its share of the weight bytes.
pub(super) fn load(
    dir: &Path,
    options: &LoadOptions,
    device: &Device,
    dtype: DType,
    progress: &mut dyn FnMut(LoadStage),
) -> Result<Parts> {
    if !dir.is_dir() {
        return Err(Error::model(
            dir,
            "no such file or folder (pass a diffusers model folder or a .safetensors checkpoint)",
        ));
    }
    let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
    if is_flux_folder(dir, index.class_name.as_deref()) {
        return super::flux_folder::load(dir, options, device, dtype, progress);
    }
    let scheduler_path = dir.join("scheduler/scheduler_config.json");
    let scheduler = read_scheduler_config(&scheduler_path)?;
    let levels = NoiseLevels::from_config(&scheduler)
        .map_err(|e| Error::model(&scheduler_path, e.to_string()))?;
    let unet_cfg = read_unet_config(&dir.join("unet"))?;
    let vae_cfg = read_vae_config(&dir.join("vae"))?;

    let prediction = match scheduler.prediction_type.as_str() {
        "epsilon" => Parametrization::Epsilon,
        "v_prediction" => Parametrization::V,
        other => {
            return Err(Error::model(
                &scheduler_path,
                format!("prediction_type {other:?} is not supported (epsilon or v_prediction)"),
            ))
        }
    };
    let prediction = options.prediction.unwrap_or(prediction);
    let family = detect(&unet_cfg, index.class_name.as_deref(), dir);
    let downscale = vae_cfg.downscale() as u32;
    let info = ModelInfo {
        name: model_name(dir),
        path: dir.to_path_buf(),
        family,
        prediction,
        turbo: scheduler.timestep_spacing == "trailing",
        guidance_distilled: false,
        native_size: unet_cfg.sample_size as u32 * downscale,
        downscale,
        scaling_factor: vae_cfg.scaling_factor,
        hash: None,
        vae_name: None,
        vae_hash: None,
        modules: Vec::new(),
        recommended: recommended::read(dir)?,
    };

    let text_bytes =
        weight_bytes(&dir.join("text_encoder")) + weight_bytes(&dir.join("text_encoder_2"));
    let unet_bytes = weight_bytes(&dir.join("unet"));
    let total = (text_bytes + unet_bytes + weight_bytes(&dir.join("vae"))).max(1) as f32;
    let mut stage = |name, done: u64| {
        progress(LoadStage {
            name,
            fraction: done as f32 / total,
        })
    };
    stage("text encoder", 0);
    let (text, text_tables) =
        record(|| TextEncoder::load(dir, family.spec().text_style, device, dtype));
    let text = text?;
    stage("UNet", text_bytes);
    let ldm = LdmUnetNames::new(&unet_cfg);
    let (unet, unet_tables) = record(|| load_unet(&dir.join("unet"), unet_cfg, device, dtype));
    let unet = unet?;
    let params = ModelParams {
        unet: unet_tables.into_iter().next().unwrap_or_default(),
        text: text_tables
            .into_iter()
            .map(|t| (text_slot(&t), t))
            .collect(),
        ldm,
    };
    stage("VAE", text_bytes + unet_bytes);
    let vae = load_vae(&dir.join("vae"), vae_cfg, device, dtype)?;
    Ok(Parts {
        info,
        text,
        network: Box::new(unet),
        vae,
        scheduler,
        levels,
        params,
        memory: Default::default(),
    })
}

/// The LoRA slot of a text encoder's parameters: 1 for `text_encoder_2/`, else 0.
fn text_slot(table: &ParamTable) -> u8 {
    let dir = table.files().first().and_then(|f| f.parent()?.file_name());
    u8::from(dir.is_some_and(|d| d == "text_encoder_2"))
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

/// Loads the UNet weights of a `unet/` folder for `config`.
fn load_unet(unet_dir: &Path, config: UNetConfig, device: &Device, dtype: DType) -> Result<UNet> {
    let files = find_weights(unet_dir, "diffusion_pytorch_model")?;
    build_with_weights(&files, dtype, device, |vb| UNet::new(config, vb))?
        .map_err(|e| Error::model(unet_dir, format!("weights do not match config.json: {e}")))
}

/// The family of a diffusers folder from its configs, without loading weights.
pub fn folder_family(dir: &Path) -> Option<Family> {
    let index: ModelIndex = read_json(&dir.join("model_index.json")).ok()?;
    if is_flux_folder(dir, index.class_name.as_deref()) {
        return Some(Family::Flux);
    }
    let unet: UNetConfig = read_json(&dir.join("unet/config.json")).ok()?;
    Some(detect(&unet, index.class_name.as_deref(), dir))
}

fn detect(unet: &UNetConfig, class_name: Option<&str>, dir: &Path) -> Family {
    Family::detect(
        unet.addition_embed_type.as_deref(),
        unet.use_linear_projection,
        class_name,
        dir.join("text_encoder_2").is_dir(),
    )
}
