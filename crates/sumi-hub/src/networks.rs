//! Finding the add-on files prompts name: textual-inversion embeddings and LoRAs, in Sumi's own
//! folders (`embeddings/` and `loras/` in its home), the folders in `SUMI_EMBEDDINGS_DIRS` /
//! `SUMI_LORA_DIRS`, and the A1111 (`embeddings/`, `models/Lora`, `models/LyCORIS`) and ComfyUI
//! (`models/embeddings`, `models/loras`) trees of the folders in `SUMI_MODEL_DIRS`; LoRAs also
//! in the Hugging Face cache, where they are published as hub repos.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sumi_engine::family::Family;
use sumi_engine::weights::lora::{is_lora_candidate, LoraFile};

/// The folder under Sumi's home where embeddings go.
pub const EMBEDDINGS_FOLDER: &str = "embeddings";
/// The folder under Sumi's home where LoRAs go.
pub const LORAS_FOLDER: &str = "loras";

/// Where A1111 and ComfyUI installs keep embeddings, relative to their root.
const EMBEDDING_TREES: [&str; 2] = ["embeddings", "models/embeddings"];
/// Where A1111 and ComfyUI installs keep LoRAs, relative to their root.
const LORA_TREES: [&str; 3] = ["models/Lora", "models/LyCORIS", "models/loras"];

fn env_dirs(var: &str) -> Vec<PathBuf> {
    std::env::var_os(var)
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default()
}

/// Folders that exist among `home`'s own, the environment's and the install trees'.
fn dirs(home: &Path, own: &str, var: &str, trees: &[&str]) -> Vec<PathBuf> {
    let mut out = vec![home.join(own)];
    out.extend(env_dirs(var));
    for root in crate::discover::env_model_dirs() {
        out.extend(trees.iter().map(|t| root.join(t)));
    }
    out.retain(|d| d.is_dir());
    out.dedup();
    out
}

/// The embedding folders Sumi searches by default (only those that exist), earlier first.
pub fn embedding_dirs(home: &Path) -> Vec<PathBuf> {
    dirs(
        home,
        EMBEDDINGS_FOLDER,
        "SUMI_EMBEDDINGS_DIRS",
        &EMBEDDING_TREES,
    )
}

/// The LoRA folders Sumi searches by default (only those that exist), earlier first: the
/// Hugging Face cache's snapshots last.
pub fn lora_dirs(home: &Path) -> Vec<PathBuf> {
    let mut out = dirs(home, LORAS_FOLDER, "SUMI_LORA_DIRS", &LORA_TREES);
    if let Some(cache) = crate::cache::cache_dir() {
        out.extend(hub_snapshots(&cache));
    }
    out
}

/// The current snapshot folder of every model repo in the hub cache `cache`, sorted.
pub fn hub_snapshots(cache: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let repo = name.strip_prefix("models--")?.replacen("--", "/", 1);
            crate::cache::snapshot_in(cache, &repo).ok()
        })
        .collect();
    out.sort();
    out
}

/// One LoRA file found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct FoundLora {
    /// The name a prompt's `<lora:NAME:...>` uses: the file stem.
    pub name: String,
    /// The name it was trained as (`ss_output_name`), which A1111 also accepts.
    pub alias: Option<String>,
    /// The file.
    pub path: PathBuf,
    /// Its format, e.g. "kohya LoRA + LoCon"; for a file Sumi cannot use, why.
    pub format: String,
    /// The model family it fits, when its shapes tell.
    pub family: Option<Family>,
    /// Its largest rank.
    pub rank: Option<usize>,
    /// Bytes on disk.
    pub size: u64,
    /// Why Sumi cannot use it (a pickle, a file that is no LoRA); `None` when it can.
    pub unusable: Option<String>,
}

const MAX_DEPTH: usize = 4;

