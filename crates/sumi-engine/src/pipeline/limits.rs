//! The limits every request field is checked against.

/// Largest step count a request may ask for.
pub const MAX_STEPS: u32 = 500;
/// Largest width or height in pixels.
pub const MAX_SIZE: u32 = 8192;
/// Largest classifier-free guidance scale (A1111's slider stops at 30; larger only burns the image).
pub const MAX_CFG: f64 = 100.0;
