//! The multistep and adaptive solvers: UniPC (bh1 and bh2) and DPM-Solver fast and adaptive,
//! over the same denoiser and sigma list as the other samplers.

use candle_core::Tensor;

use super::samplers::{lin, steps, Run};
use super::types::{Denoiser, Flow, SampleCtx, StepInfo};
use crate::{Error, Result};

/// UniPC (Zhao et al. 2023) with B(h) = h ("bh1", A1111's and ComfyUI's `uni_pc` variant);
/// otherwise as [`uni_pc_bh2`]. Matches diffusers' `UniPCMultistepScheduler` with
/// `solver_type = "bh1"` (order 2), except that a last step to sigma 0 returns the x0 estimate
/// where diffusers' bh1 computes `inf * 0` and yields NaN.
pub fn uni_pc(
    model: &dyn Denoiser,
    x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    uni_pc_variant(model, x, sigmas, ctx, |h| -h)
}

/// UniPC as diffusers' `UniPCMultistepScheduler` defaults run it: data prediction,
/// B(h) = expm1(-h) ("bh2"), order 2 with order 1 on the first and the last step, and the UniC
/// corrector applied to each new point with the model output already computed there (so one
/// model call per step).
pub fn uni_pc_bh2(
    model: &dyn Denoiser,
    x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    uni_pc_variant(model, x, sigmas, ctx, |h| (-h).exp_m1())
}

/// The UniPC loop; `b_of_h` gives B(h) for a step of length h in lambda = -ln(sigma).
fn uni_pc_variant(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
    b_of_h: fn(f64) -> f64,
) -> Result<Tensor> {
    let mut run = Run::new(model);
    let n = steps(sigmas);
    let lambda = |s: f64| -s.ln();
    // Model outputs (x0 estimates) of the last two steps, newest last.
    let mut hist: Vec<Tensor> = Vec::with_capacity(3);
    let mut last: Option<(Tensor, usize)> = None; // (x at the previous step, its order)
    for k in 0..n {
        let s = sigmas[k];
        let denoised = run.denoise(&x, s)?;
        if let Some((x_prev, order)) = &last {
            // Corrector from sigmas[k-1] to sigmas[k], using the new model output.
            let (s0, st) = (sigmas[k - 1], s);
            let h = lambda(st) - lambda(s0);
            let m0 = &hist[hist.len() - 1];
            let b_h = b_of_h(h);
            let base = lin(st / s0, x_prev, -(-h).exp_m1(), m0)?;
            let d1_t = (&denoised - m0)?;
            x = if *order == 1 {
                lin(1.0, &base, -b_h * 0.5, &d1_t)?
            } else {
                let r1 = (lambda(sigmas[k - 2]) - lambda(s0)) / h;
                let (b1, b2) = unipc_b(h, b_h);
                // Solve [[1, 1], [r1, 1]] rho = [b1, b2].
                let rho0 = (b1 - b2) / (1.0 - r1);
                let rho1 = b1 - rho0;
                let m1 = &hist[hist.len() - 2];
                let d1 = lin(1.0 / r1, m1, -1.0 / r1, m0)?;
                let corr = lin(rho0, &d1, rho1, &d1_t)?;
                lin(1.0, &base, -b_h, &corr)?
            };
        }
        hist.push(denoised.clone());
        if hist.len() > 2 {
            hist.remove(0);
        }
        let order = 2.min(n - k).min(k + 1);
        last = Some((x.clone(), order));
        // Predictor from sigmas[k] to sigmas[k+1].
        let (s0, st) = (s, sigmas[k + 1]);
        let h = lambda(st) - lambda(s0);
        let m0 = &hist[hist.len() - 1];
        x = lin(st / s0, &x, -(-h).exp_m1(), m0)?;
        if order == 2 {
            let b_h = b_of_h(h);
            let r1 = (lambda(sigmas[k - 1]) - lambda(s0)) / h;
            let m1 = &hist[hist.len() - 2];
            // pred_res = 0.5 * (m1 - m0) / r1
            x = (x + lin(b_h * 0.5 / r1, m0, -b_h * 0.5 / r1, m1)?)?;
        }
        run.report(ctx, sigmas, k, &x, &denoised)?;
    }
    Ok(x)
}

