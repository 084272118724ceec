//! The pictures image-to-image generations started from, kept content-addressed in the
//! gallery's `sources/` folder: each file is named by the SHA-256 of its bytes, written
//! atomically, and never overwritten (a name already present holds the same bytes).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io_err, GalleryError, Result};

/// The SHA-256 of `bytes`, lowercase hex: a source's file name.
pub fn source_name(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `name` can be a source's name (64 lowercase hex digits), so it never leaves the folder.
pub fn is_source_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The path of source `name` in `dir`, refusing names that are not content names.
pub fn source_path(dir: &Path, name: &str) -> Result<PathBuf> {
    if !is_source_name(name) {
        return Err(GalleryError::Source(format!(
            "{name:?} is not a source picture name (a SHA-256 in hex)"
        )));
    }
    Ok(dir.join(name))
}

/// Stores `bytes` in `dir` under their SHA-256 and returns the name. The file is written to a
/// temp file, synced, then linked into place, which fails rather than replace an existing
/// file; an existing file of that name is kept when it holds the same bytes.
pub fn store(dir: &Path, bytes: &[u8]) -> Result<String> {
    fs::create_dir_all(dir).map_err(io_err("cannot create folder", dir))?;
    let name = source_name(bytes);
    let target = dir.join(&name);
    if target.exists() {
        read(dir, &name)?;
        // Fresh again: a source a queued request names is not pruned (see `prune`).
        let _ = fs::File::options()
            .write(true)
            .open(&target)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(name);
    }
    let tmp = dir.join(format!(
        "{}{}-{:016x}",
        crate::files::TEMP_PREFIX,
        std::process::id(),
        crate::files::random_u64()
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(io_err("cannot write", &tmp));
    let linked = written.and_then(|()| match fs::hard_link(&tmp, &target) {
        Ok(()) => Ok(()),
        // Another process stored the same picture meanwhile: same name, same bytes.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("cannot store", &target)(e)),
    });
    let _ = fs::remove_file(&tmp);
    linked?;
    crate::files::sync_dir(dir)?;
    Ok(name)
}

/// The bytes of source `name`, checked against the name.
pub fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = source_path(dir, name)?;
    if !path.exists() {
        return Err(GalleryError::Source(format!(
            "the source picture {name} is not in {}; give the picture again (--init-image / \
             --mask)",
            dir.display()
        )));
    }
    let bytes = crate::files::read_regular(&path)?;
    if source_name(&bytes) != name {
        return Err(GalleryError::Source(format!(
            "the source picture {} has changed on disk (its bytes no longer match its name); \
             give the picture again",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Removes source `name` when `in_use` is false and it was last stored at least
/// [`crate::STALE_AFTER`] ago (a picture just kept for a request still in the queue stays).
/// Returns whether it was removed.
pub fn prune(dir: &Path, name: &str, in_use: bool) -> Result<bool> {
    let path = source_path(dir, name)?;
    let stale = fs::metadata(&path).is_ok_and(|m| crate::files::is_stale(&m));
    if in_use || !stale {
        return Ok(false);
    }
    crate::files::remove_if_present(&path)?;
    crate::files::sync_dir(dir)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_content_addressed_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sources");
        let a = store(&d, b"picture a").unwrap();
        assert_eq!(a, source_name(b"picture a"));
        assert_eq!(store(&d, b"picture a").unwrap(), a);
        assert_eq!(read(&d, &a).unwrap(), b"picture a");
        // A damaged file is reported and left alone, not replaced.
        fs::write(d.join(&a), b"tampered").unwrap();
        assert!(store(&d, b"picture a")
            .unwrap_err()
            .to_string()
            .contains("changed"));
        assert_eq!(fs::read(d.join(&a)).unwrap(), b"tampered");
        assert!(read(&d, "../gallery.db").is_err());
        assert!(read(&d, &source_name(b"missing"))
            .unwrap_err()
            .to_string()
            .contains("not in"));
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp files left: {names:?}");
    }
}
