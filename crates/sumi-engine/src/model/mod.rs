//! Finding and loading checkpoints: diffusers folders (and repo ids in the local Hugging Face
//! cache), model-family detection and per-family defaults.

pub mod demo;
pub mod discover;
pub mod download;
pub mod hub;
pub mod layers;
pub mod recommended;
pub mod single_file;
pub mod unet;
pub mod vae;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::sampling::schedules::{NoiseLevels, SchedulerConfig};
use crate::text::{ClipTextConfig, ClipTextModel, ClipTokenizer, TextEncoder, TextStyle};
use crate::{Error, Result};
pub use demo::{builtin_demo_model, DEMO_MODEL_ENV};
pub use recommended::Recommended;
use unet::{UNet, UNetConfig};
use vae::{VaeConfig, VaeDecoder};
use weights::{find_weights, read_json, var_builder};

/// The architecture family of a model; decides defaults and preview coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Stable Diffusion 1.x (CLIP ViT-L text encoder, conv projections).
    Sd1,
    /// Stable Diffusion 2.x (OpenCLIP text encoder, linear projections).
    Sd2,
    /// Stable Diffusion XL (two text encoders, added size/crop conditioning).
    Sdxl,
}

impl Family {
    /// Human-readable name.
    pub fn display_name(self) -> &'static str {
        match self {
            Family::Sd1 => "SD 1.x",
            Family::Sd2 => "SD 2.x",
            Family::Sdxl => "SDXL",
        }
    }
}

/// What the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The added noise (most models).
    Epsilon,
    /// v = alpha * noise - sigma * x0 (SD 2.x 768 models).
    V,
}

/// Facts about a loaded model and the defaults they imply.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Display name (folder or repo name).
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Architecture family.
    pub family: Family,
    /// eps or v prediction.
    pub prediction: Prediction,
    /// Distilled few-step model (trailing timesteps in its scheduler config).
    pub turbo: bool,
    /// The resolution it was trained at (UNet sample size times the VAE's downscale).
    pub native_size: u32,
    /// Pixels per latent cell.
    pub downscale: u32,
    /// Latent scaling factor of the VAE.
    pub scaling_factor: f64,
    /// A1111's short hash of a single-file checkpoint, when the caller computed it.
    pub hash: Option<String>,
    /// The settings the model folder recommends for itself (`sumi.json`), over its family's.
    pub recommended: Option<Recommended>,
}

/// Defaults a family implies for a new request.
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    /// Steps.
    pub steps: u32,
    /// CFG scale.
    pub cfg: f64,
    /// Sampler display name.
    pub sampler: &'static str,
    /// Schedule display name.
    pub schedule: &'static str,
    /// Width and height.
    pub size: u32,
}

impl ModelInfo {
    /// Request defaults for this model: its family's, then what the model recommends.
    pub fn defaults(&self) -> Defaults {
        let mut d = if self.turbo {
            Defaults {
                steps: 1,
                cfg: 1.0,
                sampler: "Euler a",
                schedule: "Normal",
                size: self.native_size,
            }
        } else {
            Defaults {
                steps: 20,
                cfg: if self.family == Family::Sdxl {
                    6.0
                } else {
                    7.0
                },
                sampler: "DPM++ 2M",
                schedule: "Karras",
                size: self.native_size,
            }
        };
        if let Some(r) = &self.recommended {
            d.steps = r.steps.unwrap_or(d.steps);
            d.cfg = r.cfg.unwrap_or(d.cfg);
            d.sampler = r.sampler.unwrap_or(d.sampler);
            d.schedule = r.schedule.unwrap_or(d.schedule);
        }
        d
    }
}

/// A model ready to generate: text encoders, UNet, VAE decoder and noise schedule.
pub struct Model {
    /// Facts and defaults.
    pub info: ModelInfo,
    /// Prompt encoder(s).
    pub text: TextEncoder,
    /// Denoising UNet.
    pub unet: UNet,
    /// Latent decoder.
    pub vae: VaeDecoder,
    /// The scheduler config the model shipped with.
    pub scheduler: SchedulerConfig,
    /// Training noise levels.
    pub levels: NoiseLevels,
    /// Device the weights live on.
    pub device: Device,
    /// Compute dtype.
    pub dtype: DType,
    /// How previews turn latents into colours (fitted to the VAE when it is not a standard one).
    pub preview: crate::preview::PreviewMap,
}