/// UniPC's b_1, b_2 for step h (data prediction) and B(h) `b_h`: with hh = -h,
/// b_1 = (phi_1(hh) - 1) / B(h) and b_2 = 2 ((phi_1(hh) - 1) / hh - 1/2) / B(h).
fn unipc_b(h: f64, b_h: f64) -> (f64, f64) {
    let hh = -h;
    let k1 = hh.exp_m1() / hh - 1.0;
    let k2 = k1 / hh - 0.5;
    (k1 / b_h, 2.0 * k2 / b_h)
}

/// One DPM-Solver step of order 1, 2 or 3 (Lu et al. 2022, noise-prediction form, intermediate
/// points at r = 1/2 resp. 1/3 and 2/3) from `t` to `t_next` in t = -ln(sigma); `eps` is the
/// noise prediction at (x, t). Returns the new x.
fn dpm_solver_step(
    run: &mut Run,
    x: &Tensor,
    eps: &Tensor,
    t: f64,
    t_next: f64,
    order: usize,
) -> Result<Tensor> {
    Ok(dpm_solver_steps(run, x, eps, t, t_next, order, 0.5)?.0)
}

/// Like [`dpm_solver_step`], with the second-order point at `r1`; for order 3 also returns the
/// second-order result through the same first intermediate point (r1 = 1/3), which DPM
/// adaptive uses as its error estimate.
fn dpm_solver_steps(
    run: &mut Run,
    x: &Tensor,
    eps: &Tensor,
    t: f64,
    t_next: f64,
    order: usize,
    r1_order2: f64,
) -> Result<(Tensor, Option<Tensor>)> {
    let sigma = |t: f64| (-t).exp();
    let eps_at = |run: &mut Run, x: &Tensor, t: f64| -> Result<Tensor> {
        let s = sigma(t);
        let den = run.denoise(x, s)?;
        lin(1.0 / s, x, -1.0 / s, &den)
    };
    let h = t_next - t;
    let sn = sigma(t_next);
    let first = lin(1.0, x, -sn * h.exp_m1(), eps)?;
    match order {
        1 => Ok((first, None)),
        2 => {
            let r1 = r1_order2;
            let s1 = t + r1 * h;
            let u1 = lin(1.0, x, -sigma(s1) * (r1 * h).exp_m1(), eps)?;
            let e1 = eps_at(run, &u1, s1)?;
            let k = sn / (2.0 * r1) * h.exp_m1();
            Ok((lin(1.0, &first, -k, &(e1 - eps)?)?, None))
        }
        _ => {
            let (r1, r2) = (1.0 / 3.0, 2.0 / 3.0);
            let (s1, s2) = (t + r1 * h, t + r2 * h);
            let u1 = lin(1.0, x, -sigma(s1) * (r1 * h).exp_m1(), eps)?;
            let e1 = eps_at(run, &u1, s1)?;
            let d1 = (&e1 - eps)?;
            let low = lin(1.0, &first, -sn / (2.0 * r1) * h.exp_m1(), &d1)?;
            let k2 = sigma(s2) * (r2 / r1) * ((r2 * h).exp_m1() / (r2 * h) - 1.0);
            let u2 = lin(1.0, x, -sigma(s2) * (r2 * h).exp_m1(), eps)?;
            let u2 = lin(1.0, &u2, -k2, &d1)?;
            let e2 = eps_at(run, &u2, s2)?;
            let k3 = sn / r2 * (h.exp_m1() / h - 1.0);
            Ok((lin(1.0, &first, -k3, &(e2 - eps)?)?, Some(low)))
        }
    }
}

