//! The update each kind of module makes, and how it goes into a layer's weight, in f32, by the
//! published rules (A1111's `extensions-builtin/Lora`, LyCORIS, PEFT):
//! - LoRA: `up @ down` (convolutions flattened), LoCon's Tucker core `lora_mid`
//!   contracted with both; scale `alpha / rank`, rank = `lora_down.shape[0]`, no alpha: 1.
//! - LoHa: `(w1a @ w1b) * (w2a @ w2b)` (Tucker: each factor pair through its core `hada_t*`);
//!   scale `alpha / w1b.shape[0]`.
//! - LoKr: `kron(w1, w2)`, each `lokr_w*` or `lokr_w*_a @ lokr_w*_b` (`lokr_t2`: Tucker core);
//!   scale `alpha / r` with r the inner size of a factored part, 1 when both are full.
//! - The weight becomes `W + multiplier * scale * update`; with A1111's DoRA (`dora_scale`)
//!   `W + multiplier * (dora_scale * M / |M| - W)` with `M = W + scale * update` normalised per
//!   input channel (per output channel when `dora_scale` has one value per output); with PEFT's
//!   DoRA (`lora_magnitude_vector`) `magnitude * M / |M|` with `M = W + multiplier * scale *
//!   update` normalised per output channel.

use std::collections::BTreeMap;
use std::ops::Range;

use candle_core::{DType, Result, Tensor};

use super::format::{Dora, Fit, Kind, Module};

/// A module's tensors loaded in f32 on the compute device, by role.
#[derive(Debug, Default)]
pub struct Factors(pub BTreeMap<String, Tensor>);

impl Factors {
    pub(super) fn get(&self, role: &str) -> Result<&Tensor> {
        self.0
            .get(role)
            .ok_or_else(|| candle_core::Error::Msg(format!("LoRA factor {role} is missing")))
    }

    /// The single value of a scalar tensor such as `alpha`.
    pub fn scalar(&self, role: &str) -> Result<Option<f64>> {
        match self.0.get(role) {
            None => Ok(None),
            Some(t) => {
                let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
                Ok(v.first().map(|&x| x as f64))
            }
        }
    }
}

/// `t` as a matrix of `t.dim(0)` rows.
pub(super) fn rows(t: &Tensor) -> Result<Tensor> {
    let r = t.dim(0)?;
    t.reshape((r, t.elem_count() / r.max(1)))
}

/// The Tucker product `sum_ij t[i,j,..] wa[i,p] wb[j,q]` -> `[p, q, ..]` (LyCORIS' `make_weight_cp`).
fn tucker(t: &Tensor, wa: &Tensor, wb: &Tensor) -> Result<Tensor> {
    let (r1, r2) = (t.dim(0)?, t.dim(1)?);
    let kernel: Vec<usize> = t.dims()[2..].to_vec();
    let k: usize = kernel.iter().product();
    // [r1, r2, k] -> [k, r1, r2], then wa^T @ . @ wb per kernel position.
    let tk = t.reshape((r1, r2, k))?.permute((2, 0, 1))?.contiguous()?;
    let left = wa
        .t()?
        .contiguous()?
        .unsqueeze(0)?
        .broadcast_as((k, wa.dim(1)?, r1))?;
    let right = wb.unsqueeze(0)?.broadcast_as((k, r2, wb.dim(1)?))?;
    let prod = left
        .contiguous()?
        .matmul(&tk)?
        .matmul(&right.contiguous()?)?;
    let (p, q) = (wa.dim(1)?, wb.dim(1)?);
    let mut shape = vec![p, q];
    shape.extend(kernel);
    prod.permute((1, 2, 0))?.contiguous()?.reshape(shape)
}

/// `kron(w1, w2)` for a matrix `w1` and a matrix or 4-d `w2` (LyCORIS' `make_kron`).
fn kron(w1: &Tensor, w2: &Tensor) -> Result<Tensor> {
    let (a, b) = w1.dims2()?;
    let (c, d) = (w2.dim(0)?, w2.dim(1)?);
    let rest: Vec<usize> = w2.dims()[2..].to_vec();
    let ones = vec![1usize; rest.len()];
    let l = w1.reshape([vec![a, 1, b, 1], ones].concat())?;
    let r = w2.reshape([vec![1, c, 1, d], rest.clone()].concat())?;
    l.broadcast_mul(&r)?
        .reshape([vec![a * c, b * d], rest].concat())
}

