//! Request -> events -> image: validates a request, encodes the prompt, runs the sampler with
//! per-step previews, decodes the latent; cancellable between any two model calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::denoiser::{InpaintBlend, ModelDenoiser, PromptGuidance};
use crate::model::Model;
use crate::preview::{latent_preview, to_rgb_image};
use crate::sampling::brownian::BrownianNoise;
use crate::sampling::img2img::{img2img_sigmas, img2img_steps};
use crate::sampling::table::{parse_sampler, schedule_for, NoiseKind, SamplerEntry, ScheduleEntry};
use crate::sampling::types::{Flow, SampleCtx, StepInfo, StepNoise};
use crate::text::PromptInfo;
use crate::{Error, Result};

mod decode;
mod limits;
mod memory;
mod prompts;
mod request;
mod source;
mod start;

pub use decode::{check_finite, decode};
pub use memory::{check_fits, memory_plan, MemoryPlan};
pub use prompts::{schedule_steps, GenerateInputs};
pub use request::{check_cfg, check_size, check_steps, Request, MAX_CFG, MAX_SIZE, MAX_STEPS};
pub use source::{
    check_hash, check_source, parse_upscaler, source_hash, Hires, Img2Img, Upscaler, UPSCALERS,
};

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

/// A finished generation: the image and what the prompts used.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The image.
    pub image: RgbImage,
    /// Extra-network tags, embedding hashes and notes for the record.
    pub prompt: PromptInfo,
}

