//! The model as k-diffusion sees it: `(x, sigma) -> x0`, with classifier-free guidance, the
//! timestep mapping and the parametrization (eps, v, flow) hidden inside.

use std::cell::Cell;
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

/// A denoising network wrapped as a denoiser for one request's conditioning.
pub struct ModelDenoiser<'a> {
    network: &'a dyn DenoisingNetwork,
    levels: &'a NoiseLevels,
    parametrization: Parametrization,
    cond: NetCond,
    /// Uncond and cond joined into one batch `[uncond, cond]`, when they can be.
    joined: Option<NetCond>,
    uncond: Option<(NetCond, f64)>,
    dtype: DType,
    cancel: &'a AtomicBool,
    evals: Cell<usize>,
}

impl<'a> ModelDenoiser<'a> {
    /// Wraps `network` for `guidance`, computing in `dtype`; `cancel` stops it before a call.
    pub fn new(
        network: &'a dyn DenoisingNetwork,
        levels: &'a NoiseLevels,
        parametrization: Parametrization,
        guidance: Guidance,
        dtype: DType,
        cancel: &'a AtomicBool,
    ) -> Result<Self> {
        let joined = match &guidance.uncond {
            Some((uncond, _)) => NetCond::join(&[uncond, &guidance.cond])?,
            None => None,
        };
        Ok(Self {
            network,
            levels,
            parametrization,
            cond: guidance.cond,
            joined,
            uncond: guidance.uncond,
            dtype,
            cancel,
            evals: Cell::new(0),
        })
    }

    /// Model evaluations so far.
    pub fn evals(&self) -> usize {
        self.evals.get()
    }

    /// The network's output for `x_in` at timestep `t` under `cond`, in f32.
    fn run(&self, x_in: &Tensor, t: f64, cond: &NetCond) -> Result<Tensor> {
        let ts = Tensor::full(t as f32, x_in.dim(0)?, x_in.device())?;
        Ok(self
            .network
            .forward(x_in, &ts, cond)?
            .to_dtype(DType::F32)?)
    }
}

impl Denoiser for ModelDenoiser<'_> {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let t = self.levels.sigma_to_t(sigma);
        let x_in = (x * self.parametrization.input_scale(sigma))?.to_dtype(self.dtype)?;
        let out = match (&self.uncond, &self.joined) {
            (None, _) => self.run(&x_in, t, &self.cond)?,
            (Some((_, scale)), Some(joined)) => {
                let b = x.dim(0)?;
                let out = self.run(&Tensor::cat(&[&x_in, &x_in], 0)?, t, joined)?;
                let uncond = out.narrow(0, 0, b)?;
                let cond = out.narrow(0, b, b)?;
                (&uncond + ((cond - &uncond)? * *scale)?)?
            }
            // Prompts of different lengths are run one after the other, never padded.
            (Some((uncond, scale)), None) => {
                let u = self.run(&x_in, t, uncond)?;
                let c = self.run(&x_in, t, &self.cond)?;
                (&u + ((c - &u)? * *scale)?)?
            }
        };
        self.evals.set(self.evals.get() + 1);
        Ok(self.parametrization.to_x0(x, &out, sigma)?)
    }
}
