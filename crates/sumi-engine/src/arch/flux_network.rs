//! Flux as a denoising network: the `[B, C, H, W]` latent cut into 2x2 patches, one token each
//! (features in channel, row, column order, as diffusers' `FluxPipeline` packs them), with
//! position ids (0, row, column) after the text's zeros, through the transformer at timestep
//! sigma, and the predicted velocity put back in latent layout.

use candle_core::{Device, Result, Tensor};

use super::flux::{FluxConfig, FluxInputs, FluxTransformer, Rope};
use super::network::{DenoisingNetwork, NetCond};

/// The Flux transformer behind the denoising-network interface.
pub struct FluxNetwork {
    transformer: FluxTransformer,
}

impl FluxNetwork {
    /// Wraps a loaded transformer.
    pub fn new(transformer: FluxTransformer) -> Self {
        Self { transformer }
    }

    /// The transformer.
    pub fn transformer(&self) -> &FluxTransformer {
        &self.transformer
    }
}

/// `[B, C, H, W]` -> `[B, (H/2)(W/2), 4C]`.
pub fn pack(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h % 2 == 1 || w % 2 == 1 {
        candle_core::bail!("a Flux latent needs even sides, not {h}x{w}");
    }
    x.reshape((b, c, h / 2, 2, w / 2, 2))?
        .permute((0, 2, 4, 1, 3, 5))?
        .reshape((b, (h / 2) * (w / 2), c * 4))
}

/// The inverse of [`pack`] for a `h` x `w` latent.
pub fn unpack(tokens: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, _, f) = tokens.dims3()?;
    let c = f / 4;
    tokens
        .reshape((b, h / 2, w / 2, c, 2, 2))?
        .permute((0, 3, 1, 4, 2, 5))?
        .reshape((b, c, h, w))
}

/// The rotary embedding of `txt_len` text tokens (ids 0) and a `rows` x `cols` token grid.
pub fn rope(
    txt_len: usize,
    rows: usize,
    cols: usize,
    axes: &[usize],
    dev: &Device,
) -> Result<Rope> {
    let mut ids = vec![[0f32; 3]; txt_len];
    for r in 0..rows {
        ids.extend((0..cols).map(|c| [0.0, r as f32, c as f32]));
    }
    Rope::new(&ids, axes, dev)
}

impl DenoisingNetwork for FluxNetwork {
    /// `t` is the sigma itself (diffusers feeds `timestep / 1000` of `sigma * 1000`).
    fn forward(&self, x: &Tensor, t: &Tensor, cond: &NetCond) -> Result<Tensor> {
        let NetCond::Flow {
            txt,
            pooled,
            guidance,
        } = cond
        else {
            candle_core::bail!("Flux takes T5 and pooled CLIP conditioning, not a UNet's");
        };
        let (_, _, h, w) = x.dims4()?;
        let axes = &self.transformer.config().axes_dims_rope;
        let rope = rope(txt.dim(1)?, h / 2, w / 2, axes, x.device())?;
        let img = pack(x)?;
        let out = self.transformer.forward(&FluxInputs {
            img: &img,
            txt,
            pooled,
            timestep: t,
            guidance: guidance
                .as_ref()
                .filter(|_| self.transformer.has_guidance()),
            rope: &rope,
        })?;
        unpack(&out, h, w)
    }

    fn in_channels(&self) -> usize {
        self.transformer.config().in_channels / 4
    }

    fn activation_bytes(&self, height: usize, width: usize, batch: usize, elem: usize) -> u64 {
        activation_bytes(self.transformer.config(), height, width, batch, elem)
    }
}

/// The largest buffers of one block of a transformer with `cfg` on a `height` x `width` latent:
/// the joint sequence's q/k/v and MLP activations, and the attention scores of one head (the
/// kernels hold a block of them at a time).
pub fn activation_bytes(
    cfg: &FluxConfig,
    height: usize,
    width: usize,
    batch: usize,
    elem: usize,
) -> u64 {
    let tokens = (height / 2) * (width / 2) + 512;
    let per_token = cfg.inner_dim() * 12;
    (batch * tokens * per_token * elem) as u64
}
