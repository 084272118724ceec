//! A LoRA / LyCORIS file opened for use: its header read once (modules, shapes, metadata, the
//! facts a list shows), its A1111 hash on demand, its tensors read only when it is applied.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device};
use sha2::{Digest, Sha256};

use super::delta::{all_finite, Factors};
use super::error::LoraError;
use super::facts::{describe, LoraFacts};
use super::format::{group, update_shape, Module, Modules};
use super::keys::{Naming, Part};
use crate::weights::ldm::is_pickle_extension;
use crate::weights::pickle;
use crate::weights::safetensors::{check_header, SafetensorsFiles};

/// Pickle files up to this size are looked into (safely) to say what they hold.
const PICKLE_PEEK_LIMIT: u64 = 512 << 20;

/// A LoRA / LyCORIS `.safetensors` file: kohya (LoRA, LoCon, Tucker, DoRA), LyCORIS (LoHa,
/// LoKr), diffusers / PEFT and old diffusers spellings.
pub struct LoraFile {
    path: PathBuf,
    st: SafetensorsFiles,
    modules: Modules,
    facts: LoraFacts,
    header_len: u64,
    hash: OnceLock<String>,
    peft: BTreeMap<Part, PeftConfig>,
}

impl std::fmt::Debug for LoraFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraFile")
            .field("path", &self.path)
            .field("facts", &self.facts)
            .finish()
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> LoraError {
    LoraError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl LoraFile {
    /// Opens `path` and reads its header only. Pickle files are refused (never loaded), and so
    /// are files that hold no LoRA (a checkpoint, a VAE, an embedding): the error says which.
    pub fn open(path: &Path) -> Result<Self, LoraError> {
        if is_pickle_extension(path) {
            return Err(refuse_pickle(path));
        }
        if !path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
        {
            return Err(file_error(path, "not a .safetensors file"));
        }
        let header_len = check_header(path).map_err(|e| file_error(path, e))?;
        let st = SafetensorsFiles::open(&[path.to_path_buf()]).map_err(|e| file_error(path, e))?;
        let shape = |k: &str| st.shape(k).map(<[usize]>::to_vec).unwrap_or_default();
        let mut keys: Vec<&str> = st.shapes().map(|(k, _)| k).collect();
        keys.sort_unstable();
        let modules = group(keys.iter().copied(), &shape);
        if modules.modules.is_empty() {
            return Err(LoraError::NotALora {
                path: path.to_path_buf(),
                looks_like: looks_like(&keys),
            });
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let facts = describe(&modules, &shape, st.metadata(), size);
        let peft = PeftConfig::read(st.metadata());
        Ok(Self {
            path: path.to_path_buf(),
            st,
            modules,
            facts,
            header_len,
            hash: OnceLock::new(),
            peft,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's stem (A1111 finds LoRAs by it).
    pub fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Format, family, rank and size.
    pub fn facts(&self) -> &LoraFacts {
        &self.facts
    }

    /// The file's `__metadata__` strings (kohya's `ss_*`, `sshs_*`, diffusers' adapter config).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        self.st.metadata()
    }

    /// `ss_output_name` from the metadata: the name the LoRA was trained as (A1111 finds
    /// LoRAs by it as well as by file stem).
    pub fn output_name(&self) -> Option<&str> {
        self.metadata()
            .get("ss_output_name")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The SHA-256 of the file's bytes after the 8-byte header length and the JSON header
    /// (A1111's `addnet_hash_safetensors`), as 64 hex digits; read once, then remembered.
    pub fn computed_hash(&self) -> Result<String, LoraError> {
        if let Some(h) = self.hash.get() {
            return Ok(h.clone());
        }
        let h = hash_after_header(&self.path, self.header_len)
            .map_err(|e| file_error(&self.path, format!("cannot hash: {e}")))?;
        Ok(self.hash.get_or_init(|| h).clone())
    }

    /// The hash A1111 writes in `Lora hashes`: the first 12 hex digits of the file's
    /// `sshs_model_hash` metadata when present, else of [`LoraFile::computed_hash`].
    pub fn a1111_hash(&self) -> Result<String, LoraError> {
        if let Some(h) = self.metadata().get("sshs_model_hash") {
            if h.len() >= 12 && h.is_ascii() {
                return Ok(h[..12].to_ascii_lowercase());
            }
        }
        Ok(self.computed_hash()?[..12].to_string())
    }

    /// Whether `hash` (as found in an infotext, any case, 10 to 64 hex digits) names this
    /// file by either rule: the `sshs_model_hash` metadata or the computed hash.
    pub fn matches_hash(&self, hash: &str) -> Result<bool, LoraError> {
        let h = hash.trim().to_ascii_lowercase();
        if h.len() < 10 {
            return Ok(false);
        }
        let meta = self
            .metadata()
            .get("sshs_model_hash")
            .map(|s| s.to_ascii_lowercase());
        if meta.is_some_and(|m| m.starts_with(&h)) {
            return Ok(true);
        }
        Ok(self.computed_hash()?.starts_with(&h))
    }

    /// The file's modules.
    pub(crate) fn modules(&self) -> &[Module] {
        &self.modules.modules
    }

    /// Keys that belong to no usable module.
    pub(crate) fn unusable(&self) -> &[String] {
        &self.modules.unusable
    }

    /// The stored shape of tensor `key`.
    pub(crate) fn shape(&self, key: &str) -> Vec<usize> {
        self.st
            .shape(key)
            .map(<[usize]>::to_vec)
            .unwrap_or_default()
    }

    /// Errs when the file changed on disk since it was opened.
    pub(crate) fn check_unchanged(&self) -> Result<(), LoraError> {
        self.st.check_unchanged().map_err(|_| {
            file_error(
                &self.path,
                "the file changed on disk since it was opened; open it again",
            )
        })
    }

    /// Reads `m`'s tensors in f32 on `device`; NaN or infinite values are an error.
    pub(crate) fn factors(&self, m: &Module, device: &Device) -> Result<Factors, LoraError> {
        let mut out = BTreeMap::new();
        for (role, key) in &m.tensors {
            let t = self
                .st
                .load(key, DType::F32, device)
                .map_err(|e| file_error(&self.path, format!("tensor {key}: {e}")))?;
            if !all_finite(&t).map_err(|e| file_error(&self.path, e))? {
                return Err(LoraError::NotFinite {
                    path: self.path.clone(),
                    tensor: key.clone(),
                });
            }
            out.insert(role.clone(), t);
        }
        Ok(Factors(out))
    }

    /// The scale of `m`'s update (`alpha / rank`, the file's `scale`, or 1) given its loaded
    /// factors: A1111's rule for kohya / LyCORIS / ComfyUI keys; for diffusers / PEFT keys the
    /// alpha of the file's adapter config (per-module pattern, then `lora_alpha`), else a `.alpha`
    /// key.
    pub(crate) fn scale(&self, m: &Module, f: &Factors) -> Result<f64, LoraError> {
        let bad = |e: candle_core::Error| file_error(&self.path, e);
        if let Some(s) = f.scalar("scale").map_err(bad)? {
            return Ok(s);
        }
        let rank = update_shape(m, &|k| self.shape(k))
            .map_err(|reason| LoraError::BadModule {
                path: self.path.clone(),
                module: m.key.module.clone(),
                reason,
            })?
            .rank;
        let file_alpha = f.scalar("alpha").map_err(bad)?;
        if matches!(m.key.naming, Naming::Kohya | Naming::ComfyUi) {
            return Ok(match (file_alpha, rank) {
                (Some(a), Some(r)) if r > 0 => a / r as f64,
                _ => 1.0,
            });
        }
        let r = rank.unwrap_or(1).max(1) as f64;
        let config = self.peft.get(&m.key.part);
        let alpha = config
            .and_then(|c| c.alpha_for(&m.key.module))
            .or(file_alpha);
        let rslora = config.is_some_and(|c| c.rslora);
        Ok(match alpha {
            Some(a) if rslora => a / r.sqrt(),
            Some(a) => a / r,
            None => 1.0,
        })
    }
}

/// diffusers' saved adapter config (`lora_adapter_metadata`) for one part of the model.
#[derive(Clone, Debug, Default)]
struct PeftConfig {
    alpha: Option<f64>,
    patterns: Vec<(String, f64)>,
    rslora: bool,
}

impl PeftConfig {
    /// Each part's config from the metadata's `lora_adapter_metadata` JSON (`unet.lora_alpha`, ...).
    fn read(metadata: &BTreeMap<String, String>) -> BTreeMap<Part, PeftConfig> {
        let Some(json) = metadata.get("lora_adapter_metadata").and_then(|s| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).ok()
        }) else {
            return BTreeMap::new();
        };
        let mut out: BTreeMap<Part, PeftConfig> = BTreeMap::new();
        for (key, value) in &json {
            let Some((prefix, field)) = key.split_once('.') else {
                continue;
            };
            let part = match prefix {
                "unet" => Part::Unet,
                "text_encoder" => Part::Text(0),
                "text_encoder_2" => Part::Text(1),
                "transformer" => Part::Transformer,
                _ => continue,
            };
            let c = out.entry(part).or_default();
            match field {
                "lora_alpha" => c.alpha = value.as_f64(),
                "use_rslora" => c.rslora = value.as_bool().unwrap_or(false),
                "alpha_pattern" => {
                    for (p, a) in value.as_object().into_iter().flatten() {
                        if let Some(a) = a.as_f64() {
                            c.patterns.push((p.trim_start_matches('^').to_string(), a));
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The alpha for `module` (dotted, within its part): a pattern that names it or ends it, else `lora_alpha`.
    fn alpha_for(&self, module: &str) -> Option<f64> {
        self.patterns
            .iter()
            .find(|(p, _)| module == p || module.ends_with(&format!(".{p}")))
            .map(|(_, a)| *a)
            .or(self.alpha)
    }
}

fn hash_after_header(path: &Path, header_len: u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(8 + header_len))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The refusal for a pickle file, saying what its tensor names show when the weights-only
/// reader (which runs nothing) can read them.
fn refuse_pickle(path: &Path) -> LoraError {
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= PICKLE_PEEK_LIMIT);
    let what = match small.then(|| pickle::read_tensors(path)) {
        Some(Ok(tensors)) => {
            let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
            let shape = |_: &str| Vec::new();
            if group(names.iter().copied(), &shape).modules.is_empty() {
                format!(" that holds no LoRA (it looks like {})", looks_like(&names))
            } else {
                " holding a LoRA".to_string()
            }
        }
        _ => String::new(),
    };
    LoraError::Pickle {
        path: path.to_path_buf(),
        what,
    }
}

/// What a weights file without LoRA modules seems to be, from its tensor names.
fn looks_like(keys: &[&str]) -> String {
    let any = |p: &str| keys.iter().any(|k| k.starts_with(p));
    let has = |p: &str| keys.iter().any(|k| k.contains(p));
    if any("model.diffusion_model.") || any("conditioner.embedders.") || any("cond_stage_model.") {
        "a Stable Diffusion checkpoint (load it as a model)".into()
    } else if any("encoder.") && any("decoder.")
        || any("first_stage_model.")
        || any("decoder.conv_in")
    {
        "a VAE (use it as the model's VAE)".into()
    } else if any("emb_params")
        || any("string_to_param")
        || any("clip_l")
        || any("clip_g")
        || keys.len() <= 2
    {
        "a textual-inversion embedding (use it in the prompt by its name)".into()
    } else if has("down_blocks.") || has("text_model.encoder.") {
        "the weights of a model component, not a LoRA".into()
    } else if keys.is_empty() {
        "an empty file".into()
    } else {
        format!("an unknown kind of weights file (e.g. {})", keys[0])
    }
}

/// Whether `path` names a file Sumi reads as a LoRA (by extension; pickles are listed so that
/// they can be refused with a clear message).
pub fn is_lora_candidate(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
        || is_pickle_extension(path)
}
