//! Attention and convolution with candle's ops, in slices whose temporary buffers stay within a
//! memory budget: the path for GPUs and for dtypes the CPU kernels do not cover.
//!
//! candle's attention holds the scores of every head at once (`[B, heads, Lq, Lk]`: 8 GiB in f16
//! for an SD1.5 UNet at 1024x1024 with CFG) and its convolution unfolds the whole input first
//! (`k*k*Cin` values per output pixel: 4.5 GiB in f16 for the VAE's last 3x3 convolution at
//! 1024x1024). Here attention runs over slices of queries and 3x3 convolutions over bands of
//! output rows, each sized so that its temporary buffer fits a quarter of the device's free memory
//! and 1 GiB. Below that both are one candle call, as before.

use candle_core::{DType, Device, Result, Tensor};

use crate::device::free_memory;

/// Upper bound of one slice's temporary buffer, even when far more memory is free.
const CAP: usize = 1 << 30;

/// Temporary buffers up to this size never ask the device how much memory is free.
const SMALL: usize = 64 << 20;

/// Bytes one slice's temporary buffer may take on `device` for an op whose unsliced buffer would
/// take `whole` bytes: a quarter of the free memory, at most [`CAP`] (all of [`CAP`] where free
/// memory is unknown).
fn auto_budget(device: &Device, whole: usize) -> usize {
    if whole <= SMALL {
        return whole;
    }
    free_memory(device).map_or(CAP, |free| (free / 4).min(CAP))
}

/// How many of `n` items fit in `budget` bytes at `bytes_each`; at least one.
fn per_slice(n: usize, bytes_each: usize, budget: usize) -> usize {
    (budget / bytes_each.max(1)).clamp(1, n.max(1))
}

/// `softmax(q k^T / sqrt(d)) v` over `heads` heads of `[B, L, C]` inputs, in slices of queries
/// whose scores fit in the memory budget.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    attention_within(q, k, v, heads, |whole| auto_budget(q.device(), whole))
}

/// [`attention`] with the budget in bytes given by `budget(bytes of the unsliced scores)`.
fn attention_within(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    budget: impl FnOnce(usize) -> usize,
) -> Result<Tensor> {
    let (b, lq, c) = q.dims3()?;
    let lk = k.dim(1)?;
    let d = c / heads;
    let split = |x: &Tensor, l: usize| x.reshape((b, l, heads, d))?.transpose(1, 2)?.contiguous();
    // Scaling the queries costs Lq*d multiplies instead of Lq*Lk on the scores.
    let q = split(&(q * (d as f64).powf(-0.5))?, lq)?;
    let (kt, v) = (split(k, lk)?.t()?, split(v, lk)?);
    // CUDA's softmax accumulates half floats in f32 itself; elsewhere the scores go through f32.
    let native = q.device().is_cuda() || q.dtype() == DType::F32;
    let per_score = 2 * q.dtype().size_in_bytes() + if native { 0 } else { 8 };
    let row_bytes = b * heads * lk * per_score;
    let rows = per_slice(lq, row_bytes, budget(lq * row_bytes));
    let slice = |q: &Tensor| -> Result<Tensor> {
        let scores = q.matmul(&kt)?;
        let probs = if native {
            candle_nn::ops::softmax_last_dim(&scores)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?
        };
        probs.matmul(&v)
    };
    let out = if rows >= lq {
        slice(&q)?
    } else {
        let parts = (0..lq)
            .step_by(rows)
            .map(|r0| slice(&q.narrow(2, r0, rows.min(lq - r0))?.contiguous()?))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 2)?
    };
    out.transpose(1, 2)?.reshape((b, lq, c))
}

/// `conv2d(x, w) + bias` with zero padding, in bands of output rows whose unfolded input fits in
/// the memory budget; by cuDNN on CUDA where built in (the `cudnn` feature, which unfolds
/// nothing) unless `SUMI_KERNELS=candle`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    #[cfg(feature = "cudnn")]
    if x.device().is_cuda() && super::common::cudnn_enabled() {
        let cudnn = || super::cudnn::conv2d(x, w, bias, stride, pad).map(Some);
        if let Some(y) = super::common::CUDNN.try_run(cudnn) {
            return Ok(y);
        }
    }
    conv2d_within(x, w, bias, stride, pad, |whole| {
        auto_budget(x.device(), whole)
    })
}