/// Which compute dtype to use on `device`: f32 on CPU, f16 on GPUs.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::F16
    }
}

#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
}

/// Options for loading a model beyond its path.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Prediction type override (single files do not say whether they are v-prediction models).
    pub prediction: Option<Prediction>,
    /// A diffusers folder whose `unet/`, `vae/` and `text_encoder*/` `config.json` replace the
    /// configs inferred from a single file (like diffusers' `from_single_file(config=...)`); it is
    /// also searched for tokenizers first.
    pub config_dir: Option<PathBuf>,
    /// Extra folders searched for `tokenizer/` and `tokenizer_2/` when loading a single file.
    pub tokenizer_dirs: Vec<PathBuf>,
    /// A separate VAE (diffusers `vae/` folder, a model folder with `vae/`, or a `.safetensors` file).
    pub vae: Option<PathBuf>,
}

/// A stage of loading a model, reported to [`Model::load_with_progress`]'s callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadStage {
    /// What is being read: "config", "text encoder", "UNet" or "VAE".
    pub name: &'static str,
    /// Share of the model's weights read before this stage, 0 to 1 (by bytes for folders,
    /// typical shares for single files).
    pub fraction: f32,
}

/// Bytes of the `.safetensors` files directly in `dir` (0 when unreadable).
fn weight_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Resolves what the user typed for `--model`: a folder, or a repo id in the local HF cache.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if hub::looks_like_repo_id(spec) {
        return hub::cached_snapshot(spec);
    }
    Err(Error::model(
        path,
        "no such file or folder (pass a diffusers model folder, a .safetensors checkpoint, or a Hugging Face repo id that is in the local cache)",
    ))
}

