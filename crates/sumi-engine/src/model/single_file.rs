//! Single-file checkpoints in the original Stable Diffusion (LDM) layout, as model sites ship
//! them: `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE), `cond_stage_model.*`
//! (SD 1.x CLIP-L / SD 2.x OpenCLIP) or `conditioner.embedders.{0,1}.*` (SDXL).
//!
//! The header is read once; each component gets a [`VarBuilder`] over a backend that maps
//! the diffusers-style names Sumi's modules ask for onto the file's own names, splitting fused
//! OpenCLIP attention weights and reshaping 1x1-conv VAE attention weights as each tensor is
//! read from the file. Nothing is converted or written to disk. Configs are inferred from tensor names and
//! shapes; what shapes cannot tell (head counts, v-prediction) comes from the standard values of
//! the family, a companion `.yaml`, or the caller's options.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde_json::json;

use super::unet::UNetConfig;
use super::vae::VaeConfig;
use super::weights::SafetensorsFiles;
use super::{Family, Prediction};
use crate::text::ClipTextConfig;
use crate::{Error, Result};

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";
const SD1_CLIP: &str = "cond_stage_model.transformer.";
const SD2_CLIP: &str = "cond_stage_model.model.";
const XL_CLIP_L: &str = "conditioner.embedders.0.transformer.";
const XL_CLIP_G: &str = "conditioner.embedders.1.model.";

/// A single-file checkpoint with the shapes of all its tensors.
pub struct Checkpoint {
    path: PathBuf,
    st: SafetensorsFiles,
    shapes: HashMap<String, Vec<usize>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.shapes.len())
            .finish()
    }
}

/// Refuses pickle-based formats without reading them as pickles; the message says how to convert.
pub fn refuse_pickle(path: &Path) -> Error {
    Error::model(
        path,
        "pickle checkpoints (.ckpt/.pt/.pth/.bin) can run arbitrary code when loaded, so Sumi never \
         opens them. Convert the file to .safetensors first, for example with a trusted tool in an \
         isolated environment (python: `safetensors.torch.save_file(torch.load(path, weights_only=True)[\"state_dict\"], \"model.safetensors\")`), \
         or download the .safetensors version of the model",
    )
}

/// Whether `path` has an extension of a pickle-based weight format.
pub fn is_pickle_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "ckpt" | "pt" | "pth" | "bin" | "pkl" | "pickle"
        )
    })
}

