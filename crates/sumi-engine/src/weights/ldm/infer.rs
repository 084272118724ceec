//! Diffusers-style configs inferred from the names and shapes of an LDM checkpoint's tensors; what
//! shapes cannot tell (head counts, v-prediction) comes from the family's standard values, a
//! companion `.yaml`, or the caller.

use serde_json::json;

use super::checkpoint::{Checkpoint, YamlHints, UNET, VAE};
use crate::arch::clip::ClipTextConfig;
use crate::arch::unet::UNetConfig;
use crate::arch::vae::VaeConfig;
use crate::family::spec::{Heads, LdmTextEncoder};
use crate::family::Family;
use crate::parametrization::Parametrization as Prediction;
use crate::sampling::schedules::SchedulerConfig;
use crate::{Error, Result};

/// The diffusers-style configs inferred from a checkpoint.
#[derive(Debug, Clone)]
pub struct InferredConfig {
    /// Architecture family.
    pub family: Family,
    /// eps or v (v only when the yaml or the caller says so).
    pub prediction: Prediction,
    /// The UNet's config.
    pub unet: UNetConfig,
    /// The VAE's config.
    pub vae: VaeConfig,
    /// One config per text encoder, in the order the pipeline uses them.
    pub text: Vec<ClipTextConfig>,
}

pub(super) fn bad(ck: &Checkpoint, what: impl std::fmt::Display) -> Error {
    Error::model(ck.path(), format!("unexpected checkpoint layout: {what}"))
}

pub(super) fn dims(ck: &Checkpoint, name: &str, rank: usize) -> Result<Vec<usize>> {
    let s = ck.need(name)?;
    if s.len() != rank {
        return Err(bad(
            ck,
            format!("{name} has shape {s:?}, expected rank {rank}"),
        ));
    }
    Ok(s.to_vec())
}

/// The UNet layout facts the key mapping needs: blocks per level and which up levels attend.
#[derive(Debug, Clone)]
pub(super) struct UNetLayout {
    pub(super) per_level: usize,
    pub(super) up_attention: Vec<bool>,
}

pub(super) fn unet_layout(ck: &Checkpoint) -> Result<UNetLayout> {
    let p = UNET;
    let n_blocks = (0..)
        .take_while(|i| {
            let pre = format!("{p}input_blocks.{i}.");
            ck.shapes.keys().any(|k| k.starts_with(&pre))
        })
        .count();
    let downs = (0..n_blocks)
        .filter(|i| ck.has(&format!("{p}input_blocks.{i}.0.op.weight")))
        .count();
    let levels = downs + 1;
    if n_blocks == 0 || n_blocks % levels != 0 || n_blocks / levels < 2 {
        return Err(bad(
            ck,
            format!("{n_blocks} UNet input blocks do not split into {levels} levels"),
        ));
    }
    let per_level = n_blocks / levels;
    let up_attention = (0..levels)
        .map(|i| {
            ck.has(&format!(
                "{p}output_blocks.{}.1.proj_in.weight",
                i * per_level
            ))
        })
        .collect();
    Ok(UNetLayout {
        per_level,
        up_attention,
    })
}

