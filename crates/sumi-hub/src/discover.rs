//! Finding the models a user already has: plain folders, AUTOMATIC1111 (`models/Stable-diffusion`)
//! and ComfyUI (`models/checkpoints`) trees, and the Hugging Face hub cache.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sumi_engine::family::Family;
use sumi_engine::weights::ldm::{is_pickle_extension, Checkpoint};

/// How a model is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A diffusers folder (`model_index.json`, `unet/`, `vae/`, ...).
    Diffusers,
    /// One `.safetensors` checkpoint in the original layout.
    SingleFile,
    /// A pickle checkpoint (`.ckpt`, `.pt`, `.bin`): listed, never opened.
    Pickle,
    /// A GGUF file of quantized weights (a Flux transformer).
    Gguf,
}

/// One model found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct FoundModel {
    /// Display name: the repo id for hub-cache models, else the file or folder name.
    pub name: String,
    /// The file or folder to pass to `--model`.
    pub path: PathBuf,
    /// Where it was found: `folder`, `a1111`, `comfyui` or `hf-cache`.
    pub source: &'static str,
    /// Storage format.
    pub format: Format,
    /// Architecture family, when it could be read (never for pickles).
    pub family: Option<Family>,
    /// Bytes on disk (all files for a folder).
    pub size: u64,
    /// A1111's short hash of a single file; `None` for folders and when not computed.
    pub hash: Option<String>,
}

/// The Hugging Face hub cache folder Sumi looks in (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`).
pub fn hub_cache() -> Option<PathBuf> {
    crate::cache::cache_dir()
}

/// Model folders from `SUMI_MODEL_DIRS` (separated like `PATH`).
pub fn env_model_dirs() -> Vec<PathBuf> {
    std::env::var_os("SUMI_MODEL_DIRS")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default()
}

/// Lists the models in `dirs` (each a plain folder, or an A1111/ComfyUI install root) and in
/// the hub cache `hub`, sorted by name. Unreadable entries are skipped; nothing is hashed here.
pub fn discover(dirs: &[PathBuf], hub: Option<&Path>) -> Vec<FoundModel> {
    let mut found = Vec::new();
    for dir in dirs {
        let a1111 = dir.join("models/Stable-diffusion");
        let comfy = dir.join("models/checkpoints");
        let mut tree = false;
        // ComfyUI keeps transformer-only models (Flux) apart from whole checkpoints.
        for sub in ["models/diffusion_models", "models/unet"] {
            if dir.join(sub).is_dir() {
                scan(&dir.join(sub), "comfyui", 0, &mut found);
                tree = true;
            }
        }
        if a1111.is_dir() {
            scan(&a1111, "a1111", 0, &mut found);
            tree = true;
        }
        if comfy.is_dir() {
            scan(&comfy, "comfyui", 0, &mut found);
            tree = true;
        }
        if !tree {
            scan(dir, "folder", 0, &mut found);
        }
    }
    if let Some(hub) = hub {
        scan_hub(hub, &mut found);
    }
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
    found.dedup_by(|a, b| a.path == b.path);
    found
}

const MAX_DEPTH: usize = 4;

fn scan(dir: &Path, source: &'static str, depth: usize, out: &mut Vec<FoundModel>) {
    if dir.join("model_index.json").is_file() {
        out.push(diffusers_entry(dir, name_of(dir), source));
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if depth < MAX_DEPTH {
                scan(&path, source, depth + 1, out);
            }
        } else if let Some(m) = file_entry(&path, source) {
            out.push(m);
        }
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_entry(path: &Path, source: &'static str) -> Option<FoundModel> {
    // FIFOs, sockets and devices are never opened (reading one could wait forever).
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let size = meta.len();
    let name = path.file_stem()?.to_string_lossy().into_owned();
    if is_pickle_extension(path) {
        // .bin/.pt files are also embeddings and other things: only list the usual checkpoint names.
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        if ext != "ckpt" {
            return None;
        }
        return Some(FoundModel {
            name,
            path: path.to_path_buf(),
            source,
            format: Format::Pickle,
            family: None,
            size,
            hash: None,
        });
    }
    if sumi_engine::model::is_flux_file(path) {
        return Some(FoundModel {
            name,
            path: path.to_path_buf(),
            source,
            format: match path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            {
                true => Format::Gguf,
                false => Format::SingleFile,
            },
            family: Some(Family::Flux),
            size,
            hash: None,
        });
    }
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        return None;
    }
    // LoRAs, VAEs and embeddings are safetensors too: only whole checkpoints are models.
    let family = Checkpoint::open(path).ok()?.family().ok()?;
    Some(FoundModel {
        name,
        path: path.to_path_buf(),
        source,
        format: Format::SingleFile,
        family: Some(family),
        size,
        hash: None,
    })
}

fn diffusers_entry(dir: &Path, name: String, source: &'static str) -> FoundModel {
    FoundModel {
        name,
        path: dir.to_path_buf(),
        source,
        format: Format::Diffusers,
        family: sumi_engine::model::folder_family(dir),
        size: folder_size(dir, 0),
        hash: None,
    }
}

fn folder_size(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            // metadata() follows the hub cache's symlinks to the blobs.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() && depth < MAX_DEPTH => folder_size(&p, depth + 1),
                Ok(m) if m.is_file() => m.len(),
                _ => 0,
            }
        })
        .sum()
}

