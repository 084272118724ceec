//! The one translation between the engine's request and the gallery's record of it.

use std::time::Duration;

use sumi_engine::imaging::Extend;
use sumi_engine::noise::NoiseSource;
use sumi_engine::pipeline::{Hires, Img2Img};
use sumi_engine::preview::Quantize;
use sumi_engine::text::Emphasis;
use sumi_engine::{Model, Request};
use sumi_gallery::{ComparisonSlot, GenerationMeta, GenerationParams, HiresParams, SourceParams};

/// The gallery's record of `request` run on `model`.
pub fn params(request: &Request, model: &Model) -> GenerationParams {
    GenerationParams {
        prompt: request.prompt.clone(),
        negative_prompt: request.negative_prompt.clone(),
        seed: request.seed,
        steps: request.steps,
        cfg: request.cfg,
        // Only a model that takes a distilled guidance scale is steered by it.
        guidance: model.info.guidance_distilled.then(|| {
            request
                .guidance
                .unwrap_or(sumi_engine::family::flux::DEFAULT_GUIDANCE)
        }),
        // The length used, so that the record says it even where the model chose it (Forge's
        // infotexts leave it out, and an infotext without it is read as Forge's).
        max_sequence_length: request
            .max_sequence_length
            .or_else(|| model.text.t5().map(|t5| t5.max_len as u32)),
        sampler: request.sampler.clone(),
        schedule: request.schedule.clone(),
        width: request.width,
        height: request.height,
        model_name: model.info.name.clone(),
        model_hash: model.info.hash.clone(),
        vae_name: model.info.vae_name.clone(),
        vae_hash: model.info.vae_hash.clone(),
        modules: module_names(&model.info.modules),
        noise_source: request.noise.name().to_string(),
        // A1111 records ENSD only where it changes the picture: samplers that draw step noise.
        ensd: if draws_step_noise(&request.sampler) {
            request.ensd
        } else {
            0
        },
        variation_seed: request
            .variation_seed
            .filter(|_| request.variation_strength != 0.0),
        variation_strength: request.variation_strength,
        quantize: quantize_name(request.quantize).into(),
        clip_skip: request.clip_skip.unwrap_or_else(|| {
            sumi_engine::text::default_clip_skip(model.text.style(), request.emphasis)
        }),
        emphasis: request.emphasis.name().into(),
        img2img: request.img2img.as_ref().map(source_params),
        hires: request.hires.as_ref().map(|h| HiresParams {
            scale: h.scale,
            width: h.width,
            height: h.height,
            upscaler: h.upscaler.clone(),
            steps: h.steps,
            strength: h.strength,
            sampler: h.sampler.clone(),
            schedule: h.schedule.clone(),
            prompt: h.prompt.clone(),
            negative_prompt: h.negative_prompt.clone(),
        }),
        // The hashes of the LoRAs and embeddings used are known after the prompt is encoded.
        ..Default::default()
    }
}

/// The record of an img2img request's settings (`made_from` is the caller's to fill).
fn source_params(i: &Img2Img) -> SourceParams {
    SourceParams {
        init_image: i.init_image.clone(),
        made_from: None,
        strength: i.strength,
        resize_mode: enum_name(&i.resize_mode),
        fixed_steps: i.fixed_steps,
        mask: i.mask.clone(),
        mask_blur: i.mask_blur,
        invert_mask: i.invert_mask,
        masked_content: enum_name(&i.masked_content),
        only_masked: i.only_masked,
        masked_padding: i.masked_padding,
        outpaint: i.outpaint.map(|e| [e.left, e.right, e.top, e.bottom]),
    }
}

/// The serde name of a unit enum value.
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The enum value a serde name names, or the default.
fn from_name<T: serde::de::DeserializeOwned + Default>(name: &str) -> T {
    serde_json::from_value(serde_json::Value::String(name.into())).unwrap_or_default()
}

/// The img2img request a record names.
fn img2img(s: &SourceParams) -> Img2Img {
    Img2Img {
        init_image: s.init_image.clone(),
        strength: s.strength,
        resize_mode: from_name(&s.resize_mode),
        fixed_steps: s.fixed_steps,
        mask: s.mask.clone(),
        mask_blur: s.mask_blur,
        invert_mask: s.invert_mask,
        masked_content: from_name(&s.masked_content),
        only_masked: s.only_masked,
        masked_padding: s.masked_padding,
        outpaint: s.outpaint.map(|[left, right, top, bottom]| Extend {
            left,
            right,
            top,
            bottom,
        }),
    }
}

/// The record's name of a rounding rule.
fn quantize_name(q: Quantize) -> &'static str {
    match q {
        Quantize::Round => "round",
        Quantize::Truncate => "truncate",
    }
}

