//! 2D convolution (NCHW, square kernel, no dilation, one group) for f32 on the CPU.
//!
//! For each image and each band of output rows, the input patches are unfolded into a
//! `[Cin*kh*kw, band]` matrix whose rows are contiguous runs of the input (plain copies for
//! stride 1), and one `gemm` computes `weight[Cout, Cin*kh*kw] x patches` directly into the
//! band's columns of the `[Cout, H*W]` output, on top of the bias. Compared with candle 0.11's
//! tiled im2col this avoids the NHWC transpose of the input, the per-pixel scattered patch
//! writes and the strided copy of every result into the output.

use candle_core::{DType, Device, Result, Tensor};

use super::{enabled, parallelism, with_f32};

/// Most floats in one unfolded band (16 MiB); a band always holds at least one output row.
const BAND_FLOATS: usize = 4 << 20;

/// `conv2d(x, w) + bias` with the given stride and zero padding; candle's op when the inputs are
/// not f32 on the CPU.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let cpu_f32 = matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32;
    let (cout, cin_w, kh, kw) = w.dims4()?;
    if !enabled() || !cpu_f32 || w.dtype() != DType::F32 || kh != kw || stride == 0 {
        let y = x.conv2d(w, pad, stride, 1, 1)?;
        return match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, cout, 1, 1))?),
            None => Ok(y),
        };
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
        with_f32(&w, |ws| {
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
            for (img, dst) in out.chunks_mut(cout * oh * ow).enumerate() {
                let src = &xs[img * cin * h * wd..(img + 1) * cin * h * wd];
                conv_image(src, ws, bias_vals.as_deref(), cout, &geo, dst);
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

/// One image: `src` is `[Cin, H, W]`, `dst` is `[Cout, OH*OW]`.
fn conv_image(
    src: &[f32],
    ws: &[f32],
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
    lhs: &[f32],
    rhs: &[f32],
    k: usize,
    ldr: usize,
    m: usize,
    accumulate: bool,
) {
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
            parallelism(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize) -> Tensor {
        let cout = w.dim(0).unwrap();
        x.conv2d(w, pad, stride, 1, 1)
            .unwrap()
            .broadcast_add(&b.reshape((1, cout, 1, 1)).unwrap())
            .unwrap()
    }

    #[test]
    fn matches_candle_on_odd_shapes() {
        let dev = Device::Cpu;
        // (batch, cin, cout, h, w, k, stride, pad)
        let cases = [
            (2, 3, 5, 7, 9, 3, 1, 1),
            (1, 4, 8, 8, 8, 3, 2, 1),
            (1, 5, 3, 9, 7, 3, 2, 1),
            (2, 6, 4, 5, 11, 1, 1, 0),
            (1, 32, 64, 16, 16, 3, 1, 1),
            (1, 4, 6, 6, 6, 3, 1, 0),
            (1, 3, 2, 4, 5, 3, 2, 0),
            (1, 2, 3, 3, 3, 1, 2, 0),
            (2, 8, 8, 10, 6, 3, 3, 2),
        ];
        for &(b, cin, cout, h, w, k, stride, pad) in &cases {
            let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.3, (cout, cin, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let got = conv2d(&x, &wt, Some(&bias), stride, pad).unwrap();
            let want = reference(&x, &wt, &bias, stride, pad);
            assert_eq!(
                got.dims(),
                want.dims(),
                "case {:?}",
                (b, cin, cout, h, w, k, stride, pad)
            );
            let d = crate::test_util::max_abs_diff(&got, &want);
            assert!(
                d < 1e-4,
                "case {:?}: max diff {d}",
                (b, cin, cout, h, w, k, stride, pad)
            );
        }
    }

    #[test]
    fn many_bands_and_no_bias() {
        let dev = Device::Cpu;
        // Enough channels that the unfolded matrix is split into several row bands.
        let x = Tensor::randn(0f32, 1.0, (1, 512, 40, 40), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.05, (8, 512, 3, 3), &dev).unwrap();
        let got = conv2d(&x, &wt, None, 1, 1).unwrap();
        let want = x.conv2d(&wt, 1, 1, 1, 1).unwrap();
        let d = crate::test_util::max_abs_diff(&got, &want);
        assert!(d < 1e-3, "max diff {d}");
    }

    #[test]
    fn non_contiguous_input() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 6, 9, 5), &dev)
            .unwrap()
            .transpose(2, 3)
            .unwrap();
        let wt = Tensor::randn(0f32, 0.3, (4, 6, 3, 3), &dev).unwrap();
        let got = conv2d(&x, &wt, None, 1, 1).unwrap();
        let want = x.contiguous().unwrap().conv2d(&wt, 1, 1, 1, 1).unwrap();
        assert!(crate::test_util::max_abs_diff(&got, &want) < 1e-4);
    }
}
