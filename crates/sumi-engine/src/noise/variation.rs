//! A1111's variation seeds ("subseeds") and "resize seed from" (`modules/rng.py`, `ImageRNG.first`).
//!
//! # How A1111 builds the first noise of one image
//! Inputs: the latent shape `[C, H, W]` (`H`, `W` = image size / 8), the seed, the variation seed
//! (subseed) and its strength, and optionally a "resize seed from" size `(rh, rw)` in pixels.
//! With any RNG source (CPU, GPU, NV) the steps are:
//! 1. `noise_shape` is `[C, rh / 8, rw / 8]` if both `rh` and `rw` are > 0, else `[C, H, W]`.
//! 2. If a subseed is given and the strength is not 0: `subnoise` = the first draw, of
//!    `noise_shape`, of a fresh generator seeded with the subseed.
//! 3. `noise` = the first draw, of `noise_shape`, of a generator seeded with the seed: the image's
//!    own generator when `noise_shape` is `[C, H, W]`, a separate fresh one otherwise.
//! 4. If step 2 ran: `noise = slerp(strength, noise, subnoise)` ([`slerp`]).
//! 5. Only if `noise_shape` differs from `[C, H, W]`: `x` = the first draw, of `[C, H, W]`, of the
//!    image's own generator; the noise is copied into the centre of `x` ([`paste_centered`]) and
//!    `x` is the result. (With the NV source a value depends only on its index, not on the size
//!    of the draw, so `x` and step 3's noise start with the same values.)
//!
//! Either way the image's own generator (the one later `next()` draws continue) has made exactly
//! one draw, so it stands at offset 1; ENSD then replaces it (see `philox.rs`). The subseed
//! generator is used for that one draw only.
//!
//! In a batch, image `i` gets subseed `subseed + i`; its seed is `seed + i` only when the strength
//! is 0 (with a strength every image of the batch keeps `seed`).
//!
//! # Exactness of [`slerp`]
//! A1111 runs the slerp with torch in float32 on its device (usually a CUDA GPU). This follows
//! torch's operations one by one in float32 (the norms are sequential sums over `H`, as torch's CPU
//! kernel does them; the dot products are sequential sums, where torch's CPU kernel may group them
//! differently) and takes `acos` and `sin` from libm. torch's own `acos` / `sin` (SLEEF on the CPU,
//! CUDA's on a GPU) are off by one unit in the last place for a few percent of inputs, so results
//! agree with A1111's closely, not bit for bit: against torch on the CPU about 85% of the values
//! are identical and the others differ by less than 1e-6. The linear branch, strength 1 and
//! [`paste_centered`] (a copy) are exact.

use std::fmt;

/// A1111's threshold on the mean of the column cosines above which it blends linearly (torch
/// compares in float32, rounding the Python float).
const PARALLEL_THRESHOLD: f32 = 0.9995_f64 as f32;

/// Why a variation operation could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VariationError {
    /// A slice's length does not match its shape.
    LengthMismatch {
        /// The element count the shape implies.
        expected: usize,
        /// The slice's length.
        actual: usize,
    },
    /// The two noises of a paste have different channel counts.
    ChannelMismatch {
        /// Channels of the target.
        target: usize,
        /// Channels of the source.
        source: usize,
    },
}

impl fmt::Display for VariationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthMismatch { expected, actual } => {
                write!(f, "noise has {actual} values, its shape needs {expected}")
            }
            Self::ChannelMismatch { target, source } => {
                write!(
                    f,
                    "cannot paste {source}-channel noise into {target} channels"
                )
            }
        }
    }
}

impl std::error::Error for VariationError {}

