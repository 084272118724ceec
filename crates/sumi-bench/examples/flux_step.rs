//! `cargo run --release -p sumi-bench --example flux_step -- MODEL INPUTS f32|bf16 REPEATS [OUT]`:
//! one Flux transformer step (MODEL: a diffusers `transformer` folder, or one BFL-named
//! safetensors/GGUF file) on the tensors of INPUTS, as JSON; `bench/flux_compare.py` drives it.

use std::path::Path;

use candle_core::DType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the CLI and the app run (large buffers reused instead of mapped afresh each time).
    sumi_engine::alloc::keep_freed_memory();
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        return Err("usage: flux_step MODEL INPUTS f32|bf16 REPEATS [OUT]".into());
    }
    let dtype = match a[2].as_str() {
        "bf16" => DType::BF16,
        _ => DType::F32,
    };
    let report = sumi_bench::flux::flux_step(
        Path::new(&a[0]),
        dtype,
        Path::new(&a[1]),
        a[3].parse()?,
        a.get(4).map(Path::new),
    )?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