/// Whether the sampler called `name` draws fresh noise at its steps.
fn draws_step_noise(name: &str) -> bool {
    sumi_engine::sampling::parse_sampler(name).is_ok_and(|(s, _)| s.stochastic)
}

/// The noise source that makes a recorded image again: A1111's default "GPU" source (recorded
/// when its text has no `RNG`) is its NVIDIA generator, which "nv" reproduces; an unknown one
/// falls back to the default.
pub fn noise_source(recorded: &str) -> NoiseSource {
    match recorded {
        "gpu" => NoiseSource::Nv,
        other => other.parse().unwrap_or_default(),
    }
}

/// How a generation ran on `model`, for the gallery.
pub fn meta(
    model: &Model,
    elapsed: Duration,
    comparison: Option<ComparisonSlot>,
) -> GenerationMeta {
    GenerationMeta {
        engine_version: sumi_engine::VERSION.to_string(),
        device: sumi_engine::device::name(&model.device),
        dtype: format!("{:?}", model.weights_dtype).to_lowercase(),
        duration_ms: elapsed.as_millis() as u64,
        comparison,
        note: None,
    }
}

/// The request that makes the recorded image again.
pub fn request(p: &GenerationParams) -> Request {
    let emphasis = emphasis(&p.emphasis);
    Request {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        seed: p.seed,
        steps: p.steps,
        cfg: p.cfg,
        guidance: p.guidance,
        max_sequence_length: p.max_sequence_length,
        sampler: p.sampler.clone(),
        schedule: p.schedule.clone(),
        width: p.width,
        height: p.height,
        noise: noise_source(&p.noise_source),
        ensd: p.ensd,
        variation_seed: p.variation_seed,
        variation_strength: p.variation_strength,
        quantize: if p.quantize == "truncate" {
            Quantize::Truncate
        } else {
            Quantize::Round
        },
        // 1 is the default of A1111's rules, which record it; ComfyUI's records every value.
        clip_skip: Some(p.clip_skip).filter(|&n| n != 1 || emphasis.is_comfy()),
        emphasis,
        img2img: p.img2img.as_ref().map(img2img),
        hires: p.hires.as_ref().map(|h| Hires {
            scale: h.scale,
            width: h.width,
            height: h.height,
            upscaler: h.upscaler.clone(),
            steps: h.steps,
            strength: h.strength,
            sampler: h.sampler.clone(),
            schedule: h.schedule.clone(),
            prompt: h.prompt.clone(),
            negative_prompt: h.negative_prompt.clone(),
        }),
    }
}

/// The emphasis mode a record names; an unknown one falls back to the default.
fn emphasis(recorded: &str) -> Emphasis {
    recorded.parse().unwrap_or_default()
}

/// Forge's names of the modules a model ran with: the file names without their extension.
pub fn module_names(files: &[std::path::PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|f| f.file_stem())
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn img2img_and_hires_settings_survive_the_record() {
        let p = GenerationParams {
            img2img: Some(SourceParams {
                init_image: "a".repeat(64),
                mask: Some("b".repeat(64)),
                resize_mode: "crop_and_resize".into(),
                masked_content: "latent_noise".into(),
                outpaint: Some([1, 2, 3, 4]),
                only_masked: true,
                strength: 0.3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = request(&p);
        let i = r.img2img.clone().unwrap();
        assert_eq!(
            i.resize_mode,
            sumi_engine::imaging::ResizeMode::CropAndResize
        );
        assert_eq!(
            i.masked_content,
            sumi_engine::imaging::MaskedContent::LatentNoise
        );
        assert_eq!(i.outpaint.unwrap().bottom, 4);
        assert_eq!(source_params(&i), p.img2img.clone().unwrap());
        let h = GenerationParams {
            hires: Some(HiresParams {
                steps: 7,
                upscaler: "Lanczos".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(request(&h).hires.unwrap().upscaler, "Lanczos");
    }

    #[test]
    fn a1111_images_without_rng_re_run_with_nv() {
        let mut p = GenerationParams {
            noise_source: "gpu".into(),
            ensd: 31337,
            variation_seed: Some(9),
            variation_strength: 0.3,
            ..Default::default()
        };
        let r = request(&p);
        assert_eq!(r.noise, NoiseSource::Nv);
        assert_eq!(
            (r.ensd, r.variation_seed, r.variation_strength),
            (31337, Some(9), 0.3)
        );
        p.noise_source = "comfy-nv".into();
        assert_eq!(request(&p).noise, NoiseSource::ComfyNv);
        p.noise_source = "quantum".into();
        assert_eq!(request(&p).noise, NoiseSource::TorchCpu);
    }
}
