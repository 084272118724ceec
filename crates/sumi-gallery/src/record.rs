//! The generation record: the request that made an image and what the gallery stores about it.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Everything needed to make the same image again; this is what re-run returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct GenerationParams {
    /// The positive prompt.
    pub prompt: String,
    /// The negative prompt (empty when none).
    pub negative_prompt: String,
    /// The noise seed.
    #[ts(type = "number")]
    pub seed: u64,
    /// Number of sampling steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub cfg: f64,
    /// Distilled guidance scale of guidance-distilled models (Flux dev; Forge's "Distilled CFG
    /// Scale"); `None` for other models.
    #[serde(default)]
    pub guidance: Option<f64>,
    /// T5 tokens per prompt when the request set them (Flux); `None`: the model's default.
    #[serde(default)]
    pub max_sequence_length: Option<u32>,
    /// Sampler, by its A1111 display name (e.g. "DPM++ 2M").
    pub sampler: String,
    /// Schedule type, by its A1111 display name (e.g. "Karras").
    pub schedule: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Model name as shown to the user.
    pub model_name: String,
    /// A1111 short model hash: the first 10 hex digits of the checkpoint's SHA-256.
    pub model_hash: Option<String>,
    /// A separate VAE, by the name A1111's `VAE` gives it (its file name), when one was used.
    #[serde(default)]
    pub vae_name: Option<String>,
    /// A1111's short hash of that VAE file (`VAE hash`: 10 hex digits of its SHA-256).
    #[serde(default)]
    pub vae_hash: Option<String>,
    /// Forge's additional modules (`Module 1`, `Module 2`, ...): the VAE and text-encoder files
    /// a model ran with apart from its own file, by their names without extension (for Flux
    /// e.g. `ae`, `clip_l`, `t5xxl_fp16`), which a re-run looks for beside the model.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Which noise source made the noise: "cpu", "nv", "comfy-cpu" or "comfy-nv".
    pub noise_source: String,
    /// A1111's eta noise seed delta (0: none).
    #[serde(default)]
    #[ts(type = "number")]
    pub ensd: u64,
    /// A1111's variation seed, when one was used.
    #[serde(default)]
    #[ts(type = "number | null")]
    pub variation_seed: Option<u64>,
    /// How far towards the variation seed's noise, 0 to 1.
    #[serde(default)]
    pub variation_strength: f64,
    /// CLIP layers skipped from the end (1: none; A1111's "Clip skip").
    #[serde(default = "one")]
    pub clip_skip: u32,
    /// How prompt weights were applied: "original" (A1111's default), "no-norm", "ignore",
    /// "none" or "comfy".
    #[serde(default = "original")]
    pub emphasis: String,
    /// How colours became 8-bit values: "round" (Sumi, diffusers) or "truncate" (A1111,
    /// ComfyUI).
    #[serde(default = "round")]
    pub quantize: String,
    /// Textual-inversion embeddings the prompts used, as A1111's `TI hashes` lists them.
    #[serde(default)]
    pub ti_hashes: Vec<NamedHash>,
    /// LoRAs applied, as A1111's `Lora hashes` lists them (the name as the prompt's tag gives it).
    #[serde(default)]
    pub lora_hashes: Vec<NamedHash>,
    /// What an image-to-image generation started from and how (A1111's img2img settings).
    #[serde(default)]
    #[ts(type = "SourceParams | null")]
    pub img2img: Option<SourceParams>,
    /// The hires fix pass, if any.
    #[serde(default)]
    #[ts(type = "HiresParams | null")]
    pub hires: Option<HiresParams>,
}

/// The settings of an image-to-image generation and what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct SourceParams {
    /// SHA-256 of the init picture's bytes, kept in the gallery's `sources/` folder under that
    /// name; empty for an imported image whose source Sumi does not have.
    pub init_image: String,
    /// The gallery image the init picture is, when it is one.
    #[ts(type = "number | null")]
    pub made_from: Option<i64>,
    /// A1111's `Denoising strength`.
    pub strength: f64,
    /// `just`, `crop_and_resize` or `resize_and_fill`.
    pub resize_mode: String,
    /// A1111's "img2img fix steps".
    pub fixed_steps: bool,
    /// SHA-256 of the mask's bytes (in `sources/`), if inpainting.
    pub mask: Option<String>,
    /// A1111's `Mask blur`.
    pub mask_blur: u32,
    /// Whether the mask was inverted.
    pub invert_mask: bool,
    /// `fill`, `original`, `latent_noise` or `latent_nothing`.
    pub masked_content: String,
    /// A1111's `Inpaint area: Only masked`.
    pub only_masked: bool,
    /// A1111's `Masked area padding`.
    pub masked_padding: u32,
    /// Outpainting: pixels added left, right, top, bottom.
    pub outpaint: Option<[u32; 4]>,
}

