//! Turning a finished generation into gallery records and PNG files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use image::RgbImage;
use sumi_engine::{Model, Request};
use sumi_gallery::Gallery;
use sumi_runtime::record::{meta, params};

/// Fails before any work is done when `out` cannot be a PNG written later: it names a folder, or
/// its folder does not exist.
pub fn check_output(out: &Path) -> Result<()> {
    if out.is_dir() {
        bail!(
            "{} is a folder: give a file name, e.g. {}",
            out.display(),
            out.join("image.png").display()
        );
    }
    let folder = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist (create it first)",
            out.display(),
            folder.display()
        );
    }
    Ok(())
}

/// Adds the image to the gallery in `home`; returns its id and file.
pub fn to_gallery(
    home: &Path,
    image: &RgbImage,
    request: &Request,
    model: &Model,
    elapsed: Duration,
) -> Result<(i64, PathBuf)> {
    let gallery = Gallery::open(home)
        .with_context(|| format!("cannot open the gallery in {}", home.display()))?;
    let g = gallery.add(&params(request, model), &meta(model, elapsed, None), image)?;
    Ok((g.id, gallery.image_path(&g)))
}

/// Writes the image as a PNG carrying the same metadata the gallery stores.
pub fn to_file(
    out: &Path,
    image: &RgbImage,
    request: &Request,
    model: &Model,
    elapsed: Duration,
) -> Result<()> {
    let png = sumi_gallery::encode_generation_png(
        &params(request, model),
        &meta(model, elapsed, None),
        image,
    )?;
    std::fs::write(out, png).with_context(|| format!("cannot write {}", out.display()))
}
