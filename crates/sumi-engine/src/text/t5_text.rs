//! T5's side of a Flux prompt: the sentencepiece tokenizer from `tokenizer.json`, the prompt's
//! weighted runs tokenized in order, `</s>` appended, cut or padded to the sequence length (as
//! `FluxPipeline` pads, to the full length), encoded, and prompt weights applied to the token
//! states.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use super::options::Emphasis;
use super::weighting::comfy_emphasis;
use crate::arch::t5::T5Encoder;
use crate::{Error, Result};

/// T5's tokenizer with the ids Flux's padding needs.
pub struct T5Tokenizer {
    tokenizer: Tokenizer,
    eos: u32,
    pad: u32,
    dir: PathBuf,
}

impl std::fmt::Debug for T5Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5Tokenizer")
            .field("dir", &self.dir)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .finish()
    }
}

impl T5Tokenizer {
    /// Loads `tokenizer.json` from a `tokenizer_2/` folder (or names that file directly).
    pub fn load(path: &Path) -> Result<Self> {
        let (dir, file) = match path.is_dir() {
            true => (path.to_path_buf(), path.join("tokenizer.json")),
            false => (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path.to_path_buf(),
            ),
        };
        if !file.is_file() {
            let why = match dir.join("spiece.model").is_file() {
                true => {
                    "has only spiece.model; Sumi reads T5's tokenizer from tokenizer.json \
                         (diffusers' FluxPipeline repositories ship it in tokenizer_2/; \
                         `T5TokenizerFast.from_pretrained(dir).save_pretrained(dir)` writes it)"
                }
                false => {
                    "has no tokenizer.json for the T5 text encoder (diffusers' Flux \
                          repositories ship it in tokenizer_2/)"
                }
            };
            return Err(Error::model(&dir, why));
        }
        let tokenizer = Tokenizer::from_file(&file)
            .map_err(|e| Error::model(&file, format!("not a tokenizer Sumi can read: {e}")))?;
        let id = |name: &str| tokenizer.token_to_id(name);
        let eos = id("</s>")
            .ok_or_else(|| Error::model(&file, "has no </s> token: not a T5 tokenizer"))?;
        let pad = id("<pad>").unwrap_or(0);
        Ok(Self {
            tokenizer,
            eos,
            pad,
            dir,
        })
    }

    /// Ids of `text` without special tokens.
    fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::InvalidRequest(format!("T5 cannot tokenize the prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids and weights of weighted runs of text: each run tokenized on its own, `</s>` after
    /// the last, then cut to `len` (keeping `</s>` last, as transformers truncates) and padded
    /// with `<pad>` to `len`. Also returns the count of prompt tokens cut off.
    pub fn tokens(
        &self,
        runs: &[(String, f32)],
        len: usize,
    ) -> Result<(Vec<u32>, Vec<f32>, usize)> {
        let (mut ids, mut weights) = (Vec::new(), Vec::new());
        for (text, w) in runs {
            let piece = self.ids(text)?;
            weights.extend(std::iter::repeat_n(*w, piece.len()));
            ids.extend(piece);
        }
        let keep = len.saturating_sub(1);
        let cut = ids.len().saturating_sub(keep);
        ids.truncate(keep);
        weights.truncate(keep);
        ids.push(self.eos);
        weights.push(1.0);
        ids.resize(len, self.pad);
        weights.resize(len, 1.0);
        Ok((ids, weights, cut))
    }

    /// The folder the tokenizer was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reads T5 again from its files (for a model that releases it after each encoding).
pub type T5Loader = Arc<dyn Fn() -> Result<T5Encoder> + Send + Sync>;

/// T5 with its tokenizer, and the sequence length the model uses by default.
pub struct T5Text {
    /// The tokenizer.
    pub tokenizer: T5Tokenizer,
    /// Tokens per prompt when a request names none (dev 512, schnell 256).
    pub max_len: usize,
    /// Where the encoder's weights live.
    pub device: Device,
    /// Width of its token states.
    pub width: usize,
    model: Mutex<Option<Arc<T5Encoder>>>,
    reload: Option<T5Loader>,
}

impl std::fmt::Debug for T5Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5Text")
            .field("tokenizer", &self.tokenizer)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl T5Text {
    /// T5 kept loaded.
    pub fn resident(
        tokenizer: T5Tokenizer,
        model: T5Encoder,
        max_len: usize,
        device: &Device,
    ) -> Self {
        Self {
            tokenizer,
            max_len,
            device: device.clone(),
            width: model.config().d_model,
            model: Mutex::new(Some(Arc::new(model))),
            reload: None,
        }
    }

    /// T5 read by `reload` when a prompt is encoded and released after ([`T5Text::release`]).
    pub fn on_demand(
        tokenizer: T5Tokenizer,
        reload: T5Loader,
        width: usize,
        max_len: usize,
        device: &Device,
    ) -> Self {
        Self {
            tokenizer,
            max_len,
            device: device.clone(),
            width,
            model: Mutex::new(None),
            reload: Some(reload),
        }
    }

    /// Releases the encoder's weights when it can read them again.
    pub fn release(&self) {
        if self.reload.is_some() {
            *self.model.lock().unwrap_or_else(PoisonError::into_inner) = None;
            crate::alloc::release_free();
        }
    }

    fn encoder(&self) -> Result<Arc<T5Encoder>> {
        let mut slot = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let reload = self
            .reload
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("the T5 text encoder is not loaded".into()))?;
        let model = Arc::new(reload()?);
        *slot = Some(model.clone());
        Ok(model)
    }

    /// The token states `[1, len, D]` of weighted runs of text, weights applied as `mode`
    /// says: A1111's "Original" multiplies each token's vector and restores the mean,
    /// "No norm" only multiplies, ComfyUI moves weighted vectors away from the empty prompt's.
    pub fn encode(&self, runs: &[(String, f32)], len: usize, mode: Emphasis) -> Result<Tensor> {
        let (ids, weights, _) = self.tokenizer.tokens(runs, len)?;
        let z = self.states(&ids)?;
        if weights.iter().all(|&w| w == 1.0) || matches!(mode, Emphasis::Ignore | Emphasis::None) {
            return Ok(z);
        }
        let w =
            Tensor::from_vec(weights.clone(), (1, len, 1), &Device::Cpu)?.to_device(z.device())?;
        Ok(match mode {
            Emphasis::Comfy => {
                let (empty, _, _) = self.tokenizer.tokens(&[], len)?;
                comfy_emphasis(&z, &weights, &self.states(&empty)?)?
            }
            Emphasis::NoNorm => z.broadcast_mul(&w)?,
            _ => {
                let before = z.mean_all()?.to_scalar::<f32>()?;
                let weighted = z.broadcast_mul(&w)?;
                let after = weighted.mean_all()?.to_scalar::<f32>()?;
                (weighted * f64::from(before / after))?
            }
        })
    }

    fn states(&self, ids: &[u32]) -> Result<Tensor> {
        let t = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu)?
            .to_device(&self.device)?;
        Ok(self
            .encoder()?
            .forward(&t)?
            .to_dtype(candle_core::DType::F32)?)
    }
}
