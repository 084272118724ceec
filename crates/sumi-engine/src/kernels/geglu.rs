//! The GEGLU activation of the transformer feed-forward, `a * gelu(b)` for a projection whose
//! last dimension holds `[a | b]`, in one vectorised pass for f32 on the CPU.
//!
//! candle does it as a strided chunk, a scalar `erf` per element and a strided multiply: three
//! passes over up to 2 x 4096 x 2560 floats per SD1.5 block at 512x512.

use candle_core::{DType, Device, Result, Tensor, D};
use rayon::prelude::*;

use super::common::{enabled, with_f32};
use super::math::fast_exp;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// `a * gelu_erf(b)` where `proj`'s last dimension is `[a | b]`; the result has half its width.
pub fn geglu(proj: &Tensor) -> Result<Tensor> {
    let width = proj.dim(D::Minus1)?;
    if width % 2 != 0 {
        candle_core::bail!("geglu: last dimension {width} is odd");
    }
    let inner = width / 2;
    if !enabled() || !matches!(proj.device(), Device::Cpu) || proj.dtype() != DType::F32 {
        let halves = proj.chunk(2, D::Minus1)?;
        return &halves[0] * halves[1].gelu_erf()?;
    }
    let proj = proj.contiguous()?;
    let mut out = vec![0f32; proj.elem_count() / 2];
    with_f32(&proj, |src| {
        out.par_chunks_mut(inner * ROWS_PER_TASK)
            .zip(src.par_chunks(width * ROWS_PER_TASK))
            .for_each(|(dst, src)| {
                for (d, s) in dst.chunks_mut(inner).zip(src.chunks(width)) {
                    let (a, b) = s.split_at(inner);
                    geglu_row(a, b, d);
                }
            });
        Ok(())
    })?;
    let mut dims = proj.dims().to_vec();
    *dims.last_mut().expect("geglu: checked above") = inner;
    Tensor::from_vec(out, dims, proj.device())
}

fn geglu_row(a: &[f32], b: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above), and so AVX2 and FMA.
        return unsafe { geglu_row_avx512(a, b, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { geglu_row_avx2(a, b, out) };
    }
    geglu_row_generic(a, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn geglu_row_avx512(a: &[f32], b: &[f32], out: &mut [f32]) {
    geglu_row_generic(a, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn geglu_row_avx2(a: &[f32], b: &[f32], out: &mut [f32]) {
    geglu_row_generic(a, b, out)
}

/// Written so that the compiler vectorises it (no branches, no calls into libm).
#[inline(always)]
fn geglu_row_generic(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a * 0.5 * b * (1.0 + erf(b * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// `erf(x)` to 5e-7 absolute (Abramowitz & Stegun 7.1.26, 1.5e-7, plus f32 rounding), without
/// branches.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let ax = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * ax);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    (1.0 - poly * fast_exp(-ax * ax)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_candle() {
        let dev = Device::Cpu;
        // Odd widths and a row count that does not fill the last task.
        for (rows, inner, scale) in [(3, 5, 1f32), (130, 40, 3.0), (70, 1280, 10.0)] {
            let proj = (Tensor::randn(0f32, 1.0, (1, rows, 2 * inner), &dev).unwrap()
                * scale as f64)
                .unwrap();
            let got = geglu(&proj).unwrap();
            let halves = proj.chunk(2, D::Minus1).unwrap();
            let want = (&halves[0] * halves[1].gelu_erf().unwrap()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = crate::test_util::max_abs_diff(&got, &want);
            assert!(
                d < 2e-6 * scale * scale,
                "rows {rows} inner {inner}: max diff {d}"
            );
        }
    }

    #[test]
    fn erf_is_accurate_and_odd() {
        for i in -4000..=4000 {
            let x = i as f32 / 1000.0;
            let want = libm_erf(x as f64);
            // 1.5e-7 from the formula plus a few f32 roundings.
            let err = (erf(x) as f64 - want).abs();
            assert!(err < 5e-7, "erf({x}): error {err:e}");
            assert_eq!(erf(-x), -erf(x));
        }
        assert_eq!(erf(20.0), 1.0);
        assert_eq!(erf(-20.0), -1.0);
    }

    /// erf by its Maclaurin series (converges well for |x| <= 4 in f64).
    fn libm_erf(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn odd_width_is_an_error() {
        let proj = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(geglu(&proj).is_err());
    }
}
