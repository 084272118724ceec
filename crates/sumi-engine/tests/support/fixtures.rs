//! The committed fixtures (`tests/fixtures/`) and their diffusers references, for the tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The reference tensors and JSON facts written for fixture `name`.
pub fn refs(name: &str) -> (HashMap<String, Tensor>, serde_json::Value) {
    let t = candle_core::safetensors::load(
        fixtures().join(format!("ref/{name}.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    let j = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("ref/{name}.json"))).unwrap(),
    )
    .unwrap();
    (t, j)
}

/// The largest absolute elementwise difference, in f32.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// `latent` decoded by `model`'s VAE as an `[h, w, 3]` image in 0..1.
pub fn decoded_image(model: &sumi_engine::Model, latent: &Tensor) -> Tensor {
    ((sumi_engine::pipeline::decode(model, latent).unwrap() / 2.0).unwrap() + 0.5)
        .unwrap()
        .clamp(0f32, 1f32)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .permute((1, 2, 0))
        .unwrap()
}
