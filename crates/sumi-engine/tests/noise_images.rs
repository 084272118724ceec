//! Whole images with A1111's and ComfyUI's noise rules (NV source, ENSD, variation seeds) against
//! the references `tests/fixtures/noise/make_noise_images.py` computes with k-diffusion's samplers
//! around the diffusers UNet of the tiny SD 1.5 fixture.

#[path = "support/fixtures.rs"]
mod support;

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device};
use sumi_engine::pipeline::{decode, sample_latent};
use sumi_engine::{Model, Request};
use support::{fixtures, max_abs};

#[test]
fn nv_ensd_and_variation_seeds_make_the_reference_images() {
    let dir = fixtures().join("noise");
    let t = candle_core::safetensors::load(dir.join("images.safetensors"), &Device::Cpu).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("images.json")).unwrap()).unwrap();
    let model = Model::load(&fixtures().join("sd15"), &Device::Cpu, DType::F32).unwrap();
    let cancel = AtomicBool::new(false);
    for case in meta["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let sampler = match case["sampler"].as_str().unwrap() {
            "euler_ancestral" => "Euler a",
            _ => "Euler",
        };
        let request = Request {
            prompt: meta["prompt"].as_str().unwrap().into(),
            seed: case["seed"].as_u64().unwrap(),
            steps: meta["steps"].as_u64().unwrap() as u32,
            cfg: meta["cfg"].as_f64().unwrap(),
            sampler: sampler.into(),
            schedule: meta["schedule"].as_str().unwrap().into(),
            width: 64,
            height: 64,
            noise: case["source"].as_str().unwrap().parse().unwrap(),
            ensd: case["ensd"].as_u64().unwrap_or(0),
            variation_seed: case["variation_seed"].as_u64(),
            variation_strength: case["variation_strength"].as_f64().unwrap_or(0.0),
            ..Default::default()
        };
        let start = request
            .noise_spec()
            .stream()
            .initial_latent(&[1, 4, 8, 8], &Device::Cpu, DType::F32)
            .unwrap();
        let d = max_abs(&start, &t[&format!("{name}.start")]);
        assert!(d < 1e-6, "{name}: starting noise differs by {d}");
        let latent = sample_latent(&model, &request, &cancel, &mut |_| {}).unwrap();
        let d = max_abs(&latent, &t[&format!("{name}.latent")]);
        assert!(d < 1e-3, "{name}: final latent differs by {d}");
        let image = decode(&model, &latent).unwrap();
        // [-1, 1] images: 2/255 of the [0, 1] range.
        let d = max_abs(&image, &t[&format!("{name}.image")]);
        assert!(d < 4.0 / 255.0, "{name}: image differs by {d}");
        eprintln!("{name}: matches");
    }
}
