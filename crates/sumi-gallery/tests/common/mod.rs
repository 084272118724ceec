//! Shared helpers for the gallery's integration tests.
#![allow(dead_code)]

pub mod samples;

use image::RgbImage;
use sumi_gallery::{GenerationMeta, GenerationParams};

/// A request whose fields vary with `i`.
pub fn params(i: u64) -> GenerationParams {
    GenerationParams {
        prompt: format!("a painting of lighthouse number {i}, stormy sea"),
        negative_prompt: if i.is_multiple_of(2) {
            "blurry".into()
        } else {
            String::new()
        },
        seed: 1000 + i,
        steps: 20,
        cfg: 7.5,
        sampler: if i.is_multiple_of(3) {
            "Euler a".into()
        } else {
            "DPM++ 2M".into()
        },
        schedule: "Karras".into(),
        width: 16,
        height: 8,
        model_name: if i.is_multiple_of(2) {
            "sd15".into()
        } else {
            "sdxl".into()
        },
        model_hash: Some("6ce0161689".into()),
        noise_source: "cpu".into(),
        // Settings stored in the `extra` column, set on some rows.
        clip_skip: if i.is_multiple_of(5) { 2 } else { 1 },
        ensd: if i.is_multiple_of(7) { 31337 } else { 0 },
        variation_seed: i.is_multiple_of(4).then_some(i),
        variation_strength: if i.is_multiple_of(4) { 0.25 } else { 0.0 },
        ..Default::default()
    }
}

/// Run facts for tests.
pub fn meta() -> GenerationMeta {
    GenerationMeta {
        engine_version: "0.1.0".into(),
        device: "cpu".into(),
        dtype: "f32".into(),
        duration_ms: 1234,
        comparison: None,
        note: None,
    }
}

/// A small image whose pixels depend on `i`.
pub fn image(i: u64) -> RgbImage {
    RgbImage::from_fn(16, 8, |x, y| {
        image::Rgb([x as u8 * 16, y as u8 * 32, i as u8])
    })
}
