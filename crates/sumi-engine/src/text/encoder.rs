//! The tokenizer(s) and CLIP text encoder(s) of a model, loaded from a diffusers folder or
//! assembled from a single file's parts.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::t5_text::{T5Text, T5Tokenizer};
use super::tokenizer::ClipTokenizer;
use crate::arch::clip::ClipTextModel;
use crate::arch::t5::T5Encoder;
use crate::family::spec::TextStyle;
use crate::{Error, Result};

/// The text conditioning for one generation: rows are `[uncond, cond]`, or only `cond`.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// Per-token states `[B, 77 * chunks, D]` for the UNet's cross-attention.
    pub context: Tensor,
    /// Pooled text embedding `[B, P]` (SDXL's `text_embeds`); `None` for SD 1.x/2.x.
    pub pooled: Option<Tensor>,
}

/// The tokenizer(s) and text encoder(s) of a Stable Diffusion model.
#[derive(Debug)]
pub struct TextEncoder {
    encoders: Vec<(ClipTokenizer, ClipTextModel)>,
    /// T5, for models whose context it makes (Flux).
    t5: Option<T5Text>,
    style: TextStyle,
    force_zeros_for_empty_prompt: bool,
    dtype: DType,
}

/// Reads `force_zeros_for_empty_prompt` from `model_index.json`; diffusers' SDXL pipelines default to true.
fn read_force_zeros(model_dir: &Path, default: bool) -> Result<bool> {
    let path = model_dir.join("model_index.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(default),
        Err(e) => return Err(Error::model(&path, format!("cannot read: {e}"))),
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(&path, format!("not valid JSON: {e}")))?;
    Ok(json
        .get("force_zeros_for_empty_prompt")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(default))
}

fn load_pair(
    model_dir: &Path,
    suffix: &str,
    device: &Device,
    dtype: DType,
) -> Result<(ClipTokenizer, ClipTextModel)> {
    let model = ClipTextModel::load(
        &model_dir.join(format!("text_encoder{suffix}")),
        device,
        dtype,
    )?;
    let mut tok = ClipTokenizer::load(&model_dir.join(format!("tokenizer{suffix}")))?;
    tok.limit_len(model.config().max_position_embeddings);
    Ok((tok, model))
}

impl TextEncoder {
    /// Loads text_encoder[/_2] and tokenizer[/_2] from a diffusers folder, using the layers
    /// `style` says; reads model_index.json for force_zeros_for_empty_prompt.
    pub fn load(model_dir: &Path, style: TextStyle, device: &Device, dtype: DType) -> Result<Self> {
        if style == TextStyle::Flux {
            let clip = load_pair(model_dir, "", device, dtype)?;
            let model = T5Encoder::load(&model_dir.join("text_encoder_2"), device, dtype)?;
            let tokenizer = T5Tokenizer::load(&model_dir.join("tokenizer_2"))?;
            let t5 = T5Text::resident(tokenizer, model, 512, device);
            return Self::flux(clip, t5, device, dtype);
        }
        let has_second = model_dir.join("text_encoder_2").is_dir();
        let mut encoders = Vec::new();
        // SDXL's refiner has only the second encoder; every other pipeline has the first.
        if !has_second || model_dir.join("text_encoder").is_dir() {
            encoders.push(load_pair(model_dir, "", device, dtype)?);
        }
        if has_second {
            encoders.push(load_pair(model_dir, "_2", device, dtype)?);
        }
        let len = encoders[0].0.max_len();
        if let Some((tok, _)) = encoders.iter().find(|(t, _)| t.max_len() != len) {
            return Err(Error::model(
                tok.dir(),
                format!(
                    "sequence length {} differs from the first tokenizer's {len}",
                    tok.max_len()
                ),
            ));
        }
        let force_zeros_for_empty_prompt =
            style == TextStyle::Penultimate && read_force_zeros(model_dir, true)?;
        Ok(Self {
            encoders,
            t5: None,
            style,
            force_zeros_for_empty_prompt,
            dtype: crate::device::compute_dtype(dtype, device),
        })
    }

    /// A Flux model's encoders: CLIP-L for the pooled vector, T5 (with `max_len` tokens by
    /// default) for the context.
    pub fn flux(
        clip: (ClipTokenizer, ClipTextModel),
        t5: T5Text,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        Ok(Self {
            encoders: vec![clip],
            t5: Some(t5),
            style: TextStyle::Flux,
            force_zeros_for_empty_prompt: false,
            dtype: crate::device::compute_dtype(dtype, device),
        })
    }

    /// A Flux folder's encoders: CLIP-L from `text_encoder/` and `tokenizer/`, and `t5`.
    pub fn load_flux(model_dir: &Path, t5: T5Text, device: &Device, dtype: DType) -> Result<Self> {
        let clip = load_pair(model_dir, "", device, dtype)?;
        Self::flux(clip, t5, device, dtype)
    }

    /// T5 and its tokenizer, for models that encode with it (Flux).
    pub fn t5(&self) -> Option<&T5Text> {
        self.t5.as_ref()
    }

    /// Sets the T5 sequence length used when a request names none.
    pub fn set_t5_max_len(&mut self, len: usize) {
        if let Some(t5) = &mut self.t5 {
            t5.max_len = len;
        }
    }

    /// Builds an encoder from loaded parts (single-file checkpoints, already on their device);
    /// every tokenizer must have the same sequence length.
    pub fn from_parts(
        encoders: Vec<(ClipTokenizer, ClipTextModel)>,
        style: TextStyle,
        force_zeros_for_empty_prompt: bool,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let Some(len) = encoders.first().map(|(t, _)| t.max_len()) else {
            return Err(Error::InvalidRequest(
                "a text encoder needs at least one CLIP model".into(),
            ));
        };
        if let Some((tok, _)) = encoders.iter().find(|(t, _)| t.max_len() != len) {
            return Err(Error::model(
                tok.dir(),
                format!(
                    "sequence length {} differs from the first tokenizer's {len}",
                    tok.max_len()
                ),
            ));
        }
        Ok(Self {
            encoders,
            t5: None,
            style,
            force_zeros_for_empty_prompt: force_zeros_for_empty_prompt
                && style == TextStyle::Penultimate,
            dtype: crate::device::compute_dtype(dtype, device),
        })
    }

    /// How this model's encoders make the context.
    pub fn style(&self) -> TextStyle {
        self.style
    }

    /// Whether an empty negative prompt becomes all-zero conditioning (SDXL base).
    pub fn force_zeros_for_empty_prompt(&self) -> bool {
        self.force_zeros_for_empty_prompt
    }

    /// The tokenizers, in encoder order.
    pub fn tokenizers(&self) -> impl Iterator<Item = &ClipTokenizer> {
        self.encoders.iter().map(|(t, _)| t)
    }

    /// Width of the context's feature axis (summed over encoders for SDXL; T5's for Flux).
    pub fn context_dim(&self) -> usize {
        if let Some(t5) = &self.t5 {
            return t5.width;
        }
        self.encoders
            .iter()
            .map(|(_, m)| m.config().hidden_size)
            .sum()
    }

    /// Width of the pooled vector (the last encoder's; 0 without encoders).
    pub fn pooled_width(&self) -> usize {
        self.encoders.last().map_or(0, |(_, m)| m.pooled_dim())
    }

    /// The tokenizer and model pairs, in encoder order.
    pub(crate) fn encoders(&self) -> &[(ClipTokenizer, ClipTextModel)] {
        &self.encoders
    }

    /// The dtype the context is returned in.
    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }
}
