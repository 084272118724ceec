//! Making a gallery image again: its request, the model that made it, and how the new pixels
//! compare with the old.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::RgbImage;
use sumi_engine::model::discover::{self, Format, HashCache};
use sumi_engine::noise::NoiseSource;
use sumi_engine::{model, Request};
use sumi_gallery::{Gallery, Generation, GenerationParams};

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

/// The request that made the recorded image (an unknown noise source falls back to the default).
pub fn request(p: &GenerationParams) -> Request {
    Request {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        seed: p.seed,
        steps: p.steps,
        cfg: p.cfg,
        sampler: p.sampler.clone(),
        schedule: p.schedule.clone(),
        width: p.width,
        height: p.height,
        noise: p.noise_source.parse().unwrap_or(NoiseSource::default()),
    }
}

/// The model that made `p`, among the built-in demo model and the models in `$SUMI_MODEL_DIRS`
/// and the Hugging Face cache: a single file is known by its hash when the image recorded one
/// (so a renamed file is still found), anything else by its name.
pub fn find_model(p: &GenerationParams, home: &Path) -> Result<PathBuf> {
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(demo) = model::builtin_demo_model() {
        candidates.push((model::model_name(&demo), demo));
    }
    let found = discover::discover(
        &discover::env_model_dirs(),
        discover::hub_cache().as_deref(),
    );
    candidates.extend(
        found
            .into_iter()
            .filter(|m| m.format != Format::Pickle)
            .map(|m| (m.name, m.path)),
    );
    let mut cache = HashCache::open(&discover::hash_cache_file(home));
    let mut hash_of = |path: &Path| -> Option<String> {
        if p.model_hash.is_none() || !path.is_file() {
            return None;
        }
        cache
            .short_hash(path)
            .map_err(|e| tracing::warn!("cannot hash {}: {e}", path.display()))
            .ok()
    };
    // Same name first: only those need hashing when the name is unchanged.
    let (same_name, others): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|(name, _)| *name == p.model_name);
    let mut chosen = same_name
        .into_iter()
        .find(|(name, path)| p.made_with(name, hash_of(path).as_deref()));
    if let (None, Some(hash)) = (&chosen, &p.model_hash) {
        let files: Vec<_> = others
            .into_iter()
            .filter(|(_, path)| path.is_file())
            .collect();
        if !files.is_empty() {
            // Hashing reads each file once (seconds per GB); later runs take it from the cache.
            eprintln!(
                "looking for the model with hash {hash} among {} other checkpoint(s) ...",
                files.len()
            );
        }
        chosen = files
            .into_iter()
            .find(|(name, path)| hash_of(path).is_some_and(|h| p.made_with(name, Some(&h))));
    }
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the model hash cache: {e}");
    }
    match chosen {
        Some((_, path)) => Ok(path),
        None => bail!(
            "the model that made this image, {}, is not among the models Sumi finds (the \
             built-in demo model, the folders in $SUMI_MODEL_DIRS and the Hugging Face cache); \
             pass it with --model PATH",
            p.model_label()
        ),
    }
}

/// How a new image differs from a recorded one.
#[derive(Debug, PartialEq)]
pub enum PixelCheck {
    Identical,
    /// `pixels` of `total` differ, the largest by `max` levels of 255 in one channel.
    Differ {
        pixels: usize,
        total: usize,
        max: u8,
    },
    /// The images do not have the same size.
    OtherSize {
        recorded: (u32, u32),
    },
}

/// Compares `new` with the recorded image file.
pub fn compare_pixels(recorded: &Path, new: &RgbImage) -> Result<PixelCheck> {
    let old = image::open(recorded)
        .with_context(|| format!("cannot read the recorded image {}", recorded.display()))?
        .to_rgb8();
    if old.dimensions() != new.dimensions() {
        return Ok(PixelCheck::OtherSize {
            recorded: old.dimensions(),
        });
    }
    let mut pixels = 0;
    let mut max = 0;
    for (a, b) in old.pixels().zip(new.pixels()) {
        let d = a.0.iter().zip(b.0).map(|(x, y)| x.abs_diff(y)).max();
        if let Some(d @ 1..) = d {
            pixels += 1;
            max = max.max(d);
        }
    }
    Ok(if pixels == 0 {
        PixelCheck::Identical
    } else {
        PixelCheck::Differ {
            pixels,
            total: (new.width() * new.height()) as usize,
            max,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_check_counts_differing_pixels_and_the_largest_difference() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.png");
        let old = RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
        old.save(&file).unwrap();
        assert_eq!(compare_pixels(&file, &old).unwrap(), PixelCheck::Identical);
        let mut new = old.clone();
        new.put_pixel(1, 1, image::Rgb([10, 10, 10]));
        new.put_pixel(3, 0, image::Rgb([31, 0, 7]));
        assert_eq!(
            compare_pixels(&file, &new).unwrap(),
            PixelCheck::Differ {
                pixels: 2,
                total: 8,
                max: 3
            }
        );
        let wide = RgbImage::new(8, 2);
        assert_eq!(
            compare_pixels(&file, &wide).unwrap(),
            PixelCheck::OtherSize { recorded: (4, 2) }
        );
        std::fs::write(&file, b"not a png").unwrap();
        let err = compare_pixels(&file, &old).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read the recorded image"),
            "{err:#}"
        );
    }
}
