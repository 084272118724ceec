//! Linear layers as one matrix product over all rows of the input, with bf16-stored weights on
//! the CPU multiplied by [`bf16_gemm`] where the CPU can, widened to f32 where it cannot, and
//! read as stored for inputs of a few rows ([`bf16_rows`]); f32 products on the CPU are shared
//! out over the compute threads by rows or output columns.

use candle_core::{DType, Result, Tensor};

use super::bf16_gemm::{self, PackedB, PairRows, Start};
use super::bf16_rows;
use super::common::{with_bf16, with_f32};
use super::tiles::SharedMut;
use rayon::prelude::*;

pub(super) fn linear(w: &Tensor, bias: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let d = dims.pop().unwrap_or(1);
    let rows = x.reshape((x.elem_count() / d.max(1), d))?;
    let cpu_f32 = x.dtype() == DType::F32 && x.device().is_cpu();
    let y = if w.dtype() == DType::BF16 && cpu_f32 {
        bf16_weights(&rows, w, bias, bf16_gemm::available())?
    } else if w.dtype() == DType::F32 && cpu_f32 {
        f32_weights(&rows, w, bias)?
    } else {
        product(&rows, w, bias)?
    };
    dims.push(y.dim(1)?);
    y.reshape(dims)
}

/// bf16 weights of at least this size are packed a panel at a time as the product needs them
/// ([`bf16_gemm::gemm_weight`]): they do not fit in the cache, and a packed copy would be
/// written to memory and read back once per block of rows (Flux's 19-132 MB weights: its
/// products ran 10-40% faster). Smaller ones (all of SD's, at most 6.5 MB) are packed whole
/// first, which keeps tasks many and short for inputs of thousands of rows.
const PACK_AS_NEEDED_BYTES: usize = 8 << 20;

/// `x w^T + bias` with candle's matmul, the weight and bias in `x`'s dtype.
fn product(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.to_dtype(x.dtype())?.t()?)?;
    match bias {
        Some(b) => y.broadcast_add(&b.to_dtype(x.dtype())?),
        None => Ok(y),
    }
}

/// An f32 `x` (rows) times a bf16 weight: a few rows against the weight as stored, else with
/// [`bf16_gemm`] when `kernel`, else widened.
fn bf16_weights(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, kernel: bool) -> Result<Tensor> {
    let (m, k, n) = sizes(x, w)?;
    let w = w.contiguous()?;
    let few = m <= bf16_rows::FEW_ROWS;
    if !kernel && !few {
        let wide = with_bf16(&w, |ws| Ok(bf16_gemm::widen(ws)))?;
        return f32_weights(x, &Tensor::from_vec(wide, (n, k), x.device())?, bias);
    }
    let x = x.contiguous()?;
    let bias = bias.map(f32_contiguous).transpose()?;
    let mut out = vec![0f32; m * n];
    with_f32(&x, |xs| {
        with_bf16(&w, |ws| {
            with_optional_f32(bias.as_ref(), |bias| {
                if few {
                    bf16_rows::product(xs, m, k, ws, bias, &mut out);
                    return Ok(());
                }
                let a = PairRows::from_f32(xs, m, k);
                let start = bias.map_or(Start::Zero, Start::Bias);
                if n * k * 2 >= PACK_AS_NEEDED_BYTES {
                    bf16_gemm::gemm_weight(&a, ws, n, k, &mut out, n, start);
                } else {
                    let b = PackedB::from_transposed_bf16(ws, n, k);
                    bf16_gemm::gemm_from(&a, &b, &mut out, n, start);
                }
                Ok(())
            })
        })
    })?;
    Tensor::from_vec(out, (m, n), x.device())
}