impl Model {
    /// Loads a diffusers-layout model folder or a single-file `.safetensors` checkpoint on
    /// `device` in `dtype`.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default(), device, dtype)
    }

    /// [`Model::load`] with options (prediction override, config folder, tokenizers, VAE).
    pub fn load_with(
        path: &Path,
        options: &LoadOptions,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        Self::load_with_progress(path, options, device, dtype, &mut |_| {})
    }

    /// [`Model::load_with`], calling `progress` as each stage (config, text encoder, UNet, VAE) starts.
    pub fn load_with_progress(
        path: &Path,
        options: &LoadOptions,
        device: &Device,
        dtype: DType,
        progress: &mut dyn FnMut(LoadStage),
    ) -> Result<Self> {
        progress(LoadStage {
            name: "config",
            fraction: 0.0,
        });
        let mut model = if path.is_file() {
            Self::load_single_file(path, options, device, dtype, progress)?
        } else {
            Self::load_folder(path, options, device, dtype, progress)?
        };
        if let Some(vae_path) = &options.vae {
            model.vae = load_vae_override(vae_path, model.info.scaling_factor, device, dtype)?;
            model.info.downscale = model.vae.config().downscale() as u32;
        }
        model.preview = crate::preview::PreviewMap::for_vae(
            &model.vae,
            model.info.family,
            model.info.scaling_factor,
            device,
            dtype,
        )?;
        Ok(model)
    }

    fn load_folder(
        dir: &Path,
        options: &LoadOptions,
        device: &Device,
        dtype: DType,
        progress: &mut dyn FnMut(LoadStage),
    ) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::model(
                dir,
                "no such file or folder (pass a diffusers model folder or a .safetensors checkpoint)",
            ));
        }
        let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
        let scheduler = read_scheduler_config(&dir.join("scheduler/scheduler_config.json"))?;
        let levels = NoiseLevels::from_config(&scheduler).map_err(|e| {
            Error::model(dir.join("scheduler/scheduler_config.json"), e.to_string())
        })?;

        let unet_cfg = read_unet_config(&dir.join("unet"))?;
        let vae_cfg = read_vae_config(&dir.join("vae"))?;

        let prediction = match scheduler.prediction_type.as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::V,
            other => {
                return Err(Error::model(
                    dir.join("scheduler/scheduler_config.json"),
                    format!("prediction_type {other:?} is not supported (epsilon or v_prediction)"),
                ))
            }
        };
        let prediction = options.prediction.unwrap_or(prediction);
        let family = detect_family(&unet_cfg, index.class_name.as_deref(), dir);
        let turbo = scheduler.timestep_spacing == "trailing";
        let downscale = vae_cfg.downscale() as u32;
        let info = ModelInfo {
            name: model_name(dir),
            path: dir.to_path_buf(),
            family,
            prediction,
            turbo,
            native_size: unet_cfg.sample_size as u32 * downscale,
            downscale,
            scaling_factor: vae_cfg.scaling_factor,
            hash: None,
            recommended: recommended::read(dir)?,
        };
        tracing::info!(name = %info.name, family = ?family, ?prediction, "loading model");

        let text_bytes =
            weight_bytes(&dir.join("text_encoder")) + weight_bytes(&dir.join("text_encoder_2"));
        let unet_bytes = weight_bytes(&dir.join("unet"));
        let total = (text_bytes + unet_bytes + weight_bytes(&dir.join("vae"))).max(1) as f32;
        let mut stage = |name, done: u64| {
            progress(LoadStage {
                name,
                fraction: done as f32 / total,
            })
        };
        stage("text encoder", 0);
        let text = TextEncoder::load(dir, device, dtype)?;
        stage("UNet", text_bytes);
        let unet = load_unet(&dir.join("unet"), unet_cfg, device, dtype)?;
        stage("VAE", text_bytes + unet_bytes);
        let vae = load_vae(&dir.join("vae"), vae_cfg, device, dtype)?;
        Ok(Self {
            info,
            text,
            unet,
            vae,
            scheduler,
            levels,
            device: device.clone(),
            dtype,
            preview: crate::preview::PreviewMap::for_family(family),
        })
    }
}

