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
    /// Fetching from the Hugging Face hub failed; the reason says why and what to do.
    #[error("{what}: {reason}")]
    Download { what: String, reason: String },
    /// A downloaded file's content does not match the checksum the hub gave for it.
    #[error(
        "{file} is corrupt: its sha256 is {actual}, the hub says {expected}. \
         The bad partial download was deleted; run the same command again to download it fresh"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
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

impl Error {
    /// A download error: `what` was being fetched, `reason` says why it failed and what to do.
    pub fn download(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Download {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