impl Default for SourceParams {
    fn default() -> Self {
        Self {
            init_image: String::new(),
            made_from: None,
            strength: 0.75,
            resize_mode: "just".into(),
            fixed_steps: false,
            mask: None,
            mask_blur: 4,
            invert_mask: false,
            masked_content: "original".into(),
            only_masked: false,
            masked_padding: 32,
            outpaint: None,
        }
    }
}

/// A hires fix pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct HiresParams {
    /// A1111's `Hires upscale` (used when width and height are 0).
    pub scale: f64,
    /// A1111's `Hires resize` width (0: from the height or the scale).
    pub width: u32,
    /// `Hires resize` height.
    pub height: u32,
    /// A1111's `Hires upscaler` name.
    pub upscaler: String,
    /// A1111's `Hires steps` (0: the first pass's).
    pub steps: u32,
    /// The second pass's `Denoising strength`.
    pub strength: f64,
    /// `Hires sampler` (empty: the first pass's).
    pub sampler: String,
    /// `Hires schedule type` (empty: the first pass's).
    pub schedule: String,
    /// `Hires prompt` (empty: the first pass's).
    pub prompt: String,
    /// `Hires negative prompt` (empty: the first pass's).
    pub negative_prompt: String,
}

impl Default for HiresParams {
    fn default() -> Self {
        Self {
            scale: 2.0,
            width: 0,
            height: 0,
            upscaler: "Latent".into(),
            steps: 0,
            strength: 0.7,
            sampler: String::new(),
            schedule: String::new(),
            prompt: String::new(),
            negative_prompt: String::new(),
        }
    }
}

/// A file named in a prompt and A1111's short hash of it (`name: 0123456789ab`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct NamedHash {
    /// The name the prompt uses (A1111 drops `:` and `,` from it).
    pub name: String,
    /// The short hash: 12 hex digits for LoRAs and embeddings.
    pub hash: String,
}

impl NamedHash {
    /// A name and hash, with the characters A1111 drops from names dropped.
    pub fn new(name: &str, hash: &str) -> Self {
        Self {
            name: name.replace([':', ','], ""),
            hash: hash.to_string(),
        }
    }
}

fn round() -> String {
    "round".into()
}

fn one() -> u32 {
    1
}

fn original() -> String {
    "original".into()
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 20,
            cfg: 7.0,
            guidance: None,
            max_sequence_length: None,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 512,
            height: 512,
            model_name: String::new(),
            model_hash: None,
            vae_name: None,
            vae_hash: None,
            modules: Vec::new(),
            noise_source: "cpu".into(),
            ensd: 0,
            variation_seed: None,
            variation_strength: 0.0,
            clip_skip: 1,
            emphasis: original(),
            quantize: round(),
            ti_hashes: Vec::new(),
            lora_hashes: Vec::new(),
            img2img: None,
            hires: None,
        }
    }
}

impl GenerationParams {
    /// Whether the model called `name`, with A1111 short hash `hash`, is the one that made this
    /// image: by hash when both are known (a renamed file is still the same model), else by name.
    pub fn made_with(&self, name: &str, hash: Option<&str>) -> bool {
        match (self.model_hash.as_deref(), hash) {
            (Some(recorded), Some(hash)) => recorded.eq_ignore_ascii_case(hash),
            _ => self.model_name == name,
        }
    }

    /// The hash recorded for the LoRA the prompt names `name`, if any.
    pub fn lora_hash(&self, name: &str) -> Option<&str> {
        let name = name.replace([':', ','], "");
        self.lora_hashes
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.hash.as_str())
    }

    /// The model as a person would name it: `name [hash]`.
    pub fn model_label(&self) -> String {
        match &self.model_hash {
            Some(hash) => format!("{} [{hash}]", self.model_name),
            None => self.model_name.clone(),
        }
    }
}