fn infer_unet(
    ck: &Checkpoint,
    family: Family,
    hints: &YamlHints,
    pooled_dim: Option<usize>,
    v: bool,
) -> Result<UNetConfig> {
    let p = UNET;
    let ldm = family.spec().ldm;
    let layout = unet_layout(ck)?;
    let per = layout.per_level;
    let levels = layout.up_attention.len();
    let conv_in = dims(ck, &format!("{p}input_blocks.0.0.weight"), 4)?;
    let conv_out = dims(ck, &format!("{p}out.2.weight"), 4)?;
    let mut boc = Vec::new();
    let mut down_types = Vec::new();
    let mut up_types = Vec::new();
    let mut tlayers = Vec::new();
    let mut context_dim = None;
    let mut linear = None;
    for i in 0..levels {
        let first = 1 + i * per;
        let out = dims(
            ck,
            &format!("{p}input_blocks.{first}.0.out_layers.3.weight"),
            4,
        )?;
        boc.push(out[0]);
        let attn = format!("{p}input_blocks.{first}.1.");
        if let Some(s) = ck.shape(&format!("{attn}proj_in.weight")) {
            down_types.push("CrossAttnDownBlock2D");
            linear.get_or_insert(s.len() == 2);
            tlayers.push(ck.count(&format!("{attn}transformer_blocks.{{}}.norm1.weight")));
            if context_dim.is_none() {
                let k = dims(
                    ck,
                    &format!("{attn}transformer_blocks.0.attn2.to_k.weight"),
                    2,
                )?;
                context_dim = Some(k[1]);
            }
        } else {
            down_types.push("DownBlock2D");
            tlayers.push(1);
        }
        up_types.push(if layout.up_attention[i] {
            "CrossAttnUpBlock2D"
        } else {
            "UpBlock2D"
        });
    }
    let mid = format!("{p}middle_block.1.");
    let has_mid_attn = ck.has(&format!("{mid}proj_in.weight"));
    if has_mid_attn {
        // SDXL puts more transformer blocks in the mid block than in the last down level may say.
        let n = ck.count(&format!("{mid}transformer_blocks.{{}}.norm1.weight"));
        if let Some(last) = tlayers.last_mut() {
            if down_types[levels - 1] == "DownBlock2D" {
                *last = n;
            }
        }
    }
    let context_dim = context_dim.ok_or_else(|| bad(ck, "the UNet has no cross-attention"))?;
    let heads: Vec<usize> = boc
        .iter()
        .map(
            |&c| match (hints.num_heads, hints.num_head_channels, ldm.heads) {
                (Some(h), _, _) => h,
                (None, Some(ch), _) | (None, None, Heads::Width(ch)) => (c / ch).max(1),
                (None, None, Heads::Count(h)) => h,
            },
        )
        .collect();
    let mut cfg = json!({
        "in_channels": conv_in[1],
        "out_channels": conv_out[0],
        "block_out_channels": boc,
        "down_block_types": down_types,
        "up_block_types": up_types,
        "mid_block_type": if has_mid_attn { json!("UNetMidBlock2DCrossAttn") } else { json!(null) },
        "layers_per_block": per - 1,
        "attention_head_dim": heads,
        "transformer_layers_per_block": tlayers,
        "cross_attention_dim": context_dim,
        "use_linear_projection": linear.unwrap_or(false),
        "sample_size": if v { ldm.sample_size.1 } else { ldm.sample_size.0 },
    });
    if let Some(s) = ck.shape(&format!("{p}label_emb.0.0.weight")) {
        if s.len() != 2 {
            return Err(bad(ck, "label_emb.0.0.weight is not a matrix"));
        }
        let pooled = pooled_dim.ok_or_else(|| {
            bad(
                ck,
                "the UNet has SDXL's added embedding but no OpenCLIP text projection",
            )
        })?;
        let rest = s[1]
            .checked_sub(pooled)
            .filter(|r| r % 6 == 0 && *r > 0)
            .ok_or_else(|| {
                bad(
                    ck,
                    format!(
                    "added embedding input {} does not fit pooled width {pooled} plus 6 time ids",
                    s[1]
                ),
                )
            })?;
        cfg["addition_embed_type"] = json!("text_time");
        cfg["addition_time_embed_dim"] = json!(rest / 6);
        cfg["projection_class_embeddings_input_dim"] = json!(s[1]);
    }
    serde_json::from_value(cfg).map_err(|e| bad(ck, format!("UNet config: {e}")))
}