/// A1111's `slerp(val, low, high)` on two noises of shape `[C, H, W]` (row-major), with
/// `val` = the variation strength, `low` = the seed's noise, `high` = the subseed's noise.
///
/// As in A1111 (torch's `norm(dim=1)` on a 3-D tensor), the interpolation is done separately for
/// every column `(c, w)`, over the `H` values of that column: with `cos omega` the cosine between
/// the two columns, the result is
/// `sin((1 - val) omega) / sin omega * low + sin(val omega) / sin omega * high`.
/// If the mean of all the column cosines is above 0.9995, A1111 instead returns
/// `low * val + high * (1 - val)` (note: the weights are the other way round than in the slerp,
/// so `val` then weighs the seed's noise). A column of zeros gives NaN, as in A1111.
pub fn slerp(
    val: f64,
    low: &[f32],
    high: &[f32],
    shape: [usize; 3],
) -> Result<Vec<f32>, VariationError> {
    let len = check_len(shape, low.len())?;
    check_len(shape, high.len())?;
    if len == 0 {
        return Ok(Vec::new());
    }
    // torch turns the Python float into a float32 scalar; `1.0 - val` is computed as a double first.
    let val32 = val as f32;
    let rest32 = (1.0 - val) as f32;
    let dots = column_cosines(low, high, shape);
    if mean(&dots) > PARALLEL_THRESHOLD {
        let out = low
            .iter()
            .zip(high)
            .map(|(&l, &h)| l * val32 + h * rest32)
            .collect();
        return Ok(out);
    }
    let weights: Vec<(f32, f32)> = dots
        .iter()
        .map(|&dot| {
            let omega = dot.acos();
            let so = omega.sin();
            ((rest32 * omega).sin() / so, (val32 * omega).sin() / so)
        })
        .collect();
    let [_, rows, cols] = shape;
    let out = low
        .iter()
        .zip(high)
        .enumerate()
        .map(|(i, (&l, &h))| {
            let (wl, wh) = weights[column_of(i, rows, cols)];
            wl * l + wh * h
        })
        .collect();
    Ok(out)
}

/// A1111's "resize seed from": copies `source` (shape `[C, h, w]`) into the centre of `target`
/// (shape `[C, H, W]`), cropping the source's centre where it is larger.
///
/// The offsets are `floor((H - h) / 2)` and `floor((W - w) / 2)`, rounding down also when they
/// are negative (Python's `//`). Where the source is smaller by an odd amount, the spare row or
/// column is at the bottom / right of the target. Where it is larger, `ceil(excess / 2)` rows or
/// columns are cut on both sides, so for an odd excess the source covers one row or column less
/// than the target and the target's own bottom row / right column stays as it was (as in A1111).
pub fn paste_centered(
    target: &mut [f32],
    target_shape: [usize; 3],
    source: &[f32],
    source_shape: [usize; 3],
) -> Result<(), VariationError> {
    check_len(target_shape, target.len())?;
    check_len(source_shape, source.len())?;
    let [channels, rows, cols] = target_shape;
    let [src_channels, src_rows, src_cols] = source_shape;
    if channels != src_channels {
        return Err(VariationError::ChannelMismatch {
            target: channels,
            source: src_channels,
        });
    }
    let (row_to, row_from, row_count) = centred_span(rows, src_rows);
    let (col_to, col_from, col_count) = centred_span(cols, src_cols);
    for c in 0..channels {
        for r in 0..row_count {
            let to = (c * rows + row_to + r) * cols + col_to;
            let from = (c * src_rows + row_from + r) * src_cols + col_from;
            target[to..to + col_count].copy_from_slice(&source[from..from + col_count]);
        }
    }
    Ok(())
}

/// Where a source axis of length `src` lands on a target axis of length `dst`:
/// `(first target index, first source index, count)`.
fn centred_span(dst: usize, src: usize) -> (usize, usize, usize) {
    if dst >= src {
        ((dst - src) / 2, 0, src)
    } else {
        // Python: d = (dst - src) // 2 < 0, count = src + 2 d, source start = -d.
        let skip = (src - dst).div_ceil(2);
        (0, skip, src - 2 * skip)
    }
}

/// The element count of `shape`, or an error if it is not `actual`.
fn check_len(shape: [usize; 3], actual: usize) -> Result<usize, VariationError> {
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if expected == actual {
        Ok(expected)
    } else {
        Err(VariationError::LengthMismatch { expected, actual })
    }
}

