//! Matrix products with bf16 operands and f32 accumulation, for weights stored in bf16 on the
//! CPU (`--dtype bf16`).
//!
//! Where the CPU has AVX512-BF16, `vdpbf16ps` multiplies pairs of bf16 values along `k` and adds
//! both products to an f32 lane, so both operands are laid out as pairs: the left one as rows of
//! `k` bf16 values (a pair is one 32-bit word, broadcast to every lane), the right one packed in
//! panels of [`NR`] columns, each `k` pair of a column one word. The activations are rounded to
//! bf16 (nearest, ties to even) when they are packed, as PyTorch does for a bf16 model; sums stay
//! in f32. A tile of [`MR`] x [`NR`] results lives in 24 registers for the whole `k`.
//!
//! Elsewhere the caller widens the bf16 weights to f32 and runs the f32 kernels ([`widen`]), so a
//! bf16 model computes the same everywhere up to f32 rounding and keeps half the weight memory.

use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

use super::tiles::SharedMut;

/// Result columns per packed panel (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// Result rows per register tile.
const MR: usize = 12;
/// Result rows one task computes against one packed panel (the panel stays in cache meanwhile).
const MC: usize = 10 * MR;

/// Whether bf16 products run through `vdpbf16ps` (decided once per process).
///
/// Only on AMD CPUs with AVX512-BF16 (Zen 4 and later), where one `vdpbf16ps` does twice the
/// work of an f32 FMA per cycle. On Intel's (Sapphire Rapids and later) it issues at half the
/// rate: measured on a 2-core Xeon (`examples/bf16_shapes.rs`), it reached 49-71 GFLOP/s where
/// the f32 kernels reached 65-117, so there the weights are widened to f32 instead.
/// `SUMI_BF16_KERNEL=1` or `=0` overrides the choice (when the CPU has the instruction).
pub(crate) fn available() -> bool {
    static USE: OnceLock<bool> = OnceLock::new();
    *USE.get_or_init(|| {
        let has = has_instruction();
        match std::env::var("SUMI_BF16_KERNEL").as_deref() {
            Ok("0") => false,
            Ok("1") => has,
            _ => has && is_amd(),
        }
    })
}

/// Whether this CPU has `vdpbf16ps` (AVX512-BF16), which [`gemm`] needs.
pub(crate) fn has_instruction() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn is_amd() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn is_amd() -> bool {
    let r = std::arch::x86_64::__cpuid(0);
    let vendor: Vec<u8> = [r.ebx, r.edx, r.ecx]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vendor == b"AuthenticAMD"
}

/// `bf16` values as f32, in parallel for large slices.
pub(crate) fn widen(src: &[bf16]) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(d, s)| {
            for (d, s) in d.iter_mut().zip(s) {
                *d = s.to_f32();
            }
        });
    out
}

/// The left operand: `m` rows of `k` bf16 values, `ld` apart (`ld` even, the pad after `k`
/// zero when `k` is odd), read as `pairs` pairs per row (`ld / 2` unless sliced).
pub(crate) struct PairRows<'a> {
    data: std::borrow::Cow<'a, [bf16]>,
    rows: usize,
    ld: usize,
    pairs: usize,
}

impl<'a> PairRows<'a> {
    /// `m x k` f32 values (row-major) rounded to bf16.
    pub(crate) fn from_f32(a: &[f32], m: usize, k: usize) -> PairRows<'static> {
        let ld = k + k % 2;
        let mut data = vec![bf16::ZERO; m * ld];
        data.par_chunks_mut(ld)
            .zip(a.par_chunks(k))
            .for_each(|(d, s)| round_into(s, &mut d[..k]));
        PairRows {
            data: data.into(),
            rows: m,
            ld,
            pairs: ld / 2,
        }
    }

    /// Rows `row0..row0 + rows`, pairs from column `col0` (even) on, `pairs` of them.
    pub(crate) fn slice(
        &self,
        row0: usize,
        rows: usize,
        col0: usize,
        pairs: usize,
    ) -> PairRows<'_> {
        assert!(col0.is_multiple_of(2) && col0 + 2 * pairs <= self.ld && row0 + rows <= self.rows);
        PairRows {
            data: self.data[row0 * self.ld + col0..].into(),
            rows,
            ld: self.ld,
            pairs,
        }
    }

    /// `m x k` bf16 values (row-major), borrowed when `k` is even.
    pub(crate) fn from_bf16(a: &'a [bf16], m: usize, k: usize) -> Self {
        if k.is_multiple_of(2) {
            return PairRows {
                data: a[..m * k].into(),
                rows: m,
                ld: k,
                pairs: k / 2,
            };
        }
        let ld = k + 1;
        let mut data = vec![bf16::ZERO; m * ld];
        for (d, s) in data.chunks_mut(ld).zip(a.chunks(k)) {
            d[..k].copy_from_slice(s);
        }
        PairRows {
            data: data.into(),
            rows: m,
            ld,
            pairs: ld / 2,
        }
    }
}

