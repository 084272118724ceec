//! `--dtype bf16` on the CPU: the fixture models with bf16 weight matrices generate the
//! diffusers (f32) reference images within bf16's precision, and keep only the weight matrices
//! in bf16.

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use sumi_engine::pipeline::{decode, sample_latent};
use sumi_engine::{Model, Request};

#[path = "support/lora.rs"]
mod lora_support;
#[path = "support/fixtures.rs"]
mod support;
use support::{fixtures, refs};

/// Mean and largest absolute difference of two images in [0, 1], in 0..255 steps.
fn differences(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    let mean = d.mean(0).unwrap().to_scalar::<f32>().unwrap();
    let max = d.max(0).unwrap().to_scalar::<f32>().unwrap();
    (mean * 255.0, max * 255.0)
}

/// Every recorded Euler generation of fixture `name` in bf16 against the f32 reference; returns
/// the worst mean and max differences.
fn bf16_against_reference(name: &str) -> (f32, f32) {
    let model = Model::load(&fixtures().join(name), &Device::Cpu, DType::BF16).unwrap();
    assert_eq!(model.dtype, DType::F32, "computes in f32");
    assert_eq!(model.weights_dtype, DType::BF16);
    let unet = &model.params().unet;
    assert_eq!(
        unet.get("conv_in.weight").unwrap().tensor.dtype(),
        DType::BF16
    );
    assert_eq!(unet.get("conv_in.bias").unwrap().tensor.dtype(), DType::F32);
    let (t, j) = refs(name);
    let cancel = AtomicBool::new(false);
    let mut worst = (0f32, 0f32);
    for g in j["generations"].as_array().unwrap() {
        let gen = g["name"].as_str().unwrap();
        if g["sampler"] != "euler" || g["schedule"] != "normal" {
            continue;
        }
        let request = Request {
            prompt: j["prompt"].as_str().unwrap().into(),
            negative_prompt: g["negative_prompt"].as_str().unwrap().into(),
            seed: j["seed"].as_u64().unwrap(),
            steps: j["steps"].as_u64().unwrap() as u32,
            cfg: g["cfg"].as_f64().unwrap(),
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: j["width"].as_u64().unwrap() as u32,
            height: j["height"].as_u64().unwrap() as u32,
            ..Default::default()
        };
        let latent = sample_latent(&model, &request, &cancel, &mut |_| {}).unwrap();
        let image = ((decode(&model, &latent).unwrap() / 2.0).unwrap() + 0.5)
            .unwrap()
            .clamp(0.0, 1.0)
            .unwrap();
        let (mean, max) = differences(&image, &t[&format!("gen.{gen}.image")]);
        eprintln!("{name} {gen} bf16 vs f32 reference: mean {mean:.3}/255, max {max:.2}/255");
        worst = (worst.0.max(mean), worst.1.max(max));
    }
    assert!(worst != (0.0, 0.0), "{name}: no Euler generation checked");
    worst
}

/// Measured on 2026-12-03 (in 0..255 steps, mean / max), weights widened to f32 (Intel's
/// default): sd15 0.15 / 1.2, sdxl 0.19 / 1.7, sd2v (v-prediction) 0.42 / 6.3; with the
/// AVX512-BF16 kernel, which rounds the activations to bf16 too (`SUMI_BF16_KERNEL=1`, AMD's
/// default): 0.32 / 2.5, 0.34 / 2.8, 0.79 / 13.2. A wrong product or a lost bias is far off.
fn assert_within_bf16(mean: f32, max: f32) {
    assert!(mean < 1.5 && max < 20.0, "mean {mean}/255, max {max}/255");
}

#[test]
fn sd15_bf16_images_match_the_f32_reference_within_bf16_precision() {
    let (mean, max) = bf16_against_reference("sd15");
    assert_within_bf16(mean, max);
}

#[test]
fn sd2v_bf16_images_match_the_f32_reference_within_bf16_precision() {
    let (mean, max) = bf16_against_reference("sd2v");
    assert_within_bf16(mean, max);
}

#[test]
fn sdxl_bf16_images_match_the_f32_reference_within_bf16_precision() {
    let (mean, max) = bf16_against_reference("sdxl");
    assert_within_bf16(mean, max);
}

/// Every parameter's bits (bf16 ones widened, which is exact), by part and name.
fn weights(model: &Model) -> Vec<(String, Vec<u32>)> {
    let p = model.params();
    let tables = std::iter::once(("unet".to_string(), &p.unet))
        .chain(p.text.iter().map(|(s, t)| (format!("te{s}"), t)));
    let mut out = Vec::new();
    for (part, table) in tables {
        for (name, param) in table.iter() {
            let t = param.tensor.to_dtype(DType::F32).unwrap();
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            out.push((
                format!("{part}.{name}"),
                v.iter().map(|x| x.to_bits()).collect(),
            ));
        }
    }
    out
}

#[test]
fn loras_patch_bf16_weights_in_place_and_come_out_bit_for_bit() {
    let (t, j) = lora_support::lora_refs();
    let mut model = Model::load(&fixtures().join("sd15"), &Device::Cpu, DType::BF16).unwrap();
    let before = weights(&model);
    let mut seen = 0;
    for (name, fx) in j["fixtures"].as_object().unwrap() {
        if fx["model"] != "sd15" {
            continue;
        }
        seen += 1;
        let file = lora_support::open(fx["file"].as_str().unwrap());
        let (te, unet) = (fx["te"].as_f64().unwrap(), fx["unet"].as_f64().unwrap());
        model
            .set_loras(&[lora_support::lora(&file, te, unet)])
            .unwrap();
        let got = lora_support::outputs(&model, "sd15");
        let err = lora_support::rel(&got["unet.out"], &t[&format!("{name}.unet.out")]);
        eprintln!("{name} in bf16: UNet output {err:.2e} (relative) from the f32 reference");
        assert!(err < 2e-2, "{name}: differs by {err:.2e}");
    }
    assert!(seen >= 3, "only {seen} fixtures");
    model.clear_loras().unwrap();
    assert!(
        before == weights(&model),
        "the loaded bf16 weights came back"
    );
}