/// [`conv2d`] with the budget in bytes given by `budget(bytes of the whole unfolded input)`.
fn conv2d_within(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
    budget: impl FnOnce(usize) -> usize,
) -> Result<Tensor> {
    let (b, cin, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let oh = (h + 2 * pad).saturating_sub(k) / stride.max(1) + 1;
    let ow = (wd + 2 * pad).saturating_sub(k) / stride.max(1) + 1;
    let row_bytes = b * ow * cin * k * k * x.dtype().size_in_bytes();
    let rows = per_slice(oh, row_bytes, budget(oh * row_bytes));
    // A 1x1 convolution unfolds to a copy of its input: nothing to save.
    let y = if k == 1 || rows >= oh {
        x.conv2d(w, pad, stride, 1, 1)?
    } else {
        let xp = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
        let bands = (0..oh)
            .step_by(rows)
            .map(|r0| {
                let n = rows.min(oh - r0);
                let band = xp.narrow(2, r0 * stride, (n - 1) * stride + k)?;
                band.contiguous()?.conv2d(w, 0, stride, 1, 1)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&bands, 2)?
    };
    super::common::add_channel_bias(y, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::test_util::max_abs_diff(
            &a.to_dtype(DType::F32).unwrap(),
            &b.to_dtype(DType::F32).unwrap(),
        )
    }

    #[test]
    fn sliced_attention_matches_one_pass() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F16] {
            for &(b, lq, lk, c, heads) in
                &[(2, 130, 130, 40, 8), (2, 64, 77, 80, 2), (1, 7, 3, 12, 3)]
            {
                let rand = |l: usize, s: f64| {
                    Tensor::randn(0f32, s as f32, (b, l, c), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap()
                };
                let (q, k, v) = (rand(lq, 3.0), rand(lk, 1.0), rand(lk, 1.0));
                let whole = attention_within(&q, &k, &v, heads, |_| usize::MAX).unwrap();
                // Budgets of one query row, of a few rows (ragged last slice), of everything.
                for budget in [1, b * heads * lk * 40 * 3, usize::MAX] {
                    let got = attention_within(&q, &k, &v, heads, |_| budget).unwrap();
                    assert_eq!(got.dims(), &[b, lq, c]);
                    let d = max_diff(&got, &whole);
                    // f16 products of a slice are blocked differently from the whole's: outputs
                    // up to ~4 differ by a few f16 steps (0.004 each) on some random draws.
                    let tol = if dtype == DType::F32 { 1e-5 } else { 3e-2 };
                    assert!(
                        d <= tol,
                        "{dtype:?} {:?} budget {budget}: {d}",
                        (b, lq, lk, c)
                    );
                }
                // And the one pass is multi-head attention (written out head by head in f32).
                let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
                let want = reference_attention(&f(&q), &f(&k), &f(&v), heads);
                let d = max_diff(&whole, &want);
                let tol = if dtype == DType::F32 { 1e-5 } else { 2e-2 };
                assert!(
                    d <= tol,
                    "{dtype:?} {:?}: {d} from the f32 kernel",
                    (b, lq, lk, c)
                );
            }
        }
    }

    /// `softmax(q k^T / sqrt(d)) v` one head at a time, the textbook way.
    fn reference_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Tensor {
        let d = q.dim(2).unwrap() / heads;
        let outs: Vec<Tensor> = (0..heads)
            .map(|h| {
                let (qh, kh, vh) = (
                    q.narrow(2, h * d, d).unwrap().contiguous().unwrap(),
                    k.narrow(2, h * d, d).unwrap().contiguous().unwrap(),
                    v.narrow(2, h * d, d).unwrap().contiguous().unwrap(),
                );
                let scores = (qh.matmul(&kh.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
                candle_nn::ops::softmax_last_dim(&scores)
                    .unwrap()
                    .matmul(&vh)
                    .unwrap()
            })
            .collect();
        Tensor::cat(&outs, 2).unwrap()
    }

    #[test]
    fn banded_convolution_matches_one_pass() {
        let dev = Device::Cpu;
        // (batch, cin, cout, h, w, k, stride, pad): 3x3 same, strided downsample, odd sizes.
        for &(b, cin, cout, h, w, k, stride, pad) in &[
            (2, 5, 7, 13, 9, 3, 1, 1),
            (1, 4, 6, 16, 16, 3, 2, 1),
            (1, 3, 2, 11, 6, 3, 2, 0),
            (1, 3, 4, 8, 8, 1, 1, 0),
        ] {
            let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (cout, cin, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let want = x
                .conv2d(&wt, pad, stride, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            let row = b * w * cin * k * k * 4;
            for budget in [1, 2 * row + 1, usize::MAX] {
                let got = conv2d_within(&x, &wt, Some(&bias), stride, pad, |_| budget).unwrap();
                assert_eq!(got.dims(), want.dims(), "{:?}", (h, w, k, stride, pad));
                let d = max_diff(&got, &want);
                assert!(
                    d < 1e-5,
                    "{:?} budget {budget}: {d}",
                    (h, w, k, stride, pad)
                );
            }
        }
    }

    #[test]
    fn slices_follow_the_budget() {
        assert_eq!(per_slice(100, 10, 1000), 100);
        assert_eq!(per_slice(100, 10, 250), 25);
        assert_eq!(per_slice(100, 10, 5), 1);
        assert_eq!(per_slice(0, 10, 5), 1);
        let cpu = &Device::Cpu;
        assert_eq!(auto_budget(cpu, 1000), 1000);
        assert!(auto_budget(cpu, SMALL + 1) <= CAP);
    }
}
