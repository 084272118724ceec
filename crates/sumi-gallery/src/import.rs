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

/// Decodes PNG bytes to RGB.
pub(crate) fn decode_rgb(path: &Path, bytes: &[u8]) -> Result<RgbImage> {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map(|img| img.to_rgb8())
        .map_err(|source| GalleryError::Image {
            path: path.to_path_buf(),
            source,
        })
}

/// Every `.png` file at `path` (a file, or a folder walked recursively), sorted by path.
pub(crate) fn collect_pngs(path: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(path, 0, &mut out)?;
    out.sort();
    Ok(out)
}

/// Recursive step of [`collect_pngs`].
fn walk(path: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(io_err("cannot read", path))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        tracing::warn!(path = %path.display(), "folder nested too deep; skipped");
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(io_err("cannot list folder", path))? {
        let entry = entry.map_err(io_err("cannot list folder", path))?;
        let child = entry.path();
        let is_png = child
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&child, depth + 1, out)?;
        } else if is_png {
            out.push(child);
        }
    }
    Ok(())
}
