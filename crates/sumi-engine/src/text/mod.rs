//! Prompt encoding: tokenizers and CLIP text encoders from a diffusers folder, turned into the
//! conditioning the UNet takes.
//!
//! SD 1.x/2.x use one encoder and its last layer (after the final layer norm). SDXL uses two:
//! the second-to-last layer of each, joined on the feature axis, plus the second encoder's
//! projected pooled output. Prompts longer than one sequence are cut into chunks of 75 tokens
//! (A1111's way), each encoded on its own and joined along the sequence axis.

pub mod prompt;
pub mod tokenizer;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::arch::clip::ClipTextModel;
use crate::family::spec::TextStyle;
use crate::{Error, Result};
use tokenizer::ClipTokenizer;

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
    style: TextStyle,
    force_zeros_for_empty_prompt: bool,
    device: Device,
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
            style,
            force_zeros_for_empty_prompt,
            device: device.clone(),
            dtype,
        })
    }

    /// Builds an encoder from loaded parts (single-file checkpoints); every tokenizer must have the same sequence length.
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
            style,
            force_zeros_for_empty_prompt: force_zeros_for_empty_prompt
                && style == TextStyle::Penultimate,
            device: device.clone(),
            dtype,
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

    /// Width of the context's feature axis (summed over encoders for SDXL).
    pub fn context_dim(&self) -> usize {
        self.encoders
            .iter()
            .map(|(_, m)| m.config().hidden_size)
            .sum()
    }

    /// Encodes [uncond, cond] (or only cond when with_uncond is false) as the UNet wants it.
    pub fn encode(&self, prompt: &str, negative: &str, with_uncond: bool) -> Result<Conditioning> {
        let zero_uncond = with_uncond && self.force_zeros_for_empty_prompt && negative.is_empty();
        let encode_uncond = with_uncond && !zero_uncond;
        let cond_ids = self.tokenize_all(prompt)?;
        let uncond_ids = if encode_uncond {
            Some(self.tokenize_all(negative)?)
        } else {
            None
        };
        // Both sides and all encoders get the same number of chunks so that the rows line up.
        let chunks = self
            .encoders
            .iter()
            .zip(&cond_ids)
            .enumerate()
            .map(|(i, ((tok, _), c))| {
                let u = uncond_ids.as_ref().map_or(0, |u| u[i].len());
                tok.chunk_count(c.len().max(u))
            })
            .max()
            .unwrap_or(1);

        let mut contexts = Vec::with_capacity(self.encoders.len());
        let mut pooled = None;
        for (i, (tok, model)) in self.encoders.iter().enumerate() {
            let mut batch = Vec::new();
            if let Some(u) = &uncond_ids {
                batch.extend(tok.chunks(&u[i], chunks));
            }
            batch.extend(tok.chunks(&cond_ids[i], chunks));
            let out = model.forward(&batch)?;
            let hidden = match self.style {
                TextStyle::LastLayer => out.last_hidden_state,
                TextStyle::Penultimate => out.penultimate,
            };
            let (rows, t, d) = hidden.dims3()?;
            let sides = rows / chunks;
            // Rows are [side0 chunk0, side0 chunk1, ..., side1 chunk0, ...]: join each side's chunks.
            contexts.push(hidden.reshape((sides, chunks * t, d))?);
            // The pooled output is the first chunk's of each side.
            let first: Vec<u32> = (0..sides).map(|s| (s * chunks) as u32).collect();
            let first = Tensor::from_vec(first, sides, &self.device)?;
            pooled = Some(out.pooled.index_select(&first, 0)?);
        }
        let mut context = if contexts.len() == 1 {
            contexts.remove(0)
        } else {
            Tensor::cat(&contexts, 2)?
        };
        let mut pooled = match self.style {
            TextStyle::LastLayer => None,
            TextStyle::Penultimate => pooled,
        };
        if zero_uncond {
            context = Tensor::cat(&[context.zeros_like()?, context], 0)?;
            pooled = pooled
                .map(|p| Tensor::cat(&[p.zeros_like()?, p], 0))
                .transpose()?;
        }
        Ok(Conditioning {
            context: context.to_dtype(self.dtype)?,
            pooled,
        })
    }

    /// Token ids of `text` for each tokenizer, without BOS/EOS.
    fn tokenize_all(&self, text: &str) -> Result<Vec<Vec<u32>>> {
        self.encoders
            .iter()
            .map(|(tok, _)| tok.tokenize(text))
            .collect()
    }
}
