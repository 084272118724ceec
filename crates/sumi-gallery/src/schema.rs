//! Opening the SQLite database and bringing its schema up to date with numbered migrations.
//!
//! Any number of processes may open the same file at once: every connection waits for locks
//! (busy timeout), and each migration runs in a `BEGIN IMMEDIATE` transaction that re-reads the
//! version first, so two processes opening a new or old gallery together apply it exactly once.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::error::{GalleryError, Result};

/// Migrations in order; `PRAGMA user_version` holds how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: generations, comparison groups, full-text index over the prompts.
    r#"
    CREATE TABLE generations (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at      INTEGER NOT NULL,
        prompt          TEXT    NOT NULL,
        negative_prompt TEXT    NOT NULL,
        seed            INTEGER NOT NULL,
        steps           INTEGER NOT NULL,
        cfg             REAL    NOT NULL,
        sampler         TEXT    NOT NULL,
        schedule        TEXT    NOT NULL,
        width           INTEGER NOT NULL,
        height          INTEGER NOT NULL,
        model_name      TEXT    NOT NULL,
        model_hash      TEXT,
        noise_source    TEXT    NOT NULL,
        engine_version  TEXT    NOT NULL,
        device          TEXT    NOT NULL,
        dtype           TEXT    NOT NULL,
        duration_ms     INTEGER NOT NULL,
        favourite       INTEGER NOT NULL DEFAULT 0,
        group_id        INTEGER,
        group_position  INTEGER,
        image_file      TEXT    NOT NULL UNIQUE,
        thumb_file      TEXT    NOT NULL
    );
    CREATE INDEX generations_created ON generations(created_at DESC, id DESC);
    CREATE INDEX generations_favourite ON generations(created_at DESC, id DESC) WHERE favourite = 1;
    CREATE INDEX generations_model ON generations(model_name, created_at DESC, id DESC);
    CREATE INDEX generations_sampler ON generations(sampler, created_at DESC, id DESC);
    CREATE INDEX generations_group ON generations(group_id, group_position) WHERE group_id IS NOT NULL;
    CREATE TABLE comparison_groups (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at INTEGER NOT NULL
    );
    CREATE VIRTUAL TABLE generations_fts USING fts5(
        prompt, negative_prompt,
        content = 'generations', content_rowid = 'id',
        prefix = '2 3'
    );
    CREATE TRIGGER generations_fts_insert AFTER INSERT ON generations BEGIN
        INSERT INTO generations_fts(rowid, prompt, negative_prompt)
        VALUES (new.id, new.prompt, new.negative_prompt);
    END;
    CREATE TRIGGER generations_fts_delete AFTER DELETE ON generations BEGIN
        INSERT INTO generations_fts(generations_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
    END;
    CREATE TRIGGER generations_fts_update AFTER UPDATE OF prompt, negative_prompt ON generations BEGIN
        INSERT INTO generations_fts(generations_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
        INSERT INTO generations_fts(rowid, prompt, negative_prompt)
        VALUES (new.id, new.prompt, new.negative_prompt);
    END;
    "#,
    // 2: small key/value state (the folder stamp that lets open skip the full folder scan).
    r#"
    CREATE TABLE gallery_state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 3: the content hash imports recognise an image by (SHA-256 of size and RGB8 pixels; NULL
    // for older rows until an import needs it), and the journal of file writes and removals in
    // progress, which tells the repair exactly what a crashed process left behind.
    r#"
    ALTER TABLE generations ADD COLUMN pixel_hash TEXT;
    CREATE INDEX generations_pixel_hash ON generations(pixel_hash) WHERE pixel_hash IS NOT NULL;
    CREATE INDEX generations_unhashed ON generations(seed) WHERE pixel_hash IS NULL;
    CREATE TABLE pending_files (
        image_file TEXT    PRIMARY KEY,
        thumb_file TEXT    NOT NULL,
        action     TEXT    NOT NULL CHECK (action IN ('add', 'delete')),
        pid        INTEGER NOT NULL,
        started_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 4: the settings that have no column of their own (every request field added since), as
    // one JSON object, so that a new field needs no migration; and the note an import left about
    // the settings it read (see `GenerationMeta::note`).
    r#"
    ALTER TABLE generations ADD COLUMN extra TEXT;
    ALTER TABLE generations ADD COLUMN note TEXT;
    "#,
    // 5: where the model and its separate parts were loaded from on this computer (JSON, see
    // `ModelFiles`), so a re-run finds them; kept out of the PNGs, which travel.
    r#"
    ALTER TABLE generations ADD COLUMN model_files TEXT;
    "#,
];

/// `PRAGMA application_id` of a Sumi gallery ("Sumi" in ASCII), telling it apart from other databases.
const APPLICATION_ID: i32 = 0x5375_6D69;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another process's lock before failing with "busy".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `f` again while SQLite answers "busy" or "locked" without having waited (switching
/// to WAL, or a lock held across a checkpoint), for up to [`BUSY_TIMEOUT`].
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Whether an error means another connection holds a lock.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction: it takes the write lock first (waiting for it),
/// so reads inside can never go stale and the commit never fails with "busy".
pub(crate) fn write_tx<T, E: From<rusqlite::Error>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    let tx =
        retry_busy(|| rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate))?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Opens (creating if needed) the database at `path` and migrates it to [`SCHEMA_VERSION`].
pub fn open(path: &Path) -> Result<Connection> {
    let classify = |e: rusqlite::Error| classify(path, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first statements read the header: a foreign or damaged file fails here. Another
    // process recovering the WAL after a crash holds it for a moment, and a reader's "busy"
    // there does not always wait: try again.
    let header = retry_busy(|| read_header(&conn)).map_err(classify)?;
    if header.version > 0 && header.app_id != APPLICATION_ID {
        return Err(GalleryError::DamagedDb {
            path: path.to_path_buf(),
            detail: format!(
                "it is an SQLite database of another program (application id {:#x})",
                header.app_id
            ),
        });
    }
    if header.version > SCHEMA_VERSION {
        return Err(GalleryError::NewerSchema {
            path: path.to_path_buf(),
            found: header.version,
            known: SCHEMA_VERSION,
        });
    }
    // Checked before the switch to WAL so that another program's file is left untouched.
    if header.version == 0 && header.objects > 0 {
        return Err(foreign(path, header.objects));
    }
    retry_busy(|| {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
    })
    .map_err(classify)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(classify)?;
    if header.version < SCHEMA_VERSION {
        migrate(&conn, path)?;
    }
    check_shape(&conn).map_err(|e| GalleryError::DamagedDb {
        path: path.to_path_buf(),
        detail: format!("a table the gallery needs is missing or wrong: {e}"),
    })?;
    Ok(conn)
}

/// Applies the missing migrations, each in its own write transaction with its version bump.
///
/// The version is read again inside each transaction: another process may have migrated
/// since this one looked, and then there is nothing left to do.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    loop {
        let applied = write_tx(conn, |tx| -> Result<bool> {
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version >= SCHEMA_VERSION {
                return Ok(false);
            }
            if version == 0 {
                check_empty(tx, path)?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            }
            tracing::info!(version = version + 1, "migrating gallery database");
            tx.execute_batch(MIGRATIONS[version as usize])?;
            tx.pragma_update(None, "user_version", version + 1)?;
            Ok(true)
        })
        .map_err(|e| match e {
            GalleryError::Db(e) => classify(path, e),
            other => other,
        })?;
        if !applied {
            return Ok(());
        }
    }
}

/// What the start of the database says about it.
struct Header {
    version: i64,
    app_id: i32,
    objects: i64,
}

/// Reads the schema version, application id and object count from one snapshot (read
/// separately, another process's first migration could land between them).
fn read_header(conn: &Connection) -> rusqlite::Result<Header> {
    let tx = conn.unchecked_transaction()?;
    let header = Header {
        version: tx.pragma_query_value(None, "user_version", |r| r.get(0))?,
        app_id: tx.pragma_query_value(None, "application_id", |r| r.get(0))?,
        objects: tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?,
    };
    tx.finish()?;
    Ok(header)
}

/// The error for another program's database that has no Sumi version.
fn foreign(path: &Path, objects: i64) -> GalleryError {
    GalleryError::DamagedDb {
        path: path.to_path_buf(),
        detail: format!(
            "it is an SQLite database of another program ({objects} objects, no Sumi schema version)"
        ),
    }
}

/// Fails unless a database without a Sumi version is empty (not another program's file).
fn check_empty(conn: &Connection, path: &Path) -> Result<()> {
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    match objects {
        0 => Ok(()),
        n => Err(foreign(path, n)),
    }
}

/// Fails when the tables the gallery needs are missing (a file that claims a version it lacks).
fn check_shape(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare("SELECT id, created_at, image_file, thumb_file, favourite, group_id FROM generations LIMIT 0")?;
    conn.prepare("SELECT rowid FROM generations_fts LIMIT 0")?;
    conn.prepare("SELECT id FROM comparison_groups LIMIT 0")?;
    conn.prepare("SELECT key, value FROM gallery_state LIMIT 0")?;
    conn.prepare("SELECT pixel_hash, extra, note FROM generations LIMIT 0")?;
    conn.prepare(
        "SELECT image_file, thumb_file, action, pid, started_at FROM pending_files LIMIT 0",
    )?;
    Ok(())
}

/// Reports corrupt or non-database files as [`GalleryError::DamagedDb`], other errors as they are.
fn classify(path: &Path, e: rusqlite::Error) -> GalleryError {
    let detail = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "the file is not an SQLite database",
        Some(ErrorCode::DatabaseCorrupt) => "SQLite reports the file as corrupt",
        _ => return GalleryError::Db(e),
    };
    GalleryError::DamagedDb {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_a_version_1_database_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO generations (created_at, prompt, negative_prompt, seed, steps, cfg, \
             sampler, schedule, width, height, model_name, noise_source, engine_version, device, \
             dtype, duration_ms, image_file, thumb_file) VALUES (1, 'old fox', '', 1, 20, 7, \
             'Euler', 'Karras', 8, 8, 'm', 'cpu', '0', 'cpu', 'f32', 0, 'a.png', 'a.jpg')",
            [],
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM generations_fts WHERE generations_fts MATCH 'fox'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 1);
        conn.execute("INSERT INTO gallery_state VALUES ('k', 'v')", [])
            .unwrap();
    }

    #[test]
    fn many_connections_create_and_migrate_one_new_database_at_once() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("gallery.db");
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        barrier.wait();
                        open(&path).unwrap()
                    });
                }
            });
            let conn = open(&path).unwrap();
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
        }
    }

    #[test]
    fn upgrading_to_version_3_keeps_rows_without_a_pixel_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO generations (created_at, prompt, negative_prompt, seed, steps, cfg, \
             sampler, schedule, width, height, model_name, noise_source, engine_version, device, \
             dtype, duration_ms, image_file, thumb_file) VALUES (1, 'p', '', 1, 20, 7, \
             'Euler', 'Karras', 8, 8, 'm', 'cpu', '0', 'cpu', 'f32', 0, 'a.png', 'a.jpg')",
            [],
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let unhashed: i64 = conn
            .query_row(
                "SELECT count(*) FROM generations WHERE pixel_hash IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unhashed, 1);
        let pending: i64 = conn
            .query_row("SELECT count(*) FROM pending_files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, 0);
    }

    #[test]
    fn a_database_claiming_a_version_without_its_tables_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE generations (id INTEGER);")
            .unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .unwrap();
        drop(conn);
        let err = open(&path).unwrap_err();
        assert!(matches!(err, GalleryError::DamagedDb { .. }), "{err}");
    }
}