fn infer_vae(ck: &Checkpoint, family: Family, hints: &YamlHints) -> Result<VaeConfig> {
    let p = format!("{VAE}decoder.");
    let levels = ck.count(&format!("{p}up.{{}}.block.0.conv1.weight"));
    if levels == 0 {
        return Err(Error::model(
            ck.path(),
            "no VAE decoder weights (first_stage_model.decoder.*); pass a separate VAE with --vae",
        ));
    }
    let boc = (0..levels)
        .map(|i| dims(ck, &format!("{p}up.{i}.block.0.conv2.weight"), 4).map(|s| s[0]))
        .collect::<Result<Vec<_>>>()?;
    let blocks = ck.count(&format!("{p}up.0.block.{{}}.conv1.weight"));
    let conv_in = dims(ck, &format!("{p}conv_in.weight"), 4)?;
    let conv_out = dims(ck, &format!("{p}conv_out.weight"), 4)?;
    let cfg = json!({
        "block_out_channels": boc,
        "layers_per_block": blocks.saturating_sub(1).max(1),
        "latent_channels": conv_in[1],
        "out_channels": conv_out[0],
        "scaling_factor": hints.scale_factor.unwrap_or(family.spec().scaling_factor),
        "use_quant_conv": ck.has(&format!("{VAE}quant_conv.weight")),
        "use_post_quant_conv": ck.has(&format!("{VAE}post_quant_conv.weight")),
        "mid_block_add_attention": ck.has(&format!("{p}mid.attn_1.q.weight")),
    });
    serde_json::from_value(cfg).map_err(|e| bad(ck, format!("VAE config: {e}")))
}

/// The `text_model.` root of an HF-layout encoder (old files may lack `text_model.`).
pub(super) fn hf_root(ck: &Checkpoint, prefix: &str) -> String {
    if ck.has(&format!(
        "{prefix}text_model.embeddings.token_embedding.weight"
    )) {
        format!("{prefix}text_model.")
    } else {
        prefix.to_string()
    }
}

/// The config of a CLIP text encoder stored with transformers' names under `prefix` (ComfyUI's
/// `clip_l.safetensors`: none), with or without the `text_model.` root.
pub fn infer_standalone_clip(ck: &Checkpoint, prefix: &'static str) -> Result<ClipTextConfig> {
    infer_clip(
        ck,
        &LdmTextEncoder {
            prefix,
            openclip: false,
            skip_last_layer: false,
            projection: false,
        },
    )
}

fn infer_clip(ck: &Checkpoint, te: &LdmTextEncoder) -> Result<ClipTextConfig> {
    let prefix = te.prefix;
    let (tok, pos, fc1, layers, act, projection) = match te.openclip {
        false => {
            let r = hf_root(ck, prefix);
            (
                dims(ck, &format!("{r}embeddings.token_embedding.weight"), 2)?,
                dims(ck, &format!("{r}embeddings.position_embedding.weight"), 2)?,
                dims(ck, &format!("{r}encoder.layers.0.mlp.fc1.weight"), 2)?,
                ck.count(&format!("{r}encoder.layers.{{}}.layer_norm1.weight")),
                "quick_gelu",
                None,
            )
        }
        true => {
            let all = ck.count(&format!("{prefix}transformer.resblocks.{{}}.ln_1.weight"));
            // SD 2.x uses the penultimate layer as its last one: the final resblock is never run.
            let layers = if te.skip_last_layer {
                all.saturating_sub(1)
            } else {
                all
            };
            let projection = if te.projection {
                Some(dims(ck, &format!("{prefix}text_projection"), 2)?[1])
            } else {
                None
            };
            (
                dims(ck, &format!("{prefix}token_embedding.weight"), 2)?,
                dims(ck, &format!("{prefix}positional_embedding"), 2)?,
                dims(
                    ck,
                    &format!("{prefix}transformer.resblocks.0.mlp.c_fc.weight"),
                    2,
                )?,
                layers,
                "gelu",
                projection,
            )
        }
    };
    let hidden = tok[1];
    let cfg = json!({
        "vocab_size": tok[0],
        "hidden_size": hidden,
        "intermediate_size": fc1[0],
        "num_hidden_layers": layers,
        "num_attention_heads": (hidden / 64).max(1),
        "max_position_embeddings": pos[0],
        "hidden_act": act,
        "projection_dim": projection,
    });
    let cfg: ClipTextConfig =
        serde_json::from_value(cfg).map_err(|e| bad(ck, format!("text encoder config: {e}")))?;
    if layers == 0 || pos[1] != hidden || fc1[1] != hidden {
        return Err(bad(
            ck,
            format!("text encoder under {prefix} has inconsistent shapes"),
        ));
    }
    cfg.validate()
        .map_err(|e| bad(ck, format!("text encoder under {prefix}: {e}")))?;
    Ok(cfg)
}

