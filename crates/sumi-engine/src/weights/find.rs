//! Finding the weight files of one component folder (`unet/`, `vae/`, `text_encoder/`, ...):
//! the plain file, its `fp16` variant, or the shards a `*.safetensors.index.json` lists, never
//! a file outside the folder.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The weight files of one component folder, e.g. `unet/`: plain, `fp16` variant or sharded.
pub fn find_weights(dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::model(
            dir,
            "folder is missing; is this a complete diffusers model folder?",
        ));
    }
    for name in [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ] {
        let path = dir.join(&name);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => return Ok(vec![path]),
            Ok(_) => {
                return Err(Error::model(
                    path,
                    "is not a regular file (a FIFO, socket or device?): put the weights file there",
                ))
            }
            Err(_) => {}
        }
    }
    for name in [
        format!("{stem}.safetensors.index.json"),
        format!("{stem}.safetensors.index.fp16.json"),
        format!("{stem}.fp16.safetensors.index.json"),
    ] {
        let index = dir.join(&name);
        if index.is_file() {
            return sharded(&index, dir);
        }
    }
    let pickled = ["bin", "ckpt", "pt"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file());
    Err(match pickled {
        Some(p) => Error::model(
            p,
            "only pickle weights found; Sumi never loads pickles (they can run code). Convert the model to safetensors first",
        ),
        None => Error::model(
            dir.join(format!("{stem}.safetensors")),
            format!("missing (neither {stem}.safetensors nor {stem}.fp16.safetensors is in the folder)"),
        ),
    })
}

fn sharded(index: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let text = crate::fileio::read_to_string(index, crate::fileio::MAX_CONFIG_BYTES)
        .map_err(|e| Error::model(index, e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(index, format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model(index, "no weight_map in the index"))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for f in map.values().filter_map(|v| v.as_str()) {
        if f.contains('/') || f.contains('\\') || f.contains("..") {
            return Err(Error::model(
                index,
                format!("shard name {f:?} points outside the folder"),
            ));
        }
        let p = dir.join(f);
        if !files.contains(&p) {
            if !p.is_file() {
                return Err(Error::model(p, "shard listed in the index is missing"));
            }
            files.push(p);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(dir: &Path, name: &str, shards: &[&str]) {
        let map: serde_json::Map<String, serde_json::Value> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("t{i}"), serde_json::Value::from(*s)))
            .collect();
        let json = serde_json::json!({ "weight_map": map });
        std::fs::write(dir.join(name), json.to_string()).unwrap();
    }

    #[test]
    fn plain_variant_and_sharded_files_are_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.fp16.safetensors"), b"x").unwrap();
        assert_eq!(
            find_weights(d.path(), "model").unwrap(),
            vec![d.path().join("model.fp16.safetensors")]
        );
        std::fs::write(d.path().join("model.safetensors"), b"x").unwrap();
        assert_eq!(
            find_weights(d.path(), "model").unwrap(),
            vec![d.path().join("model.safetensors")]
        );
        let s = tempfile::tempdir().unwrap();
        for f in ["a.safetensors", "b.safetensors"] {
            std::fs::write(s.path().join(f), b"x").unwrap();
        }
        index(
            s.path(),
            "model.safetensors.index.json",
            &["a.safetensors", "b.safetensors", "a.safetensors"],
        );
        assert_eq!(
            find_weights(s.path(), "model").unwrap(),
            vec![
                s.path().join("a.safetensors"),
                s.path().join("b.safetensors")
            ]
        );
    }

    #[test]
    fn shard_names_outside_the_folder_are_refused() {
        for bad in [
            "../secret.safetensors",
            "/etc/passwd",
            "sub/x.safetensors",
            "..\\x",
            "..",
        ] {
            let d = tempfile::tempdir().unwrap();
            index(d.path(), "model.safetensors.index.json", &[bad]);
            let e = find_weights(d.path(), "model").unwrap_err().to_string();
            assert!(e.contains("points outside the folder"), "{bad}: {e}");
        }
    }

    #[test]
    fn pickles_only_and_missing_weights_say_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.bin"), b"x").unwrap();
        let e = find_weights(d.path(), "model").unwrap_err().to_string();
        assert!(e.contains("never loads pickles"), "{e}");
        let e = find_weights(&d.path().join("absent"), "model")
            .unwrap_err()
            .to_string();
        assert!(e.contains("folder is missing"), "{e}");
    }
}
