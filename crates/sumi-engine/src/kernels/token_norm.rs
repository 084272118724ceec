//! Per-token norms of Flux's blocks, each one pass over the tokens for f32 on the CPU:
//! layer norm with the block's modulation (`AdaLayerNormZero`: `norm(x) (1 + scale) + shift`),
//! and the per-head RMS norm of queries and keys followed by the rotary embedding.
//!
//! With candle's ops these are 6 and 15 passes over a `[1, 4352, 3072]` tensor at 1024x1024,
//! each allocating its result.

use candle_core::{DType, Device, Result, Tensor, D};
use rayon::prelude::*;

use super::common::{enabled, with_f32};

/// Rows (tokens) per rayon task.
const ROWS_PER_TASK: usize = 16;

fn on_cpu_f32(ts: &[&Tensor]) -> bool {
    enabled()
        && ts
            .iter()
            .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}

/// `layer_norm(x) * (1 + scale) + shift` for `[B, L, C]` `x` and `[B, C]` `shift` and `scale`,
/// the norm without weight and bias over `C`.
pub fn layer_norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    let (b, l, c) = x.dims3()?;
    if shift.dims() != [b, c] || scale.dims() != [b, c] {
        candle_core::bail!(
            "layer_norm_modulate: shift {:?} and scale {:?} must be [{b}, {c}]",
            shift.dims(),
            scale.dims()
        );
    }
    if !on_cpu_f32(&[x, shift, scale]) {
        let mean = x.mean_keepdim(D::Minus1)?;
        let x = x.broadcast_sub(&mean)?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_div(&(var + eps)?.sqrt()?)?;
        return normed
            .broadcast_mul(&(scale.unsqueeze(1)? + 1.0)?)?
            .broadcast_add(&shift.unsqueeze(1)?);
    }
    let (x, shift) = (x.contiguous()?, shift.contiguous()?);
    let gain = (scale + 1.0)?.contiguous()?;
    let mut out = vec![0f32; b * l * c];
    with_f32(&x, |xs| {
        with_f32(&shift, |shift| {
            with_f32(&gain, |gain| {
                out.par_chunks_mut(c * ROWS_PER_TASK)
                    .zip(xs.par_chunks(c * ROWS_PER_TASK))
                    .enumerate()
                    .for_each(|(task, (dst, src))| {
                        for (r, (d, s)) in dst.chunks_mut(c).zip(src.chunks(c)).enumerate() {
                            let batch = (task * ROWS_PER_TASK + r) / l;
                            let (sh, g) = (&shift[batch * c..][..c], &gain[batch * c..][..c]);
                            norm_row(s, sh, g, eps as f32, d);
                        }
                    });
                Ok(())
            })
        })
    })?;
    Tensor::from_vec(out, (b, l, c), x.device())
}

/// Sum of `x` in eight lanes, so the compiler can vectorise it.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for ch in &mut chunks {
        for (acc, v) in lanes.iter_mut().zip(ch) {
            *acc += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline(always)]
fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for ch in &mut chunks {
        for (acc, v) in lanes.iter_mut().zip(ch) {
            *acc += (v - mean) * (v - mean);
        }
    }
    lanes.iter().sum::<f32>()
        + chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f32>()
}

fn norm_row(x: &[f32], shift: &[f32], gain: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let std = (sum_sq_dev(x, mean) / n + eps).sqrt();
    for (((o, &v), &g), &s) in out.iter_mut().zip(x).zip(gain).zip(shift) {
        *o = (v - mean) / std * g + s;
    }
}

/// The rotary embedding's tables: `cos` and `sin` `[rows, head_dim / 2]`, one angle per pair.
pub struct RopeTables<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    /// The table row of the first token of `x`.
    pub first_row: usize,
}

