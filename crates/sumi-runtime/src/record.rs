//! The one translation between the engine's request and the gallery's record of it.

use std::time::Duration;

use sumi_engine::noise::NoiseSource;
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
    }
}

/// The request that makes the recorded image again (an unknown noise source falls back to the
/// default).
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