impl Checkpoint {
    /// Opens `path` and reads its header; malformed files give an error naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        if is_pickle_extension(path) {
            return Err(refuse_pickle(path));
        }
        let st = SafetensorsFiles::open(&[path.to_path_buf()])?;
        let shapes = st
            .shapes()
            .map(|(name, shape)| (name.to_string(), shape.to_vec()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            st,
            shapes,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shape of tensor `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.shapes.get(name).map(Vec::as_slice)
    }

    fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    fn need(&self, name: &str) -> Result<&[usize]> {
        self.shape(name).ok_or_else(|| {
            Error::model(
                &self.path,
                format!("tensor {name} is missing; the file is incomplete or not a Stable Diffusion checkpoint"),
            )
        })
    }

    /// Counts `i = 0, 1, ...` while `pattern` with `{}` replaced by `i` names a tensor.
    fn count(&self, pattern: &str) -> usize {
        (0..)
            .take_while(|i| self.has(&pattern.replace("{}", &i.to_string())))
            .count()
    }

    /// The model family, from which text encoders the file carries.
    pub fn family(&self) -> Result<Family> {
        let any = |p: &str| self.shapes.keys().any(|k| k.starts_with(p));
        if !any(UNET) {
            return Err(Error::model(
                &self.path,
                "no UNet weights (model.diffusion_model.*): not a Stable Diffusion single-file checkpoint \
                 (a LoRA, VAE or embedding file cannot be loaded as a model)",
            ));
        }
        if any(XL_CLIP_G) {
            if !any(XL_CLIP_L) {
                return Err(Error::model(
                    &self.path,
                    "SDXL refiner checkpoints (one OpenCLIP encoder) are not supported yet",
                ));
            }
            Ok(Family::Sdxl)
        } else if any(SD2_CLIP) {
            Ok(Family::Sd2)
        } else if any(SD1_CLIP) {
            Ok(Family::Sd1)
        } else {
            Err(Error::model(
                &self.path,
                "no text encoder weights (cond_stage_model.* or conditioner.embedders.*); \
                 the file holds only part of a model",
            ))
        }
    }
}

/// Settings read from a companion LDM `.yaml` next to the checkpoint (same stem).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct YamlHints {
    /// `parameterization: "v"` makes the model a v-prediction model.
    pub v_prediction: Option<bool>,
    /// `num_heads` (SD 1.x style: the same head count in every block).
    pub num_heads: Option<usize>,
    /// `num_head_channels` (SD 2.x/SDXL style: fixed width per head).
    pub num_head_channels: Option<usize>,
    /// `scale_factor`: the latent scaling factor.
    pub scale_factor: Option<f64>,
}

impl YamlHints {
    /// Reads the handful of scalar keys Sumi uses from an LDM config; other keys are ignored.
    pub fn parse(text: &str) -> Self {
        let mut h = Self::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            match key.trim() {
                "parameterization" => h.v_prediction = Some(value == "v"),
                "num_heads" => h.num_heads = value.parse().ok().filter(|&n: &usize| n > 0),
                "num_head_channels" => {
                    h.num_head_channels = value.parse().ok().filter(|&n: &usize| n > 0)
                }
                "scale_factor" => {
                    h.scale_factor = value
                        .parse()
                        .ok()
                        .filter(|f: &f64| f.is_finite() && *f > 0.0)
                }
                _ => {}
            }
        }
        h
    }

    /// Reads `<stem>.yaml` (or `.yml`) next to `checkpoint`, if there is one.
    pub fn next_to(checkpoint: &Path) -> Result<Option<Self>> {
        for ext in ["yaml", "yml"] {
            let p = checkpoint.with_extension(ext);
            if p.is_file() {
                let meta = std::fs::metadata(&p)?;
                if meta.len() > 1 << 20 {
                    return Err(Error::model(
                        &p,
                        "config is larger than 1 MiB; not an LDM config",
                    ));
                }
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Error::model(&p, format!("cannot read: {e}")))?;
                return Ok(Some(Self::parse(&text)));
            }
        }
        Ok(None)
    }
}

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

fn bad(ck: &Checkpoint, what: impl std::fmt::Display) -> Error {
    Error::model(ck.path(), format!("unexpected checkpoint layout: {what}"))
}

fn dims(ck: &Checkpoint, name: &str, rank: usize) -> Result<Vec<usize>> {
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
struct UNetLayout {
    per_level: usize,
    up_attention: Vec<bool>,
}

fn unet_layout(ck: &Checkpoint) -> Result<UNetLayout> {
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
            |&c| match (hints.num_heads, hints.num_head_channels, family) {
                (Some(h), _, _) => h,
                (None, Some(ch), _) => (c / ch).max(1),
                (None, None, Family::Sd1) => 8,
                (None, None, _) => (c / 64).max(1),
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
        "sample_size": match (family, v) {
            (Family::Sdxl, _) => 128,
            (Family::Sd2, true) => 96,
            _ => 64,
        },
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
        "scaling_factor": hints.scale_factor.unwrap_or(if family == Family::Sdxl { 0.13025 } else { 0.18215 }),
        "use_post_quant_conv": ck.has(&format!("{VAE}post_quant_conv.weight")),
        "mid_block_add_attention": ck.has(&format!("{p}mid.attn_1.q.weight")),
    });
    serde_json::from_value(cfg).map_err(|e| bad(ck, format!("VAE config: {e}")))
}

/// Which text-encoder layout a prefix holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClipKind {
    /// transformers' CLIPTextModel names under the prefix (SD 1.x, SDXL's first encoder).
    Hf,
    /// OpenCLIP names with fused attention (SD 2.x, SDXL's second encoder).
    OpenClip,
}

fn text_encoders(family: Family) -> Vec<(&'static str, ClipKind)> {
    match family {
        Family::Sd1 => vec![(SD1_CLIP, ClipKind::Hf)],
        Family::Sd2 => vec![(SD2_CLIP, ClipKind::OpenClip)],
        Family::Sdxl => vec![(XL_CLIP_L, ClipKind::Hf), (XL_CLIP_G, ClipKind::OpenClip)],
    }
}

/// The `text_model.` root of an HF-layout encoder (old files may lack `text_model.`).
fn hf_root(ck: &Checkpoint, prefix: &str) -> String {
    if ck.has(&format!(
        "{prefix}text_model.embeddings.token_embedding.weight"
    )) {
        format!("{prefix}text_model.")
    } else {
        prefix.to_string()
    }
}

fn infer_clip(
    ck: &Checkpoint,
    prefix: &str,
    kind: ClipKind,
    family: Family,
) -> Result<ClipTextConfig> {
    let (tok, pos, fc1, layers, act, projection) = match kind {
        ClipKind::Hf => {
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
        ClipKind::OpenClip => {
            let all = ck.count(&format!("{prefix}transformer.resblocks.{{}}.ln_1.weight"));
            // SD 2.x uses the penultimate layer as its last one: the final resblock is never run.
            let layers = if family == Family::Sd2 {
                all.saturating_sub(1)
            } else {
                all
            };
            let projection = if family == Family::Sdxl {
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
    let text = text_encoders(family)
        .into_iter()
        .map(|(p, k)| infer_clip(ck, p, k, family))
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
    let backend: Box<dyn SimpleBackend> = Box::new(LdmBackend {
        ck: ck.clone(),
        map,
    });
    VarBuilder::from_backend(backend, dtype, device.clone())
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

/// The weights of text encoder `index` (0 or 1), named as transformers names them.
pub fn text_builder(
    ck: &Arc<Checkpoint>,
    family: Family,
    index: usize,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let (prefix, kind) = *text_encoders(family)
        .get(index)
        .ok_or_else(|| bad(ck, format!("no text encoder {index}")))?;
    let map: Box<Mapper> = match kind {
        ClipKind::Hf => {
            let root = hf_root(ck, prefix);
            Box::new(move |n| {
                let n = n.strip_prefix("text_model.")?;
                Some(Source::Plain(format!("{root}{n}")))
            })
        }
        ClipKind::OpenClip => {
            let projection = family == Family::Sdxl;
            Box::new(move |n| openclip_source(n, prefix, projection))
        }
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

fn infer_diffusers_vae(ck: &Checkpoint, scaling: f64) -> Result<VaeConfig> {
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
        "use_post_quant_conv": ck.has("post_quant_conv.weight"),
        "mid_block_add_attention": ck.has("decoder.mid_block.attentions.0.to_q.weight"),
    });
    serde_json::from_value(cfg).map_err(|e| bad(ck, format!("VAE config: {e}")))
}

/// The standard Stable Diffusion training schedule, for checkpoints that carry no scheduler config.
pub fn standard_scheduler(prediction: Prediction) -> crate::sampling::schedules::SchedulerConfig {
    crate::sampling::schedules::SchedulerConfig {
        num_train_timesteps: 1000,
        beta_start: 0.00085,
        beta_end: 0.012,
        beta_schedule: "scaled_linear".into(),
        trained_betas: None,
        prediction_type: match prediction {
            Prediction::Epsilon => "epsilon".into(),
            Prediction::V => "v_prediction".into(),
        },
        timestep_spacing: "leading".into(),
        steps_offset: 1,
        set_alpha_to_one: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_hints_read_ldm_keys() {
        let h = YamlHints::parse(
            "model:\n  params:\n    parameterization: \"v\" # comment\n    scale_factor: 0.13025\n    unet_config:\n      params:\n        num_head_channels: 64\n",
        );
        assert_eq!(h.v_prediction, Some(true));
        assert_eq!(h.num_head_channels, Some(64));
        assert_eq!(h.scale_factor, Some(0.13025));
        assert_eq!(h.num_heads, None);
        assert_eq!(
            YamlHints::parse("parameterization: eps").v_prediction,
            Some(false)
        );
        assert_eq!(
            YamlHints::parse("num_heads: -1\nscale_factor: nan"),
            YamlHints::default()
        );
    }

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
