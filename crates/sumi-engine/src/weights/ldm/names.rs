//! The map from the diffusers/transformers tensor names Sumi's networks ask for to an LDM
//! checkpoint's own names, and the [`VarBuilder`]s that read components through it (splitting
//! fused OpenCLIP attention weights and reshaping 1x1-conv VAE attention weights on the way).

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde_json::json;

use super::checkpoint::{Checkpoint, UNET, VAE};
use super::infer::{bad, dims, hf_root, infer_diffusers_vae, unet_layout, UNetLayout};
use crate::arch::unet::{PerBlock, UNetConfig};
use crate::arch::vae::VaeConfig;
use crate::family::Family;
use crate::weights::params::{self, Rereadable};
use crate::{Error, Result};

/// How one diffusers-named tensor is read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The tensor as stored.
    Plain(String),
    /// Part `index` of `parts` equal slices along dim 0 (fused q/k/v).
    Chunk(String, usize, usize),
    /// A `[o, i, 1, 1]` conv weight used as a `[o, i]` linear weight.
    Squeeze(String),
    /// A `[a, b]` matrix stored transposed (OpenCLIP's text projection).
    Transpose(String),
}

type Mapper = dyn Fn(&str) -> Option<Source> + Send + Sync;

/// A [`SimpleBackend`] that reads a diffusers-named component out of an LDM-layout checkpoint.
struct LdmBackend {
    ck: Arc<Checkpoint>,
    map: Box<Mapper>,
}

impl LdmBackend {
    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let source = (self.map)(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("no tensor in the checkpoint maps to {name}"))
        })?;
        let raw = |key: &str| -> candle_core::Result<Tensor> {
            if !self.ck.has(key) {
                candle_core::bail!("tensor {key} (for {name}) is missing from the checkpoint");
            }
            self.ck.st.load(key, dtype, dev)
        };
        match source {
            Source::Plain(k) => raw(&k),
            Source::Chunk(k, index, parts) => {
                let t = raw(&k)?;
                let n = t.dim(0)?;
                if n % parts != 0 {
                    candle_core::bail!("{k}: dim 0 of {n} does not split into {parts} parts");
                }
                t.narrow(0, index * n / parts, n / parts)
            }
            Source::Squeeze(k) => {
                let t = raw(&k)?;
                match t.dims() {
                    [o, i, 1, 1] => t.reshape((*o, *i)),
                    [_, _] => Ok(t),
                    d => candle_core::bail!("{k}: expected a 1x1 conv weight, got shape {d:?}"),
                }
            }
            Source::Transpose(k) => raw(&k)?.t()?.contiguous(),
        }
    }

    fn exists(&self, name: &str) -> bool {
        match (self.map)(name) {
            Some(Source::Plain(k) | Source::Squeeze(k) | Source::Transpose(k)) => self.ck.has(&k),
            Some(Source::Chunk(k, _, _)) => self.ck.has(&k),
            None => false,
        }
    }
}

impl Rereadable for LdmBackend {
    fn check_unchanged(&self) -> Result<()> {
        self.ck.st.check_unchanged()
    }
}

impl SimpleBackend for LdmBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.load(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: t.shape().clone(),
            });
        }
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.exists(name)
    }
}

fn strip<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.strip_prefix(prefix)
}

/// Splits `"<head>.<index>.<rest>"` after `head`.
fn index_rest<'a>(s: &'a str, head: &str) -> Option<(usize, &'a str)> {
    let r = s.strip_prefix(head)?.strip_prefix('.')?;
    let (i, rest) = r.split_once('.')?;
    Some((i.parse().ok()?, rest))
}

fn unet_resnet(rest: &str) -> Option<String> {
    const MAP: [(&str, &str); 6] = [
        ("norm1.", "in_layers.0."),
        ("conv1.", "in_layers.2."),
        ("time_emb_proj.", "emb_layers.1."),
        ("norm2.", "out_layers.0."),
        ("conv2.", "out_layers.3."),
        ("conv_shortcut.", "skip_connection."),
    ];
    MAP.iter()
        .find_map(|(d, o)| rest.strip_prefix(d).map(|t| format!("{o}{t}")))
}

