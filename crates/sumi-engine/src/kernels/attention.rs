//! Multi-head scaled dot-product attention for f32 on the CPU, one block of queries at a time.
//!
//! candle's path materialises the scores of every head at once (`[B, heads, Lq, Lk]`: 1 GiB for
//! an SD1.5 UNet at 512x512 with CFG), runs a separate softmax pass with scalar `exp`, and copies
//! the heads in and out of `[B, heads, L, d]`. Here keys and values are rearranged by head once;
//! each (image, head, block of queries) then reads its query columns in place from the `[B, L, C]`
//! projection, walks the keys in blocks with an online softmax (a `[block, keys]` score tile that
//! fits in L2, a vectorised `exp`), and writes its output columns directly.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::bf16_gemm::{gemm_serial, PackedB, PairRows};
use super::bounded;
use super::common::{enabled, with_f32};
use super::math::fast_exp;

/// Queries per task.
const QUERY_BLOCK: usize = 128;

/// Keys per step of the online softmax: the score tile is `QUERY_BLOCK x KEY_BLOCK` floats
/// (256 KiB), small enough to stay in a core's L2 cache between the two products.
const KEY_BLOCK: usize = 512;

/// `softmax(q k^T / sqrt(d)) v` over `heads` heads of `[B, L, C]` inputs; for other devices and
/// dtypes FlashAttention on CUDA where built in (the `flash-attn` feature), else candle's ops in
/// memory-bounded slices ([`bounded::attention`]). With `bf16` (a bf16 model on the CPU) and
/// AVX512-BF16, both products take bf16 operands with f32 sums ([`Bf16Operands`]).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, bf16: bool) -> Result<Tensor> {
    let cpu_f32 =
        matches!(q.device(), Device::Cpu) && [q, k, v].iter().all(|t| t.dtype() == DType::F32);
    if !enabled() || !cpu_f32 {
        #[cfg(feature = "flash-attn")]
        if super::common::flash_enabled() {
            if let Some(out) =
                super::common::FLASH.try_run(|| super::flash::attention(q, k, v, heads))
            {
                return Ok(out);
            }
        }
        return bounded::attention(q, k, v, heads);
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
        // Keys as `[B, heads, Lk, d]` and values as `[B, heads, d, Lk]`: the layouts in which
        // gemm reads them without packing them again for every block of queries.
        let kh = with_f32(&k, |ks| Ok(heads_rows(ks, b, lk, heads, d)))?;
        let vh = with_f32(&v, |vs| Ok(heads_columns(vs, b, lk, heads, d)))?;
        let pairs = (bf16 && super::bf16_gemm::available())
            .then(|| Bf16Operands::new(&kh, &vh, b * heads, lk, d));
        // One task per (image, block of queries); heads run inside it, so each task owns
        // whole rows of the output.
        out.par_chunks_mut(lq * c)
            .enumerate()
            .for_each(|(img, image_out)| {
                image_out
                    .par_chunks_mut(QUERY_BLOCK * c)
                    .enumerate()
                    .for_each(|(blk, dst)| {
                        let rows = dst.len() / c;
                        let q0 = (img * lq + blk * QUERY_BLOCK) * c;
                        let mut buf = Buffers::new(rows, d);
                        for h in 0..heads {
                            let kv0 = (img * heads + h) * lk * d;
                            let tile = Tile {
                                rows,
                                lk,
                                c,
                                d,
                                h,
                                scale,
                            };
                            match &pairs {
                                Some(ops) => {
                                    ops.run(&tile, img * heads + h, &qs[q0..], &mut buf, dst)
                                }
                                None => tile.run(
                                    &qs[q0..],
                                    &kh[kv0..kv0 + lk * d],
                                    &vh[kv0..kv0 + lk * d],
                                    &mut buf,
                                    dst,
                                ),
                            }
                        }
                    });
            });
        Ok(())
    })?;
    Tensor::from_vec(out, (b, lq, c), q.device())
}

/// `[B, L, heads * d]` rearranged as `[B, heads, L, d]`, one (image, head) per task.
fn heads_rows(x: &[f32], b: usize, l: usize, heads: usize, d: usize) -> Vec<f32> {
    let c = heads * d;
    let mut out = vec![0f32; b * l * c];
    out.par_chunks_mut(l * d)
        .enumerate()
        .for_each(|(set, dst)| {
            let (img, h) = (set / heads, set % heads);
            let src = &x[img * l * c..(img + 1) * l * c];
            for (r, row) in dst.chunks_mut(d).enumerate() {
                row.copy_from_slice(&src[r * c + h * d..r * c + h * d + d]);
            }
        });
    out
}

