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
/// Max abs error over the output's max abs value.
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    let scale: f32 = want
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    crate::test_util::max_abs_diff(got, want) / scale
}

/// The im2col path on the same inputs (Winograd bypassed).
fn im2col(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (b, cin, h, wd) = x.dims4().unwrap();
    let cout = w.dim(0).unwrap();
    let geo = same_size_3x3(cin, h, wd);
    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ws = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let bs = bias.map(|t| t.to_vec1::<f32>().unwrap());
    let mut out = vec![0f32; b * cout * h * wd];
    for (img, dst) in out.chunks_mut(cout * h * wd).enumerate() {
        let src = &xs[img * cin * h * wd..(img + 1) * cin * h * wd];
        conv_image(src, &Weights::F32(&ws), bs.as_deref(), cout, &geo, dst);
    }
    Tensor::from_vec(out, (b, cout, h, wd), &Device::Cpu).unwrap()
}

/// The Winograd path on the same inputs, whatever its size thresholds say.
fn winograd_direct(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, tiling: Tiling) -> Tensor {
    let (b, cin, h, wd) = x.dims4().unwrap();
    let cout = w.dim(0).unwrap();
    let geo = same_size_3x3(cin, h, wd);
    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ws = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let bs = bias.map(|t| t.to_vec1::<f32>().unwrap());
    let mut out = vec![0f32; b * cout * h * wd];
    with_winograd_weights(&ws, cout, cin, tiling, |u| {
        winograd(&xs, b, &geo, u, bs.as_deref(), cout, &mut out, tiling)
    });
    Tensor::from_vec(out, (b, cout, h, wd), &Device::Cpu).unwrap()
}

#[test]
fn winograd_matches_candle_and_im2col() {
    let dev = Device::Cpu;
    // (batch, cin, cout, h, w, bias): odd sizes, 1x1 and 2x3 images, unequal channels.
    let cases = [
        (2, 64, 64, 7, 9, true),
        (1, 64, 96, 8, 8, true),
        (2, 80, 64, 5, 6, false),
        (1, 128, 64, 1, 1, true),
        (2, 64, 128, 2, 3, true),
        (1, 96, 72, 13, 4, false),
        (2, 320, 320, 16, 16, true),
        (1, 64, 64, 17, 23, true),
    ];
    for (&(b, cin, cout, h, w, with_bias), tiling) in cases
        .iter()
        .flat_map(|c| [(c, Tiling::F2), (c, Tiling::F4)])
    {
        let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
        let wt = Tensor::randn(
            0f32,
            (1.0 / (9.0 * cin as f64)).sqrt() as f32,
            (cout, cin, 3, 3),
            &dev,
        )
        .unwrap();
        let bias = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
        let bias = with_bias.then_some(&bias);
        let got = winograd_direct(&x, &wt, bias, tiling);
        let mut want = x.conv2d(&wt, 1, 1, 1, 1).unwrap();
        if let Some(bias) = bias {
            want = want
                .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
        }
        let case = (tiling, b, cin, cout, h, w, with_bias);
        assert_eq!(got.dims(), want.dims(), "case {case:?}");
        let e = rel_err(&got, &want);
        let e2 = rel_err(&got, &im2col(&x, &wt, bias));
        eprintln!("winograd {case:?}: rel err vs candle {e:.2e}, vs im2col {e2:.2e}");
        // F(4x4) adds more and larger transform terms: about 10x F(2x2)'s rounding error.
        let tol = if tiling == Tiling::F4 { 5e-5 } else { 1e-5 };
        assert!(e < tol && e2 < tol, "case {case:?}: rel err {e} / {e2}");
    }
}

#[test]
fn winograd_only_where_it_pays() {
    let geo = |cin, h, w, k, stride, pad| Geometry {
        cin,
        h,
        w,
        k,
        stride,
        pad,
        oh: h,
        ow: w,
    };
    let wide = winograd_min_tiles() > 128;
    assert!(winograd_applies(2, &geo(320, 64, 64, 3, 1, 1), 320));
    assert_eq!(
        winograd_applies(2, &geo(1280, 16, 16, 3, 1, 1), 1280),
        !wide
    );
    assert_eq!(winograd_applies(1, &geo(64, 16, 16, 3, 1, 1), 64), !wide);
    assert!(winograd_applies(1, &geo(64, 48, 48, 3, 1, 1), 64));
    assert!(!winograd_applies(2, &geo(1280, 8, 8, 3, 1, 1), 1280));
    assert!(!winograd_applies(2, &geo(4, 64, 64, 3, 1, 1), 320));
    assert!(!winograd_applies(2, &geo(320, 64, 64, 3, 2, 1), 320));
    assert!(!winograd_applies(2, &geo(320, 64, 64, 1, 1, 0), 320));
    let tiling = |b, cin, hw| winograd_tiling(b, &geo(cin, hw, hw, 3, 1, 1), cin);
    assert_eq!(tiling(1, 512, 128), Some(Tiling::F4));
    assert_eq!(tiling(2, 320, 64), Some(Tiling::F2));
    assert_eq!(tiling(2, 640, 32), Some(Tiling::F2));
    assert_eq!(tiling(2, 1280, 16), (!wide).then_some(Tiling::F2));
    assert_eq!(tiling(2, 1280, 8), None);
}

