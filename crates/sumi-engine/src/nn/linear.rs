//! Linear layers with diffusers' weight names, run by [`kernels::linear`] (one product over all
//! rows, and bf16-stored weights on the CPU).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels;

/// `x w^T + b` over the last dimension of `x`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::linear(&self.weight, self.bias.as_ref(), xs)
    }
}

/// A linear layer from `cin` to `cout` features with `weight` and `bias` under `vb`.
pub fn linear(cin: usize, cout: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        weight: vb.get((cout, cin), "weight")?,
        bias: Some(vb.get(cout, "bias")?),
    })
}

/// A linear layer from `cin` to `cout` features with only a `weight` under `vb`.
pub fn linear_no_bias(cin: usize, cout: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        weight: vb.get((cout, cin), "weight")?,
        bias: None,
    })
}