/// Infers family, prediction and all component configs from the checkpoint's tensors. What
/// shapes cannot tell takes the family's standard value (32 norm groups, SD 1.x 8 heads, 64-wide
/// heads otherwise, unless the yaml says); the configs are checked when the model is built.
pub fn infer_config(
    ck: &Checkpoint,
    hints: &YamlHints,
    prediction: Option<Prediction>,
) -> Result<InferredConfig> {
    let family = ck.family()?;
    let prediction = prediction.unwrap_or(if hints.v_prediction == Some(true) {
        Prediction::V
    } else {
        Prediction::Epsilon
    });
    let text = family
        .spec()
        .ldm
        .text_encoders
        .iter()
        .map(|te| infer_clip(ck, te))
        .collect::<Result<Vec<_>>>()?;
    let pooled = text.last().and_then(|c| c.projection_dim);
    let unet = infer_unet(ck, family, hints, pooled, prediction == Prediction::V)?;
    let vae = infer_vae(ck, family, hints)?;
    Ok(InferredConfig {
        family,
        prediction,
        unet,
        vae,
        text,
    })
}

pub(super) fn infer_diffusers_vae(ck: &Checkpoint, scaling: f64) -> Result<VaeConfig> {
    let levels = ck.count("decoder.up_blocks.{}.resnets.0.conv1.weight");
    // decoder.up_blocks are in reverse (deepest first) order.
    let mut boc = (0..levels)
        .map(|i| {
            dims(
                ck,
                &format!("decoder.up_blocks.{i}.resnets.0.conv2.weight"),
                4,
            )
            .map(|s| s[0])
        })
        .collect::<Result<Vec<_>>>()?;
    boc.reverse();
    let blocks = ck.count("decoder.up_blocks.0.resnets.{}.conv1.weight");
    let conv_in = dims(ck, "decoder.conv_in.weight", 4)?;
    let conv_out = dims(ck, "decoder.conv_out.weight", 4)?;
    let cfg = json!({
        "block_out_channels": boc,
        "layers_per_block": blocks.saturating_sub(1).max(1),
        "latent_channels": conv_in[1],
        "out_channels": conv_out[0],
        "scaling_factor": scaling,
        "use_quant_conv": ck.has("quant_conv.weight"),
        "use_post_quant_conv": ck.has("post_quant_conv.weight"),
        "mid_block_add_attention": ck.has("decoder.mid_block.attentions.0.to_q.weight"),
    });
    serde_json::from_value(cfg).map_err(|e| bad(ck, format!("VAE config: {e}")))
}

/// The standard Stable Diffusion training schedule, for checkpoints that carry no scheduler config.
pub fn standard_scheduler(prediction: Prediction) -> SchedulerConfig {
    SchedulerConfig {
        num_train_timesteps: 1000,
        beta_start: 0.00085,
        beta_end: 0.012,
        beta_schedule: "scaled_linear".into(),
        trained_betas: None,
        prediction_type: prediction.config_name().into(),
        timestep_spacing: "leading".into(),
        steps_offset: 1,
        set_alpha_to_one: false,
    }
}
