//! The `sumi://` protocol: serves gallery images and thumbnails to the page, and nothing else.
//!
//! Accepted paths: `/image/<id>`, `/thumb/<id>` (looked up in the gallery) and
//! `/images/<file>`, `/thumbs/<file>` where `<file>` is a plain file name inside that folder.

use std::path::{Path, PathBuf};

use sumi_gallery::{Gallery, IMAGES_DIR, THUMBS_DIR};

/// Why a request for a file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The path is not one of the accepted shapes.
    #[error("not a gallery file: {0}")]
    BadPath(String),
    /// No such gallery entry or file.
    #[error("not found: {0}")]
    NotFound(String),
}

/// Which of the two gallery folders a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Full-size PNGs.
    Image,
    /// JPEG thumbnails.
    Thumb,
}

/// What a request path names: a gallery id or a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A gallery entry by id.
    Id(Kind, i64),
    /// A file by its (checked) name.
    File(Kind, String),
}

/// A file name is acceptable when it is one plain component: no separators, no `..`, no
/// leading dot, only characters the gallery itself uses in names.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses a request path (already percent-decoded or not: `%` is never accepted).
pub fn parse(path: &str) -> Result<Target, ProtocolError> {
    let bad = || ProtocolError::BadPath(path.to_string());
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let (head, tail) = rest.split_once('/').ok_or_else(bad)?;
    let (kind, by_id) = match head {
        "image" => (Kind::Image, true),
        "thumb" => (Kind::Thumb, true),
        "images" => (Kind::Image, false),
        "thumbs" => (Kind::Thumb, false),
        _ => return Err(bad()),
    };
    if by_id {
        let id = tail.parse::<i64>().map_err(|_| bad())?;
        if id <= 0 {
            return Err(bad());
        }
        Ok(Target::Id(kind, id))
    } else if valid_file_name(tail) {
        Ok(Target::File(kind, tail.to_string()))
    } else {
        Err(bad())
    }
}

/// The file on disk a target names, always inside `home/images` or `home/thumbs`.
pub fn resolve(gallery: &Gallery, target: &Target) -> Result<PathBuf, ProtocolError> {
    let path = match target {
        Target::Id(kind, id) => {
            let g = gallery
                .get(*id)
                .map_err(|_| ProtocolError::NotFound(format!("gallery entry {id}")))?;
            match kind {
                Kind::Image => gallery.image_path(&g),
                Kind::Thumb => gallery.thumb_path(&g),
            }
        }
        Target::File(kind, name) => folder(gallery.home(), *kind).join(name),
    };
    // Belt and braces: whatever the lookup returned must still sit directly in its folder.
    let kind = match target {
        Target::Id(k, _) | Target::File(k, _) => *k,
    };
    let dir = folder(gallery.home(), kind);
    let inside = path.parent() == Some(dir.as_path())
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(valid_file_name);
    if !inside {
        return Err(ProtocolError::BadPath(path.display().to_string()));
    }
    if !path.is_file() {
        return Err(ProtocolError::NotFound(path.display().to_string()));
    }
    Ok(path)
}

fn folder(home: &Path, kind: Kind) -> PathBuf {
    home.join(match kind {
        Kind::Image => IMAGES_DIR,
        Kind::Thumb => THUMBS_DIR,
    })
}

/// The MIME type for a gallery file.
pub fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

/// Answers one protocol request: status, content type and body.
pub fn respond(gallery: &Gallery, path: &str) -> (u16, &'static str, Vec<u8>) {
    let found = parse(path).and_then(|t| resolve(gallery, &t));
    match found {
        Ok(file) => match std::fs::read(&file) {
            Ok(bytes) => (200, mime(&file), bytes),
            Err(e) => (404, "text/plain", e.to_string().into_bytes()),
        },
        Err(e @ ProtocolError::BadPath(_)) => (403, "text/plain", e.to_string().into_bytes()),
        Err(e) => (404, "text/plain", e.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;
    use sumi_gallery::{GenerationMeta, GenerationParams};

    fn gallery_with_one() -> (tempfile::TempDir, Gallery, i64) {
        let dir = tempfile::tempdir().unwrap();
        let g = Gallery::open(dir.path()).unwrap();
        let params = GenerationParams {
            prompt: "a cat".into(),
            negative_prompt: String::new(),
            seed: 1,
            steps: 2,
            cfg: 7.0,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 8,
            height: 8,
            model_name: "m".into(),
            model_hash: None,
            noise_source: "cpu".into(),
            ..Default::default()
        };
        let rec = g
            .add(&params, &GenerationMeta::default(), &RgbImage::new(8, 8))
            .unwrap();
        (dir, g, rec.id)
    }

    #[test]
    fn serves_by_id_and_by_name() {
        let (_d, g, id) = gallery_with_one();
        let (status, mime, body) = respond(&g, &format!("/image/{id}"));
        assert_eq!((status, mime), (200, "image/png"));
        assert!(body.starts_with(b"\x89PNG"));
        let (status, _, _) = respond(&g, &format!("/thumb/{id}"));
        assert_eq!(status, 200);
        let name = g.get(id).unwrap().image_file;
        let (status, _, body2) = respond(&g, &format!("/images/{name}"));
        assert_eq!(status, 200);
        assert_eq!(body, body2);
        assert_eq!(respond(&g, "/image/999").0, 404);
    }

    #[test]
    fn refuses_traversal_and_absolute_paths() {
        let (d, g, _) = gallery_with_one();
        // A file right beside the folders that must stay out of reach.
        std::fs::write(d.path().join("secret.png"), b"secret").unwrap();
        for path in [
            "/images/../secret.png",
            "/images/..%2Fsecret.png",
            "/images/%2E%2E/secret.png",
            "/images//etc/passwd",
            "/images/../../etc/passwd",
            "/thumbs/..",
            "/images/.",
            "/images/",
            "/etc/passwd",
            "//etc/passwd",
            "/image/../gallery.db",
            "/image/-1",
            "/gallery.db",
            "images/x.png",
            "/images/a\\..\\secret.png",
        ] {
            let (status, _, body) = respond(&g, path);
            assert_eq!(status, 403, "{path} must be refused");
            assert_ne!(body, b"secret");
        }
        assert_eq!(
            parse("/images/../secret.png"),
            Err(ProtocolError::BadPath("/images/../secret.png".into()))
        );
        // A valid name that does not exist is a plain 404, not a path outside.
        assert_eq!(respond(&g, "/images/missing.png").0, 404);
    }
}
