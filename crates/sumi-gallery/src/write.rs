//! Everything that adds or removes gallery files: saving, importing, deleting and exporting.
//!
//! Each add, import and delete holds the writers' lock shared from its first file change to
//! its last (so the repair pass never sees it half done) and journals its file names, so a
//! crash at any point leaves nothing the next repair cannot finish.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rusqlite::Connection;

use crate::{
    error::{GalleryError, Result},
    files, import,
    journal::{self, Action},
    now_ms, png_meta,
    png_meta::SUMI_KEY,
    record::{EmbeddedRecord, EMBEDDED_FORMAT},
    schema::write_tx,
    store, Gallery, Generation, GenerationMeta, GenerationParams, ImportReport, SettingsCheck,
};

/// A picture ready to be stored: the PNG and thumbnail bytes and the picture's content hash.
struct Encoded<'a> {
    record: &'a EmbeddedRecord,
    png: &'a [u8],
    thumb: &'a [u8],
    pixel_hash: &'a str,
}

impl Gallery {
    /// Saves a finished image: PNG and thumbnail made durable first, then the row committed.
    pub fn add(
        &self,
        params: &GenerationParams,
        meta: &GenerationMeta,
        image: &RgbImage,
    ) -> Result<Generation> {
        let record = EmbeddedRecord {
            format: EMBEDDED_FORMAT,
            params: params.clone(),
            meta: meta.clone(),
            created_at: now_ms(),
        };
        let png = crate::encode_record_png(&record, image, Path::new("<new image>"))?;
        let thumb = files::thumbnail(image, Path::new("<new image>"))?;
        let encoded = Encoded {
            record: &record,
            png: &png,
            thumb: &thumb,
            pixel_hash: &files::pixel_hash(image),
        };
        self.store(&encoded, None)
    }

    /// Imports one PNG written by Sumi, ComfyUI or an A1111-compatible tool (a copy is kept in
    /// the gallery), without checking its settings against the generator's rules (see
    /// [`Gallery::import_with`]).
    pub fn import(&self, path: &Path) -> Result<Generation> {
        self.import_with(path, &no_check)
    }

    /// Imports one PNG written by Sumi, ComfyUI or an A1111-compatible tool, a copy kept in the
    /// gallery. Settings missing or unreadable in its metadata take the tool's defaults, and
    /// `check` (the generator's rules) names those it cannot use; the image is kept either way,
    /// with those sentences in its note ([`GenerationMeta::note`], also in the copy's record).
    /// A picture the gallery already holds with the same settings is not added again: that is
    /// [`GalleryError::AlreadyInGallery`] with its id.
    pub fn import_with(&self, path: &Path, check: &SettingsCheck) -> Result<Generation> {
        let bytes = files::read_regular(path)?;
        let mut found = import::read_record(path, &bytes)?;
        let rgb = import::decode_rgb(path, &bytes)?;
        let hash = files::pixel_hash(&rgb);
        if let Some(id) = self.find_same(&hash, &found.record.params)? {
            return Err(already(path, id));
        }
        let noted = import::add_notes(&mut found.record.meta, check(&found.record.params));
        let png = if found.from_sumi_chunk && !noted {
            bytes
        } else {
            with_record(path, &bytes, &found.record)?
        };
        let thumb = files::thumbnail(&rgb, path)?;
        let encoded = Encoded {
            record: &found.record,
            png: &png,
            thumb: &thumb,
            pixel_hash: &hash,
        };
        self.store(&encoded, Some(path))
    }

    /// Imports every PNG in the given files and folders (recursively) without checking their
    /// settings ([`Gallery::import_paths_with`]).
    pub fn import_paths(&self, paths: &[PathBuf]) -> ImportReport {
        self.import_paths_with(paths, &no_check)
    }

    /// Imports every PNG in the given files and folders (recursively) as
    /// [`Gallery::import_with`] does, collecting failures and the files already in the
    /// gallery. FIFOs and other non-regular files are refused without being opened.
    pub fn import_paths_with(&self, paths: &[PathBuf], check: &SettingsCheck) -> ImportReport {
        let mut report = ImportReport::default();
        for path in paths {
            let found = match import::collect_pngs(path) {
                Ok(found) => found,
                Err(e) => {
                    report.failed.push((path.clone(), e.to_string()));
                    continue;
                }
            };
            report.failed.extend(found.refused);
            for file in found.files {
                match self.import_with(&file, check) {
                    Ok(g) => report.imported.push(g),
                    Err(GalleryError::AlreadyInGallery { id, .. }) => {
                        report.already_in_gallery.push((file, id));
                    }
                    Err(e) => report.failed.push((file, e.to_string())),
                }
            }
        }
        report
    }

    /// The generation that holds this picture (by [`files::pixel_hash`]) with these settings.
    ///
    /// Rows older than the hash column have none; those with the same seed get theirs
    /// computed here, once.
    fn find_same(&self, hash: &str, params: &GenerationParams) -> Result<Option<i64>> {
        if let Some(id) = same_in(&self.conn, hash, params)? {
            return Ok(Some(id));
        }
        for g in store::unhashed_with_seed(&self.conn, params.seed)? {
            let path = self.image_path(&g);
            let Ok(rgb) = files::read_regular(&path).and_then(|b| import::decode_rgb(&path, &b))
            else {
                continue;
            };
            let theirs = files::pixel_hash(&rgb);
            store::set_pixel_hash(&self.conn, g.id, &theirs)?;
            if theirs == hash && g.params == *params {
                return Ok(Some(g.id));
            }
        }
        Ok(None)
    }

