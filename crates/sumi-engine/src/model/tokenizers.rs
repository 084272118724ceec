//! Finding the tokenizers of a single-file checkpoint, which carries none.

use std::path::{Path, PathBuf};

use super::options::LoadOptions;
use crate::family::Family;
use crate::{Error, Result};

/// Whether `dir` holds a CLIP tokenizer (`tokenizer.json`, or `vocab.json` + `merges.txt`).
pub fn is_tokenizer_dir(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file()
        || (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file())
}

/// Finds the tokenizer folder for text encoder `index` of a single-file checkpoint: `tokenizer/`
/// (or `tokenizer_2/`) in the config folder, the given folders, `SUMI_TOKENIZERS` or next to
/// the checkpoint, else the folder the caller found elsewhere (`options.found_tokenizers`).
pub fn find_tokenizer(
    family: Family,
    index: usize,
    checkpoint: &Path,
    options: &LoadOptions,
) -> Result<PathBuf> {
    let sub = if index == 0 {
        "tokenizer"
    } else {
        "tokenizer_2"
    };
    let mut roots: Vec<PathBuf> = options.config_dir.iter().cloned().collect();
    roots.extend(options.tokenizer_dirs.iter().cloned());
    if let Some(env) = std::env::var_os("SUMI_TOKENIZERS") {
        roots.extend(std::env::split_paths(&env));
    }
    if let Some(parent) = checkpoint.parent() {
        roots.push(parent.to_path_buf());
    }
    let found = roots
        .iter()
        .map(|r| r.join(sub))
        .chain(options.found_tokenizers.get(index).cloned().flatten())
        .find(|d| is_tokenizer_dir(d));
    found.ok_or_else(|| Error::MissingTokenizer {
        checkpoint: checkpoint.to_path_buf(),
        family,
        index,
        example: match roots.first() {
            Some(r) => r.join(sub),
            None => Path::new("<folder>").join(sub),
        },
    })
}
