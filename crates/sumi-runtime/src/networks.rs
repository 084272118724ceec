//! The files a prompt names, as both faces use them: textual-inversion embeddings and LoRAs
//! found in Sumi's folders, `--lora` arguments turned into prompt tags, the prompt's
//! `<lora:...>` tags resolved (by the recorded hash first when re-running an image, then by
//! name) and applied to the model, and the hashes recorded with the image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sumi_engine::model::{LoraUse, MAX_LORA_WEIGHT};
use sumi_engine::text::prompt::{lora_tag, strip_extra_networks};
use sumi_engine::text::{Embeddings, PromptInfo};
use sumi_engine::weights::lora::LoraFile;
use sumi_engine::Model;
use sumi_gallery::{GenerationParams, NamedHash};
use sumi_hub::networks::{describe, find_loras, FoundLora};

use crate::{Result, RuntimeError};

/// Where embeddings and LoRAs are looked for: folders given by the user, then Sumi's defaults.
#[derive(Debug, Clone, Default)]
pub struct NetworkDirs {
    /// Embedding folders (or files), earlier first.
    pub embeddings: Vec<PathBuf>,
    /// LoRA folders, earlier first.
    pub loras: Vec<PathBuf>,
}

impl NetworkDirs {
    /// `embeddings` and `loras` (e.g. from the command line), then the default folders of `home`
    /// and the environment (see [`sumi_hub::networks`]).
    pub fn with_defaults(home: &Path, embeddings: &[PathBuf], loras: &[PathBuf]) -> Self {
        let mut e = embeddings.to_vec();
        e.extend(sumi_hub::networks::embedding_dirs(home));
        let mut l = loras.to_vec();
        l.extend(sumi_hub::networks::lora_dirs(home));
        Self {
            embeddings: e,
            loras: l,
        }
    }

    /// The embeddings in the folders (names are read now, vectors on first use).
    pub fn embeddings(&self) -> Result<Embeddings> {
        Ok(Embeddings::from_paths(&self.embeddings)?)
    }

