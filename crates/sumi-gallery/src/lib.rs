//! Sumi's gallery: every generation kept in SQLite with its PNG and thumbnail, searchable,
//! re-runnable and readable by other tools (A1111 `parameters` text in every PNG).
//!
//! Layout under the gallery home: `gallery.db` (SQLite, WAL), `gallery.lock` (the writers'
//! lock), `images/` (PNGs), `thumbs/` (JPEG thumbnails), `unreadable/` (files found without a
//! row that could not be read) and `exports/` (grids exported from the app). No command may
//! write into the first five, even when told to overwrite: see [`Gallery::is_managed_path`].
//!
//! Many processes at once (the app and any number of CLIs) may use one gallery:
//! - every connection waits for SQLite's locks, write transactions start with `BEGIN IMMEDIATE`,
//!   and migrations run in such transactions after re-reading the version;
//! - a new image is written under a unique temp name, fsynced and renamed to a name first
//!   claimed in the database's journal (`pending_files`); its row is inserted and its claim
//!   cleared in one transaction, so a row only ever names a complete file. A delete removes the
//!   row and journals its files in one transaction, then removes the files;
//! - the repair pass at open (files without rows, rows without files, temp files, thumbnails)
//!   runs only while holding the writers' lock `gallery.lock` exclusively, which every add,
//!   import and delete holds shared for its whole duration: it never sees a write half done.
//!
//! Open repairs only when needed: when the journal holds an entry (a write in progress, or one
//! a crash interrupted) or when the folders' modification times differ from those the gallery
//! last recorded (files changed by hand). When other processes are writing at that moment the
//! repair is left to a later open ([`OpenReport::busy`]). Where the file system cannot lock,
//! the repair touches only files older than [`STALE_AFTER`]. Limit: a file changed by hand
//! while another process writes may go unnoticed until [`Gallery::rescan`]; crashes are
//! always found through the journal.

#![warn(missing_docs)]

pub mod comfy;
pub mod error;
mod files;
pub mod grid;
mod import;
pub mod infotext;
mod journal;
mod lock;
mod managed;
pub mod png_meta;
mod reconcile;
pub mod record;
mod schema;
pub mod sources;
mod store;
mod write;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use image::RgbImage;
use rusqlite::Connection;

pub use error::{GalleryError, Result};
pub use files::STALE_AFTER;
pub use import::ImportReport;
pub use managed::{is_inside_a_gallery, is_managed_by};
pub use reconcile::OpenReport;
pub use record::{
    ComparisonSlot, EmbeddedRecord, Generation, GenerationMeta, GenerationParams, HiresParams,
    ModelFiles, NamedHash, SourceParams,
};
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
/// Folder reserved for source images the gallery stores (managed like `images/`).
pub const SOURCES_DIR: &str = "sources";
/// The writers' lock file inside the gallery home (see the crate documentation).
pub const LOCK_FILE: &str = "gallery.lock";
/// Environment variable that relocates all of Sumi's data.
pub const HOME_ENV: &str = "SUMI_HOME";
/// `gallery_state` key of the folder stamp.
const STAMP_KEY: &str = "folder_stamp";
/// How long [`Gallery::rescan`] waits for other processes' writes to finish.
const RESCAN_WAIT: Duration = Duration::from_secs(30);

/// Where Sumi keeps its data: `$SUMI_HOME` if set, else the platform's data folder for Sumi.
pub fn default_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    directories::ProjectDirs::from("app", "sumi", "Sumi")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(GalleryError::NoHome)
}

/// Reads a whole file if it is a regular file of at most 1 GiB, refusing folders, FIFOs,
/// sockets and devices without blocking on them ([`GalleryError::NotRegularFile`]); for
/// serving or comparing gallery images safely.
pub fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    files::read_regular(path)
}

/// Decodes a PNG file to RGB the way the gallery does: regular files only, every chunk's
/// checksum checked first, sides of at most 16384 pixels, and errors in plain words.
pub fn load_png(path: &Path) -> Result<RgbImage> {
    import::decode_rgb(path, &files::read_regular(path)?)
}

