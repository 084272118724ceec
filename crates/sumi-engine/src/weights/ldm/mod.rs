//! Single-file checkpoints in the original Stable Diffusion (LDM) layout, as model sites ship
//! them: `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE), `cond_stage_model.*`
//! (SD 1.x CLIP-L / SD 2.x OpenCLIP) or `conditioner.embedders.{0,1}.*` (SDXL).
//!
//! The header is read once; each component gets a [`VarBuilder`] over a backend that maps
//! the diffusers-style names Sumi's modules ask for onto the file's own names, splitting fused
//! OpenCLIP attention weights and reshaping 1x1-conv VAE attention weights as each tensor is
//! read from the file. Nothing is converted or written to disk. Configs are inferred from tensor names and
//! shapes; what shapes cannot tell (head counts, v-prediction) comes from the standard values of
//! the family, a companion `.yaml`, or the caller's options.

mod checkpoint;
mod infer;
mod names;

pub use checkpoint::{is_pickle_extension, refuse_pickle, Checkpoint, YamlHints};
pub use infer::{infer_config, infer_standalone_clip, standard_scheduler, InferredConfig};
pub use names::{
    standalone_text_builder, standalone_vae, text_builder, unet_builder, vae_builder, LdmUnetNames,
};
