//! Prompt weights applied to encoded chunks: A1111's emphasis modes (`sd_emphasis.py`) and
//! ComfyUI's rule (`ClipTokenWeightEncoder.encode_token_weights`).

use candle_core::{DType, Tensor};

use super::options::Emphasis;
use crate::Result;

/// A1111's emphasis over the encodings of one chunk position of a prompt's texts.
///
/// `z` is `[R, T, D]` (one row per distinct text), `weights` the rows' per-token weights and
/// `counts` how often each text occurs in A1111's batch (a text used at several step ranges is
/// encoded once per range there). "Original" multiplies each token's vector by its weight and
/// then scales the whole batch so that its mean is what it was; "No norm" only multiplies;
/// "Ignore" and "None" leave `z` as it is.
pub(crate) fn a1111_emphasis(
    z: &Tensor,
    weights: &[&[f32]],
    counts: &[usize],
    mode: Emphasis,
) -> Result<Tensor> {
    let weighted = weights.iter().any(|w| w.iter().any(|&v| v != 1.0));
    if !weighted || !matches!(mode, Emphasis::Original | Emphasis::NoNorm) {
        return Ok(z.clone());
    }
    let dtype = z.dtype();
    let z = z.to_dtype(DType::F32)?;
    let (r, t, _) = z.dims3()?;
    let flat: Vec<f32> = weights.iter().flat_map(|w| w.iter().copied()).collect();
    let w = Tensor::from_vec(flat, (r, t, 1), z.device())?;
    let zw = z.broadcast_mul(&w)?;
    let out = match mode {
        Emphasis::Original => {
            let before = batch_sum(&z, counts)?;
            let after = batch_sum(&zw, counts)?;
            (zw * (before / after))?
        }
        _ => zw,
    };
    Ok(out.to_dtype(dtype)?)
}

/// The sum of all elements of a batch whose row `i` occurs `counts[i]` times.
fn batch_sum(z: &Tensor, counts: &[usize]) -> Result<f64> {
    let rows: Vec<f32> = z.flatten_from(1)?.sum(1)?.to_vec1()?;
    Ok(rows
        .iter()
        .zip(counts)
        .map(|(&s, &n)| f64::from(s) * n as f64)
        .sum())
}

/// ComfyUI's rule for one chunk: every token whose weight is not 1 becomes
/// `(z - z_empty) * w + z_empty`, with `z_empty` the empty prompt's encoding `[1, T, D]`.
pub(crate) fn comfy_emphasis(z: &Tensor, weights: &[f32], empty: &Tensor) -> Result<Tensor> {
    if weights.iter().all(|&w| w == 1.0) {
        return Ok(z.clone());
    }
    let dtype = z.dtype();
    let (z, empty) = (z.to_dtype(DType::F32)?, empty.to_dtype(DType::F32)?);
    let t = weights.len();
    let w = Tensor::from_vec(weights.to_vec(), (1, t, 1), z.device())?;
    let mask: Vec<u8> = weights.iter().map(|&v| u8::from(v != 1.0)).collect();
    let mask = Tensor::from_vec(mask, (1, t, 1), z.device())?.broadcast_as(z.shape())?;
    let moved = (z.broadcast_sub(&empty)?.broadcast_mul(&w)?).broadcast_add(&empty)?;
    Ok(mask.where_cond(&moved, &z)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: (usize, usize, usize)) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn original_restores_the_batch_mean() {
        let z = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], (2, 2, 2));
        let w: [&[f32]; 2] = [&[1.0, 2.0], &[1.0, 1.0]];
        let out = a1111_emphasis(&z, &w, &[1, 3], Emphasis::Original).unwrap();
        let rows: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        // Row 1 counts three times: before 10 + 3 * 26 = 88, after 17 + 3 * 26 = 95.
        let f = 88.0 / 95.0;
        let want = [1.0, 2.0, 6.0, 8.0, 5.0, 6.0, 7.0, 8.0].map(|v| v * f);
        for (g, w) in rows.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{rows:?}");
        }
        let plain = a1111_emphasis(&z, &w, &[1, 3], Emphasis::Ignore).unwrap();
        assert_eq!(plain.to_vec3::<f32>().unwrap(), z.to_vec3::<f32>().unwrap());
        let nonorm = a1111_emphasis(&z, &w, &[1, 3], Emphasis::NoNorm).unwrap();
        assert_eq!(nonorm.to_vec3::<f32>().unwrap()[0][1], vec![6.0, 8.0]);
    }

    #[test]
    fn comfy_moves_weighted_tokens_from_the_empty_prompt() {
        let z = t(&[1.0, 2.0, 3.0, 4.0], (1, 2, 2));
        let e = t(&[0.5, 0.5, 1.0, 1.0], (1, 2, 2));
        let out = comfy_emphasis(&z, &[1.0, 2.0], &e).unwrap();
        assert_eq!(
            out.to_vec3::<f32>().unwrap(),
            vec![vec![vec![1.0, 2.0], vec![5.0, 7.0]]]
        );
    }
}