/// Facts about how a generation ran, beside the request itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct GenerationMeta {
    /// Version of the engine that made the image.
    pub engine_version: String,
    /// Device it ran on (e.g. "cpu", "cuda:0").
    pub device: String,
    /// Tensor data type it ran in (e.g. "f32").
    pub dtype: String,
    /// Wall time of the generation in milliseconds.
    #[ts(type = "number")]
    pub duration_ms: u64,
    /// Side-by-side comparison this image belongs to, if any.
    pub comparison: Option<ComparisonSlot>,
    /// What an import found about the settings: values that could not be read (and what was
    /// recorded instead), settings Sumi cannot use as they are, and parts of another tool's
    /// graph it did not understand; sentences joined with "; ". `None` for images made here
    /// and imports without remarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A place in a comparison group (e.g. one sampler of a sampler sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ComparisonSlot {
    /// The group id (from `Gallery::new_comparison_group` or chosen by the caller).
    #[ts(type = "number")]
    pub group: i64,
    /// Position within the group, ascending.
    #[ts(type = "number")]
    pub position: i64,
}

/// A stored generation: the request, how it ran, and where its files are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Generation {
    /// Row id, unique within this gallery.
    #[ts(type = "number")]
    pub id: i64,
    /// The request that made the image.
    pub params: GenerationParams,
    /// How it ran.
    pub meta: GenerationMeta,
    /// When it was made, in milliseconds since the Unix epoch.
    #[ts(type = "number")]
    pub created_at: i64,
    /// Whether the user marked it as a favourite.
    pub favourite: bool,
    /// Where its model was loaded from on this computer (`None` for imports and older images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(skip)]
    pub model_files: Option<ModelFiles>,
    /// File name of the PNG inside the gallery's `images/` folder.
    pub image_file: String,
    /// File name of the thumbnail inside the gallery's `thumbs/` folder.
    pub thumb_file: String,
}

/// Where a generation's model and its separately given parts were loaded from, as absolute
/// paths on this computer: what a re-run needs besides the settings. Stored in the gallery's
/// database only, never in the PNG (paths say things about the computer they come from).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelFiles {
    /// The model: a diffusers folder or a single file.
    pub model: String,
    /// A separate VAE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<String>,
    /// Flux's T5 text encoder, when given apart from the transformer file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t5: Option<String>,
    /// Flux's CLIP-L text encoder, when given apart from the transformer file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_l: Option<String>,
    /// A diffusers folder whose configs replaced those inferred from a single file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_dir: Option<String>,
    /// Folders searched for tokenizers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokenizer_dirs: Vec<String>,
    /// The prediction type given for a single file ("eps" or "v").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
}

/// The lossless record Sumi embeds in its PNGs (chunk key [`crate::png_meta::SUMI_KEY`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedRecord {
    /// Format version of this JSON, for future readers.
    pub format: u32,
    /// The request.
    pub params: GenerationParams,
    /// How it ran.
    pub meta: GenerationMeta,
    /// Creation time in milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Current version of [`EmbeddedRecord`]'s JSON.
pub const EMBEDDED_FORMAT: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn made_by(name: &str, hash: Option<&str>) -> GenerationParams {
        GenerationParams {
            prompt: "p".into(),
            negative_prompt: String::new(),
            seed: 1,
            steps: 2,
            cfg: 7.0,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 64,
            height: 64,
            model_name: name.into(),
            model_hash: hash.map(str::to_string),
            noise_source: "cpu".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_model_is_known_by_hash_first_then_by_name() {
        let p = made_by("dreamy", Some("ab12cd34ef"));
        assert!(p.made_with("renamed", Some("AB12CD34EF")));
        assert!(!p.made_with("dreamy", Some("0000000000")));
        assert!(p.made_with("dreamy", None));
        assert!(!p.made_with("other", None));
        let folder = made_by("sd15", None);
        assert!(folder.made_with("sd15", Some("ab12cd34ef")));
        assert!(!folder.made_with("sd15-copy", None));
        assert_eq!(p.model_label(), "dreamy [ab12cd34ef]");
        assert_eq!(folder.model_label(), "sd15");
    }
}
