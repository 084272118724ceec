//! Sumi's diffusion engine: loads Stable Diffusion models, samples images step by step and
//! reports progress as events. It knows nothing of UI, files other than models, or databases.

pub mod error;
pub mod sampling;
pub mod text;

pub use error::{Error, Result};