/// A check of imported settings against the generator's rules, given by the caller (the gallery
/// does not know the engine): one sentence per setting that cannot be used as it is, which the
/// import adds to the generation's note (see [`Gallery::import_with`]).
pub type SettingsCheck = dyn Fn(&GenerationParams) -> Vec<String>;

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
    /// `home` with symlinks resolved, for [`Gallery::is_managed_path`].
    real_home: PathBuf,
    images: PathBuf,
    thumbs: PathBuf,
    lock: lock::WriterLock,
    report: OpenReport,
}

impl Gallery {
    /// Opens (creating if needed) the gallery under `home`, migrating and, when needed and no
    /// other process is writing, repairing it (see [`Gallery::open_report`]).
    pub fn open(home: &Path) -> Result<Self> {
        let images = home.join(IMAGES_DIR);
        let thumbs = home.join(THUMBS_DIR);
        for dir in [home, &images, &thumbs] {
            fs::create_dir_all(dir).map_err(io_err("cannot create folder", dir))?;
        }
        let lock = lock::WriterLock::open(&home.join(LOCK_FILE))?;
        let conn = schema::open(&home.join(DB_FILE))?;
        let real_home = fs::canonicalize(home).map_err(io_err("cannot resolve folder", home))?;
        let mut gallery = Gallery {
            conn,
            home: home.to_path_buf(),
            real_home,
            images,
            thumbs,
            lock,
            report: OpenReport::default(),
        };
        if gallery.needs_repair()? {
            gallery.repair(Duration::ZERO, false)?;
        }
        Ok(gallery)
    }

    /// Whether a write was interrupted (or is in progress) or the folders changed by hand.
    fn needs_repair(&self) -> Result<bool> {
        if journal::any(&self.conn)? {
            return Ok(true);
        }
        let stamp = files::folder_stamp(&self.images, &self.thumbs)?;
        Ok(store::get_state(&self.conn, STAMP_KEY)?.as_deref() != Some(stamp.as_str()))
    }

    /// Scans the folders and reconciles them with the rows, waiting up to 30 s for other
    /// processes' writes to finish (open does this by itself when needed and nobody writes).
    pub fn rescan(&mut self) -> Result<&OpenReport> {
        self.repair(RESCAN_WAIT, true)?;
        if self.report.busy {
            return Err(GalleryError::Busy(self.home.clone()));
        }
        Ok(&self.report)
    }

    /// Runs the repair that open runs, when it is needed and no other process is writing right
    /// now; for a long-running app whose open found the gallery busy ([`OpenReport::busy`]).
    pub fn repair_if_needed(&mut self) -> Result<&OpenReport> {
        self.report = OpenReport::default();
        if self.needs_repair()? {
            self.repair(Duration::ZERO, false)?;
        }
        Ok(&self.report)
    }

    /// Takes the writers' lock exclusively (trying for `wait`) and reconciles; without the lock
    /// it records that it was busy. `always` scans even when nothing seems to need it.
    fn repair(&mut self, wait: Duration, always: bool) -> Result<()> {
        let quiet = match self.lock.exclusive_within(wait) {
            lock::Exclusive::Held(held) => Some(held),
            lock::Exclusive::Busy => {
                tracing::info!("other Sumi processes are saving images; repair left for later");
                self.report = OpenReport {
                    busy: true,
                    ..OpenReport::default()
                };
                return Ok(());
            }
            lock::Exclusive::Unsupported => None,
        };
        // What looked like a need may have been another process's write, finished by now.
        if quiet.is_some() && !always && !self.needs_repair()? {
            self.report = OpenReport::default();
            return Ok(());
        }
        let unreadable = self.home.join(UNREADABLE_DIR);
        let dirs = reconcile::Dirs {
            images: &self.images,
            thumbs: &self.thumbs,
            unreadable: &unreadable,
        };
        let report = reconcile::reconcile(&self.conn, &dirs, quiet.is_some())?;
        if report.left_for_later.is_empty() {
            let stamp = files::folder_stamp(&self.images, &self.thumbs)?;
            store::set_state(&self.conn, STAMP_KEY, &stamp)?;
        }
        drop(quiet);
        if !report.is_clean() {
            tracing::warn!(?report, "gallery repaired");
        }
        self.report = report;
        Ok(())
    }

