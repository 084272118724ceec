//! Times Sumi's CPU linear layers and convolutions with f32 and with bf16 weights on shapes of
//! the SD1.5 UNet step with CFG (batch 2, 512x512) and of a Flux block at 512x512 (1024 image
//! and 256 text tokens, width 3072), one thread by default.
//!
//! ```text
//! cargo run --release -p sumi-engine --example bf16_shapes -- [--threads N] [--repeats N]
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use sumi_engine::kernels;

/// Linear layers: (rows, in, out).
const LINEAR: &[(usize, usize, usize)] = &[
    (8192, 320, 320),
    (8192, 320, 2560),
    (8192, 1280, 320),
    (2048, 640, 640),
    (512, 1280, 1280),
    (154, 768, 320),
    (1280, 3072, 3072),
    (1280, 3072, 12288),
    (1280, 12288, 3072),
    (1280, 15360, 3072),
];

/// Convolutions: (batch, in, out, side, kernel).
const CONV: &[(usize, usize, usize, usize, usize)] = &[
    (2, 1280, 1280, 16, 3),
    (2, 2560, 1280, 8, 3),
    (2, 320, 320, 64, 1),
    (2, 640, 640, 32, 3),
];

fn best(
    repeats: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> candle_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut threads, mut repeats) = (1usize, 3usize);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--threads", Some(v)) => threads = v,
            ("--repeats", Some(v)) => repeats = v,
            _ => panic!("usage: bf16_shapes [--threads N] [--repeats N]"),
        }
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    sumi_engine::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    println!("linear rows x in x out       f32 ms   bf16 ms   GFLOP/s f32 / bf16");
    for &(m, k, n) in LINEAR {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, n, &dev)?;
        let wb = w.to_dtype(DType::BF16)?;
        let f = best(repeats, || kernels::linear(&w, Some(&b), &x).map(|_| ()))?;
        let h = best(repeats, || kernels::linear(&wb, Some(&b), &x).map(|_| ()))?;
        let gf = 2.0 * (m * k * n) as f64 / 1e9;
        println!(
            "{m:>5} x {k:>4} x {n:>4}   {:>10.2} {:>9.2}   {:>7.1} / {:.1}",
            f * 1e3,
            h * 1e3,
            gf / f,
            gf / h
        );
    }
    println!("conv batch x in x out x side, k   f32 ms   bf16 ms");
    for &(bt, cin, cout, side, k) in CONV {
        let x = Tensor::randn(0f32, 1.0, (bt, cin, side, side), &dev)?;
        let w = Tensor::randn(0f32, 0.1, (cout, cin, k, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, cout, &dev)?;
        let wb = w.to_dtype(DType::BF16)?;
        let pad = k / 2;
        let f = best(repeats, || {
            kernels::conv2d(&x, &w, Some(&b), 1, pad).map(|_| ())
        })?;
        let h = best(repeats, || {
            kernels::conv2d(&x, &wb, Some(&b), 1, pad).map(|_| ())
        })?;
        println!(
            "{bt} x {cin:>4} x {cout:>4} x {side:>3}, {k}   {:>10.2} {:>9.2}",
            f * 1e3,
            h * 1e3
        );
    }
    Ok(())
}
