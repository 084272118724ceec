//! The samplers: plain functions over a denoiser and a descending sigma list, in k-diffusion's
//! variance-exploding parametrisation (x = x0 + sigma * noise). Each one reports every step to
//! `ctx.on_step` and stops with `Error::Cancelled` when that returns `Flow::Cancel`.

use candle_core::Tensor;

use super::types::{Denoiser, Flow, SampleCtx, StepInfo};
use crate::{Error, Result};

/// `a * x + b * y`.
pub(crate) fn lin(a: f64, x: &Tensor, b: f64, y: &Tensor) -> Result<Tensor> {
    Ok((x.affine(a, 0.0)? + y.affine(b, 0.0)?)?)
}

/// Counts model evaluations and reports steps.
pub(super) struct Run<'d> {
    model: &'d dyn Denoiser,
    pub(super) evals: usize,
}

impl<'d> Run<'d> {
    pub(super) fn new(model: &'d dyn Denoiser) -> Self {
        Self { model, evals: 0 }
    }

    pub(super) fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        self.evals += 1;
        self.model.denoise(x, sigma)
    }

    /// Reports that step `i` (sigmas[i] -> sigmas[i+1]) is done; `Err(Cancelled)` on cancel.
    pub(super) fn report(
        &self,
        ctx: &mut SampleCtx,
        sigmas: &[f64],
        i: usize,
        x: &Tensor,
        denoised: &Tensor,
    ) -> Result<()> {
        let info = StepInfo {
            index: i,
            total: sigmas.len() - 1,
            sigma: sigmas[i],
            sigma_next: sigmas[i + 1],
            x,
            denoised,
            model_evals: self.evals,
        };
        match (ctx.on_step)(&info) {
            Flow::Continue => Ok(()),
            Flow::Cancel => Err(Error::Cancelled),
        }
    }
}

/// The latent in the model's variance-preserving space: `x / sqrt(1 + sigma_last^2)`. A no-op
/// for runs that end at sigma 0; needed after DDIM/PLMS runs that end at the first training
/// level (`set_alpha_to_one = false`) to get exactly diffusers' final latent.
pub fn to_variance_preserving(x: &Tensor, sigma_last: f64) -> Result<Tensor> {
    if sigma_last == 0.0 {
        return Ok(x.clone());
    }
    Ok(x.affine(1.0 / (1.0 + sigma_last * sigma_last).sqrt(), 0.0)?)
}

/// Number of steps in a sigma list (an empty or one-element list has none).
pub(super) fn steps(sigmas: &[f64]) -> usize {
    sigmas.len().saturating_sub(1)
}

/// Noise levels for an ancestral step from `sigma` to `sigma_next` with amount `eta`:
/// `(sigma_down, sigma_up)`, deterministic step to `sigma_down`, then noise of std `sigma_up`.
pub fn ancestral_step(sigma: f64, sigma_next: f64, eta: f64) -> (f64, f64) {
    if eta == 0.0 {
        return (sigma_next, 0.0);
    }
    let up = sigma_next.min(
        eta * (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next)
            / (sigma * sigma))
            .sqrt(),
    );
    let down = (sigma_next * sigma_next - up * up).sqrt();
    (down, up)
}

/// An Euler step of the probability-flow ODE from `sigma` to `sigma_to`, given x0 estimate
/// `denoised`: `x + (sigma_to - sigma) * (x - denoised) / sigma`.
fn euler_step(x: &Tensor, denoised: &Tensor, sigma: f64, sigma_to: f64) -> Result<Tensor> {
    let r = sigma_to / sigma;
    lin(r, x, 1.0 - r, denoised)
}

