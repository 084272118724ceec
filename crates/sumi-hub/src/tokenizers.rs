//! Tokenizers for single-file checkpoints, which carry none: where the Hugging Face cache keeps
//! them, which repo to download them from, and which ones are missing on this computer.

use std::path::{Path, PathBuf};

use sumi_engine::family::Family;
use sumi_engine::model::{find_tokenizer, is_tokenizer_dir, LoadOptions};
use sumi_engine::weights::ldm::Checkpoint;

use crate::Result;

/// Hugging Face repos (and subfolders) that hold the tokenizer of text encoder `index` of `family`.
fn repos(family: Family, index: usize) -> &'static [(&'static str, &'static str)] {
    match (family, index) {
        (Family::Sd2, _) => &[
            ("stabilityai/stable-diffusion-2-1", "tokenizer"),
            ("stabilityai/stable-diffusion-2-1-base", "tokenizer"),
        ],
        // SDXL's own tokenizer_2 pads with "!"; laion's pads with the end token.
        (Family::Sdxl, 1) => &[
            ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2"),
            ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
        ],
        _ => &[
            ("openai/clip-vit-large-patch14", ""),
            ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"),
            ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer"),
        ],
    }
}

/// The Hugging Face repo and folder ("" for its root) that Sumi downloads the tokenizer of text
/// encoder `index` of `family` from.
pub fn download_source(family: Family, index: usize) -> (&'static str, &'static str) {
    repos(family, index)[0]
}

/// The tokenizer folder of text encoder `index` of `family` in the local Hugging Face cache.
pub fn cached(family: Family, index: usize) -> Option<PathBuf> {
    repos(family, index).iter().find_map(|(repo, folder)| {
        let snap = crate::cache::cached_snapshot(repo).ok()?;
        let dir = if folder.is_empty() {
            snap
        } else {
            snap.join(folder)
        };
        is_tokenizer_dir(&dir).then_some(dir)
    })
}

/// `options` with the tokenizers the Hugging Face cache holds for the single-file checkpoint
/// at `path` added as the last place to look (folders need none).
pub fn with_cached(path: &Path, mut options: LoadOptions) -> LoadOptions {
    if !path.is_file() {
        return options;
    }
    let Ok(family) = Checkpoint::open(path).and_then(|c| c.family()) else {
        return options;
    };
    options.found_tokenizers = (0..family.text_encoders())
        .map(|i| cached(family, i))
        .collect();
    options
}

/// The text encoders (family, index) of a single-file checkpoint whose tokenizer is not on this
/// computer; empty for folders and for checkpoints whose tokenizers are all found.
pub fn missing(checkpoint: &Path, options: &LoadOptions) -> Result<Vec<(Family, usize)>> {
    if !checkpoint.is_file() {
        return Ok(Vec::new());
    }
    let family = Checkpoint::open(checkpoint)?.family()?;
    let options = with_cached(checkpoint, options.clone());
    Ok((0..family.text_encoders())
        .filter(|&i| find_tokenizer(family, i, checkpoint, &options).is_err())
        .map(|i| (family, i))
        .collect())
}

/// What to do about a tokenizer that is on none of the places searched: where Sumi downloads
/// it from, and how to bring it to a computer without network.
pub fn download_hint(family: Family, index: usize) -> String {
    let (repo, folder) = download_source(family, index);
    format!(
        "`sumi generate` downloads it (a few MB, once) from {repo}{} when online; or run \
         `sumi models pull {repo} --tokenizers-only` on a connected computer and copy its Hugging \
         Face cache folder models--{} here",
        if folder.is_empty() {
            String::new()
        } else {
            format!(" ({folder}/)")
        },
        repo.replace('/', "--"),
    )
}