/// The sigma range a DPM fast/adaptive run covers: from `sigmas[0]` down to the smallest
/// non-zero sigma (these samplers end there, not at 0).
fn dpm_range(sigmas: &[f64]) -> Result<(f64, f64)> {
    let max = sigmas.first().copied().unwrap_or(0.0);
    let min = sigmas
        .iter()
        .copied()
        .filter(|s| *s > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !(max > 0.0 && min.is_finite()) {
        return Err(Error::InvalidRequest(
            "DPM fast/adaptive need a sigma list with a non-zero sigma".into(),
        ));
    }
    Ok((min, max))
}

/// DPM-Solver-Fast (eta 0): `sigmas.len() - 1` model evaluations spent on equal steps in
/// log-sigma from `sigmas[0]` to the smallest non-zero sigma, mostly third-order steps with
/// one or two lower-order ones at the end. Reports one step per solver step.
pub fn dpm_fast(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    let nfe = steps(sigmas);
    if nfe == 0 {
        return Ok(x);
    }
    let (sigma_min, sigma_max) = dpm_range(sigmas)?;
    let m = nfe / 3 + 1;
    let mut orders = vec![3usize; m];
    if nfe.is_multiple_of(3) {
        orders[m - 2] = 2;
        orders[m - 1] = 1;
    } else {
        orders[m - 1] = nfe % 3;
    }
    // k-diffusion computes these times in f32.
    let ts: Vec<f64> = super::schedules::linspace_f32(
        -(sigma_max as f32).ln() as f64,
        -(sigma_min as f32).ln() as f64,
        m + 1,
    )
    .into_iter()
    .map(f64::from)
    .collect();
    let step_sigmas: Vec<f64> = ts.iter().map(|t| (-t).exp()).collect();
    let mut run = Run::new(model);
    for (i, &order) in orders.iter().enumerate() {
        let (t, t_next) = (ts[i], ts[i + 1]);
        let s = step_sigmas[i];
        let denoised = run.denoise(&x, s)?;
        let eps = lin(1.0 / s, &x, -1.0 / s, &denoised)?;
        x = dpm_solver_step(&mut run, &x, &eps, t, t_next, order)?;
        run.report(ctx, &step_sigmas, i, &x, &denoised)?;
    }
    Ok(x)
}

/// DPM-Solver-23 with adaptive step size (eta 0; k-diffusion's defaults: rtol 0.05,
/// atol 0.0078, first step 0.05 in log-sigma, integral controller, accept safety 0.81): third-
/// order steps from `sigmas[0]` to the smallest non-zero sigma, each checked against an
/// embedded second-order result. Only the sigma range is used, not the step count. Three model
/// calls per attempt; every attempt (accepted or rejected) is reported, with `total` 0 because
/// the number of attempts is not known in advance.
pub fn dpm_adaptive(
    model: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    ctx: &mut SampleCtx,
) -> Result<Tensor> {
    const RTOL: f64 = 0.05;
    const ATOL: f64 = 0.0078;
    const ACCEPT_SAFETY: f64 = 0.81;
    const ORDER: f64 = 3.0;
    if steps(sigmas) == 0 {
        return Ok(x);
    }
    let (sigma_min, sigma_max) = dpm_range(sigmas)?;
    let t_end = -sigma_min.ln();
    let mut s = -sigma_max.ln();
    let mut h = 0.05f64;
    let mut x_prev = x.clone();
    let mut run = Run::new(model);
    let mut attempt = 0usize;
    while s < t_end - 1e-5 {
        let t = t_end.min(s + h);
        let sigma_s = (-s).exp();
        let denoised = run.denoise(&x, sigma_s)?;
        let eps = lin(1.0 / sigma_s, &x, -1.0 / sigma_s, &denoised)?;
        let (high, low) = dpm_solver_steps(&mut run, &x, &eps, s, t, 3, 1.0 / 3.0)?;
        let low = low.expect("order 3 returns the embedded estimate");
        let scale = low
            .abs()?
            .maximum(&x_prev.abs()?)?
            .affine(RTOL, 0.0)?
            .maximum(ATOL)?;
        let ratio = ((&low - &high)? / scale)?;
        let error = (ratio
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?
            / ratio.elem_count() as f64)
            .sqrt();
        // Integral controller (k-diffusion's PID with only the I term): the step grows or
        // shrinks with error^(-1/order), softened by 1 + atan(f - 1).
        let factor = 1.0 + ((1.0 / (error + 1e-8)).powf(1.0 / ORDER) - 1.0).atan();
        let accept = factor >= ACCEPT_SAFETY;
        h *= factor;
        let sigma_t = (-t).exp();
        if accept {
            x_prev = low;
            x = high;
            s = t;
        }
        let info = StepInfo {
            index: attempt,
            total: 0,
            sigma: sigma_s,
            sigma_next: sigma_t,
            x: &x,
            denoised: &denoised,
            model_evals: run.evals,
        };
        if (ctx.on_step)(&info) == Flow::Cancel {
            return Err(Error::Cancelled);
        }
        attempt += 1;
    }
    Ok(x)
}
