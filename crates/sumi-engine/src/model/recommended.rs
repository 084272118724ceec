//! A model folder's own recommended settings: an optional `sumi.json` next to
//! `model_index.json`, like the "recommended settings" on a model's download page:
//!
//! ```json
//! { "defaults": { "cfg": 4, "steps": 20, "sampler": "DPM++ 2M", "schedule": "Karras", "clip_skip": 2 } }
//! ```
//!
//! Every field of `defaults` is optional; the ones given replace what the model's family implies.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sampling::table;
use crate::{Error, Result};

/// The file name looked for in a model folder.
pub const FILE: &str = "sumi.json";

/// Settings a model recommends for new requests, checked when it loads.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Recommended {
    pub steps: Option<u32>,
    pub cfg: Option<f64>,
    /// A sampler's display name from the sampler table.
    pub sampler: Option<&'static str>,
    /// A schedule's display name from the schedule table.
    pub schedule: Option<&'static str>,
    /// Clip skip (many SD 1.x anime models are made for 2).
    pub clip_skip: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    defaults: Defaults,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    steps: Option<u32>,
    cfg: Option<f64>,
    sampler: Option<String>,
    schedule: Option<String>,
    clip_skip: Option<u32>,
}

/// Reads `dir/sumi.json`: none when the folder has no such file, an error naming the file and
/// the field when it is malformed or names a sampler, schedule or value Sumi does not have.
pub fn read(dir: &Path) -> Result<Option<Recommended>> {
    let path = dir.join(FILE);
    let text = match crate::fileio::read_to_string(&path, crate::fileio::MAX_CONFIG_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::model(&path, e.to_string())),
    };
    let bad = |reason: String| Error::model(&path, format!("{reason}; fix or delete this file"));
    let file: File = serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let d = file.defaults;
    if d.steps == Some(0) {
        return Err(bad("defaults.steps must be at least 1".into()));
    }
    if let Some(cfg) = d.cfg.filter(|c| !c.is_finite() || *c < 0.0) {
        return Err(bad(format!("defaults.cfg must be 0 or more, not {cfg}")));
    }
    if let Some(n) = d.clip_skip {
        crate::text::check_clip_skip(Some(n))
            .map_err(|e| bad(format!("defaults.clip_skip: {e}")))?;
    }
    let sampler = match d.sampler.as_deref() {
        Some(name) => Some(table::sampler(name).map_err(|e| bad(e.to_string()))?.name),
        None => None,
    };
    let schedule = match d.schedule.as_deref() {
        Some(name) => Some(table::schedule(name).map_err(|e| bad(e.to_string()))?.name),
        None => None,
    };
    Ok(Some(Recommended {
        steps: d.steps,
        cfg: d.cfg,
        sampler,
        schedule,
        clip_skip: d.clip_skip,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        dir
    }

    #[test]
    fn a_folder_without_the_file_recommends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn names_resolve_to_the_tables_display_names() {
        let dir =
            folder_with(r#"{"defaults": {"cfg": 4, "sampler": "euler a", "schedule": "karras"}}"#);
        let r = read(dir.path()).unwrap().unwrap();
        assert_eq!(r.cfg, Some(4.0));
        assert_eq!(r.steps, None);
        assert_eq!(r.sampler, Some("Euler a"));
        assert_eq!(r.schedule, Some("Karras"));
        assert_eq!(r.clip_skip, None);
        let dir = folder_with(r#"{"defaults": {"clip_skip": 2}}"#);
        assert_eq!(read(dir.path()).unwrap().unwrap().clip_skip, Some(2));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, says) in [
            (r#"{"defaults": {"cfg": 4"#, "invalid JSON"),
            (
                r#"{"defaults": {"guidance": 4}}"#,
                "unknown field `guidance`",
            ),
            (r#"{"defaults": {"steps": 0}}"#, "steps must be at least 1"),
            (r#"{"defaults": {"clip_skip": 0}}"#, "clip_skip"),
            (r#"{"defaults": {"cfg": -1}}"#, "cfg must be 0 or more"),
            (r#"{"defaults": {"sampler": "Euler z"}}"#, "Euler z"),
            (r#"{"defaults": {"schedule": "Cosine-ish"}}"#, "Cosine-ish"),
        ] {
            let dir = folder_with(text);
            let e = read(dir.path()).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(FILE), "{text}: {e}");
        }
    }
}
