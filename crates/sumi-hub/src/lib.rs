//! Finding models on this computer and fetching them: model discovery (plain folders,
//! AUTOMATIC1111 and ComfyUI trees, `SUMI_MODEL_DIRS`, the Hugging Face cache), the built-in demo
//! model, A1111's model hashes and their cache, tokenizers for single files, and downloads from
//! the Hugging Face hub. The engine below it reads files it is given and never touches the network.

pub mod cache;
pub mod demo;
pub mod discover;
pub mod download;
mod error;
pub mod hashes;
pub mod networks;
pub mod tokenizers;

use std::path::{Path, PathBuf};

pub use demo::{builtin_demo_model, DEMO_MODEL_ENV};
pub use error::{HubError, Result};

/// Resolves what the user typed for `--model`: a file or folder, or a repo id in the local
/// Hugging Face cache.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if cache::looks_like_repo_id(spec) {
        return cache::cached_snapshot(spec);
    }
    Err(HubError::file(
        path,
        "no such file or folder (pass a diffusers model folder, a .safetensors checkpoint, or a Hugging Face repo id that is in the local cache)",
    ))
}

/// The name the gallery records for the model at `path`: the repo id of a Hugging Face cache
/// snapshot, else the engine's name for it (a file's stem, a folder's name).
pub fn model_name(path: &Path) -> String {
    cache::repo_of_snapshot(path).unwrap_or_else(|| sumi_engine::model::model_name(path))
}