/// The right operand `[k, n]` packed in panels of [`NR`] columns: panel `j` holds, for each pair
/// `p` of `k`, the words `(b[2p][c], b[2p+1][c])` of its columns `c` (zero past `k` and `n`).
pub(crate) struct PackedB {
    words: Vec<u32>,
    n: usize,
    pairs: usize,
}

fn word(lo: bf16, hi: bf16) -> u32 {
    lo.to_bits() as u32 | (hi.to_bits() as u32) << 16
}

impl PackedB {
    fn zeroed(k: usize, n: usize) -> Self {
        let pairs = k.div_ceil(2);
        PackedB {
            words: vec![0; n.div_ceil(NR) * pairs * NR],
            n,
            pairs,
        }
    }

    /// `b = w^T` for a bf16 `w` of `n` rows of `k` (a linear layer's `[out, in]` weight).
    pub(crate) fn from_transposed_bf16(w: &[bf16], n: usize, k: usize) -> Self {
        let mut packed = Self::zeroed(k, n);
        let pairs = packed.pairs;
        packed
            .words
            .par_chunks_mut(pairs * NR)
            .enumerate()
            .for_each(|(j, panel)| weight_panel(w, n, k, j, panel));
        packed
    }

    /// `b = x^T` for f32 `x` of `n` rows of `k`, `ld` apart, rounded to bf16 (attention's
    /// queries, read in place from the `[L, C]` projection).
    pub(crate) fn from_transposed_f32(x: &[f32], n: usize, k: usize, ld: usize) -> Self {
        let mut packed = Self::zeroed(k, n);
        let pairs = packed.pairs;
        let mut row = vec![bf16::ZERO; 2 * pairs];
        for (j, panel) in packed.words.chunks_mut(pairs * NR).enumerate() {
            for c in 0..NR.min(n - j * NR) {
                let r0 = (j * NR + c) * ld;
                round_into(&x[r0..r0 + k], &mut row[..k]);
                for p in 0..pairs {
                    panel[p * NR + c] = word(row[2 * p], row[2 * p + 1]);
                }
            }
        }
        packed
    }

    /// `b` given as f32 rows `[k, n]`, `ld` apart, rounded to bf16 (convolution patches,
    /// attention's probabilities); panels in parallel when there is enough to share.
    pub(crate) fn from_f32(b: &[f32], k: usize, n: usize, ld: usize) -> Self {
        let mut packed = Self::zeroed(k, n);
        let pairs = packed.pairs;
        let pack = |(j, panel): (usize, &mut [u32])| {
            let c0 = j * NR;
            let cols = NR.min(n - c0);
            let mut lo = [bf16::ZERO; NR];
            let mut hi = [bf16::ZERO; NR];
            for p in 0..pairs {
                let (r0, r1) = (2 * p * ld + c0, (2 * p + 1) * ld + c0);
                #[cfg(target_arch = "x86_64")]
                if cols == NR && 2 * p + 1 < k && has_instruction() {
                    // SAFETY: the CPU has AVX512-BF16; both rows have NR values from r0 and
                    // r1 (cols == NR), and the panel NR words from p * NR.
                    unsafe {
                        x86::pair_words(&b[r0..r0 + NR], &b[r1..r1 + NR], &mut panel[p * NR..])
                    };
                    continue;
                }
                round_into(&b[r0..r0 + cols], &mut lo[..cols]);
                if 2 * p + 1 < k {
                    round_into(&b[r1..r1 + cols], &mut hi[..cols]);
                } else {
                    hi.fill(bf16::ZERO);
                }
                for c in 0..cols {
                    panel[p * NR + c] = word(lo[c], hi[c]);
                }
            }
        };
        if k * n >= 1 << 18 {
            packed
                .words
                .par_chunks_mut(pairs * NR)
                .enumerate()
                .for_each(pack);
        } else {
            packed
                .words
                .chunks_mut(pairs * NR)
                .enumerate()
                .for_each(pack);
        }
        packed
    }
}