/// The LDM name (without `model.diffusion_model.`) of a diffusers UNet tensor.
fn unet_name(name: &str, layout: &UNetLayout) -> Option<String> {
    const SIMPLE: [(&str, &str); 7] = [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("add_embedding.linear_1.", "label_emb.0.0."),
        ("add_embedding.linear_2.", "label_emb.0.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
    ];
    if let Some(s) = SIMPLE
        .iter()
        .find_map(|(d, o)| name.strip_prefix(d).map(|t| format!("{o}{t}")))
    {
        return Some(s);
    }
    let per = layout.per_level;
    let block = |rest: &str| -> Option<(&str, usize, String)> {
        let (j, r) = index_rest(rest, "resnets")
            .map(|(j, r)| (j, ("r", r)))
            .or_else(|| index_rest(rest, "attentions").map(|(j, r)| (j, ("a", r))))?;
        let (kind, r) = r;
        let inner = if kind == "r" {
            unet_resnet(r)?
        } else {
            r.to_string()
        };
        Some((kind, j, inner))
    };
    if let Some((i, rest)) = index_rest(name, "down_blocks") {
        if let Some(r) = strip(rest, "downsamplers.0.conv.") {
            return Some(format!("input_blocks.{}.0.op.{r}", (i + 1) * per));
        }
        let (kind, j, inner) = block(rest)?;
        let slot = if kind == "r" { 0 } else { 1 };
        return Some(format!("input_blocks.{}.{slot}.{inner}", 1 + i * per + j));
    }
    if let Some(rest) = strip(name, "mid_block.") {
        let (kind, j, inner) = block(rest)?;
        return Some(if kind == "r" {
            format!("middle_block.{}.{inner}", 2 * j)
        } else {
            format!("middle_block.1.{inner}")
        });
    }
    if let Some((i, rest)) = index_rest(name, "up_blocks") {
        if let Some(r) = strip(rest, "upsamplers.0.") {
            let slot = if *layout.up_attention.get(i)? { 2 } else { 1 };
            return Some(format!("output_blocks.{}.{slot}.{r}", i * per + per - 1));
        }
        let (kind, j, inner) = block(rest)?;
        let slot = if kind == "r" { 0 } else { 1 };
        return Some(format!("output_blocks.{}.{slot}.{inner}", i * per + j));
    }
    None
}

/// The LDM name (without `first_stage_model.`) of a diffusers VAE tensor, and how to read it.
fn vae_source(name: &str, levels: usize) -> Option<Source> {
    let resnet = |r: &str| match r.strip_prefix("conv_shortcut.") {
        Some(t) => format!("nin_shortcut.{t}"),
        None => r.to_string(),
    };
    for side in ["encoder", "decoder"] {
        let Some(r) = name.strip_prefix(side).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let inner = if let Some(t) = r.strip_prefix("conv_norm_out.") {
            format!("norm_out.{t}")
        } else if let Some((j, t)) = index_rest(r, "mid_block.resnets") {
            format!("mid.block_{}.{}", j + 1, resnet(t))
        } else if let Some(t) = r.strip_prefix("mid_block.attentions.0.") {
            const ATTN: [(&str, &str); 5] = [
                ("group_norm.", "norm."),
                ("to_q.", "q."),
                ("to_k.", "k."),
                ("to_v.", "v."),
                ("to_out.0.", "proj_out."),
            ];
            let (o, rest) = ATTN
                .iter()
                .find_map(|(d, o)| t.strip_prefix(d).map(|rest| (*o, rest)))?;
            let key = format!("{side}.mid.attn_1.{o}{rest}");
            return Some(if o != "norm." && rest == "weight" {
                Source::Squeeze(key)
            } else {
                Source::Plain(key)
            });
        } else if let Some((i, t)) = index_rest(r, "down_blocks") {
            if let Some(c) = t.strip_prefix("downsamplers.0.conv.") {
                format!("down.{i}.downsample.conv.{c}")
            } else {
                let (j, rr) = index_rest(t, "resnets")?;
                format!("down.{i}.block.{j}.{}", resnet(rr))
            }
        } else if let Some((i, t)) = index_rest(r, "up_blocks") {
            let lvl = levels.checked_sub(i + 1)?;
            if let Some(c) = t.strip_prefix("upsamplers.0.conv.") {
                format!("up.{lvl}.upsample.conv.{c}")
            } else {
                let (j, rr) = index_rest(t, "resnets")?;
                format!("up.{lvl}.block.{j}.{}", resnet(rr))
            }
        } else {
            r.to_string()
        };
        return Some(Source::Plain(format!("{side}.{inner}")));
    }
    Some(Source::Plain(name.to_string()))
}

/// Where a diffusers/transformers CLIP tensor lives in an OpenCLIP tower under `prefix`.
fn openclip_source(name: &str, prefix: &str, projection: bool) -> Option<Source> {
    if name == "text_projection.weight" {
        return projection.then(|| Source::Transpose(format!("{prefix}text_projection")));
    }
    let n = name.strip_prefix("text_model.")?;
    let plain = |s: &str| Some(Source::Plain(format!("{prefix}{s}")));
    match n {
        "embeddings.token_embedding.weight" => return plain("token_embedding.weight"),
        "embeddings.position_embedding.weight" => return plain("positional_embedding"),
        _ => {}
    }
    if let Some(t) = n.strip_prefix("final_layer_norm.") {
        return plain(&format!("ln_final.{t}"));
    }
    let (i, rest) = index_rest(n, "encoder.layers")?;
    let block = format!("transformer.resblocks.{i}.");
    for (q, idx) in [("q_proj.", 0), ("k_proj.", 1), ("v_proj.", 2)] {
        if let Some(t) = rest
            .strip_prefix("self_attn.")
            .and_then(|r| r.strip_prefix(q))
        {
            return Some(Source::Chunk(
                format!("{prefix}{block}attn.in_proj_{t}"),
                idx,
                3,
            ));
        }
    }
    const MAP: [(&str, &str); 5] = [
        ("layer_norm1.", "ln_1."),
        ("layer_norm2.", "ln_2."),
        ("self_attn.out_proj.", "attn.out_proj."),
        ("mlp.fc1.", "mlp.c_fc."),
        ("mlp.fc2.", "mlp.c_proj."),
    ];
    MAP.iter().find_map(|(d, o)| {
        rest.strip_prefix(d)
            .map(|t| Source::Plain(format!("{prefix}{block}{o}{t}")))
    })
}

/// One component of a checkpoint as a diffusers-named [`VarBuilder`].
fn builder(
    ck: &Arc<Checkpoint>,
    map: Box<Mapper>,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let store = LdmBackend {
        ck: ck.clone(),
        map,
    };
    let backend = params::backend(store, vec![ck.path().to_path_buf()]);
    crate::weights::storage::builder(backend, dtype, device)
}

/// The original (LDM) names of a diffusers-layout UNet's tensors, as kohya's SDXL LoRAs spell
/// their modules (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`).
#[derive(Debug, Clone)]
pub struct LdmUnetNames(UNetLayout);

impl LdmUnetNames {
    /// The names for a UNet built from `config`; `None` when its levels do not all have the
    /// same number of resnets (no LDM layout has that).
    pub fn new(config: &UNetConfig) -> Option<Self> {
        let layers = match &config.layers_per_block {
            PerBlock::One(n) => *n,
            PerBlock::Each(v) => {
                let first = *v.first()?;
                v.iter().all(|&n| n == first).then_some(first)?
            }
        };
        Some(Self(UNetLayout {
            per_level: layers + 1,
            up_attention: config
                .up_block_types
                .iter()
                .map(|t| t == "CrossAttnUpBlock2D")
                .collect(),
        }))
    }

    /// The LDM name (without `model.diffusion_model.`) of the diffusers tensor `name`.
    pub fn ldm_name(&self, name: &str) -> Option<String> {
        unet_name(name, &self.0)
    }
}

/// The UNet's weights, named as diffusers names them.
pub fn unet_builder(
    ck: &Arc<Checkpoint>,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let layout = unet_layout(ck)?;
    Ok(builder(
        ck,
        Box::new(move |n| unet_name(n, &layout).map(|s| Source::Plain(format!("{UNET}{s}")))),
        dtype,
        device,
    ))
}

/// The VAE's weights (diffusers names), read from `prefix` (`first_stage_model.` in a whole
/// checkpoint, empty in a standalone LDM VAE file) with `levels` resolution levels.
pub fn vae_builder(
    ck: &Arc<Checkpoint>,
    prefix: &'static str,
    levels: usize,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    builder(
        ck,
        Box::new(move |n| {
            vae_source(n, levels).map(|s| match s {
                Source::Plain(k) => Source::Plain(format!("{prefix}{k}")),
                Source::Squeeze(k) => Source::Squeeze(format!("{prefix}{k}")),
                other => other,
            })
        }),
        dtype,
        device,
    )
}

/// A VarBuilder for a CLIP text encoder stored with transformers' names under `prefix` (with
/// or without the `text_model.` root).
pub fn standalone_text_builder(
    ck: &Arc<Checkpoint>,
    prefix: &str,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let root = hf_root(ck, prefix);
    let map: Box<Mapper> = Box::new(move |n| {
        let n = n.strip_prefix("text_model.")?;
        Some(Source::Plain(format!("{root}{n}")))
    });
    builder(ck, map, dtype, device)
}

/// The weights of text encoder `index` (0 or 1), named as transformers names them.
pub fn text_builder(
    ck: &Arc<Checkpoint>,
    family: Family,
    index: usize,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let te = *family
        .spec()
        .ldm
        .text_encoders
        .get(index)
        .ok_or_else(|| bad(ck, format!("no text encoder {index}")))?;
    let prefix = te.prefix;
    let map: Box<Mapper> = if te.openclip {
        Box::new(move |n| openclip_source(n, prefix, te.projection))
    } else {
        let root = hf_root(ck, prefix);
        Box::new(move |n| {
            let n = n.strip_prefix("text_model.")?;
            Some(Source::Plain(format!("{root}{n}")))
        })
    };
    Ok(builder(ck, map, dtype, device))
}

/// A VAE file on its own, in the LDM layout (`encoder.*`, `decoder.*`, maybe under
/// `first_stage_model.`) or with diffusers names, and its config: `config` when given (a
/// `config.json` beside the file), else inferred from shapes with the standard 32 norm groups.
pub fn standalone_vae(
    path: &Path,
    config: Option<VaeConfig>,
    dtype: DType,
    device: &Device,
    scaling: f64,
) -> Result<(VaeConfig, VarBuilder<'static>)> {
    let ck = Arc::new(Checkpoint::open(path)?);
    let diffusers = ck.has("decoder.up_blocks.0.resnets.0.conv1.weight");
    let prefix: &'static str = if ck.has(&format!("{VAE}decoder.conv_in.weight")) {
        VAE
    } else if ck.has("decoder.conv_in.weight") {
        ""
    } else if ck.has("vae.decoder.conv_in.weight") {
        // ComfyUI's all-in-one Flux checkpoints.
        "vae."
    } else {
        return Err(Error::model(
            path,
            "no VAE decoder weights (decoder.* or first_stage_model.decoder.*); not a VAE file",
        ));
    };
    let cfg = match config {
        Some(c) => c,
        None if diffusers => infer_diffusers_vae(&ck, scaling)?,
        None => {
            let p = format!("{prefix}decoder.");
            let levels = ck.count(&format!("{p}up.{{}}.block.0.conv1.weight"));
            let boc = (0..levels)
                .map(|i| dims(&ck, &format!("{p}up.{i}.block.0.conv2.weight"), 4).map(|s| s[0]))
                .collect::<Result<Vec<_>>>()?;
            let blocks = ck.count(&format!("{p}up.0.block.{{}}.conv1.weight"));
            let conv_in = dims(&ck, &format!("{p}conv_in.weight"), 4)?;
            let conv_out = dims(&ck, &format!("{p}conv_out.weight"), 4)?;
            let cfg = json!({
                "block_out_channels": boc,
                "layers_per_block": blocks.saturating_sub(1).max(1),
                "latent_channels": conv_in[1],
                "out_channels": conv_out[0],
                "scaling_factor": scaling,
                "use_quant_conv": ck.has(&format!("{prefix}quant_conv.weight")),
                "use_post_quant_conv": ck.has(&format!("{prefix}post_quant_conv.weight")),
                "mid_block_add_attention": ck.has(&format!("{p}mid.attn_1.q.weight")),
            });
            serde_json::from_value(cfg).map_err(|e| bad(&ck, format!("VAE config: {e}")))?
        }
    };
    cfg.validate().map_err(|e| bad(&ck, e))?;
    let vb = if diffusers {
        builder(
            &ck,
            Box::new(|n| Some(Source::Plain(n.to_string()))),
            dtype,
            device,
        )
    } else {
        vae_builder(&ck, prefix, cfg.block_out_channels.len(), dtype, device)
    };
    Ok((cfg, vb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_names_follow_the_ldm_layout() {
        let l = UNetLayout {
            per_level: 3,
            up_attention: vec![false, true, true, true],
        };
        let n = |s: &str| unet_name(s, &l).unwrap();
        assert_eq!(n("conv_in.weight"), "input_blocks.0.0.weight");
        assert_eq!(
            n("down_blocks.1.resnets.1.conv1.bias"),
            "input_blocks.5.0.in_layers.2.bias"
        );
        assert_eq!(
            n("down_blocks.0.attentions.0.proj_in.weight"),
            "input_blocks.1.1.proj_in.weight"
        );
        assert_eq!(
            n("down_blocks.2.downsamplers.0.conv.weight"),
            "input_blocks.9.0.op.weight"
        );
        assert_eq!(
            n("mid_block.resnets.1.norm2.weight"),
            "middle_block.2.out_layers.0.weight"
        );
        assert_eq!(
            n("mid_block.attentions.0.norm.bias"),
            "middle_block.1.norm.bias"
        );
        assert_eq!(
            n("up_blocks.0.upsamplers.0.conv.weight"),
            "output_blocks.2.1.conv.weight"
        );
        assert_eq!(
            n("up_blocks.1.upsamplers.0.conv.weight"),
            "output_blocks.5.2.conv.weight"
        );
        assert_eq!(
            n("up_blocks.3.resnets.2.conv_shortcut.weight"),
            "output_blocks.11.0.skip_connection.weight"
        );
        assert_eq!(n("time_embedding.linear_2.bias"), "time_embed.2.bias");
        assert!(unet_name("nonsense.weight", &l).is_none());
    }

    #[test]
    fn openclip_attention_is_split() {
        let p = "cond_stage_model.model.";
        assert_eq!(
            openclip_source(
                "text_model.encoder.layers.3.self_attn.k_proj.weight",
                p,
                false
            ),
            Some(Source::Chunk(
                "cond_stage_model.model.transformer.resblocks.3.attn.in_proj_weight".into(),
                1,
                3
            ))
        );
        assert_eq!(openclip_source("text_projection.weight", p, false), None);
        assert_eq!(
            openclip_source("text_projection.weight", p, true),
            Some(Source::Transpose(
                "cond_stage_model.model.text_projection".into()
            ))
        );
    }
}
