//! What a generation asks for, and the limits every field is checked against.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::source::{Hires, Img2Img};
use crate::model::ModelInfo;
use crate::noise::{NoiseSource, NoiseSpec, Variation};
use crate::preview::Quantize;
use crate::sampling::table::{parse_sampler, schedule_for};
use crate::text::{check_clip_skip, check_prompt, Emphasis};
use crate::{Error, Result};

pub use super::limits::{MAX_CFG, MAX_SIZE, MAX_STEPS};

/// The most T5 tokens a prompt may take (Flux dev was trained with 512).
pub const MAX_SEQUENCE: u32 = 512;

/// Everything that decides the picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Request {
    /// What to draw.
    pub prompt: String,
    /// What to steer away from (empty: none).
    #[serde(default)]
    pub negative_prompt: String,
    /// Seed of the noise source.
    #[ts(type = "number")]
    pub seed: u64,
    /// Sampler steps.
    pub steps: u32,
    /// Classifier-free guidance scale (1 disables guidance).
    pub cfg: f64,
    /// Distilled guidance scale of guidance-distilled models (Flux dev; Forge's "Distilled CFG
    /// Scale"); `None`: the model's default. Other models ignore it.
    #[serde(default)]
    pub guidance: Option<f64>,
    /// T5 tokens per prompt for models that encode with T5 (Flux); `None`: the model's (dev
    /// 512, schnell 256).
    #[serde(default)]
    pub max_sequence_length: Option<u32>,
    /// Sampler name (A1111 display name or ComfyUI id).
    pub sampler: String,
    /// Schedule name.
    pub schedule: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Where the noise comes from.
    #[serde(default)]
    pub noise: NoiseSource,
    /// A1111's eta noise seed delta: the step noise comes from `seed + ensd` (0: off).
    #[serde(default)]
    #[ts(type = "number")]
    pub ensd: u64,
    /// A1111's variation seed, mixed into the starting noise by `variation_strength`.
    #[serde(default)]
    #[ts(type = "number | null")]
    pub variation_seed: Option<u64>,
    /// How far the starting noise moves towards the variation seed's, 0 to 1.
    #[serde(default)]
    pub variation_strength: f64,
    /// How colours become 8-bit values (A1111 and ComfyUI images truncate).
    #[serde(default)]
    pub quantize: Quantize,
    /// Clip skip: 1 is the text encoder's last layer, 2 the one before, ... (A1111 applies it
    /// to SD 1.x only; ComfyUI's rules to any model). `None` is the default of the rules.
    #[serde(default)]
    pub clip_skip: Option<u32>,
    /// How prompt weights are read and applied.
    #[serde(default)]
    pub emphasis: Emphasis,
    /// Start from a picture (img2img, inpainting, outpainting) instead of pure noise.
    #[serde(default)]
    #[ts(type = "Img2Img | null")]
    pub img2img: Option<Img2Img>,
    /// A second pass at a larger size over the first pass's result.
    #[serde(default)]
    #[ts(type = "Hires | null")]
    pub hires: Option<Hires>,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 20,
            cfg: 7.0,
            guidance: None,
            max_sequence_length: None,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 512,
            height: 512,
            noise: NoiseSource::default(),
            ensd: 0,
            variation_seed: None,
            variation_strength: 0.0,
            quantize: Quantize::default(),
            clip_skip: None,
            emphasis: Emphasis::default(),
            img2img: None,
            hires: None,
        }
    }
}

impl Request {
    /// A request with the model's defaults for `prompt` and `seed`.
    pub fn with_defaults(model: &ModelInfo, prompt: &str, seed: u64) -> Self {
        let d = model.defaults();
        Self {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            seed,
            steps: d.steps,
            cfg: d.cfg,
            sampler: d.sampler.into(),
            schedule: d.schedule.into(),
            width: d.size,
            height: d.size,
            clip_skip: d.clip_skip,
            guidance: d.guidance,
            ..Default::default()
        }
    }

    /// Everything that decides this request's noise.
    pub fn noise_spec(&self) -> NoiseSpec {
        NoiseSpec {
            source: self.noise,
            seed: self.seed,
            ensd: self.ensd,
            variation: self.variation_seed.map(|seed| Variation {
                seed,
                strength: self.variation_strength,
            }),
        }
    }

