//! Bringing the database and the image folders back into agreement after a crash or manual edits.

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::{
    error::{io_err, Result},
    files::{self, TEMP_PREFIX},
    import, store,
};

/// What [`crate::Gallery::open`] repaired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenReport {
    /// Ids of rows removed because their image file was gone.
    pub removed_rows: Vec<i64>,
    /// Ids of rows added for image files that had none (read from their Sumi chunk).
    pub reimported: Vec<i64>,
    /// Image files without a row that could not be read, moved to this path.
    pub moved_aside: Vec<PathBuf>,
    /// Unfinished temporary files deleted.
    pub temp_files_removed: usize,
    /// Thumbnails rebuilt because they were missing.
    pub thumbnails_rebuilt: usize,
    /// Thumbnails deleted because no row used them.
    pub stray_thumbnails_removed: usize,
    /// Whether the folders were scanned (they had changed since the gallery last wrote them).
    pub scanned: bool,
}

impl OpenReport {
    /// Whether nothing had to be repaired.
    pub fn is_clean(&self) -> bool {
        self.removed_rows.is_empty()
            && self.reimported.is_empty()
            && self.moved_aside.is_empty()
            && self.temp_files_removed == 0
            && self.thumbnails_rebuilt == 0
            && self.stray_thumbnails_removed == 0
    }
}

/// The folders reconciliation works on.
pub(crate) struct Dirs<'a> {
    pub images: &'a Path,
    pub thumbs: &'a Path,
    pub unreadable: &'a Path,
}

/// Lists a folder's file names, deleting leftover temp files.
fn scan(dir: &Path, report: &mut OpenReport) -> Result<HashSet<String>> {
    let mut names = HashSet::new();
    for entry in fs::read_dir(dir).map_err(io_err("cannot list folder", dir))? {
        let entry = entry.map_err(io_err("cannot list folder", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(TEMP_PREFIX) {
            files::remove_if_present(&entry.path())?;
            report.temp_files_removed += 1;
        } else {
            names.insert(name);
        }
    }
    Ok(names)
}

/// Reconciles rows with files; see [`OpenReport`] for what it does.
pub(crate) fn reconcile(conn: &Connection, dirs: &Dirs) -> Result<OpenReport> {
    let mut report = OpenReport {
        scanned: true,
        ..OpenReport::default()
    };
    let mut images = scan(dirs.images, &mut report)?;
    let mut thumbs = scan(dirs.thumbs, &mut report)?;
    let rows = store::all_files(conn)?;
    let mut missing = Vec::new();
    let mut need_thumb = Vec::new();
    for (id, image, thumb) in rows {
        if !images.remove(&image) {
            missing.push((id, thumb));
            continue;
        }
        if !thumbs.remove(&thumb) {
            need_thumb.push((image, thumb));
        }
    }
    if !missing.is_empty() {
        let tx = conn.unchecked_transaction()?;
        for (id, _) in &missing {
            store::delete(&tx, *id)?;
        }
        tx.commit()?;
        for (id, thumb) in missing {
            tracing::warn!(id, "image file missing; removed its gallery entry");
            files::remove_if_present(&dirs.thumbs.join(thumb))?;
            report.removed_rows.push(id);
        }
    }
    for (image, thumb) in need_thumb {
        if rebuild_thumb(dirs, &image, &thumb).is_ok() {
            report.thumbnails_rebuilt += 1;
        }
    }
    let mut orphans: Vec<String> = images.into_iter().filter(|n| n.ends_with(".png")).collect();
    orphans.sort();
    for name in orphans {
        let thumb = files::thumb_name(&name);
        thumbs.remove(&thumb);
        match adopt(conn, dirs, &name, &thumb) {
            Ok(id) => {
                tracing::info!(id, file = %name, "re-added image file that had no gallery entry");
                report.reimported.push(id);
            }
            Err(e) => {
                let to = move_aside(dirs, &name)?;
                tracing::warn!(file = %name, error = %e, moved_to = %to.display(), "unreadable image without gallery entry moved aside");
                report.moved_aside.push(to);
            }
        }
    }
    for stray in thumbs {
        files::remove_if_present(&dirs.thumbs.join(stray))?;
        report.stray_thumbnails_removed += 1;
    }
    Ok(report)
}

/// Rewrites a missing thumbnail from its image.
fn rebuild_thumb(dirs: &Dirs, image: &str, thumb: &str) -> Result<()> {
    let path = dirs.images.join(image);
    let bytes = fs::read(&path).map_err(io_err("cannot read", &path))?;
    let rgb = import::decode_rgb(&path, &bytes)?;
    files::write_atomic(dirs.thumbs, thumb, &files::thumbnail(&rgb, &path)?)
}

/// Adds a row for an image file that has none, from its embedded Sumi record.
fn adopt(conn: &Connection, dirs: &Dirs, name: &str, thumb: &str) -> Result<i64> {
    let path = dirs.images.join(name);
    let bytes = fs::read(&path).map_err(io_err("cannot read", &path))?;
    let found = import::read_record(&path, &bytes)?;
    if !found.from_sumi_chunk {
        return Err(crate::GalleryError::NoParameters(path));
    }
    let rgb = import::decode_rgb(&path, &bytes)?;
    files::write_atomic(dirs.thumbs, thumb, &files::thumbnail(&rgb, &path)?)?;
    let r = &found.record;
    Ok(store::insert(
        conn,
        &store::NewRow {
            params: &r.params,
            meta: &r.meta,
            created_at: r.created_at,
            image_file: name,
            thumb_file: thumb,
        },
    )?)
}

/// Moves an unreadable image into the `unreadable` folder and returns its new path.
fn move_aside(dirs: &Dirs, name: &str) -> Result<PathBuf> {
    fs::create_dir_all(dirs.unreadable).map_err(io_err("cannot create folder", dirs.unreadable))?;
    let from = dirs.images.join(name);
    let to = dirs.unreadable.join(name);
    fs::rename(&from, &to).map_err(io_err("cannot move aside", &from))?;
    files::sync_dir(dirs.images)?;
    Ok(to)
}