/// Rows of the source a transposing pass reads together: each of their `d` columns is then
/// written as one 64-byte run.
const TRANSPOSE_ROWS: usize = 16;

/// `[B, L, heads * d]` rearranged as `[B, heads, d, L]`, one (image, head) per task, in blocks
/// of rows so that reads and writes both move whole cache lines (a plain scatter went through
/// memory with a stride of `L` floats: 36-48 ms of Flux's 180 ms attention at 512x512).
fn heads_columns(x: &[f32], b: usize, l: usize, heads: usize, d: usize) -> Vec<f32> {
    let c = heads * d;
    let mut out = vec![0f32; b * l * c];
    out.par_chunks_mut(d * l)
        .enumerate()
        .for_each(|(set, dst)| {
            let (img, h) = (set / heads, set % heads);
            let src = &x[img * l * c..(img + 1) * l * c];
            for r0 in (0..l).step_by(TRANSPOSE_ROWS) {
                let r1 = l.min(r0 + TRANSPOSE_ROWS);
                for i in 0..d {
                    let column = &mut dst[i * l + r0..i * l + r1];
                    for (o, r) in column.iter_mut().zip(r0..r1) {
                        *o = src[r * c + h * d + i];
                    }
                }
            }
        });
    out
}

/// Scratch space of one task, reused across heads.
struct Buffers {
    /// Scores, then probabilities, of one block of keys, key-major: `[KEY_BLOCK, rows]`.
    scores: Vec<f32>,
    /// Running maximum score of each query.
    max: Vec<f32>,
    /// Running sum of each query's `exp(score - max)`.
    sum: Vec<f32>,
    /// How much each query's earlier terms shrink when its maximum rises.
    rescale: Vec<f32>,
    /// The head's unnormalised output, column-major `[rows, d]`.
    out: Vec<f32>,
}

impl Buffers {
    fn new(rows: usize, d: usize) -> Self {
        Self {
            scores: vec![0f32; rows * KEY_BLOCK],
            max: vec![0f32; rows],
            sum: vec![0f32; rows],
            rescale: vec![0f32; rows],
            out: vec![0f32; rows * d],
        }
    }
}

/// One head of one block of queries, over blocks of keys with a running (online) softmax, so
/// the score tile stays in the core's own cache.
///
/// Both products are laid out the way gemm's microkernel wants them (column-major output with
/// unit row stride), so the keys and values are not packed again (the score tile is, by gemm's
/// own rule, only when `d` > 48); the softmax runs across queries, eight at a time, for every key.
struct Tile {
    rows: usize,
    lk: usize,
    c: usize,
    d: usize,
    h: usize,
    scale: f32,
}