    /// Checks every field; the error says which one is wrong and what is allowed.
    pub fn validate(&self, downscale: u32) -> Result<()> {
        check_size("width", self.width, downscale)?;
        check_size("height", self.height, downscale)?;
        check_steps(self.steps)?;
        check_cfg(self.cfg)?;
        if let Some(g) = self.guidance {
            if !g.is_finite() || !(0.0..=MAX_CFG).contains(&g) {
                return Err(Error::InvalidRequest(format!(
                    "guidance {g} must be a number from 0 to {MAX_CFG}"
                )));
            }
        }
        if let Some(n) = self.max_sequence_length {
            if n == 0 || n > MAX_SEQUENCE {
                return Err(Error::InvalidRequest(format!(
                    "max sequence length {n} must be from 1 to {MAX_SEQUENCE} T5 tokens"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.variation_strength) {
            return Err(Error::InvalidRequest(format!(
                "variation strength {} must be from 0 to 1",
                self.variation_strength
            )));
        }
        check_clip_skip(self.clip_skip)?;
        check_prompt("prompt", &self.prompt)?;
        check_prompt("negative prompt", &self.negative_prompt)?;
        let (sampler, _) = parse_sampler(&self.sampler)?;
        schedule_for(sampler, &self.schedule)?;
        if let Some(i) = &self.img2img {
            i.validate()?;
        }
        if let Some(h) = &self.hires {
            if self.img2img.is_some() {
                return Err(Error::InvalidRequest(
                    "hires fix is a second pass of text-to-image; for a larger img2img, give                      the larger size with --width/--height"
                        .into(),
                ));
            }
            h.validate()?;
            let (s2, _) = parse_sampler(self.hires_sampler())?;
            schedule_for(s2, self.hires_schedule())?;
        }
        Ok(())
    }

    /// The sampler of the hires pass.
    pub fn hires_sampler(&self) -> &str {
        match &self.hires {
            Some(h) if !h.sampler.trim().is_empty() => &h.sampler,
            _ => &self.sampler,
        }
    }

    /// The schedule of the hires pass.
    pub fn hires_schedule(&self) -> &str {
        match &self.hires {
            Some(h) if !h.schedule.trim().is_empty() => &h.schedule,
            _ => &self.schedule,
        }
    }
}

/// A width or height the model can make: a positive multiple of `downscale` up to [`MAX_SIZE`].
pub fn check_size(name: &str, v: u32, downscale: u32) -> Result<()> {
    if v == 0 || !v.is_multiple_of(downscale.max(1)) || v > MAX_SIZE {
        return Err(Error::InvalidRequest(if downscale > 1 {
            format!(
                "{name} {v} must be a positive multiple of {downscale} no larger than {MAX_SIZE}"
            )
        } else {
            format!("{name} {v} must be between 1 and {MAX_SIZE}")
        }));
    }
    Ok(())
}

/// A step count from 1 to [`MAX_STEPS`].
pub fn check_steps(steps: u32) -> Result<()> {
    if steps == 0 || steps > MAX_STEPS {
        return Err(Error::InvalidRequest(format!(
            "steps {steps} must be between 1 and {MAX_STEPS}"
        )));
    }
    Ok(())
}

/// A guidance scale from 0 to [`MAX_CFG`].
pub fn check_cfg(cfg: f64) -> Result<()> {
    if !cfg.is_finite() || !(0.0..=MAX_CFG).contains(&cfg) {
        return Err(Error::InvalidRequest(format!(
            "CFG scale {cfg} must be a number from 0 to {MAX_CFG}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_requests_parse_with_default_prompt_options() {
        let json = r#"{"prompt":"a","seed":1,"steps":20,"cfg":7,"sampler":"Euler",
            "schedule":"Normal","width":512,"height":512}"#;
        let r: Request = serde_json::from_str(json).unwrap();
        assert_eq!((r.clip_skip, r.emphasis), (None, Emphasis::Original));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["emphasis"], "original");
        assert!(<Request as TS>::decl().contains("clip_skip: number | null"));
        let mut bad = r.clone();
        bad.clip_skip = Some(0);
        assert!(bad.validate(8).is_err());
        bad.clip_skip = Some(2);
        bad.prompt = "x".repeat(crate::text::prompt::MAX_PROMPT_CHARS + 1);
        let err = bad.validate(8).unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
    }
}