/// Panel `j` of `w^T` for a bf16 `w` of `n` rows of `k`: for each pair `p` of `k`, the words
/// `(w[c][2p], w[c][2p+1])` of its columns `c`; zero past `k` and `n`.
fn weight_panel(w: &[bf16], n: usize, k: usize, j: usize, panel: &mut [u32]) {
    let pairs = k.div_ceil(2);
    let cols = NR.min(n - j * NR);
    if cols < NR {
        panel.fill(0);
    }
    for c in 0..cols {
        let row = &w[(j * NR + c) * k..(j * NR + c + 1) * k];
        let whole = k / 2;
        let words = row.as_ptr().cast::<u32>();
        for p in 0..whole {
            // SAFETY: pair p is row[2p..2p+2], inside the row; read unaligned as one little-endian
            // word, which is `word(row[2p], row[2p+1])`.
            panel[p * NR + c] = u32::from_le(unsafe { words.add(p).read_unaligned() });
        }
        if whole < pairs {
            panel[whole * NR + c] = word(row[2 * whole], bf16::ZERO);
        }
    }
}

/// `dst[i] = bf16(src[i])`, rounded to nearest with ties to even.
pub(crate) fn round_into(src: &[f32], dst: &mut [bf16]) {
    #[cfg(target_arch = "x86_64")]
    if has_instruction() {
        // SAFETY: the CPU has AVX512F and AVX512-BF16.
        unsafe { x86::round_into(src, dst) };
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16::from_f32(*s);
    }
}

/// What each result of a product starts from before its sum over `k` is added.
#[derive(Clone, Copy)]
pub(crate) enum Start<'a> {
    Zero,
    /// The value already in `c`.
    Old,
    /// `bias[j]` for column `j` (added as the tile is stored, not written ahead).
    Bias(&'a [f32]),
}

impl Start<'_> {
    fn from_old(accumulate: bool) -> Self {
        if accumulate {
            Start::Old
        } else {
            Start::Zero
        }
    }
}

/// `c[i][j] (row stride ldc) = sum_k a[i][k] b[k][j]`, plus the old `c` when `accumulate`,
/// on all compute threads. Needs [`has_instruction`].
pub(crate) fn gemm(a: &PairRows, b: &PackedB, c: &mut [f32], ldc: usize, accumulate: bool) {
    product(a, b, c, ldc, Start::from_old(accumulate), true)
}

/// [`gemm`] on the calling thread only (for callers that are parallel tasks themselves).
pub(crate) fn gemm_serial(a: &PairRows, b: &PackedB, c: &mut [f32], ldc: usize, accumulate: bool) {
    product(a, b, c, ldc, Start::from_old(accumulate), false)
}

/// [`gemm`] starting from `start`.
pub(crate) fn gemm_from(a: &PairRows, b: &PackedB, c: &mut [f32], ldc: usize, start: Start) {
    product(a, b, c, ldc, start, true)
}