impl Model {
    fn load_single_file(
        path: &Path,
        options: &LoadOptions,
        device: &Device,
        dtype: DType,
        progress: &mut dyn FnMut(LoadStage),
    ) -> Result<Self> {
        use single_file as sf;
        let is_safetensors = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if sf::is_pickle_extension(path) {
            return Err(sf::refuse_pickle(path));
        }
        if !is_safetensors {
            return Err(Error::model(
                path,
                "not a .safetensors file; Sumi loads single-file .safetensors checkpoints and diffusers folders",
            ));
        }
        let ck = Arc::new(sf::Checkpoint::open(path)?);
        let hints = sf::YamlHints::next_to(path)?.unwrap_or_default();
        let inferred = sf::infer_config(&ck, &hints, options.prediction)?;
        let family = inferred.family;
        let (unet_cfg, vae_cfg, text_cfgs) = match &options.config_dir {
            Some(dir) => {
                let names: &[&str] = if family == Family::Sdxl {
                    &["text_encoder", "text_encoder_2"]
                } else {
                    &["text_encoder"]
                };
                let text = names
                    .iter()
                    .map(|n| ClipTextConfig::load(&dir.join(n).join("config.json")))
                    .collect::<Result<Vec<_>>>()?;
                (
                    read_unet_config(&dir.join("unet"))?,
                    read_vae_config(&dir.join("vae"))?,
                    text,
                )
            }
            None => (inferred.unet, inferred.vae, inferred.text),
        };
        let search = tokenizer_search(options);
        let tok_dirs = (0..text_cfgs.len())
            .map(|i| find_tokenizer(family, i, path, &search))
            .collect::<Result<Vec<_>>>()?;
        unet_cfg
            .validate()
            .map_err(|e| Error::model(path, format!("unsupported UNet: {e}")))?;
        vae_cfg
            .validate()
            .map_err(|e| Error::model(path, format!("unsupported VAE: {e}")))?;
        // Typical shares of an SD checkpoint's bytes: text encoder ~7%, UNet ~86%, VAE ~7%.
        progress(LoadStage {
            name: "text encoder",
            fraction: 0.0,
        });
        let mut encoders = Vec::new();
        for ((i, mut cfg), tok_dir) in text_cfgs.into_iter().enumerate().zip(tok_dirs) {
            let mut tok = ClipTokenizer::load(&tok_dir)?;
            // Pool at the tokenizer's own end-of-text token.
            cfg.eos_token_id = tok.eos_id();
            let vb = sf::text_builder(&ck, family, i, dtype, device)?;
            let model = ClipTextModel::from_var_builder(cfg, vb, device, dtype).map_err(|e| {
                Error::model(path, format!("text encoder {} does not load: {e}", i + 1))
            })?;
            tok.limit_len(model.config().max_position_embeddings);
            encoders.push((tok, model));
        }
        let style = if family == Family::Sdxl {
            TextStyle::Penultimate
        } else {
            TextStyle::LastLayer
        };
        let text = TextEncoder::from_parts(encoders, style, family == Family::Sdxl, device, dtype)?;
        progress(LoadStage {
            name: "UNet",
            fraction: 0.07,
        });
        let unet = UNet::new(unet_cfg.clone(), sf::unet_builder(&ck, dtype, device)?)
            .map_err(|e| Error::model(path, format!("UNet weights do not load: {e}")))?;
        progress(LoadStage {
            name: "VAE",
            fraction: 0.93,
        });
        let vb = sf::vae_builder(
            &ck,
            "first_stage_model.",
            vae_cfg.block_out_channels.len(),
            dtype,
            device,
        );
        let vae = VaeDecoder::new(vae_cfg.clone(), vb)
            .map_err(|e| Error::model(path, format!("VAE weights do not load: {e}")))?;
        let scheduler = sf::standard_scheduler(inferred.prediction);
        let levels =
            NoiseLevels::from_config(&scheduler).map_err(|e| Error::model(path, e.to_string()))?;
        let downscale = vae_cfg.downscale() as u32;
        let info = ModelInfo {
            name: model_name(path),
            path: path.to_path_buf(),
            family,
            prediction: inferred.prediction,
            turbo: false,
            native_size: unet_cfg.sample_size as u32 * downscale,
            downscale,
            scaling_factor: vae_cfg.scaling_factor,
            hash: None,
            recommended: None,
        };
        tracing::info!(name = %info.name, ?family, prediction = ?info.prediction, "loaded single-file checkpoint");
        Ok(Self {
            info,
            text,
            unet,
            vae,
            scheduler,
            levels,
            device: device.clone(),
            dtype,
            preview: crate::preview::PreviewMap::for_family(family),
        })
    }
}

/// Hugging Face repos (and subfolders) that hold the tokenizer of text encoder `index` of `family`.
fn hub_tokenizers(family: Family, index: usize) -> &'static [(&'static str, &'static str)] {
    match (family, index) {
        (Family::Sd2, _) => &[
            ("stabilityai/stable-diffusion-2-1", "tokenizer"),
            ("stabilityai/stable-diffusion-2-1-base", "tokenizer"),
        ],
        // SDXL's own tokenizer_2 pads with "!"; laion's pads with the end token.
        (Family::Sdxl, 1) => &[
            ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2"),
            ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
        ],
        _ => &[
            ("openai/clip-vit-large-patch14", ""),
            ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"),
            ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer"),
        ],
    }
}

/// The Hugging Face repo and folder ("" for its root) that Sumi downloads the tokenizer of text
/// encoder `index` of `family` from.
pub fn tokenizer_download(family: Family, index: usize) -> (&'static str, &'static str) {
    hub_tokenizers(family, index)[0]
}

/// Folders searched for tokenizers besides the defaults: the config folder, then the given ones.
fn tokenizer_search(options: &LoadOptions) -> Vec<PathBuf> {
    let mut search = Vec::new();
    search.extend(options.config_dir.iter().cloned());
    search.extend(options.tokenizer_dirs.iter().cloned());
    search
}

