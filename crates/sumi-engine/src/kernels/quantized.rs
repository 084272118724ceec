//! Products with block-quantized (GGUF) weights on the CPU. candle's own product keeps, on x86,
//! a repacked copy of every weight it meets (as large as the weight or larger) for as long as
//! the weight lives, which doubles the memory a quantized Flux transformer or T5 holds; its
//! product straight from the blocks keeps none but is several times slower. Here each product
//! expands its weight, rows in parallel, into a buffer that lives for that product only (bf16
//! where the CPU multiplies bf16, else f32) and runs it through [`super::linear`]'s kernels:
//! the memory held stays the file's, and the time is about that of the same weights in bf16.
//!
//! A low-rank addition `t u^T` (the LoRAs applied to the layer, `t = x down^T`) rides in the same
//! product: `u`'s columns are appended to each expanded row and `t`'s to `x`'s, so it costs
//! `r / k` more work and no extra pass over the output.

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Result, Tensor};
use half::bf16;
use rayon::prelude::*;

use super::bf16_gemm;

/// The low-rank addition `t u^T` to a product: `t` `[.., r]` (rows as `x`'s), `u` `[n, r]`.
pub type LowRank<'a> = (&'a Tensor, &'a Tensor);

/// `x q^T` (plus `extra`'s `t u^T`) for a CPU `q` of a block-quantized type, `x` and `extra` in
/// f32 with `q`'s inner size last; `None` for types it does not handle (f16, bf16, f32 tensors
/// from a GGUF file) and devices other than the CPU.
pub(super) fn linear(q: &QTensor, x: &Tensor, extra: Option<LowRank>) -> Result<Option<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return Ok(None);
    }
    let (n, k) = q.shape().dims2()?;
    if x.dims().last() != Some(&k) {
        candle_core::bail!(
            "quantized linear: input {:?} for a [{n}, {k}] weight",
            x.dims()
        );
    }
    let m = x.elem_count() / k.max(1);
    if m <= FEW_ROWS {
        let Some(y) = from_blocks(q, x, m, n, k)? else {
            return Ok(None);
        };
        return match extra {
            None => Ok(Some(y)),
            Some((t, u)) => (y + super::linear::linear(u, None, t)?).map(Some),
        };
    }
    let (x, u) = match extra {
        None => (x.clone(), None),
        Some((t, u)) => {
            let last = x.rank() - 1;
            let u = u.contiguous()?;
            (Tensor::cat(&[x, &t.to_dtype(DType::F32)?], last)?, Some(u))
        }
    };
    let Some(w) = expanded(q, n, k, u.as_ref(), bf16_gemm::available(), x.device())? else {
        return Ok(None);
    };
    super::linear::linear(&w, None, &x).map(Some)
}

/// Up to this many rows (Flux's modulation layers take one, and hold a quarter of its weights)
/// the product reads the blocks as they are: it is bound by reading the weight, which expanding
/// would only make longer.
const FEW_ROWS: usize = super::bf16_rows::FEW_ROWS;

/// `x q^T` straight from the blocks (candle's product without its repacked copy), the rows
/// quantized to the blocks' dot-product type.
fn from_blocks(q: &QTensor, x: &Tensor, m: usize, n: usize, k: usize) -> Result<Option<Tensor>> {
    struct Product<'a> {
        lhs: &'a [f32],
        out: &'a mut [f32],
        mkn: (usize, usize, usize),
    }
    impl OnBlocks for Product<'_> {
        type Out = ();
        fn run<T: GgmlType>(self, blocks: &[T]) -> Result<()> {
            k_quants::matmul(self.mkn, self.lhs, blocks, self.out)
        }
    }
    let x = x.contiguous()?;
    let bytes = q.data()?;
    let mut out = vec![0f32; m * n];
    let done = super::common::with_f32(&x, |lhs| {
        let product = Product {
            lhs,
            out: &mut out,
            mkn: (m, k, n),
        };
        on_blocks(q.dtype(), &bytes, product)
    })?;
    if done.is_none() {
        return Ok(None);
    }
    let mut dims = x.dims().to_vec();
    dims.pop();
    dims.push(n);
    Tensor::from_vec(out, dims, x.device()).map(Some)
}