/// The module's update times `k` in its own shape `shape` (from
/// [`super::format::update_shape`]); `k` goes into the smallest factor, so scaling costs no
/// pass over the weight-sized result.
pub fn update(m: &Module, f: &Factors, shape: &[usize], k: f64) -> Result<Tensor> {
    let u = match m.kind {
        Kind::Lora | Kind::LoCon => {
            (rows(f.get("lora_up")?)? * k)?.matmul(&rows(f.get("lora_down")?)?)?
        }
        Kind::Tucker => tucker(
            &(f.get("lora_mid")? * k)?,
            &rows(f.get("lora_up")?)?.t()?.contiguous()?,
            &rows(f.get("lora_down")?)?,
        )?,
        Kind::LoHa => {
            let one = (f.get("hada_w1_a")? * k)?.matmul(&rows(f.get("hada_w1_b")?)?)?;
            let two = f.get("hada_w2_a")?.matmul(&rows(f.get("hada_w2_b")?)?)?;
            (one * two)?
        }
        Kind::LoHaTucker => {
            let one = tucker(
                &(f.get("hada_t1")? * k)?,
                f.get("hada_w1_a")?,
                f.get("hada_w1_b")?,
            )?;
            let two = tucker(f.get("hada_t2")?, f.get("hada_w2_a")?, f.get("hada_w2_b")?)?;
            (one * two)?
        }
        Kind::LoKr => {
            let (w1, w2) = lokr_factors(f)?;
            kron(&(w1 * k)?, &w2)?
        }
    };
    u.reshape(shape)
}

/// LoKr's two Kronecker factors `w1`, `w2` (each stored whole or as a product).
pub(super) fn lokr_factors(f: &Factors) -> Result<(Tensor, Tensor)> {
    let w1 = match f.0.get("lokr_w1") {
        Some(w) => w.clone(),
        None => f.get("lokr_w1_a")?.matmul(f.get("lokr_w1_b")?)?,
    };
    let w2 = match (f.0.get("lokr_w2"), f.0.get("lokr_t2")) {
        (Some(w), _) => w.clone(),
        (None, Some(t)) => tucker(t, f.get("lokr_w2_a")?, f.get("lokr_w2_b")?)?,
        (None, None) => f.get("lokr_w2_a")?.matmul(&rows(f.get("lokr_w2_b")?)?)?,
    };
    Ok((w1, w2))
}

/// The rows `ranges` of `t`, in order.
pub fn take_rows(t: &Tensor, ranges: &[Range<usize>]) -> Result<Tensor> {
    let parts = ranges
        .iter()
        .map(|r| t.narrow(0, r.start, r.len()))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)?.contiguous()
}

/// `update` shaped as a weight of shape `target`.
pub fn fitted(update: Tensor, fit: Fit, target: &[usize]) -> Result<Tensor> {
    match fit {
        Fit::Reshape => update.reshape(target),
        Fit::PadInputs => {
            let (o, i, kh, kw) = update.dims4()?;
            let zeros = Tensor::zeros((o, target[1] - i, kh, kw), update.dtype(), update.device())?;
            Tensor::cat(&[&update, &zeros], 1)
        }
    }
}

/// The axis a DoRA magnitude runs along: one value per output channel (rows) or per input
/// channel (columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoraAxis {
    /// One magnitude per output channel (PEFT, LyCORIS `wd_on_out`).
    Rows,
    /// One magnitude per input channel (kohya, A1111).
    Columns,
}

/// The axis of a DoRA magnitude of shape `scale` for a weight of shape `target`; `None` when
/// it fits neither.
pub fn dora_axis(dora: Dora, scale: &[usize], target: &[usize]) -> Option<DoraAxis> {
    let n: usize = scale.iter().product();
    let (out, inp) = (*target.first()?, *target.get(1)?);
    match dora {
        Dora::Magnitude => (n == out).then_some(DoraAxis::Rows),
        Dora::Scale if scale.first() == Some(&1) && n == inp => Some(DoraAxis::Columns),
        Dora::Scale if scale.first() == Some(&out) && n == out => Some(DoraAxis::Rows),
        Dora::Scale => None,
    }
}

/// The L2 norm of `w` over every axis but the kept one, with that axis kept.
fn norm(w: &Tensor, axis: DoraAxis) -> Result<Tensor> {
    let keep = match axis {
        DoraAxis::Rows => 0,
        DoraAxis::Columns => 1,
    };
    let dims: Vec<usize> = (0..w.rank()).filter(|&d| d != keep).collect();
    w.sqr()?.sum_keepdim(dims)?.sqrt()
}

