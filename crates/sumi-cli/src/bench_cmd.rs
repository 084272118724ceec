//! `sumi bench`: times text encoding, a UNet step, VAE decoding, previews, a whole generation,
//! model loading and the time to a first image on SD1.5- or SDXL-shaped models with random weights.

use anyhow::{bail, Result};
use clap::Args;
use sumi_bench::{self as bench, BenchOptions, BenchReport, Preset};

/// Options of `sumi bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Model shapes: sd15 or sdxl (tiny: a few-channel model for smoke tests).
    #[arg(long, default_value = "sd15")]
    model: String,
    /// Image size in pixels (default: the model's native size).
    #[arg(long)]
    size: Option<usize>,
    /// Steps of the whole-generation run.
    #[arg(long, default_value_t = 20)]
    steps: u32,
    /// Timed repeats per component; the fastest is reported.
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Compute threads (sets RAYON_NUM_THREADS; default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Comma-separated components: load,text,prompt,unet,vae,preview,generate,lora,first-image
    /// ("prompt": a 3-chunk prompt plain, weighted, with ComfyUI's rules and with an embedding;
    /// "first-image": from a fresh load of the written model to the first decoded image, at 1
    /// step and at --steps, timed before anything else is loaded).
    #[arg(long, default_value = "load,text,unet,vae,preview,generate")]
    components: String,
    /// Tiny shapes, 2 steps, one repeat: checks the command works (numbers mean nothing).
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the random model here and keep it, or reuse the one written there before
    /// (default: a temp folder, removed afterwards).
    #[arg(long)]
    keep_dir: Option<std::path::PathBuf>,
    /// Compute device: cpu, cuda[:N] or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Precision: auto (f32 on the CPU, f16 on a GPU), f32, f16 or bf16 (on the CPU: bf16
    /// weight matrices, f32 activations).
    #[arg(long, default_value = "auto")]
    dtype: String,
}

/// Runs the benchmark and prints a table or JSON.
pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // Read by rayon's global pool and candle's thread count, both created lazily after this.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let preset = if args.quick {
        Preset::Tiny
    } else {
        match Preset::parse(&args.model) {
            Some(p) => p,
            None => bail!("unknown --model {:?} (sd15, sdxl or tiny)", args.model),
        }
    };
    let device = sumi_engine::device::pick(&args.device)?;
    let dtype = sumi_engine::device::pick_dtype(&args.dtype, &device)?;
    let opts = BenchOptions {
        preset,
        size: args.size.unwrap_or(preset.native_size()),
        steps: if args.quick { 2 } else { args.steps },
        repeats: if args.quick { 1 } else { args.repeats },
        components: args
            .components
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        dir: args.keep_dir.clone(),
        keep: args.keep_dir.is_some(),
        seed: 0,
        device,
        dtype,
    };
    let report = bench::run(&opts, &mut |what| eprintln!("bench: {what}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &BenchReport) {
    println!(
        "{:?} {}x{} on {}, {} threads, {}, {} kernels",
        r.preset, r.size, r.size, r.device, r.threads, r.dtype, r.kernels
    );
    println!(
        "{:<17} {:>10} {:>10}  what",
        "component", "seconds", "cpu s"
    );
    for t in &r.timings {
        let cpu = t.cpu_seconds.map_or("-".to_string(), |c| format!("{c:.2}"));
        println!(
            "{:<17} {:>10.3} {:>10}  {}",
            t.component, t.seconds, cpu, t.what
        );
    }
    for t in r.timings.iter().filter(|t| !t.profile.is_empty()) {
        let mean = t.runs.iter().sum::<f64>() / t.runs.len().max(1) as f64;
        println!("{} per run, by operation (SUMI_PROFILE):", t.component);
        let mut listed = 0.0;
        for op in &t.profile {
            listed += op.seconds;
            println!(
                "  {:<12} {:>10.4} s {:>5.1}% {:>6} calls {:>5.2} cores busy",
                op.op,
                op.seconds,
                100.0 * op.seconds / mean,
                op.calls,
                op.cpu_seconds / op.seconds.max(1e-9)
            );
        }
        let rest = mean - listed;
        println!(
            "  {:<12} {:>10.4} s {:>5.1}%",
            "the rest",
            rest,
            100.0 * rest / mean
        );
    }
    if let Some(b) = r.peak_rss_bytes {
        println!(
            "{:<10} {:>10.2}  GiB peak resident memory (VmHWM)",
            "peak_rss",
            b as f64 / (1u64 << 30) as f64
        );
    }
    if let Some(b) = r.peak_gpu_bytes {
        println!(
            "{:<10} {:>10.2}  GiB peak GPU memory taken (free memory sampled every 2 ms)",
            "peak_gpu",
            b as f64 / (1u64 << 30) as f64
        );
    }
}
