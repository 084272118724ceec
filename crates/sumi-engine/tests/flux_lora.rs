//! Flux LoRAs on the tiny Flux dev pipeline against diffusers (`tests/fixtures/lora/
//! make_flux_lora_fixtures.py`): kohya (fused qkv / linear1 split among diffusers' layers, the
//! layers outside the blocks, CLIP-L), ComfyUI, XLabs and PEFT files give diffusers' fused
//! weights, LyCORIS updates split as LoRAs do, a bf16 model takes a LoRA, a whole
//! image matches FluxPipeline's with the LoRA fused, removal gives back the loaded weights bit
//! for bit, and LoRAs of the other family are refused either way.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use sumi_engine::pipeline::{sample_latent, Request};
use sumi_engine::weights::lora::LoraError;
use sumi_engine::Model;

#[path = "support/lora.rs"]
mod lora_support;
#[path = "support/fixtures.rs"]
mod support;
use lora_support::*;
use support::{decoded_image, fixtures, max_abs};

fn flux_refs() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = lora_dir();
    let t = candle_core::safetensors::load(dir.join("flux_ref.safetensors"), &Device::Cpu).unwrap();
    let j =
        serde_json::from_str(&std::fs::read_to_string(dir.join("flux_ref.json")).unwrap()).unwrap();
    (t, j)
}

fn load_dev() -> Model {
    let dir = fixtures().join("flux").join("pipe-dev");
    Model::load(&dir, &Device::Cpu, DType::F32).expect("the Flux fixture loads")
}

/// The model's parameter for a reference name (`transformer.<diffusers name>` or
/// `text_encoder.<transformers name>`, with or without `text_model.`).
fn param(model: &Model, name: &str) -> Tensor {
    let p = model.params();
    if let Some(n) = name.strip_prefix("transformer.") {
        return p
            .unet
            .get(n)
            .unwrap_or_else(|| panic!("no {n}"))
            .tensor
            .clone();
    }
    let n = name.strip_prefix("text_encoder.").unwrap();
    let te = &p.text[&0];
    te.get(n)
        .or_else(|| te.get(&format!("text_model.{n}")))
        .unwrap_or_else(|| panic!("no text encoder {n}"))
        .tensor
        .clone()
}

/// The snapshot key of a reference name.
fn snapshot_key(name: &str) -> String {
    match name.strip_prefix("transformer.") {
        Some(n) => format!("unet.{n}"),
        None => format!("te0.{}", name.strip_prefix("text_encoder.").unwrap()),
    }
}

