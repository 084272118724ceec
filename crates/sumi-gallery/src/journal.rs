//! The journal of file writes and removals in progress (`pending_files`).
//!
//! An add first claims its file name here (committed before the file exists), and the
//! transaction that inserts its row also clears the claim. A delete removes the row and records
//! its files here in one transaction, then removes the files and clears the entry. An entry
//! that outlives its process says exactly which files a crash left behind, and that a file
//! being deleted must not be brought back as an "image without row".

use rusqlite::{Connection, OptionalExtension};

use crate::{error::Result, files, now_ms, schema::write_tx, store};

/// What an entry was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Writing a new image and thumbnail.
    Add,
    /// Removing the files of a deleted row.
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Delete => "delete",
        }
    }
}

/// One journal entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The image file name.
    pub image_file: String,
    /// The thumbnail file name.
    pub thumb_file: String,
    /// What was in progress.
    pub action: Action,
    /// When it started (Unix ms).
    pub started_at: i64,
}

/// Records an entry (inside the caller's transaction).
pub(crate) fn record(
    conn: &Connection,
    image_file: &str,
    thumb_file: &str,
    action: Action,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO pending_files (image_file, thumb_file, action, pid, started_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        image_file,
        thumb_file,
        action.as_str(),
        std::process::id(),
        now_ms()
    ])?;
    Ok(())
}

/// Clears an entry.
pub(crate) fn clear(conn: &Connection, image_file: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM pending_files WHERE image_file = ?1")?
        .execute([image_file])?;
    Ok(())
}

/// Whether any entry exists (a write in progress, or one that a crash interrupted).
pub(crate) fn any(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM pending_files LIMIT 1", [], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Every entry, oldest first.
pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<Entry>> {
    conn.prepare(
        "SELECT image_file, thumb_file, action, started_at FROM pending_files ORDER BY started_at",
    )?
    .query_map([], |r| {
        let action: String = r.get(2)?;
        Ok(Entry {
            image_file: r.get(0)?,
            thumb_file: r.get(1)?,
            action: if action == "delete" {
                Action::Delete
            } else {
                Action::Add
            },
            started_at: r.get(3)?,
        })
    })?
    .collect()
}

/// Claims a fresh image file name (and its thumbnail's) for an add: no row, no journal entry
/// and no file may use it. Returns `(image_file, thumb_file)`.
pub(crate) fn claim_name(
    conn: &Connection,
    created_at: i64,
    images: &std::path::Path,
) -> Result<(String, String)> {
    loop {
        let image_file = format!("{}.png", files::unique_stem(created_at));
        let thumb_file = files::thumb_name(&image_file);
        if files::entry_exists(&images.join(&image_file)) {
            continue;
        }
        let claimed = write_tx(conn, |tx| -> Result<bool> {
            let taken = store::id_of_file(tx, &image_file)?.is_some()
                || tx
                    .prepare_cached("SELECT 1 FROM pending_files WHERE image_file = ?1")?
                    .exists([&image_file])?;
            if !taken {
                record(tx, &image_file, &thumb_file, Action::Add)?;
            }
            Ok(!taken)
        })?;
        if claimed {
            return Ok((image_file, thumb_file));
        }
    }
}