/// The text encoders (family, index) of a single-file checkpoint whose tokenizer is not on this
/// computer; empty for folders and for checkpoints whose tokenizers are all found.
pub fn missing_tokenizers(
    checkpoint: &Path,
    options: &LoadOptions,
) -> Result<Vec<(Family, usize)>> {
    if !checkpoint.is_file() {
        return Ok(Vec::new());
    }
    let family = single_file::Checkpoint::open(checkpoint)?.family()?;
    let count = if family == Family::Sdxl { 2 } else { 1 };
    let search = tokenizer_search(options);
    Ok((0..count)
        .filter(|&i| find_tokenizer(family, i, checkpoint, &search).is_err())
        .map(|i| (family, i))
        .collect())
}

fn is_tokenizer_dir(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file()
        || (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file())
}

/// Finds the tokenizer folder for text encoder `index` of a single-file checkpoint: in the given
/// folders, in `SUMI_TOKENIZERS`, next to the checkpoint, then in the Hugging Face cache.
pub fn find_tokenizer(
    family: Family,
    index: usize,
    checkpoint: &Path,
    dirs: &[PathBuf],
) -> Result<PathBuf> {
    let sub = if index == 0 {
        "tokenizer"
    } else {
        "tokenizer_2"
    };
    let mut roots: Vec<PathBuf> = dirs.to_vec();
    if let Some(env) = std::env::var_os("SUMI_TOKENIZERS") {
        roots.extend(std::env::split_paths(&env));
    }
    if let Some(parent) = checkpoint.parent() {
        roots.push(parent.to_path_buf());
    }
    for root in &roots {
        let dir = root.join(sub);
        if is_tokenizer_dir(&dir) {
            return Ok(dir);
        }
    }
    let hub = hub_tokenizers(family, index);
    for (repo, folder) in hub {
        if let Ok(snap) = hub::cached_snapshot(repo) {
            let dir = if folder.is_empty() {
                snap
            } else {
                snap.join(folder)
            };
            if is_tokenizer_dir(&dir) {
                return Ok(dir);
            }
        }
    }
    let (repo, folder) = hub[0];
    let place = match roots.first() {
        Some(r) => format!("{}", r.join(sub).display()),
        None => format!("<folder>/{sub}"),
    };
    Err(Error::model(
        checkpoint,
        format!(
            "single-file checkpoints carry no tokenizer, and none was found for the {} text encoder{}. \
             `sumi generate` downloads it (a few MB, once) from {repo}{} when online; or run \
             `sumi models pull {repo} --tokenizers-only` on a connected computer and copy its Hugging Face \
             cache folder models--{} here, or pass --tokenizers DIR (or set SUMI_TOKENIZERS) with a folder \
             holding {sub}/ (vocab.json, merges.txt, tokenizer_config.json), e.g. {place}",
            family.display_name(),
            if family == Family::Sdxl { format!(" {}", index + 1) } else { String::new() },
            if folder.is_empty() { String::new() } else { format!(" ({folder}/)") },
            repo.replace('/', "--"),
        ),
    ))
}

/// Loads a separate VAE: a diffusers `vae/` folder, a model folder with `vae/`, or a
/// `.safetensors` file (LDM or diffusers names). `scaling` is the model's latent scaling factor.
pub fn load_vae_override(
    path: &Path,
    scaling: f64,
    device: &Device,
    dtype: DType,
) -> Result<VaeDecoder> {
    if path.is_dir() {
        let dir = if path.join("vae").join("config.json").is_file() {
            path.join("vae")
        } else {
            path.to_path_buf()
        };
        let cfg = read_vae_config(&dir)?;
        return load_vae(&dir, cfg, device, dtype);
    }
    if single_file::is_pickle_extension(path) {
        return Err(single_file::refuse_pickle(path));
    }
    if !path.is_file() {
        return Err(Error::model(path, "VAE file or folder does not exist"));
    }
    // A config.json beside the file (a diffusers `vae/` folder) describes it; else infer.
    let beside = path.parent().map(|d| d.join("config.json"));
    let config = match beside {
        Some(c) if c.is_file() => Some(read_vae_config(c.parent().unwrap_or(Path::new(".")))?),
        _ => None,
    };
    let (cfg, vb) = single_file::standalone_vae(path, config, dtype, device, scaling)?;
    VaeDecoder::new(cfg, vb)
        .map_err(|e| Error::model(path, format!("VAE weights do not load: {e}")))
}

