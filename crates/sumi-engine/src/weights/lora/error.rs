//! Why a LoRA file cannot be used; every message names the file and says what to do.

use std::path::PathBuf;

/// A LoRA / LyCORIS file that cannot be applied, or a request to apply one that is out of range.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// The file is malformed or unreadable.
    #[error("LoRA file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file holds weights, but not a LoRA (a checkpoint, a VAE, an embedding, ...).
    #[error(
        "{path} is not a LoRA: it looks like {looks_like}. Pass a LoRA / LyCORIS .safetensors file"
    )]
    NotALora {
        /// The file.
        path: PathBuf,
        /// What the file seems to be.
        looks_like: String,
    },
    /// A pickle (`.pt` / `.ckpt` / ...) file: never loaded.
    #[error(
        "{path} is a pickle file{what}; pickle files can run arbitrary code when loaded, so Sumi \
         never opens them. Convert it to .safetensors with a trusted tool in an isolated \
         environment (python: `safetensors.torch.save_file(torch.load(path, weights_only=True), \
         \"lora.safetensors\")`) or download the .safetensors version"
    )]
    Pickle {
        /// The file.
        path: PathBuf,
        /// What its tensor names say it is (e.g. " (a LoRA)"), when they could be read safely.
        what: String,
    },
    /// The LoRA was made for another model family.
    #[error("LoRA {path} is for {fits}, but the loaded model is {model}; pick a LoRA made for {model}, or load a model of the LoRA's family")]
    WrongFamily {
        /// The file.
        path: PathBuf,
        /// The family its shapes and names fit.
        fits: String,
        /// The loaded model's family.
        model: String,
    },
    /// A module's delta does not have the shape of the layer it names.
    #[error("LoRA {path}: layer {layer} has shape {target:?} but the LoRA's update for it has shape {delta:?}; the LoRA was made for a different model")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The layer (the model's parameter name).
        layer: String,
        /// The layer's weight shape.
        target: Vec<usize>,
        /// The shape the LoRA's factors make.
        delta: Vec<usize>,
    },
    /// A module whose tensors do not fit together (ranks differ, a factor is missing).
    #[error("LoRA {path}: module {module}: {reason}; the file is damaged or in a format Sumi does not know")]
    BadModule {
        /// The file.
        path: PathBuf,
        /// The module's key in the file.
        module: String,
        /// What is wrong.
        reason: String,
    },
    /// No key of the file names a layer of the loaded model.
    #[error("LoRA {path}: none of its {count} modules matches a layer of the loaded model (e.g. {examples}); it was made for a different model")]
    NoMatch {
        /// The file.
        path: PathBuf,
        /// How many modules the file has.
        count: usize,
        /// A few of the file's module names.
        examples: String,
    },
    /// A tensor holds NaN or infinite values (or makes a weight infinite).
    #[error("LoRA {path}: {tensor} holds NaN or infinite values; the file is damaged, download it again")]
    NotFinite {
        /// The file.
        path: PathBuf,
        /// The tensor, or the layer whose patched weight would not be finite.
        tensor: String,
    },
    /// A weight outside the allowed range.
    #[error("LoRA {name}: weight {value} is outside -{max}..{max}")]
    Multiplier {
        /// The LoRA's name.
        name: String,
        /// The weight asked for.
        value: f64,
        /// The largest magnitude allowed.
        max: f64,
    },
    /// The same file named twice in one set.
    #[error("LoRA {path} is named twice; give each LoRA once with its weights")]
    Duplicate {
        /// The file.
        path: PathBuf,
    },
}
