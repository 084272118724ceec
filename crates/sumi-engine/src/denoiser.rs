//! The model as k-diffusion sees it: `(x, sigma) -> x0`, with classifier-free guidance, the
//! timestep mapping and the parametrization (eps, v, flow) hidden inside.
//!
//! Guidance follows A1111's `CFGDenoiser`: the conditioning of each call is picked by the
//! number of model calls made before it (prompt editing and alternation), the positive
//! prompt's `AND` parts are combined as `uncond + sum_i w_i * scale * (cond_i - uncond)`, and a
//! negative prompt of another length than the positive one runs as a separate call, never
//! padded.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor};

use crate::arch::network::{DenoisingNetwork, NetCond};
use crate::parametrization::Parametrization;
use crate::sampling::schedules::NoiseLevels;
use crate::sampling::types::Denoiser;
use crate::{Error, Result};

/// The guidance of one request: the conditioning, and the unconditional one with its scale.
pub struct Guidance {
    /// The prompt's conditioning (one row).
    pub cond: NetCond,
    /// The negative prompt's conditioning and the CFG scale; `None` runs without guidance.
    pub uncond: Option<(NetCond, f64)>,
}

/// Conditioning over the model calls: `(last call, cond)` pairs with increasing last calls.
/// Call `k` (counted from 0) takes the first entry whose last call is at least `k`, or the
/// first entry when `k` is past them all (A1111's `reconstruct_cond_batch`).
pub type NetSchedule = Vec<(u32, NetCond)>;

/// The guidance of one request with A1111's prompt features: per-call schedules and `AND`.
pub struct PromptGuidance {
    /// The positive prompt's `AND` parts: weight and schedule (one part of weight 1 without
    /// `AND`).
    pub parts: Vec<(f64, NetSchedule)>,
    /// The negative prompt's schedule and the CFG scale; `None` runs the only part without
    /// guidance.
    pub uncond: Option<(NetSchedule, f64)>,
}

impl From<Guidance> for PromptGuidance {
    fn from(g: Guidance) -> Self {
        Self {
            parts: vec![(1.0, vec![(u32::MAX, g.cond)])],
            uncond: g.uncond.map(|(u, scale)| (vec![(u32::MAX, u)], scale)),
        }
    }
}

/// The index of the entry of `schedule` that model call `call` uses.
fn pick<T>(schedule: &[(u32, T)], call: usize) -> usize {
    schedule
        .iter()
        .position(|(last, _)| call <= *last as usize)
        .unwrap_or(0)
}

/// The network inputs of one combination of schedule entries.
enum Batch {
    /// Uncond (when guided) and every part in one call: rows `[uncond, part0, part1, ...]`.
    Joined(NetCond),
    /// The parts in one call, the uncond in another (their lengths differ).
    Split(NetCond, Option<NetCond>),
}

/// `cond` with its context made `len` tokens long by repeating its last token vector (A1111's
/// `stack_conds` for `AND` parts of different lengths).
fn pad_context(cond: &NetCond, len: usize) -> Result<NetCond> {
    let NetCond::CrossAttention { context, added } = cond else {
        return Ok(cond.clone());
    };
    let (b, n, d) = context.dims3()?;
    if n >= len || n == 0 {
        return Ok(cond.clone());
    }
    let last = context.narrow(1, n - 1, 1)?.broadcast_as((b, len - n, d))?;
    Ok(NetCond::CrossAttention {
        context: Tensor::cat(&[context, &last.contiguous()?], 1)?,
        added: added.clone(),
    })
}

/// The parts' conditionings as one batch, shorter contexts padded to the longest.
fn join_parts(parts: &[&NetCond]) -> Result<NetCond> {
    let len = parts
        .iter()
        .map(|c| match c {
            NetCond::CrossAttention { context, .. } => context.dim(1),
            NetCond::Flow { txt, .. } => txt.dim(1),
        })
        .collect::<candle_core::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    let padded = parts
        .iter()
        .map(|c| pad_context(c, len))
        .collect::<Result<Vec<_>>>()?;
    NetCond::join(&padded.iter().collect::<Vec<_>>())?.ok_or_else(|| {
        Error::InvalidRequest("the AND parts of the prompt cannot be batched together".into())
    })
}

/// A denoising network wrapped as a denoiser for one request's conditioning.
pub struct ModelDenoiser<'a> {
    network: &'a dyn DenoisingNetwork,
    levels: &'a NoiseLevels,
    parametrization: Parametrization,
    guidance: PromptGuidance,
    /// Batches built so far, by the schedule entries they use.
    batches: RefCell<HashMap<Vec<usize>, std::sync::Arc<Batch>>>,
    dtype: DType,
    cancel: &'a AtomicBool,
    evals: Cell<usize>,
    /// Channels appended to the network's input (9-channel inpainting models), one row.
    concat: Option<Tensor>,
}

impl<'a> ModelDenoiser<'a> {
    /// Wraps `network` for `guidance`, computing in `dtype`; `cancel` stops it before a call.
    pub fn new(
        network: &'a dyn DenoisingNetwork,
        levels: &'a NoiseLevels,
        parametrization: Parametrization,
        guidance: impl Into<PromptGuidance>,
        dtype: DType,
        cancel: &'a AtomicBool,
    ) -> Result<Self> {
        let guidance = guidance.into();
        let empty = guidance.parts.is_empty()
            || guidance.parts.iter().any(|(_, s)| s.is_empty())
            || guidance.uncond.as_ref().is_some_and(|(s, _)| s.is_empty());
        if empty {
            return Err(Error::InvalidRequest(
                "guidance needs at least one conditioning for the prompt and the negative".into(),
            ));
        }
        if guidance.uncond.is_none() && guidance.parts.len() > 1 {
            return Err(Error::InvalidRequest(
                "AND parts need the negative prompt's conditioning to combine".into(),
            ));
        }
        Ok(Self {
            network,
            levels,
            parametrization,
            guidance,
            batches: RefCell::new(HashMap::new()),
            dtype,
            cancel,
            evals: Cell::new(0),
            concat: None,
        })
    }

