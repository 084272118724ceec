//! A1111's short model hash (the first 10 hex digits of a file's SHA-256), computed once per
//! file version and kept in a small JSON cache in Sumi's data folder.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{HubError, Result};

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        sumi_engine::fileio::open_regular(path).map_err(|e| HubError::file(path, e.to_string()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| HubError::file(path, e.to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct HashEntry {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

/// A small JSON file of file hashes keyed by path, valid while size and mtime are unchanged.
#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    entries: BTreeMap<String, HashEntry>,
    dirty: bool,
}

fn stamp(path: &Path) -> Result<(u64, u128)> {
    let m = std::fs::metadata(path).map_err(|e| HubError::file(path, e.to_string()))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((m.len(), mtime))
}

impl HashCache {
    /// Opens the cache file at `path` (a missing or unreadable file starts an empty cache).
    pub fn open(path: &Path) -> Self {
        let entries = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Self {
            path: path.to_path_buf(),
            entries,
            dirty: false,
        }
    }

    /// The full SHA-256 of `file`, from the cache when its size and mtime match, else computed.
    pub fn sha256(&mut self, file: &Path) -> Result<String> {
        let key = file
            .canonicalize()
            .unwrap_or_else(|_| file.to_path_buf())
            .to_string_lossy()
            .into_owned();
        let (size, mtime_ns) = stamp(file)?;
        if let Some(e) = self.entries.get(&key) {
            if e.size == size && e.mtime_ns == mtime_ns {
                return Ok(e.sha256.clone());
            }
        }
        let sha256 = sha256_file(file)?;
        self.entries.insert(
            key,
            HashEntry {
                size,
                mtime_ns,
                sha256: sha256.clone(),
            },
        );
        self.dirty = true;
        Ok(sha256)
    }

    /// A1111's short hash of `file`: the first 10 hex digits of its SHA-256.
    pub fn short_hash(&mut self, file: &Path) -> Result<String> {
        Ok(self.sha256(file)?[..10].to_string())
    }

    /// Writes the cache back if anything changed (temp file + rename).
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Another Sumi process may save at the same time: each writes its own temp file.
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(&self.entries)
            .map_err(|e| HubError::file(&self.path, e.to_string()))?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}

/// The hash cache kept in Sumi's data folder `home`, shared by the CLI and the app.
pub fn hash_cache_file(home: &Path) -> PathBuf {
    home.join("model-hashes.json")
}

/// A1111's short hash of the model loaded from `path` when it is one file (a diffusers folder
/// has no single file to hash), computed once per file version and cached in `home`.
pub fn model_hash(path: &Path, home: &Path) -> Result<Option<String>> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut cache = HashCache::open(&hash_cache_file(home));
    let hash = cache.short_hash(path)?;
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the model hash cache: {e}");
    }
    Ok(Some(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_sha256_prefix_and_cached() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a.safetensors");
        std::fs::write(&f, b"abc").unwrap();
        let cache_path = t.path().join("home/model-hashes.json");
        let mut cache = HashCache::open(&cache_path);
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(cache.short_hash(&f).unwrap(), "ba7816bf8f");
        cache.save().unwrap();
        let text = std::fs::read_to_string(&cache_path).unwrap();
        assert!(text.contains("ba7816bf8f01cfea"), "{text}");
        // a stale entry for the same size+mtime is trusted (that is the point of the cache) ...
        let forged = text.replace("ba7816bf8f01cfea", "0000000000000000");
        std::fs::write(&cache_path, forged).unwrap();
        let mut cache = HashCache::open(&cache_path);
        assert_eq!(cache.short_hash(&f).unwrap(), "0000000000");
        // ... but a changed file (size differs) is hashed again
        std::fs::write(&f, b"abcd").unwrap();
        assert_eq!(
            cache.short_hash(&f).unwrap(),
            &sha256_file(&f).unwrap()[..10]
        );
        assert_eq!(&sha256_file(&f).unwrap()[..10], "88d4266fd4");
    }

    #[test]
    fn a_single_file_model_has_a_cached_hash_and_a_folder_none() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        let f = t.path().join("m.safetensors");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            model_hash(&f, &home).unwrap().as_deref(),
            Some("ba7816bf8f")
        );
        let cached = std::fs::read_to_string(hash_cache_file(&home)).unwrap();
        assert!(cached.contains("ba7816bf8f01cfea"), "{cached}");
        assert_eq!(model_hash(t.path(), &home).unwrap(), None);
    }
}
