//! Queries over the `generations` table: insert, fetch, keyset-paged listing and full-text search.

use rusqlite::{params_from_iter, types::Value, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::record::{ComparisonSlot, Generation, GenerationMeta, GenerationParams};

/// Columns read back into a [`Generation`], in the order [`from_row`] expects.
const COLUMNS: &str = "g.id, g.created_at, g.prompt, g.negative_prompt, g.seed, g.steps, g.cfg, \
    g.sampler, g.schedule, g.width, g.height, g.model_name, g.model_hash, g.noise_source, \
    g.engine_version, g.device, g.dtype, g.duration_ms, g.favourite, g.group_id, g.group_position, \
    g.image_file, g.thumb_file, g.extra, g.note, g.model_files";

/// Which generations a listing or search includes; empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Only favourites.
    pub favourites_only: bool,
    /// Only this model name.
    pub model: Option<String>,
    /// Only this sampler (A1111 display name).
    pub sampler: Option<String>,
    /// Only this comparison group.
    pub group: Option<i64>,
    /// Only generations created at or after this time (Unix ms).
    pub created_from: Option<i64>,
    /// Only generations created before this time (Unix ms).
    pub created_before: Option<i64>,
}

/// Where a page ends; pass it back to get the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Cursor {
    /// `created_at` of the last item of the previous page.
    #[ts(type = "number")]
    pub created_at: i64,
    /// `id` of the last item of the previous page.
    #[ts(type = "number")]
    pub id: i64,
}

/// One page of generations and the cursor for the next one (`None` at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Page {
    /// The generations, newest first.
    pub items: Vec<Generation>,
    /// Cursor for the following page, if there may be one.
    pub next: Option<Cursor>,
}

/// A row about to be inserted.
pub(crate) struct NewRow<'a> {
    pub params: &'a GenerationParams,
    pub meta: &'a GenerationMeta,
    pub created_at: i64,
    pub image_file: &'a str,
    pub thumb_file: &'a str,
    /// [`crate::files::pixel_hash`] of the picture, when known.
    pub pixel_hash: Option<&'a str>,
}

/// Inserts a generation and returns its id.
pub(crate) fn insert(conn: &Connection, row: &NewRow) -> rusqlite::Result<i64> {
    let p = row.params;
    let m = row.meta;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO generations (created_at, prompt, negative_prompt, seed, steps, cfg, sampler, \
         schedule, width, height, model_name, model_hash, noise_source, engine_version, device, \
         dtype, duration_ms, favourite, group_id, group_position, image_file, thumb_file, \
         pixel_hash, extra, note) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, 0, \
         ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
    )?;
    stmt.execute(rusqlite::params![
        row.created_at,
        p.prompt,
        p.negative_prompt,
        // SQLite integers are signed: store the seed's bits.
        p.seed as i64,
        p.steps,
        p.cfg,
        p.sampler,
        p.schedule,
        p.width,
        p.height,
        p.model_name,
        p.model_hash,
        p.noise_source,
        m.engine_version,
        m.device,
        m.dtype,
        m.duration_ms as i64,
        m.comparison.map(|c| c.group),
        m.comparison.map(|c| c.position),
        row.image_file,
        row.thumb_file,
        row.pixel_hash,
        extra_json(p),
        m.note,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The fields of `p` that have no column of their own, as a JSON object (`None` when there are
/// none, or all have their default values).
fn extra_json(p: &GenerationParams) -> Option<String> {
    let serde_json::Value::Object(mut all) = serde_json::to_value(p).ok()? else {
        return None;
    };
    all.retain(|k, _| !COLUMN_FIELDS.contains(&k.as_str()));
    let defaults = serde_json::to_value(GenerationParams::default()).ok()?;
    all.retain(|k, v| defaults.get(k) != Some(v));
    (!all.is_empty()).then(|| serde_json::Value::Object(all).to_string())
}

/// The `GenerationParams` fields stored in columns of their own.
const COLUMN_FIELDS: &[&str] = &[
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "cfg",
    "sampler",
    "schedule",
    "width",
    "height",
    "model_name",
    "model_hash",
    "noise_source",
];

/// `base` (read from the columns) with the fields of the `extra` JSON of its row.
fn with_extra(base: GenerationParams, extra: Option<String>) -> GenerationParams {
    let Some(extra) = extra else {
        return base;
    };
    let (Ok(serde_json::Value::Object(mut all)), Ok(serde_json::Value::Object(more))) = (
        serde_json::to_value(&base),
        serde_json::from_str::<serde_json::Value>(&extra),
    ) else {
        tracing::warn!("a gallery row's extra settings are not a JSON object; ignoring them");
        return base;
    };
    for (k, v) in more {
        if !COLUMN_FIELDS.contains(&k.as_str()) {
            all.insert(k, v);
        }
    }
    serde_json::from_value(serde_json::Value::Object(all)).unwrap_or_else(|e| {
        tracing::warn!("a gallery row's extra settings do not read ({e}); ignoring them");
        base
    })
}

/// Reads one row selected with [`COLUMNS`].
fn from_row(r: &Row) -> rusqlite::Result<Generation> {
    let group: Option<i64> = r.get(19)?;
    let position: Option<i64> = r.get(20)?;
    let extra: Option<String> = r.get(23)?;
    Ok(Generation {
        id: r.get(0)?,
        created_at: r.get(1)?,
        params: with_extra(
            GenerationParams {
                prompt: r.get(2)?,
                negative_prompt: r.get(3)?,
                seed: r.get::<_, i64>(4)? as u64,
                steps: r.get(5)?,
                cfg: r.get(6)?,
                sampler: r.get(7)?,
                schedule: r.get(8)?,
                width: r.get(9)?,
                height: r.get(10)?,
                model_name: r.get(11)?,
                model_hash: r.get(12)?,
                noise_source: r.get(13)?,
                ..Default::default()
            },
            extra,
        ),
        meta: GenerationMeta {
            engine_version: r.get(14)?,
            device: r.get(15)?,
            dtype: r.get(16)?,
            duration_ms: r.get::<_, i64>(17)? as u64,
            comparison: group.map(|group| ComparisonSlot {
                group,
                position: position.unwrap_or(0),
            }),
            note: r.get(24)?,
        },
        favourite: r.get(18)?,
        model_files: r
            .get::<_, Option<String>>(25)?
            .and_then(|json| serde_json::from_str(&json).ok()),
        image_file: r.get(21)?,
        thumb_file: r.get(22)?,
    })
}

/// Fetches one generation by id.
pub(crate) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Generation>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM generations g WHERE g.id = ?1"
    ))?
    .query_row([id], from_row)
    .optional()
}