impl Tile {
    fn run(&self, q: &[f32], k: &[f32], v: &[f32], buf: &mut Buffers, dst: &mut [f32]) {
        let (rows, lk, c, d, col) = (self.rows, self.lk, self.c, self.d, self.h * self.d);
        assert!(q.len() >= (rows - 1) * c + col + d && k.len() >= lk * d && v.len() >= lk * d);
        assert!(dst.len() >= (rows - 1) * c + col + d);
        assert!(buf.scores.len() >= rows * KEY_BLOCK.min(lk) && buf.out.len() >= rows * d);
        assert!(buf.max.len() >= rows && buf.sum.len() >= rows && buf.rescale.len() >= rows);
        let (max, sum) = (&mut buf.max[..rows], &mut buf.sum[..rows]);
        let rescale = &mut buf.rescale[..rows];
        max.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for k0 in (0..lk).step_by(KEY_BLOCK) {
            let keys = KEY_BLOCK.min(lk - k0);
            // SAFETY: the asserts bound every access: q/dst rows are `c` apart with `d` columns
            // from `col`; k is `lk x d` row-major and this block reads its rows k0..k0+keys; v is
            // `d x lk` row-major and this block reads its columns k0..k0+keys; scores holds the
            // column-major `rows x keys` product.
            unsafe {
                // scores [rows, keys] = q_h [rows, d] x k_h^T [d, keys]
                gemm::gemm(
                    rows,
                    keys,
                    d,
                    buf.scores.as_mut_ptr(),
                    rows as isize,
                    1,
                    false,
                    q.as_ptr().add(col),
                    1,
                    c as isize,
                    k.as_ptr().add(k0 * d),
                    d as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let scores = &mut buf.scores[..rows * keys];
            softmax_block(scores, max, sum, rescale, self.scale);
            if k0 > 0 {
                shrink(&mut buf.out, rescale);
            }
            // SAFETY: as above.
            unsafe {
                // out_h [rows, d] (+)= p [rows, keys] x v_h [keys, d], all column-major
                gemm::gemm(
                    rows,
                    d,
                    keys,
                    buf.out.as_mut_ptr(),
                    rows as isize,
                    1,
                    k0 > 0,
                    scores.as_ptr(),
                    rows as isize,
                    1,
                    v.as_ptr().add(k0),
                    lk as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        self.finish(buf, dst);
    }

    /// The head's output columns of `dst`: the unnormalised output over each query's sum.
    fn finish(&self, buf: &Buffers, dst: &mut [f32]) {
        let (rows, c, d, col) = (self.rows, self.c, self.d, self.h * self.d);
        for (r, &s) in buf.sum[..rows].iter().enumerate() {
            let inv = 1.0 / s;
            let row = &mut dst[r * c + col..r * c + col + d];
            for (i, o) in row.iter_mut().enumerate() {
                *o = buf.out[i * rows + r] * inv;
            }
        }
    }
}

/// The earlier output `[d, rows]` shrunk by each query's `rescale` (its maximum rose).
fn shrink(out: &mut [f32], rescale: &[f32]) {
    for column in out.chunks_exact_mut(rescale.len()) {
        for (o, &r) in column.iter_mut().zip(rescale) {
            *o *= r;
        }
    }
}

/// The two products with bf16 operands and f32 sums (`vdpbf16ps`), for bf16 models on CPUs
/// with AVX512-BF16, as PyTorch's bf16 attention computes them: queries, keys, values and the
/// softmax's probabilities rounded to bf16; scores, softmax and sums in f32. Same blocks and
/// online softmax as [`Tile::run`]; the products run transposed so that the key-major score tile
/// comes out directly: `scores^T [keys, rows] = K [keys, d] Q^T [d, rows]` and
/// `out^T [d, rows] += V^T [d, keys] P^T [keys, rows]`.
///
/// Keys and values of every (image, head), rounded to bf16 once per call.
struct Bf16Operands {
    /// `[B * heads * Lk, d]`: each head's keys as rows.
    keys: PairRows<'static>,
    /// `[B * heads * d, Lk]`: each head's values as columns.
    values: PairRows<'static>,
    lk: usize,
    d: usize,
}

impl Bf16Operands {
    /// From keys `[B, heads, Lk, d]` and values `[B, heads, d, Lk]` (`sets` = B * heads).
    fn new(keys: &[f32], values: &[f32], sets: usize, lk: usize, d: usize) -> Self {
        Self {
            keys: PairRows::from_f32(keys, sets * lk, d),
            values: PairRows::from_f32(values, sets * d, lk),
            lk,
            d,
        }
    }

    /// One head (`set` = image * heads + head) of one block of queries: `tile` as
    /// [`Tile::run`] takes it, `q` from the block's first query row.
    fn run(&self, tile: &Tile, set: usize, q: &[f32], buf: &mut Buffers, dst: &mut [f32]) {
        let (rows, lk, d) = (tile.rows, self.lk, self.d);
        assert!(tile.d == d && tile.lk == lk);
        let queries = PackedB::from_transposed_f32(&q[tile.h * d..], rows, d, tile.c);
        let (max, sum) = (&mut buf.max[..rows], &mut buf.sum[..rows]);
        let rescale = &mut buf.rescale[..rows];
        max.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for k0 in (0..lk).step_by(KEY_BLOCK) {
            let keys = KEY_BLOCK.min(lk - k0);
            let scores = &mut buf.scores[..rows * keys];
            let k_rows = self.keys.slice(set * lk + k0, keys, 0, d.div_ceil(2));
            gemm_serial(&k_rows, &queries, scores, rows, false);
            softmax_block(scores, max, sum, rescale, tile.scale);
            if k0 > 0 {
                shrink(&mut buf.out[..rows * d], rescale);
            }
            let probs = PackedB::from_f32(scores, keys, rows, rows);
            let v_cols = self.values.slice(set * d, d, k0, keys.div_ceil(2));
            gemm_serial(&v_cols, &probs, &mut buf.out[..rows * d], rows, k0 > 0);
        }
        tile.finish(buf, dst);
    }
}

/// One block of keys of an online softmax. `scores` is `[keys, rows]` row-major (one column per
/// query). Each query's running `max` rises to cover the block; `rescale` gets
/// `exp((old max - new max) * scale)`, by which `sum` and the earlier output shrink; each score
/// becomes `exp((x - max) * scale)`, and `sum` adds the block's.
fn softmax_block(
    scores: &mut [f32],
    max: &mut [f32],
    sum: &mut [f32],
    rescale: &mut [f32],
    scale: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { softmax_block_avx512(scores, max, sum, rescale, scale) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { softmax_block_avx2(scores, max, sum, rescale, scale) };
    }
    softmax_block_generic(scores, max, sum, rescale, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn softmax_block_avx512(
    scores: &mut [f32],
    max: &mut [f32],
    sum: &mut [f32],
    rescale: &mut [f32],
    scale: f32,
) {
    softmax_block_generic(scores, max, sum, rescale, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_block_avx2(
    scores: &mut [f32],
    max: &mut [f32],
    sum: &mut [f32],
    rescale: &mut [f32],
    scale: f32,
) {
    softmax_block_generic(scores, max, sum, rescale, scale)
}

/// Written so that the compiler vectorises it across queries (no branches, no libm calls).
#[inline(always)]
fn softmax_block_generic(
    scores: &mut [f32],
    max: &mut [f32],
    sum: &mut [f32],
    rescale: &mut [f32],
    scale: f32,
) {
    let rows = max.len();
    rescale.copy_from_slice(max);
    for key in scores.chunks_exact(rows) {
        for (m, &x) in max.iter_mut().zip(key) {
            // not `if x > *m { *m = x }`: that becomes masked stores, which are slow on AMD
            *m = m.max(x);
        }
    }
    for ((r, s), &m) in rescale.iter_mut().zip(sum.iter_mut()).zip(max.iter()) {
        // the first block: old max -inf, sum 0 (and no earlier output)
        *r = if *r == f32::NEG_INFINITY {
            0.0
        } else {
            fast_exp((*r - m) * scale)
        };
        *s *= *r;
    }
    for key in scores.chunks_exact_mut(rows) {
        for ((x, &m), s) in key.iter_mut().zip(max.iter()).zip(sum.iter_mut()) {
            let e = fast_exp((*x - m) * scale);
            *x = e;
            *s += e;
        }
    }
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
            (1, 300, 260, 160, 2),
            // several key blocks, the last one ragged: the online softmax's rescaling
            (2, 150, 1100, 64, 2),
        ] {
            let q = Tensor::randn(0f32, 3.0, (b, lq, c), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, lk, c), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, lk, c), &dev).unwrap();
            let got = attention(&q, &k, &v, heads, false).unwrap();
            let want = reference(&q, &k, &v, heads);
            let d = crate::test_util::max_abs_diff(&got, &want);
            // Random inputs: sums over 1100 keys in another order reach 1e-5 now and then.
            assert!(d < 3e-5, "{:?}: max diff {d}", (b, lq, lk, c, heads));
        }
    }

    #[test]
    fn bf16_operands_match_attention_of_the_rounded_inputs() {
        if !super::super::bf16_gemm::available() {
            eprintln!("skipped: no AVX512-BF16 kernel on this CPU");
            return;
        }
        let dev = Device::Cpu;
        // Odd head size and key count (padded pairs), several key blocks, ragged query blocks.
        for &(b, lq, lk, c, heads) in &[
            (2, 130, 130, 40, 8),
            (1, 7, 3, 12, 3),
            (1, 150, 1101, 42, 2),
            (2, 64, 77, 90, 2),
        ] {
            let q = Tensor::randn(0f32, 1.0, (b, lq, c), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, lk, c), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, lk, c), &dev).unwrap();
            let got = attention(&q, &k, &v, heads, true).unwrap();
            let want = reference(
                &crate::test_util::round_bf16(&q),
                &crate::test_util::round_bf16(&k),
                &crate::test_util::round_bf16(&v),
                heads,
            );
            let full = reference(&q, &k, &v, heads);
            let d = crate::test_util::max_abs_diff(&got, &want);
            // Only the probabilities' rounding to bf16 (8 bits) differs from the reference.
            assert!(d < 1e-2, "{:?}: max diff {d}", (b, lq, lk, c, heads));
            let d_full = crate::test_util::max_abs_diff(&got, &full);
            assert!(
                d_full < 3e-2,
                "{:?}: {d_full} from f32",
                (b, lq, lk, c, heads)
            );
            assert!(d_full > 0.0, "bf16 operands should round");
        }
    }
}
