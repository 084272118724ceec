//! What a caller can say about loading a model beyond its path, the stages a load reports, and
//! the parts the loaders hand back.

use std::path::PathBuf;

use super::info::ModelInfo;
use super::patch::ModelParams;
use crate::arch::network::DenoisingNetwork;
use crate::arch::vae::Vae;
use crate::parametrization::Parametrization;
use crate::sampling::schedules::{NoiseLevels, SchedulerConfig};
use crate::text::TextEncoder;

/// Options for loading a model beyond its path.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Prediction type override (single files do not say whether they are v-prediction models).
    pub prediction: Option<Parametrization>,
    /// The name recorded with images (default: the file's stem or the folder's name).
    pub name: Option<String>,
    /// A diffusers folder whose `unet/`, `vae/` and `text_encoder*/` `config.json` replace the
    /// configs inferred from a single file (like diffusers' `from_single_file(config=...)`); it is
    /// also searched for tokenizers first.
    pub config_dir: Option<PathBuf>,
    /// Extra folders searched for `tokenizer/` and `tokenizer_2/` when loading a single file.
    pub tokenizer_dirs: Vec<PathBuf>,
    /// Tokenizer folders found elsewhere (e.g. a download cache), one per text encoder in order,
    /// tried when none of the other places has one.
    pub found_tokenizers: Vec<Option<PathBuf>>,
    /// A separate VAE (diffusers `vae/` folder, a model folder with `vae/`, or a `.safetensors` file).
    pub vae: Option<PathBuf>,
    /// Flux's T5 text encoder for a transformer file: a `.safetensors` or `.gguf` file, or a
    /// diffusers folder (`text_encoder_2/` or a model folder holding it).
    pub t5: Option<PathBuf>,
    /// Flux's CLIP-L text encoder for a transformer file: a `.safetensors` file with
    /// transformers' names, or a diffusers folder.
    pub clip_l: Option<PathBuf>,
    /// Which parts are loaded only while used (Flux's T5 and transformer).
    pub offload: super::offload::Offload,
}

/// A stage of loading a model, reported to [`Model::load_with_progress`]'s callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadStage {
    /// What is being read: "config", "text encoder", "UNet" or "VAE".
    pub name: &'static str,
    /// Share of the model's weights read before this stage, 0 to 1 (by bytes for folders,
    /// typical shares for single files).
    pub fraction: f32,
}

/// The parts a loader assembles, before the VAE override and the preview fit.
pub(super) struct Parts {
    pub(super) info: ModelInfo,
    pub(super) text: TextEncoder,
    pub(super) network: Box<dyn DenoisingNetwork>,
    pub(super) vae: Vae,
    pub(super) scheduler: SchedulerConfig,
    pub(super) levels: NoiseLevels,
    pub(super) params: ModelParams,
    pub(super) memory: super::offload::PartBytes,
}
