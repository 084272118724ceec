//! Request -> events -> image: validates a request, encodes the prompt, runs the sampler with
//! per-step previews, decodes the latent; cancellable between any two model calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::denoiser::ModelDenoiser;
use crate::model::unet::AddedCond;
use crate::model::Model;
use crate::noise::NoiseSource;
use crate::preview::{latent_preview, to_rgb_image};
use crate::sampling::{self, BrownianNoise, Flow, NoiseKind, SampleCtx, StepInfo, StepNoise};
use crate::{Error, Result};

/// Largest step count a request may ask for.
pub const MAX_STEPS: u32 = 500;
/// Largest width or height in pixels.
pub const MAX_SIZE: u32 = 8192;

/// Everything that decides the picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// What to draw.
    pub prompt: String,
    /// What to steer away from (empty: none).
    #[serde(default)]
    pub negative_prompt: String,
    /// Seed of the noise source.
    pub seed: u64,
    /// Sampler steps.
    pub steps: u32,
    /// Classifier-free guidance scale (1 disables guidance).
    pub cfg: f64,
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
}

impl Request {
    /// A request with the model's defaults for `prompt` and `seed`.
    pub fn with_defaults(model: &Model, prompt: &str, seed: u64) -> Self {
        let d = model.info.defaults();
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
            noise: NoiseSource::default(),
        }
    }

    /// Checks every field; the error says which one is wrong and what is allowed.
    pub fn validate(&self, downscale: u32) -> Result<()> {
        check_size("width", self.width, downscale)?;
        check_size("height", self.height, downscale)?;
        check_steps(self.steps)?;
        check_cfg(self.cfg)?;
        let (sampler, _) = sampling::parse_sampler(&self.sampler)?;
        sampling::schedule_for(sampler, &self.schedule)?;
        Ok(())
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

/// A finite, non-negative guidance scale.
pub fn check_cfg(cfg: f64) -> Result<()> {
    if !cfg.is_finite() || cfg < 0.0 {
        return Err(Error::InvalidRequest(format!(
            "CFG scale {cfg} must be a finite number >= 0"
        )));
    }
    Ok(())
}

/// A small RGB picture of the current x0 estimate.
pub type Preview = RgbImage;

/// Progress of one generation, in order: `Started`, `Step`*, then one of the last three.
#[derive(Debug, Clone)]
pub enum Event {
    /// Sampling is about to start.
    Started {
        /// Steps the run will take.
        total: usize,
        /// The seed in use.
        seed: u64,
    },
    /// One sampler step finished.
    Step {
        /// Zero-based step index.
        index: usize,
        /// Steps in the run.
        total: usize,
        /// Noise level the step started from.
        sigma: f64,
        /// Time since `Started`.
        elapsed: Duration,
        /// UNet evaluations so far.
        model_evals: usize,
        /// The x0 estimate as a picture at latent resolution.
        preview: Option<Preview>,
    },
    /// The image is ready.
    Finished {
        /// The image.
        image: RgbImage,
        /// Wall time of the whole run.
        elapsed: Duration,
    },
    /// The run was cancelled; nothing was produced.
    Cancelled,
    /// The run failed.
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// Runs `request` on `model`, reporting every event to `on_event`. Setting `cancel` stops the
/// run before the next model call.
pub fn generate(
    model: &Model,
    request: &Request,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<RgbImage> {
    let result = run(model, request, cancel, on_event);
    match &result {
        Ok(_) => {}
        Err(Error::Cancelled) => on_event(Event::Cancelled),
        Err(e) => on_event(Event::Failed {
            message: e.to_string(),
        }),
    }
    result
}

fn run(
    model: &Model,
    request: &Request,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<RgbImage> {
    let start = Instant::now();
    let latent = sample_latent(model, request, cancel, &mut |e| on_event(e))?;
    let decoded = decode(model, &latent)?;
    let image = to_rgb_image(&decoded)?;
    on_event(Event::Finished {
        image: image.clone(),
        elapsed: start.elapsed(),
    });
    Ok(image)
}

/// Runs the sampler and returns the final latent in the VAE's (variance-preserving, scaled)
/// space, emitting `Started` and `Step` events.
pub fn sample_latent(
    model: &Model,
    request: &Request,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Tensor> {
    request.validate(model.info.downscale)?;
    let (sampler, legacy_schedule) = sampling::parse_sampler(&request.sampler)?;
    let schedule = match legacy_schedule {
        Some(s)
            if request.schedule.trim().is_empty()
                || request.schedule.eq_ignore_ascii_case("automatic") =>
        {
            s
        }
        _ => sampling::schedule_for(sampler, &request.schedule)?,
    };
    let start = Instant::now();
    let device = &model.device;
    let guided = request.cfg != 1.0;

    let cond = model
        .text
        .encode(&request.prompt, &request.negative_prompt, guided)?;
    let added = match &cond.pooled {
        Some(pooled) if model.unet.needs_added_cond() => {
            let (h, w) = (request.height as f32, request.width as f32);
            let ids = Tensor::new(&[h, w, 0.0, 0.0, h, w], device)?
                .unsqueeze(0)?
                .repeat((pooled.dim(0)?, 1))?;
            Some(AddedCond {
                text_embeds: pooled.clone(),
                time_ids: ids,
            })
        }
        _ if model.unet.needs_added_cond() => {
            return Err(Error::model(
                &model.info.path,
                "this SDXL UNet needs text_encoder_2's pooled output",
            ))
        }
        _ => None,
    };
    let denoiser = ModelDenoiser::new(
        &model.unet,
        &model.levels,
        model.info.prediction,
        cond.context,
        added,
        request.cfg,
        model.dtype,
        cancel,
    );

    let sigmas = (schedule.func)(&model.levels, request.steps as usize)?;
    let total = sigmas.len() - 1;
    let down = model.info.downscale;
    let shape = [
        1,
        4,
        (request.height / down) as usize,
        (request.width / down) as usize,
    ];
    let mut noise = request.noise.seeded(request.seed);
    let init = noise.initial_latent(&shape, device, DType::F32)?;
    let x = (init * sampler.init_noise.scale(sigmas[0]))?;
    // SDE samplers take Brownian-tree noise (stable across step counts), seeded like the rest.
    let mut brownian = BrownianNoise::for_sigmas(request.seed, &sigmas);
    let step_noise: &mut dyn StepNoise = match sampler.noise {
        NoiseKind::Brownian => &mut brownian,
        NoiseKind::None | NoiseKind::PerStep => &mut noise,
    };
    on_event(Event::Started {
        total,
        seed: request.seed,
    });

    let mut on_step = |info: &StepInfo| {
        let preview = match latent_preview(info.denoised, &model.preview) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("preview failed: {e}");
                None
            }
        };
        on_event(Event::Step {
            index: info.index,
            total: info.total,
            sigma: info.sigma,
            elapsed: start.elapsed(),
            model_evals: info.model_evals,
            preview,
        });
        if cancel.load(Ordering::Relaxed) {
            Flow::Cancel
        } else {
            Flow::Continue
        }
    };
    let mut ctx = SampleCtx {
        noise: step_noise,
        on_step: &mut on_step,
    };
    let x = (sampler.func)(&denoiser, x, &sigmas, &mut ctx)?;
    // The sampler works in k-diffusion's variance-exploding space; the VAE wants the
    // variance-preserving latent (they differ only when the schedule ends above 0).
    sampling::samplers::to_variance_preserving(&x, *sigmas.last().unwrap_or(&0.0))
}

/// Decodes a sampled latent to an image tensor `[1, 3, H, W]` in about [-1, 1]; fails with a
/// clear message when the decoder produced NaN or infinite values (a black image otherwise).
pub fn decode(model: &Model, latent: &Tensor) -> Result<Tensor> {
    let z = (latent / model.info.scaling_factor)?.to_dtype(model.dtype)?;
    let image = model.vae.decode(&z)?.to_dtype(DType::F32)?;
    check_finite(&image, model.dtype, &model.info.path)?;
    Ok(image)
}

/// Errors when `image` holds NaN or infinity, suggesting what usually fixes it.
pub fn check_finite(image: &Tensor, dtype: DType, model: &std::path::Path) -> Result<()> {
    // NaN * 0 and inf * 0 are NaN, finite * 0 is 0: one reduction finds both.
    let sum = (image * 0.0)?.sum_all()?.to_scalar::<f32>()?;
    if sum.is_finite() {
        return Ok(());
    }
    let hint = if dtype == DType::F32 {
        "the VAE weights themselves are broken; try another VAE with --vae"
    } else {
        "the VAE overflowed in 16-bit precision (common with SDXL's VAE): decode in f32, or use an fp16-fixed VAE (e.g. madebyollin/sdxl-vae-fp16-fix) with --vae"
    };
    Err(Error::model(
        model,
        format!("the decoded image contains NaN or infinite values; {hint}"),
    ))
}