    /// Appends `extra` (one row, e.g. `imaging::inpaint_conditioning`) to the network's input
    /// channels at every call, repeated for the guidance batch.
    pub fn with_concat(mut self, extra: Tensor) -> Result<Self> {
        self.concat = Some(extra.to_dtype(self.dtype)?);
        Ok(self)
    }

    /// Model evaluations so far.
    pub fn evals(&self) -> usize {
        self.evals.get()
    }

    /// The network's output for `x_in` at timestep `t` under `cond`, in f32; `x_in` is one
    /// row, repeated to the conditioning's rows.
    fn run(&self, x_in: &Tensor, t: f64, cond: &NetCond) -> Result<Tensor> {
        let rows = cond.rows()?;
        let joined;
        let x_in = match &self.concat {
            Some(extra) => {
                joined = Tensor::cat(&[x_in, extra], 1)?;
                &joined
            }
            None => x_in,
        };
        let x = match rows {
            1 => x_in.clone(),
            n => Tensor::cat(&vec![x_in; n], 0)?,
        };
        let ts = Tensor::full(t as f32, x.dim(0)?, x.device())?;
        Ok(self.network.forward(&x, &ts, cond)?.to_dtype(DType::F32)?)
    }

    /// The batch for model call `call`, built on first use.
    fn batch(&self, call: usize) -> Result<std::sync::Arc<Batch>> {
        let g = &self.guidance;
        let mut key: Vec<usize> = g.parts.iter().map(|(_, s)| pick(s, call)).collect();
        let uncond = g.uncond.as_ref().map(|(s, _)| {
            let i = pick(s, call);
            key.push(i);
            &s[i].1
        });
        if let Some(b) = self.batches.borrow().get(&key) {
            return Ok(b.clone());
        }
        let parts: Vec<&NetCond> = g
            .parts
            .iter()
            .zip(&key)
            .map(|((_, s), &i)| &s[i].1)
            .collect();
        let conds = join_parts(&parts)?;
        let batch = match uncond {
            Some(u) => match NetCond::join(&[u, &conds])? {
                Some(joined) => Batch::Joined(joined),
                None => Batch::Split(conds, Some(u.clone())),
            },
            None => Batch::Split(conds, None),
        };
        let batch = std::sync::Arc::new(batch);
        self.batches.borrow_mut().insert(key, batch.clone());
        Ok(batch)
    }
}

impl Denoiser for ModelDenoiser<'_> {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let t = self.levels.sigma_to_t(sigma);
        let x_in = (x * self.parametrization.input_scale(sigma))?.to_dtype(self.dtype)?;
        let b = x.dim(0)?;
        let n = self.guidance.parts.len();
        // Rows of `(uncond, parts)`: the network's outputs, `b` rows each.
        let (uncond, conds) = match &*self.batch(self.evals.get())? {
            Batch::Joined(joined) => {
                let out = self.run(&x_in, t, joined)?;
                (Some(out.narrow(0, 0, b)?), out.narrow(0, b, n * b)?)
            }
            Batch::Split(conds, uncond) => {
                let u = uncond.as_ref().map(|u| self.run(&x_in, t, u)).transpose()?;
                (u, self.run(&x_in, t, conds)?)
            }
        };
        let out = match (uncond, &self.guidance.uncond) {
            (Some(u), Some((_, scale))) => {
                let mut acc = u.clone();
                for (i, (weight, _)) in self.guidance.parts.iter().enumerate() {
                    let c = conds.narrow(0, i * b, b)?;
                    acc = (acc + ((c - &u)? * (weight * scale))?)?;
                }
                acc
            }
            _ => conds,
        };
        self.evals.set(self.evals.get() + 1);
        Ok(self.parametrization.to_x0(x, &out, sigma)?)
    }
}

/// A1111's inpainting with a normal model: after every model call the estimate outside the
/// mask is replaced by the init latent, `init * keep + repaint * x0` (`CFGDenoiser`'s
/// `init_latent * mask + nmask * denoised`).
pub struct InpaintBlend<'a> {
    /// The denoiser being wrapped.
    pub inner: &'a dyn Denoiser,
    /// The encoded init picture.
    pub init: &'a Tensor,
    /// 1 where the picture is kept, `[1, 1, h, w]`.
    pub keep: &'a Tensor,
    /// 1 where it is repainted (`1 - keep`).
    pub repaint: &'a Tensor,
}

impl InpaintBlend<'_> {
    /// The blend of an estimate (also applied once more to the sampler's result).
    pub fn blend(&self, x0: &Tensor) -> Result<Tensor> {
        Ok((self.init.broadcast_mul(self.keep)? + x0.broadcast_mul(self.repaint)?)?)
    }
}

impl Denoiser for InpaintBlend<'_> {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        self.blend(&self.inner.denoise(x, sigma)?)
    }
}

#[cfg(test)]
#[path = "denoiser/tests.rs"]
mod tests;
