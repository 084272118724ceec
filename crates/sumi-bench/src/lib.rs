//! Benchmarks on real model shapes with random weights: writes an SD1.5- or SDXL-shaped diffusers
//! folder (configs from the published models, weights from a seeded generator) to a temporary
//! folder, loads it like any model and times each component. Used by `sumi bench`.

mod first_image;
pub mod flux;
mod lora;
mod measure;
mod prompt;
mod random_model;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use serde_json::Value;
use sumi_engine::arch::network::NetCond;
use sumi_engine::denoiser::{Guidance, ModelDenoiser};
use sumi_engine::model::LoraBackup;
use sumi_engine::sampling::Denoiser;
use sumi_engine::weights::lora::LoraFile;
use sumi_engine::{Model, Request, Result};

pub use measure::{cpu_seconds, peak_rss_bytes, threads};
use measure::{time_runs, GpuMemoryWatch, Runs};
use random_model::invalid;
pub use random_model::write_random_model;

/// The model shapes a benchmark can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5 configs).
    Sd15,
    /// Stable Diffusion XL base 1.0.
    Sdxl,
    /// A few-channel model with the SD1.5 layout, for smoke tests of the benchmark itself.
    Tiny,
}

impl Preset {
    /// Parses `sd15`, `sdxl` or `tiny`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sd15" | "sd1.5" => Some(Self::Sd15),
            "sdxl" => Some(Self::Sdxl),
            "tiny" => Some(Self::Tiny),
            _ => None,
        }
    }

    /// The image size the model was trained at.
    pub fn native_size(self) -> usize {
        match self {
            Self::Sd15 => 512,
            Self::Sdxl => 1024,
            Self::Tiny => 64,
        }
    }
}

/// The components a benchmark can time.
pub const COMPONENTS: &[&str] = &[
    "load",
    "text",
    "prompt",
    "unet",
    "vae",
    "vae-encode",
    "preview",
    "generate",
    "lora",
    "first-image",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Model shapes.
    pub preset: Preset,
    /// Image width and height in pixels.
    pub size: usize,
    /// Steps of the whole-generation run.
    pub steps: u32,
    /// Timed repeats of each per-component measurement (the minimum is reported).
    pub repeats: usize,
    /// Which of [`COMPONENTS`] to time.
    pub components: Vec<String>,
    /// Folder for the random model (a new folder under the system temp dir when `None`); it is
    /// removed afterwards unless `keep` is set.
    pub dir: Option<PathBuf>,
    /// Keep the written model folder, and reuse it when it already holds a model.
    pub keep: bool,
    /// Seed of the weight generator.
    pub seed: u64,
    /// Where to run.
    pub device: Device,
    /// Compute dtype (the weights are written as f32 and converted on load, as for any model).
    pub dtype: DType,
}

/// One timed component.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Component name (one of [`COMPONENTS`]).
    pub component: String,
    /// Fastest repeat in seconds.
    pub seconds: f64,
    /// Every repeat in seconds.
    pub runs: Vec<f64>,
    /// CPU time (all threads, user + system) of the fastest repeat, when known: steadier than
    /// wall time on a shared machine.
    pub cpu_seconds: Option<f64>,
    /// What exactly was timed.
    pub what: String,
    /// Resident memory the fastest repeat left above what the process held before it, in
    /// bytes (`lora` components).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_rss_bytes: Option<i64>,
    /// The most resident memory the fastest repeat took above what the process held before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_peak_rss_bytes: Option<i64>,
    /// With `SUMI_PROFILE=1`, the time per run in each kind of operation ([`crate::profile`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<sumi_engine::profile::OpTime>,
}

/// The result of a benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Model shapes.
    pub preset: Preset,
    /// Image size.
    pub size: usize,
    /// Steps of the whole-generation run.
    pub steps: u32,
    /// Compute threads (`RAYON_NUM_THREADS` or all cores).
    pub threads: usize,
    /// Compute device (`cpu`, `cuda:N`, `metal:N`).
    pub device: String,
    /// Compute dtype.
    pub dtype: String,
    /// `sumi` (our CPU kernels) or `candle` (`SUMI_KERNELS=candle`: candle's own ops).
    pub kernels: String,
    /// Timed components.
    pub timings: Vec<Timing>,
    /// Peak resident memory of the process in bytes (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
    /// On a GPU, the most device memory the run took at once: free memory before the model loads
    /// minus the lowest free memory seen, sampled every 2 ms (so a shorter peak can be missed).
    pub peak_gpu_bytes: Option<u64>,
    /// Parameter counts per component.
    pub params: BTreeMap<String, usize>,
    /// The configs the model was built from (for other implementations to build the same shapes).
    pub configs: BTreeMap<String, Value>,
}

