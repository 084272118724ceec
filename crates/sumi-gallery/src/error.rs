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
    /// A source picture (the init image or mask of an image-to-image generation) is missing,
    /// changed or misnamed; the message says which and what to do.
    #[error("{0}")]
    Source(String),
    /// No generation has the given id.
    #[error("no generation with id {0} in the gallery; see `sumi gallery list` for ids")]
    NotFound(i64),
    /// An imported PNG carries no generation settings.
    #[error("{0} has no generation settings (no `sumi`, `parameters` or ComfyUI `prompt` text chunk): it was not made by an image generator Sumi knows; only images saved by Sumi, ComfyUI or A1111-compatible tools can be imported")]
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
    #[error("cannot decode or encode image {path}: {}; the file may be damaged or in an unsupported format", readable_image_error(.source))]
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
    /// An output path is one of a gallery's own files (database, images, thumbnails, ...).
    #[error("{0} is one of the gallery's own files (its database, images or thumbnails); writing there would damage the gallery, so choose an output path outside the gallery's folders")]
    ManagedPath(PathBuf),
    /// A path to read is a FIFO, socket, device or folder.
    #[error("{0} is not a regular file (it is a folder, FIFO, socket or device); only regular PNG files can be read")]
    NotRegularFile(PathBuf),
    /// A file to read is larger than the gallery accepts.
    #[error("{path} is {size} bytes, more than the 1 GiB the gallery reads; it is not a generation image")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// An imported image is already in the gallery.
    #[error("{path} is already in the gallery as #{id}")]
    AlreadyInGallery {
        /// The file that was to be imported.
        path: PathBuf,
        /// The generation that holds the same picture and settings.
        id: i64,
    },
    /// Other Sumi processes held the gallery's lock for too long.
    #[error("the gallery at {0} stayed locked by other Sumi processes (saving images or repairing the gallery) for too long; try again when they have finished")]
    Busy(PathBuf),
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

/// An image codec error as a sentence: the PNG decoder names chunks with Rust debug text
/// (`ChunkType { type: IDAT, critical: true, ... }`), which is shown as just `IDAT`.
pub(crate) fn readable_image_error(e: &image::ImageError) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    const OPEN: &str = "ChunkType { type: ";
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let Some(end) = after.find(" }") else {
            rest = after;
            break;
        };
        let kind = after[..end].split(',').next().unwrap_or_default();
        out.push_str(kind);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(detail) = out.strip_prefix("Format error decoding Png: CRC error: ") {
        // "expected 0x1 have 0x2 while decoding IDAT chunk." → name the chunk plainly.
        let chunk = detail
            .split("while decoding ")
            .nth(1)
            .and_then(|c| c.strip_suffix(" chunk."))
            .unwrap_or("a");
        return format!("the PNG chunk {chunk} has a wrong checksum (the file is damaged)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_chunk_debug_text_is_made_readable() {
        let e = image::load_from_memory(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDRxxxxxxxxxxxxx\0\0\0\0")
            .unwrap_err();
        let text = readable_image_error(&e);
        assert!(!text.contains("ChunkType"), "{text}");
        assert!(text.contains("IHDR"), "{text}");
        assert!(text.contains("checksum"), "{text}");
    }
}
