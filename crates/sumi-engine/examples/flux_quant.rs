//! Times one linear layer of Flux's real width on the CPU with its weight in f32, bf16 (Sumi's
//! dense kernels) and quantized to Q8_0 and Q4_K (candle's `QMatMul` kernels, as GGUF files
//! are run), and how far each output is from the f32 one.
//!
//! With `--model`, writes a Flux dev transformer of the real width with one double and one
//! single block (random weights, BFL names) as a bf16 safetensors file and a Q8_0 GGUF file in
//! the temp folder, loads each with `FluxTransformer::load_file` and times the load and one
//! forward pass over `--rows` image tokens and 64 text tokens (`KEEP=1` keeps the files). With
//! `--lora-rank R` as well, it also writes a kohya LoRA of rank R on every linear layer of the two
//! blocks and times the GGUF model's forward pass with it applied (kept factored).
//!
//! ```text
//! cargo run --release -p sumi-engine --example flux_quant -- [--rows N] [--repeats N] [--model]
//!     [--lora-rank R]
//! ```

use std::time::Instant;

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use sumi_engine::arch::flux::{FluxInputs, FluxTransformer, Rope};
use sumi_engine::kernels;
use sumi_engine::model::{LoraUse, ModelParams, Patcher};
use sumi_engine::weights::lora::LoraFile;
use sumi_engine::weights::params::record;
use sumi_engine::Family;

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
    let (mut rows, mut repeats, mut model, mut rank) = (256usize, 3usize, false, 0usize);
    while let Some(a) = args.next() {
        if a == "--model" {
            model = true;
            continue;
        }
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--rows", Some(v)) => rows = v,
            ("--repeats", Some(v)) => repeats = v,
            ("--lora-rank", Some(v)) => rank = v,
            _ => {
                eprintln!("usage: flux_quant [--rows N] [--repeats N] [--model] [--lora-rank R]");
                std::process::exit(2);
            }
        }
    }
    if model {
        return model_bench(rows, repeats, rank);
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

/// BFL names and shapes of a Flux dev transformer `d` wide with one block of each kind.
fn bfl_shapes(d: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut lin = |name: &str, o: usize, i: usize| {
        out.push((format!("{name}.weight"), vec![o, i]));
        out.push((format!("{name}.bias"), vec![o]));
    };
    lin("img_in", d, 64);
    lin("txt_in", d, 4096);
    for (e, i) in [("time_in", 256), ("guidance_in", 256), ("vector_in", 768)] {
        lin(&format!("{e}.in_layer"), d, i);
        lin(&format!("{e}.out_layer"), d, d);
    }
    for s in ["img", "txt"] {
        let b = format!("double_blocks.0.{s}");
        lin(&format!("{b}_mod.lin"), 6 * d, d);
        lin(&format!("{b}_attn.qkv"), 3 * d, d);
        lin(&format!("{b}_attn.proj"), d, d);
        lin(&format!("{b}_mlp.0"), 4 * d, d);
        lin(&format!("{b}_mlp.2"), d, 4 * d);
    }
    lin("single_blocks.0.linear1", 7 * d, d);
    lin("single_blocks.0.linear2", d, 5 * d);
    lin("single_blocks.0.modulation.lin", 3 * d, d);
    lin("final_layer.linear", 64, d);
    lin("final_layer.adaLN_modulation.1", 2 * d, d);
    for b in [
        "double_blocks.0.img_attn",
        "double_blocks.0.txt_attn",
        "single_blocks.0",
    ] {
        for n in ["query_norm", "key_norm"] {
            out.push((format!("{b}.norm.{n}.scale"), vec![128]));
        }
    }
    out
}

/// A kohya LoRA of `rank` on every linear layer of `bfl_shapes(d)`'s blocks, written to `path`.
fn write_lora(d: usize, rank: usize, path: &Path) -> candle_core::Result<usize> {
    let dev = Device::Cpu;
    let mut tensors = HashMap::new();
    for (name, shape) in bfl_shapes(d) {
        let (Some(layer), [o, i]) = (name.strip_suffix(".weight"), shape.as_slice()) else {
            continue;
        };
        if !layer.contains("blocks.") {
            continue;
        }
        let key = format!("lora_unet_{}", layer.replace('.', "_"));
        let down = (Tensor::randn(0f32, 1.0, (rank, *i), &dev)? * (*i as f64).sqrt().recip())?;
        let up = (Tensor::randn(0f32, 1.0, (*o, rank), &dev)? * 0.01)?;
        tensors.insert(
            format!("{key}.lora_down.weight"),
            down.to_dtype(DType::BF16)?,
        );
        tensors.insert(format!("{key}.lora_up.weight"), up.to_dtype(DType::BF16)?);
        tensors.insert(format!("{key}.alpha"), Tensor::new(rank as f32, &dev)?);
    }
    candle_core::safetensors::save(&tensors, path)?;
    Ok(tensors.len() / 3)
}

fn model_bench(rows: usize, repeats: usize, rank: usize) -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let dir = std::env::temp_dir().join("sumi-flux-quant");
    std::fs::create_dir_all(&dir)?;
    let (st, gguf) = (
        dir.join("flux-1-1.safetensors"),
        dir.join("flux-1-1-Q8_0.gguf"),
    );
    let mut dense = HashMap::new();
    let mut quant = Vec::new();
    for (name, shape) in bfl_shapes(3072) {
        let fan_in = *shape.last().unwrap_or(&1) as f64;
        let t = (Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)? * fan_in.sqrt().recip())?;
        let ty = match shape.as_slice() {
            [_, k] if k % 32 == 0 => GgmlDType::Q8_0,
            _ => GgmlDType::F32,
        };
        quant.push((name.clone(), QTensor::quantize(&t, ty)?));
        dense.insert(name, t.to_dtype(DType::BF16)?);
    }
    candle_core::safetensors::save(&dense, &st)?;
    drop(dense);
    let refs: Vec<(&str, &QTensor)> = quant.iter().map(|(n, q)| (n.as_str(), q)).collect();
    gguf_file::write(&mut std::fs::File::create(&gguf)?, &[], &refs)?;
    drop(quant);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / (1 << 20) as f64);
    println!("Flux dev width, 1 double + 1 single block; {rows} image + 64 text tokens");
    println!("file                     MiB   dtype   load s   forward s");
    let txt_len = 64;
    let img = Tensor::randn(0f32, 1.0, (1, rows, 64), &dev)?;
    let txt = Tensor::randn(0f32, 1.0, (1, txt_len, 4096), &dev)?;
    let pooled = Tensor::randn(0f32, 1.0, (1, 768), &dev)?;
    let timestep = Tensor::new(&[0.5f32], &dev)?;
    let guidance = Tensor::new(&[3.5f32], &dev)?;
    let mut ids = vec![[0f32; 3]; txt_len];
    ids.extend((0..rows).map(|i| [0.0, (i / 16) as f32, (i % 16) as f32]));
    let rope = Rope::new(&ids, &[16, 56, 56], &dev)?;
    let inputs = FluxInputs {
        img: &img,
        txt: &txt,
        pooled: &pooled,
        timestep: &timestep,
        guidance: Some(&guidance),
        rope: &rope,
    };
    if rank > 0 {
        return lora_bench(&gguf, &dir, rank, repeats, &inputs);
    }
    let mut outputs = Vec::new();
    for (path, dtype) in [(&st, DType::BF16), (&st, DType::F32), (&gguf, DType::F32)] {
        let t = Instant::now();
        let model = FluxTransformer::load_file(path, &dev, dtype)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let load = t.elapsed().as_secs_f64();
        let (fwd, out) = best(repeats, || model.forward(&inputs))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        println!(
            "{:<22} {:>6.0}   {:<5} {load:>8.2} {fwd:>11.2}",
            name.unwrap_or_default(),
            size(path)?,
            format!("{dtype:?}")
        );
        outputs.push(out);
    }
    println!(
        "output error vs the f32 load: bf16 {:.1e}, Q8_0 {:.1e}",
        rel_err(&outputs[0], &outputs[1])?,
        rel_err(&outputs[2], &outputs[1])?
    );
    if std::env::var_os("KEEP").is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// The GGUF model's forward pass without and with a rank-`rank` LoRA on every block layer.
