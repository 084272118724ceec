//! A request's prompts turned into per-step conditioning as A1111 makes it: extra-network tags
//! cut out, `AND` parts, prompt-editing schedules, each prompt's texts encoded together; or as
//! ComfyUI makes it (one text per side).

use std::collections::HashMap;

use candle_core::Tensor;

use super::chunks::a1111_chunks;
use super::comfy::{comfy_chunks, comfy_weights};
use super::embeddings::Slot;
use super::encoder::{Conditioning, TextEncoder};
use super::encoding::{Encoded, Encoder};
use super::options::{check_prompt, hidden_layer, Emphasis, EncodeOptions};
use super::prompt::{
    parse_attention, schedule, split_and, strip_extra_networks, ExtraNetwork, Run,
};
use super::t5_text::T5Text;
use crate::family::spec::TextStyle;
use crate::{Error, Result};

/// One text's conditioning: the context for cross-attention and, for SDXL, the pooled vector.
#[derive(Debug, Clone)]
pub struct TextCond {
    /// `[1, 77 * chunks, D]`.
    pub context: Tensor,
    /// `[1, P]` (SDXL's `text_embeds`); `None` for SD 1.x/2.x.
    pub pooled: Option<Tensor>,
}

/// Conditioning over the model calls: `(last call, cond)` pairs with increasing last calls; a
/// call index past them all takes the first (A1111's `reconstruct_cond_batch`).
pub type CondSchedule = Vec<(u32, TextCond)>;

/// What the pipeline needs to know about a request's prompts besides the tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptInfo {
    /// Extra-network tags (`<lora:name:0.8>`) cut out of the positive prompt, in order.
    pub networks: Vec<ExtraNetwork>,
    /// Embeddings used, as A1111's `TI hashes` lists them: (name without `:` and `,`, the first
    /// 12 hex digits of the file's SHA-256).
    pub ti_hashes: Vec<(String, String)>,
    /// Whether A1111 would write the `Emphasis` key: the mode is not "Original" and a prompt
    /// has a bracket.
    pub emphasis_in_infotext: bool,
    /// ComfyUI `embedding:` names that were not found (ignored, as ComfyUI ignores them).
    pub missing_embeddings: Vec<String>,
    /// Whether a clip skip above 1 was asked for but not applied (A1111 ignores it for SD 2.x
    /// and SDXL).
    pub clip_skip_ignored: bool,
}

/// A prompt's length as A1111's token counter shows it ("82/150").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// Tokens of the longest of the prompt's texts (its `AND` parts at each step range), a
    /// chunk closed before the last (full or by `BREAK`) counting as 75.
    pub tokens: usize,
    /// What the chunks those tokens need hold: 75 per chunk.
    pub capacity: usize,
}

/// A request's prompts, encoded.
#[derive(Debug, Clone)]
pub struct EncodedPrompts {
    /// The positive prompt's `AND` parts: weight and conditioning schedule (one part of weight
    /// 1 without `AND`).
    pub cond: Vec<(f64, CondSchedule)>,
    /// The negative prompt's schedule, when guidance needs it.
    pub uncond: Option<CondSchedule>,
    /// Tags, hashes and notes for the record.
    pub info: PromptInfo,
}

fn prompt_error(e: super::prompt::PromptError) -> Error {
    Error::InvalidRequest(e.to_string())
}

/// A text's runs in an A1111 mode ("None" reads brackets and `BREAK` as text).
fn runs(text: &str, mode: Emphasis) -> Result<Vec<Run>> {
    match mode {
        Emphasis::None => Ok(vec![Run::Text {
            text: text.to_string(),
            weight: 1.0,
        }]),
        _ => parse_attention(text).map_err(prompt_error),
    }
}

/// One side's encoding: a schedule and the embeddings each encoder call used.
struct Side {
    schedule: CondSchedule,
    calls: Vec<Vec<usize>>,
}

impl TextEncoder {
    /// The encoders as one request uses them.
    fn encoders_for<'a>(&'a self, opts: &EncodeOptions<'a>) -> Result<Vec<Encoder<'a>>> {
        let n = self.encoders().len();
        let mut out = Vec::with_capacity(n);
        for (index, (tok, model)) in self.encoders().iter().enumerate() {
            let layers = model.num_layers();
            let layer = hidden_layer(self.style(), layers, opts.emphasis, opts.clip_skip)?;
            out.push(Encoder {
                tok,
                model,
                slot: Slot {
                    index,
                    encoders: n,
                    width: model.config().hidden_size,
                    comfy: opts.emphasis.is_comfy(),
                },
                layer,
                pooled: matches!(self.style(), TextStyle::Penultimate | TextStyle::Flux)
                    && index + 1 == n,
                embeddings: opts.embeddings,
            });
        }
        Ok(out)
    }

