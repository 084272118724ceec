//! 2D convolution (NCHW, square kernel, no dilation, one group) for f32 on the CPU.
//!
//! For each image and each band of output rows, the input patches are unfolded into a
//! `[Cin*kh*kw, band]` matrix whose rows are contiguous runs of the input (plain copies for
//! stride 1), and one `gemm` computes `weight[Cout, Cin*kh*kw] x patches` directly into the
//! band's columns of the `[Cout, H*W]` output, on top of the bias. Compared with candle 0.11's
//! tiled im2col this avoids the NHWC transpose of the input, the per-pixel scattered patch
//! writes and the strided copy of every result into the output.
//!
//! 3x3 stride-1 convolutions with many channels over large enough images go through Winograd
//! F(2x2,3x3) instead: 16 multiplications per 2x2 output tile and channel pair instead of 36.

use std::sync::OnceLock;

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::bf16_gemm::{self, PackedB, PairRows};
use super::common::{enabled, parallelism, with_bf16, with_f32};
use super::tiles::{Band, SharedMut};
use super::{bounded, winograd4};

/// Most floats in one unfolded band (16 MiB); a band always holds at least one output row.
const BAND_FLOATS: usize = 4 << 20;

/// `conv2d(x, w) + bias` with the given stride and zero padding; candle's op in memory-bounded
/// bands ([`bounded::conv2d`]) when the inputs are not f32 on the CPU.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    conv2d_with(x, w, bias, stride, pad, bf16_gemm::available())
}

