//! Sumi's diffusion engine: loads Stable Diffusion models, samples images step by step and
//! reports progress as events. Tensors in, tensors out: it knows nothing of UI, databases or the
//! network, and reads only the model files it is given.

pub mod alloc;
pub mod arch;
pub mod denoiser;
pub mod device;
pub mod error;
pub mod family;
pub mod fileio;
pub mod imaging;
pub mod kernels;
pub mod mapped;
pub mod model;
pub mod nn;
pub mod noise;
pub mod parametrization;
pub mod pipeline;
pub mod preview;
pub mod profile;
pub mod sampling;
#[cfg(test)]
mod test_util;
pub mod text;
pub mod weights;

pub use error::{Error, Result};
pub use family::Family;
pub use model::{LoadOptions, Model, ModelInfo};
pub use parametrization::Parametrization;
pub use pipeline::{generate, generate_with, Event, GenerateInputs, Generated, Request};

/// The engine's version, recorded with every image.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
