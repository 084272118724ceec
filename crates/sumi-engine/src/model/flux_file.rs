//! Loading Flux from a transformer file (`flux1-dev.safetensors`, a GGUF file, BFL or diffusers
//! names) and its companions as users keep them apart: T5 and CLIP-L text encoders, the VAE and
//! the tokenizers, each given by an option or found next to the file and in the part folders
//! beside its folder (`companions`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};

use super::companions::{self, PartKind};
use super::flux_folder::flux_levels;
use super::flux_parts;
use super::info::{model_name, ModelInfo};
use super::offload::{measured, PartBytes};
use super::options::{LoadOptions, LoadStage, Parts};
use super::patch::ModelParams;
use super::tokenizers::find_tokenizer;
use super::vae_file::load_vae_with_shift;
use crate::arch::clip::ClipTextModel;
use crate::arch::flux::FluxTransformer;
use crate::arch::t5::T5Encoder;
use crate::arch::vae::Vae;
use crate::family::flux::{DEV_MAX_SEQUENCE, SCHNELL_MAX_SEQUENCE};
use crate::family::Family;
use crate::parametrization::Parametrization;
use crate::sampling::flow::FlowSchedulerConfig;
use crate::sampling::schedules::SchedulerConfig;
use crate::text::t5_text::T5Tokenizer;
use crate::text::tokenizer::ClipTokenizer;
use crate::text::TextEncoder;
use crate::weights::gguf::GgufFile;
use crate::weights::ldm::{infer_standalone_clip, standalone_text_builder, Checkpoint};
use crate::{Error, Result};

/// The Flux VAE's latent shift (BFL's autoencoder), for VAE files that carry no config.
const VAE_SHIFT: f64 = 0.1159;

/// Where ComfyUI's all-in-one Flux checkpoints keep CLIP-L.
const CLIP_IN_CHECKPOINT: &str = "text_encoders.clip_l.transformer.";

/// The parts a ComfyUI all-in-one checkpoint holds besides the transformer: (T5, CLIP-L, VAE).
fn parts_inside(path: &Path) -> (bool, bool, bool) {
    match Checkpoint::open(path) {
        Ok(ck) => (
            ck.has("text_encoders.t5xxl.transformer.encoder.final_layer_norm.weight"),
            ck.has(&format!(
                "{CLIP_IN_CHECKPOINT}text_model.embeddings.token_embedding.weight"
            )),
            ck.has("vae.decoder.conv_in.weight"),
        ),
        Err(_) => (false, false, false),
    }
}

/// The `kind` part Sumi runs the Flux transformer file `path` with when no option names one:
/// the file itself when it holds the part (a ComfyUI all-in-one checkpoint), else the file
/// found beside it ([`companions::flux_default`]).
pub fn default_part(path: &Path, kind: PartKind) -> Option<PathBuf> {
    let (t5, clip, vae) = parts_inside(path);
    let inside = match kind {
        PartKind::T5 => t5,
        PartKind::ClipL => clip,
        PartKind::Vae => vae,
    };
    match inside {
        true => Some(path.to_path_buf()),
        false => companions::flux_default(path, kind),
    }
}

/// Whether the single file at `path` holds a Flux transformer: a GGUF file, or a safetensors
/// file with BFL or diffusers Flux block names (with or without ComfyUI's prefix).
pub fn is_flux_file(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    const KEYS: [&str; 4] = [
        "double_blocks.0.img_attn.qkv.weight",
        "model.diffusion_model.double_blocks.0.img_attn.qkv.weight",
        "single_transformer_blocks.0.proj_mlp.weight",
        "transformer_blocks.0.attn.add_q_proj.weight",
    ];
    match ext.as_deref() {
        Some("gguf") => {
            GgufFile::open(path).is_ok_and(|f| KEYS.iter().any(|k| f.shape(k).is_some()))
        }
        Some("safetensors") => {
            Checkpoint::open(path).is_ok_and(|ck| KEYS.iter().any(|k| ck.has(k)))
        }
        _ => false,
    }
}

/// The scheduler config Black Forest Labs' repositories ship: dev shifts with the image's size,
/// schnell does not shift.
fn scheduler_for(guidance_distilled: bool) -> FlowSchedulerConfig {
    match guidance_distilled {
        true => FlowSchedulerConfig {
            shift: 3.0,
            use_dynamic_shifting: true,
            ..FlowSchedulerConfig::default()
        },
        false => FlowSchedulerConfig::default(),
    }
}