#[test]
fn flux_loras_give_diffusers_fused_weights() {
    let (t, j) = flux_refs();
    let mut model = load_dev();
    let before = snapshot(&model);
    let mut seen = 0;
    for (name, fx) in j["fixtures"].as_object().unwrap() {
        seen += 1;
        let file = open(fx["file"].as_str().unwrap());
        // Every fixture has single blocks, which only Flux has.
        assert_eq!(file.facts().fits, Some(sumi_engine::Family::Flux), "{name}");
        let w = fx["weight"].as_f64().unwrap();
        let report = model.set_loras(&[lora(&file, w, w)]).unwrap();
        assert_eq!(report.loras[0].unmatched, Vec::<String>::new(), "{name}");
        assert_eq!(
            report.loras[0].matched,
            fx["modules"].as_u64().unwrap() as usize,
            "{name}"
        );
        let changed: Vec<&str> = fx["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let mut worst = 0f32;
        for c in &changed {
            let got = param(&model, c);
            let err = rel(&got, &t[&format!("{name}.{c}")]);
            assert!(err <= 1e-5, "{name} {c}: differs by {err:.2e} (relative)");
            worst = worst.max(err);
        }
        eprintln!(
            "{name}: {} weights, max relative error {worst:.2e} ({})",
            changed.len(),
            file.facts().format()
        );
        // Every other weight is untouched.
        let now = snapshot(&model);
        let touched: Vec<String> = changed.iter().map(|c| snapshot_key(c)).collect();
        for (k, v) in &before {
            if !touched.contains(&k.replace("text_model.", "")) {
                assert!(now[k] == *v, "{name}: {k} changed, diffusers left it");
            }
        }
    }
    assert_eq!(seen, 6);
    model.clear_loras().unwrap();
    assert_same_weights(&before, &snapshot(&model), "Flux after clear_loras");
}

#[test]
fn flux_image_with_kohya_lora_matches_flux_pipeline() {
    let (t, j) = flux_refs();
    let g = &j["image"];
    let mut model = load_dev();
    let fx = &j["fixtures"]["flux_kohya"];
    let w = fx["weight"].as_f64().unwrap();
    let file = open(fx["file"].as_str().unwrap());
    let req = Request {
        prompt: g["prompt"].as_str().unwrap().into(),
        seed: g["seed"].as_u64().unwrap(),
        steps: g["steps"].as_u64().unwrap() as u32,
        cfg: 1.0,
        guidance: g["guidance"].as_f64(),
        max_sequence_length: g["max_sequence_length"].as_u64().map(|n| n as u32),
        sampler: "Euler".into(),
        // diffusers' flow schedule (the model's default)
        schedule: String::new(),
        width: g["width"].as_u64().unwrap() as u32,
        height: g["height"].as_u64().unwrap() as u32,
        ..Request::default()
    };
    let cancel = AtomicBool::new(false);
    let image = |model: &Model| {
        let latent = sample_latent(model, &req, &cancel, &mut |_| {}).unwrap();
        decoded_image(model, &latent)
    };
    let plain = image(&model);
    model.set_loras(&[lora(&file, w, w)]).unwrap();
    let with = image(&model);
    let want = &t["flux_kohya.image"];
    let err = max_abs(&with, want);
    let effect = max_abs(&plain, want);
    eprintln!("flux_kohya image: max abs {err:.2e} (without the LoRA: {effect:.2e})");
    assert!(
        effect > 1e-2,
        "the LoRA barely changes the image ({effect:.1e})"
    );
    assert!(err < 1e-4, "image with the LoRA differs by {err}");
    model.clear_loras().unwrap();
    let back = image(&model);
    assert_eq!(max_abs(&back, &plain), 0.0, "image after clear_loras");
}

#[test]
fn flux_loras_are_refused_on_sd_models_and_wrong_shapes_on_flux() {
    let mut sd = load("sd15");
    for name in ["flux_kohya.safetensors", "flux_peft.safetensors"] {
        let e = lora_error(sd.set_loras(&[lora(&open(name), 1.0, 1.0)]).unwrap_err());
        let msg = e.to_string();
        assert!(
            matches!(e, LoraError::WrongFamily { .. }) && msg.contains("Flux"),
            "{name}: {msg}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_qkv.safetensors");
    // 32-wide blocks: a fused qkv update needs 96 rows.
    write_lora(
        &path,
        &[("lora_unet_double_blocks_0_img_attn_qkv", 90, 32)],
        0.1,
    );
    let mut flux = load_dev();
    let e = lora_error(
        flux.set_loras(&[lora(&open_at(&path), 1.0, 1.0)])
            .unwrap_err(),
    );
    let msg = e.to_string();
    assert!(
        matches!(e, LoraError::ShapeMismatch { .. })
            && msg.contains("attn.to_q.weight + transformer_blocks.0.attn.to_k.weight"),
        "{msg}"
    );
    assert!(flux.loras().is_empty());
}

#[test]
fn flux_text_and_transformer_weights_apply_separately() {
    let (t, j) = flux_refs();
    let fx = &j["fixtures"]["flux_kohya"];
    let w = fx["weight"].as_f64().unwrap();
    let file = open(fx["file"].as_str().unwrap());
    let mut model = load_dev();
    let before = snapshot(&model);
    model.set_loras(&[lora(&file, 0.0, w)]).unwrap();
    let now = snapshot(&model);
    let mut text = 0;
    for c in fx["changed"].as_array().unwrap() {
        let c = c.as_str().unwrap();
        if c.starts_with("text_encoder.") {
            let k = before
                .keys()
                .find(|k| k.replace("text_model.", "") == snapshot_key(c))
                .unwrap();
            assert!(now[k] == before[k], "{c}: changed with a text weight of 0");
            text += 1;
        } else {
            let err = rel(&param(&model, c), &t[&format!("flux_kohya.{c}")]);
            assert!(err <= 1e-5, "{c}: differs by {err:.2e}");
        }
    }
    assert!(text > 0, "the fixture has CLIP-L modules");
    model.clear_loras().unwrap();
    assert_same_weights(&before, &snapshot(&model), "after clear_loras");
}

#[test]
fn schnell_reports_the_guidance_layers_it_lacks() {
    let dir = fixtures().join("flux").join("pipe-schnell");
    let mut model = Model::load(&dir, &Device::Cpu, DType::F32).unwrap();
    let report = model
        .set_loras(&[lora(&open("flux_kohya_extra.safetensors"), 1.0, 1.0)])
        .unwrap();
    let mut unmatched = report.loras[0].unmatched.clone();
    unmatched.sort();
    assert_eq!(
        unmatched,
        [
            "lora_unet_guidance_in_in_layer",
            "lora_unet_guidance_in_out_layer"
        ]
    );
    assert_eq!(report.loras[0].matched, 9);
}

/// LyCORIS updates on fused layers (LoHa on a qkv, LoKr on `linear1`) split their rows as
/// LoRAs do: each diffusers layer gets its rows of the whole update (published formulas).
#[test]
fn lycoris_updates_on_fused_flux_layers_split_by_rows() {
    let mut model = load_dev();
    let q = "transformer_blocks.0.attn.to_q.weight";
    let (c, inp) = model.params().unet.get(q).unwrap().tensor.dims2().unwrap();
    let mlp = model
        .params()
        .unet
        .get("single_transformer_blocks.0.proj_mlp.weight");
    let mlp = mlp.unwrap().tensor.dim(0).unwrap();
    let (w1a, w1b, w2a, w2b) = (
        randn(&[3 * c, 2], 1.0),
        randn(&[2, inp], 2.0),
        randn(&[3 * c, 2], 3.0),
        randn(&[2, inp], 4.0),
    );
    assert_eq!(
        (3 * c + mlp) % c,
        0,
        "linear1's rows are a multiple of the width"
    );
    let k1 = randn(&[(3 * c + mlp) / c, 1], 5.0);
    let k2 = randn(&[c, inp], 6.0);
    let qkv = "lora_unet_double_blocks_0_img_attn_qkv";
    let l1 = "lora_unet_single_blocks_0_linear1";
    let tensors: HashMap<String, Tensor> = [
        (format!("{qkv}.hada_w1_a"), w1a.clone()),
        (format!("{qkv}.hada_w1_b"), w1b.clone()),
        (format!("{qkv}.hada_w2_a"), w2a.clone()),
        (format!("{qkv}.hada_w2_b"), w2b.clone()),
        (
            format!("{qkv}.alpha"),
            Tensor::new(2f32, &Device::Cpu).unwrap(),
        ),
        (format!("{l1}.lokr_w1"), k1.clone()),
        (format!("{l1}.lokr_w2"), k2.clone()),
    ]
    .into_iter()
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lycoris.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let before: HashMap<String, Tensor> = model
        .params()
        .unet
        .iter()
        .map(|(n, p)| (n.to_string(), p.tensor.copy().unwrap()))
        .collect();
    let w = 0.8;
    let report = model.set_loras(&[lora(&open_at(&path), w, w)]).unwrap();
    assert_eq!(report.loras[0].matched, 2);
    // LoHa: (w1a @ w1b) * (w2a @ w2b), scale alpha / rank = 1.
    let loha = (w1a.matmul(&w1b).unwrap() * w2a.matmul(&w2b).unwrap()).unwrap();
    // LoKr (both factors full, scale 1): kron(k1, k2), k1 a column.
    let kron = k1
        .reshape(((3 * c + mlp) / c, 1, 1))
        .unwrap()
        .broadcast_mul(&k2.unsqueeze(0).unwrap())
        .unwrap()
        .reshape((3 * c + mlp, inp))
        .unwrap();
    let checks = [
        ("transformer_blocks.0.attn.to_q.weight", &loha, 0, c),
        ("transformer_blocks.0.attn.to_k.weight", &loha, c, c),
        ("transformer_blocks.0.attn.to_v.weight", &loha, 2 * c, c),
        ("single_transformer_blocks.0.attn.to_q.weight", &kron, 0, c),
        (
            "single_transformer_blocks.0.attn.to_v.weight",
            &kron,
            2 * c,
            c,
        ),
        (
            "single_transformer_blocks.0.proj_mlp.weight",
            &kron,
            3 * c,
            mlp,
        ),
    ];
    for (name, update, start, len) in checks {
        let got = (&model.params().unet.get(name).unwrap().tensor - &before[name]).unwrap();
        let want = (update.narrow(0, start, len).unwrap() * w).unwrap();
        // `got` is a difference of two f32 weights, so it carries their rounding.
        let err = rel(&got, &want);
        assert!(err < 5e-5, "{name}: differs by {err:.2e}");
    }
    model.clear_loras().unwrap();
    for (name, t) in &before {
        let now = &model.params().unet.get(name).unwrap().tensor;
        assert_eq!(max_abs(now, t), 0.0, "{name} after clear_loras");
    }
}

/// A bf16 Flux model (as real Flux weights ship) takes a LoRA within bf16's rounding, and
/// removing it gives back the loaded bf16 weights exactly.
#[test]
fn bf16_flux_takes_and_gives_back_a_lora() {
    let (t, j) = flux_refs();
    let dir = fixtures().join("flux").join("pipe-dev");
    let mut model = Model::load(&dir, &Device::Cpu, DType::BF16).unwrap();
    let bits = |model: &Model| -> HashMap<String, Vec<u32>> {
        model
            .params()
            .unet
            .iter()
            .map(|(n, p)| {
                let v = p
                    .tensor
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap();
                let v = v.to_vec1::<f32>().unwrap();
                (n.to_string(), v.iter().map(|x| x.to_bits()).collect())
            })
            .collect()
    };
    let before = bits(&model);
    let fx = &j["fixtures"]["flux_kohya"];
    let w = fx["weight"].as_f64().unwrap();
    model
        .set_loras(&[lora(&open(fx["file"].as_str().unwrap()), w, w)])
        .unwrap();
    let mut worst = 0f32;
    for c in fx["changed"].as_array().unwrap() {
        let c = c.as_str().unwrap();
        let Some(n) = c.strip_prefix("transformer.") else {
            continue;
        };
        let got = model
            .params()
            .unet
            .get(n)
            .unwrap()
            .tensor
            .to_dtype(DType::F32);
        let err = rel(&got.unwrap(), &t[&format!("flux_kohya.{c}")]);
        assert!(err < 1e-2, "{c}: differs by {err:.2e} in bf16");
        worst = worst.max(err);
    }
    eprintln!("bf16 flux_kohya: max relative error {worst:.2e}");
    model.clear_loras().unwrap();
    assert!(bits(&model) == before, "bf16 weights after clear_loras");
}

/// kohya-style keys over diffusers' layer names (`lora_transformer_single_transformer_blocks_0
/// _attn_to_q.lora_down.weight`, diffusers' "mixture" format) patch the layers their PEFT
/// spelling patches: `flux_peft`'s tensors renamed give its references.
#[test]
fn kohya_spelled_diffusers_names_patch_the_same_layers() {
    let (t, j) = flux_refs();
    let fx = &j["fixtures"]["flux_peft"];
    let src = lora_dir().join(fx["file"].as_str().unwrap());
    let tensors = candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    let renamed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| {
            let k = k.strip_prefix("transformer.").unwrap();
            let (module, role) = k.split_once(".lora_").unwrap();
            let role = role.replace("A.weight", "down.weight");
            let role = role.replace("B.weight", "up.weight");
            let name = format!("lora_transformer_{}.lora_{role}", module.replace('.', "_"));
            (name, v)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixture.safetensors");
    candle_core::safetensors::save(&renamed, &path).unwrap();
    let mut model = load_dev();
    let w = fx["weight"].as_f64().unwrap();
    let report = model.set_loras(&[lora(&open_at(&path), w, w)]).unwrap();
    assert_eq!(report.loras[0].unmatched, Vec::<String>::new());
    for c in fx["changed"].as_array().unwrap() {
        let c = c.as_str().unwrap();
        let err = rel(&param(&model, c), &t[&format!("flux_peft.{c}")]);
        assert!(err <= 1e-5, "{c}: differs by {err:.2e}");
    }
}
