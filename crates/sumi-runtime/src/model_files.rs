//! Where a generation's model and its separately given parts (VAE, Flux's T5 and CLIP-L,
//! configs, tokenizers) were loaded from, recorded with the image in the gallery so that a
//! re-run loads the same files without the flags that named them.

use std::path::{Path, PathBuf};

use sumi_engine::model::LoadOptions;
use sumi_engine::Parametrization;
use sumi_gallery::ModelFiles;

use crate::{Result, RuntimeError};

/// The files a model was loaded from: `path` and the parts `options` named, as absolute paths.
pub fn record(path: &Path, options: &LoadOptions) -> ModelFiles {
    let text = |p: &Path| absolute(p).display().to_string();
    ModelFiles {
        model: text(path),
        vae: options.vae.as_deref().map(text),
        t5: options.t5.as_deref().map(text),
        clip_l: options.clip_l.as_deref().map(text),
        config_dir: options.config_dir.as_deref().map(text),
        tokenizer_dirs: options.tokenizer_dirs.iter().map(|d| text(d)).collect(),
        prediction: options.prediction.map(|p| {
            match p {
                Parametrization::Epsilon => "eps",
                Parametrization::V => "v",
                Parametrization::Flow => "flow",
            }
            .to_string()
        }),
    }
}

/// The recorded model, when it is still there: the first place a re-run looks.
pub fn recorded_model(files: Option<&ModelFiles>) -> Vec<PathBuf> {
    files
        .map(|f| PathBuf::from(&f.model))
        .filter(|p| p.exists())
        .into_iter()
        .collect()
}

/// Whether a model loaded with `loaded` has the parts `recorded` names, where `recorded` is
/// about the model at `path` (for another model, or a moved one, it says nothing).
pub fn has_parts(loaded: Option<&ModelFiles>, recorded: &ModelFiles, path: &Path) -> bool {
    if absolute(path) != Path::new(&recorded.model) {
        return true;
    }
    // Tokenizer folders are left out: they are only searched, and one may have gone.
    fn parts(f: &ModelFiles) -> [&Option<String>; 5] {
        [&f.vae, &f.t5, &f.clip_l, &f.config_dir, &f.prediction]
    }
    loaded.is_some_and(|f| parts(f) == parts(recorded))
}

/// Fills in the parts `options` does not name from `files` (recorded for a model at `model`,
/// the one a re-run is about to load), so the re-run uses the files the image was made with.
/// A recorded part that is gone is an error that names it and the flag that replaces it.
pub fn fill_options(files: &ModelFiles, model: &Path, options: &mut LoadOptions) -> Result<()> {
    if absolute(model) != Path::new(&files.model) {
        return Ok(());
    }
    let part = |recorded: &Option<String>, what: &str, flag: &str| -> Result<Option<PathBuf>> {
        let Some(recorded) = recorded else {
            return Ok(None);
        };
        let path = PathBuf::from(recorded);
        if !path.exists() {
            return Err(RuntimeError::Invalid(format!(
                "the {what} this image was made with, {recorded}, is no longer there; \
                 pass another with {flag}"
            )));
        }
        Ok(Some(path))
    };
    if options.vae.is_none() {
        options.vae = part(&files.vae, "VAE", "--vae")?;
    }
    if options.t5.is_none() {
        options.t5 = part(&files.t5, "T5 text encoder", "--t5")?;
    }
    if options.clip_l.is_none() {
        options.clip_l = part(&files.clip_l, "CLIP-L text encoder", "--clip-l")?;
    }
    if options.config_dir.is_none() {
        options.config_dir = part(&files.config_dir, "config folder", "--config")?;
    }
    if options.tokenizer_dirs.is_empty() {
        // Tokenizer folders are only searched: one that is gone is skipped.
        options.tokenizer_dirs = (files.tokenizer_dirs.iter().map(PathBuf::from))
            .filter(|d| d.is_dir())
            .collect();
    }
    if options.prediction.is_none() {
        options.prediction = match files.prediction.as_deref() {
            Some("v") => Some(Parametrization::V),
            Some("eps") => Some(Parametrization::Epsilon),
            Some("flow") => Some(Parametrization::Flow),
            _ => None,
        };
    }
    Ok(())
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_parts_fill_what_the_rerun_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("flux1-dev-Q8_0.gguf");
        let (vae, t5, toks) = (
            dir.path().join("ae.safetensors"),
            dir.path().join("t5.gguf"),
            dir.path().join("tokenizers"),
        );
        for f in [&model, &vae, &t5] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir(&toks).unwrap();
        let given = LoadOptions {
            vae: Some(vae.clone()),
            t5: Some(t5.clone()),
            tokenizer_dirs: vec![toks.clone()],
            prediction: Some(Parametrization::V),
            ..Default::default()
        };
        let files = record(&model, &given);
        assert_eq!(recorded_model(Some(&files)), [absolute(&model)]);

        let mut options = LoadOptions::default();
        fill_options(&files, &model, &mut options).unwrap();
        assert_eq!(options.vae, Some(absolute(&vae)));
        assert_eq!(options.t5, Some(absolute(&t5)));
        assert_eq!(options.clip_l, None);
        assert_eq!(options.tokenizer_dirs, [absolute(&toks)]);
        assert_eq!(options.prediction, Some(Parametrization::V));
        for p in [Parametrization::Epsilon, Parametrization::Flow] {
            let given = LoadOptions {
                prediction: Some(p),
                ..Default::default()
            };
            let mut back = LoadOptions::default();
            fill_options(&record(&model, &given), &model, &mut back).unwrap();
            assert_eq!(back.prediction, Some(p));
        }

        // What the re-run names wins.
        let other = dir.path().join("other-vae.safetensors");
        let mut options = LoadOptions {
            vae: Some(other.clone()),
            ..Default::default()
        };
        fill_options(&files, &model, &mut options).unwrap();
        assert_eq!(options.vae, Some(other));

        // A model loaded with those parts has them; without, or another model, not.
        assert!(has_parts(Some(&files), &files, &model));
        assert!(!has_parts(
            Some(&record(&model, &LoadOptions::default())),
            &files,
            &model
        ));
        assert!(!has_parts(None, &files, &model));
        assert!(has_parts(None, &files, &vae));

        // Another model: nothing recorded applies.
        let mut options = LoadOptions::default();
        fill_options(&files, &vae, &mut options).unwrap();
        assert_eq!(options.t5, None);

        // A recorded part that is gone is named, with the flag that replaces it.
        std::fs::remove_file(&t5).unwrap();
        let err = fill_options(&files, &model, &mut LoadOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("t5.gguf") && msg.contains("--t5"), "{msg}");
        std::fs::remove_file(&model).unwrap();
        assert!(recorded_model(Some(&files)).is_empty());
    }
}
