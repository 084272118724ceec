//! Loading a single-file checkpoint in the original (LDM) layout: configs inferred from its
//! tensors (or taken from a `--config` folder), tokenizers found elsewhere, and each component
//! read through the LDM name map.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};

use super::folder::read_unet_config;
use super::info::{model_name, ModelInfo};
use super::options::{LoadOptions, LoadStage, Parts};
use super::patch::ModelParams;
use super::tokenizers::find_tokenizer;
use super::vae_folder::read_vae_config;
use crate::arch::clip::{ClipTextConfig, ClipTextModel};
use crate::arch::unet::UNet;
use crate::arch::vae::Vae;
use crate::sampling::schedules::NoiseLevels;
use crate::text::tokenizer::ClipTokenizer;
use crate::text::TextEncoder;
use crate::weights::ldm::{
    infer_config, is_pickle_extension, refuse_pickle, standard_scheduler, text_builder,
    unet_builder, vae_builder, Checkpoint, LdmUnetNames, YamlHints,
};
use crate::weights::params::record;
use crate::{Error, Result};

/// Loads the checkpoint at `path`, reporting each stage with a typical share of the bytes.
pub(super) fn load(
    path: &Path,
    options: &LoadOptions,
    device: &Device,
    dtype: DType,
    progress: &mut dyn FnMut(LoadStage),
) -> Result<Parts> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_pickle_extension(path) {
        return Err(refuse_pickle(path));
    }
    if !is_safetensors {
        return Err(Error::model(
            path,
            "not a .safetensors file; Sumi loads single-file .safetensors checkpoints and diffusers folders",
        ));
    }
    let ck = Arc::new(Checkpoint::open(path)?);
    let hints = YamlHints::next_to(path)?.unwrap_or_default();
    let inferred = infer_config(&ck, &hints, options.prediction)?;
    let family = inferred.family;
    let (unet_cfg, vae_cfg, text_cfgs) = match &options.config_dir {
        Some(dir) => {
            let text = ["text_encoder", "text_encoder_2"]
                .iter()
                .take(family.text_encoders())
                .map(|n| ClipTextConfig::load(&dir.join(n).join("config.json")))
                .collect::<Result<Vec<_>>>()?;
            (
                read_unet_config(&dir.join("unet"))?,
                read_vae_config(&dir.join("vae"))?,
                text,
            )
        }
        None => (inferred.unet, inferred.vae, inferred.text),
    };
    let tok_dirs = (0..text_cfgs.len())
        .map(|i| find_tokenizer(family, i, path, options))
        .collect::<Result<Vec<_>>>()?;
    unet_cfg
        .validate()
        .map_err(|e| Error::model(path, format!("unsupported UNet: {e}")))?;
    vae_cfg
        .validate()
        .map_err(|e| Error::model(path, format!("unsupported VAE: {e}")))?;
    // Typical shares of an SD checkpoint's bytes: text encoder ~7%, UNet ~86%, VAE ~7%.
    progress(LoadStage {
        name: "text encoder",
        fraction: 0.0,
    });
    let mut encoders = Vec::new();
    let mut params = ModelParams {
        ldm: LdmUnetNames::new(&unet_cfg),
        ..ModelParams::default()
    };
    for ((i, mut cfg), tok_dir) in text_cfgs.into_iter().enumerate().zip(tok_dirs) {
        let mut tok = ClipTokenizer::load(&tok_dir)?;
        // Pool at the tokenizer's own end-of-text token.
        cfg.eos_token_id = tok.eos_id();
        let (model, tables) = record(|| {
            let vb = text_builder(&ck, family, i, dtype, device)?;
            ClipTextModel::from_var_builder(cfg, vb, device, dtype).map_err(|e| {
                Error::model(path, format!("text encoder {} does not load: {e}", i + 1))
            })
        });
        let model = model?;
        if let Some(t) = tables.into_iter().next() {
            params.text.insert(i as u8, t);
        }
        tok.limit_len(model.config().max_position_embeddings);
        encoders.push((tok, model));
    }
    let style = family.spec().text_style;
    let text = TextEncoder::from_parts(encoders, style, true, device, dtype)?;
    progress(LoadStage {
        name: "UNet",
        fraction: 0.07,
    });
    let (unet, tables) = record(|| {
        UNet::new(unet_cfg.clone(), unet_builder(&ck, dtype, device)?)
            .map_err(|e| Error::model(path, format!("UNet weights do not load: {e}")))
    });
    let unet = unet?;
    params.unet = tables.into_iter().next().unwrap_or_default();
    progress(LoadStage {
        name: "VAE",
        fraction: 0.93,
    });
    let vb = vae_builder(
        &ck,
        "first_stage_model.",
        vae_cfg.block_out_channels.len(),
        dtype,
        device,
    );
    let vae = Vae::new(vae_cfg.clone(), vb)
        .map_err(|e| Error::model(path, format!("VAE weights do not load: {e}")))?;
    let scheduler = standard_scheduler(inferred.prediction);
    let levels =
        NoiseLevels::from_config(&scheduler).map_err(|e| Error::model(path, e.to_string()))?;
    let downscale = vae_cfg.downscale() as u32;
    let info = ModelInfo {
        name: model_name(path),
        path: path.to_path_buf(),
        family,
        prediction: inferred.prediction,
        turbo: false,
        guidance_distilled: false,
        native_size: unet_cfg.sample_size as u32 * downscale,
        downscale,
        scaling_factor: vae_cfg.scaling_factor,
        hash: None,
        vae_name: None,
        vae_hash: None,
        modules: Vec::new(),
        recommended: None,
    };
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
