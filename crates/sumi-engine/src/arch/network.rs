//! The interface the denoiser and the pipeline use to run a denoising network (a UNet today, a
//! transformer later), and the conditioning it takes.

use candle_core::{Result, Tensor};

/// Extra conditioning SDXL feeds the UNet: pooled text embedding and size/crop ids.
#[derive(Debug, Clone)]
pub struct AddedCond {
    /// `[B, P]` pooled, projected text embedding.
    pub text_embeds: Tensor,
    /// `[B, 6]` original size, crop top-left and target size.
    pub time_ids: Tensor,
}

/// What a denoising network is conditioned on; each kind of network reads its own variant.
#[derive(Debug, Clone)]
pub enum NetCond {
    /// UNet families: per-token text states for cross-attention, `[B, L, D]`, plus SDXL's added
    /// conditioning.
    CrossAttention {
        /// Per-token text states.
        context: Tensor,
        /// SDXL's pooled text and size ids.
        added: Option<AddedCond>,
    },
}

impl NetCond {
    /// The batch size (rows) of the conditioning.
    pub fn rows(&self) -> Result<usize> {
        match self {
            NetCond::CrossAttention { context, .. } => context.dim(0),
        }
    }

    /// `parts` joined along the batch axis, so one network call runs them all; `None` when they
    /// cannot be joined (e.g. prompts of different token lengths), and each part must run alone.
    pub fn join(parts: &[&NetCond]) -> Result<Option<NetCond>> {
        let mut contexts = Vec::with_capacity(parts.len());
        let mut embeds = Vec::new();
        let mut ids = Vec::new();
        for part in parts {
            let NetCond::CrossAttention { context, added } = part;
            if let Some(first) = contexts.first() {
                let first: &&Tensor = first;
                if first.dims()[1..] != context.dims()[1..] {
                    return Ok(None);
                }
            }
            contexts.push(context);
            if let Some(a) = added {
                embeds.push(&a.text_embeds);
                ids.push(&a.time_ids);
            }
        }
        if !embeds.is_empty() && embeds.len() != parts.len() {
            return Ok(None);
        }
        let added = if embeds.is_empty() {
            None
        } else {
            Some(AddedCond {
                text_embeds: Tensor::cat(&embeds, 0)?,
                time_ids: Tensor::cat(&ids, 0)?,
            })
        };
        Ok(Some(NetCond::CrossAttention {
            context: Tensor::cat(&contexts, 0)?,
            added,
        }))
    }
}

/// A denoising network: latents and timesteps in, the network's prediction (noise, v or
/// flow velocity, as its parametrization says) out.
pub trait DenoisingNetwork: Send + Sync {
    /// Predicts for latents `x` `[B, C, H, W]` at timesteps `t` `[B]` under `cond` (B rows).
    fn forward(&self, x: &Tensor, t: &Tensor, cond: &NetCond) -> Result<Tensor>;

    /// Latent channels the network takes (more than the VAE's for inpainting models).
    fn in_channels(&self) -> usize;

    /// Bytes its activations need for one call on a `height` x `width` latent at `batch` rows
    /// of `elem` bytes each (an estimate, for refusing what cannot fit before running).
    fn activation_bytes(&self, height: usize, width: usize, batch: usize, elem: usize) -> u64;
}