/// The `[n, k]` weight `q` expanded to bf16 (`half`) or f32, each row followed by that row of
/// `[n, r]` `extra` when given; `None` for other storage types.
fn expanded(
    q: &QTensor,
    n: usize,
    k: usize,
    extra: Option<&Tensor>,
    half: bool,
    device: &candle_core::Device,
) -> Result<Option<Tensor>> {
    struct Expand<'a> {
        n: usize,
        k: usize,
        extra: Option<(&'a [f32], usize)>,
        half: bool,
        device: &'a candle_core::Device,
    }
    impl OnBlocks for Expand<'_> {
        type Out = Tensor;
        fn run<T: GgmlType>(self, blocks: &[T]) -> Result<Tensor> {
            expand(blocks, self.n, self.k, self.extra, self.half, self.device)
        }
    }
    let bytes = q.data()?;
    let run = |extra: Option<(&[f32], usize)>| {
        let expand = Expand {
            n,
            k,
            extra,
            half,
            device,
        };
        on_blocks(q.dtype(), &bytes, expand)
    };
    let Some(u) = extra else {
        return run(None);
    };
    let r = u.dim(1)?;
    if u.dims() != [n, r] {
        candle_core::bail!(
            "quantized linear: extra columns {:?} for {n} rows",
            u.dims()
        );
    }
    super::common::with_f32(u, |cols| run(Some((cols, r))))
}

/// Something done with the blocks of a quantized tensor, whatever their type.
trait OnBlocks {
    type Out;
    fn run<T: GgmlType>(self, blocks: &[T]) -> Result<Self::Out>;
}

/// `op` run on `bytes` as blocks of `dtype`; `None` for storage types that are not blocks.
fn on_blocks<O: OnBlocks>(dtype: GgmlDType, bytes: &[u8], op: O) -> Result<Option<O::Out>> {
    use k_quants::*;
    let out = match dtype {
        GgmlDType::Q4_0 => op.run(as_blocks::<BlockQ4_0>(bytes)?),
        GgmlDType::Q4_1 => op.run(as_blocks::<BlockQ4_1>(bytes)?),
        GgmlDType::Q5_0 => op.run(as_blocks::<BlockQ5_0>(bytes)?),
        GgmlDType::Q5_1 => op.run(as_blocks::<BlockQ5_1>(bytes)?),
        GgmlDType::Q8_0 => op.run(as_blocks::<BlockQ8_0>(bytes)?),
        GgmlDType::Q2K => op.run(as_blocks::<BlockQ2K>(bytes)?),
        GgmlDType::Q3K => op.run(as_blocks::<BlockQ3K>(bytes)?),
        GgmlDType::Q4K => op.run(as_blocks::<BlockQ4K>(bytes)?),
        GgmlDType::Q5K => op.run(as_blocks::<BlockQ5K>(bytes)?),
        GgmlDType::Q6K => op.run(as_blocks::<BlockQ6K>(bytes)?),
        _ => return Ok(None),
    };
    out.map(Some)
}

/// Rows of `T` blocks expanded, in parallel, to an `[n, k + r]` tensor of bf16 or f32: each
/// row's `k` values, then its `r` values of `extra` (`[n, r]`, r = 0 when absent).
fn expand<T: GgmlType>(
    blocks: &[T],
    n: usize,
    k: usize,
    extra: Option<(&[f32], usize)>,
    half: bool,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let per_row = k / T::BLCK_SIZE;
    if !k.is_multiple_of(T::BLCK_SIZE) || blocks.len() != n * per_row {
        candle_core::bail!(
            "quantized weight: {} blocks of {} for a [{n}, {k}] matrix",
            blocks.len(),
            T::BLCK_SIZE
        );
    }
    let (cols, r) = extra.unwrap_or((&[], 0));
    let width = k + r;
    let extra_row = |i: usize| &cols[i * r..(i + 1) * r];
    if !half {
        let mut out = vec![0f32; n * width];
        out.par_chunks_mut(width)
            .zip(blocks.par_chunks(per_row))
            .enumerate()
            .for_each(|(i, (row, b))| {
                T::to_float(b, &mut row[..k]);
                row[k..].copy_from_slice(extra_row(i));
            });
        return Tensor::from_vec(out, (n, width), device);
    }
    let mut out = vec![bf16::ZERO; n * width];
    out.par_chunks_mut(width)
        .zip(blocks.par_chunks(per_row))
        .enumerate()
        .for_each_init(
            || vec![0f32; width],
            |wide, (i, (row, b))| {
                T::to_float(b, &mut wide[..k]);
                wide[k..].copy_from_slice(extra_row(i));
                bf16_gemm::round_into(wide, row);
            },
        );
    Tensor::from_vec(out, (n, width), device)
}

