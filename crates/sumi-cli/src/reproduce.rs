//! Reading a gallery image back to make it again, and saying how the new pixels compare.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::RgbImage;
use sumi_engine::{Model, Request};
use sumi_gallery::{Gallery, Generation};
use sumi_runtime::rerun::{compare_pixels, differences, PixelCheck};

/// A generation read back from the gallery, and where its image is.
pub struct Recorded {
    pub generation: Generation,
    pub image: PathBuf,
}

/// Reads generation `id` from the gallery in `home`.
pub fn read(home: &Path, id: i64) -> Result<Recorded> {
    let gallery = Gallery::open(home)
        .with_context(|| format!("cannot open the gallery in {}", home.display()))?;
    let generation = gallery.get(id)?;
    let image = gallery.image_path(&generation);
    Ok(Recorded { generation, image })
}

/// Says whether a run from a gallery image gave that image's pixels, and if not, what differed.
pub fn report_against(r: &Recorded, request: &Request, model: &Model, image: &RgbImage) {
    let g = &r.generation;
    if *request != sumi_runtime::record::request(&g.params) {
        eprintln!("made from #{} with other settings", g.id);
        return;
    }
    let check = match compare_pixels(&r.image, image) {
        Ok(check) => check,
        Err(e) => {
            eprintln!("warning: cannot compare with #{}: {e:#}", g.id);
            return;
        }
    };
    match check {
        PixelCheck::Identical => eprintln!("identical pixels to #{}", g.id),
        PixelCheck::OtherSize { recorded: (w, h) } => {
            eprintln!("#{} is {w}x{h}, not the size it records", g.id)
        }
        PixelCheck::Differ { pixels, total, max } => {
            let why = differences(g, model);
            eprintln!(
                "pixels differ from #{}: {pixels} of {total}, by at most {max}/255{}",
                g.id,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            );
        }
    }
}
