//! Benchmarks on real model shapes with random weights: writes an SD1.5- or SDXL-shaped diffusers
//! folder (configs from the published models, weights from a seeded generator) to a temporary
//! folder, loads it like any model and times each component.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::Serialize;
use serde_json::{json, Value};

use crate::denoiser::ModelDenoiser;
use crate::model::unet::{AddedCond, UNet, UNetConfig};
use crate::model::vae::{VaeConfig, VaeDecoder};
use crate::sampling::Denoiser;
use crate::text::{ClipTextConfig, ClipTextModel};
use crate::{Error, Model, Request, Result};

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
pub const COMPONENTS: &[&str] = &["load", "text", "unet", "vae", "preview", "generate"];

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
    /// With `SUMI_PROFILE=1`, the time per run in each kind of operation ([`crate::profile`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<crate::profile::OpTime>,
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

fn unet_config(preset: Preset) -> Value {
    match preset {
        Preset::Sd15 | Preset::Tiny => {
            let tiny = preset == Preset::Tiny;
            json!({
                "_class_name": "UNet2DConditionModel",
                "act_fn": "silu",
                "attention_head_dim": if tiny { 2 } else { 8 },
                "block_out_channels": if tiny { json!([32, 32, 64, 64]) } else { json!([320, 640, 1280, 1280]) },
                "center_input_sample": false,
                "cross_attention_dim": if tiny { 32 } else { 768 },
                "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                "downsample_padding": 1,
                "flip_sin_to_cos": true,
                "freq_shift": 0,
                "in_channels": 4,
                "layers_per_block": 2,
                "mid_block_scale_factor": 1,
                "norm_eps": 1e-5,
                "norm_num_groups": 32,
                "out_channels": 4,
                "sample_size": if tiny { 8 } else { 64 },
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
            })
        }
        Preset::Sdxl => json!({
            "_class_name": "UNet2DConditionModel",
            "act_fn": "silu",
            "addition_embed_type": "text_time",
            "addition_embed_type_num_heads": 64,
            "addition_time_embed_dim": 256,
            "attention_head_dim": [5, 10, 20],
            "block_out_channels": [320, 640, 1280],
            "center_input_sample": false,
            "cross_attention_dim": 2048,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "downsample_padding": 1,
            "flip_sin_to_cos": true,
            "freq_shift": 0,
            "in_channels": 4,
            "layers_per_block": 2,
            "mid_block_scale_factor": 1,
            "norm_eps": 1e-5,
            "norm_num_groups": 32,
            "out_channels": 4,
            "projection_class_embeddings_input_dim": 2816,
            "sample_size": 128,
            "transformer_layers_per_block": [1, 2, 10],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "use_linear_projection": true
        }),
    }
}

fn vae_config(preset: Preset) -> Value {
    let tiny = preset == Preset::Tiny;
    json!({
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": if tiny { json!([32, 32, 64, 64]) } else { json!([128, 256, 512, 512]) },
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": preset.native_size(),
        "scaling_factor": if preset == Preset::Sdxl { 0.13025 } else { 0.18215 }
    })
}

/// CLIP text configs; the token ids match the demo model's tokenizer, which the benchmark uses.
fn text_configs(preset: Preset) -> Vec<Value> {
    let clip = |hidden: usize, layers: usize, heads: usize, act: &str, proj: Option<usize>| {
        let mut v = json!({
            "architectures": [if proj.is_some() { "CLIPTextModelWithProjection" } else { "CLIPTextModel" }],
            "bos_token_id": 608,
            "eos_token_id": 609,
            "pad_token_id": 609,
            "hidden_act": act,
            "hidden_size": hidden,
            "intermediate_size": hidden * 4,
            "layer_norm_eps": 1e-5,
            "max_position_embeddings": 77,
            "model_type": "clip_text_model",
            "num_attention_heads": heads,
            "num_hidden_layers": layers,
            "vocab_size": 49408
        });
        if let Some(p) = proj {
            v["projection_dim"] = json!(p);
        }
        v
    };
    match preset {
        Preset::Sd15 => vec![clip(768, 12, 12, "quick_gelu", None)],
        Preset::Sdxl => vec![
            clip(768, 12, 12, "quick_gelu", None),
            clip(1280, 32, 20, "gelu", Some(1280)),
        ],
        Preset::Tiny => vec![clip(32, 2, 2, "quick_gelu", None)],
    }
}

