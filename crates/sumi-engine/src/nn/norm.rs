//! Group norm with learned affine parameters, run by the engine's kernel.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels;

/// Group norm with learned affine parameters, run by [`kernels::group_norm`].
#[derive(Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// The normalised input followed by SiLU, in one kernel.
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::group_norm(xs, self.groups, self.eps, &self.weight, &self.bias, true)
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::group_norm(xs, self.groups, self.eps, &self.weight, &self.bias, false)
    }
}

/// Group norm with learned affine parameters (`weight`, `bias`).
pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        candle_core::bail!("group norm: {channels} channels do not split into {groups} groups");
    }
    Ok(GroupNorm {
        weight: vb.get(channels, "weight")?,
        bias: vb.get(channels, "bias")?,
        groups,
        eps,
    })
}
