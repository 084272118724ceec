//! The generation record: the request that made an image and what the gallery stores about it.

use serde::{Deserialize, Serialize};

/// Everything needed to make the same image again; this is what re-run returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// The positive prompt.
    pub prompt: String,
    /// The negative prompt (empty when none).
    pub negative_prompt: String,
    /// The noise seed.
    pub seed: u64,
    /// Number of sampling steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub cfg: f64,
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
    /// Which noise source made the initial noise (e.g. "cpu").
    pub noise_source: String,
}

/// Facts about how a generation ran, beside the request itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationMeta {
    /// Version of the engine that made the image.
    pub engine_version: String,
    /// Device it ran on (e.g. "cpu", "cuda:0").
    pub device: String,
    /// Tensor data type it ran in (e.g. "f32").
    pub dtype: String,
    /// Wall time of the generation in milliseconds.
    pub duration_ms: u64,
    /// Side-by-side comparison this image belongs to, if any.
    pub comparison: Option<ComparisonSlot>,
}

/// A place in a comparison group (e.g. one sampler of a sampler sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComparisonSlot {
    /// The group id (from `Gallery::new_comparison_group` or chosen by the caller).
    pub group: i64,
    /// Position within the group, ascending.
    pub position: i64,
}

/// A stored generation: the request, how it ran, and where its files are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Row id, unique within this gallery.
    pub id: i64,
    /// The request that made the image.
    pub params: GenerationParams,
    /// How it ran.
    pub meta: GenerationMeta,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Whether the user marked it as a favourite.
    pub favourite: bool,
    /// File name of the PNG inside the gallery's `images/` folder.
    pub image_file: String,
    /// File name of the thumbnail inside the gallery's `thumbs/` folder.
    pub thumb_file: String,
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