/// Euler (Karras et al. 2022, Algorithm 2 without churn). One model call per step.
pub fn euler(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let denoised = run.denoise(&x, sigmas[i])?;
        x = euler_step(&x, &denoised, sigmas[i], sigmas[i + 1])?;
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// Euler ancestral (eta 1, s_noise 1): an Euler step down to `sigma_down`, then fresh noise.
pub fn euler_ancestral(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let (down, up) = ancestral_step(s, s_next, 1.0);
        x = euler_step(&x, &denoised, s, down)?;
        if s_next > 0.0 {
            let n = ctx.noise.sample(&x, s, s_next)?;
            x = lin(1.0, &x, up, &n)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// Euler ancestral for flow-matching models (ComfyUI's `sample_euler_ancestral_RF`, which it
/// runs for "euler_ancestral" on them): an Euler step down to `sigma_down`, then the latent
/// rescaled to `sigma_next`'s signal level with fresh noise making up the rest.
pub fn euler_ancestral_rf(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        if s_next == 0.0 {
            x = denoised.clone();
        } else {
            // eta 1: sigma_down = s_next^2 / s.
            let down = s_next * (1.0 + (s_next / s - 1.0));
            let (alpha_next, alpha_down) = (1.0 - s_next, 1.0 - down);
            let renoise = (s_next * s_next
                - down * down * alpha_next * alpha_next / (alpha_down * alpha_down))
                .max(0.0)
                .sqrt();
            let ratio = down / s;
            x = lin(ratio, &x, 1.0 - ratio, &denoised)?;
            let n = ctx.noise.sample(&x, s, s_next)?;
            x = lin(alpha_next / alpha_down, &x, renoise, &n)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// DDIM with eta 0. In the variance-exploding space DDIM's update
/// `x_prev = x0 + sigma_prev * eps` is exactly an Euler step, so with diffusers' DDIM timesteps
/// (`schedules::ddim_timesteps`) and a start of `noise * sqrt(1 + sigma_max^2)` this reproduces
/// diffusers' `DDIMScheduler` (divide the result by `sqrt(1 + sigma_last^2)` to get its latent).
pub fn ddim(
    model: &dyn Denoiser,
    x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    euler(model, x, sigmas, ctx)
}

/// DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in log-sigma, first order on the
/// first step and on the step to sigma 0.
pub fn dpmpp_2m(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    let mut old: Option<Tensor> = None;
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let h = s.ln() - s_next.ln();
        let coef = -(-h).exp_m1();
        let d = match &old {
            Some(prev) if s_next > 0.0 => {
                let h_last = sigmas[i - 1].ln() - s.ln();
                let r = h_last / h;
                lin(1.0 + 1.0 / (2.0 * r), &denoised, -1.0 / (2.0 * r), prev)?
            }
            _ => denoised.clone(),
        };
        x = lin(s_next / s, &x, coef, &d)?;
        run.report(ctx, sigmas, i, &x, &denoised)?;
        old = Some(denoised);
    }
    Ok(x)
}

/// Heun's method (Karras et al. 2022, Algorithm 2 without churn): Euler predictor, trapezoidal
/// corrector. Two model calls per step, one on the step to sigma 0.
pub fn heun(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        if s_next == 0.0 {
            x = euler_step(&x, &denoised, s, s_next)?;
        } else {
            let d = lin(1.0 / s, &x, -1.0 / s, &denoised)?;
            let x2 = lin(1.0, &x, s_next - s, &d)?;
            let denoised2 = run.denoise(&x2, s_next)?;
            let d2 = lin(1.0 / s_next, &x2, -1.0 / s_next, &denoised2)?;
            let dt = s_next - s;
            x = (x + lin(0.5 * dt, &d, 0.5 * dt, &d2)?)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// Midpoint in log-sigma between `a` and `b`.
fn log_mid(a: f64, b: f64) -> f64 {
    (0.5 * (a.ln() + b.ln())).exp()
}

/// DPM2: a DPM-Solver-2 style midpoint step (midpoint in log-sigma). Two model calls per step,
/// one on the step to sigma 0.
pub fn dpm_2(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        x = if s_next == 0.0 {
            euler_step(&x, &denoised, s, s_next)?
        } else {
            midpoint_step(&mut run, &x, &denoised, s, s_next)?
        };
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// Euler half-step to the log-midpoint, then the full step from `sigma` to `sigma_to` with the
/// derivative taken there.
fn midpoint_step(
    run: &mut Run,
    x: &Tensor,
    denoised: &Tensor,
    sigma: f64,
    sigma_to: f64,
) -> Result<Tensor> {
    let mid = log_mid(sigma, sigma_to);
    let x2 = euler_step(x, denoised, sigma, mid)?;
    let denoised2 = run.denoise(&x2, mid)?;
    let d2 = lin(1.0 / mid, &x2, -1.0 / mid, &denoised2)?;
    lin(1.0, x, sigma_to - sigma, &d2)
}

/// DPM2 ancestral (eta 1): the DPM2 step down to `sigma_down`, then fresh noise.
pub fn dpm_2_ancestral(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let (down, up) = ancestral_step(s, s_next, 1.0);
        if down == 0.0 {
            x = euler_step(&x, &denoised, s, down)?;
        } else {
            x = midpoint_step(&mut run, &x, &denoised, s, down)?;
            let n = ctx.noise.sample(&x, s, s_next)?;
            x = lin(1.0, &x, up, &n)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// Integral over [t[i], t[i+1]] of the Lagrange basis polynomial for node `t[i-j]` built on
/// the nodes t[i], ..., t[i-order+1]. The integrand has degree < 4, so 4-point Gauss-Legendre
/// quadrature is exact.
fn lms_coeff(order: usize, t: &[f64], i: usize, j: usize) -> f64 {
    const NODES: [f64; 4] = [
        -0.861_136_311_594_052_6,
        -0.339_981_043_584_856_3,
        0.339_981_043_584_856_3,
        0.861_136_311_594_052_6,
    ];
    const WEIGHTS: [f64; 4] = [
        0.347_854_845_137_453_9,
        0.652_145_154_862_546_1,
        0.652_145_154_862_546_1,
        0.347_854_845_137_453_9,
    ];
    let basis = |tau: f64| {
        (0..order)
            .filter(|&k| k != j)
            .map(|k| (tau - t[i - k]) / (t[i - j] - t[i - k]))
            .product::<f64>()
    };
    let (a, b) = (t[i], t[i + 1]);
    let (half, mid) = (0.5 * (b - a), 0.5 * (a + b));
    NODES
        .iter()
        .zip(WEIGHTS)
        .map(|(x, w)| w * basis(mid + half * x))
        .sum::<f64>()
        * half
}

/// Linear multistep (order 4): Adams-Bashforth in sigma over the last four derivatives.
pub fn lms(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    const ORDER: usize = 4;
    let mut run = Run::new(model);
    let mut ds: Vec<Tensor> = Vec::with_capacity(ORDER + 1);
    for i in 0..steps(sigmas) {
        let s = sigmas[i];
        let denoised = run.denoise(&x, s)?;
        ds.push(lin(1.0 / s, &x, -1.0 / s, &denoised)?);
        if ds.len() > ORDER {
            ds.remove(0);
        }
        let order = (i + 1).min(ORDER);
        for (j, d) in ds.iter().rev().enumerate() {
            x = lin(1.0, &x, lms_coeff(order, sigmas, i, j), d)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// DPM-Solver++(2S) ancestral (eta 1): a two-stage DPM-Solver++ step down to `sigma_down`
/// (stage at the log-midpoint), then fresh noise. Two model calls per step, one on the last.
pub fn dpmpp_2s_ancestral(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let (down, up) = ancestral_step(s, s_next, 1.0);
        if down == 0.0 {
            x = euler_step(&x, &denoised, s, down)?;
        } else {
            let mid = log_mid(s, down);
            let x2 = dpmpp_first_order(&x, &denoised, s, mid)?;
            let denoised2 = run.denoise(&x2, mid)?;
            x = dpmpp_first_order(&x, &denoised2, s, down)?;
        }
        if s_next > 0.0 {
            let n = ctx.noise.sample(&x, s, s_next)?;
            x = lin(1.0, &x, up, &n)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// First-order DPM-Solver++ step from `sigma` to `sigma_to` with x0 estimate `d`:
/// `(sigma_to / sigma) x + (1 - sigma_to / sigma) d` written with expm1 as k-diffusion does.
fn dpmpp_first_order(x: &Tensor, d: &Tensor, sigma: f64, sigma_to: f64) -> Result<Tensor> {
    let h = sigma.ln() - sigma_to.ln();
    lin(sigma_to / sigma, x, -(-h).exp_m1(), d)
}

/// DPM-Solver++ SDE (eta 1, r 1/2): two stochastic DPM-Solver++ stages per step with noise
/// from `ctx.noise` (meant to be a Brownian tree). Two model calls per step, one on the last.
pub fn dpmpp_sde(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        if s_next == 0.0 {
            x = euler_step(&x, &denoised, s, s_next)?;
        } else {
            let (t, t_next) = (-s.ln(), -s_next.ln());
            let s_mid = (-(t + 0.5 * (t_next - t))).exp();
            // Stage 1: to the midpoint, ancestral.
            let (sd, su) = ancestral_step(s, s_mid, 1.0);
            let x2 = dpmpp_first_order(&x, &denoised, s, sd)?;
            let n = ctx.noise.sample(&x, s, s_mid)?;
            let x2 = lin(1.0, &x2, su, &n)?;
            let denoised2 = run.denoise(&x2, s_mid)?;
            // Stage 2: the full step with the averaged (fac = 1) x0 estimate.
            let (sd, su) = ancestral_step(s, s_next, 1.0);
            x = dpmpp_first_order(&x, &denoised2, s, sd)?;
            let n = ctx.noise.sample(&x, s, s_next)?;
            x = lin(1.0, &x, su, &n)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// DPM-Solver++(2M) SDE (eta 1, midpoint variant), noise from `ctx.noise`.
pub fn dpmpp_2m_sde(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    let mut old: Option<(Tensor, f64)> = None;
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let mut h = f64::NAN;
        if s_next == 0.0 {
            x = denoised.clone();
        } else {
            h = s.ln() - s_next.ln();
            let eta_h = h; // eta = 1
            let c = -(-h - eta_h).exp_m1();
            x = lin(s_next / s * (-eta_h).exp(), &x, c, &denoised)?;
            if let Some((prev, h_last)) = &old {
                let r = h_last / h;
                let k = 0.5 * c / r;
                x = (x + lin(k, &denoised, -k, prev)?)?;
            }
            let n = ctx.noise.sample(&x, s, s_next)?;
            x = lin(1.0, &x, s_next * (-(-2.0 * eta_h).exp_m1()).sqrt(), &n)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
        old = Some((denoised, h));
    }
    Ok(x)
}

/// DPM-Solver++(3M) SDE (eta 1), noise from `ctx.noise`.
pub fn dpmpp_3m_sde(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    // (denoised, h) of the previous two steps, newest first.
    let mut hist: Vec<(Tensor, f64)> = Vec::with_capacity(2);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let mut h = f64::NAN;
        if s_next == 0.0 {
            x = denoised.clone();
        } else {
            h = s.ln() - s_next.ln();
            let h_eta = 2.0 * h; // h * (eta + 1)
            x = lin((-h_eta).exp(), &x, -(-h_eta).exp_m1(), &denoised)?;
            let phi_2 = (-h_eta).exp_m1() / h_eta + 1.0;
            match hist.as_slice() {
                [(d1, h1), (d2, h2), ..] => {
                    let (r0, r1) = (h1 / h, h2 / h);
                    let d1_0 = lin(1.0 / r0, &denoised, -1.0 / r0, d1)?;
                    let d1_1 = lin(1.0 / r1, d1, -1.0 / r1, d2)?;
                    let diff = (&d1_0 - &d1_1)?;
                    let dd1 = lin(1.0, &d1_0, r0 / (r0 + r1), &diff)?;
                    let dd2 = diff.affine(1.0 / (r0 + r1), 0.0)?;
                    let phi_3 = phi_2 / h_eta - 0.5;
                    x = (x + lin(phi_2, &dd1, -phi_3, &dd2)?)?;
                }
                [(d1, h1)] => {
                    let r = h1 / h;
                    x = (x + lin(phi_2 / r, &denoised, -phi_2 / r, d1)?)?;
                }
                [] => {}
            }
            let n = ctx.noise.sample(&x, s, s_next)?;
            x = lin(1.0, &x, s_next * (-(-2.0 * h).exp_m1()).sqrt(), &n)?;
        }
        run.report(ctx, sigmas, i, &x, &denoised)?;
        hist.insert(0, (denoised, h));
        hist.truncate(2);
    }
    Ok(x)
}

/// PLMS as diffusers' `PNDMScheduler` with `skip_prk_steps` runs it: the first step is an
/// improved-Euler step (two model calls), then Adams-Bashforth of order 2, 3 and 4 on the noise
/// predictions with the constant coefficients of equal steps. One model call per step after
/// the first (a single-step run makes one plain DDIM step).
pub fn plms(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    let n = steps(sigmas);
    // Noise predictions (d = (x - x0) / sigma), oldest first, at most four.
    let mut eps: Vec<Tensor> = Vec::with_capacity(5);
    for i in 0..n {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let d = lin(1.0 / s, &x, -1.0 / s, &denoised)?;
        eps.push(d.clone());
        if eps.len() > 4 {
            eps.remove(0);
        }
        let e = |k: usize| &eps[eps.len() - 1 - k];
        let d_used = if i == 0 {
            if n >= 2 {
                let x_pred = lin(1.0, &x, s_next - s, &d)?;
                let den2 = run.denoise(&x_pred, s_next)?;
                let d2 = lin(1.0 / s_next, &x_pred, -1.0 / s_next, &den2)?;
                lin(0.5, &d, 0.5, &d2)?
            } else {
                d
            }
        } else {
            match eps.len() {
                2 => lin(1.5, e(0), -0.5, e(1))?,
                3 => {
                    (lin(23.0 / 12.0, e(0), -16.0 / 12.0, e(1))? + e(2).affine(5.0 / 12.0, 0.0)?)?
                }
                _ => {
                    (lin(55.0 / 24.0, e(0), -59.0 / 24.0, e(1))?
                        + lin(37.0 / 24.0, e(2), -9.0 / 24.0, e(3))?)?
                }
            }
        };
        x = lin(1.0, &x, s_next - s, &d_used)?;
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// DDPM ancestral sampling: the posterior mean of the variance-preserving chain from `sigma`
/// to `sigma_next` plus its posterior noise ("fixed small" variance), written in the
/// variance-exploding space (as diffusers' `DDPMScheduler` and ComfyUI's `ddpm`).
pub fn ddpm(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        let ac = 1.0 / (1.0 + s * s);
        let ac_next = 1.0 / (1.0 + s_next * s_next);
        let alpha = ac / ac_next;
        // mean in VP space: (x_vp - (1 - alpha) eps / sqrt(1 - ac)) / sqrt(alpha), with
        // x_vp = x sqrt(ac) and eps = (x - x0) / s; then back to VE by / sqrt(ac_next).
        let k_eps = (1.0 - alpha) / (1.0 - ac).sqrt() / s;
        let back = 1.0 / (alpha.sqrt() * ac_next.sqrt());
        let mut mean = lin((ac.sqrt() - k_eps) * back, &x, k_eps * back, &denoised)?;
        if s_next > 0.0 {
            let std = ((1.0 - alpha) * (1.0 - ac_next) / (1.0 - ac)).sqrt() / ac_next.sqrt();
            let n = ctx.noise.sample(&x, s, s_next)?;
            mean = lin(1.0, &mean, std, &n)?;
        }
        x = mean;
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// LCM multistep sampling: jump to the x0 estimate, then re-noise to the next sigma with fresh
/// noise (diffusers' `LCMScheduler` without its near-identity boundary scalings; ComfyUI `lcm`).
pub fn lcm(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    for i in 0..steps(sigmas) {
        let (s, s_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = run.denoise(&x, s)?;
        x = if s_next > 0.0 {
            let n = ctx.noise.sample(&denoised, s, s_next)?;
            lin(1.0, &denoised, s_next, &n)?
        } else {
            denoised.clone()
        };
        run.report(ctx, sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}