/// Fetches the generation whose image file is `name`.
pub(crate) fn by_image_file(conn: &Connection, name: &str) -> rusqlite::Result<Option<Generation>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM generations g WHERE g.image_file = ?1"
    ))?
    .query_row([name], from_row)
    .optional()
}

/// Appends the filter's SQL conditions and their values.
fn push_filter(filter: &Filter, conds: &mut Vec<&'static str>, args: &mut Vec<Value>) {
    if filter.favourites_only {
        conds.push("g.favourite = 1");
    }
    if let Some(model) = &filter.model {
        conds.push("g.model_name = ?");
        args.push(Value::Text(model.clone()));
    }
    if let Some(sampler) = &filter.sampler {
        conds.push("g.sampler = ?");
        args.push(Value::Text(sampler.clone()));
    }
    if let Some(group) = filter.group {
        conds.push("g.group_id = ?");
        args.push(Value::Integer(group));
    }
    if let Some(from) = filter.created_from {
        conds.push("g.created_at >= ?");
        args.push(Value::Integer(from));
    }
    if let Some(before) = filter.created_before {
        conds.push("g.created_at < ?");
        args.push(Value::Integer(before));
    }
}

/// The SQL `LIMIT` for a page size: 0 means no limit (SQLite's -1).
fn sql_limit(limit: usize) -> Value {
    match limit {
        0 => Value::Integer(-1),
        n => Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

/// Runs a paged query and builds the page with its next cursor.
fn run_page(
    conn: &Connection,
    sql: &str,
    args: Vec<Value>,
    limit: usize,
) -> rusqlite::Result<Page> {
    let mut stmt = conn.prepare_cached(sql)?;
    let items = stmt
        .query_map(params_from_iter(args), from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = (items.len() == limit && limit > 0)
        .then(|| items.last())
        .flatten()
        .map(|g| Cursor {
            created_at: g.created_at,
            id: g.id,
        });
    Ok(Page { items, next })
}

/// Lists generations newest first (by creation time, then id), after `cursor`.
pub(crate) fn list(
    conn: &Connection,
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: usize,
) -> rusqlite::Result<Page> {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    push_filter(filter, &mut conds, &mut args);
    if let Some(c) = cursor {
        conds.push("(g.created_at, g.id) < (?, ?)");
        args.push(Value::Integer(c.created_at));
        args.push(Value::Integer(c.id));
    }
    let mut sql = format!("SELECT {COLUMNS} FROM generations g");
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(" ORDER BY g.created_at DESC, g.id DESC LIMIT ?");
    args.push(sql_limit(limit));
    run_page(conn, &sql, args, limit)
}

/// How many generations the filter includes.
pub(crate) fn count(conn: &Connection, filter: &Filter) -> rusqlite::Result<u64> {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    push_filter(filter, &mut conds, &mut args);
    let mut sql = "SELECT count(*) FROM generations g".to_string();
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(args), |r| r.get(0))?;
    Ok(n as u64)
}

/// Full-text search over prompts, most recently added first (by id), after `cursor`'s id.
///
/// `fts_query` must come from [`fts_query`].
pub(crate) fn search(
    conn: &Connection,
    fts_query: &str,
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: usize,
) -> rusqlite::Result<Page> {
    let mut conds = vec!["generations_fts MATCH ?"];
    let mut args = vec![Value::Text(fts_query.to_string())];
    push_filter(filter, &mut conds, &mut args);
    if let Some(c) = cursor {
        conds.push("f.rowid < ?");
        args.push(Value::Integer(c.id));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM generations_fts f JOIN generations g ON g.id = f.rowid \
         WHERE {} ORDER BY f.rowid DESC LIMIT ?",
        conds.join(" AND ")
    );
    args.push(sql_limit(limit));
    run_page(conn, &sql, args, limit)
}

/// Turns user text into a safe FTS5 query: every word becomes a quoted prefix term, all required.
///
/// Returns `None` when the text holds no searchable word.
pub fn fts_query(user_text: &str) -> Option<String> {
    let terms: Vec<String> = user_text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\"*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Sets or clears the favourite flag; returns whether the row exists.
pub(crate) fn set_favourite(conn: &Connection, id: i64, favourite: bool) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("UPDATE generations SET favourite = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, favourite])?;
    Ok(n == 1)
}

/// Records where a generation's model came from; returns whether the row exists.
pub(crate) fn set_model_files(conn: &Connection, id: i64, json: &str) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("UPDATE generations SET model_files = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, json])?;
    Ok(n == 1)
}

/// Deletes a row; returns whether it existed.
pub(crate) fn delete(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM generations WHERE id = ?1", [id])? == 1)
}

/// All generations of a comparison group, by position.
pub(crate) fn group(conn: &Connection, group: i64) -> rusqlite::Result<Vec<Generation>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM generations g WHERE g.group_id = ?1 \
         ORDER BY g.group_position, g.id"
    ))?
    .query_map([group], from_row)?
    .collect()
}

