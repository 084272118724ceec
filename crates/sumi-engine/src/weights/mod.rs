//! Weight formats and where weights live: safetensors files read tensor by tensor (f32, f16,
//! bf16, fp8), GGUF files, the files of a diffusers component folder, JSON configs, single-file
//! checkpoints in the original (LDM) layout with their name map, single-file Flux transformers
//! (BFL names) and T5 encoders (llama.cpp names) with theirs, quantized matrices handed to
//! linear layers, the table of a loaded model's parameters, and LoRA / LyCORIS files.

pub mod bounds;
pub mod find;
pub mod flux_names;
pub mod gguf;
pub mod json;
pub mod ldm;
pub mod lora;
pub mod params;
pub mod pickle;
pub mod quantized;
pub mod safetensors;
pub mod single_file;
pub mod storage;
pub mod t5_names;
pub mod torch_zip;

pub use find::find_weights;
pub use json::read_json;
pub use safetensors::{build_with_weights, var_builder, SafetensorsFiles};
