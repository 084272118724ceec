//! Multi-head scaled dot-product attention for f32 on the CPU, one block of queries at a time.
//!
//! candle's path materialises the scores of every head at once (`[B, heads, Lq, Lk]`: 1 GiB for
//! an SD1.5 UNet at 512x512 with CFG), runs a separate softmax pass with scalar `exp`, and copies
//! the heads in and out of `[B, heads, L, d]`. Here each (image, head, block of queries) reads its
//! q/k/v columns in place from the `[B, L, C]` projections, keeps only a `[block, Lk]` score tile,
//! applies a vectorised `exp`, and writes its output columns directly.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::{enabled, with_f32};

/// Queries per tile: the score tile is `QUERY_BLOCK x Lk` floats.
const QUERY_BLOCK: usize = 64;

/// `softmax(q k^T / sqrt(d)) v` over `heads` heads of `[B, L, C]` inputs; `fallback` (candle's
/// ops) runs for other devices and dtypes.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    fallback: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    let cpu_f32 =
        matches!(q.device(), Device::Cpu) && [q, k, v].iter().all(|t| t.dtype() == DType::F32);
    if !enabled() || !cpu_f32 {
        return fallback();
    }
    let (b, lq, c) = q.dims3()?;
    let (bk, lk, ck) = k.dims3()?;
    if bk != b || ck != c || v.dims3()? != (b, lk, c) || heads == 0 || !c.is_multiple_of(heads) {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?}, {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let d = c / heads;
    let scale = (d as f32).powf(-0.5);
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let mut out = vec![0f32; b * lq * c];
    with_f32(&q, |qs| {
        with_f32(&k, |ks| {
            with_f32(&v, |vs| {
                // One task per (image, block of queries); heads run inside it, so each task
                // owns whole rows of the output.
                out.par_chunks_mut(lq * c)
                    .enumerate()
                    .for_each(|(img, image_out)| {
                        image_out
                            .par_chunks_mut(QUERY_BLOCK * c)
                            .enumerate()
                            .for_each(|(blk, dst)| {
                                let rows = dst.len() / c;
                                let q0 = (img * lq + blk * QUERY_BLOCK) * c;
                                let kv0 = img * lk * c;
                                let mut scores = vec![0f32; rows * lk];
                                let mut sums = vec![0f32; rows];
                                for h in 0..heads {
                                    let tile = Tile {
                                        rows,
                                        lk,
                                        c,
                                        d,
                                        h,
                                        scale,
                                    };
                                    tile.run(
                                        &qs[q0..],
                                        &ks[kv0..],
                                        &vs[kv0..],
                                        &mut scores,
                                        &mut sums,
                                        dst,
                                    );
                                }
                            });
                    });
                Ok(())
            })
        })
    })?;
    Tensor::from_vec(out, (b, lq, c), q.device())
}

/// One head of one block of queries.
struct Tile {
    rows: usize,
    lk: usize,
    c: usize,
    d: usize,
    h: usize,
    scale: f32,
}

