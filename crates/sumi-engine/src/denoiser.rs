//! The model as k-diffusion sees it: `(x, sigma) -> x0`, with classifier-free guidance and
//! eps/v prediction hidden inside.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor};

use crate::model::unet::{AddedCond, UNet};
use crate::model::Prediction;
use crate::sampling::schedules::NoiseLevels;
use crate::sampling::Denoiser;
use crate::{Error, Result};

/// A UNet wrapped as a denoiser for one request's conditioning.
pub struct ModelDenoiser<'a> {
    unet: &'a UNet,
    levels: &'a NoiseLevels,
    prediction: Prediction,
    /// `[2, L, D]` rows `[uncond, cond]` when guiding, else `[1, L, D]`.
    context: Tensor,
    added: Option<AddedCond>,
    cfg: f64,
    dtype: DType,
    cancel: &'a AtomicBool,
    evals: Cell<usize>,
}

impl<'a> ModelDenoiser<'a> {
    /// Wraps `unet`; `context` (and `added`) must hold `[uncond, cond]` rows when `cfg != 1`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unet: &'a UNet,
        levels: &'a NoiseLevels,
        prediction: Prediction,
        context: Tensor,
        added: Option<AddedCond>,
        cfg: f64,
        dtype: DType,
        cancel: &'a AtomicBool,
    ) -> Self {
        Self {
            unet,
            levels,
            prediction,
            context,
            added,
            cfg,
            dtype,
            cancel,
            evals: Cell::new(0),
        }
    }

    /// Whether the UNet runs on an [uncond, cond] batch (CFG != 1).
    pub fn guided(&self) -> bool {
        self.cfg != 1.0
    }

    /// UNet evaluations so far.
    pub fn evals(&self) -> usize {
        self.evals.get()
    }
}

impl Denoiser for ModelDenoiser<'_> {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let c_in = 1.0 / (sigma * sigma + 1.0).sqrt();
        let t = self.levels.sigma_to_t(sigma);
        let x_in = (x * c_in)?.to_dtype(self.dtype)?;
        let b = x.dim(0)?;
        let out = if self.guided() {
            let batch = Tensor::cat(&[&x_in, &x_in], 0)?;
            let ts = Tensor::full(t as f32, 2 * b, x.device())?;
            let out = self
                .unet
                .forward(&batch, &ts, &self.context, self.added.as_ref())?
                .to_dtype(DType::F32)?;
            let uncond = out.narrow(0, 0, b)?;
            let cond = out.narrow(0, b, b)?;
            (&uncond + ((cond - &uncond)? * self.cfg)?)?
        } else {
            let ts = Tensor::full(t as f32, b, x.device())?;
            self.unet
                .forward(&x_in, &ts, &self.context, self.added.as_ref())?
                .to_dtype(DType::F32)?
        };
        self.evals.set(self.evals.get() + 1);
        let x0 = match self.prediction {
            Prediction::Epsilon => (x - (out * sigma)?)?,
            Prediction::V => {
                let s2 = sigma * sigma + 1.0;
                ((x * (1.0 / s2))? + (out * (-sigma / s2.sqrt()))?)?
            }
        };
        Ok(x0)
    }
}
