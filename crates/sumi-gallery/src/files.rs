//! Durable file writes (temp file, fsync, rename, fsync folder), file names and thumbnails.

use std::{
    fs::{self, File, OpenOptions},
    hash::{BuildHasher, Hasher},
    io::Write,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use image::{codecs::jpeg::JpegEncoder, imageops::FilterType, RgbImage};

use crate::error::{io_err, GalleryError, Result};

/// Prefix of files being written; any left at open are from an interrupted write.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Longest side of a thumbnail in pixels.
pub const THUMB_SIZE: u32 = 256;
/// JPEG quality of thumbnails.
const THUMB_QUALITY: u8 = 85;

/// Writes `bytes` to `dir/name` so that the file is either absent or complete and durable.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let target = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err("cannot create", &tmp))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("cannot write", &tmp));
    drop(file);
    if let Err(e) =
        written.and_then(|()| fs::rename(&tmp, &target).map_err(io_err("cannot rename", &target)))
    {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Makes a folder's entries (new names, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync folder", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A fresh file stem unlikely to collide: creation time plus 64 random bits.
pub fn unique_stem(created_at: i64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_i64(created_at);
    format!("{created_at}-{:016x}", h.finish())
}

/// The thumbnail file name belonging to an image file name.
pub fn thumb_name(image_file: &str) -> String {
    let stem = image_file.strip_suffix(".png").unwrap_or(image_file);
    format!("{stem}.jpg")
}

/// Encodes a JPEG thumbnail whose longest side is at most [`THUMB_SIZE`].
pub fn thumbnail(img: &RgbImage, path_for_errors: &Path) -> Result<Vec<u8>> {
    let (w, h) = img.dimensions();
    let scale = f64::from(THUMB_SIZE) / f64::from(w.max(h).max(1));
    let small;
    let src = if scale < 1.0 {
        let tw = ((f64::from(w) * scale).round() as u32).max(1);
        let th = ((f64::from(h) * scale).round() as u32).max(1);
        small = image::imageops::resize(img, tw, th, FilterType::Triangle);
        &small
    } else {
        img
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, THUMB_QUALITY)
        .encode_image(src)
        .map_err(|source| GalleryError::Image {
            path: path_for_errors.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("cannot remove", path)(e)),
        _ => Ok(()),
    }
}

/// The modification times of the image and thumbnail folders, as one comparable string.
///
/// Any file created, renamed or removed in either folder changes it.
pub fn folder_stamp(images: &Path, thumbs: &Path) -> Result<String> {
    let mut parts = Vec::with_capacity(2);
    for dir in [images, thumbs] {
        let modified = fs::metadata(dir)
            .and_then(|m| m.modified())
            .map_err(io_err("cannot read the modification time of", dir))?;
        let since = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        parts.push(format!("{}.{:09}", since.as_secs(), since.subsec_nanos()));
    }
    Ok(parts.join("/"))
}