/// Lists the LoRA files in `dirs` and their subfolders, sorted by name; earlier folders come
/// first for equal names. Files that are no LoRA (checkpoints, embeddings, VAEs) are left out;
/// pickles are listed as unusable. Only headers are read.
pub fn find_loras(dirs: &[PathBuf]) -> Vec<FoundLora> {
    let mut files = Vec::new();
    for dir in dirs {
        walk(dir, 0, &mut files);
    }
    // Hub repos hold many pickled weights that are no LoRA: only their safetensors are listed.
    files.retain(|p| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
            || !in_hub_snapshot(p)
    });
    let mut found: Vec<FoundLora> = files.iter().filter_map(|p| describe(p)).collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found.dedup_by(|a, b| a.path == b.path);
    found
}

/// Whether `path` lies in a snapshot of a Hugging Face cache repo (`models--*/snapshots/`).
fn in_hub_snapshot(path: &Path) -> bool {
    path.ancestors().any(|a| {
        a.file_name().is_some_and(|n| n == "snapshots")
            && a.parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("models--"))
    })
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() && depth < MAX_DEPTH => walk(&p, depth + 1, out),
            Ok(m) if m.is_file() && is_lora_candidate(&p) => out.push(p),
            _ => {}
        }
    }
}

/// What `path` holds, or `None` when it is a safetensors file that is no LoRA.
pub fn describe(path: &Path) -> Option<FoundLora> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let name = path.file_stem()?.to_string_lossy().into_owned();
    match LoraFile::open(path) {
        Ok(f) => Some(FoundLora {
            name,
            alias: f
                .output_name()
                .map(str::to_string)
                .filter(|a| *a != f.stem()),
            path: path.to_path_buf(),
            format: f.facts().format(),
            family: f.facts().fits,
            rank: f.facts().rank,
            size,
            unusable: None,
        }),
        Err(sumi_engine::weights::lora::LoraError::NotALora { .. }) => None,
        Err(e) => Some(FoundLora {
            name,
            alias: None,
            path: path.to_path_buf(),
            format: "-".into(),
            family: None,
            rank: None,
            size,
            unusable: Some(e.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    #[test]
    fn loras_published_as_hub_repos_are_found_in_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--someone--inkwash-lora");
        let snap = repo.join("snapshots/0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
        std::fs::copy(
            fixtures().join("lora/sd15_kohya.safetensors"),
            snap.join("inkwash.safetensors"),
        )
        .unwrap();
        std::fs::write(snap.join("pytorch_model.bin"), b"not a lora").unwrap();
        std::fs::create_dir_all(cache.path().join("datasets--x--y")).unwrap();
        let dirs = hub_snapshots(cache.path());
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        let found = find_loras(&dirs);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "inkwash");
        assert!(found[0].unusable.is_none());
    }

    #[test]
    fn finds_loras_and_leaves_other_weights_out() {
        let t = tempfile::tempdir().unwrap();
        let loras = t.path().join(LORAS_FOLDER);
        std::fs::create_dir_all(loras.join("styles")).unwrap();
        let lora = fixtures().join("lora");
        std::fs::copy(
            lora.join("sd15_kohya.safetensors"),
            loras.join("styles/ink.safetensors"),
        )
        .unwrap();
        std::fs::copy(
            lora.join("sdxl_peft.safetensors"),
            loras.join("xl.safetensors"),
        )
        .unwrap();
        std::fs::copy(lora.join("pickled_lora.pt"), loras.join("old.pt")).unwrap();
        // an embedding is no LoRA
        std::fs::copy(
            fixtures().join("prompt/embeddings/sumired.safetensors"),
            loras.join("red.safetensors"),
        )
        .unwrap();
        assert_eq!(lora_dirs(t.path()), vec![loras]);
        let found = find_loras(&lora_dirs(t.path()));
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["ink", "old", "xl"]);
        assert!(found[0].unusable.is_none(), "{:?}", found[0]);
        assert_eq!(found[0].format, "kohya LoRA");
        assert!(found[0].rank.is_some());
        assert!(found[1].unusable.as_deref().unwrap().contains("pickle"));
        assert!(found[2].unusable.is_none() && found[2].format.starts_with("PEFT"));
        assert!(embedding_dirs(t.path()).is_empty());
    }
}
