//! Textual-inversion embeddings: files of learned token vectors, named by their file stem, that
//! a prompt uses by writing the name (A1111) or `embedding:name` (ComfyUI).
//!
//! The formats A1111's loader (`textual_inversion.py`) accepts are read: a `torch.save` dict with
//! `string_to_param` holding one tensor (A1111's own files), a dict with `clip_l` and `clip_g`
//! (SDXL), and a dict of exactly one tensor (`emb_params` safetensors files, diffusers concepts;
//! a 1-D tensor is one vector). Pickled files go through the weights-only reader, which never
//! runs code. Files are indexed when the set is made and read on first use; A1111's hash (the
//! SHA-256 of the whole file) is computed when asked for.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use super::tokenizer::ClipTokenizer;
use crate::weights::pickle::{self, Key, Value};
use crate::weights::safetensors::SafetensorsFiles;
use crate::{Error, Result};

/// File extensions read as embeddings, as A1111 reads them (`.pt`, `.bin`, `.safetensors`).
pub const EXTENSIONS: [&str; 3] = ["pt", "bin", "safetensors"];
/// Most vectors one embedding may have: A1111 puts an embedding whole into one 75-token chunk.
pub const MAX_VECTORS: usize = 75;
/// How deep folders are searched (A1111 walks them all; this bounds link loops).
const MAX_DEPTH: usize = 16;

/// The vectors of one embedding file, as f32 on the CPU.
#[derive(Debug, Clone)]
pub enum Vectors {
    /// One `[n, D]` matrix for a model with one text encoder.
    Single(Tensor),
    /// SDXL: `[n, D_l]` for its CLIP-L encoder and `[n, D_g]` for its OpenCLIP-G encoder.
    Sdxl {
        /// Vectors for the first (CLIP ViT-L) encoder.
        clip_l: Tensor,
        /// Vectors for the second (OpenCLIP ViT-bigG) encoder.
        clip_g: Tensor,
    },
}

impl Vectors {
    /// How many token positions the embedding fills.
    pub fn count(&self) -> usize {
        match self {
            Vectors::Single(t) | Vectors::Sdxl { clip_g: t, .. } => t.dims()[0],
        }
    }

    /// Which models the vectors are made for, in words.
    fn fits(&self) -> String {
        let width = |t: &Tensor| t.dims().get(1).copied().unwrap_or(0);
        match self {
            Vectors::Single(t) => match width(t) {
                768 => "SD 1.x (768-wide vectors)".into(),
                1024 => "SD 2.x (1024-wide vectors)".into(),
                w => format!("a text encoder with {w}-wide vectors"),
            },
            Vectors::Sdxl { clip_l, clip_g } => format!(
                "SDXL (clip_l {}-wide and clip_g {}-wide vectors)",
                width(clip_l),
                width(clip_g)
            ),
        }
    }
}

/// One text encoder that vectors are asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The encoder's position in the model (SDXL: 0 = CLIP-L, 1 = OpenCLIP-G).
    pub index: usize,
    /// How many text encoders the model has.
    pub encoders: usize,
    /// The encoder's width.
    pub width: usize,
    /// ComfyUI's rules: an SDXL file also serves a one-encoder model with its `clip_l` part.
    pub comfy: bool,
}

struct Entry {
    name: String,
    path: PathBuf,
    vectors: OnceLock<std::result::Result<Arc<Vectors>, String>>,
    hash: OnceLock<std::result::Result<String, String>>,
}

/// A set of embedding files, looked up by name.
pub struct Embeddings {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    /// Names tokenized by each tokenizer (keyed by its folder) for A1111's matching.
    indexes: Mutex<HashMap<PathBuf, Arc<NameIndex>>>,
}

impl std::fmt::Debug for Embeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embeddings")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Default for Embeddings {
    fn default() -> Self {
        Self::empty()
    }
}

