//! Schedules (sigma lists) and samplers, k-diffusion style: samplers are plain functions over a
//! denoiser and a list of sigmas.
//!
//! How a run is put together (the pipeline's side):
//! 1. `NoiseLevels::from_config(&SchedulerConfig::from_json(..)?)` from the model's
//!    `scheduler/scheduler_config.json`.
//! 2. `let (entry, legacy_schedule) = parse_sampler(name)?` and
//!    `schedule_for(entry, schedule_name)?` (or the schedule in a legacy combined name), then
//!    `sigmas = (schedule.func)(&levels, steps)?`.
//! 3. Start from `noise * entry.init_noise.scale(sigmas[0])`.
//! 4. Noise for stochastic samplers: `BrownianNoise::for_sigmas(seed, &sigmas)` when
//!    `entry.noise == NoiseKind::Brownian`, otherwise the request's seeded per-step source.
//! 5. `(entry.func)(&denoiser, x, &sigmas, &mut ctx)`, then
//!    `samplers::to_variance_preserving(&x, *sigmas.last().unwrap())` before the VAE (a no-op
//!    unless the schedule ends above 0, as diffusers' DDIM timesteps do for SD1.x).

pub mod brownian;
pub mod flow;
pub mod img2img;
pub mod samplers;
pub mod schedules;
pub mod solvers;
mod spacing;
pub mod table;
#[cfg(test)]
mod tests;
pub mod types;

pub use brownian::BrownianNoise;
pub use flow::{FlowLevels, FlowSchedulerConfig};

pub use schedules::{NoiseLevels, ScheduleFn, SchedulerConfig, TimestepSpacing};
pub use table::{
    parse_sampler, sampler, schedule, schedule_for, InitNoise, NoiseKind, SamplerEntry,
    ScheduleEntry, SAMPLERS, SCHEDULES,
};
pub use types::{Denoiser, Flow, SampleCtx, SamplerFn, StepInfo, StepNoise};
