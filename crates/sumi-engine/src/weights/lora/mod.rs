//! LoRA and LyCORIS files: reading every common format (kohya LoRA / LoCon / Tucker / DoRA,
//! LyCORIS LoHa / LoKr, diffusers / PEFT, ComfyUI and old diffusers), mapping their keys onto a
//! loaded model's layers (Flux's fused kohya layers split among diffusers' layers), and the delta
//! each module adds, by A1111's rules. Applying them to a model is `Model::set_loras`
//! (`model/patch.rs`).

pub(crate) mod delta;
pub(crate) mod error;
pub(crate) mod factored;
mod facts;
mod file;
pub(crate) mod flux;
pub(crate) mod format;
pub(crate) mod inplace;
pub(crate) mod keys;

pub use error::LoraError;
pub use facts::LoraFacts;
pub use file::{is_lora_candidate, LoraFile};
pub use format::Kind;
pub use keys::{Naming, Part};
