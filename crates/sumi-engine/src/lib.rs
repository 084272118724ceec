//! Sumi's diffusion engine: loads Stable Diffusion models, samples images step by step and
//! reports progress as events. It knows nothing of UI, files other than models, or databases.

pub mod alloc;
pub mod bench;
pub mod denoiser;
pub mod device;
pub mod error;
pub mod kernels;
pub mod model;
pub mod noise;
pub mod pipeline;
pub mod preview;
pub mod profile;
pub mod sampling;
#[cfg(test)]
mod test_util;
pub mod text;

pub use error::{Error, Result};
pub use model::{Family, LoadOptions, Model, ModelInfo, Prediction};
pub use pipeline::{generate, Event, Request};

/// The engine's version, recorded with every image.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
