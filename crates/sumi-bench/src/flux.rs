//! One Flux transformer step on saved inputs, for side-by-side runs with diffusers and
//! stable-diffusion.cpp (`bench/flux_compare.py`): loads a diffusers `transformer` folder or a
//! single file (BFL names, safetensors or GGUF), runs the forward pass on the inputs the script
//! wrote, and reports wall and CPU seconds of each repeat and the peak resident memory.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use sumi_engine::arch::flux::{FluxInputs, FluxTransformer, Rope};
use sumi_engine::Result;

use sumi_engine::profile::{self, OpTime};

use crate::measure::{cpu_seconds, peak_rss_bytes, threads};

/// What one `flux_step` run measured.
#[derive(Debug, Serialize)]
pub struct FluxStepReport {
    /// Seconds to load the transformer.
    pub load_s: f64,
    /// Wall seconds of each forward pass.
    pub wall_s: Vec<f64>,
    /// CPU seconds (all threads) of each forward pass, when known.
    pub cpu_s: Vec<Option<f64>>,
    /// Peak resident memory of the process, in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Compute threads.
    pub threads: usize,
    /// Image and text tokens.
    pub tokens: (usize, usize),
    /// Seconds per forward pass by kind of operation (with `SUMI_PROFILE=1`; else empty).
    pub profile: Vec<OpTime>,
}

fn ids(t: &Tensor) -> Result<Vec<[f32; 3]>> {
    Ok(t.to_dtype(DType::F32)?
        .to_vec2::<f32>()?
        .into_iter()
        .map(|r| [r[0], r[1], r[2]])
        .collect())
}

/// Loads the transformer at `model` (a folder or one file) in `dtype`, runs it `repeats` times
/// on the tensors of `inputs` (img, txt, pooled, timestep, guidance, img_ids, txt_ids) and
/// writes the last output to `output` (as `out`, f32) when given.
pub fn flux_step(
    model: &Path,
    dtype: DType,
    inputs: &Path,
    repeats: usize,
    output: Option<&Path>,
) -> Result<FluxStepReport> {
    let dev = Device::Cpu;
    let t = Instant::now();
    let net = if model.is_dir() {
        FluxTransformer::load(model, &dev, dtype)?
    } else {
        FluxTransformer::load_file(model, &dev, dtype)?
    };
    let load_s = t.elapsed().as_secs_f64();
    let t = candle_core::safetensors::load(inputs, &dev)?;
    let get = |n: &str| -> Result<Tensor> {
        let x = t
            .get(n)
            .ok_or_else(|| candle_core::Error::Msg(format!("{n} missing")))?;
        Ok(x.to_dtype(DType::F32)?)
    };
    let (img, txt, pooled) = (get("img")?, get("txt")?, get("pooled")?);
    let (timestep, guidance) = (get("timestep")?, get("guidance")?);
    let mut all = ids(&get("txt_ids")?)?;
    all.extend(ids(&get("img_ids")?)?);
    let rope = Rope::new(&all, &net.config().axes_dims_rope, &dev)?;
    let inputs = FluxInputs {
        img: &img,
        txt: &txt,
        pooled: &pooled,
        timestep: &timestep,
        guidance: net.has_guidance().then_some(&guidance),
        rope: &rope,
    };
    let (mut wall_s, mut cpu_s, mut out) = (Vec::new(), Vec::new(), None);
    profile::take(1);
    for _ in 0..repeats.max(1) {
        let c = cpu_seconds();
        let t = Instant::now();
        out = Some(net.forward(&inputs)?);
        wall_s.push(t.elapsed().as_secs_f64());
        cpu_s.push(c.zip(cpu_seconds()).map(|(a, b)| b - a));
    }
    if let (Some(path), Some(out)) = (output, out) {
        let out = out.to_dtype(DType::F32)?;
        candle_core::safetensors::save(&[("out", out)].into_iter().collect(), path)?;
    }
    Ok(FluxStepReport {
        load_s,
        wall_s,
        cpu_s,
        peak_rss_bytes: peak_rss_bytes(),
        threads: threads(),
        tokens: (img.dim(1)?, txt.dim(1)?),
        profile: profile::take(repeats.max(1)),
    })
}
