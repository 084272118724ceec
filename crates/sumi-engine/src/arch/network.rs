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
    /// Flux: T5 token states `[B, L, D]` for the joint attention, the pooled CLIP vector
    /// `[B, P]`, and the distilled guidance scale per row (dev).
    Flow {
        /// T5 token states.
        txt: Tensor,
        /// Pooled CLIP vector.
        pooled: Tensor,
        /// `[B]` guidance scales, for models with guidance embeddings.
        guidance: Option<Tensor>,
    },
}

impl NetCond {
    /// The batch size (rows) of the conditioning.
    pub fn rows(&self) -> Result<usize> {
        match self {
            NetCond::CrossAttention { context, .. } => context.dim(0),
            NetCond::Flow { txt, .. } => txt.dim(0),
        }
    }

    /// `parts` joined along the batch axis, so one network call runs them all; `None` when they
    /// cannot be joined (e.g. prompts of different token lengths), and each part must run alone.
    pub fn join(parts: &[&NetCond]) -> Result<Option<NetCond>> {
        if let Some(NetCond::Flow { .. }) = parts.first() {
            return join_flow(parts);
        }
        let mut contexts = Vec::with_capacity(parts.len());
        let mut embeds = Vec::new();
        let mut ids = Vec::new();
        for part in parts {
            let NetCond::CrossAttention { context, added } = part else {
                return Ok(None);
            };
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

/// Flux conditionings joined along the batch axis, when their text lengths and guidance agree.
fn join_flow(parts: &[&NetCond]) -> Result<Option<NetCond>> {
    let (mut txts, mut pooled, mut guidance) = (Vec::new(), Vec::new(), Vec::new());
    for part in parts {
        let NetCond::Flow {
            txt,
            pooled: p,
            guidance: g,
        } = part
        else {
            return Ok(None);
        };
        if txts
            .first()
            .is_some_and(|f: &&Tensor| f.dims()[1..] != txt.dims()[1..])
        {
            return Ok(None);
        }
        txts.push(txt);
        pooled.push(p);
        guidance.extend(g);
    }
    if !guidance.is_empty() && guidance.len() != parts.len() {
        return Ok(None);
    }
    Ok(Some(NetCond::Flow {
        txt: Tensor::cat(&txts, 0)?,
        pooled: Tensor::cat(&pooled, 0)?,
        guidance: match guidance.is_empty() {
            true => None,
            false => Some(Tensor::cat(&guidance, 0)?),
        },
    }))
}

/// A denoising network: latents and timesteps in, the network's prediction (noise, v or
/// flow velocity, as its parametrization says) out.
pub trait DenoisingNetwork: Send + Sync {
    /// Predicts for latents `x` `[B, C, H, W]` at timesteps `t` `[B]` under `cond` (B rows).
    fn forward(&self, x: &Tensor, t: &Tensor, cond: &NetCond) -> Result<Tensor>;

    /// Latent channels the network takes (more than the VAE's for inpainting models).
    fn in_channels(&self) -> usize;

    /// Releases weights it can read again when next called (a network loaded on demand); the
    /// default keeps them.
    fn release(&self) {}

    /// Bytes its activations need for one call on a `height` x `width` latent at `batch` rows
    /// of `elem` bytes each (an estimate, for refusing what cannot fit before running).
    fn activation_bytes(&self, height: usize, width: usize, batch: usize, elem: usize) -> u64;
}
