//! Bringing the database and the image folders back into agreement after a crash or manual
//! edits.
//!
//! The pass runs "quiet" when it holds the writers' lock exclusively (see `lock.rs`): no write
//! is then half done anywhere, so every temp file, journal entry and image without a row was
//! left by a process that died. Where the file system cannot lock, it only touches files and
//! journal entries older than [`STALE_AFTER`]. Either way it never moves a file that a row
//! names, never removes a row whose file exists (both re-checked right before acting), and
//! moves an unreadable image aside only once it has not changed for [`STALE_AFTER`] (it may
//! be a copy still in progress) or when the journal shows the gallery itself wrote it.

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::{
    error::{io_err, GalleryError, Result},
    files::{self, STALE_AFTER, TEMP_PREFIX},
    import,
    journal::{self, Action},
    now_ms,
    schema::write_tx,
    store,
};

/// What [`crate::Gallery::open`] (or [`crate::Gallery::rescan`]) repaired.
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
    /// Deletes interrupted by a crash whose files were removed now.
    #[serde(default)]
    pub deletes_finished: usize,
    /// Files left alone because they changed too recently to judge (e.g. a copy in progress);
    /// a later open looks at them again.
    #[serde(default)]
    pub left_for_later: Vec<PathBuf>,
    /// Whether a repair was due but skipped because other Sumi processes were saving images;
    /// a later open does it.
    #[serde(default)]
    pub busy: bool,
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
            && self.deletes_finished == 0
    }
}

/// The folders reconciliation works on.
pub(crate) struct Dirs<'a> {
    pub images: &'a Path,
    pub thumbs: &'a Path,
    pub unreadable: &'a Path,
}

/// A folder's entries: name → whether it is a regular file (not a folder, symlink, FIFO,
/// socket or device). Names only, so that scanning a large gallery costs no `stat` per file.
type Listing = HashMap<String, bool>;

/// Whether a file is unchanged for at least [`STALE_AFTER`].
fn stale(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| files::is_stale(&m))
}

/// A listing's names in order, so that repairs happen (and are reported) in a stable order.
fn sorted(listing: Listing) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = listing.into_iter().collect();
    v.sort();
    v
}

/// One repair pass.
struct Pass<'a> {
    conn: &'a Connection,
    dirs: &'a Dirs<'a>,
    /// No write is in progress anywhere (the writers' lock is held exclusively).
    quiet: bool,
    report: OpenReport,
}

/// Reconciles rows with files; see [`OpenReport`] for what it does.
pub(crate) fn reconcile(conn: &Connection, dirs: &Dirs, quiet: bool) -> Result<OpenReport> {
    let mut pass = Pass {
        conn,
        dirs,
        quiet,
        report: OpenReport {
            scanned: true,
            ..OpenReport::default()
        },
    };
    let mut images = scan(dirs.images)?;
    let mut thumbs = scan(dirs.thumbs)?;
    pass.remove_temps(dirs.images, &mut images)?;
    pass.remove_temps(dirs.thumbs, &mut thumbs)?;
    let ours = pass.finish_journal(&mut images, &mut thumbs)?;
    pass.check_rows(&mut images, &mut thumbs)?;
    pass.orphans(images, &mut thumbs, &ours)?;
    pass.stray_thumbs(thumbs)?;
    if !ours.is_empty() {
        write_tx(conn, |tx| -> Result<()> {
            for name in &ours {
                journal::clear(tx, name)?;
            }
            Ok(())
        })?;
    }
    if !pass.report.is_clean() {
        files::sync_dir(dirs.images)?;
        files::sync_dir(dirs.thumbs)?;
    }
    Ok(pass.report)
}

