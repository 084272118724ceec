//! The model's training noise levels and the schedules (descending sigma lists ending in 0)
//! built from them.
//!
//! Arithmetic follows what diffusers and k-diffusion do in PyTorch: betas and alphas in f32,
//! the cumulative product accumulated in f64 and stored as f32 (torch's CPU `cumprod`), sigmas
//! in f32. This keeps our sigma lists within 1e-6 (relative) of the reference implementations;
//! computing everything in f64 would move the smallest sigma by ~1e-5.

use serde::Deserialize;

use super::flow::FlowLevels;
pub(crate) use super::spacing::{linspace, linspace_f32};
use crate::{Error, Result};

/// A schedule: training noise levels and a step count -> sigmas (descending, last one 0 except
/// for DDIM-style lists that end at the model's final noise level).
pub type ScheduleFn = fn(&NoiseLevels, usize) -> Result<Vec<f64>>;

/// diffusers' `scheduler_config.json`, the fields Sumi needs (unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// Number of discrete training timesteps (1000 for every SD model).
    pub num_train_timesteps: usize,
    /// First beta of the training schedule.
    pub beta_start: f64,
    /// Last beta of the training schedule.
    pub beta_end: f64,
    /// `linear`, `scaled_linear` or `squaredcos_cap_v2`.
    pub beta_schedule: String,
    /// Explicit betas; override `beta_schedule` when present.
    pub trained_betas: Option<Vec<f64>>,
    /// `epsilon`, `v_prediction` or `sample`.
    pub prediction_type: String,
    /// `leading`, `trailing` or `linspace` (diffusers' DDIM/PNDM timestep placement).
    pub timestep_spacing: String,
    /// Offset added to `leading` timesteps (SD1.x: 1).
    pub steps_offset: usize,
    /// Whether DDIM's final step goes to alpha_cumprod 1 (sigma 0) or to the first training level.
    pub set_alpha_to_one: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        // diffusers' DDIMScheduler defaults.
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            prediction_type: "epsilon".into(),
            timestep_spacing: "leading".into(),
            steps_offset: 0,
            set_alpha_to_one: true,
        }
    }
}

impl SchedulerConfig {
    /// Parses the text of a `scheduler_config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::InvalidRequest(format!("scheduler config is not valid: {e}")))
    }

    /// Stable Diffusion 1.x/2.x/XL's training schedule (scaled_linear 0.00085..0.012, leading
    /// spacing with offset 1, `set_alpha_to_one = false`).
    pub fn stable_diffusion() -> Self {
        Self {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            steps_offset: 1,
            set_alpha_to_one: false,
            ..Self::default()
        }
    }
}

/// diffusers' timestep placement for DDIM-like schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// `k * (N / n) + steps_offset` (integer ratio), descending.
    Leading,
    /// `round(N - k * N / n) - 1`, descending; always starts at the last training step.
    Trailing,
    /// `round(linspace(0, N - 1, n))`, descending.
    Linspace,
}

/// The model's discrete training noise levels (k-diffusion's `DiscreteSchedule`, unquantized).
#[derive(Debug, Clone)]
pub struct NoiseLevels {
    alphas_cumprod: Vec<f32>,
    sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    spacing: TimestepSpacing,
    steps_offset: usize,
    set_alpha_to_one: bool,
    /// A flow-matching model's levels (`sigmas` is then ComfyUI's shifted table).
    flow: Option<Box<FlowLevels>>,
}

