//! Loading a model the way both faces do: its recorded name, tokenizers from the Hugging Face
//! cache for single files, and A1111's model hash.

use std::path::Path;

use candle_core::{DType, Device};
use sumi_engine::model::{LoadOptions, LoadStage};
use sumi_engine::Model;

use crate::{Result, RuntimeError};

/// Loads the model at `path` on `device` in `dtype`, with `options`, calling `progress` at each
/// stage; single-file checkpoints get A1111's short hash (cached in `home`).
pub fn load_model(
    path: &Path,
    options: LoadOptions,
    device: &Device,
    dtype: DType,
    home: &Path,
    progress: &mut dyn FnMut(LoadStage),
) -> Result<Model> {
    let vae = options.vae.clone();
    let mut options = sumi_hub::tokenizers::with_cached(path, options);
    options
        .name
        .get_or_insert_with(|| sumi_hub::model_name(path));
    let mut model = Model::load_with_progress(path, &options, device, dtype, progress).map_err(
        |e| match e {
            sumi_engine::Error::MissingTokenizer { family, index, .. } => {
                RuntimeError::Invalid(format!(
                    "{e}; or: {}",
                    sumi_hub::tokenizers::download_hint(family, index)
                ))
            }
            other => other.into(),
        },
    )?;
    // The images then carry A1111's "Model hash"; a file that cannot be hashed still loads.
    match sumi_hub::hashes::model_hash(path, home) {
        Ok(hash) => model.info.hash = hash,
        Err(e) => tracing::warn!("cannot hash {}: {e}", path.display()),
    }
    if let Some(vae) = vae {
        // As A1111 names it: the file name with its extension.
        model.info.vae_name = vae.file_name().map(|n| n.to_string_lossy().into_owned());
        match sumi_hub::hashes::model_hash(&vae, home) {
            Ok(hash) => model.info.vae_hash = hash,
            Err(e) => tracing::warn!("cannot hash {}: {e}", vae.display()),
        }
    }
    Ok(model)
}