/// `x w^T + bias` for f32 `x` and `w` on the CPU: single-threaded `gemm` calls, two per thread
/// (one in all on one thread), each on its own share of the larger of the rows and the output
/// columns. On a 2-core Xeon (Ice Lake) the `gemm` crate's own threading reached 126-210 GFLOP/s
/// on Flux's shapes, where one core alone reached 96-112; shared out this way, 171-253
/// (`examples/bf16_shapes.rs`).
fn f32_weights(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (m, k, n) = sizes(x, w)?;
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let bias = bias.map(f32_contiguous).transpose()?;
    let mut out = vec![0f32; m * n];
    with_f32(&x, |xs| {
        with_f32(&w, |ws| {
            with_optional_f32(bias.as_ref(), |bias| {
                if let Some(b) = bias {
                    out.par_chunks_mut(n)
                        .for_each(|row| row.copy_from_slice(&b[..n]));
                }
                let threads = candle_core::utils::get_num_threads().max(1);
                let split_rows = m >= n;
                let len = if split_rows { m } else { n };
                // One call on one thread: cutting it up there only packs operands again.
                let parts = match threads {
                    1 => 1,
                    _ => (2 * threads).min(len.div_ceil(64)).max(1),
                };
                let step = len.div_ceil(parts);
                let dst = SharedMut(out.as_mut_ptr());
                (0..parts).into_par_iter().for_each(|t| {
                    let (a, b) = (t * step, len.min((t + 1) * step));
                    if a >= b {
                        return;
                    }
                    let (rows, cols, x0, w0, d0) = if split_rows {
                        (b - a, n, a * k, 0, a * n)
                    } else {
                        (m, b - a, 0, a * k, a)
                    };
                    // SAFETY: x is m x k and w n x k row-major, out m x n; this task reads rows
                    // a..b of x (or of w) and writes only its own rows (or columns) of out.
                    unsafe {
                        gemm::gemm(
                            rows,
                            cols,
                            k,
                            dst.get().add(d0),
                            1,
                            n as isize,
                            bias.is_some(),
                            xs.as_ptr().add(x0),
                            1,
                            k as isize,
                            ws.as_ptr().add(w0),
                            k as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    }
                });
                Ok(())
            })
        })
    })?;
    Tensor::from_vec(out, (m, n), x.device())
}

/// `(m, k, n)` of rows `x` `[m, k]` times the transpose of a weight `w` `[n, k]`.
fn sizes(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw || k == 0 {
        candle_core::bail!("linear: input has {k} features, weight expects {kw}");
    }
    Ok((m, k, n))
}

/// A bias as contiguous f32 values.
fn f32_contiguous(b: &Tensor) -> Result<Tensor> {
    b.to_dtype(DType::F32)?.contiguous()
}

/// [`with_f32`] for a tensor that may be absent.
fn with_optional_f32<R>(
    t: Option<&Tensor>,
    f: impl FnOnce(Option<&[f32]>) -> Result<R>,
) -> Result<R> {
    match t {
        Some(t) => with_f32(t, |v| f(Some(v))),
        None => f(None),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Module, Tensor};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn linear_over_all_rows_matches_candles_batched_one() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
        let lin = candle_nn::Linear::new(w.clone(), Some(b.clone()));
        for dims in [vec![3, 4], vec![2, 3, 4], vec![2, 2, 3, 4]] {
            let x = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev).unwrap();
            let ours = super::linear(&w, Some(&b), &x).unwrap();
            let theirs = lin.forward(&x).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-5, "{dims:?}");
        }
    }

    #[test]
    fn shared_out_products_match_candles_matmul() {
        let dev = Device::Cpu;
        // Rows shared out (m >= n), columns shared out, and too small to share.
        for (m, k, n) in [(300, 70, 33), (3, 50, 700), (65, 129, 64), (1, 7, 3)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
            for bias in [None, Some(&b)] {
                let got = super::f32_weights(&x, &w, bias).unwrap();
                let want = super::product(&x, &w, bias).unwrap();
                assert!(
                    max_diff(&got, &want) < 1e-4,
                    "{m}x{k}x{n} bias {}",
                    bias.is_some()
                );
            }
        }
    }

    #[test]
    fn bf16_weights_give_the_product_of_the_rounded_operands() {
        let dev = Device::Cpu;
        let round = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32);
        // 2 and 4 rows take the few-rows path; the others the kernel or widened weights.
        for (m, k, n) in [(1, 3, 2), (2, 70, 33), (154, 77, 45), (40, 320, 100)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2 * m, k), &dev).unwrap();
            let wb = w.to_dtype(DType::BF16).unwrap();
            let full = candle_nn::Linear::new(w.clone(), Some(b.clone()))
                .forward(&x)
                .unwrap();
            let got = super::linear(&wb, Some(&b), &x).unwrap();
            assert_eq!(got.dtype(), DType::F32);
            let mut kernels = vec![false];
            if super::bf16_gemm::has_instruction() {
                kernels.push(true);
            }
            for kernel in kernels {
                let got = super::bf16_weights(&x, &wb, Some(&b), kernel).unwrap();
                // The kernel rounds x to bf16 too; widened weights and few rows meet x in f32.
                let xr = if kernel && 2 * m > super::bf16_rows::FEW_ROWS {
                    round(&x).unwrap()
                } else {
                    x.clone()
                };
                let want = candle_nn::Linear::new(round(&w).unwrap(), Some(b.clone()))
                    .forward(&xr)
                    .unwrap();
                let tol = 1e-4 * (k as f32).sqrt();
                assert!(max_diff(&got, &want) < tol, "{m}x{k}x{n} kernel {kernel}");
                // Against the f32 layer: bf16's 8-bit mantissa, about 2^-8 relative per term.
                let bound = 0.02 * (k as f32).sqrt();
                assert!(max_diff(&got, &full) < bound, "{m}x{k}x{n} kernel {kernel}");
            }
        }
    }
}
