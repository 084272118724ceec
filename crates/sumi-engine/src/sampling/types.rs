//! The types samplers are written against: the denoiser they call, the noise they draw, the
//! per-step report and the per-run context.

use candle_core::Tensor;

use crate::Result;

/// The model as a sampler sees it: maps a noisy latent `x` at noise level `sigma` to the
/// denoised estimate x0 (CFG, prediction type and timestep mapping are hidden behind it).
pub trait Denoiser {
    /// One model evaluation: returns the x0 estimate for `x` at `sigma`.
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

/// What a sampler reports after each step.
pub struct StepInfo<'a> {
    /// Zero-based step index.
    pub index: usize,
    /// Number of steps in the run: `sigmas.len() - 1`, except for samplers that choose their
    /// own steps within the sigma range (`SamplerEntry::own_steps`); 0 when not known in
    /// advance (DPM adaptive).
    pub total: usize,
    /// Noise level at the start of this step.
    pub sigma: f64,
    /// Noise level after this step.
    pub sigma_next: f64,
    /// The latent after this step.
    pub x: &'a Tensor,
    /// The latest x0 estimate of the denoiser.
    pub denoised: &'a Tensor,
    /// Model evaluations done so far in this run (Heun-like samplers do two per step).
    pub model_evals: usize,
}

/// Whether a run goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next step.
    Continue,
    /// Stop now; the sampler returns `Error::Cancelled`.
    Cancel,
}

/// Source of the fresh noise that ancestral and SDE samplers inject at each step.
pub trait StepNoise {
    /// Standard normal noise shaped like `like`, for the step from `sigma` to `sigma_next`.
    fn sample(&mut self, like: &Tensor, sigma: f64, sigma_next: f64) -> Result<Tensor>;
}

/// Per-run state a sampler needs besides the denoiser and the sigmas.
pub struct SampleCtx<'a> {
    /// Noise for ancestral/SDE samplers (drawn from the request's seeded source).
    pub noise: &'a mut dyn StepNoise,
    /// Called after every step; returning `Flow::Cancel` stops the run.
    pub on_step: &'a mut dyn FnMut(&StepInfo) -> Flow,
}

/// A sampler: runs the whole trajectory and returns the final latent.
pub type SamplerFn = fn(&dyn Denoiser, Tensor, &[f64], &mut SampleCtx) -> Result<Tensor>;