/// Creates a new comparison group and returns its id.
pub(crate) fn new_group(conn: &Connection, now_ms: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO comparison_groups (created_at) VALUES (?1)",
        [now_ms],
    )?;
    Ok(conn.last_insert_rowid())
}

/// `(id, image_file, thumb_file)` of every row, for reconciliation.
pub(crate) fn all_files(conn: &Connection) -> rusqlite::Result<Vec<(i64, String, String)>> {
    conn.prepare("SELECT id, image_file, thumb_file FROM generations")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// Reads a value of the `gallery_state` table.
pub(crate) fn get_state(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM gallery_state WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

/// Writes a value of the `gallery_state` table.
pub(crate) fn set_state(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO gallery_state (key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}

/// The id of the row that uses an image file name, if any.
pub(crate) fn id_of_file(conn: &Connection, image_file: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM generations WHERE image_file = ?1")?
        .query_row([image_file], |r| r.get(0))
        .optional()
}

/// Generations whose picture has this [`crate::files::pixel_hash`].
pub(crate) fn with_pixel_hash(conn: &Connection, hash: &str) -> rusqlite::Result<Vec<Generation>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM generations g WHERE g.pixel_hash = ?1 ORDER BY g.id"
    ))?
    .query_map([hash], from_row)?
    .collect()
}

/// Generations with this seed whose pixel hash was never computed (rows older than the hash).
pub(crate) fn unhashed_with_seed(
    conn: &Connection,
    seed: u64,
) -> rusqlite::Result<Vec<Generation>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM generations g WHERE g.pixel_hash IS NULL AND g.seed = ?1 \
         ORDER BY g.id"
    ))?
    .query_map([seed as i64], from_row)?
    .collect()
}

/// Records a row's pixel hash.
pub(crate) fn set_pixel_hash(conn: &Connection, id: i64, hash: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE generations SET pixel_hash = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, hash])?;
    Ok(())
}