impl Embeddings {
    /// A set with no embeddings.
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
            by_name: HashMap::new(),
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// Indexes embedding files: each path is a file, or a folder searched with its subfolders
    /// (following links) for `.pt`, `.bin` and `.safetensors` files; empty files are skipped.
    /// A name found twice keeps the first file (earlier paths win) and the clash is logged.
    pub fn from_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        for path in paths {
            let path = path.as_ref();
            if path.is_dir() {
                walk(path, 0, &mut seen, &mut files);
            } else if path.is_file() {
                files.push(path.to_path_buf());
            } else {
                return Err(Error::Embedding {
                    name: stem(path),
                    path: path.to_path_buf(),
                    reason: "no such file or folder; pass an existing embeddings folder".into(),
                });
            }
        }
        let mut set = Self::empty();
        for path in files {
            let name = stem(&path);
            if let Some(&first) = set.by_name.get(&name) {
                let kept = &set.entries[first].path;
                tracing::warn!(%name, kept = %kept.display(), skipped = %path.display(), "two embeddings share a name; the first is used");
                continue;
            }
            set.by_name.insert(name.clone(), set.entries.len());
            set.entries.push(Entry {
                name,
                path,
                vectors: OnceLock::new(),
                hash: OnceLock::new(),
            });
        }
        Ok(set)
    }

    /// Number of embeddings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names, in index order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The index of the embedding called `name` (a file stem, case-sensitive).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The embedding a ComfyUI `embedding:` word names: its stem, with or without a known
    /// extension or folders in front.
    pub(crate) fn find_comfy(&self, name: &str) -> Option<usize> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let bare = |s: &str| {
            let lower = s.to_ascii_lowercase();
            EXTENSIONS
                .iter()
                .find(|e| lower.ends_with(&format!(".{e}")))
                .map(|e| s[..s.len() - e.len() - 1].to_string())
        };
        [name.to_string(), base.to_string()]
            .into_iter()
            .chain(bare(name))
            .chain(bare(base))
            .find_map(|n| self.find(&n))
    }

    /// The name of embedding `index`.
    pub fn name(&self, index: usize) -> &str {
        self.entries.get(index).map_or("", |e| e.name.as_str())
    }

    /// The file of embedding `index`.
    pub fn path(&self, index: usize) -> &Path {
        self.entries.get(index).map_or(Path::new(""), |e| &e.path)
    }

    /// The vectors of embedding `index`, read on first use.
    pub fn vectors(&self, index: usize) -> Result<Arc<Vectors>> {
        let entry = self.entry(index)?;
        let read = entry
            .vectors
            .get_or_init(|| read_vectors(&entry.path).map(Arc::new));
        read.clone().map_err(|reason| self.error(index, reason))
    }

    /// A1111's short hash of embedding `index`: the first 12 hex digits of the SHA-256 of the
    /// whole file (the `TI hashes` infotext value).
    pub fn short_hash(&self, index: usize) -> Result<String> {
        let entry = self.entry(index)?;
        let hash = entry.hash.get_or_init(|| sha256_file(&entry.path));
        match hash {
            Ok(h) => Ok(h[..12].to_string()),
            Err(reason) => Err(self.error(index, reason.clone())),
        }
    }

    /// The vectors of embedding `index` for one text encoder; an error names the family the
    /// embedding is made for when it does not fit.
    pub(crate) fn vectors_for(&self, index: usize, slot: Slot) -> Result<Tensor> {
        let vectors = self.vectors(index)?;
        let t = match (&*vectors, slot.encoders) {
            (Vectors::Sdxl { clip_l, clip_g }, 2) if slot.index == 0 => clip_l,
            (Vectors::Sdxl { clip_g, .. }, 2) => clip_g,
            (Vectors::Sdxl { clip_l, .. }, 1) if slot.comfy => clip_l,
            (Vectors::Single(t), 1) => t,
            _ => return Err(self.wrong_model(index, &vectors, slot)),
        };
        if t.dims()[1] != slot.width {
            return Err(self.wrong_model(index, &vectors, slot));
        }
        Ok(t.clone())
    }

    /// The names tokenized by `tok`, for A1111's matching (built once per tokenizer).
    pub(crate) fn name_index(&self, tok: &ClipTokenizer) -> Result<Arc<NameIndex>> {
        let mut cache = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = cache.get(tok.dir()) {
            return Ok(index.clone());
        }
        let mut first: HashMap<u32, Vec<(Vec<u32>, usize)>> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            let ids = tok.tokenize(&e.name)?;
            if let Some(&id) = ids.first() {
                first.entry(id).or_default().push((ids, i));
            }
        }
        // Longest names first; equal lengths keep file order (A1111 sorts stably).
        for list in first.values_mut() {
            list.sort_by_key(|(ids, _)| std::cmp::Reverse(ids.len()));
        }
        let index = Arc::new(NameIndex { first });
        cache.insert(tok.dir().to_path_buf(), index.clone());
        Ok(index)
    }

    fn entry(&self, index: usize) -> Result<&Entry> {
        self.entries.get(index).ok_or_else(|| {
            Error::InvalidRequest(format!("no embedding number {index} in this set"))
        })
    }

    fn error(&self, index: usize, reason: String) -> Error {
        Error::Embedding {
            name: self.name(index).to_string(),
            path: self.path(index).to_path_buf(),
            reason,
        }
    }

    fn wrong_model(&self, index: usize, vectors: &Vectors, slot: Slot) -> Error {
        let needs = match slot.encoders {
            2 => "this model has two text encoders and takes SDXL embeddings (clip_l and clip_g)"
                .to_string(),
            _ => format!(
                "this model's text encoder takes {}-wide vectors",
                slot.width
            ),
        };
        let reason = format!(
            "it is made for {}, but {needs}; use an embedding made for this model's family",
            vectors.fits()
        );
        self.error(index, reason)
    }
}

