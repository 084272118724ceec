//! Finding and memory-mapping a component's safetensors weights, with errors that name the file.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// The weight files of one component folder, e.g. `unet/`: plain, `fp16` variant or sharded.
pub fn find_weights(dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::model(
            dir,
            "folder is missing; is this a complete diffusers model folder?",
        ));
    }
    for name in [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ] {
        let path = dir.join(&name);
        if path.is_file() {
            return Ok(vec![path]);
        }
    }
    for name in [
        format!("{stem}.safetensors.index.json"),
        format!("{stem}.safetensors.index.fp16.json"),
    ] {
        let index = dir.join(&name);
        if index.is_file() {
            return sharded(&index, dir);
        }
    }
    let pickled = ["bin", "ckpt", "pt"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file());
    Err(match pickled {
        Some(p) => Error::model(
            p,
            "only pickle weights found; Sumi never loads pickles (they can run code). Convert the model to safetensors first",
        ),
        None => Error::model(dir, format!("no {stem}.safetensors (or .fp16.safetensors) found")),
    })
}

fn sharded(index: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::model(index, e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(index, format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model(index, "no weight_map in the index"))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for f in map.values().filter_map(|v| v.as_str()) {
        if f.contains('/') || f.contains('\\') || f.contains("..") {
            return Err(Error::model(
                index,
                format!("shard name {f:?} points outside the folder"),
            ));
        }
        let p = dir.join(f);
        if !files.contains(&p) {
            if !p.is_file() {
                return Err(Error::model(p, "shard listed in the index is missing"));
            }
            files.push(p);
        }
    }
    Ok(files)
}

/// Memory-maps `files` into a `VarBuilder` that yields tensors in `dtype` on `device`.
pub fn var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    for f in files {
        check_header(f)?;
    }
    // SAFETY: the files are opened read-only; Sumi never writes to model files while they are
    // mapped. Another program truncating them mid-run is outside what we can guard against.
    unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
        .map_err(|e| Error::model(&files[0], format!("not a valid safetensors file: {e}")))
}

/// Cheap sanity check of a safetensors header before mapping, for clear messages on junk files.
pub(crate) fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::model(path, e.to_string()))?;
    let size = f.metadata()?.len();
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return Err(Error::model(
            path,
            "file is too short to be safetensors (truncated or empty?)",
        ));
    }
    let header_len = u64::from_le_bytes(len);
    if header_len == 0 || header_len > 100 << 20 || header_len + 8 > size {
        return Err(Error::model(
            path,
            "not a safetensors file (bad header length); the file may be truncated or in another format",
        ));
    }
    let mut first = [0u8; 1];
    f.read_exact(&mut first)?;
    if first[0] != b'{' {
        return Err(Error::model(
            path,
            "not a safetensors file (header is not JSON)",
        ));
    }
    Ok(())
}

/// Reads and parses a component's JSON config, naming the file on failure.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::model(path, "missing; is this a complete diffusers model folder?")
        }
        _ => Error::model(path, e.to_string()),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::model(path, format!("invalid config: {e}")))
}
