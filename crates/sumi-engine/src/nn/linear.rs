//! Linear layers with diffusers' weight names, run by [`kernels::linear`] (one product over all
//! rows, and bf16-stored weights on the CPU), or by candle's quantized matrix product when the
//! weight came quantized from a GGUF file.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels;
use crate::weights::quantized::quantized_weight;

/// How the weight is held.
#[derive(Debug, Clone)]
enum Weight {
    /// A dense `[out, in]` matrix.
    Dense(Tensor),
    /// A block-quantized `[out, in]` matrix, multiplied by candle's `QMatMul` kernels.
    Quantized(Arc<QTensor>),
}

/// `x w^T + b` over the last dimension of `x`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    /// The dense `[out, in]` weight; `None` when the weight is held quantized.
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            Weight::Quantized(_) => None,
        }
    }

    /// The number of output features.
    pub fn out_features(&self) -> usize {
        match &self.weight {
            Weight::Dense(w) => w.dims().first().copied().unwrap_or(0),
            Weight::Quantized(q) => q.shape().dims().first().copied().unwrap_or(0),
        }
    }

    /// Whether the weight is stored in bf16 (a bf16 model; on the CPU its activations stay f32).
    pub fn is_bf16(&self) -> bool {
        matches!(&self.weight, Weight::Dense(w) if w.dtype() == DType::BF16)
    }

    /// Whether the weight is held quantized.
    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Quantized(_))
    }
}

/// `x q^T` for a quantized `q`: on the CPU from its blocks as stored ([`kernels::quantized_linear`],
/// the rows quantized to the blocks' dot-product type), else (and for f16/f32 tensors from a
/// GGUF file) by candle's `QMatMul` kernels, through f32 where they take no other dtype.
fn quantized_forward(q: &QTensor, xs: &Tensor) -> Result<Tensor> {
    let dtype = xs.dtype();
    if xs.device().is_cpu() {
        if let Some(y) = kernels::quantized_linear(q, &xs.to_dtype(DType::F32)?)? {
            return y.to_dtype(dtype);
        }
    }
    let direct = xs.device().is_cpu() && matches!(dtype, DType::F32 | DType::BF16);
    let x = match direct {
        true => xs.contiguous()?,
        false => xs.to_dtype(DType::F32)?.contiguous()?,
    };
    x.apply_op1_no_bwd(q)?.to_dtype(dtype)
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => kernels::linear(w, self.bias.as_ref(), xs),
            Weight::Quantized(q) => {
                let y = quantized_forward(q, xs)?;
                match &self.bias {
                    Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?),
                    None => Ok(y),
                }
            }
        }
    }
}

/// The `[cout, cin]` weight under `vb`: quantized when a quantized source has it, else dense.
fn weight(cin: usize, cout: usize, vb: &VarBuilder) -> Result<Weight> {
    let name = match vb.prefix() {
        p if p.is_empty() => "weight".to_string(),
        p => format!("{p}.weight"),
    };
    if let Some(q) = quantized_weight(&name)? {
        if q.shape().dims() != [cout, cin] {
            candle_core::bail!(
                "quantized weight {name} has shape {:?}, expected [{cout}, {cin}]",
                q.shape().dims()
            );
        }
        return Ok(Weight::Quantized(q));
    }
    Ok(Weight::Dense(vb.get((cout, cin), "weight")?))
}

/// A linear layer from `cin` to `cout` features with `weight` and `bias` under `vb`.
pub fn linear(cin: usize, cout: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        weight: weight(cin, cout, &vb)?,
        bias: Some(vb.get(cout, "bias")?),
    })
}

/// A linear layer from `cin` to `cout` features with only a `weight` under `vb`.
pub fn linear_no_bias(cin: usize, cout: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        weight: weight(cin, cout, &vb)?,
        bias: None,
    })
}