/// [`conv2d`], with bf16 weights through [`bf16_gemm`] when `bf16_kernel` (else widened).
fn conv2d_with(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
    bf16_kernel: bool,
) -> Result<Tensor> {
    let cpu_f32 = matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32;
    let (cout, cin_w, kh, kw) = w.dims4()?;
    if cpu_f32 && w.dtype() == DType::BF16 && !(bf16_kernel && bf16_im2col(x, w, stride, pad)?) {
        // Winograd transforms the weights in f32 anyway, and without AVX512-BF16 the products
        // are f32: the weights are widened for this call only.
        let wide = with_bf16(&w.contiguous()?, |ws| Ok(bf16_gemm::widen(ws)))?;
        let wide = Tensor::from_vec(wide, w.dims(), w.device())?;
        return conv2d(x, &wide, bias, stride, pad);
    }
    let weight_ok = matches!(w.dtype(), DType::F32 | DType::BF16);
    if !enabled() || !cpu_f32 || !weight_ok || kh != kw || stride == 0 {
        return bounded::conv2d(x, w, bias, stride, pad);
    }
    let (b, cin, h, wd) = x.dims4()?;
    if cin != cin_w {
        candle_core::bail!("conv2d: input has {cin} channels, weight expects {cin_w}");
    }
    if h + 2 * pad < kh || wd + 2 * pad < kw {
        candle_core::bail!("conv2d: input {h}x{wd} smaller than kernel {kh}x{kw}");
    }
    let oh = (h + 2 * pad - kh) / stride + 1;
    let ow = (wd + 2 * pad - kw) / stride + 1;
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let bias = bias.map(|t| t.contiguous()).transpose()?;
    let mut out = vec![0f32; b * cout * oh * ow];
    with_f32(&x, |xs| {
        with_weights(&w, |ws| {
            let bias_vals = match &bias {
                Some(t) => Some(with_f32(t, |v| Ok(v.to_vec()))?),
                None => None,
            };
            let geo = Geometry {
                cin,
                h,
                w: wd,
                k: kh,
                stride,
                pad,
                oh,
                ow,
            };
            if let (Some(tiling), Weights::F32(ws)) = (winograd_tiling(b, &geo, cout), &ws) {
                // Transformed per call, not kept: a cache would hold 16/9 of every 3x3 weight
                // (3.8 GiB more for SD1.5) for a transform that costs ~1% of the convolution.
                with_winograd_weights(ws, cout, cin, tiling, |u| {
                    winograd(xs, b, &geo, u, bias_vals.as_deref(), cout, &mut out, tiling)
                });
                return Ok(());
            }
            for (img, dst) in out.chunks_mut(cout * oh * ow).enumerate() {
                let src = &xs[img * cin * h * wd..(img + 1) * cin * h * wd];
                conv_image(src, &ws, bias_vals.as_deref(), cout, &geo, dst);
            }
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (b, cout, oh, ow), x.device())
}

/// Sizes of one convolution.
struct Geometry {
    cin: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

/// Whether a bf16 weight can run as it is, through im2col and [`bf16_gemm`]: where Winograd
/// does not apply, or the image is small enough that `vdpbf16ps` at twice the f32 rate beats
/// Winograd's fewer f32 products (`examples/conv_shapes --bf16` on a Zen 4 core: at 32x32 with
/// batch 2, 190 against 140-170 direct-equivalent GFLOP/s; even at 64x64; Winograd ahead from
/// 128x128, 260 against 185).
fn bf16_im2col(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<bool> {
    let (cout, cin, kh, kw) = w.dims4()?;
    let (b, _, h, wd) = x.dims4()?;
    if !enabled() || kh != kw || stride == 0 {
        return Ok(false);
    }
    let geo = Geometry {
        cin,
        h,
        w: wd,
        k: kh,
        stride,
        pad,
        oh: 0,
        ow: 0,
    };
    Ok(winograd_tiling(b, &geo, cout).is_none() || b * h * wd < BF16_WINOGRAD_MIN_PIXELS)
}

/// Images (batch times pixels) below this size run bf16 weights through im2col even where
/// Winograd applies (see [`bf16_im2col`]).
const BF16_WINOGRAD_MIN_PIXELS: usize = 128 * 128;

/// A convolution's `[Cout, Cin*k*k]` weight matrix as the products take it.
enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(PairRows<'a>),
}

/// Runs `f` on the weights of a contiguous f32 or bf16 `[Cout, Cin, k, k]` tensor.
fn with_weights<R>(w: &Tensor, f: impl FnOnce(Weights) -> Result<R>) -> Result<R> {
    let (cout, cin, kh, kw) = w.dims4()?;
    match w.dtype() {
        DType::BF16 => with_bf16(w, |ws| {
            f(Weights::Bf16(PairRows::from_bf16(ws, cout, cin * kh * kw)))
        }),
        _ => with_f32(w, |ws| f(Weights::F32(ws))),
    }
}

/// One image: `src` is `[Cin, H, W]`, `dst` is `[Cout, OH*OW]`.
fn conv_image(
    src: &[f32],
    ws: &Weights,
    bias: Option<&[f32]>,
    cout: usize,
    g: &Geometry,
    dst: &mut [f32],
) {
    let plane = g.oh * g.ow;
    if let Some(bias) = bias {
        for (row, &b) in dst.chunks_mut(plane).zip(bias) {
            row.fill(b);
        }
    }
    let kdim = g.cin * g.k * g.k;
    let pointwise = g.k == 1 && g.stride == 1 && g.pad == 0;
    if pointwise {
        // The input already is the `[Cin, H*W]` patch matrix.
        gemm_into(
            dst,
            plane,
            0,
            plane,
            ws,
            src,
            kdim,
            plane,
            cout,
            bias.is_some(),
            parallelism(),
        );
        return;
    }
    let rows_per_band = (BAND_FLOATS / (kdim * g.ow)).clamp(1, g.oh);
    let mut cols = vec![0f32; kdim * rows_per_band * g.ow];
    let mut oy0 = 0;
    while oy0 < g.oh {
        let rows = rows_per_band.min(g.oh - oy0);
        let n = rows * g.ow;
        unfold(src, g, oy0, rows, &mut cols[..kdim * n]);
        gemm_into(
            dst,
            plane,
            oy0 * g.ow,
            n,
            ws,
            &cols[..kdim * n],
            kdim,
            n,
            cout,
            bias.is_some(),
            parallelism(),
        );
        oy0 += rows;
    }
}

/// Writes the patches of output rows `oy0..oy0+rows` into `cols` (`[Cin*k*k, rows*OW]`).
fn unfold(src: &[f32], g: &Geometry, oy0: usize, rows: usize, cols: &mut [f32]) {
    let n = rows * g.ow;
    for c in 0..g.cin {
        let chan = &src[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let r = (c * g.k + ky) * g.k + kx;
                let out_row = &mut cols[r * n..(r + 1) * n];
                // Output columns whose input column ox*stride + kx - pad lies inside [0, W).
                let first = g.pad.saturating_sub(kx).div_ceil(g.stride).min(g.ow);
                let end = if g.w + g.pad > kx {
                    ((g.w + g.pad - kx - 1) / g.stride + 1).min(g.ow)
                } else {
                    0
                }
                .max(first);
                for (i, seg) in out_row.chunks_mut(g.ow).enumerate() {
                    let iy = ((oy0 + i) * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        seg.fill(0.0);
                        continue;
                    }
                    let line = &chan[iy as usize * g.w..(iy as usize + 1) * g.w];
                    seg[..first].fill(0.0);
                    seg[end..].fill(0.0);
                    let x0 = first * g.stride + kx - g.pad;
                    if g.stride == 1 {
                        seg[first..end].copy_from_slice(&line[x0..x0 + (end - first)]);
                    } else {
                        for (j, d) in seg[first..end].iter_mut().enumerate() {
                            *d = line[x0 + j * g.stride];
                        }
                    }
                }
            }
        }
    }
}

/// `dst[:, col0..col0+n] (row stride ld) (+)= lhs[m, k] x rhs[k, n] (row stride ldr)`.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    dst: &mut [f32],
    ld: usize,
    col0: usize,
    n: usize,
    lhs: &Weights,
    rhs: &[f32],
    k: usize,
    ldr: usize,
    m: usize,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    let lhs = match lhs {
        Weights::F32(lhs) => lhs,
        Weights::Bf16(a) => {
            let b = PackedB::from_f32(rhs, k, n, ldr);
            bf16_gemm::gemm(a, &b, &mut dst[col0..], ld, accumulate);
            return;
        }
    };
    assert!(lhs.len() >= m * k && rhs.len() >= (k - 1) * ldr + n);
    assert!(m == 0 || dst.len() >= (m - 1) * ld + col0 + n);
    // SAFETY: the asserts above keep every element gemm touches inside the three slices: dst
    // rows are `ld` apart with `n` columns from `col0`, lhs is `m x k` row-major and rhs is
    // `k x n` with rows `ldr` apart. dst is borrowed mutably, so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(col0),
            1,
            ld as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            ldr as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Set to `0` to run 3x3 stride-1 convolutions through im2col instead of Winograd, `2` to use
/// F(2x2, 3x3) only (A/B switches).
const WINOGRAD_ENV: &str = "SUMI_WINOGRAD";

/// Fewest 4x4 output tiles (over the batch) for which F(4x4, 3x3) is used instead of F(2x2).
/// `examples/conv_shapes.rs` found it 10-30% faster on the VAE's 128x128 and larger layers
/// (1,024+ tiles) and no faster on the UNet's at 512x512 (512 tiles or fewer), where its
/// 36 weight matrices, 2.25 times F(2x2)'s, are transformed and repacked for fewer columns.
const WINOGRAD4_MIN_TILES: usize = 1024;

/// The Winograd variant of one convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tiling {
    /// F(2x2, 3x3).
    F2,
    /// F(4x4, 3x3).
    F4,
}

impl Tiling {
    /// Output tile side.
    fn m(self) -> usize {
        match self {
            Tiling::F2 => 2,
            Tiling::F4 => winograd4::M,
        }
    }

    /// Transformed elements per tile (the number of gemms).
    fn xi(self) -> usize {
        match self {
            Tiling::F2 => 16,
            Tiling::F4 => winograd4::XI,
        }
    }
}

/// Fewest input and output channels for which Winograd is used: below this the transforms cost
/// more than the multiplications they save.
const WINOGRAD_MIN_CHANNELS: usize = 64;

/// Fewest 2x2 output tiles (over the batch) for which Winograd is used: on fewer the gemms of
/// few columns each repack all 16 weight matrices for little work. Where gemm has AVX-512
/// kernels its products are twice as fast and the transforms, bound by memory, are not, so
/// Winograd needs more tiles to pay (`examples/conv_shapes.rs`, one thread: on a 2-core AMD
/// EPYC with AVX2, 45% faster than im2col at 128 tiles and 1280 channels, 45% slower at 32; on
/// an AVX-512 Xeon, 60% slower at 128 tiles (the UNet's 16x16 layers with CFG), even at 256-288,
/// 25-30% faster at 512 and more).
fn winograd_min_tiles() -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return 512;
    }
    64
}

/// Most floats in the transformed input and product matrices of one band of tiles (32 MiB).
const WINOGRAD_BAND_FLOATS: usize = 8 << 20;

/// `SUMI_WINOGRAD`: 0 = off, 2 = F(2x2) only, 4 (or unset) = both.
fn winograd_mode() -> u8 {
    static MODE: OnceLock<u8> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var(WINOGRAD_ENV).as_deref() {
        Ok("0") => 0,
        Ok("2") => 2,
        _ => 4,
    })
}