#[test]
fn winograd_many_bands() {
    let dev = Device::Cpu;
    // xi * (cin + cout) * tiles_per_row floats per tile row: several bands, some of which
    // straddle the two images, for both tilings.
    let (b, cin, cout, h, w) = (2usize, 256usize, 256usize, 45usize, 301usize);
    let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
    let wt = Tensor::randn(0f32, 0.02, (cout, cin, 3, 3), &dev).unwrap();
    let bias = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
    let want = im2col(&x, &wt, Some(&bias));
    for tiling in [Tiling::F2, Tiling::F4] {
        let th = h.div_ceil(tiling.m());
        let rows = WINOGRAD_BAND_FLOATS / (tiling.xi() * (cin + cout) * w.div_ceil(tiling.m()));
        assert!(
            rows >= 2 && rows < th && th % rows != 0,
            "{tiling:?}: {rows} rows of {th}"
        );
        let got = winograd_direct(&x, &wt, Some(&bias), tiling);
        let e = rel_err(&got, &want);
        eprintln!("winograd {tiling:?} many bands: rel err vs im2col {e:.2e}");
        assert!(e < 5e-5, "{tiling:?}: rel err {e}");
    }
    assert_eq!(
        winograd_tiling(b, &same_size_3x3(cin, h, w), cout),
        Some(Tiling::F4)
    );
    let got = conv2d(&x, &wt, Some(&bias), 1, 1).unwrap();
    assert!(rel_err(&got, &want) < 5e-5);
}

/// A 3x3, stride-1, padding-1 convolution of `cin` channels over `h x w`.
fn same_size_3x3(cin: usize, h: usize, w: usize) -> Geometry {
    Geometry {
        cin,
        h,
        w,
        k: 3,
        stride: 1,
        pad: 1,
        oh: h,
        ow: w,
    }
}

#[test]
fn bf16_weights_match_candle_on_the_rounded_operands() {
    let dev = Device::Cpu;
    // (batch, cin, cout, h, w, k, stride, pad): odd k*k*cin, 1x1, stride 2, a shape Winograd
    // would take in f32 but that bf16 runs through im2col (a small image), and one that
    // Winograd takes for bf16 too (f32 products on widened weights).
    let cases = [
        (1, 3, 5, 7, 9, 3, 1, 1),
        (2, 6, 40, 5, 11, 1, 1, 0),
        (1, 4, 8, 8, 8, 3, 2, 1),
        (2, 64, 64, 32, 32, 3, 1, 1),
        (1, 64, 64, 128, 130, 3, 1, 1),
    ];
    for &(b, cin, cout, h, w, k, stride, pad) in &cases {
        let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.3, (cout, cin, k, k), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
        let wb = wt.to_dtype(DType::BF16).unwrap();
        let full = reference(&x, &wt, &bias, stride, pad);
        let mut kernels = vec![false];
        if super::bf16_gemm::has_instruction() {
            kernels.push(true);
        }
        for kernel in kernels {
            let got = conv2d_with(&x, &wb, Some(&bias), stride, pad, kernel).unwrap();
            assert_eq!(got.dtype(), DType::F32);
            // The bf16 kernel rounds the input too; Winograd and the fallback keep it in f32.
            let im2col = bf16_im2col(&x, &wb, stride, pad).unwrap();
            assert_eq!(im2col, (h, cin) != (128, 64), "case {b}x{cin}x{h}x{w}");
            let rounds_input = kernel && im2col;
            let xr = if rounds_input {
                crate::test_util::round_bf16(&x)
            } else {
                x.clone()
            };
            let want = reference(&xr, &crate::test_util::round_bf16(&wt), &bias, stride, pad);
            let case = (b, cin, cout, h, w, k, stride, pad, kernel);
            assert!(rel_err(&got, &want) < 1e-4, "case {case:?}");
            // Against the f32 convolution: within bf16's precision.
            assert!(rel_err(&got, &full) < 2e-2, "case {case:?}");
        }
    }
}