/// Runs the benchmark; `progress` hears a line before each component starts.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let want = |c: &str| opts.components.iter().any(|x| x == c);
    if let Some(bad) = opts
        .components
        .iter()
        .find(|c| !COMPONENTS.contains(&c.as_str()))
    {
        return Err(invalid(format!(
            "unknown component {bad:?} (choose from {})",
            COMPONENTS.join(", ")
        )));
    }
    if !opts.size.is_multiple_of(8) || opts.size == 0 {
        return Err(invalid("size must be a positive multiple of 8"));
    }
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sumi-bench-{}", std::process::id())));
    let reuse = opts.keep && dir.join("model_index.json").is_file();
    if reuse {
        progress(&format!("reusing the random model in {}", dir.display()));
    } else {
        progress(&format!(
            "writing random {:?} weights to {}",
            opts.preset,
            dir.display()
        ));
    }
    let written = write_random_model(&dir, opts.preset, opts.seed, !reuse);
    let watch = GpuMemoryWatch::start(&opts.device);
    let result = written.and_then(|(params, configs)| {
        measure(opts, &dir, &want, progress).map(|timings| (params, configs, timings))
    });
    let peak_gpu_bytes = watch.and_then(GpuMemoryWatch::finish);
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (params, configs, timings) = result?;
    Ok(BenchReport {
        preset: opts.preset,
        size: opts.size,
        steps: opts.steps,
        threads: threads(),
        device: sumi_engine::device::name(&opts.device),
        dtype: format!("{:?}", opts.dtype).to_lowercase(),
        kernels: if sumi_engine::kernels::enabled() {
            "sumi"
        } else {
            "candle"
        }
        .into(),
        timings,
        peak_rss_bytes: peak_rss_bytes(),
        peak_gpu_bytes,
        params,
        configs,
    })
}