    /// Joins the encoders' outputs for text `k` into one conditioning (features side by side).
    fn join(&self, parts: &[Encoded], k: usize) -> Result<TextCond> {
        let contexts: Vec<&Tensor> = parts.iter().map(|p| &p.contexts[k]).collect();
        let len = contexts[0].dim(1)?;
        if contexts.iter().any(|c| c.dim(1).ok() != Some(len)) {
            return Err(Error::InvalidRequest(
                "the text encoders' tokenizers cut the prompt into different numbers of chunks"
                    .into(),
            ));
        }
        let context = Tensor::cat(&contexts, 2)?.to_dtype(self.dtype())?;
        let pooled = parts.iter().rev().find_map(|p| p.pooled[k].clone());
        Ok(TextCond { context, pooled })
    }

    /// A1111's encoding of one prompt's schedule (`get_learned_conditioning` for one prompt).
    fn a1111_side(
        &self,
        entries: &[(u32, String)],
        encoders: &[Encoder],
        opts: &EncodeOptions,
        zero: bool,
    ) -> Result<Side> {
        let mode = opts.emphasis;
        let mut distinct: Vec<(&str, usize)> = Vec::new();
        for (_, text) in entries {
            match distinct.iter_mut().find(|(t, _)| t == text) {
                Some((_, n)) => *n += 1,
                None => distinct.push((text, 1)),
            }
        }
        let texts = distinct
            .iter()
            .map(|(t, n)| Ok((runs(t, mode)?, *n)))
            .collect::<Result<Vec<_>>>()?;
        let parts = encoders
            .iter()
            .map(|e| e.a1111(&texts, mode))
            .collect::<Result<Vec<_>>>()?;
        let mut conds = Vec::with_capacity(distinct.len());
        for (k, (text_runs, _)) in texts.iter().enumerate() {
            let mut c = self.join(&parts, k)?;
            if let Some(t5) = self.t5() {
                let runs: Vec<(String, f32)> = text_runs
                    .iter()
                    .filter_map(|r| match r {
                        Run::Text { text, weight } => Some((text.clone(), *weight as f32)),
                        Run::Break => None,
                    })
                    .collect();
                c.context = t5.encode(&runs, t5_len(t5, opts), mode)?;
            }
            if zero {
                c.context = c.context.zeros_like()?;
                c.pooled = c.pooled.map(|p| p.zeros_like()).transpose()?;
            }
            conds.push(c);
        }
        let schedule = entries
            .iter()
            .map(|(end, text)| {
                let k = distinct.iter().position(|(t, _)| t == text).unwrap_or(0);
                (*end, conds[k].clone())
            })
            .collect();
        let calls = parts.into_iter().map(|p| p.used).collect();
        Ok(Side { schedule, calls })
    }

