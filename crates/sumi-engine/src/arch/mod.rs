//! Network architectures, one per file, built from their configs: the denoising UNet, the Flux
//! transformer, the VAE, the CLIP and T5 text encoders, and the interface every denoising network
//! offers.

pub mod clip;
pub mod flux;
pub mod flux_network;
pub mod network;
pub mod t5;
pub mod unet;
mod unet_memory;
pub mod vae;
