//! Request -> events -> image: validates a request, encodes the prompt, runs the sampler with
//! per-step previews, decodes the latent; cancellable between any two model calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::denoiser::ModelDenoiser;
use crate::model::Model;
use crate::preview::{latent_preview, to_rgb_image};
use crate::sampling::brownian::BrownianNoise;
use crate::sampling::table::{parse_sampler, schedule_for, NoiseKind};
use crate::sampling::types::{Flow, SampleCtx, StepInfo, StepNoise};
use crate::text::PromptInfo;
use crate::{Error, Result};

mod memory;
mod prompts;
mod request;

pub use memory::check_fits;
pub use prompts::{schedule_steps, GenerateInputs};
pub use request::{check_cfg, check_size, check_steps, Request, MAX_CFG, MAX_SIZE, MAX_STEPS};

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
    let (latent, prompt) =
        sample_latent_with(model, request, inputs, cancel, &mut |e| on_event(e))?;
    let decoded = decode(model, &latent)?;
    let image = to_rgb_image(&decoded, request.quantize)?;
    on_event(Event::Finished {
        image: image.clone(),
        elapsed: start.elapsed(),
    });
    Ok(Generated { image, prompt })
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

/// [`sample_latent`] with the files the prompts may name; also returns what the prompts used.
pub fn sample_latent_with(
    model: &Model,
    request: &Request,
    inputs: &GenerateInputs,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<(Tensor, PromptInfo)> {
    request.validate(model.info.downscale)?;
    check_memory(model, request)?;
    let (sampler, legacy_schedule) = parse_sampler(&request.sampler)?;
    let schedule = match legacy_schedule {
        Some(s)
            if request.schedule.trim().is_empty()
                || request.schedule.eq_ignore_ascii_case("automatic") =>
        {
            s
        }
        _ => schedule_for(sampler, &request.schedule)?,
    };
    let start = Instant::now();
    let device = &model.device;
    let (guidance, prompt) = prompts::guidance(model, request, sampler, inputs)?;
    let denoiser = ModelDenoiser::new(
        model.network.as_ref(),
        &model.levels,
        model.info.prediction,
        guidance,
        model.dtype,
        cancel,
    )?;

    let sigmas = (schedule.func)(&model.levels, request.steps as usize)?;
    let total = sigmas.len() - 1;
    let down = model.info.downscale;
    let shape = [
        1,
        model.vae.latent_channels(),
        (request.height / down) as usize,
        (request.width / down) as usize,
    ];
    let mut noise = request.noise_spec().stream();
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
    let latent =
        crate::sampling::samplers::to_variance_preserving(&x, *sigmas.last().unwrap_or(&0.0))?;
    check_sampled(&latent, model)?;
    Ok((latent, prompt))
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

/// Decodes a sampled latent to an image tensor `[1, 3, H, W]` in about [-1, 1]; fails with a
/// clear message when the decoder produced NaN or infinite values (a black image otherwise).
pub fn decode(model: &Model, latent: &Tensor) -> Result<Tensor> {
    let image = model
        .vae
        .decode(&latent.to_dtype(model.dtype)?)?
        .to_dtype(DType::F32)?;
    check_finite(&image, model.dtype, &model.info.path)?;
    Ok(image)
}

/// Whether every value of `t` is finite (NaN * 0 and inf * 0 are NaN, finite * 0 is 0: one
/// reduction finds both).
fn all_finite(t: &Tensor) -> Result<bool> {
    let sum = (t.to_dtype(DType::F32)? * 0.0)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(sum.is_finite())
}

/// Errors when the sampled latent holds NaN or infinity: the denoising network, not the VAE,
/// produced them, so the message names the network and what usually fixes it.
fn check_sampled(latent: &Tensor, model: &Model) -> Result<()> {
    if all_finite(latent)? {
        return Ok(());
    }
    let hint = if model.dtype == DType::F32 {
        "its weights are broken (NaN or huge values); re-download the model"
    } else {
        "it overflowed in 16-bit precision; run it in f32 (--dtype f32), or check the weights"
    };
    Err(Error::model(
        &model.info.path,
        format!("sampling produced NaN or infinite values: the denoising network failed, not the VAE; {hint}"),
    ))
}

/// Errors when `image` holds NaN or infinity, suggesting what usually fixes it.
pub fn check_finite(image: &Tensor, dtype: DType, model: &std::path::Path) -> Result<()> {
    if all_finite(image)? {
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
