//! Models already in the local Hugging Face hub cache (`models--org--name/snapshots/<rev>`).

use std::path::{Path, PathBuf};

use crate::{HubError, Result};

/// The hub cache folder: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// Whether `spec` has the shape of a repo id (`org/name`, no other slashes).
pub fn looks_like_repo_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s != ".."
                && s != "."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// The snapshot folder of `repo` in the cache, following `refs/main`.
pub fn cached_snapshot(repo: &str) -> Result<PathBuf> {
    let cache = cache_dir()
        .ok_or_else(|| HubError::file(repo, "no Hugging Face cache folder (set HF_HOME)"))?;
    snapshot_in(&cache, repo)
}

/// The snapshot folder of `repo` in the hub cache at `cache`, following `refs/main`.
pub fn snapshot_in(cache: &Path, repo: &str) -> Result<PathBuf> {
    let base = cache.join(format!("models--{}", repo.replace('/', "--")));
    if !base.is_dir() {
        return Err(HubError::file(
            &base,
            format!("repo {repo} is not in the local Hugging Face cache; download it with `sumi models pull {repo}` or pass a folder"),
        ));
    }
    let snapshots = base.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(base.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    // No refs/main: take the most recently modified snapshot.
    let newest = std::fs::read_dir(&snapshots)
        .map_err(|e| HubError::file(&snapshots, e.to_string()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    newest
        .map(|e| e.path())
        .ok_or_else(|| HubError::file(&snapshots, "no snapshot of this repo in the cache"))
}

/// `org/name` for a path inside `models--org--name/snapshots/<rev>`, if it is one.
pub fn repo_of_snapshot(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let parent = dir.parent()?;
    if parent.file_name()? != "snapshots" {
        return None;
    }
    let repo = parent
        .parent()?
        .file_name()?
        .to_str()?
        .strip_prefix("models--")?;
    Some(repo.replacen("--", "/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_recognised() {
        assert!(looks_like_repo_id("stabilityai/sdxl-turbo"));
        assert!(looks_like_repo_id(
            "stable-diffusion-v1-5/stable-diffusion-v1-5"
        ));
        assert!(!looks_like_repo_id("../etc"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("plainname"));
        assert!(!looks_like_repo_id("../x"));
    }

    #[test]
    fn snapshots_resolve_through_refs_main() {
        let cache = tempfile::tempdir().unwrap();
        let base = cache.path().join("models--org--model");
        std::fs::create_dir_all(base.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(base.join("snapshots/old999")).unwrap();
        std::fs::create_dir_all(base.join("refs")).unwrap();
        std::fs::write(base.join("refs/main"), "abc123\n").unwrap();
        let snap = snapshot_in(cache.path(), "org/model").unwrap();
        assert!(snap.ends_with("snapshots/abc123"));
        assert_eq!(repo_of_snapshot(&snap).as_deref(), Some("org/model"));
        let err = snapshot_in(cache.path(), "org/other")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the local Hugging Face cache"), "{err}");
    }
}