/// Embedding names as token ids, grouped by their first token (A1111's `ids_lookup`).
#[derive(Debug)]
pub(crate) struct NameIndex {
    first: HashMap<u32, Vec<(Vec<u32>, usize)>>,
}

impl NameIndex {
    /// The embedding whose name's tokens start at `tokens[pos]` (the longest such name) and how
    /// many tokens the name spans.
    pub(crate) fn find_at(&self, tokens: &[u32], pos: usize) -> Option<(usize, usize)> {
        let candidates = self.first.get(tokens.get(pos)?)?;
        candidates
            .iter()
            .find(|(ids, _)| tokens[pos..].starts_with(ids))
            .map(|(ids, index)| (*index, ids.len()))
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn has_embedding_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

/// Collects embedding files under `dir` in name order, following links once per folder.
fn walk(dir: &Path, depth: usize, seen: &mut HashSet<PathBuf>, out: &mut Vec<PathBuf>) {
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if depth > MAX_DEPTH || !seen.insert(key) {
        return;
    }
    let Ok(read) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "cannot read embeddings folder");
        return;
    };
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, depth + 1, seen, out);
        } else if has_embedding_extension(&path)
            && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
        {
            out.push(path);
        }
    }
}

fn sha256_file(path: &Path) -> std::result::Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read: {e}"))?;
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

/// Reads and checks an embedding file.
fn read_vectors(path: &Path) -> std::result::Result<Vectors, String> {
    let safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let vectors = if safetensors {
        from_safetensors(path)?
    } else {
        from_pickle(pickle::read(path).map_err(|e| e.to_string())?)?
    };
    let n = vectors.count();
    if n == 0 || n > MAX_VECTORS {
        return Err(format!(
            "it has {n} vectors; an embedding has 1 to {MAX_VECTORS} (one 75-token chunk)"
        ));
    }
    if let Vectors::Sdxl { clip_l, .. } = &vectors {
        if clip_l.dims()[0] != n {
            return Err(format!(
                "clip_l has {} vectors and clip_g {n}; they must be equally many",
                clip_l.dims()[0]
            ));
        }
    }
    Ok(vectors)
}

