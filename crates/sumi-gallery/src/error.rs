//! The gallery's error type.

use std::path::PathBuf;

use crate::{infotext::InfotextError, png_meta::PngMetaError};

/// Everything that can go wrong in the gallery, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// No data directory could be found for Sumi.
    #[error("cannot find a data folder for Sumi on this system; set SUMI_HOME (or pass --home) to choose one")]
    NoHome,
    /// A file or folder operation failed.
    #[error("{action} {path}: {source}; check that the folder exists, is writable and the disk is not full")]
    Io {
        /// What was being done ("cannot write", ...).
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The database file is damaged or belongs to another program.
    #[error("the gallery database {path} is damaged or is not a Sumi gallery ({detail}); move it aside to start an empty gallery, or restore it from a backup")]
    DamagedDb {
        /// The database file.
        path: PathBuf,
        /// What was found wrong.
        detail: String,
    },
    /// The database was written by a newer Sumi.
    #[error("the gallery database {path} has schema version {found}, but this Sumi knows only up to {known}; update Sumi to open it")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A database operation failed.
    #[error("gallery database error: {0}; if this repeats, the database may be damaged (run `PRAGMA integrity_check` or restore a backup)")]
    Db(#[from] rusqlite::Error),
    /// No generation has the given id.
    #[error("no generation with id {0} in the gallery; see `sumi gallery list` for ids")]
    NotFound(i64),
    /// An imported PNG carries no generation settings.
    #[error("{0} has no generation settings (no `parameters` or `sumi` text chunk); only images saved by Sumi or A1111-compatible tools can be imported")]
    NoParameters(PathBuf),
    /// An imported PNG's settings text is incomplete.
    #[error("cannot import {path}: {source}")]
    Infotext {
        /// The image file.
        path: PathBuf,
        /// What was wrong with its text.
        source: InfotextError,
    },
    /// A PNG's chunks could not be read or written.
    #[error("cannot use PNG {path}: {source}")]
    Png {
        /// The image file.
        path: PathBuf,
        /// What was wrong.
        source: PngMetaError,
    },
    /// An image could not be decoded or encoded.
    #[error("cannot decode or encode image {path}: {source}; the file may be damaged or in an unsupported format")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The codec error.
        source: image::ImageError,
    },
    /// Sumi's embedded JSON record is unreadable.
    #[error("the Sumi record embedded in {path} is unreadable ({source}); import it as an A1111 image by removing its `sumi` text chunk")]
    BadEmbedded {
        /// The image file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A comparison group has no images.
    #[error("comparison group {0} has no images; see `sumi gallery list` for groups")]
    EmptyGroup(i64),
    /// An output path names no file.
    #[error("{0} is not a file name to write to; give a path such as grid.png")]
    BadOutput(PathBuf),
}

/// The gallery's result type.
pub type Result<T, E = GalleryError> = std::result::Result<T, E>;

/// Builds a closure that wraps an I/O error with its action and path.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> GalleryError {
    let path = path.into();
    move |source| GalleryError::Io {
        action,
        path,
        source,
    }
}
