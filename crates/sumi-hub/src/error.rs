//! The hub crate's error type.

use std::path::PathBuf;

/// What can go wrong finding, hashing or downloading models; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A model file or folder is missing, unreadable or not what it should be.
    #[error("model file {path}: {reason}")]
    File { path: PathBuf, reason: String },
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
    /// The engine refused a model file while looking at it.
    #[error(transparent)]
    Engine(#[from] sumi_engine::Error),
    /// Reading or writing a file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl HubError {
    /// An error naming the file or folder and what is wrong with it.
    pub fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        HubError::File {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A download error: `what` was being fetched, `reason` says why it failed and what to do.
    pub fn download(what: impl Into<String>, reason: impl Into<String>) -> Self {
        HubError::Download {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// The hub crate's result type.
pub type Result<T> = std::result::Result<T, HubError>;
