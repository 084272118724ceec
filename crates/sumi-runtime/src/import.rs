//! Importing images into the gallery with the engine's rules: the gallery reads what another
//! tool (or Sumi) recorded and keeps every image; this check names the settings the engine
//! would refuse, so that the note says before a re-run what has to change.

use std::path::{Path, PathBuf};

use sumi_engine::noise::NoiseSource;
use sumi_engine::pipeline::{check_cfg, check_size, check_steps, MAX_CFG, MAX_SIZE, MAX_STEPS};
use sumi_engine::sampling::{parse_sampler, schedule, schedule_for};
use sumi_engine::text::prompt::MAX_PROMPT_CHARS;
use sumi_gallery::{Gallery, Generation, GenerationParams, ImportReport};

use crate::Result;

/// How many pixels one latent cell covers in every family Sumi runs (SD 1.x, 2.x and XL).
pub const LATENT_CELL: u32 = 8;
/// Largest clip skip: CLIP ViT-L, the text encoder of SD 1.x, has 12 layers (A1111's slider
/// stops there too).
pub const MAX_CLIP_SKIP: u32 = 12;

/// Imports every PNG in the given files and folders, each generation's note naming the settings
/// the engine cannot use as they are (see [`check`]).
pub fn import_paths(gallery: &Gallery, paths: &[PathBuf]) -> ImportReport {
    gallery.import_paths_with(paths, &check)
}

/// Imports one PNG as [`import_paths`] does.
pub fn import(gallery: &Gallery, path: &Path) -> Result<Generation> {
    Ok(gallery.import_with(path, &check)?)
}

/// One sentence per setting of `p` that the engine would refuse: steps, CFG, size, sampler and
/// schedule names, noise source, clip skip, variation strength and prompt lengths.
pub fn check(p: &GenerationParams) -> Vec<String> {
    let mut out = Vec::new();
    if check_steps(p.steps).is_err() {
        out.push(format!(
            "Steps {} is out of range (1 to {MAX_STEPS})",
            p.steps
        ));
    }
    if check_cfg(p.cfg).is_err() {
        out.push(format!(
            "CFG scale {} is out of range (0 to {MAX_CFG})",
            p.cfg
        ));
    }
    let sides_ok = check_size("width", p.width, LATENT_CELL).is_ok()
        && check_size("height", p.height, LATENT_CELL).is_ok();
    if !sides_ok {
        out.push(format!(
            "Size {}x{} is not usable: width and height must be multiples of {LATENT_CELL} \
             from {LATENT_CELL} to {MAX_SIZE}",
            p.width, p.height
        ));
    }
    out.extend(check_names(p));
    if !(1..=MAX_CLIP_SKIP).contains(&p.clip_skip) {
        out.push(format!(
            "Clip skip {} is out of range (1 to {MAX_CLIP_SKIP})",
            p.clip_skip
        ));
    }
    if !(0.0..=1.0).contains(&p.variation_strength) {
        out.push(format!(
            "Variation seed strength {} is out of range (0 to 1)",
            p.variation_strength
        ));
    }
    for (what, text) in [
        ("prompt", &p.prompt),
        ("negative prompt", &p.negative_prompt),
    ] {
        let n = text.chars().count();
        if n > MAX_PROMPT_CHARS {
            out.push(format!(
                "the {what} has {n} characters, more than the {MAX_PROMPT_CHARS} Sumi reads"
            ));
        }
    }
    out
}

/// The sentences about the sampler, schedule and noise source names.
fn check_names(p: &GenerationParams) -> Vec<String> {
    let mut out = Vec::new();
    let automatic = p.schedule.trim().is_empty() || p.schedule.eq_ignore_ascii_case("automatic");
    let schedule_known = match parse_sampler(&p.sampler) {
        Ok((sampler, _)) => schedule_for(sampler, &p.schedule).is_ok(),
        Err(_) => {
            out.push(format!(
                "sampler \"{}\" is not one Sumi has",
                shown(&p.sampler)
            ));
            automatic || schedule(&p.schedule).is_ok()
        }
    };
    if !schedule_known {
        out.push(format!(
            "schedule \"{}\" is not one Sumi has",
            shown(&p.schedule)
        ));
    }
    // "gpu" is A1111's default source, re-run as "nv" (see `record::noise_source`).
    if p.noise_source != "gpu" && p.noise_source.parse::<NoiseSource>().is_err() {
        let known: Vec<&str> = NoiseSource::ALL.iter().map(|s| s.name()).collect();
        out.push(format!(
            "noise source \"{}\" is not one Sumi has ({})",
            shown(&p.noise_source),
            known.join(", ")
        ));
    }
    out
}

/// A name from an imported file, cut short for a sentence.
fn shown(name: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = name.chars().take(MAX).collect();
    if name.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