/// Which Winograd variant (if any) runs this convolution.
fn winograd_tiling(batch: usize, g: &Geometry, cout: usize) -> Option<Tiling> {
    if !winograd_applies(batch, g, cout) {
        return None;
    }
    let tiles4 = batch * g.h.div_ceil(4) * g.w.div_ceil(4);
    Some(if winograd_mode() == 4 && tiles4 >= WINOGRAD4_MIN_TILES {
        Tiling::F4
    } else {
        Tiling::F2
    })
}

fn winograd_applies(batch: usize, g: &Geometry, cout: usize) -> bool {
    let tiles = batch * g.h.div_ceil(2) * g.w.div_ceil(2);
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && g.cin >= WINOGRAD_MIN_CHANNELS
        && cout >= WINOGRAD_MIN_CHANNELS
        && tiles >= winograd_min_tiles()
        && winograd_mode() != 0
}

/// Winograd F(2x2, 3x3) weights `U[xi][co][ci] = (G g G^T)[xi]` for `ws` `[Cout, Cin, 3, 3]`,
/// with `G = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]]`; `xi = 4 * row + col`.
fn winograd_weights(ws: &[f32], cout: usize, cin: usize, u: &mut [f32]) {
    let plane = cout * cin;
    let ptr = SharedMut(u.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        for ci in 0..cin {
            let g = &ws[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
            // G g: 4 rows of 3.
            let mut gg = [[0f32; 3]; 4];
            for c in 0..3 {
                let (a, b, d) = (g[c], g[3 + c], g[6 + c]);
                gg[0][c] = a;
                gg[1][c] = 0.5 * (a + b + d);
                gg[2][c] = 0.5 * (a - b + d);
                gg[3][c] = d;
            }
            for (r, row) in gg.iter().enumerate() {
                let [a, b, d] = *row;
                let vals = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
                for (c, v) in vals.into_iter().enumerate() {
                    // SAFETY: element (xi, co, ci) is inside `u` and only task `co` writes it.
                    unsafe { *ptr.get().add((r * 4 + c) * plane + co * cin + ci) = v };
                }
            }
        }
    });
}

