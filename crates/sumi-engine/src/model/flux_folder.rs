//! Loading a diffusers `FluxPipeline` folder: `transformer/`, `text_encoder/` (CLIP-L) and
//! `tokenizer/`, `text_encoder_2/` (T5) and `tokenizer_2/`, `vae/` and the flow-matching
//! `scheduler/`.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};

use super::flux_parts;
use super::info::{model_name, ModelInfo};
use super::offload::{measured, PartBytes};
use super::options::{LoadOptions, LoadStage, Parts};
use super::patch::ModelParams;
use super::recommended;
use super::vae_folder::{load_vae, read_vae_config};
use crate::arch::flux::{FluxConfig, FluxTransformer};
use crate::arch::t5::T5Encoder;
use crate::family::flux::{DEV_MAX_SEQUENCE, DEV_SHIFT, SCHNELL_MAX_SEQUENCE};
use crate::family::Family;
use crate::parametrization::Parametrization;
use crate::sampling::flow::{FlowLevels, FlowSchedulerConfig};
use crate::sampling::schedules::{NoiseLevels, SchedulerConfig};
use crate::text::t5_text::T5Tokenizer;
use crate::text::TextEncoder;
use crate::{Error, Result};

/// Whether `dir` is a diffusers Flux folder (its pipeline class or transformer config says so).
pub fn is_flux_folder(dir: &Path, class_name: Option<&str>) -> bool {
    class_name.is_some_and(|c| c.starts_with("Flux"))
        || std::fs::read_to_string(dir.join("transformer/config.json"))
            .is_ok_and(|t| t.contains("\"FluxTransformer2DModel\""))
}

/// The noise levels of a Flux model: diffusers' scheduler config, and ComfyUI's and Forge's
/// constant shift (1.15 for guidance-distilled dev models, 1 for schnell).
pub fn flux_levels(config: FlowSchedulerConfig, guidance_distilled: bool) -> NoiseLevels {
    NoiseLevels::flow(FlowLevels {
        config,
        shift: if guidance_distilled { DEV_SHIFT } else { 1.0 },
        image_tokens: 4096,
    })
}

/// Loads the Flux folder `dir`.
pub(super) fn load(
    dir: &Path,
    options: &LoadOptions,
    device: &Device,
    dtype: DType,
    progress: &mut dyn FnMut(LoadStage),
) -> Result<Parts> {
    let scheduler_path = dir.join("scheduler/scheduler_config.json");
    let text = std::fs::read_to_string(&scheduler_path)
        .map_err(|e| Error::model(&scheduler_path, format!("cannot read: {e}")))?;
    let flow = FlowSchedulerConfig::from_json(&text)
        .map_err(|e| Error::model(&scheduler_path, e.to_string()))?;
    let config = FluxConfig::load(&dir.join("transformer"))?;
    let vae_cfg = read_vae_config(&dir.join("vae"))?;
    if options
        .prediction
        .is_some_and(|p| p != Parametrization::Flow)
    {
        return Err(Error::model(
            dir,
            "is a flow-matching (Flux) model: a prediction override does not apply",
        ));
    }
    let distilled = config.guidance_embeds;
    let downscale = vae_cfg.downscale() as u32;
    let info = ModelInfo {
        name: model_name(dir),
        path: dir.to_path_buf(),
        family: Family::Flux,
        prediction: Parametrization::Flow,
        turbo: false,
        guidance_distilled: distilled,
        native_size: 128 * downscale,
        downscale,
        scaling_factor: vae_cfg.scaling_factor,
        hash: None,
        vae_name: None,
        vae_hash: None,
        modules: Vec::new(),
        recommended: recommended::read(dir)?,
    };
    progress(LoadStage {
        name: "text encoder",
        fraction: 0.0,
    });
    let max_len = match distilled {
        true => DEV_MAX_SEQUENCE,
        false => SCHNELL_MAX_SEQUENCE,
    };
    let t5_dir = dir.join("text_encoder_2");
    let (dev, offload) = (device.clone(), options.offload);
    let load_t5 = Arc::new(move || T5Encoder::load(&t5_dir, &dev, dtype));
    let tokenizer = T5Tokenizer::load(&dir.join("tokenizer_2"))?;
    let (t5, t5_bytes) = flux_parts::t5_text(load_t5, tokenizer, max_len, offload, device)?;
    let ((text, text_tables), text_bytes) =
        measured(|| TextEncoder::load_flux(dir, t5, device, dtype));
    let text = text?;
    progress(LoadStage {
        name: "transformer",
        fraction: 0.4,
    });
    let (tdir, dev) = (dir.join("transformer"), device.clone());
    let net = flux_parts::network(
        Arc::new(move || FluxTransformer::load(&tdir, &dev, dtype)),
        offload,
    )?;
    flux_parts::check_widths(&net.config, text.pooled_width(), text.context_dim())
        .map_err(|e| Error::model(dir, e.to_string()))?;
    progress(LoadStage {
        name: "VAE",
        fraction: 0.95,
    });
    let ((vae, _), vae_bytes) = measured(|| load_vae(&dir.join("vae"), vae_cfg, device, dtype));
    let params = ModelParams {
        unet: net.tables.into_iter().next().unwrap_or_default(),
        text: text_tables.into_iter().take(1).map(|t| (0, t)).collect(),
        ldm: None,
    };
    Ok(Parts {
        info,
        text,
        network: net.network,
        memory: PartBytes {
            network: net.bytes,
            text: text_bytes,
            t5: t5_bytes,
            vae: vae_bytes,
        },
        vae: vae?,
        scheduler: SchedulerConfig {
            prediction_type: Parametrization::Flow.config_name().into(),
            ..SchedulerConfig::default()
        },
        levels: flux_levels(flow, distilled),
        params,
    })
}