/// For `[B, L, C]` `x` of `heads` heads: each head's `x / sqrt(mean(x^2) + eps) * weight`, then
/// each pair `(y0, y1)` of it rotated by its token's angle: `(y0 cos - y1 sin, y1 cos + y0 sin)`.
pub fn rms_norm_rope(
    x: &Tensor,
    weight: &Tensor,
    rope: &RopeTables,
    heads: usize,
    eps: f64,
) -> Result<Tensor> {
    let (b, l, c) = x.dims3()?;
    let d = c / heads.max(1);
    let (rows, half) = rope.cos.dims2()?;
    if heads == 0
        || !c.is_multiple_of(heads)
        || !d.is_multiple_of(2)
        || weight.dims() != [d]
        || half != d / 2
    {
        candle_core::bail!(
            "rms_norm_rope: {c} channels, {heads} heads, weight {:?}, rope pairs {half}",
            weight.dims()
        );
    }
    if rope.first_row + l > rows {
        candle_core::bail!(
            "rms_norm_rope: tokens {}..{} past the rope table's {rows} rows",
            rope.first_row,
            rope.first_row + l
        );
    }
    let cos = rope.cos.narrow(0, rope.first_row, l)?;
    let sin = rope.sin.narrow(0, rope.first_row, l)?;
    if !on_cpu_f32(&[x, weight, &cos, &sin]) {
        let x = x.reshape((b, l, heads, d))?;
        let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
        let y = x.broadcast_div(&rms)?.broadcast_mul(weight)?;
        let pairs = y.reshape((b, l, heads, d / 2, 2))?;
        let y0 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
        let y1 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
        let cos = cos.to_dtype(x.dtype())?.reshape((1, l, 1, d / 2))?;
        let sin = sin.to_dtype(x.dtype())?.reshape((1, l, 1, d / 2))?;
        let r0 = (y0.broadcast_mul(&cos)? - y1.broadcast_mul(&sin)?)?;
        let r1 = (y1.broadcast_mul(&cos)? + y0.broadcast_mul(&sin)?)?;
        return Tensor::stack(&[r0, r1], 4)?.reshape((b, l, c));
    }
    let (x, weight) = (x.contiguous()?, weight.contiguous()?);
    let (cos, sin) = (cos.contiguous()?, sin.contiguous()?);
    let mut out = vec![0f32; b * l * c];
    with_f32(&x, |xs| {
        with_f32(&weight, |w| {
            with_f32(&cos, |cos| {
                with_f32(&sin, |sin| {
                    out.par_chunks_mut(c * ROWS_PER_TASK)
                        .zip(xs.par_chunks(c * ROWS_PER_TASK))
                        .enumerate()
                        .for_each(|(task, (dst, src))| {
                            for (r, (dr, sr)) in dst.chunks_mut(c).zip(src.chunks(c)).enumerate() {
                                let token = (task * ROWS_PER_TASK + r) % l;
                                let angles = token * (d / 2)..(token + 1) * (d / 2);
                                let (cs, sn) = (&cos[angles.clone()], &sin[angles]);
                                for (o, v) in dr.chunks_mut(d).zip(sr.chunks(d)) {
                                    head_row(v, w, cs, sn, eps as f32, o);
                                }
                            }
                        });
                    Ok(())
                })
            })
        })
    })?;
    Tensor::from_vec(out, (b, l, c), x.device())
}