fn product(a: &PairRows, b: &PackedB, c: &mut [f32], ldc: usize, start: Start, par: bool) {
    let m = a.rows;
    check(a, b.pairs, b.n, c, ldc, start);
    let panels = b.n.div_ceil(NR);
    let blocks = m.div_ceil(MC);
    let out = SharedMut(c.as_mut_ptr());
    let task = |t: usize| {
        let (j, blk) = (t % panels, t / panels);
        let panel = &b.words[j * b.pairs * NR..(j + 1) * b.pairs * NR];
        // SAFETY: `check` bounds `c`; no other task writes this (row block, panel) pair.
        unsafe {
            panel_rows(
                a,
                panel,
                j,
                b.n,
                blk * MC..m.min((blk + 1) * MC),
                out,
                ldc,
                start,
            )
        };
    };
    let tasks = panels * blocks;
    if par && candle_core::utils::get_num_threads() > 1 && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// `c (row stride ldc) = start + a w^T` for a bf16 weight `w` of
/// `n` rows of `k` (a linear layer's `[out, in]`), on all compute threads. Each task packs one
/// panel of `w^T` into a buffer of its own, which stays in the core's cache while every row of
/// `a` meets it: the weight is read once, and no packed copy of it is written to memory.
/// Needs [`has_instruction`].
pub(crate) fn gemm_weight(
    a: &PairRows,
    w: &[bf16],
    n: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
    start: Start,
) {
    let pairs = k.div_ceil(2);
    assert_eq!(w.len(), n * k, "bf16 gemm: weight is not [{n}, {k}]");
    check(a, pairs, n, c, ldc, start);
    let out = SharedMut(c.as_mut_ptr());
    let m = a.rows;
    let task = |panel: &mut Vec<u32>, j: usize| {
        weight_panel(w, n, k, j, panel);
        // SAFETY: `check` bounds `c`; no other task writes panel `j`'s columns.
        unsafe { panel_rows(a, panel, j, n, 0..m, out, ldc, start) };
    };
    let panels = n.div_ceil(NR);
    let buffer = || vec![0u32; pairs * NR];
    if candle_core::utils::get_num_threads() > 1 && panels > 1 {
        (0..panels).into_par_iter().for_each_init(buffer, task);
    } else {
        let mut panel = buffer();
        (0..panels).for_each(|j| task(&mut panel, j));
    }
}

/// The asserts every product makes: the instruction, matching inner sizes, `a`'s rows, `c`
/// and the bias large enough.
fn check(a: &PairRows, pairs: usize, n: usize, c: &[f32], ldc: usize, start: Start) {
    let m = a.rows;
    if let Start::Bias(bias) = start {
        assert!(
            bias.len() >= n,
            "bf16 gemm: {} biases for {n} columns",
            bias.len()
        );
    }
    assert!(has_instruction(), "bf16 gemm without AVX512-BF16");
    assert_eq!(a.pairs, pairs, "bf16 gemm: inner sizes differ");
    assert!(m == 0 || a.data.len() >= (m - 1) * a.ld + 2 * a.pairs);
    assert!(n <= ldc && (m == 0 || c.len() >= (m - 1) * ldc + n));
}

/// Rows `rows` of `a` against panel `j` (of `n` columns in all), into `c`.
///
/// # Safety
/// `c` must hold `rows.end` rows of `ldc` (>= `n`) values, `panel` `a.pairs * NR` words, the
/// CPU must have AVX512-BF16, and no other thread may write these rows of panel `j`'s columns.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_rows(
    a: &PairRows,
    panel: &[u32],
    j: usize,
    n: usize,
    rows: std::ops::Range<usize>,
    c: SharedMut,
    ldc: usize,
    start: Start,
) {
    debug_assert!(panel.len() >= a.pairs * NR);
    let cols = NR.min(n - j * NR);
    let bias = match start {
        Start::Bias(b) => b[j * NR..].as_ptr(),
        _ => std::ptr::null(),
    };
    let mut i0 = rows.start;
    while i0 < rows.end {
        let tile_rows = MR.min(rows.end - i0);
        let a_rows: [*const bf16; MR] =
            std::array::from_fn(|r| a.data[(i0 + r.min(tile_rows - 1)) * a.ld..].as_ptr());
        // SAFETY: by the caller's contract; each row pointer has `a.pairs` words from it.
        #[cfg(target_arch = "x86_64")]
        x86::tile(
            a.pairs,
            &a_rows,
            panel.as_ptr(),
            c.get().add(i0 * ldc + j * NR),
            ldc,
            tile_rows,
            cols,
            matches!(start, Start::Old),
            bias,
        );
        i0 += MR;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::{MR, NR};

    #[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
    pub(super) unsafe fn round_into(src: &[f32], dst: &mut [bf16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 16 <= n {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
            i += 16;
        }
        for j in i..n {
            dst[j] = bf16::from_f32(src[j]);
        }
    }

    /// `NR` words `bf16(lo[c]) | bf16(hi[c]) << 16`.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
    pub(super) unsafe fn pair_words(lo: &[f32], hi: &[f32], dst: &mut [u32]) {
        assert!(lo.len() >= NR && hi.len() >= NR && dst.len() >= NR);
        for h in 0..NR / 16 {
            let l: __m256i =
                std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(lo.as_ptr().add(16 * h))));
            let u: __m256i =
                std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(hi.as_ptr().add(16 * h))));
            let w = _mm512_or_si512(
                _mm512_cvtepu16_epi32(l),
                _mm512_slli_epi32(_mm512_cvtepu16_epi32(u), 16),
            );
            _mm512_storeu_si512(dst.as_mut_ptr().add(16 * h) as *mut _, w);
        }
    }

    /// One `MR x NR` tile over all `pairs`; stores `rows x cols` of it, plus the old values
    /// when `accumulate`, plus `bias[0..cols]` when `bias` is not null.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        pairs: usize,
        a: &[*const bf16; MR],
        panel: *const u32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
        bias: *const f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for p in 0..pairs {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(panel.add(p * NR) as _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(panel.add(p * NR + 16) as _));
            for r in 0..MR {
                let w = (a[r].add(2 * p) as *const i32).read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(w));
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
            }
        }
        let m0: __mmask16 = if cols >= 16 { 0xffff } else { (1 << cols) - 1 };
        let m1: __mmask16 = if cols >= 32 {
            0xffff
        } else if cols > 16 {
            (1 << (cols - 16)) - 1
        } else {
            0
        };
        let biases = if bias.is_null() {
            [_mm512_setzero_ps(); 2]
        } else {
            [
                _mm512_maskz_loadu_ps(m0, bias),
                _mm512_maskz_loadu_ps(m1, bias.add(16)),
            ]
        };
        for (r, acc) in acc.iter().enumerate().take(rows) {
            let row = c.add(r * ldc);
            for (h, (mask, v)) in [(m0, acc[0]), (m1, acc[1])].into_iter().enumerate() {
                let dst = row.add(16 * h);
                let v = if accumulate {
                    _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst))
                } else {
                    v
                };
                _mm512_mask_storeu_ps(dst, mask, _mm512_add_ps(v, biases[h]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The product of the bf16-rounded operands in f64.
    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let r = |x: f32| bf16::from_f32(x).to_f32() as f64;
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| r(a[i * k + p]) * r(b[p * n + j]))
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn products_match_the_rounded_operands_at_every_edge_size() {
        if !has_instruction() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (25, 64, 31),
            (130, 77, 70),
            (3, 320, 96),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let want = reference(&a, &b, m, k, n);
            // b as f32 [k, n] rows, and as the bf16 rows of its transpose.
            let bt: Vec<bf16> = (0..n * k)
                .map(|i| bf16::from_f32(b[(i % k) * n + i / k]))
                .collect();
            for way in 0..3 {
                let mut c = vec![0.5f32; m * (n + 3)];
                let rows = PairRows::from_f32(&a, m, k);
                match way {
                    0 => gemm(&rows, &PackedB::from_f32(&b, k, n, n), &mut c, n + 3, true),
                    1 => {
                        let packed = PackedB::from_transposed_bf16(&bt, n, k);
                        gemm(&rows, &packed, &mut c, n + 3, true)
                    }
                    _ => gemm_weight(&rows, &bt, n, k, &mut c, n + 3, Start::Old),
                }
                for i in 0..m {
                    for j in 0..n {
                        let got = c[i * (n + 3) + j] - 0.5;
                        let w = want[i * n + j];
                        assert!(
                            (got - w).abs() < 1e-4 * (1.0 + w.abs()),
                            "{m}x{k}x{n} [{i},{j}]"
                        );
                    }
                    assert_eq!(c[i * (n + 3) + n], 0.5, "wrote past the columns");
                }
            }
            let ab: Vec<bf16> = a.iter().map(|&x| bf16::from_f32(x)).collect();
            let mut c = vec![0f32; m * n];
            gemm(
                &PairRows::from_bf16(&ab, m, k),
                &PackedB::from_f32(&b, k, n, n),
                &mut c,
                n,
                false,
            );
            for (g, w) in c.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4 * (1.0 + w.abs()));
            }
        }
    }

    #[test]
    fn rounding_is_to_nearest_even_like_half() {
        let src: Vec<f32> = values(1000, 9)
            .into_iter()
            .chain([1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, f32::MAX, -0.0])
            .collect();
        let mut got = vec![bf16::ZERO; src.len()];
        round_into(&src, &mut got);
        for (g, s) in got.iter().zip(&src) {
            assert_eq!(g.to_bits(), bf16::from_f32(*s).to_bits(), "{s}");
        }
    }
}
