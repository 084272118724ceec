//! Linear layers with diffusers' weight names, run by [`kernels::linear`] (one product over all
//! rows, and bf16-stored weights on the CPU), or by candle's quantized matrix product when the
//! weight came quantized from a GGUF file (plus the products of the LoRAs applied to it, kept
//! factored).

use candle_core::quantized::QTensor;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels;
use crate::weights::params::note_quantized;
use crate::weights::quantized::{quantized_weight, AppliedTerms, QuantizedParam};

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

/// `x q^T` plus the LoRA terms `lora` for a quantized `q`: on the CPU from its blocks as stored
/// ([`kernels::quantized_linear`], the low-rank terms in the same product), else (and for
/// f16/f32 tensors from a GGUF file) by candle's `QMatMul` kernels, through f32 where they take
/// no other dtype, the terms added after.
fn quantized_forward(q: &QTensor, lora: &AppliedTerms, xs: &Tensor) -> Result<Tensor> {
    let dtype = xs.dtype();
    let x32 = xs.to_dtype(DType::F32)?;
    // `t = x down^T`; the product adds `t up^T`.
    let low_rank = match &lora.low_rank {
        Some((up, down)) => Some((kernels::linear(down, None, &x32)?, up)),
        None => None,
    };
    let fast = match xs.device().is_cpu() {
        true => kernels::quantized_linear(q, &x32, low_rank.as_ref().map(|(t, u)| (t, *u)))?,
        false => None,
    };
    let mut y = match fast {
        Some(y) => y,
        None => {
            let direct = xs.device().is_cpu() && matches!(dtype, DType::F32 | DType::BF16);
            let x = match direct {
                true => xs.contiguous()?,
                false => x32.contiguous()?,
            };
            let y = x.apply_op1_no_bwd(q)?.to_dtype(DType::F32)?;
            match &low_rank {
                Some((t, up)) => (y + kernels::linear(up, None, t)?)?,
                None => y,
            }
        }
    };
    for (a, b) in &lora.kron {
        y = (y + kron_forward(a, b, &x32)?)?;
    }
    y.to_dtype(dtype)
}

/// `x kron(a, b)^T` for f32 `x`, without forming the Kronecker product (LoKr).
fn kron_forward(a: &Tensor, b: &Tensor, x: &Tensor) -> Result<Tensor> {
    // y[n, i*r + k] = sum_jl a[i, j] b[k, l] x[n, j*s + l].
    let ((p, q), (r, s)) = (a.dims2()?, b.dims2()?);
    let n = x.elem_count() / (q * s);
    let t = kernels::linear(b, None, &x.reshape((n * q, s))?)?; // [n*q, r]
    let t = t.reshape((n, q, r))?.transpose(0, 1)?.contiguous()?;
    let y = a.matmul(&t.reshape((q, n * r))?)?; // [p, n*r]
    let y = y.reshape((p, n, r))?.transpose(0, 1)?.contiguous()?;
    let mut out = x.dims().to_vec();
    if let Some(last) = out.last_mut() {
        *last = p * r;
    }
    y.reshape(out)
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => kernels::linear(w, self.bias.as_ref(), xs),
            Weight::Quantized(q) => {
                let y = quantized_forward(&q.weight, &q.lora.get(), xs)?;
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
    fn quantized_layers_add_their_lora_terms() {
        use crate::weights::quantized::{LoraTerm, LoraTerms};
        use candle_core::quantized::GgmlDType;
        let x = t(&[2, 5, 64], 0.5);
        let w = t(&[6, 64], 7.0);
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let (up, down) = (t(&[6, 2], 1.0), t(&[2, 64], 2.0));
        let (a, b) = (t(&[2, 4], 3.0), t(&[3, 16], 4.0));
        // kron(a, b)[i*3 + r, j*16 + s] = a[i, j] b[r, s], written out.
        let (av, bv): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (a.to_vec2().unwrap(), b.to_vec2().unwrap());
        let mut k = vec![0f32; 6 * 64];
        for i in 0..2 {
            for j in 0..4 {
                for r in 0..3 {
                    for s in 0..16 {
                        k[(i * 3 + r) * 64 + j * 16 + s] = av[i][j] * bv[r][s];
                    }
                }
            }
        }
        let kron = Tensor::from_vec(k, (6, 64), &Device::Cpu).unwrap();
        let patched = ((q.dequantize(&Device::Cpu).unwrap() + up.matmul(&down).unwrap()).unwrap()
            + kron)
            .unwrap();
        let terms = LoraTerms::default();
        let low_rank = LoraTerm::LowRank {
            up: up.clone(),
            down: down.clone(),
        };
        terms.set(vec![low_rank, LoraTerm::Kron { a, b }]).unwrap();
        // 10 rows: the expanded product; 1 row: from the blocks.
        for x in [
            x.clone(),
            x.narrow(1, 0, 1).unwrap().narrow(0, 0, 1).unwrap(),
        ] {
            let got = quantized_forward(&q, &terms.get(), &x).unwrap();
            let want = x.broadcast_matmul(&patched.t().unwrap()).unwrap();
            let err = crate::test_util::max_abs_diff(&got, &want);
            let scale = crate::test_util::max_abs(&want);
            // bf16 operands where the CPU multiplies them; 8-bit rows against the blocks.
            assert!(err < 0.03 * scale, "{:?}: {err} of {scale}", x.dims());
        }
        terms.set(Vec::new()).unwrap();
        let plain = quantized_forward(&q, &terms.get(), &x).unwrap();
        let want = x
            .broadcast_matmul(&q.dequantize(&Device::Cpu).unwrap().t().unwrap())
            .unwrap();
        assert!(crate::test_util::max_abs_diff(&plain, &want) < 0.03);
    }
}