const NOT_AN_EMBEDDING: &str = "an embedding holds one tensor, `string_to_param` with one \
                                tensor, or `clip_l` and `clip_g`";

fn from_safetensors(path: &Path) -> std::result::Result<Vectors, String> {
    let files = SafetensorsFiles::open(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
    let mut names: Vec<&str> = files.shapes().map(|(n, _)| n).collect();
    names.sort_unstable();
    let load = |name: &str| {
        let t = files
            .load(name, DType::F32, &Device::Cpu)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        matrix(t, name)
    };
    match names[..] {
        [one] => Ok(Vectors::Single(load(one)?)),
        _ if names.contains(&"clip_l") && names.contains(&"clip_g") => Ok(Vectors::Sdxl {
            clip_l: load("clip_l")?,
            clip_g: load("clip_g")?,
        }),
        _ => Err(format!(
            "it holds {} tensors ({}); {NOT_AN_EMBEDDING}",
            names.len(),
            names.join(", ")
        )),
    }
}

fn from_pickle(value: Value) -> std::result::Result<Vectors, String> {
    let Value::Dict(items) = value else {
        return Err(format!("it holds no dictionary; {NOT_AN_EMBEDDING}"));
    };
    let get = |items: &[(Key, Value)], key: &str| {
        items.iter().find_map(|(k, v)| match k {
            Key::Str(s) if s == key => Some(v.clone()),
            _ => None,
        })
    };
    if let Some(params) = get(&items, "string_to_param") {
        // torch 1.11 saved an nn.ParameterDict; its tensors sit under `_parameters`.
        let params = match &params {
            Value::Dict(d) => get(d, "_parameters").unwrap_or(params),
            _ => params,
        };
        return match params {
            Value::Dict(d) => match &d[..] {
                [(_, Value::Tensor(t))] => Ok(Vectors::Single(matrix(candle(t)?, "*")?)),
                _ => Err(
                    "`string_to_param` must hold exactly one tensor (A1111 refuses \
                          files with several terms)"
                        .into(),
                ),
            },
            _ => Err("`string_to_param` is not a dictionary of tensors".into()),
        };
    }
    let tensor = |key: &str| match get(&items, key) {
        Some(Value::Tensor(t)) => Some(candle(&t).and_then(|t| matrix(t, key))),
        _ => None,
    };
    if let (Some(clip_l), Some(clip_g)) = (tensor("clip_l"), tensor("clip_g")) {
        return Ok(Vectors::Sdxl {
            clip_l: clip_l?,
            clip_g: clip_g?,
        });
    }
    match &items[..] {
        [(_, Value::Tensor(t))] => Ok(Vectors::Single(matrix(candle(t)?, "the tensor")?)),
        _ => Err(format!(
            "it holds {} entries; {NOT_AN_EMBEDDING}",
            items.len()
        )),
    }
}

/// A `[n, D]` matrix; a 1-D tensor is one vector.
fn matrix(t: Tensor, name: &str) -> std::result::Result<Tensor, String> {
    let bad = |e: candle_core::Error| format!("{name}: {e}");
    match t.rank() {
        1 => t.unsqueeze(0).map_err(bad),
        2 => Ok(t),
        r => Err(format!(
            "{name} has {r} dimensions; embedding vectors are a [vectors, width] matrix"
        )),
    }
}

/// A pickled tensor as an f32 candle tensor.
fn candle(t: &pickle::Tensor) -> std::result::Result<Tensor, String> {
    let b = &t.data;
    let values: Vec<f32> = match t.dtype {
        pickle::DType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        pickle::DType::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        pickle::DType::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        pickle::DType::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(format!(
                "its vectors are {}, not floating point",
                other.name()
            ))
        }
    };
    Tensor::from_vec(values, t.shape.as_slice(), &Device::Cpu).map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "embeddings/tests.rs"]
mod tests;