/// A var-builder backend that records every requested tensor name and shape and hands back
/// zero-cost broadcast zeros, so a model's weight list can be learned without allocating it.
struct Recorder {
    seen: Arc<Mutex<BTreeMap<String, Vec<usize>>>>,
    /// The shape of `text_projection.weight` for a text encoder that has one (the model asks for
    /// it without a shape, since its width comes from the file).
    projection: Option<Vec<usize>>,
}

impl Recorder {
    fn zeros(
        &self,
        name: &str,
        shape: Vec<usize>,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.seen
            .lock()
            .map_err(|_| candle_core::Error::Msg("recorder lock poisoned".into()))?
            .insert(name.to_string(), shape.clone());
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.zeros(name, s.dims().to_vec(), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match &self.projection {
            Some(shape) if name == "text_projection.weight" => {
                self.zeros(name, shape.clone(), dtype, dev)
            }
            _ => candle_core::bail!("the recorder needs a shape for {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.projection.is_some() && name == "text_projection.weight"
    }
}

/// The names and shapes of the weights `build` asks for.
fn record(
    projection: Option<Vec<usize>>,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
) -> Result<BTreeMap<String, Vec<usize>>> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let rec = Recorder {
        seen: seen.clone(),
        projection,
    };
    build(VarBuilder::from_backend(
        Box::new(rec),
        DType::F32,
        Device::Cpu,
    ))?;
    let map = std::mem::take(&mut *seen.lock().map_err(|_| invalid("recorder lock poisoned"))?);
    Ok(map)
}

fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("benchmark: {msg}"))
}

fn from_json<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(invalid)
}

/// SplitMix64: a small, fast, seedable generator (quality is ample for random weights).
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Writes random f32 weights for `shapes` as a safetensors file, streaming so that memory stays
/// small. Matrices and conv kernels get PyTorch's default uniform(±1/sqrt(fan_in)); norm scales
/// are 1 and biases small.
fn write_random_safetensors(
    path: &Path,
    shapes: &BTreeMap<String, Vec<usize>>,
    seed: u64,
    write: bool,
) -> Result<usize> {
    if !write {
        return Ok(shapes.values().map(|s| s.iter().product::<usize>()).sum());
    }
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in shapes {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).map_err(invalid)?;
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(&text)?;
    let mut rng = SplitMix(seed);
    let mut params = 0;
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        params += n;
        let is_norm_scale = shape.len() == 1 && name.ends_with("weight");
        let scale = if shape.len() >= 2 {
            1.0 / (shape[1..].iter().product::<usize>() as f32).sqrt()
        } else {
            0.02
        };
        for _ in 0..n {
            let v = if is_norm_scale {
                1.0
            } else {
                rng.symmetric() * scale
            };
            out.write_all(&v.to_le_bytes())?;
        }
    }
    out.flush()?;
    Ok(params)
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v).map_err(invalid)?)?;
    Ok(())
}