impl NoiseLevels {
    /// Builds the training noise levels from a scheduler config.
    pub fn from_config(cfg: &SchedulerConfig) -> Result<Self> {
        let n = cfg.num_train_timesteps;
        if n < 2 {
            return Err(Error::InvalidRequest(format!(
                "scheduler config: num_train_timesteps is {n}; it must be at least 2"
            )));
        }
        crate::weights::bounds::check("num_train_timesteps", n)
            .map_err(|e| Error::InvalidRequest(format!("scheduler config: {e}")))?;
        let betas: Vec<f32> = if let Some(tb) = &cfg.trained_betas {
            if tb.len() != n {
                return Err(Error::InvalidRequest(format!(
                    "scheduler config: trained_betas has {} entries but num_train_timesteps is {n}",
                    tb.len()
                )));
            }
            tb.iter().map(|&b| b as f32).collect()
        } else {
            match cfg.beta_schedule.as_str() {
                "linear" => linspace_f32(cfg.beta_start, cfg.beta_end, n),
                "scaled_linear" => linspace_f32(cfg.beta_start.sqrt(), cfg.beta_end.sqrt(), n)
                    .into_iter()
                    .map(|b| b * b)
                    .collect(),
                "squaredcos_cap_v2" => {
                    let alpha_bar = |t: f64| {
                        ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                            .cos()
                            .powi(2)
                    };
                    (0..n)
                        .map(|i| {
                            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                        })
                        .collect()
                }
                other => {
                    return Err(Error::InvalidRequest(format!(
                        "scheduler config: beta_schedule '{other}' is not supported; use linear, \
                         scaled_linear, squaredcos_cap_v2 or trained_betas"
                    )))
                }
            }
        };
        let spacing = match cfg.timestep_spacing.as_str() {
            "leading" => TimestepSpacing::Leading,
            "trailing" => TimestepSpacing::Trailing,
            "linspace" => TimestepSpacing::Linspace,
            other => {
                return Err(Error::InvalidRequest(format!(
                    "scheduler config: timestep_spacing '{other}' is not supported; use leading, \
                     trailing or linspace"
                )))
            }
        };
        let mut acc = 1.0f64;
        let alphas_cumprod: Vec<f32> = betas
            .iter()
            .map(|&b| {
                acc *= (1.0f32 - b) as f64;
                acc as f32
            })
            .collect();
        let sigmas: Vec<f64> = alphas_cumprod
            .iter()
            .map(|&ac| ((1.0f32 - ac) / ac).sqrt() as f64)
            .collect();
        if sigmas.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::InvalidRequest(
                "scheduler config: betas give a noise level that is zero or not finite; \
                 every beta must lie in (0, 1)"
                    .into(),
            ));
        }
        let log_sigmas = sigmas.iter().map(|&s| (s as f32).ln() as f64).collect();
        Ok(Self {
            alphas_cumprod,
            sigmas,
            log_sigmas,
            spacing,
            steps_offset: cfg.steps_offset,
            set_alpha_to_one: cfg.set_alpha_to_one,
            flow: None,
        })
    }

    /// The levels of a flow-matching model: ComfyUI's table of 10000 shifted sigmas, with
    /// timestep = sigma (Flux's multiplier 1).
    pub fn flow(flow: FlowLevels) -> Self {
        let sigmas = flow.table();
        let log_sigmas = sigmas.iter().map(|&s| (s as f32).ln() as f64).collect();
        Self {
            alphas_cumprod: Vec::new(),
            sigmas,
            log_sigmas,
            spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            set_alpha_to_one: true,
            flow: Some(Box::new(flow)),
        }
    }

    /// The flow-matching facts, for a flow model.
    pub fn flow_levels(&self) -> Option<&FlowLevels> {
        self.flow.as_deref()
    }

    /// These levels for an image of `tokens` latent tokens (diffusers' dynamic shift).
    pub fn for_image_tokens(&self, tokens: usize) -> Self {
        let mut out = self.clone();
        if let Some(f) = &mut out.flow {
            f.image_tokens = tokens;
        }
        out
    }

    /// Refuses a schedule or sampler made for the variance-preserving training schedule of
    /// UNet models when these are a flow model's levels.
    pub fn require_discrete(&self, what: &str) -> Result<()> {
        match self.flow {
            Some(_) => Err(Error::InvalidRequest(format!(
                "{what} is made for Stable Diffusion's noise schedule and does not apply to a \
                 flow-matching model (Flux); use the Flow, Simple, Normal, Beta, SGM Uniform or \
                 Karras schedule"
            ))),
            None => Ok(()),
        }
    }

    /// Number of training timesteps.
    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    /// Always false (a schedule has at least two levels); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    /// Sigma of every training timestep, ascending (index = timestep).
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// alpha_cumprod of every training timestep (f32, as diffusers holds them).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// Smallest training sigma (timestep 0).
    pub fn sigma_min(&self) -> f64 {
        self.sigmas[0]
    }

    /// Largest training sigma (last timestep).
    pub fn sigma_max(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// Sigma at integer timestep `t` (clamped to the table).
    pub fn sigma_at(&self, t: usize) -> f64 {
        self.sigmas[t.min(self.sigmas.len() - 1)]
    }

    /// Continuous timestep for `sigma`: linear interpolation in log-sigma between the two
    /// neighbouring training levels, clamped to [0, N-1] (k-diffusion, `quantize=False`).
    pub fn sigma_to_t(&self, sigma: f64) -> f64 {
        if self.flow.is_some() {
            return sigma;
        }
        let ls = &self.log_sigmas;
        let log_sigma = sigma.ln();
        // Last index whose level is <= sigma, at most N-2 (0 when sigma is below them all).
        let low = ls
            .iter()
            .rposition(|&l| log_sigma - l >= 0.0)
            .unwrap_or(0)
            .min(ls.len() - 2);
        let (lo, hi) = (ls[low], ls[low + 1]);
        let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
        (1.0 - w) * low as f64 + w * (low + 1) as f64
    }

    /// Sigma at continuous timestep `t` (log-sigma interpolation; `t` clamped to [0, N-1]).
    pub fn t_to_sigma(&self, t: f64) -> f64 {
        if let Some(f) = &self.flow {
            return f.sigma(t);
        }
        let t = t.clamp(0.0, (self.sigmas.len() - 1) as f64);
        let (low, high) = (t.floor() as usize, t.ceil() as usize);
        let w = t - t.floor();
        ((1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()
    }

    /// Sigma that DDIM's last step lands on: 0 when `set_alpha_to_one`, else timestep 0's.
    pub fn final_sigma(&self) -> f64 {
        if self.set_alpha_to_one {
            0.0
        } else {
            self.sigmas[0]
        }
    }

    /// Integer timesteps diffusers' `DDIMScheduler.set_timesteps` picks (descending).
    pub fn ddim_timesteps(&self, steps: usize) -> Result<Vec<usize>> {
        let n = self.len();
        check_steps(steps)?;
        if steps > n {
            return Err(Error::InvalidRequest(format!(
                "{steps} steps is more than the model's {n} training timesteps"
            )));
        }
        let ts: Vec<i64> = match self.spacing {
            TimestepSpacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|k| (k * ratio + self.steps_offset) as i64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                // numpy's arange(N, 0, -ratio): values N - k*ratio while > 0.
                let mut out = Vec::new();
                let mut k = 0usize;
                loop {
                    let v = n as f64 - k as f64 * ratio;
                    if v <= 0.0 {
                        break;
                    }
                    out.push(v.round_ties_even() as i64 - 1);
                    k += 1;
                }
                out
            }
            TimestepSpacing::Linspace => linspace(0.0, (n - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|v| v.round_ties_even() as i64)
                .collect(),
        };
        Ok(ts
            .into_iter()
            .map(|t| t.clamp(0, n as i64 - 1) as usize)
            .collect())
    }
}

fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 {
        return Err(Error::InvalidRequest("steps must be at least 1".into()));
    }
    Ok(())
}

fn append_zero(mut v: Vec<f64>) -> Vec<f64> {
    v.push(0.0);
    v
}

/// The timesteps of the largest and smallest training levels: N-1 and 0 for discrete
/// schedules; for flow models the sigmas themselves (ComfyUI's `timestep(sigma_max)`).
fn timestep_range(levels: &NoiseLevels) -> (f64, f64) {
    match levels.flow {
        Some(_) => (levels.sigma_max(), levels.sigma_min()),
        None => ((levels.len() - 1) as f64, 0.0),
    }
}

/// diffusers' flow-matching pipelines (`FluxPipeline`): `linspace(1, 1/N, N)` time-shifted as
/// the model's scheduler config says (a dynamic shift from the image's token count, or the
/// static `shift`), then 0. Flow models only.
pub fn flow(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    match &levels.flow {
        Some(f) => f.pipeline_sigmas(steps),
        None => Err(Error::InvalidRequest(
            "the Flow schedule is for flow-matching models (Flux); pick another schedule".into(),
        )),
    }
}

/// k-diffusion's `get_sigmas`: timesteps evenly spaced from N-1 down to 0, mapped to sigmas
/// (ComfyUI "normal", A1111 "Normal"/"Automatic" for k-samplers).
pub fn normal(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    let (t_max, t_min) = timestep_range(levels);
    Ok(append_zero(
        linspace_f32(t_max, t_min, steps)
            .into_iter()
            .map(|t| levels.t_to_sigma(t as f64))
            .collect(),
    ))
}

/// ComfyUI's "sgm_uniform": `steps + 1` evenly spaced timesteps from N-1 to 0, last dropped.
pub fn sgm_uniform(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    let (t_max, t_min) = timestep_range(levels);
    let ts = linspace_f32(t_max, t_min, steps + 1);
    Ok(append_zero(
        ts[..steps]
            .iter()
            .map(|&t| levels.t_to_sigma(t as f64))
            .collect(),
    ))
}

/// Karras et al. (2022): evenly spaced in sigma^(1/rho) between the model's extremes, rho 7.
pub fn karras(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    Ok(karras_sigmas(
        steps,
        levels.sigma_min(),
        levels.sigma_max(),
        7.0,
    ))
}

/// The Karras schedule between explicit extremes (in f32, as k-diffusion computes it).
pub fn karras_sigmas(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    let (base, span) = (max_inv as f32, (min_inv - max_inv) as f32);
    append_zero(
        linspace_f32(0.0, 1.0, steps)
            .into_iter()
            .map(|r| (base + r * span).powf(rho as f32) as f64)
            .collect(),
    )
}

/// Evenly spaced in log-sigma between the model's extremes (in f32, as k-diffusion).
pub fn exponential(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    Ok(append_zero(
        linspace_f32(levels.sigma_max().ln(), levels.sigma_min().ln(), steps)
            .into_iter()
            .map(|l| l.exp() as f64)
            .collect(),
    ))
}

/// ComfyUI's "simple": every (N/steps)-th training sigma counted from the top.
pub fn simple(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    let n = levels.len();
    let ss = n as f64 / steps as f64;
    Ok(append_zero(
        (0..steps)
            .map(|x| levels.sigmas[n - 1 - ((x as f64 * ss) as usize).min(n - 1)])
            .collect(),
    ))
}

/// ComfyUI's "ddim_uniform": training sigmas at timesteps 1, 1+k, 1+2k, ... (k = N / steps),
/// reversed, with a 0 appended. Like ComfyUI, this gives one extra step when `steps` does not
/// divide N (e.g. 7 steps -> 8 sigmas plus the 0).
pub fn ddim_uniform(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    let n = levels.len();
    let ss = (n / steps).max(1);
    let mut sigs: Vec<f64> = (1..n).step_by(ss).map(|t| levels.sigmas[t]).collect();
    sigs.reverse();
    Ok(append_zero(sigs))
}

/// ComfyUI's "beta" (arXiv:2407.12173): timesteps at the quantiles of a Beta(0.6, 0.6)
/// distribution, rounded to integers; repeated timesteps are dropped.
pub fn beta(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    let total = (levels.len() - 1) as f64;
    let mut sigs = Vec::with_capacity(steps + 1);
    let mut last = f64::NAN;
    for k in 0..steps {
        let p = 1.0 - k as f64 / steps as f64;
        let t = (beta_ppf(p, 0.6, 0.6) * total).round_ties_even();
        if t != last {
            sigs.push(levels.sigmas[t as usize]);
        }
        last = t;
    }
    Ok(append_zero(sigs))
}

/// Align Your Steps' published 10-step SD1.x sigmas (NVIDIA, 2024).
pub const AYS_SD1: [f64; 11] = [
    14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029,
];
/// Align Your Steps' published 10-step SDXL sigmas (NVIDIA, 2024).
pub const AYS_SDXL: [f64; 11] = [
    14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029,
];

/// Align Your Steps for SD1.x: the published table, log-linearly interpolated to other step
/// counts; the last entry becomes 0.
pub fn align_your_steps_sd1(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    levels.require_discrete("Align Your Steps")?;
    Ok(align_your_steps(&AYS_SD1, steps))
}

/// Align Your Steps for SDXL (see [`align_your_steps_sd1`]).
pub fn align_your_steps_sdxl(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    check_steps(steps)?;
    levels.require_discrete("Align Your Steps")?;
    Ok(align_your_steps(&AYS_SDXL, steps))
}

/// Resamples a descending sigma table to `steps + 1` entries, linear in log-sigma over an even
/// grid, and sets the last entry to 0.
pub fn align_your_steps(table: &[f64], steps: usize) -> Vec<f64> {
    let mut out: Vec<f64> = if steps + 1 == table.len() {
        table.to_vec()
    } else {
        let m = table.len();
        let ys: Vec<f64> = table.iter().rev().map(|s| s.ln()).collect();
        let mut v: Vec<f64> = linspace(0.0, 1.0, steps + 1)
            .into_iter()
            .map(|x| {
                let pos = x * (m - 1) as f64;
                let i = (pos.floor() as usize).min(m - 2);
                let xi = i as f64 / (m - 1) as f64;
                let xj = (i + 1) as f64 / (m - 1) as f64;
                let w = (x - xi) / (xj - xi);
                (ys[i] + w * (ys[i + 1] - ys[i])).exp()
            })
            .collect();
        v.reverse();
        v
    };
    let last = out.len() - 1;
    out[last] = 0.0;
    out
}

/// diffusers' DDIM timesteps (`timestep_spacing`, `steps_offset`) as sigmas, ending at the
/// final level (`set_alpha_to_one`): the schedule with which our VE-space DDIM step equals
/// diffusers' DDIMScheduler (eta 0).
pub fn ddim_timesteps(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    levels.require_discrete("The DDIM timesteps schedule")?;
    let mut sigs: Vec<f64> = levels
        .ddim_timesteps(steps)?
        .into_iter()
        .map(|t| levels.sigmas[t])
        .collect();
    sigs.push(levels.final_sigma());
    Ok(sigs)
}

/// diffusers' DDPM timesteps: the DDIM timesteps as sigmas, ending at 0 (`DDPMScheduler`'s last
/// step always lands on alpha_cumprod 1, whatever `set_alpha_to_one` says).
pub fn ddpm_timesteps(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    let mut sigs = ddim_timesteps(levels, steps)?;
    if let Some(last) = sigs.last_mut() {
        *last = 0.0;
    }
    Ok(sigs)
}

/// diffusers' `LCMScheduler` timesteps (distilled on 50 of them: 999, 979, ..., 19), `steps`
/// of them evenly picked, as sigmas ending in 0. At most 50 steps.
pub fn lcm(levels: &NoiseLevels, steps: usize) -> Result<Vec<f64>> {
    const ORIGINAL_STEPS: usize = 50;
    check_steps(steps)?;
    if steps > ORIGINAL_STEPS {
        return Err(Error::InvalidRequest(format!(
            "the LCM schedule has at most {ORIGINAL_STEPS} steps; {steps} were asked for"
        )));
    }
    levels.require_discrete("The LCM schedule")?;
    let k = levels.len() / ORIGINAL_STEPS;
    Ok(append_zero(
        (0..steps)
            .map(|i| {
                let idx = (i as f64 * ORIGINAL_STEPS as f64 / steps as f64).floor() as usize;
                levels.sigma_at((ORIGINAL_STEPS - idx) * k - 1)
            })
            .collect(),
    ))
}

/// Natural log of the gamma function (Lanczos approximation, |error| < 1e-14 for x > 0).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction for the incomplete beta function (modified Lentz).
fn beta_cf(x: f64, a: f64, b: f64) -> f64 {
    let tiny = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        for (k, num) in [
            num,
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ]
        .into_iter()
        .enumerate()
        {
            d = 1.0 + num * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = 1.0 + num / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if k == 1 && (delta - 1.0).abs() < 1e-16 {
                return h;
            }
        }
    }
    h
}

/// Regularized incomplete beta function I_x(a, b).
fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(1.0 - x, b, a) / b
    }
}

/// Quantile function of Beta(a, b) by bisection (the CDF is monotone), to f64 resolution.
fn beta_ppf(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if beta_cdf(mid, a, b) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests;