fn lora_bench(
    gguf: &Path,
    dir: &Path,
    rank: usize,
    repeats: usize,
    inputs: &FluxInputs,
) -> candle_core::Result<()> {
    let msg = |e: sumi_engine::Error| candle_core::Error::Msg(e.to_string());
    let path = dir.join(format!("lora-rank{rank}.safetensors"));
    let layers = write_lora(3072, rank, &path)?;
    let (model, tables) = record(|| FluxTransformer::load_file(gguf, &Device::Cpu, DType::F32));
    let model = model.map_err(msg)?;
    let (plain_s, plain) = best(repeats, || model.forward(inputs))?;
    let mut patcher = Patcher::new(ModelParams {
        unet: tables.into_iter().next().unwrap_or_default(),
        ..ModelParams::default()
    });
    let file = LoraFile::open(&path).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let file = std::sync::Arc::new(file);
    let report = patcher
        .set(
            &[LoraUse {
                file,
                te: 1.0,
                unet: 1.0,
            }],
            Family::Flux,
        )
        .map_err(msg)?;
    let (with_s, with) = best(repeats, || model.forward(inputs))?;
    println!(
        "Q8_0 GGUF forward: {plain_s:.2} s; with a rank-{rank} LoRA on {layers} layers \
         ({} modules matched, applied in {:.2} s): {with_s:.2} s ({:+.1}%); output moved {:.1e}",
        report.loras[0].matched,
        report.elapsed.as_secs_f64(),
        (with_s / plain_s - 1.0) * 100.0,
        rel_err(&with, &plain)?
    );
    if std::env::var_os("KEEP").is_none() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