fn head_row(x: &[f32], w: &[f32], cos: &[f32], sin: &[f32], eps: f32, out: &mut [f32]) {
    let mut lanes = [0f32; 8];
    for ch in x.chunks_exact(8) {
        for (acc, v) in lanes.iter_mut().zip(ch) {
            *acc += v * v;
        }
    }
    let tail: f32 = x.chunks_exact(8).remainder().iter().map(|v| v * v).sum();
    let rms = ((lanes.iter().sum::<f32>() + tail) / x.len() as f32 + eps).sqrt();
    for (j, (&c, &s)) in cos.iter().zip(sin).enumerate() {
        let y0 = x[2 * j] / rms * w[2 * j];
        let y1 = x[2 * j + 1] / rms * w[2 * j + 1];
        out[2 * j] = y0 * c - y1 * s;
        out[2 * j + 1] = y1 * c + y0 * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_abs_diff;

    fn f64(t: &Tensor) -> Tensor {
        t.to_dtype(DType::F64).unwrap()
    }

    fn f32(t: Tensor) -> Tensor {
        t.to_dtype(DType::F32).unwrap()
    }

    #[test]
    fn layer_norm_modulate_matches_candles_ops() {
        let dev = Device::Cpu;
        // Per-sample modulation (batch 2), odd widths, a row count that does not fill a task,
        // and an offset mean that a one-pass variance would lose.
        for (b, l, c) in [(1, 3, 5), (2, 37, 67), (2, 20, 3072)] {
            let x = (Tensor::randn(0f32, 2.0, (b, l, c), &dev).unwrap() + 30.0).unwrap();
            let shift = Tensor::randn(0f32, 1.0, (b, c), &dev).unwrap();
            let scale = Tensor::randn(0f32, 1.0, (b, c), &dev).unwrap();
            let got = layer_norm_modulate(&x, &shift, &scale, 1e-6).unwrap();
            // candle's ops (the path for other dtypes) in f64.
            let want =
                f32(layer_norm_modulate(&f64(&x), &f64(&shift), &f64(&scale), 1e-6).unwrap());
            assert_eq!(got.dims(), want.dims());
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 5e-5, "{b}x{l}x{c}: max diff {diff}");
        }
        let bad = Tensor::zeros((2, 5), DType::F32, &dev).unwrap();
        let x = Tensor::zeros((1, 3, 5), DType::F32, &dev).unwrap();
        assert!(layer_norm_modulate(&x, &bad, &bad, 1e-6).is_err());
    }

    #[test]
    fn rms_norm_rope_matches_candles_ops() {
        let dev = Device::Cpu;
        let (heads, d) = (3, 8);
        for (b, l, first_row) in [(1, 5, 0), (2, 19, 4)] {
            let rows = first_row + l + 2;
            let x = Tensor::randn(0f32, 3.0, (b, l, heads * d), &dev).unwrap();
            let w = Tensor::randn(1f32, 0.2, d, &dev).unwrap();
            let angles = Tensor::randn(0f32, 2.0, (rows, d / 2), &dev).unwrap();
            let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
            let tables = RopeTables {
                cos: &cos,
                sin: &sin,
                first_row,
            };
            let got = rms_norm_rope(&x, &w, &tables, heads, 1e-6).unwrap();
            let (cos64, sin64) = (f64(&cos), f64(&sin));
            let tables64 = RopeTables {
                cos: &cos64,
                sin: &sin64,
                first_row,
            };
            let by_candle = f32(rms_norm_rope(&f64(&x), &f64(&w), &tables64, heads, 1e-6).unwrap());
            assert!(max_abs_diff(&got, &by_candle) < 1e-5);
            // The same by hand, one head row at a time.
            let xs = x.to_vec3::<f32>().unwrap();
            let (ws, cs, ss) = (
                w.to_vec1::<f32>().unwrap(),
                cos.to_vec2::<f32>().unwrap(),
                sin.to_vec2::<f32>().unwrap(),
            );
            let gs = got.to_vec3::<f32>().unwrap();
            for bi in 0..b {
                for t in 0..l {
                    for h in 0..heads {
                        let v = &xs[bi][t][h * d..(h + 1) * d];
                        let rms = (v.iter().map(|a| a * a).sum::<f32>() / d as f32 + 1e-6).sqrt();
                        for j in 0..d / 2 {
                            let y0 = v[2 * j] / rms * ws[2 * j];
                            let y1 = v[2 * j + 1] / rms * ws[2 * j + 1];
                            let (c, s) = (cs[first_row + t][j], ss[first_row + t][j]);
                            let g = &gs[bi][t][h * d + 2 * j..];
                            assert!((g[0] - (y0 * c - y1 * s)).abs() < 1e-5);
                            assert!((g[1] - (y1 * c + y0 * s)).abs() < 1e-5);
                        }
                    }
                }
            }
        }
        let cos = Tensor::zeros((4, d / 2), DType::F32, &dev).unwrap();
        let x = Tensor::zeros((1, 5, heads * d), DType::F32, &dev).unwrap();
        let w = Tensor::ones(d, DType::F32, &dev).unwrap();
        let short = RopeTables {
            cos: &cos,
            sin: &cos,
            first_row: 0,
        };
        assert!(rms_norm_rope(&x, &w, &short, heads, 1e-6).is_err());
    }
}