/// Writes a complete random-weight diffusers folder for `preset` into `dir` (only the configs
/// when `weights` is false, for a folder written before); returns parameter counts and configs.
pub fn write_random_model(
    dir: &Path,
    preset: Preset,
    seed: u64,
    weights: bool,
) -> Result<(BTreeMap<String, usize>, BTreeMap<String, Value>)> {
    let mut params = BTreeMap::new();
    let mut configs = BTreeMap::new();
    std::fs::create_dir_all(dir)?;
    let sdxl = preset == Preset::Sdxl;
    write_json(
        &dir.join("model_index.json"),
        &json!({"_class_name": if sdxl { "StableDiffusionXLPipeline" } else { "StableDiffusionPipeline" }}),
    )?;
    std::fs::create_dir_all(dir.join("scheduler"))?;
    write_json(
        &dir.join("scheduler/scheduler_config.json"),
        &json!({"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
                "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading"}),
    )?;

    let unet_v = unet_config(preset);
    let unet_cfg: UNetConfig = from_json(&unet_v)?;
    let shapes = record(None, |vb| UNet::new(unet_cfg, vb).map(|_| ()))?;
    std::fs::create_dir_all(dir.join("unet"))?;
    write_json(&dir.join("unet/config.json"), &unet_v)?;
    let n = write_random_safetensors(
        &dir.join("unet/diffusion_pytorch_model.safetensors"),
        &shapes,
        seed,
        weights,
    )?;
    params.insert("unet".into(), n);
    configs.insert("unet".into(), unet_v);

    let vae_v = vae_config(preset);
    let vae_cfg: VaeConfig = from_json(&vae_v)?;
    let shapes = record(None, |vb| VaeDecoder::new(vae_cfg, vb).map(|_| ()))?;
    std::fs::create_dir_all(dir.join("vae"))?;
    write_json(&dir.join("vae/config.json"), &vae_v)?;
    let n = write_random_safetensors(
        &dir.join("vae/diffusion_pytorch_model.safetensors"),
        &shapes,
        seed + 1,
        weights,
    )?;
    params.insert("vae_decoder".into(), n);
    configs.insert("vae".into(), vae_v);

    let demo_tokenizer = crate::model::builtin_demo_model()?.join("tokenizer");
    for (i, text_v) in text_configs(preset).into_iter().enumerate() {
        let suffix = if i == 0 {
            String::new()
        } else {
            format!("_{}", i + 1)
        };
        let cfg: ClipTextConfig = from_json(&text_v)?;
        let projection = cfg.projection_dim.map(|p| vec![p, cfg.hidden_size]);
        let shapes = record(projection, |vb| {
            ClipTextModel::from_var_builder(cfg, vb, &Device::Cpu, DType::F32).map(|_| ())
        })?;
        let te = dir.join(format!("text_encoder{suffix}"));
        std::fs::create_dir_all(&te)?;
        write_json(&te.join("config.json"), &text_v)?;
        let n = write_random_safetensors(
            &te.join("model.safetensors"),
            &shapes,
            seed + 2 + i as u64,
            weights,
        )?;
        params.insert(format!("text_encoder{suffix}"), n);
        configs.insert(format!("text_encoder{suffix}"), text_v);
        let tok = dir.join(format!("tokenizer{suffix}"));
        std::fs::create_dir_all(&tok)?;
        for entry in std::fs::read_dir(&demo_tokenizer)? {
            let entry = entry?;
            std::fs::copy(entry.path(), tok.join(entry.file_name()))?;
        }
    }
    Ok((params, configs))
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Watches a GPU's free memory from a thread of its own while a benchmark runs.
struct GpuMemoryWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl GpuMemoryWatch {
    /// Starts watching `device`; `None` on the CPU or where free memory is unknown.
    fn start(device: &Device) -> Option<Self> {
        use std::sync::atomic::Ordering;
        if device.is_cpu() {
            return None;
        }
        let before = crate::device::free_memory(device)?;
        let (device, stop) = (device.clone(), Arc::new(AtomicBool::new(false)));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut lowest = before;
            while !stopped.load(Ordering::Relaxed) {
                if let Some(free) = crate::device::free_memory(&device) {
                    lowest = lowest.min(free);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            before - lowest
        });
        Some(Self { stop, thread })
    }

    /// Stops watching; the most memory taken at once, in bytes.
    fn finish(self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().map(|b| b as u64)
    }
}

/// Compute threads candle uses on the CPU.
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// CPU time of this process so far (Linux `/proc/self/stat`, in clock ticks of 1/100 s).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Wall and CPU seconds of each run of `f`, and its operations' times per run when profiling.
type Runs = (Vec<f64>, Vec<Option<f64>>, Vec<crate::profile::OpTime>);

/// Times `f` `repeats` times; on a GPU each run ends when the device has finished its queued work.
fn time_runs(device: &Device, repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Runs> {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    crate::profile::take(1);
    for _ in 0..repeats.max(1) {
        device.synchronize()?;
        let c = cpu_seconds();
        let t = Instant::now();
        f()?;
        device.synchronize()?;
        wall.push(t.elapsed().as_secs_f64());
        cpu.push(c.zip(cpu_seconds()).map(|(a, b)| b - a));
    }
    let profile = crate::profile::take(wall.len());
    Ok((wall, cpu, profile))
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
        device: crate::device::name(&opts.device),
        dtype: format!("{:?}", opts.dtype).to_lowercase(),
        kernels: if crate::kernels::enabled() {
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
        })
    };

    progress("load");
    let mut loaded = None;
    let load = time_runs(device, 1, || {
        loaded = Some(Model::load(dir, device, dtype)?);
        Ok(())
    })?;
    let model = loaded.ok_or_else(|| invalid("model not loaded"))?;
    if want("load") {
        push(
            "load",
            load,
            "Model::load of the diffusers folder (text encoders, UNet, VAE)".into(),
        );
    }

    let prompt = "a photograph of an astronaut riding a horse";
    let latent_hw = opts.size / model.info.downscale as usize;
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
    if want("unet") {
        progress("unet");
        let cond = cond.clone().ok_or_else(|| invalid("no conditioning"))?;
        let added = match &cond.pooled {
            Some(pooled) if model.unet.needs_added_cond() => {
                let s = opts.size as f32;
                Some(AddedCond {
                    text_embeds: pooled.clone(),
                    time_ids: Tensor::new(&[s, s, 0.0, 0.0, s, s], device)?
                        .unsqueeze(0)?
                        .repeat((pooled.dim(0)?, 1))?,
                })
            }
            _ => None,
        };
        let cancel = AtomicBool::new(false);
        let den = ModelDenoiser::new(
            &model.unet,
            &model.levels,
            model.info.prediction,
            cond.context,
            added,
            7.0,
            dtype,
            &cancel,
        );
        let x = Tensor::randn(0f32, 1f32, (1, 4, latent_hw, latent_hw), device)?;
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
        let z = Tensor::randn(0f32, 1f32, (1, 4, latent_hw, latent_hw), device)?.to_dtype(dtype)?;
        let r = time_runs(device, opts.repeats, || {
            model.vae.decode(&z)?;
            Ok(())
        })?;
        push("vae", r, format!("VAE decode to {0}x{0}", opts.size));
    }
    if want("preview") {
        progress("preview");
        let z = Tensor::randn(0f32, 1f32, (1, 4, latent_hw, latent_hw), device)?;
        let r = time_runs(device, opts.repeats.max(5), || {
            crate::preview::latent_preview(&z, &model.preview)?;
            Ok(())
        })?;
        push("preview", r, "latent preview of one step's x0".into());
    }
    if want("generate") {
        progress("generate");
        let mut req = Request::with_defaults(&model, prompt, 1);
        req.steps = opts.steps;
        req.sampler = "Euler".into();
        req.schedule = "Normal".into();
        req.width = opts.size as u32;
        req.height = opts.size as u32;
        let cancel = AtomicBool::new(false);
        let r = time_runs(device, 1, || {
            crate::pipeline::generate(&model, &req, &cancel, &mut |_| {})?;
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
    Ok(timings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every preset's weight list can be recorded (SDXL's second text encoder asks for its
    /// projection without a shape), with the parameter counts of the published models.
    #[test]
    fn every_preset_records_its_weights() {
        let dir = tempfile::tempdir().unwrap();
        for (preset, unet_params) in [
            (Preset::Tiny, None),
            (Preset::Sd15, Some(859_520_964)),
            (Preset::Sdxl, Some(2_567_463_684)),
        ] {
            let (params, configs) = write_random_model(dir.path(), preset, 0, false).unwrap();
            assert!(configs.contains_key("unet") && configs.contains_key("vae"));
            if let Some(n) = unet_params {
                assert_eq!(params["unet"], n, "{preset:?}");
            }
            if preset == Preset::Sdxl {
                assert_eq!(params["text_encoder_2"], 694_659_840);
            }
        }
    }
}
