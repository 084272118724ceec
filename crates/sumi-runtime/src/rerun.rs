//! Making a gallery image again: the model that made it, how the new pixels compare with the
//! old, and why they differ when they do.

use std::path::{Path, PathBuf};

use image::RgbImage;
use sumi_engine::Model;
use sumi_gallery::{Generation, GenerationParams};
use sumi_hub::discover::{self, Format};
use sumi_hub::hashes::{hash_cache_file, HashCache};

use crate::{Result, RuntimeError};

/// The model that made `p`, among the built-in demo model and the models in `$SUMI_MODEL_DIRS`,
/// the Hugging Face cache and `extra` (e.g. the models added in the app): a single file is known
/// by its hash when the image recorded one (so a renamed file is still found), anything else by
/// its name. `note` hears a line before a slow search by hash.
pub fn find_model(
    p: &GenerationParams,
    extra: &[PathBuf],
    home: &Path,
    note: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(demo) = sumi_hub::builtin_demo_model() {
        candidates.push((sumi_hub::model_name(&demo), demo));
    }
    candidates.extend(extra.iter().map(|p| (sumi_hub::model_name(p), p.clone())));
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
    let mut cache = HashCache::open(&hash_cache_file(home));
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
            note(&format!(
                "looking for the model with hash {hash} among {} other checkpoint(s) ...",
                files.len()
            ));
        }
        chosen = files
            .into_iter()
            .find(|(name, path)| hash_of(path).is_some_and(|h| p.made_with(name, Some(&h))));
    }
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the model hash cache: {e}");
    }
    chosen.map(|(_, path)| path).ok_or_else(|| {
        RuntimeError::Invalid(format!(
            "the model that made this image, {}, is not among the models Sumi finds (the \
             built-in demo model, the folders in $SUMI_MODEL_DIRS and the Hugging Face cache); \
             pass it with --model PATH",
            p.model_label()
        ))
    })
}

/// How a new image differs from a recorded one.
#[derive(Debug, PartialEq)]
pub enum PixelCheck {
    /// Every pixel is the same.
    Identical,
    /// `pixels` of `total` differ, the largest by `max` levels of 255 in one channel.
    Differ {
        /// Pixels that differ.
        pixels: usize,
        /// Pixels in all.
        total: usize,
        /// The largest difference in one channel.
        max: u8,
    },
    /// The images do not have the same size.
    OtherSize {
        /// The recorded image's size.
        recorded: (u32, u32),
    },
}

/// Compares `new` with the image `old`.
pub fn compare_images(old: &RgbImage, new: &RgbImage) -> PixelCheck {
    if old.dimensions() != new.dimensions() {
        return PixelCheck::OtherSize {
            recorded: old.dimensions(),
        };
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
    if pixels == 0 {
        PixelCheck::Identical
    } else {
        PixelCheck::Differ {
            pixels,
            total: (new.width() * new.height()) as usize,
            max,
        }
    }
}

/// Compares `new` with the recorded image file.
pub fn compare_pixels(recorded: &Path, new: &RgbImage) -> Result<PixelCheck> {
    let old = image::open(recorded)
        .map_err(|e| {
            RuntimeError::Invalid(format!(
                "cannot read the recorded image {}: {e}",
                recorded.display()
            ))
        })?
        .to_rgb8();
    Ok(compare_images(&old, new))
}

/// Why a run of `g`'s request on `model` may give other pixels: another model, device,
/// precision or Sumi version (empty when none of these differ).
pub fn differences(g: &Generation, model: &Model) -> Vec<String> {
    let mut why = Vec::new();
    if !g
        .params
        .made_with(&model.info.name, model.info.hash.as_deref())
    {
        why.push(format!(
            "#{} was made with {}, this run used {}",
            g.id,
            g.params.model_label(),
            model.info.name
        ));
    }
    if let Some(vae) = other_vae(&g.params, &model.info) {
        why.push(format!("#{} {vae}", g.id));
    }
    if let Some(modules) = other_modules(&g.params, &model.info) {
        why.push(format!("#{} {modules}", g.id));
    }
    let now = crate::record::meta(model, Default::default(), None);
    // An imported image records no device: another tool made it.
    if g.meta.device.is_empty() {
        let version = match g.meta.engine_version.as_str() {
            "" => String::new(),
            v => format!(" ({v})"),
        };
        why.push(format!(
            "#{} was made by another tool{version} on hardware it does not record; this run is \
             Sumi {} on {} in {}",
            g.id, now.engine_version, now.device, now.dtype
        ));
        return why;
    }
    if (&g.meta.device, &g.meta.dtype) != (&now.device, &now.dtype) {
        why.push(format!(
            "#{} ran on {} in {}, this run on {} in {}",
            g.id, g.meta.device, g.meta.dtype, now.device, now.dtype
        ));
    }
    if g.meta.engine_version != now.engine_version {
        why.push(format!(
            "#{} was made by Sumi {}, this is {}",
            g.id, g.meta.engine_version, now.engine_version
        ));
    }
    why
}

/// How the VAE of a run on a model loaded as `info` differs from the one `p` records ("was
/// made with VAE ..., this run used ..."), by hash when both are known, else by name.
fn other_vae(p: &GenerationParams, info: &sumi_engine::model::ModelInfo) -> Option<String> {
    let label = |name: &Option<String>, hash: &Option<String>| match (name, hash) {
        (None, None) => "the model's own".to_string(),
        (Some(n), Some(h)) => format!("{n} [{h}]"),
        (Some(n), None) => n.clone(),
        (None, Some(h)) => format!("[{h}]"),
    };
    let same = match (&p.vae_hash, &info.vae_hash) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => p.vae_name == info.vae_name,
    };
    (!same).then(|| {
        format!(
            "was made with VAE {}, this run used {}{}",
            label(&p.vae_name, &p.vae_hash),
            label(&info.vae_name, &info.vae_hash),
            if info.vae_name.is_none() {
                " (pass the other with --vae)"
            } else {
                ""
            }
        )
    })
}