    /// Claims a file name, writes both files durably, then commits the row; on failure
    /// nothing stays behind. With `import_from`, a same picture committed meanwhile by another
    /// process makes it [`GalleryError::AlreadyInGallery`].
    fn store(&self, e: &Encoded, import_from: Option<&Path>) -> Result<Generation> {
        let _held = self.lock.shared()?;
        let (image_file, thumb_file) =
            journal::claim_name(&self.conn, e.record.created_at, &self.images)?;
        let committed = files::write_atomic(&self.images, &image_file, e.png)
            .and_then(|()| files::write_atomic(&self.thumbs, &thumb_file, e.thumb))
            .and_then(|()| {
                write_tx(&self.conn, |tx| -> Result<i64> {
                    if let Some(path) = import_from {
                        if let Some(id) = same_in(tx, e.pixel_hash, &e.record.params)? {
                            return Err(already(path, id));
                        }
                    }
                    let id = insert(tx, e, &image_file, &thumb_file)?;
                    journal::clear(tx, &image_file)?;
                    self.stamp(tx)?;
                    Ok(id)
                })
            });
        let id = match committed {
            Ok(id) => id,
            Err(err) => {
                self.undo_add(&image_file, &thumb_file);
                return Err(err);
            }
        };
        tracing::debug!(id, file = image_file, "generation saved");
        self.get(id)
    }

    /// Removes the files of an add that failed, then its journal entry (if this fails too,
    /// the entry stays and the next repair finishes the job).
    fn undo_add(&self, image_file: &str, thumb_file: &str) {
        let removed = files::remove_if_present(&self.images.join(image_file))
            .and_then(|()| files::remove_if_present(&self.thumbs.join(thumb_file)));
        if removed.is_ok() {
            let _ = write_tx(&self.conn, |tx| -> Result<()> {
                journal::clear(tx, image_file)?;
                self.stamp(tx)
            });
        }
    }

    /// Deletes a generation: its row first, with its files journalled in the same
    /// transaction, then the files.
    ///
    /// So no row ever names a missing file, and a crash midway leaves a journal entry from
    /// which the next open removes the files (rather than bringing the image back).
    pub fn delete(&self, id: i64) -> Result<()> {
        let _held = self.lock.shared()?;
        let g = write_tx(&self.conn, |tx| -> Result<Generation> {
            let g = store::get(tx, id)?.ok_or(GalleryError::NotFound(id))?;
            store::delete(tx, id)?;
            journal::record(tx, &g.image_file, &g.thumb_file, Action::Delete)?;
            Ok(g)
        })?;
        files::remove_if_present(&self.image_path(&g))?;
        files::sync_dir(&self.images)?;
        files::remove_if_present(&self.thumb_path(&g))?;
        write_tx(&self.conn, |tx| -> Result<()> {
            journal::clear(tx, &g.image_file)?;
            self.stamp(tx)
        })?;
        self.prune_sources(&g.params)
    }

    /// Removes the init picture and mask of a deleted generation when no other record names
    /// them (and they were not just kept for a queued request).
    fn prune_sources(&self, p: &GenerationParams) -> Result<()> {
        let Some(i) = &p.img2img else {
            return Ok(());
        };
        let dir = self.home.join(crate::SOURCES_DIR);
        for name in std::iter::once(&i.init_image).chain(i.mask.as_ref()) {
            if !crate::sources::is_source_name(name) {
                continue;
            }
            let in_use: bool = self.conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM generations WHERE instr(extra, ?1) > 0)",
                [name],
                |r| r.get(0),
            )?;
            crate::sources::prune(&dir, name, in_use)?;
        }
        Ok(())
    }

    /// Writes a copy of a generation's PNG to `path` (atomically: a temp file renamed over
    /// the target, so even a failed write never leaves `path` half written, and a symlink at
    /// `path` is replaced rather than written through); refuses paths among the gallery's own
    /// files ([`GalleryError::ManagedPath`]). An existing file is replaced: callers check first
    /// when the user did not ask for that.
    pub fn export_image(&self, id: i64, path: &Path) -> Result<()> {
        self.check_output_path(path)?;
        let bytes = files::read_regular(&self.image_path(&self.get(id)?))?;
        files::write_output(path, &bytes)
    }
}

/// The check of [`Gallery::import`]: none.
fn no_check(_: &GenerationParams) -> Vec<String> {
    Vec::new()
}

/// The PNG bytes with `record` as their only Sumi chunk (the `parameters` text and every other
/// chunk kept as they are).
fn with_record(path: &Path, bytes: &[u8], record: &EmbeddedRecord) -> Result<Vec<u8>> {
    let json = serde_json::to_string(record).map_err(|source| GalleryError::BadEmbedded {
        path: path.to_path_buf(),
        source,
    })?;
    png_meta::replace_text_chunks(bytes, &[(SUMI_KEY, &json)]).map_err(|source| GalleryError::Png {
        path: path.to_path_buf(),
        source,
    })
}

/// Inserts the row of a stored picture.
fn insert(tx: &Connection, e: &Encoded, image_file: &str, thumb_file: &str) -> Result<i64> {
    Ok(store::insert(
        tx,
        &store::NewRow {
            params: &e.record.params,
            meta: &e.record.meta,
            created_at: e.record.created_at,
            image_file,
            thumb_file,
            pixel_hash: Some(e.pixel_hash),
        },
    )?)
}

/// The id of a row with this pixel hash and these settings.
fn same_in(conn: &Connection, hash: &str, params: &GenerationParams) -> Result<Option<i64>> {
    Ok(store::with_pixel_hash(conn, hash)?
        .into_iter()
        .find(|g| g.params == *params)
        .map(|g| g.id))
}

/// The error for a file whose picture and settings the gallery already holds.
fn already(path: &Path, id: i64) -> GalleryError {
    GalleryError::AlreadyInGallery {
        path: path.to_path_buf(),
        id,
    }
}