fn measure(
    opts: &BenchOptions,
    dir: &Path,
    want: &dyn Fn(&str) -> bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Timing>> {
    let (device, dtype) = (&opts.device, opts.dtype);
    let mut timings = Vec::new();
    let mut push = |component: &str, (runs, cpu, profile): Runs, what: String| {
        let best = (0..runs.len())
            .min_by(|&a, &b| runs[a].total_cmp(&runs[b]))
            .unwrap_or(0);
        timings.push(Timing {
            component: component.into(),
            seconds: runs.get(best).copied().unwrap_or(f64::NAN),
            cpu_seconds: cpu.get(best).copied().flatten(),
            runs,
            what,
            profile,
            extra_rss_bytes: None,
            extra_peak_rss_bytes: None,
        })
    };

    let prompt = "a photograph of an astronaut riding a horse";
    if want("first-image") {
        // Before anything else is loaded, each from a fresh load: what a user waits for after
        // choosing a model.
        for steps in first_image::step_counts(opts) {
            let name = first_image::component(steps);
            progress(&name);
            let runs = first_image::time_first_image(opts, dir, prompt, steps)?;
            let what = format!(
                "Model::load, then a {steps}-step Euler run with CFG 7 at {0}x{0} and decode",
                opts.size
            );
            push(&name, runs, what);
        }
        if opts.components.iter().all(|c| c == "first-image") {
            return Ok(timings);
        }
    }

    progress("load");
    let mut loaded = None;
    let load = time_runs(device, 1, || {
        loaded = Some(Model::load(dir, device, dtype)?);
        Ok(())
    })?;
    let mut model = loaded.ok_or_else(|| invalid("model not loaded"))?;
    // What the model computes in (f32 for bf16 on the CPU, which keeps only weights in bf16).
    let dtype = model.dtype;
    if want("load") {
        push(
            "load",
            load,
            "Model::load of the diffusers folder (text encoders, UNet, VAE)".into(),
        );
    }

    let latent_hw = opts.size / model.info.downscale as usize;
    let channels = model.vae.latent_channels();
    let mut cond = None;
    if want("text") || want("unet") {
        progress("text");
        let r = time_runs(device, opts.repeats, || {
            cond = Some(model.text.encode(prompt, "", true)?);
            Ok(())
        })?;
        if want("text") {
            push(
                "text",
                r,
                "encode prompt and empty negative (batch 2, 77 tokens)".into(),
            );
        }
    }
    if want("prompt") {
        progress("prompt");
        for (component, runs, what) in prompt::timings(&model, dir, opts)? {
            push(&component, runs, what);
        }
    }
    if want("unet") {
        progress("unet");
        let cond = cond.clone().ok_or_else(|| invalid("no conditioning"))?;
        let family = model.info.family;
        let s = opts.size as u32;
        let row = |i: usize| -> Result<NetCond> {
            let pooled = cond
                .pooled
                .as_ref()
                .map(|p| p.narrow(0, i, 1))
                .transpose()?;
            family.conditioning(cond.context.narrow(0, i, 1)?, pooled.as_ref(), s, s, 0.0)
        };
        let guidance = Guidance {
            cond: row(1)?,
            uncond: Some((row(0)?, 7.0)),
        };
        let cancel = AtomicBool::new(false);
        let den = ModelDenoiser::new(
            model.network.as_ref(),
            &model.levels,
            model.info.prediction,
            guidance,
            dtype,
            &cancel,
        )?;
        let x = Tensor::randn(0f32, 1f32, (1, channels, latent_hw, latent_hw), device)?;
        let r = time_runs(device, opts.repeats, || {
            den.denoise(&x, 10.0)?;
            Ok(())
        })?;
        push(
            "unet",
            r,
            format!(
                "one denoiser call with CFG (UNet batch 2) at {0}x{0}",
                opts.size
            ),
        );
    }
    if want("vae") {
        progress("vae");
        let z = Tensor::randn(0f32, 1f32, (1, channels, latent_hw, latent_hw), device)?
            .to_dtype(dtype)?;
        let r = time_runs(device, opts.repeats, || {
            model.vae.decoder.decode(&z)?;
            Ok(())
        })?;
        push("vae", r, format!("VAE decode to {0}x{0}", opts.size));
    }
    if want("vae-encode") {
        progress("vae-encode");
        let image = Tensor::randn(0f32, 0.5f32, (1, 3, opts.size, opts.size), device)?
            .clamp(-1f32, 1f32)?
            .to_dtype(dtype)?;
        let r = time_runs(device, opts.repeats, || {
            model.vae.encode(&image)?;
            Ok(())
        })?;
        push(
            "vae-encode",
            r,
            format!(
                "VAE encode of a {0}x{0} picture (image-to-image)",
                opts.size
            ),
        );
    }
    if want("preview") {
        progress("preview");
        let z = Tensor::randn(0f32, 1f32, (1, channels, latent_hw, latent_hw), device)?;
        let r = time_runs(device, opts.repeats.max(5), || {
            sumi_engine::preview::latent_preview(&z, &model.preview)?;
            Ok(())
        })?;
        push("preview", r, "latent preview of one step's x0".into());
    }
    if want("generate") {
        progress("generate");
        let mut req = Request::with_defaults(&model.info, prompt, 1);
        req.steps = opts.steps;
        req.sampler = "Euler".into();
        req.schedule = "Normal".into();
        req.width = opts.size as u32;
        req.height = opts.size as u32;
        let cancel = AtomicBool::new(false);
        let r = time_runs(device, 1, || {
            sumi_engine::pipeline::generate(&model, &req, &cancel, &mut |_| {})?;
            Ok(())
        })?;
        push(
            "generate",
            r,
            format!(
                "whole {}-step Euler run with CFG 7 and decode, with previews",
                opts.steps
            ),
        );
    }
    if want("lora") {
        progress("lora");
        timings.extend(lora_timings(&mut model, dir, opts)?);
    }
    Ok(timings)
}

/// Applying and removing a rank-32 LoRA on every attention and feed-forward layer of the UNet,
/// with the untouched weights read back from the files and kept in memory.
fn lora_timings(model: &mut Model, dir: &Path, opts: &BenchOptions) -> Result<Vec<Timing>> {
    let path = dir.join("bench-lora.safetensors");
    let modules = lora::write_lora(&path, model, opts.seed ^ 0x4c6f5241)?;
    let file = std::sync::Arc::new(LoraFile::open(&path)?);
    let mut out = Vec::new();
    for (backup, label) in [
        (
            LoraBackup::File,
            "untouched weights read back from the model's files",
        ),
        (LoraBackup::Memory, "untouched weights copied in memory"),
    ] {
        let runs = lora::apply_remove(model, &file, backup, opts.repeats)?;
        let suffix = if backup == LoraBackup::Memory {
            " (memory backup)"
        } else {
            ""
        };
        for (i, kind) in ["apply", "remove"].into_iter().enumerate() {
            let pick = |r: &(lora::LoraRun, lora::LoraRun)| if i == 0 { r.0 } else { r.1 };
            let all: Vec<lora::LoraRun> = runs.iter().map(pick).collect();
            let best = all
                .iter()
                .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
                .copied()
                .ok_or_else(|| invalid("no LoRA run"))?;
            out.push(Timing {
                component: format!("lora {kind}{suffix}"),
                seconds: best.seconds,
                runs: all.iter().map(|r| r.seconds).collect(),
                cpu_seconds: None,
                what: format!(
                    "{kind} a rank-{} LoRA on {modules} attention and feed-forward layers of the UNet; {label}",
                    lora::RANK
                ),
                profile: Vec::new(),
                extra_rss_bytes: best.extra_after,
                extra_peak_rss_bytes: best.extra_peak,
            });
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(out)
}