/// How the modules (Forge's `Module N`: separate VAE and text-encoder files) of a run on a
/// model loaded as `info` differ from those `p` records; nothing when `p` records none.
fn other_modules(p: &GenerationParams, info: &sumi_engine::model::ModelInfo) -> Option<String> {
    let now = crate::record::module_names(&info.modules);
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let shown = |v: &[String]| match v.is_empty() {
        true => "none".to_string(),
        false => v.join(", "),
    };
    (!p.modules.is_empty() && sorted(&p.modules) != sorted(&now)).then(|| {
        format!(
            "was made with the modules {}, this run used {} (pass the others with --vae, \
             --clip-l and --t5)",
            shown(&p.modules),
            shown(&now)
        )
    })
}

/// Says so when the model called `name` (hash `hash`) is not the one that made an image, since a
/// re-run on it gives other pixels.
pub fn other_model_note(
    params: &GenerationParams,
    name: &str,
    hash: Option<&str>,
) -> Option<String> {
    (!params.made_with(name, hash)).then(|| {
        format!(
            "Made with {}; this re-run uses {name}, the loaded model, so its pixels will differ. \
             Load {} to make the image exactly.",
            params.model_label(),
            params.model_name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made_by(name: &str, hash: Option<&str>) -> GenerationParams {
        GenerationParams {
            prompt: "a fox".into(),
            negative_prompt: String::new(),
            seed: 1,
            steps: 4,
            cfg: 7.0,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 64,
            height: 64,
            model_name: name.into(),
            model_hash: hash.map(str::to_string),
            noise_source: "cpu".into(),
            ..Default::default()
        }
    }

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
        let err = compare_pixels(&file, &old).unwrap_err().to_string();
        assert!(err.contains("cannot read the recorded image"), "{err}");
    }

    #[test]
    fn a_rerun_with_another_model_says_so() {
        let mut params = made_by("sd15", None);
        assert_eq!(other_model_note(&params, "sd15", None), None);
        let note = other_model_note(&params, "demo-model", None).unwrap();
        assert!(
            note.starts_with("Made with sd15; this re-run uses demo-model"),
            "{note}"
        );
        assert!(
            note.ends_with("Load sd15 to make the image exactly."),
            "{note}"
        );
        params.model_hash = Some("ab12cd34ef".into());
        assert_eq!(
            other_model_note(&params, "renamed", Some("ab12cd34ef")),
            None
        );
        let note = other_model_note(&params, "sd15", Some("0000000000")).unwrap();
        assert!(note.starts_with("Made with sd15 [ab12cd34ef]"), "{note}");
    }

    #[test]
    fn other_modules_are_named_when_the_image_records_some() {
        let mut info = sumi_engine::model::ModelInfo {
            name: "flux1-dev-Q8_0".into(),
            path: "/m/flux1-dev-Q8_0.gguf".into(),
            family: sumi_engine::family::Family::Flux,
            prediction: sumi_engine::Parametrization::Flow,
            turbo: false,
            guidance_distilled: true,
            native_size: 1024,
            downscale: 8,
            scaling_factor: 0.3611,
            hash: None,
            vae_name: None,
            vae_hash: None,
            modules: ["ae.safetensors", "clip_l.safetensors", "t5xxl_fp16.gguf"]
                .map(|f| format!("/m/{f}").into())
                .to_vec(),
            recommended: None,
        };
        let mut p = made_by("flux1-dev-Q8_0", None);
        // An image that records none (a diffusers folder, an older Sumi) says nothing.
        assert_eq!(other_modules(&p, &info), None);
        // Forge's order is the user's: the same files in another order are the same.
        p.modules = ["t5xxl_fp16", "ae", "clip_l"].map(String::from).to_vec();
        assert_eq!(other_modules(&p, &info), None);
        p.modules[0] = "t5xxl_fp8_e4m3fn".into();
        let why = other_modules(&p, &info).unwrap();
        assert!(
            why.starts_with(
                "was made with the modules t5xxl_fp8_e4m3fn, ae, clip_l, this run used ae, \
                 clip_l, t5xxl_fp16"
            ),
            "{why}"
        );
        info.modules.clear();
        assert!(other_modules(&p, &info)
            .unwrap()
            .contains("this run used none"));
    }
}