/// Runs `f` on the Winograd transform of `ws`, made in a buffer kept per thread: a fresh one
/// for every convolution would be faulted in and zeroed by the kernel each time, which on this
/// kind of VM cost as much as the multiplications Winograd saves on small images.
fn with_winograd_weights<R>(
    ws: &[f32],
    cout: usize,
    cin: usize,
    tiling: Tiling,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    thread_local! {
        static WEIGHTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let need = tiling.xi() * cout * cin;
    let mut u = WEIGHTS.take();
    if u.len() < need {
        u = vec![0f32; need];
    }
    match tiling {
        Tiling::F2 => winograd_weights(ws, cout, cin, &mut u[..need]),
        Tiling::F4 => winograd4::weights(ws, cout, cin, &mut u[..need]),
    }
    let r = f(&u[..need]);
    WEIGHTS.set(u);
    r
}

/// Winograd F(2x2, 3x3) or F(4x4, 3x3) for stride 1, padding 1 over the whole batch: `xs` is
/// `[B, Cin, H, W]`, `u` the transformed weights, `out` `[B, Cout, H, W]`. The output is cut
/// into 2x2 (4x4) tiles; bands of tile rows (across images) are transformed into 16 (36)
/// matrices `V[xi]` `[Cin, tiles]`, multiplied as `M[xi] = U[xi] V[xi]` (`[Cout, tiles]`) and
/// transformed back into the output.
#[allow(clippy::too_many_arguments)]
fn winograd(
    xs: &[f32],
    batch: usize,
    g: &Geometry,
    u: &[f32],
    bias: Option<&[f32]>,
    cout: usize,
    out: &mut [f32],
    tiling: Tiling,
) {
    let (cin, h, w) = (g.cin, g.h, g.w);
    let (xin, tile) = (tiling.xi(), tiling.m());
    let (th, tw) = (h.div_ceil(tile), w.div_ceil(tile));
    let total_rows = batch * th;
    let rows_per_band = (WINOGRAD_BAND_FLOATS / (xin * (cin + cout) * tw)).clamp(1, total_rows);
    let cap = rows_per_band * tw;
    // The band buffers are kept per thread between calls: fresh ones would be faulted in anew
    // by every convolution.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut scratch = SCRATCH.take();
    let need = xin * (cin + cout) * cap;
    if scratch.len() < need {
        scratch = vec![0f32; need];
    }
    let (v, m) = scratch[..need].split_at_mut(xin * cin * cap);
    let threads = candle_core::utils::get_num_threads();
    let mut g0 = 0;
    while g0 < total_rows {
        let rows = rows_per_band.min(total_rows - g0);
        let n = rows * tw;
        let band = Band {
            h,
            w,
            th,
            tw,
            g0,
            rows,
        };
        let v = &mut v[..xin * cin * n];
        let m = &mut m[..xin * cout * n];
        match tiling {
            Tiling::F2 => input_transform(xs, cin, &band, v),
            Tiling::F4 => winograd4::input_transform(xs, cin, &band, v),
        }
        let gemm_one = |(xi, mx): (usize, &mut [f32]), par| {
            gemm_into(
                mx,
                n,
                0,
                n,
                &Weights::F32(&u[xi * cout * cin..(xi + 1) * cout * cin]),
                &v[xi * cin * n..(xi + 1) * cin * n],
                cin,
                n,
                cout,
                false,
                par,
            )
        };
        if threads > 1 {
            m.par_chunks_mut(cout * n)
                .enumerate()
                .for_each(|c| gemm_one(c, gemm::Parallelism::None));
        } else {
            m.chunks_mut(cout * n)
                .enumerate()
                .for_each(|c| gemm_one(c, gemm::Parallelism::None));
        }
        match tiling {
            Tiling::F2 => output_transform(m, bias, cout, &band, out),
            Tiling::F4 => winograd4::output_transform(m, bias, cout, &band, out),
        }
        g0 += rows;
    }
    SCRATCH.set(scratch);
}

/// Writes `V[xi][c][t] = (B^T d B)[xi]` for the tiles of global tile rows `g0..g0+rows`, with
/// `d` the 4x4 input patch of tile `t` (zero outside the image) and
/// `B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]`.
fn input_transform(xs: &[f32], cin: usize, band: &Band, v: &mut [f32]) {
    let Band {
        h,
        w,
        th,
        tw,
        g0,
        rows,
    } = *band;
    let n = rows * tw;
    let ptr = SharedMut(v.as_mut_ptr());
    let plane = cin * n;
    (0..cin).into_par_iter().for_each(|c| {
        let pw = 2 * tw + 2;
        let mut padded = vec![0f32; 4 * pw];
        let mut tmp = vec![0f32; 16 * tw];
        for lr in 0..rows {
            let gr = g0 + lr;
            let (img, ty) = (gr / th, gr % th);
            let chan = &xs[(img * cin + c) * h * w..(img * cin + c + 1) * h * w];
            // Row transform: tmp[r][j][tx] = (d B)[r][j] for input row 2ty - 1 + r.
            for r in 0..4 {
                let iy = (2 * ty + r) as isize - 1;
                let prow = &mut padded[r * pw..(r + 1) * pw];
                if iy < 0 || iy >= h as isize {
                    prow.fill(0.0);
                } else {
                    let line = &chan[iy as usize * w..(iy as usize + 1) * w];
                    prow[0] = 0.0;
                    prow[1..=w].copy_from_slice(line);
                    prow[w + 1..].fill(0.0);
                }
                let t = &mut tmp[r * 4 * tw..(r + 1) * 4 * tw];
                let (t0, rest) = t.split_at_mut(tw);
                let (t1, rest) = rest.split_at_mut(tw);
                let (t2, t3) = rest.split_at_mut(tw);
                for tx in 0..tw {
                    let p = &prow[2 * tx..2 * tx + 4];
                    t0[tx] = p[0] - p[2];
                    t1[tx] = p[1] + p[2];
                    t2[tx] = p[2] - p[1];
                    t3[tx] = p[1] - p[3];
                }
            }
            // Column transform, straight into V.
            let col0 = lr * tw;
            for j in 0..4 {
                let d0 = &tmp[j * tw..(j + 1) * tw];
                let d1 = &tmp[(4 + j) * tw..(5 + j) * tw];
                let d2 = &tmp[(8 + j) * tw..(9 + j) * tw];
                let d3 = &tmp[(12 + j) * tw..(13 + j) * tw];
                // SAFETY: row c of each V[xi] is written only by task c; columns
                // col0..col0+tw lie inside the band's n columns.
                let dst = |i: usize| unsafe {
                    std::slice::from_raw_parts_mut(
                        ptr.get().add((i * 4 + j) * plane + c * n + col0),
                        tw,
                    )
                };
                let (o0, o1, o2, o3) = (dst(0), dst(1), dst(2), dst(3));
                for tx in 0..tw {
                    o0[tx] = d0[tx] - d2[tx];
                    o1[tx] = d1[tx] + d2[tx];
                    o2[tx] = d2[tx] - d1[tx];
                    o3[tx] = d1[tx] - d3[tx];
                }
            }
        }
    });
}

/// Writes the output tiles `A^T M A + bias` of global tile rows `g0..g0+rows`, with
/// `A^T = [[1,1,1,0],[0,1,-1,-1]]`, clipping the last row and column of odd sizes.
fn output_transform(m: &[f32], bias: Option<&[f32]>, cout: usize, band: &Band, out: &mut [f32]) {
    let Band {
        h,
        w,
        th,
        tw,
        g0,
        rows,
    } = *band;
    let n = rows * tw;
    let plane = cout * n;
    let ptr = SharedMut(out.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        let b = bias.map_or(0.0, |b| b[co]);
        let mut y = vec![0f32; 4 * tw];
        for lr in 0..rows {
            let gr = g0 + lr;
            let (img, ty) = (gr / th, gr % th);
            let at =
                |xi: usize| &m[xi * plane + co * n + lr * tw..xi * plane + co * n + (lr + 1) * tw];
            let mm: [&[f32]; 16] = std::array::from_fn(at);
            let (y00, rest) = y.split_at_mut(tw);
            let (y01, rest) = rest.split_at_mut(tw);
            let (y10, y11) = rest.split_at_mut(tw);
            for tx in 0..tw {
                let e = |xi: usize| mm[xi][tx];
                // A^T M: two rows of 4.
                let s0: [f32; 4] = std::array::from_fn(|j| e(j) + e(4 + j) + e(8 + j));
                let s1: [f32; 4] = std::array::from_fn(|j| e(4 + j) - e(8 + j) - e(12 + j));
                y00[tx] = s0[0] + s0[1] + s0[2] + b;
                y01[tx] = s0[1] - s0[2] - s0[3] + b;
                y10[tx] = s1[0] + s1[1] + s1[2] + b;
                y11[tx] = s1[1] - s1[2] - s1[3] + b;
            }
            for (dy, (ya, yb)) in [(&*y00, &*y01), (&*y10, &*y11)].into_iter().enumerate() {
                let oy = 2 * ty + dy;
                if oy >= h {
                    break;
                }
                // SAFETY: plane (img, co) of `out` is written only by task co, and each band
                // writes its own output rows.
                let line = unsafe {
                    std::slice::from_raw_parts_mut(
                        ptr.get().add(((img * cout + co) * h + oy) * w),
                        w,
                    )
                };
                for (tx, pair) in line.chunks_mut(2).enumerate() {
                    pair[0] = ya[tx];
                    if let Some(p) = pair.get_mut(1) {
                        *p = yb[tx];
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests;