/// Runs `request` on `model`, reporting every event to `on_event`. Setting `cancel` stops the
/// run before the next model call. Prompts may name no embeddings (see [`generate_with`]).
pub fn generate(
    model: &Model,
    request: &Request,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<RgbImage> {
    let inputs = GenerateInputs::default();
    generate_with(model, request, &inputs, cancel, on_event).map(|g| g.image)
}

/// [`generate`] with the files the prompts may name; also returns what the prompts used.
pub fn generate_with(
    model: &Model,
    request: &Request,
    inputs: &GenerateInputs,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Generated> {
    let result = run(model, request, inputs, cancel, on_event);
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
    inputs: &GenerateInputs,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Generated> {
    let start = Instant::now();
    let sampled = sample(model, request, inputs, cancel, &mut |e| on_event(e));
    // A network loaded on demand is let go before the VAE decodes.
    model.network.release();
    let sampled = sampled?;
    let decoded = decode(model, &sampled.latent)?;
    let mut image = to_rgb_image(&decoded, request.quantize)?;
    if let Some(overlay) = &sampled.overlay {
        image = crate::imaging::apply_overlay(&image, overlay);
    }
    on_event(Event::Finished {
        image: image.clone(),
        elapsed: start.elapsed(),
    });
    Ok(Generated {
        image,
        prompt: sampled.prompt,
    })
}

/// Runs the sampler and returns the final latent in the VAE's (variance-preserving, scaled)
/// space, emitting `Started` and `Step` events. Prompts may name no embeddings.
pub fn sample_latent(
    model: &Model,
    request: &Request,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Tensor> {
    let inputs = GenerateInputs::default();
    sample_latent_with(model, request, &inputs, cancel, on_event).map(|(latent, _)| latent)
}

/// [`sample_latent`] with the files the prompts and img2img may name; also returns what the
/// prompts used. For inpainting, the latent is before the final composite over the original
/// pixels (`imaging::apply_overlay`), which [`generate_with`] applies.
pub fn sample_latent_with(
    model: &Model,
    request: &Request,
    inputs: &GenerateInputs,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<(Tensor, PromptInfo)> {
    let sampled = sample(model, request, inputs, cancel, on_event);
    model.network.release();
    sampled.map(|s| (s.latent, s.prompt))
}

/// What sampling produced.
struct Sampled {
    latent: Tensor,
    prompt: PromptInfo,
    overlay: Option<crate::imaging::Overlay>,
}

/// The sampler and schedule a request names (a legacy combined name's schedule counts when the
/// schedule is empty or "Automatic").
fn resolve(
    sampler: &str,
    schedule: &str,
) -> Result<(&'static SamplerEntry, &'static ScheduleEntry)> {
    let (sampler, legacy_schedule) = parse_sampler(sampler)?;
    let schedule = match legacy_schedule {
        Some(s) if schedule.trim().is_empty() || schedule.eq_ignore_ascii_case("automatic") => s,
        _ => schedule_for(sampler, schedule)?,
    };
    Ok((sampler, schedule))
}

/// [`resolve`] for `model`: a flow model's "Automatic" schedule is its own (Flow), and the
/// samplers made for Stable Diffusion's noise schedule are refused on it.
fn resolve_for(
    model: &Model,
    sampler: &str,
    schedule: &str,
) -> Result<(&'static SamplerEntry, &'static ScheduleEntry)> {
    if model.levels.flow_levels().is_none() {
        return resolve(sampler, schedule);
    }
    let automatic = schedule.trim().is_empty() || schedule.eq_ignore_ascii_case("automatic");
    let (entry, sched) = match automatic {
        true => (
            parse_sampler(sampler)?.0,
            crate::sampling::table::schedule("Flow")?,
        ),
        false => resolve(sampler, schedule)?,
    };
    match crate::sampling::table::flow_sampler(entry) {
        Some(entry) => Ok((entry, sched)),
        None => Err(Error::InvalidRequest(format!(
            "the {} sampler is not available for flow-matching models (Flux) yet; use Euler, \
             Euler a, Heun, DPM2, LMS, DPM++ 2M, DPM fast or DPM adaptive",
            entry.name
        ))),
    }
}

/// The model's noise levels for an image of `width` x `height` pixels (a flow model's dynamic
/// shift depends on its latent token count).
fn levels_for(
    model: &Model,
    width: u32,
    height: u32,
) -> std::borrow::Cow<'_, crate::sampling::schedules::NoiseLevels> {
    match model.levels.flow_levels() {
        Some(_) => {
            let cell = model.info.size_multiple().max(1);
            let tokens = (width / cell) as usize * (height / cell) as usize;
            std::borrow::Cow::Owned(model.levels.for_image_tokens(tokens))
        }
        None => std::borrow::Cow::Borrowed(&model.levels),
    }
}

/// One sampling pass.
struct Pass<'a> {
    sampler: &'static SamplerEntry,
    sigmas: &'a [f64],
    x: Tensor,
    guidance: PromptGuidance,
    source: Option<&'a start::Source>,
    concat: Option<Tensor>,
    /// Steps of earlier passes, and of all passes, for the events.
    offset: usize,
    total: usize,
}

fn sample(
    model: &Model,
    request: &Request,
    inputs: &GenerateInputs,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Sampled> {
    request.validate(model.info.size_multiple())?;
    check_memory(model, request)?;
    let (sampler, schedule) = resolve_for(model, &request.sampler, &request.schedule)?;
    let levels = levels_for(model, request.width, request.height);
    let start = Instant::now();
    let device = &model.device;
    let (guidance, prompt) = prompts::guidance(model, request, sampler, inputs)?;
    let down = model.info.downscale;
    let shape = [
        1,
        model.vae.latent_channels(),
        (request.height / down) as usize,
        (request.width / down) as usize,
    ];
    let mut noise = request.noise_spec().stream();
    let noise0 = noise.initial_latent(&shape, device, DType::F32)?;
    let (source, sigmas, x) = match &request.img2img {
        None => {
            let sigmas = (schedule.func)(&levels, request.steps as usize)?;
            let x = (&noise0 * sampler.init_noise.scale(sigmas[0]))?;
            (None, sigmas, x)
        }
        Some(img) => {
            let source = start::prepare_source(model, request, img, inputs, &noise0)?;
            let plan = img2img_steps(request.steps as usize, img.strength, img.fixed_steps)?;
            let full = (schedule.func)(&levels, plan.schedule_steps)?;
            let sigmas = img2img_sigmas(&full, plan)?.to_vec();
            let x = model
                .info
                .prediction
                .noised(&source.init_latent, &noise0, sigmas[0])?;
            (Some(source), sigmas, x)
        }
    };
    let concat = match &source {
        Some(s) => s.concat.clone(),
        None if start::is_inpainting_model(model) => Some(start::unmasked_conditioning(
            model,
            request.width,
            request.height,
        )?),
        None => None,
    };
    let hires = match &request.hires {
        Some(h) => {
            let steps = if h.steps == 0 { request.steps } else { h.steps };
            Some((steps, img2img_steps(steps as usize, h.strength, true)?))
        }
        None => None,
    };
    let first = sigmas.len() - 1;
    let total = first + hires.map_or(0, |(_, plan)| plan.t_enc + 1);
    on_event(Event::Started {
        total,
        seed: request.seed,
    });
    let pass = Pass {
        sampler,
        sigmas: &sigmas,
        x,
        guidance,
        source: source.as_ref(),
        concat,
        offset: 0,
        total,
    };
    let mut latent = run_pass(
        model,
        request.seed,
        pass,
        &mut noise,
        cancel,
        start,
        on_event,
    )?;
    if let (Some(h), Some((steps, plan))) = (&request.hires, hires) {
        let (up, width, height) = start::upscale_first_pass(model, request, &latent)?;
        let pick = |own: &str, base: &str| {
            if own.trim().is_empty() {
                base.to_string()
            } else {
                own.to_string()
            }
        };
        let second = Request {
            prompt: pick(&h.prompt, &request.prompt),
            negative_prompt: pick(&h.negative_prompt, &request.negative_prompt),
            steps,
            sampler: request.hires_sampler().to_string(),
            schedule: request.hires_schedule().to_string(),
            width,
            height,
            hires: None,
            img2img: None,
            ..request.clone()
        };
        check_memory(model, &second)?;
        let (sampler, schedule) = resolve_for(model, &second.sampler, &second.schedule)?;
        let (guidance, _) = prompts::guidance(model, &second, sampler, inputs)?;
        let levels = levels_for(model, width, height);
        let full = (schedule.func)(&levels, plan.schedule_steps)?;
        let sigmas = img2img_sigmas(&full, plan)?;
        // A1111 draws the second pass's noise from a fresh generator for the same seed.
        let mut noise = second.noise_spec().stream();
        let shape = up.dims().to_vec();
        let noise0 = noise.initial_latent(&shape, device, DType::F32)?;
        let x = model.info.prediction.noised(&up, &noise0, sigmas[0])?;
        let concat = match start::is_inpainting_model(model) {
            true => Some(start::unmasked_conditioning(model, width, height)?),
            false => None,
        };
        let pass = Pass {
            sampler,
            sigmas,
            x,
            guidance,
            source: None,
            concat,
            offset: first,
            total,
        };
        latent = run_pass(
            model,
            request.seed,
            pass,
            &mut noise,
            cancel,
            start,
            on_event,
        )?;
    }
    Ok(Sampled {
        latent,
        prompt,
        overlay: source.and_then(|s| s.overlay),
    })
}

/// Runs one pass and returns its latent in the VAE's (variance-preserving) space, blended with
/// the init latent outside an inpainting mask.
fn run_pass(
    model: &Model,
    seed: u64,
    pass: Pass,
    noise: &mut crate::noise::SeededNoise,
    cancel: &AtomicBool,
    start: Instant,
    on_event: &mut dyn FnMut(Event),
) -> Result<Tensor> {
    let mut denoiser = ModelDenoiser::new(
        model.network.as_ref(),
        &model.levels,
        model.info.prediction,
        pass.guidance,
        model.dtype,
        cancel,
    )?;
    if let Some(extra) = pass.concat {
        denoiser = denoiser.with_concat(extra)?;
    }
    let blend = match pass.source {
        Some(start::Source {
            init_latent,
            blend: Some((keep, repaint)),
            ..
        }) => Some(InpaintBlend {
            inner: &denoiser,
            init: init_latent,
            keep,
            repaint,
        }),
        _ => None,
    };
    let d: &dyn crate::sampling::types::Denoiser = match &blend {
        Some(b) => b,
        None => &denoiser,
    };
    // SDE samplers take Brownian-tree noise (stable across step counts), seeded like the rest.
    let mut brownian = BrownianNoise::for_sigmas(seed, pass.sigmas);
    let step_noise: &mut dyn StepNoise = match pass.sampler.noise {
        NoiseKind::Brownian => &mut brownian,
        NoiseKind::None | NoiseKind::PerStep => noise,
    };
    let (offset, total) = (pass.offset, pass.total);
    let mut on_step = |info: &StepInfo| {
        let preview = match latent_preview(info.denoised, &model.preview) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("preview failed: {e}");
                None
            }
        };
        on_event(Event::Step {
            index: offset + info.index,
            total: if info.total == 0 { 0 } else { total },
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
    let mut x = (pass.sampler.func)(d, pass.x, pass.sigmas, &mut ctx)?;
    if let Some(b) = &blend {
        x = b.blend(&x)?;
    }
    // The sampler works in k-diffusion's variance-exploding space; the VAE wants the
    // variance-preserving latent (they differ only when the schedule ends above 0).
    let last = *pass.sigmas.last().unwrap_or(&0.0);
    let latent = match model.info.prediction {
        crate::parametrization::Parametrization::Flow => (x * (1.0 / (1.0 - last)))?,
        _ => crate::sampling::samplers::to_variance_preserving(&x, last)?,
    };
    decode::check_sampled(&latent, model)?;
    Ok(latent)
}

/// Refuses a request whose activations the device cannot hold, before anything runs.
pub fn check_memory(model: &Model, request: &Request) -> Result<()> {
    let down = model.info.downscale as usize;
    let (h, w) = (
        request.height as usize / down,
        request.width as usize / down,
    );
    let batch = if request.cfg != 1.0 { 2 } else { 1 };
    let need = model
        .network
        .activation_bytes(h, w, batch, model.dtype.size_in_bytes());
    let free = crate::device::free_memory(&model.device).map(|b| b as u64);
    check_fits(
        need,
        free,
        &format!("a {}x{} image", request.width, request.height),
    )
}
