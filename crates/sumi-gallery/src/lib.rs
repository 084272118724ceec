//! Sumi's gallery: every generation kept in SQLite with its PNG and thumbnail, searchable,
//! re-runnable and readable by other tools (A1111 `parameters` text in every PNG).
//!
//! Layout under the gallery home: `gallery.db` (SQLite, WAL), `images/` (PNGs), `thumbs/`
//! (JPEG thumbnails) and `unreadable/` (files found without a row that could not be read).
//!
//! Crash safety: files are made durable before their row is committed, and every commit that
//! follows a change to the folders also records the folders' modification times (the "stamp").
//! At open, a stamp that differs from the folders' means a write was interrupted or files were
//! changed by hand, and the folders are scanned and reconciled with the rows; otherwise the scan
//! (which costs about 70 ms per 100,000 files) is skipped. Limits: on file systems with coarse
//! timestamps, or when two processes write at once and one dies mid-write, a stray file may go
//! unnoticed until the next scan; [`Gallery::rescan`] forces one. A stray file never shows as a
//! broken image: rows only ever point at complete files.

#![warn(missing_docs)]

pub mod error;
mod files;
pub mod grid;
mod import;
pub mod infotext;
pub mod png_meta;
mod reconcile;
pub mod record;
mod schema;
mod store;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use image::RgbImage;
use rusqlite::Connection;

pub use error::{GalleryError, Result};
pub use import::ImportReport;
pub use reconcile::OpenReport;
pub use record::{ComparisonSlot, EmbeddedRecord, Generation, GenerationMeta, GenerationParams};
pub use schema::SCHEMA_VERSION;
pub use store::{fts_query, Cursor, Filter, Page};

use error::io_err;
use png_meta::{PARAMETERS_KEY, SUMI_KEY};
use record::EMBEDDED_FORMAT;

/// File name of the database inside the gallery home.
pub const DB_FILE: &str = "gallery.db";
/// Folder of full-size PNGs inside the gallery home.
pub const IMAGES_DIR: &str = "images";
/// Folder of thumbnails inside the gallery home.
pub const THUMBS_DIR: &str = "thumbs";
/// Folder that unreadable stray images are moved to.
pub const UNREADABLE_DIR: &str = "unreadable";
/// Folder of exported grids inside the gallery home.
pub const EXPORTS_DIR: &str = "exports";
/// Environment variable that relocates all of Sumi's data.
pub const HOME_ENV: &str = "SUMI_HOME";
/// `gallery_state` key of the folder stamp.
const STAMP_KEY: &str = "folder_stamp";

/// Where Sumi keeps its data: `$SUMI_HOME` if set, else the platform's data folder for Sumi.
pub fn default_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    directories::ProjectDirs::from("app", "sumi", "Sumi")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(GalleryError::NoHome)
}

/// Current time in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An open gallery: the database connection and the folders beside it.
pub struct Gallery {
    conn: Connection,
    home: PathBuf,
    images: PathBuf,
    thumbs: PathBuf,
    report: OpenReport,
}

impl Gallery {
    /// Opens (creating if needed) the gallery under `home`, migrating and reconciling it.
    pub fn open(home: &Path) -> Result<Self> {
        let images = home.join(IMAGES_DIR);
        let thumbs = home.join(THUMBS_DIR);
        for dir in [home, &images, &thumbs] {
            fs::create_dir_all(dir).map_err(io_err("cannot create folder", dir))?;
        }
        let conn = schema::open(&home.join(DB_FILE))?;
        let mut gallery = Gallery {
            conn,
            home: home.to_path_buf(),
            images,
            thumbs,
            report: OpenReport::default(),
        };
        let stamp = files::folder_stamp(&gallery.images, &gallery.thumbs)?;
        if store::get_state(&gallery.conn, STAMP_KEY)?.as_deref() != Some(stamp.as_str()) {
            gallery.rescan()?;
        }
        Ok(gallery)
    }

    /// Scans the folders and reconciles them with the rows (open does this when needed).
    pub fn rescan(&mut self) -> Result<&OpenReport> {
        let unreadable = self.home.join(UNREADABLE_DIR);
        let dirs = reconcile::Dirs {
            images: &self.images,
            thumbs: &self.thumbs,
            unreadable: &unreadable,
        };
        let report = reconcile::reconcile(&self.conn, &dirs)?;
        let stamp = files::folder_stamp(&self.images, &self.thumbs)?;
        store::set_state(&self.conn, STAMP_KEY, &stamp)?;
        if !report.is_clean() {
            tracing::warn!(?report, "gallery repaired");
        }
        self.report = report;
        Ok(&self.report)
    }