/// The index of the column `(c, w)` (row-major over `[C, W]`) that element `i` belongs to.
fn column_of(i: usize, rows: usize, cols: usize) -> usize {
    let c = i / (rows * cols);
    c * cols + i % cols
}

/// For every column `(c, w)`: the sum over `h` of `low/|low| * high/|high|`, in float32, as
/// A1111 computes it (each side normalised element by element first).
fn column_cosines(low: &[f32], high: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let [channels, rows, cols] = shape;
    let low_norms = column_norms(low, shape);
    let high_norms = column_norms(high, shape);
    let mut dots = vec![0.0f32; channels * cols];
    for c in 0..channels {
        for r in 0..rows {
            for w in 0..cols {
                let i = (c * rows + r) * cols + w;
                let k = c * cols + w;
                dots[k] += (low[i] / low_norms[k]) * (high[i] / high_norms[k]);
            }
        }
    }
    dots
}

/// The Euclidean norm of every column `(c, w)`, summing squares over `h` in order in float32.
fn column_norms(values: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let [channels, rows, cols] = shape;
    let mut sums = vec![0.0f32; channels * cols];
    for c in 0..channels {
        for r in 0..rows {
            for w in 0..cols {
                let v = values[(c * rows + r) * cols + w];
                sums[c * cols + w] += v * v;
            }
        }
    }
    for s in sums.iter_mut() {
        *s = s.sqrt();
    }
    sums
}

/// The float32 mean of `values` (NaN if any is NaN).
fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len() as f32
}

#[cfg(test)]
mod tests {
    use super::super::philox::PhiloxRng;
    use super::*;

    fn from_bits(v: &serde_json::Value) -> Vec<f32> {
        let items = v.as_array().expect("an array of bit patterns");
        items
            .iter()
            .map(|b| f32::from_bits(b.as_u64().expect("a u32") as u32))
            .collect()
    }

    fn shape_of(v: &serde_json::Value) -> [usize; 3] {
        let dims: Vec<usize> = v
            .as_array()
            .expect("a shape")
            .iter()
            .map(|d| d.as_u64().expect("a dimension") as usize)
            .collect();
        [dims[0], dims[1], dims[2]]
    }

