//! Reading the generation record out of a PNG written by Sumi or an A1111-compatible tool.

use std::{
    io::Cursor,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::{
    error::{io_err, GalleryError, Result},
    infotext,
    png_meta::{self, PARAMETERS_KEY, SUMI_KEY},
    record::{EmbeddedRecord, Generation, GenerationMeta, EMBEDDED_FORMAT},
};

/// Deepest folder level that a folder import walks into.
const MAX_DEPTH: usize = 16;

/// What an import of several files or folders did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ImportReport {
    /// Generations that were added.
    pub imported: Vec<Generation>,
    /// Files that could not be imported, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Files skipped because the gallery already holds the same picture with the same
    /// settings, with the id of that generation ("already in the gallery as #N").
    #[serde(default)]
    pub already_in_gallery: Vec<(PathBuf, i64)>,
}

/// A PNG's generation record and whether it came from Sumi's own chunk.
pub(crate) struct FoundRecord {
    /// The record.
    pub record: EmbeddedRecord,
    /// True when read from the `sumi` chunk (the file then needs no new chunk).
    pub from_sumi_chunk: bool,
}

/// Reads the record from PNG bytes: Sumi's JSON chunk when present and readable, else `parameters`.
pub(crate) fn read_record(path: &Path, bytes: &[u8]) -> Result<FoundRecord> {
    let chunks =
        png_meta::read_text_chunks(Cursor::new(bytes)).map_err(|source| GalleryError::Png {
            path: path.to_path_buf(),
            source,
        })?;
    let text_of = |key: &str| {
        chunks
            .iter()
            .find(|c| c.key == key)
            .map(|c| c.text.as_str())
    };
    let sumi_error = match text_of(SUMI_KEY).map(serde_json::from_str::<EmbeddedRecord>) {
        Some(Ok(record)) => {
            return Ok(FoundRecord {
                record,
                from_sumi_chunk: true,
            })
        }
        Some(Err(e)) => Some(e),
        None => None,
    };
    let Some(text) = text_of(PARAMETERS_KEY) else {
        return Err(match sumi_error {
            Some(source) => GalleryError::BadEmbedded {
                path: path.to_path_buf(),
                source,
            },
            None => GalleryError::NoParameters(path.to_path_buf()),
        });
    };
    if let Some(e) = sumi_error {
        tracing::warn!(path = %path.display(), error = %e, "unreadable Sumi chunk; using the parameters text");
    }
    let parsed = infotext::parse(text);
    let params = parsed
        .to_params()
        .map_err(|source| GalleryError::Infotext {
            path: path.to_path_buf(),
            source,
        })?;
    let version = parsed
        .extras
        .iter()
        .find(|(k, _)| k == "Version")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Ok(FoundRecord {
        record: EmbeddedRecord {
            format: EMBEDDED_FORMAT,
            params,
            meta: GenerationMeta {
                engine_version: version,
                ..GenerationMeta::default()
            },
            created_at: modified_ms(path),
        },
        from_sumi_chunk: false,
    })
}

/// The file's modification time in Unix ms (now when unknown).
fn modified_ms(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or_else(crate::now_ms, |d| d.as_millis() as i64)
}

/// Decodes PNG bytes to RGB, after checking every chunk's checksum (so that a damaged file
/// is reported in plain words) and within size limits.
pub(crate) fn decode_rgb(path: &Path, bytes: &[u8]) -> Result<RgbImage> {
    png_meta::check_chunks(bytes).map_err(|source| GalleryError::Png {
        path: path.to_path_buf(),
        source,
    })?;
    let image_err = |source| GalleryError::Image {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    reader.decode().map(|img| img.to_rgb8()).map_err(image_err)
}

/// Longest image side the gallery decodes (larger images are not generation images).
const MAX_SIDE: u32 = 16_384;

/// The PNG files found at a path: those to import and those refused before opening.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Regular `.png` files (or the one file given), sorted by path.
    pub files: Vec<PathBuf>,
    /// FIFOs, sockets, devices and other entries that are not regular files, with the reason.
    pub refused: Vec<(PathBuf, String)>,
}

/// Every `.png` file at `path` (a file, or a folder walked recursively).
pub(crate) fn collect_pngs(path: &Path) -> Result<Found> {
    let mut found = Found::default();
    let meta = std::fs::metadata(path).map_err(io_err("cannot read", path))?;
    if meta.is_file() {
        found.files.push(path.to_path_buf());
    } else if meta.is_dir() {
        walk(path, 0, &mut found)?;
    } else {
        return Err(GalleryError::NotRegularFile(path.to_path_buf()));
    }
    found.files.sort();
    Ok(found)
}

/// Recursive step of [`collect_pngs`] (symlinks to files are followed, to folders not).
fn walk(dir: &Path, depth: usize, found: &mut Found) -> Result<()> {
    if depth >= MAX_DEPTH {
        tracing::warn!(path = %dir.display(), "folder nested too deep; skipped");
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io_err("cannot list folder", dir))? {
        let entry = entry.map_err(io_err("cannot list folder", dir))?;
        let child = entry.path();
        let kind = entry
            .file_type()
            .map_err(io_err("cannot read the type of", &child))?;
        if kind.is_dir() {
            walk(&child, depth + 1, found)?;
            continue;
        }
        let is_png = child
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if !is_png {
            continue;
        }
        let regular = kind.is_file()
            || (kind.is_symlink() && std::fs::metadata(&child).is_ok_and(|m| m.is_file()));
        if regular {
            found.files.push(child);
        } else {
            let why = GalleryError::NotRegularFile(child.clone()).to_string();
            found.refused.push((child, why));
        }
    }
    Ok(())
}