/// Reads a `scheduler_config.json`. Stable Diffusion configs that do not say otherwise keep
/// DDIM's last step at the first training level (`set_alpha_to_one: false`), as SD 1.x ships it.
pub fn read_scheduler_config(path: &Path) -> Result<SchedulerConfig> {
    let mut json: serde_json::Value = read_json(path)?;
    if let Some(obj) = json.as_object_mut() {
        obj.entry("set_alpha_to_one")
            .or_insert(serde_json::Value::Bool(false));
    }
    serde_json::from_value(json).map_err(|e| Error::model(path, format!("invalid config: {e}")))
}

/// Reads `config.json` in a `unet/` folder.
pub fn read_unet_config(unet_dir: &Path) -> Result<UNetConfig> {
    let path = unet_dir.join("config.json");
    let cfg: UNetConfig = read_json(&path)?;
    cfg.validate().map_err(|e| Error::model(&path, e))?;
    Ok(cfg)
}

/// Reads `config.json` in a `vae/` folder.
pub fn read_vae_config(vae_dir: &Path) -> Result<VaeConfig> {
    let path = vae_dir.join("config.json");
    let cfg: VaeConfig = read_json(&path)?;
    cfg.validate().map_err(|e| Error::model(&path, e))?;
    Ok(cfg)
}

/// Loads the UNet weights of a `unet/` folder for `config`.
pub fn load_unet(
    unet_dir: &Path,
    config: UNetConfig,
    device: &Device,
    dtype: DType,
) -> Result<UNet> {
    let vb = var_builder(
        &find_weights(unet_dir, "diffusion_pytorch_model")?,
        dtype,
        device,
    )?;
    UNet::new(config, vb)
        .map_err(|e| Error::model(unet_dir, format!("weights do not match config.json: {e}")))
}

/// Loads the VAE decoder weights of a `vae/` folder for `config`.
pub fn load_vae(
    vae_dir: &Path,
    config: VaeConfig,
    device: &Device,
    dtype: DType,
) -> Result<VaeDecoder> {
    let vb = var_builder(
        &find_weights(vae_dir, "diffusion_pytorch_model")?,
        dtype,
        device,
    )?;
    VaeDecoder::new(config, vb)
        .map_err(|e| Error::model(vae_dir, format!("weights do not match config.json: {e}")))
}

/// The family of a diffusers folder from its configs, without loading weights.
pub fn folder_family(dir: &Path) -> Option<Family> {
    let index: ModelIndex = read_json(&dir.join("model_index.json")).ok()?;
    let unet: UNetConfig = read_json(&dir.join("unet/config.json")).ok()?;
    Some(detect_family(&unet, index.class_name.as_deref(), dir))
}

/// Detects the family from the model's structure, never from its name.
fn detect_family(unet: &UNetConfig, class_name: Option<&str>, dir: &Path) -> Family {
    let xl = unet.addition_embed_type.as_deref() == Some("text_time")
        || class_name.is_some_and(|c| c.contains("XL"))
        || dir.join("text_encoder_2").is_dir();
    if xl {
        Family::Sdxl
    } else if unet.use_linear_projection {
        Family::Sd2
    } else {
        Family::Sd1
    }
}

/// The name the gallery records for the model at `path`: a single file's stem, a folder's name,
/// or the repo id of a Hugging Face cache snapshot.
pub fn model_name(path: &Path) -> String {
    if path.is_file() {
        return path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
    }
    // A hub snapshot folder is named by its commit hash; show the repo instead.
    if let Some(repo) = hub::repo_of_snapshot(path) {
        return repo;
    }
    path.canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}