    #[test]
    fn linear_branch_weights_are_swapped_as_in_a1111() {
        // Identical noises: every cosine is 1, so A1111 blends linearly with `val` on `low`.
        let low = [1.0f32, 2.0, 3.0, 4.0];
        let out = slerp(0.25, &low, &low, [1, 2, 2]).unwrap();
        let want: Vec<f32> = low.iter().map(|&l| l * 0.25 + l * 0.75).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn full_strength_gives_the_subseed_noise() {
        let low = [1.0f32, 0.0, 0.5, -1.0, 0.25, 2.0];
        let high = [0.0f32, 1.0, -0.5, 0.75, 1.0, -1.0];
        let out = slerp(1.0, &low, &high, [1, 2, 3]).unwrap();
        for (o, h) in out.iter().zip(high) {
            assert!((o - h).abs() < 1e-6, "{o} vs {h}");
        }
        let none = slerp(0.0, &low, &high, [1, 2, 3]).unwrap();
        for (o, l) in none.iter().zip(low) {
            assert!((o - l).abs() < 1e-6, "{o} vs {l}");
        }
    }

    #[test]
    fn orthogonal_columns_interpolate_on_the_circle() {
        // One column of two rows: (1, 0) to (0, 1) at 1/3 is (cos 30deg, sin 30deg).
        let out = slerp(1.0 / 3.0, &[1.0, 0.0], &[0.0, 1.0], [1, 2, 1]).unwrap();
        assert!((out[0] - 0.75f32.sqrt()).abs() < 1e-6);
        assert!((out[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let err = slerp(0.5, &[1.0; 3], &[1.0; 4], [1, 2, 2]).unwrap_err();
        assert_eq!(
            err,
            VariationError::LengthMismatch {
                expected: 4,
                actual: 3
            }
        );
        assert!(slerp(0.5, &[], &[], [usize::MAX, 2, 2]).is_err());
        assert_eq!(slerp(0.5, &[], &[], [0, 4, 4]).unwrap(), Vec::<f32>::new());
        let mut target = [0.0f32; 8];
        assert!(paste_centered(&mut target, [2, 2, 2], &[0.0; 4], [1, 2, 2]).is_err());
        assert!(paste_centered(&mut target, [2, 2, 2], &[0.0; 4], [2, 2, 2]).is_err());
    }

    #[test]
    fn zero_columns_give_nan_like_a1111() {
        let out = slerp(0.5, &[0.0, 0.0], &[1.0, 0.0], [1, 2, 1]).unwrap();
        assert!(out.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn centred_spans_follow_python_floor_division() {
        assert_eq!(centred_span(8, 8), (0, 0, 8));
        assert_eq!(centred_span(10, 7), (1, 0, 7));
        assert_eq!(centred_span(10, 6), (2, 0, 6));
        // (8 - 11) // 2 = -2: source columns 2..9 land on target columns 0..7.
        assert_eq!(centred_span(8, 11), (0, 2, 7));
        assert_eq!(centred_span(8, 12), (0, 2, 8));
    }

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../../tests/fixtures/noise/philox.json"))
            .expect("philox.json parses")
    }

    /// The first draw of A1111's NV generator for `seed`, the noise the fixture's cases start from.
    fn nv_noise(seed: &serde_json::Value, shape: [usize; 3]) -> Vec<f32> {
        let seed = seed.as_u64().expect("a seed");
        PhiloxRng::new(seed).randn(shape.iter().product())
    }

    #[test]
    fn paste_matches_a1111() {
        let fx = fixture();
        let cases = fx["paste"].as_array().expect("paste cases");
        assert!(!cases.is_empty());
        for case in cases {
            let target_shape = shape_of(&case["target_shape"]);
            let source_shape = shape_of(&case["source_shape"]);
            let mut target = nv_noise(&case["seed"], target_shape);
            let source = nv_noise(&case["source_seed"], source_shape);
            paste_centered(&mut target, target_shape, &source, source_shape).unwrap();
            let got: Vec<u32> = target.iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = from_bits(&case["out_bits"])
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got, want, "{target_shape:?} from {source_shape:?}");
        }
    }

    /// Units in the last place between two finite floats of the same sign region.
    fn ulps(a: f32, b: f32) -> u32 {
        let key = |v: f32| {
            let bits = v.to_bits() as i32;
            if bits < 0 {
                i32::MIN - bits
            } else {
                bits
            }
        };
        key(a).abs_diff(key(b))
    }

    fn assert_close(label: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{label}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let close = ulps(*g, *w) <= 8 || (g - w).abs() <= 1e-6;
            assert!(close, "{label} [{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn slerp_matches_a1111_to_a_few_ulps() {
        let fx = fixture();
        let cases = fx["slerp"].as_array().expect("slerp cases");
        assert!(!cases.is_empty());
        for case in cases {
            let shape = shape_of(&case["shape"]);
            let val = case["strength"].as_f64().expect("a strength");
            let (low, high) = match case.get("low_bits") {
                Some(bits) => (from_bits(bits), from_bits(&case["high_bits"])),
                None => (
                    nv_noise(&case["seed"], shape),
                    nv_noise(&case["subseed"], shape),
                ),
            };
            let got = slerp(val, &low, &high, shape).unwrap();
            let label = format!("{shape:?} strength {val}");
            if let Some(bits) = case.get("bits") {
                assert_close(&label, &got, &from_bits(bits));
                continue;
            }
            let head = from_bits(&case["head_bits"]);
            let tail = from_bits(&case["tail_bits"]);
            assert_close(&label, &got[..head.len()], &head);
            assert_close(&label, &got[got.len() - tail.len()..], &tail);
            let n = got.len() as f64;
            let mean = got.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = got
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            assert!(
                (mean - case["mean"].as_f64().unwrap()).abs() < 1e-6,
                "{label}: mean"
            );
            assert!(
                (var.sqrt() - case["std"].as_f64().unwrap()).abs() < 1e-6,
                "{label}: std"
            );
        }
    }
}
