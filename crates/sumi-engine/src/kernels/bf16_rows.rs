//! Products of a few f32 rows with a bf16 weight `[n, k]` read as stored: each weight row is
//! widened in registers and met by every input row, so the weight is read once.
//!
//! Flux's modulation layers run on one row (the time embedding) and hold about a quarter of its
//! weights; packing them for [`super::bf16_gemm`] (or widening them to f32 first) reads and
//! writes every weight two more times for a product that is bound by memory.

use half::bf16;
use rayon::prelude::*;

/// Inputs of at most this many rows take this path.
pub(crate) const FEW_ROWS: usize = 4;

/// Weight rows (outputs) per rayon task.
const OUTPUTS_PER_TASK: usize = 64;

/// `out[i][j] = sum_k x[i][k] w[j][k] (+ bias[j])` for `m <= FEW_ROWS` rows of `x` (`[m, k]`
/// row-major) and `w` `[n, k]`; `out` is `[m, n]`.
pub(crate) fn product(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[bf16],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    assert!(m <= FEW_ROWS && k > 0 && x.len() == m * k && w.len().is_multiple_of(k));
    let n = w.len() / k;
    assert_eq!(out.len(), m * n);
    // Results per task as [task outputs][m], scattered into `out` after.
    let mut by_output = vec![0f32; n * m];
    by_output
        .par_chunks_mut(OUTPUTS_PER_TASK * m.max(1))
        .enumerate()
        .for_each(|(task, dst)| {
            let j0 = task * OUTPUTS_PER_TASK;
            for (jj, d) in dst.chunks_mut(m.max(1)).enumerate() {
                let j = j0 + jj;
                dots(x, m, &w[j * k..(j + 1) * k], d);
            }
        });
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = by_output[j * m + i] + bias.map_or(0.0, |b| b[j]);
        }
    }
}

fn dots(x: &[f32], m: usize, w: &[bf16], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above), and so AVX2 and FMA.
        return unsafe { dots_avx512(x, m, w, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { dots_avx2(x, m, w, out) };
    }
    dots_generic(x, m, w, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dots_avx512(x: &[f32], m: usize, w: &[bf16], out: &mut [f32]) {
    dots_generic(x, m, w, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(x: &[f32], m: usize, w: &[bf16], out: &mut [f32]) {
    dots_generic(x, m, w, out)
}

/// `out[i] = x_i . w` for the `m` rows `x_i`, in 16 lanes per row so the compiler vectorises
/// it (a bf16 widens to f32 by a shift).
#[inline(always)]
fn dots_generic(x: &[f32], m: usize, w: &[bf16], out: &mut [f32]) {
    const LANES: usize = 16;
    let k = w.len();
    let whole = k - k % LANES;
    let mut acc = [[0f32; LANES]; FEW_ROWS];
    let mut p = 0;
    while p < whole {
        let mut wide = [0f32; LANES];
        for (d, s) in wide.iter_mut().zip(&w[p..p + LANES]) {
            *d = f32::from_bits((s.to_bits() as u32) << 16);
        }
        for (i, acc) in acc.iter_mut().enumerate().take(m) {
            let row = &x[i * k + p..i * k + p + LANES];
            for ((a, &wv), &xv) in acc.iter_mut().zip(&wide).zip(row) {
                *a = xv.mul_add(wv, *a);
            }
        }
        p += LANES;
    }
    for (i, o) in out.iter_mut().enumerate().take(m) {
        let tail: f32 = (whole..k).map(|q| x[i * k + q] * w[q].to_f32()).sum();
        *o = acc[i].iter().sum::<f32>() + tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_f64_sums_of_the_widened_weight() {
        for &(m, k, n) in &[(1, 1, 1), (1, 17, 3), (3, 100, 130), (4, 3072, 70)] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 30.0)
                .collect();
            let w: Vec<bf16> = (0..n * k)
                .map(|i| bf16::from_f32(((i * 53 % 89) as f32 - 44.0) / 40.0))
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
            let mut out = vec![f32::NAN; m * n];
            product(&x, m, k, &w, Some(&bias), &mut out);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|q| x[i * k + q] as f64 * w[j * k + q].to_f32() as f64)
                        .sum::<f64>()
                        + bias[j] as f64;
                    let got = out[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(),
                        "{m}x{k}x{n} [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