/// Lists a folder (without opening or following anything).
fn scan(dir: &Path) -> Result<Listing> {
    let mut out = Listing::new();
    for entry in fs::read_dir(dir).map_err(io_err("cannot list folder", dir))? {
        let entry = entry.map_err(io_err("cannot list folder", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(path = %entry.path().display(), "file name is not UTF-8; left alone");
            continue;
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        out.insert(name, kind.is_file());
    }
    Ok(out)
}

impl Pass<'_> {
    /// Whether a file without a row may be acted on now.
    fn may_touch(&self, path: &Path) -> bool {
        self.quiet || stale(path)
    }

    /// Deletes leftover temp files in `dir` (taking them out of its listing).
    fn remove_temps(&mut self, dir: &Path, listing: &mut Listing) -> Result<()> {
        let temps: Vec<String> = listing
            .keys()
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .cloned()
            .collect();
        for name in temps {
            listing.remove(&name);
            let path = dir.join(&name);
            if self.may_touch(&path) {
                files::remove_if_present(&path)?;
                self.report.temp_files_removed += 1;
            } else {
                self.report.left_for_later.push(path);
            }
        }
        Ok(())
    }

    /// Finishes the journal entries of processes that died: removes the files of interrupted
    /// deletes, and returns the image names of interrupted adds (their files, if complete, are
    /// adopted below like any image without a row).
    fn finish_journal(
        &mut self,
        images: &mut Listing,
        thumbs: &mut Listing,
    ) -> Result<BTreeSet<String>> {
        let mut ours = BTreeSet::new();
        let stale_ms = STALE_AFTER.as_millis() as i64;
        for e in journal::all(self.conn)? {
            let image = images.remove(&e.image_file);
            let thumb = thumbs.remove(&e.thumb_file);
            if !self.quiet && now_ms() - e.started_at < stale_ms {
                self.report
                    .left_for_later
                    .push(self.dirs.images.join(&e.image_file));
                continue;
            }
            match e.action {
                Action::Delete => {
                    if store::id_of_file(self.conn, &e.image_file)?.is_none() {
                        files::remove_if_present(&self.dirs.images.join(&e.image_file))?;
                        files::remove_if_present(&self.dirs.thumbs.join(&e.thumb_file))?;
                    }
                    journal::clear(self.conn, &e.image_file)?;
                    self.report.deletes_finished += 1;
                }
                Action::Add => {
                    if let Some(f) = image {
                        images.insert(e.image_file.clone(), f);
                    }
                    if let Some(f) = thumb {
                        thumbs.insert(e.thumb_file.clone(), f);
                    }
                    ours.insert(e.image_file);
                }
            }
        }
        Ok(ours)
    }

    /// Removes rows whose image is gone and rebuilds missing thumbnails, taking every file a
    /// row names out of the listings.
    fn check_rows(&mut self, images: &mut Listing, thumbs: &mut Listing) -> Result<()> {
        for (id, image, thumb) in store::all_files(self.conn)? {
            if images.remove(&image).is_none() {
                thumbs.remove(&thumb);
                self.remove_row_without_image(id, &image, &thumb)?;
                continue;
            }
            let rebuild = match thumbs.remove(&thumb) {
                None => true,
                Some(false) => {
                    files::remove_if_present(&self.dirs.thumbs.join(&thumb))?;
                    true
                }
                Some(true) => false,
            };
            if rebuild && self.rebuild_thumb(&image, &thumb).is_ok() {
                self.report.thumbnails_rebuilt += 1;
            }
        }
        Ok(())
    }

    /// Removes a row whose image file is missing (checked again inside the transaction).
    fn remove_row_without_image(&mut self, id: i64, image: &str, thumb: &str) -> Result<()> {
        let path = self.dirs.images.join(image);
        let removed = write_tx(self.conn, |tx| -> Result<bool> {
            if files::entry_exists(&path) {
                return Ok(false);
            }
            Ok(store::delete(tx, id)?)
        })?;
        if removed {
            tracing::warn!(id, "image file missing; removed its gallery entry");
            files::remove_if_present(&self.dirs.thumbs.join(thumb))?;
            self.report.removed_rows.push(id);
        }
        Ok(())
    }

    /// Adopts, moves aside or leaves for later each image file that no row names.
    fn orphans(
        &mut self,
        images: Listing,
        thumbs: &mut Listing,
        ours: &BTreeSet<String>,
    ) -> Result<()> {
        for (name, regular) in sorted(images) {
            let path = self.dirs.images.join(&name);
            let thumb = files::thumb_name(&name);
            let mine = ours.contains(&name);
            if !regular {
                // A folder, link or FIFO is never the gallery's: renaming it opens nothing.
                thumbs.remove(&thumb);
                self.move_aside(&name, &path)?;
                continue;
            }
            if !name.to_ascii_lowercase().ends_with(".png") {
                continue;
            }
            thumbs.remove(&thumb);
            let stale = stale(&path);
            if !(self.quiet || stale || mine) {
                self.report.left_for_later.push(path);
                continue;
            }
            match self.adopt(&name, &thumb) {
                Ok(Some(id)) => {
                    tracing::info!(id, file = %name, "re-added image file that had no gallery entry");
                    self.report.reimported.push(id);
                }
                Ok(None) => {}
                Err(e @ GalleryError::Db(_)) => return Err(e),
                Err(e) if stale || mine => {
                    tracing::warn!(file = %name, error = %e, "unreadable image without gallery entry");
                    if self.move_aside(&name, &path)? {
                        files::remove_if_present(&self.dirs.thumbs.join(&thumb))?;
                    }
                }
                Err(e) => {
                    tracing::info!(file = %name, error = %e, "image without gallery entry is unreadable but recent; left for later");
                    self.report.left_for_later.push(path);
                }
            }
        }
        Ok(())
    }

    /// Deletes thumbnails no row uses.
    fn stray_thumbs(&mut self, thumbs: Listing) -> Result<()> {
        for (name, _) in sorted(thumbs) {
            let path = self.dirs.thumbs.join(&name);
            if self.may_touch(&path) {
                files::remove_if_present(&path)?;
                self.report.stray_thumbnails_removed += 1;
            } else {
                self.report.left_for_later.push(path);
            }
        }
        Ok(())
    }

    /// Rewrites a missing thumbnail from its image.
    fn rebuild_thumb(&self, image: &str, thumb: &str) -> Result<()> {
        let path = self.dirs.images.join(image);
        let bytes = files::read_regular(&path)?;
        let rgb = import::decode_rgb(&path, &bytes)?;
        files::write_atomic(self.dirs.thumbs, thumb, &files::thumbnail(&rgb, &path)?)
    }

    /// Adds a row for an image file that has none, from its embedded Sumi record; `None` when
    /// a row for it appeared meanwhile.
    fn adopt(&self, name: &str, thumb: &str) -> Result<Option<i64>> {
        let path = self.dirs.images.join(name);
        let bytes = files::read_regular(&path)?;
        let found = import::read_record(&path, &bytes)?;
        if !found.from_sumi_chunk {
            return Err(GalleryError::NoParameters(path));
        }
        let rgb = import::decode_rgb(&path, &bytes)?;
        files::write_atomic(self.dirs.thumbs, thumb, &files::thumbnail(&rgb, &path)?)?;
        let hash = files::pixel_hash(&rgb);
        let r = &found.record;
        write_tx(self.conn, |tx| -> Result<Option<i64>> {
            if store::id_of_file(tx, name)?.is_some() {
                return Ok(None);
            }
            Ok(Some(store::insert(
                tx,
                &store::NewRow {
                    params: &r.params,
                    meta: &r.meta,
                    created_at: r.created_at,
                    image_file: name,
                    thumb_file: thumb,
                    pixel_hash: Some(&hash),
                },
            )?))
        })
    }

    /// Moves an entry of the images folder into `unreadable/` under a free name, unless a row
    /// names it; returns whether it moved.
    fn move_aside(&mut self, name: &str, from: &Path) -> Result<bool> {
        if store::id_of_file(self.conn, name)?.is_some() {
            return Ok(false);
        }
        let dir = self.dirs.unreadable;
        fs::create_dir_all(dir).map_err(io_err("cannot create folder", dir))?;
        let mut to = dir.join(name);
        let mut n = 1;
        while files::entry_exists(&to) {
            to = dir.join(format!("{n}-{name}"));
            n += 1;
        }
        match fs::rename(from, &to) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            moved => moved.map_err(io_err("cannot move aside", from))?,
        }
        tracing::warn!(file = %name, moved_to = %to.display(), "image without gallery entry moved aside");
        self.report.moved_aside.push(to);
        Ok(true)
    }
}
