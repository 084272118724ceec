//! The parts users keep apart from a model file (a VAE, Flux's T5 and CLIP-L text encoders):
//! where they sit (beside the file, and in the part folders ComfyUI, A1111 and Forge keep next
//! to their model folders), how Sumi picks one when none is named, and what kind of part a file
//! is.

use std::path::{Path, PathBuf};

use crate::weights::single_file::Store;

/// A part kept in its own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// A VAE (LDM or diffusers names).
    Vae,
    /// A CLIP text encoder (Flux's CLIP-L).
    ClipL,
    /// A T5 encoder (Flux's T5-XXL).
    T5,
}

impl PartKind {
    /// The part as messages name it.
    pub fn what(self) -> &'static str {
        match self {
            Self::Vae => "VAE",
            Self::ClipL => "CLIP-L text encoder",
            Self::T5 => "T5 text encoder",
        }
    }

    /// The option that names the part.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Vae => "--vae",
            Self::ClipL => "--clip-l",
            Self::T5 => "--t5",
        }
    }

    /// The folders beside a model folder that hold this kind: ComfyUI's `models/vae`,
    /// `models/text_encoders` and `models/clip`, A1111's and Forge's `models/VAE`, Forge's
    /// `models/text_encoder`.
    fn folders(self) -> &'static [&'static str] {
        match self {
            Self::Vae => &["vae", "VAE"],
            Self::ClipL | Self::T5 => &["text_encoders", "clip", "text_encoder"],
        }
    }

    /// The file Sumi takes for this part of a Flux transformer file when none is named.
    fn flux_default(self, name: &str) -> bool {
        match self {
            Self::T5 => name.starts_with("t5") && is_weights_name(name),
            Self::ClipL => name.starts_with("clip_l") && name.ends_with(".safetensors"),
            Self::Vae => {
                name == "ae.safetensors"
                    || (name.ends_with(".safetensors")
                        && name.contains("flux")
                        && name.contains("vae"))
            }
        }
    }
}

/// Whether a lower-case file name is a weights file Sumi reads without executing it.
pub fn is_weights_name(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".gguf")
}

/// The folders a `kind` part of the model `file` may sit in: beside it, then the part folders
/// beside its folder and beside that folder's parent (a model kept one folder deeper, as in
/// `models/Stable-diffusion/flux/`).
pub fn search_dirs(file: &Path, kind: PartKind) -> Vec<PathBuf> {
    let Some(dir) = file.parent() else {
        return Vec::new();
    };
    let mut out = vec![dir.to_path_buf()];
    for models in dir.ancestors().skip(1).take(2) {
        for name in kind.folders() {
            let d = models.join(name);
            // On a case-insensitive disk `vae` and `VAE` are one folder.
            if d.is_dir() && !out.iter().any(|o| same_dir(o, &d)) {
                out.push(d);
            }
        }
    }
    out
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The first file (by name) directly in one of `dirs` whose lower-case name `fits`.
pub fn find_file(dirs: &[PathBuf], fits: &dyn Fn(&str) -> bool) -> Option<PathBuf> {
    dirs.iter().find_map(|d| {
        let mut names: Vec<PathBuf> = std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| fits(&n.to_string_lossy().to_ascii_lowercase()))
            })
            .collect();
        names.sort();
        names.into_iter().next()
    })
}

/// The `kind` part Sumi takes for the Flux transformer `file` when none is named.
pub fn flux_default(file: &Path, kind: PartKind) -> Option<PathBuf> {
    find_file(&search_dirs(file, kind), &|n| kind.flux_default(n))
}

/// A part of the model `file` named as A1111 and Forge name them in their infotext: its file
/// name (A1111's `VAE`) or the name without its extension (Forge's `Module 1`, ...), looked
/// for in the folders a `kind` part may sit in and their subfolders (A1111 and Forge list those
/// too). Only weights files Sumi can read are taken.
pub fn find_named(file: &Path, name: &str, kind: PartKind) -> Option<PathBuf> {
    let fits = |p: &Path| {
        let file_name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let stem = p.file_stem().map(|n| n.to_string_lossy().into_owned());
        let readable = file_name
            .as_deref()
            .is_some_and(|n| is_weights_name(&n.to_ascii_lowercase()));
        readable && (file_name.as_deref() == Some(name) || stem.as_deref() == Some(name))
    };
    search_dirs(file, kind)
        .iter()
        .find_map(|d| find_below(d, &fits, 2))
}

/// The first file (by path) in `dir` or up to `depth` folders below it that `fits`.
fn find_below(dir: &Path, fits: &dyn Fn(&Path) -> bool, depth: usize) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    if let Some(found) = entries.iter().find(|p| p.is_file() && fits(p)) {
        return Some(found.clone());
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|d| find_below(d, fits, depth - 1))
}

/// What kind of part the weights file at `path` holds, told by its tensor names; `None` for a
/// file that is none of them or cannot be read.
pub fn part_kind(path: &Path) -> Option<PartKind> {
    let store = Store::open(path).ok()?;
    let has = |k: &str| store.shape(k).is_some();
    let any = |prefixes: &[&str], key: &str| prefixes.iter().any(|p| has(&format!("{p}{key}")));
    if any(
        &["", "vae.", "first_stage_model."],
        "decoder.conv_in.weight",
    ) {
        Some(PartKind::Vae)
    } else if has("enc.blk.0.attn_q.weight")
        || any(
            &["", "text_encoders.t5xxl.transformer."],
            "encoder.block.0.layer.0.SelfAttention.q.weight",
        )
    {
        Some(PartKind::T5)
    } else if ["", "text_model."].iter().any(|root| {
        any(
            &[
                "",
                "text_encoders.clip_l.transformer.",
                "cond_stage_model.transformer.",
            ],
            &format!("{root}embeddings.token_embedding.weight"),
        )
    }) {
        Some(PartKind::ClipL)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn parts_are_found_in_comfyui_a1111_and_forge_folders() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let model = models.join("Stable-diffusion/flux/flux1-dev-Q8_0.gguf");
        touch(&model);
        touch(&models.join("VAE/ae.safetensors"));
        touch(&models.join("text_encoder/t5xxl_fp8_e4m3fn.safetensors"));
        touch(&models.join("text_encoder/t5xxl_fp16.safetensors"));
        touch(&models.join("text_encoder/more/clip_l.safetensors"));
        touch(&models.join("text_encoder/clip_l.ckpt"));
        assert_eq!(
            flux_default(&model, PartKind::T5),
            Some(models.join("text_encoder/t5xxl_fp16.safetensors"))
        );
        assert_eq!(
            flux_default(&model, PartKind::Vae),
            Some(models.join("VAE/ae.safetensors"))
        );
        // Forge's module names (no extension) and A1111's VAE names (with it).
        assert_eq!(
            find_named(&model, "t5xxl_fp8_e4m3fn", PartKind::T5),
            Some(models.join("text_encoder/t5xxl_fp8_e4m3fn.safetensors"))
        );
        assert_eq!(
            find_named(&model, "ae.safetensors", PartKind::Vae),
            Some(models.join("VAE/ae.safetensors"))
        );
        // In a subfolder, and never a pickle file.
        assert_eq!(
            find_named(&model, "clip_l", PartKind::ClipL),
            Some(models.join("text_encoder/more/clip_l.safetensors"))
        );
        assert_eq!(find_named(&model, "t5xxl_fp8", PartKind::T5), None);
        assert_eq!(find_named(&model, "ae", PartKind::T5), None);
    }
}