fn scan_hub(hub: &Path, out: &mut Vec<FoundModel>) {
    let Ok(entries) = std::fs::read_dir(hub) else {
        return;
    };
    let mut repos: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    repos.sort();
    for repo_dir in repos {
        let Some(repo) = repo_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("models--"))
            .map(|r| r.replacen("--", "/", 1))
        else {
            continue;
        };
        let Some(snap) = newest_snapshot(&repo_dir) else {
            continue;
        };
        if snap.join("model_index.json").is_file() {
            out.push(diffusers_entry(&snap, repo, "hf-cache"));
        }
    }
}

fn newest_snapshot(repo_dir: &Path) -> Option<PathBuf> {
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs/main")) {
        let s = repo_dir.join("snapshots").join(rev.trim());
        if s.is_dir() {
            return Some(s);
        }
    }
    std::fs::read_dir(repo_dir.join("snapshots"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    #[test]
    fn flux_transformer_files_in_comfyui_trees_are_flux_models() {
        let root = tempfile::tempdir().unwrap();
        let dm = root.path().join("ComfyUI/models/diffusion_models");
        let te = root.path().join("ComfyUI/models/text_encoders");
        std::fs::create_dir_all(&dm).unwrap();
        std::fs::create_dir_all(&te).unwrap();
        let flux = fixtures().join("flux");
        std::fs::copy(
            flux.join("comfy/models/diffusion_models/flux1-dev-tiny.safetensors"),
            dm.join("flux1-dev.safetensors"),
        )
        .unwrap();
        std::fs::copy(
            flux.join("files/flux1-dev-tiny-Q8_0.gguf"),
            dm.join("flux1-dev-Q8_0.gguf"),
        )
        .unwrap();
        // Text encoders are not models, even in GGUF.
        std::fs::copy(
            flux.join("files/t5-tiny-Q8_0.gguf"),
            dm.join("t5-Q8_0.gguf"),
        )
        .unwrap();
        std::fs::copy(
            flux.join("comfy/models/text_encoders/clip_l.safetensors"),
            te.join("clip_l.safetensors"),
        )
        .unwrap();
        let found = discover(&[root.path().join("ComfyUI")], None);
        let summary: Vec<(String, Format, Option<Family>)> = found
            .iter()
            .map(|m| (m.name.clone(), m.format, m.family))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("flux1-dev".into(), Format::SingleFile, Some(Family::Flux)),
                ("flux1-dev-Q8_0".into(), Format::Gguf, Some(Family::Flux)),
            ]
        );
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let dest = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &dest);
            } else {
                std::fs::copy(&p, &dest).unwrap();
            }
        }
    }

    #[test]
    fn finds_models_in_a1111_comfyui_folders_and_the_hub_cache() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // A1111 tree with a checkpoint in a subfolder, a LoRA-like file and a pickle
        let a1111 = root.join("webui/models/Stable-diffusion");
        std::fs::create_dir_all(a1111.join("xl")).unwrap();
        std::fs::copy(
            fixtures().join("single/sd15.safetensors"),
            a1111.join("mine.safetensors"),
        )
        .unwrap();
        std::fs::copy(
            fixtures().join("single/sdxl.safetensors"),
            a1111.join("xl/big.safetensors"),
        )
        .unwrap();
        std::fs::write(a1111.join("old.ckpt"), b"\x80\x02}q\x00.").unwrap();
        std::fs::write(a1111.join("notes.txt"), b"hello").unwrap();
        std::fs::write(a1111.join("junk.safetensors"), b"nope").unwrap();
        // ComfyUI tree
        let comfy = root.join("ComfyUI/models/checkpoints");
        std::fs::create_dir_all(&comfy).unwrap();
        std::fs::copy(
            fixtures().join("single/sd2v.safetensors"),
            comfy.join("v.safetensors"),
        )
        .unwrap();
        // a plain folder with a diffusers model
        copy_dir(&fixtures().join("sd15"), &root.join("plain/tiny15"));
        // a fake hub cache: one diffusers repo, one non-model repo
        let hub = root.join("hub");
        let snap = hub.join("models--org--tiny-xl/snapshots/abc123");
        copy_dir(&fixtures().join("sdxl"), &snap);
        std::fs::create_dir_all(hub.join("models--org--tiny-xl/refs")).unwrap();
        std::fs::write(hub.join("models--org--tiny-xl/refs/main"), "abc123").unwrap();
        std::fs::create_dir_all(hub.join("models--org--bert/snapshots/1")).unwrap();
        std::fs::write(hub.join("models--org--bert/snapshots/1/config.json"), "{}").unwrap();

        let dirs = [root.join("webui"), root.join("ComfyUI"), root.join("plain")];
        let found = discover(&dirs, Some(&hub));
        let summary: Vec<(String, &str, Format, Option<Family>)> = found
            .iter()
            .map(|m| (m.name.clone(), m.source, m.format, m.family))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "big".into(),
                    "a1111",
                    Format::SingleFile,
                    Some(Family::Sdxl)
                ),
                (
                    "mine".into(),
                    "a1111",
                    Format::SingleFile,
                    Some(Family::Sd1)
                ),
                ("old".into(), "a1111", Format::Pickle, None),
                (
                    "org/tiny-xl".into(),
                    "hf-cache",
                    Format::Diffusers,
                    Some(Family::Sdxl)
                ),
                (
                    "tiny15".into(),
                    "folder",
                    Format::Diffusers,
                    Some(Family::Sd1)
                ),
                ("v".into(), "comfyui", Format::SingleFile, Some(Family::Sd2)),
            ]
        );
        let mine = found.iter().find(|m| m.name == "mine").unwrap();
        assert_eq!(mine.size, std::fs::metadata(&mine.path).unwrap().len());
        let xl = found.iter().find(|m| m.name == "org/tiny-xl").unwrap();
        assert!(
            xl.size > 1_000_000,
            "folder size sums its files: {}",
            xl.size
        );
    }
}