/// The companion named by an option or found near `file`, or an error saying what is missing,
/// how to pass it and where Sumi looked.
fn companion(
    file: &Path,
    given: Option<&PathBuf>,
    kind: PartKind,
    example: &str,
) -> Result<PathBuf> {
    let what = kind.what();
    if let Some(p) = given {
        return match p.exists() {
            true => Ok(p.clone()),
            false => Err(Error::model(
                p,
                format!("{what} file or folder does not exist"),
            )),
        };
    }
    companions::flux_default(file, kind).ok_or_else(|| {
        let dirs = companions::search_dirs(file, kind);
        let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Error::model(
            file,
            format!(
                "is a Flux transformer without its {what}: pass {} FILE (e.g. {example}, or a \
                 diffusers folder); Sumi looked in {}",
                kind.flag(),
                looked.join(", ")
            ),
        )
    })
}

/// A folder given for a companion: itself when it holds `config.json`, else its `sub` folder.
fn component_dir(dir: &Path, sub: &str) -> PathBuf {
    match dir.join("config.json").is_file() {
        true => dir.to_path_buf(),
        false => dir.join(sub),
    }
}

/// The folders that may hold `tokenizer/` or `tokenizer_2/` for companions given as folders.
fn tokenizer_roots(paths: &[&Path]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths.iter().filter(|p| p.is_dir()) {
        out.push(p.to_path_buf());
        out.extend(p.parent().map(Path::to_path_buf));
    }
    out
}

/// Loads CLIP-L from a file with transformers' names (pooling at `eos`, the tokenizer's
/// end-of-text token), or from a diffusers folder.
fn load_clip(path: &Path, eos: u32, device: &Device, dtype: DType) -> Result<ClipTextModel> {
    if path.is_dir() {
        return ClipTextModel::load(&component_dir(path, "text_encoder"), device, dtype);
    }
    let ck = Arc::new(Checkpoint::open(path)?);
    let prefix = match ck.has(&format!(
        "{CLIP_IN_CHECKPOINT}text_model.embeddings.token_embedding.weight"
    )) {
        true => CLIP_IN_CHECKPOINT,
        false => "",
    };
    let mut cfg = infer_standalone_clip(&ck, prefix).map_err(|_| {
        Error::model(
            path,
            "is not a CLIP-L text encoder (no text_model.* tensors); pass ComfyUI's \
             clip_l.safetensors or a diffusers text_encoder folder",
        )
    })?;
    cfg.eos_token_id = eos;
    let vb = standalone_text_builder(&ck, prefix, dtype, device);
    ClipTextModel::from_var_builder(cfg, vb, device, dtype)
        .map_err(|e| Error::model(path, format!("CLIP-L does not load: {e}")))
}

/// Loads T5 from a single file (safetensors or GGUF) or a diffusers folder.
fn load_t5(path: &Path, device: &Device, dtype: DType) -> Result<T5Encoder> {
    match path.is_dir() {
        true => T5Encoder::load(&component_dir(path, "text_encoder_2"), device, dtype),
        false => T5Encoder::load_file(path, device, dtype),
    }
}

/// T5's tokenizer: `tokenizer_2/` next to a T5 folder, in the config and tokenizer folders,
/// `SUMI_TOKENIZERS` or beside the transformer file.
fn t5_tokenizer(file: &Path, options: &LoadOptions, roots: &[PathBuf]) -> Result<T5Tokenizer> {
    let mut dirs: Vec<PathBuf> = roots.to_vec();
    dirs.extend(options.config_dir.iter().cloned());
    dirs.extend(options.tokenizer_dirs.iter().cloned());
    if let Some(env) = std::env::var_os("SUMI_TOKENIZERS") {
        dirs.extend(std::env::split_paths(&env));
    }
    dirs.extend(file.parent().map(Path::to_path_buf));
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join("tokenizer_2")).collect();
    if let Some(dir) = candidates
        .iter()
        .find(|d| d.join("tokenizer.json").is_file())
    {
        return T5Tokenizer::load(dir);
    }
    if let Some(dir) = candidates.iter().find(|d| d.join("spiece.model").is_file()) {
        return T5Tokenizer::load(dir);
    }
    Err(Error::model(
        file,
        format!(
            "has no T5 tokenizer: pass --tokenizers DIR with a tokenizer_2/ folder holding \
             tokenizer.json (diffusers' Flux repositories ship it), e.g. {}",
            candidates
                .first()
                .map_or("<folder>/tokenizer_2".into(), |c| c.display().to_string())
        ),
    ))
}