impl Tile {
    fn run(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        scores: &mut [f32],
        sums: &mut [f32],
        dst: &mut [f32],
    ) {
        let (rows, lk, c, d, col) = (self.rows, self.lk, self.c, self.d, self.h * self.d);
        assert!(q.len() >= (rows - 1) * c + col + d && k.len() >= (lk - 1) * c + col + d);
        assert!(v.len() >= (lk - 1) * c + col + d && dst.len() >= (rows - 1) * c + col + d);
        assert!(scores.len() >= rows * lk && sums.len() >= rows);
        // SAFETY: the asserts bound every access: q/dst rows are `c` apart with `d` columns
        // from `col`, k/v likewise for `lk` rows, scores is `rows x lk` row-major.
        unsafe {
            // scores = q_h [rows, d] x k_h^T [d, lk]
            gemm::gemm(
                rows,
                lk,
                d,
                scores.as_mut_ptr(),
                1,
                lk as isize,
                false,
                q.as_ptr().add(col),
                1,
                c as isize,
                k.as_ptr().add(col),
                c as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (row, sum) in scores[..rows * lk].chunks_mut(lk).zip(sums.iter_mut()) {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            *sum = exp_shifted(row, max, self.scale);
        }
        // SAFETY: as above; dst is borrowed mutably so it aliases nothing.
        unsafe {
            // out_h [rows, d] = p [rows, lk] x v_h [lk, d]
            gemm::gemm(
                rows,
                d,
                lk,
                dst.as_mut_ptr().add(col),
                1,
                c as isize,
                false,
                scores.as_ptr(),
                1,
                lk as isize,
                v.as_ptr().add(col),
                1,
                c as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (r, &sum) in sums[..rows].iter().enumerate() {
            let inv = 1.0 / sum;
            for o in &mut dst[r * c + col..r * c + col + d] {
                *o *= inv;
            }
        }
    }
}

/// Replaces each `x` by `exp((x - max) * scale)` and returns their sum.
fn exp_shifted(row: &mut [f32], max: f32, scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { exp_shifted_avx2(row, max, scale) };
    }
    exp_shifted_generic(row, max, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(row: &mut [f32], max: f32, scale: f32) -> f32 {
    exp_shifted_generic(row, max, scale)
}

/// Written so that the compiler vectorises it (no branches, no calls into libm).
#[inline(always)]
fn exp_shifted_generic(row: &mut [f32], max: f32, scale: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (x, a) in chunk.iter_mut().zip(acc.iter_mut()) {
            let e = fast_exp((*x - max) * scale);
            *x = e;
            *a += e;
        }
    }
    let mut tail = 0.0;
    for x in chunks.into_remainder() {
        *x = fast_exp((*x - max) * scale);
        tail += *x;
    }
    acc.iter().sum::<f32>() + tail
}

/// `e^x` for `x <= 0` to about 2 ulp (inputs below -87 give about 0): 2^(x log2 e) split into
/// an integer power set in the exponent bits and a degree-6 polynomial on [-1/2, 1/2].
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E;
    // Round to nearest with the 1.5 * 2^23 trick (vectorises, unlike f32::round); the integer
    // then sits in the low mantissa bits of `r`, so no float-to-int conversion is needed.
    let r = t + 12_582_912.0;
    let n = r - 12_582_912.0;
    let ni = (r.to_bits() as i32).wrapping_sub(0x4B40_0000);
    // x - n ln2 with ln2 split in two parts (Cody-Waite) so large |x| keep their precision.
    let f = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
    // Taylor series of e^f for |f| <= ln2/2, Horner form.
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0
                        + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    let bits = (ni.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Tensor {
        let (b, lq, c) = q.dims3().unwrap();
        let lk = k.dim(1).unwrap();
        let d = c / heads;
        let split = |x: &Tensor, l| {
            x.reshape((b, l, heads, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(q, lq), split(k, lk), split(v, lk));
        let s = (q.matmul(&k.t().unwrap()).unwrap() * (d as f64).powf(-0.5)).unwrap();
        let p = candle_nn::ops::softmax_last_dim(&s).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, lq, c))
            .unwrap()
    }

    #[test]
    fn matches_candle_attention() {
        let dev = Device::Cpu;
        // (batch, lq, lk, channels, heads): self- and cross-attention, ragged query blocks.
        for &(b, lq, lk, c, heads) in &[
            (2, 130, 130, 40, 8),
            (2, 64, 77, 80, 2),
            (1, 7, 3, 12, 3),
            (1, 200, 200, 32, 1),
        ] {
            let q = Tensor::randn(0f32, 1.0, (b, lq, c), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, lk, c), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, lk, c), &dev).unwrap();
            let got = attention(&q, &k, &v, heads, || unreachable!()).unwrap();
            let want = reference(&q, &k, &v, heads);
            let d = crate::test_util::max_abs_diff(&got, &want);
            assert!(d < 1e-5, "{:?}: max diff {d}", (b, lq, lk, c, heads));
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f32;
        for i in 0..=20000 {
            let x = -87.0 * i as f32 / 20000.0;
            let (got, want) = (fast_exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert!(fast_exp(-200.0) < 1e-37);
    }
}
