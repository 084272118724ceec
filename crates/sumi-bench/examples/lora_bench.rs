//! `cargo run --release -p sumi-bench --example lora_bench -- [sd15|sdxl|tiny] [f32|f16] [DIR]`:
//! the `lora` component alone, as JSON (what `sumi bench --components lora --json` prints).

use candle_core::{DType, Device};
use sumi_bench::{run, BenchOptions, Preset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = Preset::parse(args.first().map_or("tiny", String::as_str))
        .ok_or("preset: sd15, sdxl or tiny")?;
    let dtype = match args.get(1).map(String::as_str) {
        Some("f16") => DType::F16,
        _ => DType::F32,
    };
    let opts = BenchOptions {
        preset,
        size: preset.native_size(),
        steps: 1,
        repeats: 2,
        components: vec!["lora".into()],
        dir: args.get(2).map(Into::into),
        keep: args.get(2).is_some(),
        seed: 1,
        device: Device::Cpu,
        dtype,
    };
    let report = run(&opts, &mut |s| eprintln!("{s}"))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
