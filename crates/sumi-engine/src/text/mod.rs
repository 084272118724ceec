//! Prompt encoding: tokenizers and CLIP text encoders turned into the conditioning the denoising
//! network takes, with A1111's prompt language (weights, `BREAK`, prompt editing, `AND`,
//! textual-inversion embeddings, clip skip) or ComfyUI's.
//!
//! SD 1.x/2.x use one encoder and its last layer (after the final layer norm). SDXL uses two:
//! the second-to-last layer of each, joined on the feature axis, plus the second encoder's
//! projected pooled output. Prompts longer than one sequence are cut into chunks of 75 tokens
//! (A1111's way), each encoded on its own and joined along the sequence axis.

mod chunks;
mod comfy;
mod conditioning;
pub mod embeddings;
mod encoder;
mod encoding;
pub mod options;
pub mod prompt;
mod pychars;
pub mod t5_text;
pub mod tokenizer;
mod weighting;

pub use conditioning::{CondSchedule, EncodedPrompts, PromptInfo, TextCond, TokenCount};
pub use embeddings::Embeddings;
pub use encoder::{Conditioning, TextEncoder};
pub use options::{
    check_clip_skip, check_prompt, default_clip_skip, Emphasis, EncodeOptions, MAX_CLIP_SKIP,
};
