//! What a loaded model is (its facts) and the defaults they imply for new requests.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::recommended::Recommended;
use crate::family::Family;
use crate::parametrization::Parametrization;

/// Facts about a loaded model and the defaults they imply.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Display name (folder or repo name).
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Architecture family.
    pub family: Family,
    /// What the network predicts (eps, v or flow).
    pub prediction: Parametrization,
    /// Distilled few-step model (trailing timesteps in its scheduler config).
    pub turbo: bool,
    /// Takes a distilled guidance scale as input (Flux dev), instead of or besides CFG.
    pub guidance_distilled: bool,
    /// The resolution it was trained at (UNet sample size times the VAE's downscale).
    pub native_size: u32,
    /// Pixels per latent cell.
    pub downscale: u32,
    /// Latent scaling factor of the VAE.
    pub scaling_factor: f64,
    /// A1111's short hash of a single-file checkpoint, when the caller computed it.
    pub hash: Option<String>,
    /// A separate VAE it was loaded with: the file's (or folder's) name, as A1111's `VAE`
    /// writes it, when the caller set it.
    pub vae_name: Option<String>,
    /// A1111's short hash of that VAE file (`VAE hash`), when the caller computed it.
    pub vae_hash: Option<String>,
    /// The parts a Flux transformer file was loaded with from files of their own (VAE, CLIP-L,
    /// T5, in the order Forge writes them as `Module 1`, `Module 2`, ...); empty for models
    /// that hold their parts.
    pub modules: Vec<PathBuf>,
    /// The settings the model folder recommends for itself (`sumi.json`), over its family's.
    pub recommended: Option<Recommended>,
}

/// Defaults a family implies for a new request.
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    /// Steps.
    pub steps: u32,
    /// CFG scale.
    pub cfg: f64,
    /// Sampler display name.
    pub sampler: &'static str,
    /// Schedule display name.
    pub schedule: &'static str,
    /// Width and height.
    pub size: u32,
    /// Clip skip the model recommends (`None`: the default of the prompt rules).
    pub clip_skip: Option<u32>,
    /// Distilled guidance scale, for models that take one (Flux dev).
    pub guidance: Option<f64>,
}

impl ModelInfo {
    /// Request defaults for this model: its family's, then what the model recommends.
    pub fn defaults(&self) -> Defaults {
        let mut d = if self.family == Family::Flux {
            // diffusers' and Forge's: schnell 4 steps, dev 20 with guidance 3.5, no CFG.
            Defaults {
                steps: if self.guidance_distilled { 20 } else { 4 },
                cfg: 1.0,
                sampler: "Euler",
                schedule: "Flow",
                size: self.native_size,
                clip_skip: None,
                guidance: self
                    .guidance_distilled
                    .then_some(crate::family::flux::DEFAULT_GUIDANCE),
            }
        } else if self.turbo {
            Defaults {
                steps: 1,
                cfg: 1.0,
                sampler: "Euler a",
                schedule: "Normal",
                size: self.native_size,
                clip_skip: None,
                guidance: None,
            }
        } else {
            Defaults {
                steps: 20,
                cfg: self.family.spec().cfg,
                sampler: "DPM++ 2M",
                schedule: "Karras",
                size: self.native_size,
                clip_skip: None,
                guidance: None,
            }
        };
        if let Some(r) = &self.recommended {
            d.steps = r.steps.unwrap_or(d.steps);
            d.cfg = r.cfg.unwrap_or(d.cfg);
            d.sampler = r.sampler.unwrap_or(d.sampler);
            d.schedule = r.schedule.unwrap_or(d.schedule);
            d.clip_skip = r.clip_skip.or(d.clip_skip);
        }
        d
    }
}

impl ModelInfo {
    /// What width and height must be multiples of: the VAE's downscale, times 2 for Flux's
    /// 2x2 latent patches (diffusers floors other sizes silently; Sumi refuses them).
    pub fn size_multiple(&self) -> u32 {
        match self.family {
            Family::Flux => self.downscale * 2,
            _ => self.downscale,
        }
    }
}

/// The name recorded for the model at `path` when the caller gives none: a single file's stem,
/// a folder's name.
pub fn model_name(path: &Path) -> String {
    if path.is_file() {
        return path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
    }
    path.canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}
