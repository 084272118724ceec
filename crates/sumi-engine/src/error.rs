//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the engine; messages say what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range or malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A sampler or schedule name that is not in the table.
    #[error("unknown {kind} '{name}'; valid names: {valid}")]
    UnknownName {
        kind: &'static str,
        name: String,
        valid: String,
    },
    /// A model file or folder is missing, unreadable or malformed.
    #[error("model file {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    /// A single-file checkpoint's tokenizer is on none of the places searched.
    #[error(
        "model file {}: single-file checkpoints carry no tokenizer, and none was found for the {} \
         text encoder{}. Pass --tokenizers DIR (or set SUMI_TOKENIZERS) with a folder holding \
         {} (vocab.json, merges.txt, tokenizer_config.json), e.g. {}",
        checkpoint.display(),
        family.display_name(),
        if family.text_encoders() > 1 { format!(" {}", index + 1) } else { String::new() },
        example.file_name().map(|n| n.to_string_lossy().into_owned() + "/").unwrap_or_default(),
        example.display()
    )]
    MissingTokenizer {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// Its family.
        family: crate::family::Family,
        /// Which text encoder (0 or 1).
        index: usize,
        /// A place the tokenizer could be put.
        example: PathBuf,
    },
    /// A textual-inversion embedding file is unreadable, malformed or made for another model.
    #[error("embedding '{name}' ({}): {reason}", path.display())]
    Embedding {
        /// The embedding's name (its file stem).
        name: String,
        /// Its file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A LoRA / LyCORIS file cannot be used, or applying it failed.
    #[error(transparent)]
    Lora(#[from] crate::weights::lora::error::LoraError),
    /// The run was cancelled by the user.
    #[error("cancelled")]
    Cancelled,
    /// A tensor operation failed (shape mismatch, device error, out of memory).
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A model-file error naming the file and what is wrong with it.
    pub fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
