//! The two products of [`super::attention`] with bf16 operands and f32 sums (`vdpbf16ps`), for
//! bf16 models on CPUs with AVX512-BF16, as PyTorch's bf16 attention computes them: queries,
//! keys, values and the softmax's probabilities rounded to bf16, scores, softmax and sums in f32.
//!
//! Same blocks and online softmax as the f32 path; the products run transposed so that the
//! key-major score tile the softmax wants comes out directly:
//! `scores^T [keys, rows] = K [keys, d] Q^T [d, rows]` and
//! `out^T [d, rows] += V^T [d, keys] P^T [keys, rows]`.

use super::attention::{shrink, softmax_block, Buffers, Tile, KEY_BLOCK};
use super::bf16_gemm::{gemm_serial, PackedB, PairRows};

/// Keys and values of every (image, head), rounded to bf16 once per call.
pub(super) struct Operands {
    /// `[B * heads * Lk, d]`: each head's keys as rows.
    keys: PairRows<'static>,
    /// `[B * heads * d, Lk]`: each head's values as columns.
    values: PairRows<'static>,
    lk: usize,
    d: usize,
}

impl Operands {
    /// From keys `[B, heads, Lk, d]` and values `[B, heads, d, Lk]` (`sets` = B * heads).
    pub(super) fn new(keys: &[f32], values: &[f32], sets: usize, lk: usize, d: usize) -> Self {
        Self {
            keys: PairRows::from_f32(keys, sets * lk, d),
            values: PairRows::from_f32(values, sets * d, lk),
            lk,
            d,
        }
    }

    /// One head (`set` = image * heads + head) of one block of queries: `tile` as
    /// [`Tile::run`] takes it, `q` from the block's first query row.
    pub(super) fn run(
        &self,
        tile: &Tile,
        set: usize,
        q: &[f32],
        buf: &mut Buffers,
        dst: &mut [f32],
    ) {
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
