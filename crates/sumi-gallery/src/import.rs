//! Reading the generation record out of a PNG written by Sumi, ComfyUI or an A1111-compatible
//! tool.

use std::{
    io::Cursor,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::{
    comfy,
    error::{io_err, GalleryError, Result},
    infotext::{self, Parsed},
    png_meta::{self, PARAMETERS_KEY, SUMI_KEY},
    record::{EmbeddedRecord, Generation, GenerationMeta, GenerationParams, EMBEDDED_FORMAT},
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

/// Reads the record from PNG bytes: Sumi's JSON chunk when present and readable, else
/// ComfyUI's graph or A1111's `parameters` text (see [`from_comfy`] for a PNG with both). Missing
/// or unreadable settings are filled in and described in the record's note.
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
    let image_size = png_meta::image_size(bytes);
    let graph = text_of(comfy::PROMPT_KEY).and_then(|t| comfy::read(t, image_size));
    let text = text_of(PARAMETERS_KEY).map(infotext::parse);
    let read = match (graph, text) {
        (Some(graph), text) => from_comfy(graph, text.as_ref(), image_size),
        (None, Some(text)) => from_a1111(path, &text, image_size)?,
        (None, None) => {
            return Err(match sumi_error {
                Some(source) => GalleryError::BadEmbedded {
                    path: path.to_path_buf(),
                    source,
                },
                None => GalleryError::NoParameters(path.to_path_buf()),
            })
        }
    };
    if let Some(e) = sumi_error {
        tracing::warn!(path = %path.display(), error = %e, "unreadable Sumi chunk; using the other settings it carries");
    }
    Ok(FoundRecord {
        record: EmbeddedRecord {
            format: EMBEDDED_FORMAT,
            params: read.params,
            meta: GenerationMeta {
                engine_version: read.made_by,
                note: joined(read.notes),
                ..GenerationMeta::default()
            },
            created_at: modified_ms(path),
        },
        from_sumi_chunk: false,
    })
}

/// Settings read from another tool's metadata.
struct Read {
    params: GenerationParams,
    /// Sentences for the note.
    notes: Vec<String>,
    /// The tool (and version) that made the image, when known.
    made_by: String,
}

/// Settings from A1111's `parameters` text, missing and unreadable ones filled in.
fn from_a1111(path: &Path, text: &Parsed, image_size: Option<(u32, u32)>) -> Result<Read> {
    let lenient = text
        .to_params_lenient(image_size)
        .map_err(|source| GalleryError::Infotext {
            path: path.to_path_buf(),
            source,
        })?;
    let made_by = text
        .extras
        .iter()
        .find(|(k, _)| k == "Version")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Ok(Read {
        params: lenient.params,
        notes: lenient.problems,
        made_by,
    })
}

/// Settings from ComfyUI's graph. ComfyUI itself writes no `parameters`; saver nodes that add
/// one describe the same run in A1111's words, which lose what a re-run needs (ComfyUI's
/// sampler ids, its noise), so the graph wins when it is understood. When it is not, such a
/// text (with a settings line) says more than a half-read graph: its settings are taken, to be
/// re-run by ComfyUI's rules unless it names its own noise source or emphasis.
fn from_comfy(
    graph: comfy::Reading,
    text: Option<&Parsed>,
    image_size: Option<(u32, u32)>,
) -> Read {
    let text = text.filter(|t| t.has_settings);
    let made_by = comfy::ENGINE_NAME.to_string();
    if let Some(t) = text.filter(|_| !graph.understood) {
        if let Ok(lenient) = t.to_params_lenient(image_size) {
            let mut params = lenient.params;
            if t.noise_source.is_none() {
                params.noise_source = "comfy-nv".into();
            }
            if t.emphasis.is_none() {
                params.emphasis = "comfy".into();
            }
            let mut notes = graph.notes;
            notes.push("settings read from the image's A1111-style parameters text".into());
            notes.extend(lenient.problems);
            return Read {
                params,
                notes,
                made_by,
            };
        }
    }
    let mut params = graph.params;
    // The graph names no hash; a saver's text naming the same model may.
    if let Some(t) = text.filter(|t| t.model_name.as_ref() == Some(&params.model_name)) {
        params.model_hash = t.model_hash.clone();
    }
    Read {
        params,
        notes: graph.notes,
        made_by,
    }
}

/// Sentences joined into one note (`None` when there are none).
fn joined(notes: Vec<String>) -> Option<String> {
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// Adds to a record's note the sentences it does not hold yet; returns whether it changed.
pub(crate) fn add_notes(meta: &mut GenerationMeta, more: Vec<String>) -> bool {
    let have = meta.note.clone().unwrap_or_default();
    let new: Vec<String> = more
        .into_iter()
        .filter(|n| !have.contains(n.as_str()))
        .collect();
    let Some(added) = joined(new) else {
        return false;
    };
    meta.note = Some(if have.is_empty() {
        added
    } else {
        format!("{have}; {added}")
    });
    true
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