    /// Records the folders' current modification times as the gallery's own (inside a write
    /// transaction, after the gallery changed them).
    fn stamp(&self, tx: &Connection) -> Result<()> {
        let stamp = files::folder_stamp(&self.images, &self.thumbs)?;
        Ok(store::set_state(tx, STAMP_KEY, &stamp)?)
    }

    /// Keeps a source picture (init image or mask) in `sources/` under the SHA-256 of its
    /// bytes, written atomically and never overwritten; returns the name.
    pub fn store_source(&self, bytes: &[u8]) -> Result<String> {
        sources::store(&self.home.join(SOURCES_DIR), bytes)
    }

    /// The bytes of source picture `name`, checked against the name.
    pub fn read_source(&self, name: &str) -> Result<Vec<u8>> {
        sources::read(&self.home.join(SOURCES_DIR), name)
    }

    /// The generation whose image file is `path` (a file in this gallery's `images/`), if any.
    pub fn generation_of_file(&self, path: &Path) -> Result<Option<Generation>> {
        if !self.is_managed_path(path) {
            return Ok(None);
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Ok(None);
        };
        Ok(store::by_image_file(&self.conn, name)?)
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

    /// Fetches one generation.
    pub fn get(&self, id: i64) -> Result<Generation> {
        store::get(&self.conn, id)?.ok_or(GalleryError::NotFound(id))
    }

    /// Lists generations newest first, `limit` at a time (0: all of them); pass the returned
    /// cursor for more.
    pub fn list(&self, filter: &Filter, cursor: Option<Cursor>, limit: usize) -> Result<Page> {
        Ok(store::list(&self.conn, filter, cursor, limit)?)
    }

    /// How many generations the filter includes (e.g. for "1,234 images").
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        Ok(store::count(&self.conn, filter)?)
    }

    /// Searches prompts and negative prompts (every word, as a prefix), most recently added first.
    ///
    /// Text with no searchable word lists everything, as [`Gallery::list`] does. A `limit` of 0
    /// returns every match.
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

    /// Records where the model that made generation `id` was loaded from on this computer.
    pub fn set_model_files(&self, id: i64, files: &ModelFiles) -> Result<()> {
        // Strings, options and lists only: serialising cannot fail.
        let json = serde_json::to_string(files).unwrap_or_default();
        match store::set_model_files(&self.conn, id, &json)? {
            true => Ok(()),
            false => Err(GalleryError::NotFound(id)),
        }
    }

    /// The exact request that made a generation, to run it again.
    pub fn rerun(&self, id: i64) -> Result<GenerationParams> {
        Ok(self.get(id)?.params)
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
                let image = load_png(&self.image_path(g))?;
                Ok(grid::Cell { image, label })
            })
            .collect::<Result<Vec<_>>>()?;
        let img = grid::compose(&cells, grid::columns(&params), &grid::header(&params));
        Ok((img, (*first).clone()))
    }

    /// Writes a comparison group's labelled grid to `path` (atomically, with `parameters` text);
    /// refuses paths among the gallery's own files ([`GalleryError::ManagedPath`]).
    pub fn export_grid(&self, group: i64, path: &Path) -> Result<()> {
        self.check_output_path(path)?;
        let (img, first) = self.group_grid(group)?;
        grid::write_png(&img, &first, path)
    }

    /// Whether writing to `path` would write into this gallery's own files (or another
    /// gallery's): its database and `-wal`/`-shm`/`-journal` files, its lock file, or anything
    /// in `images/`, `thumbs/`, `unreadable/` or `sources/`. Symlinks are resolved (also for a
    /// file or folders that do not exist yet) and hard links into the gallery are recognised.
    /// Every command that writes a user-chosen path must check it first, even with `--force`.
    pub fn is_managed_path(&self, path: &Path) -> bool {
        managed::is_managed(&self.real_home, path)
    }

    /// [`Gallery::is_managed_path`] as an error that says what to do.
    pub fn check_output_path(&self, path: &Path) -> Result<()> {
        match self.is_managed_path(path) {
            true => Err(GalleryError::ManagedPath(path.to_path_buf())),
            false => Ok(()),
        }
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
