//! Random-weight diffusers folders with the published models' shapes: configs from SD1.5/SDXL,
//! weights from a seeded generator, written straight to safetensors files.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde_json::{json, Value};
use sumi_engine::arch::clip::{ClipTextConfig, ClipTextModel};
use sumi_engine::arch::unet::{UNet, UNetConfig};
use sumi_engine::arch::vae::{VaeConfig, VaeDecoder, VaeEncoder};
use sumi_engine::{Error, Result};

use crate::Preset;

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

pub(crate) fn invalid(msg: impl std::fmt::Display) -> Error {
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
pub(crate) fn write_random_safetensors(
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
    // Decoder and encoder (image-to-image), as the published VAE files hold both.
    let mut shapes = record(None, |vb| VaeDecoder::new(vae_cfg.clone(), vb).map(|_| ()))?;
    let encoder = record(None, |vb| VaeEncoder::new(vae_cfg, vb).map(|_| ()))?;
    let encoder_params: usize = encoder.values().map(|s| s.iter().product::<usize>()).sum();
    shapes.extend(encoder);
    std::fs::create_dir_all(dir.join("vae"))?;
    write_json(&dir.join("vae/config.json"), &vae_v)?;
    let n = write_random_safetensors(
        &dir.join("vae/diffusion_pytorch_model.safetensors"),
        &shapes,
        seed + 1,
        weights,
    )?;
    params.insert("vae_decoder".into(), n - encoder_params);
    params.insert("vae_encoder".into(), encoder_params);
    configs.insert("vae".into(), vae_v);

    let demo_tokenizer = sumi_hub::builtin_demo_model()
        .map_err(invalid)?
        .join("tokenizer");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Preset;

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
