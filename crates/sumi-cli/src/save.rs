//! Turning a finished generation into gallery records and PNG files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use image::RgbImage;
use sumi_engine::Model;
use sumi_gallery::{Gallery, GenerationParams};
use sumi_runtime::record::meta;

/// Fails before any work is done when `out` cannot be a PNG written later: it lies among the
/// gallery's own files (never written, even with `force`), it exists and `force` is not given,
/// it names a folder or something that is not a regular file, or its folder does not exist.
pub fn check_output(out: &Path, home: &Path, force: bool) -> Result<()> {
    if sumi_gallery::is_managed_by(home, out) {
        bail!(
            "{} is one of the gallery's own files; Sumi never writes there, even with --force: \
             choose another path (`sumi gallery export ID --output FILE` copies a gallery image)",
            out.display()
        );
    }
    if out.is_dir() {
        bail!(
            "{} is a folder: give a file name, e.g. {}",
            out.display(),
            out.join("image.png").display()
        );
    }
    if let Ok(meta) = std::fs::metadata(out) {
        if !meta.is_file() {
            bail!(
                "{} exists and is not a regular file: give another path",
                out.display()
            );
        }
        if !force {
            bail!(
                "{} already exists; pass --force to overwrite it",
                out.display()
            );
        }
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
    params: &GenerationParams,
    model: &Model,
    elapsed: Duration,
    sources: &sumi_runtime::sources::SourceBytes,
    files: &sumi_gallery::ModelFiles,
) -> Result<(i64, PathBuf)> {
    let gallery = Gallery::open(home)
        .with_context(|| format!("cannot open the gallery in {}", home.display()))?;
    // The init picture and mask first: a record never names a source that is not kept.
    sources.store(&gallery)?;
    let mut p = params.clone();
    if let Some(i) = p.img2img.as_mut() {
        i.made_from = sources.made_from;
    }
    let g = gallery.add(&p, &meta(model, elapsed, None), image)?;
    // The image is saved; not knowing where its model came from only costs a re-run its search.
    if let Err(e) = gallery.set_model_files(g.id, files) {
        eprintln!(
            "warning: could not record the model's files with #{}: {e}",
            g.id
        );
    }
    Ok((g.id, gallery.image_path(&g)))
}

/// Writes the image as a PNG carrying the same metadata the gallery stores.
pub fn to_file(
    out: &Path,
    image: &RgbImage,
    params: &GenerationParams,
    model: &Model,
    elapsed: Duration,
) -> Result<()> {
    let png = sumi_gallery::encode_generation_png(params, &meta(model, elapsed, None), image)?;
    write_new_or_replace(out, &png)
}

/// Writes `bytes` to `out` through a temporary file beside it, so that a failed write never leaves
/// a half-written file where another was.
fn write_new_or_replace(out: &Path, bytes: &[u8]) -> Result<()> {
    let folder = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, out))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", out.display()))
}

/// A file name for an image that found no other home: `sumi-SEED.png`, or `sumi-SEED-N.png`
/// when that exists, so no file is overwritten.
pub fn fallback_path(seed: u64) -> PathBuf {
    let first = PathBuf::from(format!("sumi-{seed}.png"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| PathBuf::from(format!("sumi-{seed}-{n}.png")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}
