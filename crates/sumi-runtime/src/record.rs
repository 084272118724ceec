//! The one translation between the engine's request and the gallery's record of it.

use std::time::Duration;

use sumi_engine::noise::NoiseSource;
use sumi_engine::preview::Quantize;
use sumi_engine::text::Emphasis;
use sumi_engine::{Model, Request};
use sumi_gallery::{ComparisonSlot, GenerationMeta, GenerationParams};

/// The gallery's record of `request` run on `model`.
pub fn params(request: &Request, model: &Model) -> GenerationParams {
    GenerationParams {
        prompt: request.prompt.clone(),
        negative_prompt: request.negative_prompt.clone(),
        seed: request.seed,
        steps: request.steps,
        cfg: request.cfg,
        sampler: request.sampler.clone(),
        schedule: request.schedule.clone(),
        width: request.width,
        height: request.height,
        model_name: model.info.name.clone(),
        model_hash: model.info.hash.clone(),
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
        ..Default::default()
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
        dtype: format!("{:?}", model.dtype).to_lowercase(),
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
        img2img: None,
        hires: None,
    }
}

/// The emphasis mode a record names; an unknown one falls back to the default.
fn emphasis(recorded: &str) -> Emphasis {
    recorded.parse().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
