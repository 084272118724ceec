//! Durable file writes (unique temp file, fsync, rename, fsync folder), safe reads that never
//! block on FIFOs or devices, file names and thumbnails.

use std::{
    fs::{self, File, OpenOptions},
    hash::{BuildHasher, Hasher},
    io::{ErrorKind, Read, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use image::{codecs::jpeg::JpegEncoder, imageops::FilterType, RgbImage};
use sha2::{Digest, Sha256};

use crate::error::{io_err, GalleryError, Result};

/// Prefix of files being written; any left behind are from an interrupted write.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Longest side of a thumbnail in pixels.
pub const THUMB_SIZE: u32 = 256;
/// JPEG quality of thumbnails.
const THUMB_QUALITY: u8 = 85;
/// Largest file the gallery reads (a PNG of 16384 x 16384 RGBA16 stored uncompressed is 2 GiB;
/// generation images are far smaller).
pub const MAX_READ: u64 = 1 << 30;
/// Files without a row that were modified more recently than this may still be being copied
/// in by hand (or written by a process that takes no lock), so the repair leaves them alone.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// 64 bits that differ between calls, threads and processes (std's per-process random keys,
/// a counter, the process id and the clock).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish()
}

/// A temp file name no other write (in this or another process) can use at the same time.
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{TEMP_PREFIX}{}-{}-{:016x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        random_u64()
    )
}

/// Creates a fresh temp file in `dir` (with `create_new`, retrying on the unlikely clash).
fn create_temp(dir: &Path) -> Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..8 {
        let path = dir.join(temp_name());
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((e, path)),
            Err(e) => return Err(io_err("cannot create", path)(e)),
        }
    }
    let (e, path) = last.expect("the loop ran at least once");
    Err(io_err("cannot create", path)(e))
}

/// Writes `bytes` to `dir/name` so that the file is either absent or complete and durable.
///
/// The final rename replaces whatever `dir/name` was (a symlink is replaced, not followed).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let (mut file, tmp) = create_temp(dir)?;
    let target = dir.join(name);
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

/// Writes `bytes` to a user-chosen path atomically (a temp file beside it, renamed over it).
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| GalleryError::BadOutput(path.to_path_buf()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::env::current_dir().map_err(io_err("cannot find the current folder", "."))?,
    };
    write_atomic(&dir, name, bytes)
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

/// Opens a file for reading only if it is a regular file (following symlinks), never blocking
/// on a FIFO or a device; returns it with its length.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let meta = fs::metadata(path).map_err(io_err("cannot read", path))?;
    if !meta.is_file() {
        return Err(GalleryError::NotRegularFile(path.to_path_buf()));
    }
    let mut options = OpenOptions::new();
    options.read(true);
    // The file may have been swapped for a FIFO since the check: a non-blocking open returns
    // at once, and the check on the open file below refuses it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(io_err("cannot open", path))?;
    let meta = file.metadata().map_err(io_err("cannot read", path))?;
    if !meta.is_file() {
        return Err(GalleryError::NotRegularFile(path.to_path_buf()));
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file of at most [`MAX_READ`] bytes (see [`open_regular`]).
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > MAX_READ {
        return Err(GalleryError::TooLarge {
            path: path.to_path_buf(),
            size: len,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_READ + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("cannot read", path))?;
    if bytes.len() as u64 > MAX_READ {
        return Err(GalleryError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Whether a file was last modified at least [`STALE_AFTER`] ago.
pub fn is_stale(meta: &fs::Metadata) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age >= STALE_AFTER)
}

/// A fresh file stem unlikely to collide: creation time plus 64 random bits.
pub fn unique_stem(created_at: i64) -> String {
    format!("{created_at}-{:016x}", random_u64())
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

/// The content hash the gallery recognises an image by: SHA-256 over the size and the RGB8
/// pixels, in hex (the same for any PNG encoding or set of text chunks of the same picture).
pub fn pixel_hash(img: &RgbImage) -> String {
    let mut h = Sha256::new();
    h.update(b"sumi-rgb8\0");
    h.update(img.width().to_le_bytes());
    h.update(img.height().to_le_bytes());
    h.update(img.as_raw());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("cannot remove", path)(e)),
        _ => Ok(()),
    }
}

/// Whether anything (file, folder, link, FIFO) has this name.
pub fn entry_exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_differ_and_atomic_writes_leave_no_temp_file() {
        let a = temp_name();
        let b = temp_name();
        assert_ne!(a, b);
        assert!(a.starts_with(TEMP_PREFIX));
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "x.bin", b"one").unwrap();
        write_atomic(dir.path(), "x.bin", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("x.bin")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_regular_refuses_folders() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_regular(dir.path()).unwrap_err();
        assert!(matches!(err, GalleryError::NotRegularFile(_)), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn read_regular_refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.png");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular(&fifo).unwrap_err();
        assert!(matches!(err, GalleryError::NotRegularFile(_)), "{err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn pixel_hash_depends_on_pixels_and_size_only() {
        let a = RgbImage::from_pixel(4, 2, image::Rgb([1, 2, 3]));
        let b = RgbImage::from_pixel(2, 4, image::Rgb([1, 2, 3]));
        assert_eq!(pixel_hash(&a), pixel_hash(&a.clone()));
        assert_ne!(pixel_hash(&a), pixel_hash(&b));
        assert_eq!(pixel_hash(&a).len(), 64);
    }
}