    /// Commits a database change together with the folders' new stamp.
    fn commit_with_stamp<T>(&self, change: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let tx = self.conn.unchecked_transaction()?;
        let out = change(&tx)?;
        let stamp = files::folder_stamp(&self.images, &self.thumbs)?;
        store::set_state(&tx, STAMP_KEY, &stamp)?;
        tx.commit()?;
        Ok(out)
    }

    /// The folder this gallery lives in.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// What was repaired when the gallery was opened.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Full path of a generation's PNG.
    pub fn image_path(&self, g: &Generation) -> PathBuf {
        self.images.join(&g.image_file)
    }

    /// Full path of a generation's thumbnail.
    pub fn thumb_path(&self, g: &Generation) -> PathBuf {
        self.thumbs.join(&g.thumb_file)
    }

    /// Saves a finished image: PNG and thumbnail made durable first, then the row committed.
    pub fn add(
        &self,
        params: &GenerationParams,
        meta: &GenerationMeta,
        image: &RgbImage,
    ) -> Result<Generation> {
        let created_at = now_ms();
        let image_file = format!("{}.png", files::unique_stem(created_at));
        let path = self.images.join(&image_file);
        let record = EmbeddedRecord {
            format: EMBEDDED_FORMAT,
            params: params.clone(),
            meta: meta.clone(),
            created_at,
        };
        let png = encode_record_png(&record, image, &path)?;
        let thumb = files::thumbnail(image, &path)?;
        self.store(&record, &image_file, &png, &thumb)
    }

    /// Writes both files durably, then commits the row; on failure nothing stays behind.
    fn store(
        &self,
        record: &EmbeddedRecord,
        image_file: &str,
        png: &[u8],
        thumb: &[u8],
    ) -> Result<Generation> {
        let thumb_file = files::thumb_name(image_file);
        let image_path = self.images.join(image_file);
        let thumb_path = self.thumbs.join(&thumb_file);
        let written = files::write_atomic(&self.images, image_file, png)
            .and_then(|()| files::write_atomic(&self.thumbs, &thumb_file, thumb))
            .and_then(|()| {
                self.commit_with_stamp(|conn| {
                    Ok(store::insert(
                        conn,
                        &store::NewRow {
                            params: &record.params,
                            meta: &record.meta,
                            created_at: record.created_at,
                            image_file,
                            thumb_file: &thumb_file,
                        },
                    )?)
                })
            });
        let id = match written {
            Ok(id) => id,
            Err(e) => {
                let _ = files::remove_if_present(&image_path);
                let _ = files::remove_if_present(&thumb_path);
                return Err(e);
            }
        };
        tracing::debug!(id, file = image_file, "generation saved");
        self.get(id)
    }

    /// Fetches one generation.
    pub fn get(&self, id: i64) -> Result<Generation> {
        store::get(&self.conn, id)?.ok_or(GalleryError::NotFound(id))
    }

    /// Lists generations newest first, `limit` at a time; pass the returned cursor for more.
    pub fn list(&self, filter: &Filter, cursor: Option<Cursor>, limit: usize) -> Result<Page> {
        Ok(store::list(&self.conn, filter, cursor, limit)?)
    }