/// How one module changes one weight.
pub struct Patch<'a> {
    /// The update fitted to the weight's shape, times `multiplier * scale` (times `scale` alone
    /// for A1111's DoRA, whose multiplier applies after the decomposition).
    pub update: Tensor,
    /// The user's weight for this part of the model.
    pub multiplier: f64,
    /// DoRA magnitudes and their axis.
    pub dora: Option<(Dora, DoraAxis, &'a Tensor)>,
}

impl Patch<'_> {
    /// The factor [`update`] is to be multiplied by for a module of `scale` under `dora`.
    pub fn factor(dora: Option<Dora>, scale: f64, multiplier: f64) -> f64 {
        match dora {
            Some(Dora::Scale) => scale,
            _ => scale * multiplier,
        }
    }
}

/// `w` (f32) with `patch` applied.
pub fn apply(w: &Tensor, patch: &Patch) -> Result<Tensor> {
    let Patch {
        update,
        multiplier,
        dora,
    } = patch;
    let Some((kind, axis, magnitude)) = dora else {
        return w + update;
    };
    let shape_of = |w: &Tensor| -> Vec<usize> {
        let mut s = vec![1; w.rank()];
        match axis {
            DoraAxis::Rows => s[0] = w.dims()[0],
            DoraAxis::Columns => s[1] = w.dims()[1],
        }
        s
    };
    let magnitude = magnitude.to_dtype(DType::F32)?.reshape(shape_of(w))?;
    let merged = (w + update)?;
    let decomposed = merged.broadcast_mul(&magnitude.broadcast_div(&norm(&merged, *axis)?)?)?;
    match kind {
        Dora::Scale => w + ((decomposed - w)? * *multiplier)?,
        Dora::Magnitude => Ok(decomposed),
    }
}

/// Whether `w` (f32) holds only finite values that `dtype` can hold: one pass for f32 and
/// bf16, two for f16.
pub fn fits_dtype(w: &Tensor, dtype: DType) -> Result<bool> {
    let sum = w.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if !sum.is_finite() {
        return Ok(false);
    }
    if dtype == DType::F16 {
        let max = w.abs()?.max_all()?.to_scalar::<f32>()?;
        return Ok(max <= 65504.0);
    }
    Ok(true)
}

/// Whether every value of `t` is finite.
pub fn all_finite(t: &Tensor) -> Result<bool> {
    // 0 * x is 0 for every finite x and NaN for infinities and NaN.
    let s = t
        .affine(0.0, 0.0)?
        .sum_all()?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    Ok(s == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn vals(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn kron_matches_its_definition() {
        let a = t(&[1., 2., 3., 4.], &[2, 2]);
        let b = t(&[0., 5., 6., 7.], &[2, 2]);
        let k = kron(&a, &b).unwrap();
        assert_eq!(
            vals(&k),
            vec![0., 5., 0., 10., 6., 7., 12., 14., 0., 15., 0., 20., 18., 21., 24., 28.]
        );
    }

    #[test]
    fn tucker_matches_its_definition() {
        // t [2, 1, 1, 2], wa [2, 3], wb [1, 2]
        let tt = t(&[1., 2., 3., 4.], &[2, 1, 1, 2]);
        let wa = t(&[1., 0., 2., 0., 1., 1.], &[2, 3]);
        let wb = t(&[1., -1.], &[1, 2]);
        let out = tucker(&tt, &wa, &wb).unwrap();
        assert_eq!(out.dims(), &[3, 2, 1, 2]);
        let v = vals(&out);
        let (tv, av, bv) = (vals(&tt), vals(&wa), vals(&wb));
        for p in 0..3 {
            for q in 0..2 {
                for l in 0..2 {
                    let want: f32 = (0..2).map(|i| tv[i * 2 + l] * av[i * 3 + p] * bv[q]).sum();
                    assert_eq!(v[(p * 2 + q) * 2 + l], want);
                }
            }
        }
    }

    #[test]
    fn pad_fills_extra_inputs_with_zeros() {
        let u = Tensor::ones((2, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let p = fitted(u, Fit::PadInputs, &[2, 3, 1, 1]).unwrap();
        assert_eq!(vals(&p), vec![1., 0., 0., 1., 0., 0.]);
    }

    #[test]
    fn finite_check() {
        assert!(all_finite(&t(&[1., -2.], &[2])).unwrap());
        assert!(!all_finite(&t(&[1., f32::INFINITY], &[2])).unwrap());
        assert!(!all_finite(&t(&[f32::NAN, 0.], &[2])).unwrap());
    }
}
