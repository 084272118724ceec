//! Reading a component's JSON config, naming the file on failure.

use std::path::Path;

use crate::{Error, Result};

/// Reads and parses a component's JSON config, naming the file on failure.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = crate::fileio::read_to_string(path, crate::fileio::MAX_CONFIG_BYTES).map_err(
        |e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::model(path, "missing; is this a complete diffusers model folder?")
            }
            _ => Error::model(path, e.to_string()),
        },
    )?;
    serde_json::from_str(&text).map_err(|e| Error::model(path, format!("invalid config: {e}")))
}