    /// Where a user puts a missing file, for messages.
    fn lora_places(&self) -> String {
        match self.loras.is_empty() {
            true => "no LoRA folder exists yet".into(),
            false => format!(
                "searched {}",
                self.loras
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The LoRAs Sumi knows about, and the files it has opened (kept open, so that the same set
/// applied again is recognised and not patched twice).
#[derive(Default)]
pub struct LoraLibrary {
    dirs: NetworkDirs,
    found: Vec<FoundLora>,
    open: HashMap<PathBuf, Arc<LoraFile>>,
}

/// One `--lora` argument: a name or file, and its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraArg {
    /// A LoRA name (file stem or trained name) or a path to a `.safetensors` file.
    pub target: String,
    /// Text-encoder weight (default 1).
    pub te: Option<f64>,
    /// UNet weight (default: the text-encoder weight).
    pub unet: Option<f64>,
}

/// Reads `NAME_OR_PATH[:TE[:UNET]]`; a path that exists is taken whole even when it holds `:`.
pub fn parse_lora_arg(spec: &str) -> Result<LoraArg> {
    let bad = |what: &str| {
        RuntimeError::Invalid(format!(
            "--lora {spec:?}: {what}; write NAME_OR_FILE[:WEIGHT[:UNET_WEIGHT]], e.g. inkwash:0.7"
        ))
    };
    if Path::new(spec).exists() {
        return Ok(LoraArg {
            target: spec.to_string(),
            te: None,
            unet: None,
        });
    }
    let mut parts: Vec<&str> = spec.split(':').collect();
    let mut weights = Vec::new();
    while parts.len() > 1 && weights.len() < 2 {
        let last = parts[parts.len() - 1];
        match last.trim().parse::<f64>() {
            Ok(w) => {
                if !w.is_finite() || w.abs() > MAX_LORA_WEIGHT {
                    return Err(bad(&format!("weight {last} is outside -10..10")));
                }
                weights.insert(0, w);
                parts.pop();
            }
            Err(_) if weights.is_empty() && parts.len() <= 3 => {
                return Err(bad(&format!("{last:?} is not a number")))
            }
            Err(_) => break,
        }
    }
    let target = parts.join(":");
    if target.trim().is_empty() {
        return Err(bad("no LoRA named"));
    }
    Ok(LoraArg {
        target,
        te: weights.first().copied(),
        unet: weights.get(1).copied(),
    })
}

/// LoRAs applied to a model for one generation.
#[derive(Debug, Clone, Default)]
pub struct AppliedLoras {
    /// What the image records as `Lora hashes`, in tag order.
    pub hashes: Vec<NamedHash>,
    /// Things the user should know (tags ignored, layers that matched nothing).
    pub notes: Vec<String>,
}

impl LoraLibrary {
    /// The LoRAs in `dirs.loras` (headers only).
    pub fn scan(dirs: &NetworkDirs) -> Self {
        Self {
            dirs: dirs.clone(),
            found: find_loras(&dirs.loras),
            open: HashMap::new(),
        }
    }

    /// Looks the folders over again (files added or removed), keeping the files already open.
    pub fn rescan(&mut self) {
        let extra: Vec<FoundLora> = self
            .found
            .iter()
            .filter(|f| !self.dirs.loras.iter().any(|d| f.path.starts_with(d)))
            .cloned()
            .collect();
        self.found = find_loras(&self.dirs.loras);
        self.found.extend(extra);
        let found = &self.found;
        self.open.retain(|p, _| found.iter().any(|f| &f.path == p));
    }

    /// Every LoRA found, by name.
    pub fn list(&self) -> &[FoundLora] {
        &self.found
    }

    /// The LoRA a prompt tag names: by file stem, then by trained name (A1111's alias).
    pub fn by_name(&self, name: &str) -> Option<&FoundLora> {
        let usable = || self.found.iter().filter(|f| f.unusable.is_none());
        usable()
            .find(|f| f.name == name)
            .or_else(|| usable().find(|f| f.alias.as_deref() == Some(name)))
            .or_else(|| self.found.iter().find(|f| f.name == name))
    }

    /// The usable LoRA whose A1111 hash is `hash`, preferring one called `name`.
    fn by_hash(&mut self, hash: &str, name: &str) -> Option<FoundLora> {
        let mut order: Vec<FoundLora> = self
            .found
            .iter()
            .filter(|f| f.unusable.is_none())
            .cloned()
            .collect();
        order.sort_by_key(|f| f.name != name && f.alias.as_deref() != Some(name));
        order.into_iter().find(|f| {
            self.file(&f.path)
                .is_ok_and(|file| file.matches_hash(hash).unwrap_or(false))
        })
    }

    /// The opened file at `path` (opened once, then shared).
    fn file(&mut self, path: &Path) -> Result<Arc<LoraFile>> {
        if let Some(f) = self.open.get(path) {
            return Ok(f.clone());
        }
        let f = Arc::new(LoraFile::open(path).map_err(sumi_engine::Error::from)?);
        self.open.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }

    /// Adds `--lora` arguments to `prompt` as `<lora:NAME:TE[:UNET]>` tags (so the recorded
    /// prompt names them, as A1111 records them). A file path is added to the library under its
    /// stem. Naming a LoRA the prompt (or another argument) already names is refused.
    pub fn add_tags(&mut self, prompt: &str, args: &[LoraArg]) -> Result<String> {
        let mut named: Vec<String> = prompt_loras(prompt)?
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        let mut out = prompt.to_string();
        for arg in args {
            let name = match Path::new(&arg.target) {
                p if p.is_file() => self.add_file(p)?,
                _ => self
                    .by_name(&arg.target)
                    .map(|f| f.name.clone())
                    .ok_or_else(|| self.missing(&arg.target, None))?,
            };
            if named.contains(&name) {
                return Err(RuntimeError::Invalid(format!(
                    "the LoRA {name:?} is named twice (in --lora and the prompt, or twice in \
                     --lora); give each LoRA once"
                )));
            }
            let te = arg.te.unwrap_or(1.0);
            let tag = match arg.unet {
                Some(u) if u != te => format!("<lora:{name}:{te}:{u}>"),
                _ => format!("<lora:{name}:{te}>"),
            };
            if !out.is_empty() && !out.ends_with([' ', ',']) {
                out.push_str(", ");
            }
            out.push_str(&tag);
            named.push(name);
        }
        Ok(out)
    }

    /// Adds the file at `path` to the library; returns the name its tag uses (the stem).
    fn add_file(&mut self, path: &Path) -> Result<String> {
        let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(f) = self.found.iter().find(|f| {
            f.path == path || f.path.canonicalize().ok().as_deref() == Some(canon.as_path())
        }) {
            return Ok(f.name.clone());
        }
        let Some(found) = describe(path) else {
            // Opening again gives the engine's message saying what the file is instead.
            return Err(self.file(path).err().unwrap_or_else(|| {
                RuntimeError::Invalid(format!("{} is not a LoRA", path.display()))
            }));
        };
        if let Some(reason) = &found.unusable {
            return Err(RuntimeError::Invalid(reason.clone()));
        }
        if let Some(other) = self.by_name(&found.name).filter(|o| o.path != found.path) {
            return Err(RuntimeError::Invalid(format!(
                "{} and {} are both called {:?}: a prompt tag could not tell them apart; rename one",
                path.display(),
                other.path.display(),
                found.name
            )));
        }
        let name = found.name.clone();
        self.found.insert(0, found);
        Ok(name)
    }

    fn missing(&self, name: &str, hash: Option<&str>) -> RuntimeError {
        let hash = hash.map(|h| format!(" (hash {h})")).unwrap_or_default();
        RuntimeError::Invalid(format!(
            "no LoRA called {name:?}{hash} was found ({}); put its .safetensors file in the \
             loras folder of Sumi's home, pass the folder with --lora-dir or the file with --lora",
            self.dirs.lora_places()
        ))
    }

    /// Applies the LoRAs that `prompt`'s tags name to `model` (removing any others; none
    /// clears them). With `recorded` (a re-run), a LoRA is found by its recorded hash first, then
    /// by name. Fails, changing nothing, when one is missing or unusable.
    pub fn apply(
        &mut self,
        model: &mut Model,
        prompt: &str,
        recorded: &[NamedHash],
    ) -> Result<AppliedLoras> {
        let mut applied = AppliedLoras::default();
        let mut uses: Vec<LoraUse> = Vec::new();
        for (name, te, unet) in prompt_loras(prompt)? {
            let want = recorded
                .iter()
                .find(|h| h.name == name.replace([':', ','], ""));
            let by_hash = want.and_then(|h| self.by_hash(&h.hash, &name));
            let found = match (by_hash, want) {
                (Some(f), Some(h)) => {
                    if f.name != name && f.alias.as_deref() != Some(&name) {
                        applied.notes.push(format!(
                            "LoRA {name:?}: found by its hash {} as {}",
                            h.hash,
                            f.path.display()
                        ));
                    }
                    f
                }
                (_, want) => {
                    let f = self
                        .by_name(&name)
                        .cloned()
                        .ok_or_else(|| self.missing(&name, want.map(|h| h.hash.as_str())))?;
                    if let Some(h) = want {
                        applied.notes.push(format!(
                            "LoRA {name:?}: no file has the recorded hash {}; using {} by name \
                             (the image may differ)",
                            h.hash,
                            f.path.display()
                        ));
                    }
                    f
                }
            };
            if let Some(reason) = &found.unusable {
                return Err(RuntimeError::Invalid(format!("LoRA {name:?}: {reason}")));
            }
            let file = self.file(&found.path)?;
            if uses.iter().any(|u| Arc::ptr_eq(&u.file, &file)) {
                return Err(RuntimeError::Invalid(format!(
                    "the prompt names the LoRA {name:?} twice; give each LoRA once"
                )));
            }
            let hash = file.a1111_hash().map_err(sumi_engine::Error::from)?;
            applied.hashes.push(NamedHash::new(&name, &hash));
            uses.push(LoraUse { file, te, unet });
        }
        let same =
            model.loras().len() == uses.len()
                && model.loras().iter().zip(&uses).all(|(a, b)| {
                    Arc::ptr_eq(&a.file, &b.file) && a.te == b.te && a.unet == b.unet
                });
        if !same {
            let report = model.set_loras(&uses)?;
            for (lora, use_) in report.loras.iter().zip(&uses) {
                if !lora.unmatched.is_empty() {
                    let examples: Vec<&str> =
                        lora.unmatched.iter().take(3).map(String::as_str).collect();
                    applied.notes.push(format!(
                        "LoRA {}: {} module(s) match no layer of this model (e.g. {})",
                        use_.file.stem(),
                        lora.unmatched.len(),
                        examples.join(", ")
                    ));
                }
            }
        }
        Ok(applied)
    }
}

/// The LoRA tags of a prompt: name, text-encoder and UNet weights. Other extra-network tags
/// (hypernetworks) are refused: Sumi cannot apply them.
pub fn prompt_loras(prompt: &str) -> Result<Vec<(String, f64, f64)>> {
    let (_, nets) = strip_extra_networks(prompt);
    nets.iter()
        .map(|net| {
            let tag = lora_tag(net).map_err(|e| {
                RuntimeError::Invalid(format!(
                    "{e}; Sumi applies <lora:NAME:WEIGHT> tags only: remove the others"
                ))
            })?;
            for (what, w) in [("weight", tag.te), ("UNet weight", tag.unet)] {
                if w.abs() > MAX_LORA_WEIGHT {
                    return Err(RuntimeError::Invalid(format!(
                        "LoRA {:?}: {what} {w} is outside -10..10",
                        tag.name
                    )));
                }
            }
            Ok((tag.name, tag.te, tag.unet))
        })
        .collect()
}

/// Records what the prompts used into `params`: embeddings (`TI hashes`) and LoRAs.
pub fn record_hashes(params: &mut GenerationParams, info: &PromptInfo, loras: &AppliedLoras) {
    params.ti_hashes = info
        .ti_hashes
        .iter()
        .map(|(name, hash)| NamedHash::new(name, hash))
        .collect();
    params.lora_hashes = loras.hashes.clone();
}

/// Notes about how the prompts were read that the user should see.
pub fn prompt_notes(info: &PromptInfo) -> Vec<String> {
    let mut notes = Vec::new();
    if info.clip_skip_ignored {
        notes.push(
            "clip skip is ignored for this model family, as A1111 ignores it outside SD 1.x \
             (use --emphasis comfy for ComfyUI's rule, which applies it)"
                .to_string(),
        );
    }
    for name in &info.missing_embeddings {
        notes.push(format!(
            "embedding:{name} names no embedding in the embedding folders; it was left out"
        ));
    }
    notes
}

/// Checks that the embeddings an image recorded, and that `prompts` still name, are here with the
/// same hash: a missing one is an error (the prompt would read its name as words), another file
/// under its name a note.
pub fn check_embeddings(
    recorded: &[NamedHash],
    embeddings: &Embeddings,
    prompts: &[&str],
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut missing = Vec::new();
    for want in recorded {
        if !prompts.iter().any(|p| p.contains(want.name.as_str())) {
            continue;
        }
        let Some(i) = embeddings.find(&want.name) else {
            missing.push(format!("{} ({})", want.name, want.hash));
            continue;
        };
        let hash = embeddings.short_hash(i)?;
        if !hash.eq_ignore_ascii_case(&want.hash) {
            notes.push(format!(
                "embedding {}: {} has hash {hash}, the image used {} (the image may differ)",
                want.name,
                embeddings.path(i).display(),
                want.hash
            ));
        }
    }
    if !missing.is_empty() {
        return Err(RuntimeError::Invalid(format!(
            "the image used embedding(s) that are not in the embedding folders: {}; put the \
             files in the embeddings folder of Sumi's home or pass their folder with --embeddings",
            missing.join(", ")
        )));
    }
    Ok(notes)
}

#[cfg(test)]
mod tests;