/// The stored bytes of a quantized tensor as its blocks.
fn as_blocks<T: GgmlType>(bytes: &[u8]) -> Result<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size)
        || bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0
    {
        candle_core::bail!(
            "quantized weight: {} bytes are not whole aligned blocks",
            bytes.len()
        );
    }
    // SAFETY: the bytes are the tensor's own storage of `T` blocks (a `Vec<T>`), aligned and
    // whole as checked above, and borrowed for as long as the returned slice.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use crate::test_util::max_abs;

    #[test]
    fn block_products_match_candles_for_every_block_type() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (64, 512), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 512), &dev).unwrap();
        // One row goes straight from the blocks, with its values quantized to 8 bits.
        let row = Tensor::randn(0f32, 1.0, (1, 512), &dev).unwrap();
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
        ] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let ours = super::linear(&q, &x, None).unwrap().unwrap();
            assert_eq!(ours.dims(), [2, 5, 64]);
            // The same product through the dequantized weight.
            let want = x
                .broadcast_matmul(&q.dequantize(&dev).unwrap().t().unwrap())
                .unwrap();
            let err = crate::test_util::max_abs_diff(&ours, &want);
            let scale = max_abs(&want);
            // bf16 operands where the CPU multiplies them: 8 bits of mantissa.
            assert!(err < 0.01 * scale, "{dtype:?}: {err} of {scale}");
            let one = super::linear(&q, &row, None).unwrap().unwrap();
            let one_want = row
                .matmul(&q.dequantize(&dev).unwrap().t().unwrap())
                .unwrap();
            let (one_err, one_scale) = (
                crate::test_util::max_abs_diff(&one, &one_want),
                max_abs(&one_want),
            );
            // The row's values are quantized to 8 bits for the blocks' dot products.
            assert!(
                one_err < 0.03 * one_scale,
                "{dtype:?} one row: {one_err} of {one_scale}"
            );
            // Expanded to f32 the weight is the dequantized one exactly.
            let (n, k) = (64, 512);
            let wide = super::expanded(&q, n, k, None, false, &dev)
                .unwrap()
                .unwrap();
            let exact = q.dequantize(&dev).unwrap();
            let diff = (wide - exact).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{dtype:?}");
        }
        let f16 = QTensor::quantize(&w, GgmlDType::F16).unwrap();
        assert!(super::linear(&f16, &x, None).unwrap().is_none());
    }

    #[test]
    fn a_low_rank_addition_rides_in_the_product() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (64, 256), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let dense = q.dequantize(&dev).unwrap();
        let (up, down) = (
            Tensor::randn(0f32, 1.0, (64, 3), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (3, 256), &dev).unwrap(),
        );
        let patched = (&dense + up.matmul(&down).unwrap()).unwrap();
        for rows in [2, 9] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, 256), &dev).unwrap();
            let t = x.broadcast_matmul(&down.t().unwrap()).unwrap();
            let got = super::linear(&q, &x, Some((&t, &up))).unwrap().unwrap();
            let want = x.broadcast_matmul(&patched.t().unwrap()).unwrap();
            let (err, scale) = (crate::test_util::max_abs_diff(&got, &want), max_abs(&want));
            // Few rows: 8-bit rows against the blocks; more: bf16 operands where the CPU has them.
            assert!(err < 0.03 * scale, "{rows} rows: {err} of {scale}");
        }
    }
}
