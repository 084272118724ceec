//! Linear layers with diffusers' weight names, run by [`kernels::linear`] (one product over all
//! rows, and bf16-stored weights on the CPU), or by candle's quantized matrix product when the
//! weight came quantized from a GGUF file (plus the products of the LoRAs applied to it, kept
//! factored).

use candle_core::quantized::QTensor;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels;
use crate::weights::params::note_quantized;
use crate::weights::quantized::{quantized_weight, LoraTerm, QuantizedParam};

/// How the weight is held.
#[derive(Debug, Clone)]
enum Weight {
    /// A dense `[out, in]` matrix.
    Dense(Tensor),
    /// A block-quantized `[out, in]` matrix and the LoRA terms added to its product.
    Quantized(QuantizedParam),
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
            Weight::Quantized(q) => q.dims().first().copied().unwrap_or(0),
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

/// `x u^T` for the update `u` that `term` holds, without forming `u`; in f32, as `x`'s dtype.
fn lora_term_forward(term: &LoraTerm, xs: &Tensor) -> Result<Tensor> {
    let x = xs.to_dtype(DType::F32)?;
    let y = match term {
        LoraTerm::LowRank { up, down } => {
            kernels::linear(up, None, &kernels::linear(down, None, &x)?)?
        }
        LoraTerm::Kron { a, b } => {
            // y[n, i*r + k] = sum_jl a[i, j] b[k, l] x[n, j*s + l].
            let ((p, q), (r, s)) = (a.dims2()?, b.dims2()?);
            let dims = x.dims().to_vec();
            let n = x.elem_count() / (q * s);
            let t = kernels::linear(b, None, &x.reshape((n * q, s))?)?; // [n*q, r]
            let t = t.reshape((n, q, r))?.transpose(0, 1)?.contiguous()?;
            let y = a.matmul(&t.reshape((q, n * r))?)?; // [p, n*r]
            let y = y.reshape((p, n, r))?.transpose(0, 1)?.contiguous()?;
            let mut out = dims;
            if let Some(last) = out.last_mut() {
                *last = p * r;
            }
            y.reshape(out)?
        }
    };
    y.to_dtype(xs.dtype())
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => kernels::linear(w, self.bias.as_ref(), xs),
            Weight::Quantized(q) => {
                let mut y = quantized_forward(&q.weight, xs)?;
                for term in q.lora.get().iter() {
                    y = (y + lora_term_forward(term, xs)?)?;
                }
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
        if q.dims() != [cout, cin] {
            candle_core::bail!(
                "quantized weight {name} has shape {:?}, expected [{cout}, {cin}]",
                q.dims()
            );
        }
        note_quantized(&name, &q);
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(shape: &[usize], seed: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|k| ((k as f32 + seed) * 0.37).sin()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn lora_terms_equal_their_dense_updates() {
        let x = t(&[2, 3, 12], 0.5);
        let (up, down) = (t(&[6, 2], 1.0), t(&[2, 12], 2.0));
        let dense = up.matmul(&down).unwrap();
        let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
        let got = lora_term_forward(&LoraTerm::LowRank { up, down }, &x).unwrap();
        assert!(crate::test_util::max_abs_diff(&got, &want) < 1e-5);

        // kron(a, b)[i*r + k, j*s + l] = a[i, j] b[k, l], written out.
        let (a, b) = (t(&[2, 3], 3.0), t(&[3, 4], 4.0));
        let (av, bv): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (a.to_vec2().unwrap(), b.to_vec2().unwrap());
        let mut k = vec![0f32; 6 * 12];
        for i in 0..2 {
            for j in 0..3 {
                for r in 0..3 {
                    for s in 0..4 {
                        k[(i * 3 + r) * 12 + j * 4 + s] = av[i][j] * bv[r][s];
                    }
                }
            }
        }
        let dense = Tensor::from_vec(k, (6, 12), &Device::Cpu).unwrap();
        let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
        let got = lora_term_forward(&LoraTerm::Kron { a, b }, &x).unwrap();
        assert_eq!(got.dims(), &[2, 3, 6]);
        assert!(crate::test_util::max_abs_diff(&got, &want) < 1e-5);
    }
}