    /// ComfyUI's encoding of one text, used at every step.
    fn comfy_side(
        &self,
        text: &str,
        encoders: &[Encoder],
        opts: &EncodeOptions,
        missing: &mut Vec<String>,
    ) -> Result<Side> {
        let steps = opts.steps;
        let mut parts = Vec::with_capacity(encoders.len());
        for e in encoders {
            parts.push(e.comfy(text, missing)?);
        }
        // ComfyUI cuts SDXL's two encodings to the shorter one.
        let len = parts
            .iter()
            .map(|p| p.contexts[0].dim(1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let min = len.iter().copied().min().unwrap_or(0);
        for p in &mut parts {
            p.contexts[0] = p.contexts[0].narrow(1, 0, min)?;
        }
        let mut cond = self.join(&parts, 0)?;
        if let Some(t5) = self.t5() {
            let runs: Vec<(String, f32)> = comfy_weights(text)?
                .into_iter()
                .map(|(t, w)| (t, w as f32))
                .collect();
            cond.context = t5.encode(&runs, t5_len(t5, opts), Emphasis::Comfy)?;
        }
        let calls = parts.into_iter().map(|p| p.used).collect();
        Ok(Side {
            schedule: vec![(steps, cond)],
            calls,
        })
    }

    /// Encodes a request's prompts. `guided` asks for the negative prompt's conditioning (CFG
    /// scale other than 1); it is also made when `AND` weights need it.
    pub fn encode_prompts(
        &self,
        prompt: &str,
        negative: &str,
        guided: bool,
        opts: &EncodeOptions,
    ) -> Result<EncodedPrompts> {
        check_prompt("prompt", prompt)?;
        check_prompt("negative prompt", negative)?;
        let encoders = self.encoders_for(opts)?;
        let mut info = PromptInfo {
            clip_skip_ignored: !opts.emphasis.is_comfy()
                && opts.clip_skip.is_some_and(|n| n > 1)
                && self.style() != TextStyle::LastLayer,
            ..PromptInfo::default()
        };
        let mut texts: Vec<String> = Vec::new();
        let mut calls: Vec<Vec<usize>> = Vec::new();
        let (cond, uncond) = if opts.emphasis.is_comfy() {
            // ComfyUI has no tags, but its images' LoRA loaders are recorded as tags (applied
            // to the model by the caller, as A1111's are): they are not prompt text.
            let (stripped, networks) = strip_extra_networks(prompt);
            info.networks = networks;
            let mut missing = Vec::new();
            let c = self.comfy_side(&stripped, &encoders, opts, &mut missing)?;
            let u = guided
                .then(|| self.comfy_side(negative, &encoders, opts, &mut missing))
                .transpose()?;
            missing.dedup();
            info.missing_embeddings = missing;
            texts.extend([stripped, negative.to_string()]);
            calls.extend(u.iter().flat_map(|s| s.calls.clone()));
            calls.extend(c.calls);
            (vec![(1.0, c.schedule)], u.map(|s| s.schedule))
        } else {
            let (stripped, networks) = strip_extra_networks(prompt);
            info.networks = networks;
            let parts = split_and(&stripped);
            if let Some((sub, _)) = parts.iter().find(|(_, w)| !w.is_finite()) {
                return Err(Error::InvalidRequest(format!(
                    "the AND weight of {sub:?} is not a usable number"
                )));
            }
            let composite = parts.len() > 1 || parts.iter().any(|(_, w)| *w != 1.0);
            let entries = self.schedule(negative, opts.steps)?;
            texts.extend(entries.iter().map(|(_, t)| t.clone()));
            let negative_side = match guided || composite {
                true => {
                    let zero = self.force_zeros_for_empty_prompt()
                        && entries.iter().all(|(_, t)| t.is_empty());
                    Some(self.a1111_side(&entries, &encoders, opts, zero)?)
                }
                false => None,
            };
            calls.extend(negative_side.iter().flat_map(|s| s.calls.clone()));
            // A1111 encodes each distinct part once.
            let mut done: HashMap<String, CondSchedule> = HashMap::new();
            let mut cond = Vec::with_capacity(parts.len());
            for (sub, weight) in parts {
                if !done.contains_key(&sub) {
                    let entries = self.schedule(&sub, opts.steps)?;
                    texts.extend(entries.iter().map(|(_, t)| t.clone()));
                    let side = self.a1111_side(&entries, &encoders, opts, false)?;
                    calls.extend(side.calls);
                    done.insert(sub.clone(), side.schedule);
                }
                cond.push((weight, done[&sub].clone()));
            }
            (cond, negative_side.map(|s| s.schedule))
        };
        if self.t5().is_some() {
            if let Some(&index) = calls.iter().flatten().next() {
                return Err(Error::InvalidRequest(format!(
                    "the prompt names the textual-inversion embedding {:?}, made for Stable \
                     Diffusion's CLIP text encoders; a Flux model reads the prompt with T5, which \
                     cannot use it: take the name out of the prompt (or rename the file)",
                    opts.embeddings.name(index)
                )));
            }
        }
        info.emphasis_in_infotext = opts.emphasis != Emphasis::Original
            && texts.iter().any(|t| t.contains('(') || t.contains('['));
        info.ti_hashes = ti_hashes(&calls, opts)?;
        if let Some(t5) = self.t5() {
            t5.release();
        }
        Ok(EncodedPrompts { cond, uncond, info })
    }

    /// `text`'s length in tokens of the first text encoder, as A1111's counter shows it (tags
    /// cut out of a positive prompt, the longest `AND` part at any step range; embeddings
    /// count their vectors), or for ComfyUI's rules the tokens of all its chunks.
    pub fn token_count(
        &self,
        text: &str,
        positive: bool,
        opts: &EncodeOptions,
    ) -> Result<TokenCount> {
        check_prompt("prompt", text)?;
        let encoders = self.encoders_for(opts)?;
        let Some(enc) = encoders.first() else {
            return Err(Error::InvalidRequest(
                "the model has no text encoder".into(),
            ));
        };
        let per_chunk = enc.tok.chunk_tokens();
        let mut count = |i: usize| enc.vector_count(i);
        if opts.emphasis.is_comfy() {
            let find = |name: &str| opts.embeddings.find_comfy(name);
            let text = match positive {
                true => strip_extra_networks(text).0,
                false => text.to_string(),
            };
            let chunks = comfy_chunks(&text, enc.tok, &find, &mut count, &mut Vec::new())?;
            let eos = enc.tok.eos_id();
            let tokens = chunks
                .iter()
                .map(|c| c.ids[1..].iter().position(|&i| i == eos).unwrap_or(0))
                .sum();
            let capacity = chunks.len() * per_chunk;
            return Ok(TokenCount { tokens, capacity });
        }
        let texts = match positive {
            true => split_and(&strip_extra_networks(text).0)
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
            false => vec![text.to_string()],
        };
        let names = opts.embeddings.name_index(enc.tok)?;
        let mut tokens = 0;
        for part in texts {
            for (_, t) in self.schedule(&part, opts.steps)? {
                let chunked = a1111_chunks(&runs(&t, opts.emphasis)?, enc.tok, &names, &mut count)?;
                tokens = tokens.max(chunked.tokens);
            }
        }
        let capacity = tokens.max(1).div_ceil(per_chunk) * per_chunk;
        Ok(TokenCount { tokens, capacity })
    }

    /// A1111's schedule of `text` over `steps`.
    fn schedule(&self, text: &str, steps: u32) -> Result<Vec<(u32, String)>> {
        Ok(schedule(text, steps, None, false).map_err(prompt_error)?.0)
    }

    /// [uncond, cond] rows for plain texts (A1111 "Original" emphasis, `BREAK`, no embeddings,
    /// no prompt editing, `AND` or tags), or only cond when `with_uncond` is false. When the
    /// two have different chunk counts the shorter is padded with encodings of the empty prompt
    /// (zeros for a zeroed negative), as A1111's `pad_cond_uncond` option does; the pipeline
    /// instead runs them apart ([`TextEncoder::encode_prompts`]).
    pub fn encode(&self, prompt: &str, negative: &str, with_uncond: bool) -> Result<Conditioning> {
        let empty = super::embeddings::Embeddings::empty();
        let opts = EncodeOptions {
            emphasis: Emphasis::Original,
            clip_skip: None,
            embeddings: &empty,
            steps: 1,
            max_sequence_length: None,
        };
        let encoders = self.encoders_for(&opts)?;
        let one = |text: &str, zero: bool| -> Result<TextCond> {
            let entries = [(1, text.to_string())];
            let side = self.a1111_side(&entries, &encoders, &opts, zero)?;
            Ok(side.schedule[0].1.clone())
        };
        let mut rows = Vec::new();
        if with_uncond {
            let zero = self.force_zeros_for_empty_prompt() && negative.is_empty();
            rows.push((one(negative, zero)?, zero));
        }
        rows.push((one(prompt, false)?, false));
        let len = rows
            .iter()
            .map(|(c, _)| c.context.dim(1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let longest = len.iter().copied().max().unwrap_or(0);
        let pad = match len.iter().any(|&n| n != longest) {
            true => one("", false)?.context,
            false => rows[0].0.context.clone(),
        };
        let mut contexts = Vec::with_capacity(rows.len());
        for ((c, zero), n) in rows.iter().zip(len) {
            let mut parts = vec![c.context.clone()];
            for _ in 0..(longest - n) / pad.dim(1)?.max(1) {
                parts.push(match zero {
                    true => pad.zeros_like()?,
                    false => pad.clone(),
                });
            }
            contexts.push(Tensor::cat(&parts, 1)?);
        }
        let pooled = rows
            .iter()
            .map(|(c, _)| c.pooled.clone())
            .collect::<Option<Vec<_>>>()
            .map(|p| Tensor::cat(&p, 0))
            .transpose()?;
        Ok(Conditioning {
            context: Tensor::cat(&contexts, 0)?,
            pooled,
        })
    }
}

/// T5's sequence length for a request: the one it names, else the model's.
fn t5_len(t5: &T5Text, opts: &EncodeOptions) -> usize {
    opts.max_sequence_length.unwrap_or(t5.max_len).max(1)
}

/// A1111's `TI hashes` entries: each encoder call puts its embeddings in front of those of the
/// calls before it; a name is listed once.
fn ti_hashes(calls: &[Vec<usize>], opts: &EncodeOptions) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for &index in calls.iter().rev().flatten() {
        let name = opts.embeddings.name(index).replace([':', ','], "");
        if out.iter().all(|(n, _)| *n != name) {
            out.push((name, opts.embeddings.short_hash(index)?));
        }
    }
    Ok(out)
}