/// Loads the Flux transformer file `path` and its companions.
pub(super) fn load(
    path: &Path,
    options: &LoadOptions,
    device: &Device,
    dtype: DType,
    progress: &mut dyn FnMut(LoadStage),
) -> Result<Parts> {
    let (t5_inside, clip_inside, vae_inside) = parts_inside(path);
    let inside = |yes: bool, given: &Option<PathBuf>| match (given, yes) {
        (None, true) => Some(path.to_path_buf()),
        _ => given.clone(),
    };
    let (t5_given, clip_given) = (
        inside(t5_inside, &options.t5),
        inside(clip_inside, &options.clip_l),
    );
    let t5_path = companion(
        path,
        t5_given.as_ref(),
        PartKind::T5,
        "t5xxl_fp16.safetensors or t5-v1_1-xxl-encoder-Q8_0.gguf",
    )?;
    let clip_path = companion(
        path,
        clip_given.as_ref(),
        PartKind::ClipL,
        "clip_l.safetensors",
    )?;
    // A VAE given with --vae replaces this one afterwards (Model::load_with_progress).
    let vae_path = match inside(vae_inside, &options.vae) {
        Some(v) => v,
        None => companion(path, None, PartKind::Vae, "ae.safetensors")?,
    };
    // Forge's modules: the parts kept in files of their own, in the order Forge lists them.
    let modules: Vec<PathBuf> = [&vae_path, &clip_path, &t5_path]
        .into_iter()
        .filter(|p| p.is_file() && p.as_path() != path)
        .cloned()
        .collect();
    let roots = tokenizer_roots(&[&t5_path, &clip_path]);
    let extended = LoadOptions {
        tokenizer_dirs: roots
            .iter()
            .cloned()
            .chain(options.tokenizer_dirs.iter().cloned())
            .collect(),
        ..options.clone()
    };
    let clip_tok_dir = find_tokenizer(Family::Flux, 0, path, &extended)?;
    let t5_tok = t5_tokenizer(path, options, &roots)?;

    progress(LoadStage {
        name: "text encoder",
        fraction: 0.0,
    });
    let mut tok = ClipTokenizer::load(&clip_tok_dir)?;
    let ((clip, clip_tables), text_bytes) =
        measured(|| load_clip(&clip_path, tok.eos_id(), device, dtype));
    let clip = clip?;
    tok.limit_len(clip.config().max_position_embeddings);
    let (dev, offload) = (device.clone(), options.offload);
    let load_t5 = Arc::new(move || self::load_t5(&t5_path, &dev, dtype));
    // The sequence length follows the transformer (dev or schnell), set below.
    let (t5, t5_bytes) = flux_parts::t5_text(load_t5, t5_tok, DEV_MAX_SEQUENCE, offload, device)?;
    let mut text = TextEncoder::flux((tok, clip), t5, device, dtype)?;
    progress(LoadStage {
        name: "transformer",
        fraction: 0.3,
    });
    let (file, dev) = (path.to_path_buf(), device.clone());
    let net = flux_parts::network(
        Arc::new(move || FluxTransformer::load_file(&file, &dev, dtype)),
        offload,
    )?;
    flux_parts::check_widths(&net.config, text.pooled_width(), text.context_dim())
        .map_err(|e| Error::model(path, e.to_string()))?;
    let distilled = net.guidance_distilled;
    text.set_t5_max_len(match distilled {
        true => DEV_MAX_SEQUENCE,
        false => SCHNELL_MAX_SEQUENCE,
    });
    progress(LoadStage {
        name: "VAE",
        fraction: 0.95,
    });
    let ((vae, _), vae_bytes) = measured(|| {
        load_vae_with_shift(
            &vae_path,
            Family::Flux.spec().scaling_factor,
            Some(VAE_SHIFT),
            device,
            dtype,
        )
    });
    let vae: Vae = vae?;
    let downscale = vae.downscale() as u32;
    let info = ModelInfo {
        name: model_name(path),
        path: path.to_path_buf(),
        family: Family::Flux,
        prediction: Parametrization::Flow,
        turbo: false,
        guidance_distilled: distilled,
        native_size: 128 * downscale,
        downscale,
        scaling_factor: vae.config().scaling_factor,
        hash: None,
        vae_name: None,
        vae_hash: None,
        modules,
        recommended: None,
    };
    let params = ModelParams {
        unet: net.tables.into_iter().next().unwrap_or_default(),
        text: clip_tables.into_iter().take(1).map(|t| (0, t)).collect(),
        ldm: None,
    };
    Ok(Parts {
        info,
        text,
        network: net.network,
        memory: PartBytes {
            network: net.bytes,
            text: text_bytes,
            t5: t5_bytes,
            vae: vae_bytes,
        },
        vae,
        scheduler: SchedulerConfig {
            prediction_type: Parametrization::Flow.config_name().into(),
            ..SchedulerConfig::default()
        },
        levels: flux_levels(scheduler_for(distilled), distilled),
        params,
    })
}
