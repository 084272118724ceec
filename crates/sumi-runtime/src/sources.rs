//! The pictures an image-to-image request starts from: read from files or from the gallery's
//! content-addressed `sources/` folder, handed to the engine, and kept with the record.

use std::path::Path;

use sumi_engine::pipeline::source_hash;
use sumi_engine::{GenerateInputs, Request};
use sumi_gallery::Gallery;

use crate::{Result, RuntimeError};

/// The bytes of a request's init picture and mask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceBytes {
    /// The init picture's file bytes.
    pub init_image: Option<Vec<u8>>,
    /// The mask's file bytes.
    pub mask: Option<Vec<u8>>,
    /// The gallery image the init picture is, when it is one.
    pub made_from: Option<i64>,
}

impl SourceBytes {
    /// What the engine takes besides the request.
    pub fn inputs(&self) -> GenerateInputs<'_> {
        GenerateInputs {
            init_image: self.init_image.as_deref(),
            mask: self.mask.as_deref(),
            ..Default::default()
        }
    }

    /// The content names of the pictures (SHA-256).
    pub fn names(&self) -> (Option<String>, Option<String>) {
        (
            self.init_image.as_deref().map(source_hash),
            self.mask.as_deref().map(source_hash),
        )
    }

    /// Keeps the pictures in the gallery's `sources/` folder (never overwriting).
    pub fn store(&self, gallery: &Gallery) -> Result<()> {
        for bytes in [&self.init_image, &self.mask].into_iter().flatten() {
            gallery.store_source(bytes)?;
        }
        Ok(())
    }
}

/// Reads a picture file given by the user, refusing what is not a regular file or is larger
/// than any picture Sumi reads.
pub fn read_picture(path: &Path, what: &str) -> Result<Vec<u8>> {
    const MAX_BYTES: u64 = 512 << 20;
    let meta = std::fs::metadata(path).map_err(|e| {
        RuntimeError::Invalid(format!("cannot read the {what} {}: {e}", path.display()))
    })?;
    if !meta.is_file() {
        return Err(RuntimeError::Invalid(format!(
            "the {what} {} is not a regular file; give a PNG, JPEG or WebP picture",
            path.display()
        )));
    }
    if meta.len() > MAX_BYTES {
        return Err(RuntimeError::Invalid(format!(
            "the {what} {} is {} MB, more than Sumi reads ({} MB)",
            path.display(),
            meta.len() >> 20,
            MAX_BYTES >> 20
        )));
    }
    Ok(sumi_gallery::read_regular_file(path)?)
}

/// The init picture `spec`: `gallery:ID` (or `#ID`) names a gallery image, anything else a file
/// (a file of the gallery's `images/` folder is recognised as its gallery image).
pub fn read_init(spec: &str, gallery: Option<&Gallery>) -> Result<(Vec<u8>, Option<i64>)> {
    let id = spec
        .strip_prefix("gallery:")
        .or_else(|| spec.strip_prefix('#'))
        .map(|s| {
            s.trim().parse::<i64>().map_err(|_| {
                RuntimeError::Invalid(format!(
                    "{spec:?} names no gallery image: write gallery:ID, e.g. gallery:12"
                ))
            })
        })
        .transpose()?;
    match (id, gallery) {
        (Some(id), Some(g)) => {
            let generation = g.get(id)?;
            Ok((
                read_picture(&g.image_path(&generation), "init image")?,
                Some(id),
            ))
        }
        (Some(_), None) => Err(RuntimeError::Invalid(
            "a gallery image as init image needs the gallery (leave out --no-save)".into(),
        )),
        (None, _) => {
            let path = Path::new(spec);
            let bytes = read_picture(path, "init image")?;
            let made_from = match gallery {
                Some(g) => g.generation_of_file(path)?.map(|g| g.id),
                None => None,
            };
            Ok((bytes, made_from))
        }
    }
}

/// The pictures `request` names, read from the gallery's `sources/` folder.
pub fn from_gallery(gallery: &Gallery, request: &Request) -> Result<SourceBytes> {
    let Some(img) = &request.img2img else {
        return Ok(SourceBytes::default());
    };
    let missing =
        |what: &str| {
            RuntimeError::Invalid(format!(
            "this image was made from a {what} Sumi does not have (it was imported from another \
             tool); give the picture with --init-image FILE{}",
            if what == "mask" { " and --mask FILE" } else { "" }
        ))
        };
    if img.init_image.is_empty() {
        return Err(missing("source picture"));
    }
    let init_image = Some(gallery.read_source(&img.init_image)?);
    let mask = match img.mask.as_deref() {
        Some("") => return Err(missing("mask")),
        Some(name) => Some(gallery.read_source(name)?),
        None => None,
    };
    Ok(SourceBytes {
        init_image,
        mask,
        made_from: None,
    })
}