    /// How many generations the filter includes (e.g. for "1,234 images").
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        Ok(store::count(&self.conn, filter)?)
    }

    /// Searches prompts and negative prompts (every word, as a prefix), most recently added first.
    ///
    /// Text with no searchable word lists everything, as [`Gallery::list`] does.
    pub fn search(
        &self,
        query: &str,
        filter: &Filter,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page> {
        match fts_query(query) {
            Some(q) => Ok(store::search(&self.conn, &q, filter, cursor, limit)?),
            None => self.list(filter, cursor, limit),
        }
    }

    /// Marks or unmarks a generation as a favourite.
    pub fn set_favourite(&self, id: i64, favourite: bool) -> Result<()> {
        match store::set_favourite(&self.conn, id, favourite)? {
            true => Ok(()),
            false => Err(GalleryError::NotFound(id)),
        }
    }

    /// Deletes a generation: its files first, then its row.
    ///
    /// This order means a crash midway leaves a row without image, which the next open removes,
    /// rather than an image without row, which the next open would bring back.
    pub fn delete(&self, id: i64) -> Result<()> {
        let g = self.get(id)?;
        files::remove_if_present(&self.image_path(&g))?;
        files::sync_dir(&self.images)?;
        files::remove_if_present(&self.thumb_path(&g))?;
        self.commit_with_stamp(|conn| Ok(store::delete(conn, id)?))?;
        Ok(())
    }

    /// The exact request that made a generation, to run it again.
    pub fn rerun(&self, id: i64) -> Result<GenerationParams> {
        Ok(self.get(id)?.params)
    }

    /// Imports one PNG written by Sumi or an A1111-compatible tool (a copy is kept in the gallery).
    pub fn import(&self, path: &Path) -> Result<Generation> {
        let bytes = fs::read(path).map_err(io_err("cannot read", path))?;
        let found = import::read_record(path, &bytes)?;
        let rgb = import::decode_rgb(path, &bytes)?;
        let png = if found.from_sumi_chunk {
            bytes
        } else {
            let json = serde_json::to_string(&found.record).map_err(|source| {
                GalleryError::BadEmbedded {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            png_meta::insert_text_chunks(&bytes, &[(SUMI_KEY, &json)]).map_err(|source| {
                GalleryError::Png {
                    path: path.to_path_buf(),
                    source,
                }
            })?
        };
        let thumb = files::thumbnail(&rgb, path)?;
        let image_file = format!("{}.png", files::unique_stem(found.record.created_at));
        self.store(&found.record, &image_file, &png, &thumb)
    }

    /// Imports every PNG in the given files and folders (recursively), collecting failures.
    pub fn import_paths(&self, paths: &[PathBuf]) -> ImportReport {
        let mut report = ImportReport::default();
        for path in paths {
            let files = match import::collect_pngs(path) {
                Ok(files) => files,
                Err(e) => {
                    report.failed.push((path.clone(), e.to_string()));
                    continue;
                }
            };
            for file in files {
                match self.import(&file) {
                    Ok(g) => report.imported.push(g),
                    Err(e) => report.failed.push((file, e.to_string())),
                }
            }
        }
        report
    }

    /// Starts a new comparison group (for side-by-side runs) and returns its id.
    pub fn new_comparison_group(&self) -> Result<i64> {
        Ok(store::new_group(&self.conn, now_ms())?)
    }

    /// The generations of a comparison group, by position.
    pub fn comparison_group(&self, group: i64) -> Result<Vec<Generation>> {
        Ok(store::group(&self.conn, group)?)
    }

    /// The labelled grid of a comparison group and the first image's settings.
    pub fn group_grid(&self, group: i64) -> Result<(RgbImage, GenerationParams)> {
        let gens = self.comparison_group(group)?;
        let params: Vec<&GenerationParams> = gens.iter().map(|g| &g.params).collect();
        let first = params.first().ok_or(GalleryError::EmptyGroup(group))?;
        let cells = gens
            .iter()
            .zip(grid::labels(&params))
            .map(|(g, label)| {
                let path = self.image_path(g);
                let image = image::open(&path)
                    .map_err(|source| GalleryError::Image {
                        path: path.clone(),
                        source,
                    })?
                    .to_rgb8();
                Ok(grid::Cell { image, label })
            })
            .collect::<Result<Vec<_>>>()?;
        let img = grid::compose(&cells, grid::columns(&params), &grid::header(&params));
        Ok((img, (*first).clone()))
    }

    /// Writes a comparison group's labelled grid to `path` (atomically, with `parameters` text).
    pub fn export_grid(&self, group: i64, path: &Path) -> Result<()> {
        let (img, first) = self.group_grid(group)?;
        grid::write_png(&img, &first, path)
    }

    /// The folder grids exported from the app go to (created when needed).
    pub fn exports_dir(&self) -> Result<PathBuf> {
        let dir = self.home.join(EXPORTS_DIR);
        fs::create_dir_all(&dir).map_err(io_err("cannot create folder", &dir))?;
        Ok(dir)
    }

    /// Runs SQLite's full integrity check; returns the problems found (empty when healthy).
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }
}

/// A PNG of `image` carrying A1111's `parameters` text and Sumi's JSON record, exactly as the
/// gallery stores it (for writing a generation to a file of the user's choice).
pub fn encode_generation_png(
    params: &GenerationParams,
    meta: &GenerationMeta,
    image: &RgbImage,
) -> Result<Vec<u8>> {
    let record = EmbeddedRecord {
        format: EMBEDDED_FORMAT,
        params: params.clone(),
        meta: meta.clone(),
        created_at: now_ms(),
    };
    encode_record_png(&record, image, Path::new("<output>"))
}

fn encode_record_png(record: &EmbeddedRecord, image: &RgbImage, path: &Path) -> Result<Vec<u8>> {
    let json = serde_json::to_string(record).map_err(|source| GalleryError::BadEmbedded {
        path: path.to_path_buf(),
        source,
    })?;
    let text = infotext::format(&record.params);
    png_meta::encode_png(image, &[(PARAMETERS_KEY, &text), (SUMI_KEY, &json)]).map_err(|source| {
        GalleryError::Png {
            path: path.to_path_buf(),
            source,
        }
    })
}
