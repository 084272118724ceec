//! diffusers' `ResnetBlock2D`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;

use super::conv::{conv2d, Conv2d};
use super::norm::{group_norm, GroupNorm};

/// diffusers' `ResnetBlock2D` (pre-norm, optional time-embedding projection and 1x1 shortcut).
#[derive(Debug)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// Loads a block mapping `cin` to `cout` channels; `temb` is the time-embedding width, if any.
    pub fn new(
        cin: usize,
        cout: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(groups, cin, eps, vb.pp("norm1"))?,
            conv1: conv2d(cin, cout, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj: match temb {
                Some(t) => Some(super::linear::linear(t, cout, vb.pp("time_emb_proj"))?),
                None => None,
            },
            norm2: group_norm(groups, cout, eps, vb.pp("norm2"))?,
            conv2: conv2d(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut: if cin != cout {
                Some(conv2d(cin, cout, 1, 1, 0, vb.pp("conv_shortcut"))?)
            } else {
                None
            },
        })
    }

    /// Applies the block; `temb` is the (already computed) time embedding for UNet blocks.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward_silu(xs)?)?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj
                .forward(&candle_nn::ops::silu(temb)?)?
                .unsqueeze(2)?
                .unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(xs)?,
            None => xs.clone(),
        };
        skip + h
    }
}
