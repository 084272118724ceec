//! Times one linear layer of Flux's real width on the CPU with its weight in f32, bf16 (Sumi's
//! dense kernels) and quantized to Q8_0 and Q4_K (candle's `QMatMul` kernels, as GGUF files
//! are run), and how far each output is from the f32 one.
//!
//! ```text
//! cargo run --release -p sumi-engine --example flux_quant -- [--rows N] [--repeats N]
//! ```

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use sumi_engine::kernels;

/// Linear layers of Flux.1: (in, out).
const SHAPES: &[(usize, usize)] = &[(3072, 3072), (3072, 12288)];

fn best(
    repeats: usize,
    mut f: impl FnMut() -> candle_core::Result<Tensor>,
) -> candle_core::Result<(f64, Tensor)> {
    let out = f()?;
    let mut best = f64::MAX;
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, out))
}

fn rel_err(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(d / b.abs()?.max_all()?.to_scalar::<f32>()?)
}

fn main() -> candle_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut rows, mut repeats) = (256usize, 3usize);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--rows", Some(v)) => rows = v,
            ("--repeats", Some(v)) => repeats = v,
            _ => {
                eprintln!("usage: flux_quant [--rows N] [--repeats N]");
                std::process::exit(2);
            }
        }
    }
    let dev = Device::Cpu;
    println!("{rows} rows; best of {repeats}; error = max |y - y_f32| / max |y_f32|");
    println!("in x out        weight   MiB      ms   GFLOP/s   error");
    for &(k, n) in SHAPES {
        let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * (1.0 / (k as f64).sqrt()))?;
        let x = Tensor::randn(0f32, 1.0, (1, rows, k), &dev)?;
        let flop = 2.0 * (rows * k * n) as f64;
        let (t, y32) = best(repeats, || kernels::linear(&w, None, &x))?;
        let line = |name: &str, bytes: usize, t: f64, err: f32| {
            println!(
                "{k:>5} x {n:<6} {name:>6} {:>5.0} {:>7.1} {:>9.1} {err:>7.1e}",
                bytes as f64 / (1 << 20) as f64,
                t * 1e3,
                flop / t / 1e9
            )
        };
        line("f32", n * k * 4, t, 0.0);
        let wb = w.to_dtype(DType::BF16)?;
        let (t, y) = best(repeats, || kernels::linear(&wb, None, &x))?;
        line("bf16", n * k * 2, t, rel_err(&y, &y32)?);
        for ty in [GgmlDType::Q8_0, GgmlDType::Q4K] {
            let q = QTensor::quantize(&w, ty)?;
            let (t, y) = best(repeats, || x.apply_op1_no_bwd(&q))?;
            line(
                &format!("{ty:?}"),
                q.storage_size_in_bytes(),
                t,
                rel_err(&y, &y32)?,
            );
        }
    }
    Ok(())
}
