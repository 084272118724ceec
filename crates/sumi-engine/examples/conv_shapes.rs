//! Times Sumi's CPU convolution on the 3x3 shapes of the SD1.5 UNet step with CFG (batch 2,
//! 512x512) and the VAE decoder (batch 1), to choose where Winograd pays. Run it once with
//! `SUMI_WINOGRAD=0` and once without and compare the columns; `--bf16` stores the weights in
//! bf16 as `--dtype bf16` does.
//!
//! ```text
//! cargo run --release -p sumi-engine --example conv_shapes -- [--threads N] [--repeats N] [--bf16]
//! ```

use std::time::Instant;

use candle_core::{Device, Tensor};
use sumi_engine::kernels;

/// (batch, input channels, output channels, height = width)
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (2, 320, 320, 64),
    (2, 640, 320, 64),
    (2, 320, 640, 32),
    (2, 640, 640, 32),
    (2, 1280, 640, 32),
    (2, 640, 1280, 16),
    (2, 1280, 1280, 16),
    (2, 2560, 1280, 16),
    (2, 1280, 1280, 8),
    (2, 2560, 1280, 8),
    (1, 512, 512, 64),
    (1, 512, 512, 128),
    (1, 256, 256, 256),
    (1, 128, 128, 512),
];

fn main() -> candle_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut threads, mut repeats, mut bf16) = (1usize, 3usize, false);
    while let Some(a) = args.next() {
        if a == "--bf16" {
            bf16 = true;
            continue;
        }
        let value = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), value) {
            ("--threads", Some(v)) => threads = v,
            ("--repeats", Some(v)) => repeats = v,
            _ => {
                eprintln!("usage: conv_shapes [--threads N] [--repeats N] [--bf16]");
                std::process::exit(2);
            }
        }
    }
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    sumi_engine::alloc::keep_freed_memory();
    let winograd = std::env::var("SUMI_WINOGRAD").as_deref() != Ok("0");
    println!("winograd {winograd}, bf16 weights {bf16}, {threads} thread(s), best of {repeats}");
    println!("batch  cin  cout  size   ms   GFLOP/s(direct-equivalent)");
    let dev = Device::Cpu;
    for &(b, cin, cout, hw) in SHAPES {
        let x = Tensor::randn(0f32, 1.0, (b, cin, hw, hw), &dev)?;
        let w = Tensor::randn(0f32, 0.02, (cout, cin, 3, 3), &dev)?;
        let w = match bf16 {
            true => w.to_dtype(candle_core::DType::BF16)?,
            false => w,
        };
        let bias = Tensor::randn(0f32, 1.0, cout, &dev)?;
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let t = Instant::now();
            let y = kernels::conv2d(&x, &w, Some(&bias), 1, 1)?;
            drop(y);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (b * cin * cout * 9 * hw * hw) as f64;
        println!(
            "{b:5} {cin:4} {cout:5} {hw:5} {:7.1} {:7.1}",
            best * 1e3,
            flops / best / 1e9
        );
    }
    Ok(())
}
