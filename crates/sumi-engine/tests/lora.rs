//! LoRA / LyCORIS files on the tiny fixture models: every format against its reference
//! (diffusers + peft, or the published formulas; `tests/fixtures/lora/`), removal back to the
//! loaded weights bit for bit, whole images, single files and an inpainting UNet.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use sumi_engine::model::LoraBackup;
use sumi_engine::pipeline::{decode, sample_latent};
use sumi_engine::weights::lora::LoraFile;
use sumi_engine::{generate, LoadOptions, Model, Request};

#[path = "support/lora.rs"]
mod lora_support;
#[path = "support/fixtures.rs"]
mod support;
use lora_support::*;
use support::{fixtures, max_abs};

/// Every fixture LoRA of `model_name` applied in turn (each replacing the last) matches its
/// reference within 1e-4 relative, and removing the last gives back the loaded weights.
fn check_fixtures(model_name: &str) {
    let (t, j) = lora_refs();
    let mut model = load(model_name);
    let before = snapshot(&model);
    let plain = outputs(&model, model_name)["unet.out"].clone();
    let mut seen = 0;
    for (name, fx) in j["fixtures"].as_object().unwrap() {
        if fx["model"] != model_name {
            continue;
        }
        seen += 1;
        let file = open(fx["file"].as_str().unwrap());
        let (te, unet) = (fx["te"].as_f64().unwrap(), fx["unet"].as_f64().unwrap());
        let report = model.set_loras(&[lora(&file, te, unet)]).unwrap();
        assert_eq!(report.loras[0].unmatched, Vec::<String>::new(), "{name}");
        assert_eq!(
            report.loras[0].matched,
            fx["modules"].as_u64().unwrap() as usize,
            "{name}"
        );
        let got = outputs(&model, model_name);
        let effect = rel(&got["unet.out"], &plain);
        assert!(
            effect > 1e-3,
            "{name}: the LoRA barely changes the UNet ({effect:.1e})"
        );
        for (k, v) in &got {
            let want = &t[&format!("{name}.{k}")];
            let err = rel(v, want);
            eprintln!("{name} {k}: {err:.2e} ({})", file.facts().format());
            assert!(err <= 1e-4, "{name} {k}: differs by {err:.2e} (relative)");
        }
    }
    assert!(seen >= 3, "{model_name}: only {seen} fixtures");
    model.clear_loras().unwrap();
    assert!(model.loras().is_empty());
    assert_same_weights(&before, &snapshot(&model), model_name);
}

#[test]
fn sd15_formats_match_their_references() {
    check_fixtures("sd15");
}

#[test]
fn sdxl_formats_match_their_references() {
    check_fixtures("sdxl");
}

fn image_request(g: &serde_json::Value) -> Request {
    Request {
        prompt: g["prompt"].as_str().unwrap().into(),
        negative_prompt: g["negative_prompt"].as_str().unwrap().into(),
        seed: g["seed"].as_u64().unwrap(),
        steps: g["steps"].as_u64().unwrap() as u32,
        cfg: g["cfg"].as_f64().unwrap(),
        sampler: g["sampler"].as_str().unwrap().into(),
        schedule: g["schedule"].as_str().unwrap().into(),
        width: g["width"].as_u64().unwrap() as u32,
        height: g["height"].as_u64().unwrap() as u32,
        ..Default::default()
    }
}

/// A whole Euler generation with the fixture's kohya LoRA applied, against k-diffusion over the
/// LoRA-fused diffusers UNet: within 2/255.
fn check_image(model_name: &str) {
    let (t, j) = lora_refs();
    let name = format!("{model_name}_kohya");
    let fx = &j["fixtures"][&name];
    let mut model = load(model_name);
    let file = open(fx["file"].as_str().unwrap());
    model
        .set_loras(&[lora(
            &file,
            fx["te"].as_f64().unwrap(),
            fx["unet"].as_f64().unwrap(),
        )])
        .unwrap();
    let request = image_request(&fx["generation"]);
    let cancel = AtomicBool::new(false);
    let latent = sample_latent(&model, &request, &cancel, &mut |_| {}).unwrap();
    let image = ((decode(&model, &latent).unwrap() / 2.0).unwrap() + 0.5)
        .unwrap()
        .clamp(0.0, 1.0)
        .unwrap();
    let err = max_abs(&image, &t[&format!("{name}.gen.image")]);
    eprintln!("{name}: image max abs {err:.2e}");
    assert!(err <= 2.0 / 255.0, "{name}: image differs by {err}");
}

#[test]
fn sd15_image_with_lora_matches_reference() {
    check_image("sd15");
}

#[test]
fn sdxl_image_with_lora_matches_reference() {
    check_image("sdxl");
}

fn one_step(model: &Model) -> Vec<u8> {
    let mut r = Request::with_defaults(&model.info, "a red circle", 7);
    r.steps = 1;
    r.width = 64;
    r.height = 64;
    generate(model, &r, &AtomicBool::new(false), &mut |_| {})
        .unwrap()
        .into_raw()
}

#[test]
fn apply_then_remove_gives_the_same_pixels_in_both_backup_modes() {
    let mut model = load("sd15");
    let weights = snapshot(&model);
    let plain = one_step(&model);
    let kohya = open("sd15_kohya.safetensors");
    let loha = open("sd15_loha.safetensors");
    for backup in [LoraBackup::File, LoraBackup::Memory] {
        model.set_lora_backup(backup);
        model.set_loras(&[lora(&kohya, 1.0, 1.0)]).unwrap();
        let with = one_step(&model);
        assert_ne!(with, plain, "{backup:?}: the LoRA changes the image");
        // Change the set: another weight, then two LoRAs, then one.
        model.set_loras(&[lora(&kohya, 0.5, 1.0)]).unwrap();
        model
            .set_loras(&[lora(&kohya, 0.5, 1.0), lora(&loha, 1.0, 0.3)])
            .unwrap();
        model.set_loras(&[lora(&loha, 1.0, 0.3)]).unwrap();
        if backup == LoraBackup::Memory {
            assert!(model.lora_backup_bytes() > 0);
        }
        model.clear_loras().unwrap();
        assert_eq!(model.lora_backup_bytes(), 0);
        assert_same_weights(&weights, &snapshot(&model), &format!("{backup:?}"));
        assert_eq!(one_step(&model), plain, "{backup:?}: pixels after removal");
    }
    // Re-applying gives the image of the first application.
    model.set_loras(&[lora(&kohya, 1.0, 1.0)]).unwrap();
    let again = one_step(&model);
    model.clear_loras().unwrap();
    model.set_lora_backup(LoraBackup::File);
    model.set_loras(&[lora(&kohya, 1.0, 1.0)]).unwrap();
    assert_eq!(one_step(&model), again);
}

#[test]
fn separate_text_and_unet_weights() {
    let mut model = load("sd15");
    let before = outputs(&model, "sd15");
    let file = open("sd15_kohya.safetensors");
    model.set_loras(&[lora(&file, 0.0, 1.0)]).unwrap();
    let unet_only = outputs(&model, "sd15");
    assert_eq!(
        max_abs(&unet_only["text.context"], &before["text.context"]),
        0.0
    );
    assert!(max_abs(&unet_only["unet.out"], &before["unet.out"]) > 1e-4);
    model.set_loras(&[lora(&file, 1.0, 0.0)]).unwrap();
    let te_only = outputs(&model, "sd15");
    assert_eq!(max_abs(&te_only["unet.out"], &before["unet.out"]), 0.0);
    assert!(max_abs(&te_only["text.context"], &before["text.context"]) > 1e-4);
}

#[test]
fn single_file_models_take_ldm_and_diffusers_named_loras() {
    let (t, j) = lora_refs();
    let options = LoadOptions {
        config_dir: Some(fixtures().join("sdxl")),
        ..Default::default()
    };
    let mut model = Model::load_with(
        &fixtures().join("single/sdxl.safetensors"),
        &options,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let before = snapshot(&model);
    for name in ["sdxl_kohya", "sdxl_kohya_ldm"] {
        let fx = &j["fixtures"][name];
        let file = open(fx["file"].as_str().unwrap());
        model
            .set_loras(&[lora(
                &file,
                fx["te"].as_f64().unwrap(),
                fx["unet"].as_f64().unwrap(),
            )])
            .unwrap();
        for (k, v) in outputs(&model, "sdxl") {
            let err = rel(&v, &t[&format!("{name}.{k}")]);
            assert!(err <= 1e-4, "single-file {name} {k}: {err:.2e}");
        }
    }
    model.clear_loras().unwrap();
    assert_same_weights(&before, &snapshot(&model), "single-file sdxl");
}

#[test]
fn openclip_fused_attention_patches_through_its_views() {
    // SD 2.x single files fuse q/k/v into one OpenCLIP tensor; each projection is a view of it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("te.safetensors");
    let mods: Vec<String> = (0..3)
        .flat_map(|l| {
            ["q_proj", "k_proj", "v_proj", "out_proj"]
                .map(|p| format!("lora_te_text_model_encoder_layers_{l}_self_attn_{p}"))
        })
        .collect();
    let spec: Vec<(&str, usize, usize)> = mods.iter().map(|m| (m.as_str(), 32, 32)).collect();
    write_lora(&path, &spec, 0.3);
    let file = Arc::new(LoraFile::open(&path).unwrap());
    let mut folder = load("sd2v");
    let options = LoadOptions {
        config_dir: Some(fixtures().join("sd2v")),
        ..Default::default()
    };
    let mut single = Model::load_with(
        &fixtures().join("single/sd2v.safetensors"),
        &options,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let before = snapshot(&single);
    let plain = outputs(&single, "sd2v")["text.context"].clone();
    for m in [&mut folder, &mut single] {
        m.set_loras(&[lora(&file, 0.9, 1.0)]).unwrap();
    }
    let a = outputs(&folder, "sd2v")["text.context"].clone();
    let b = outputs(&single, "sd2v")["text.context"].clone();
    assert!(
        max_abs(&a, &plain) > 1e-3,
        "the LoRA changes the text encoder"
    );
    assert!(rel(&b, &a) < 1e-5, "single file vs folder: {}", rel(&b, &a));
    single.clear_loras().unwrap();
    assert_same_weights(&before, &snapshot(&single), "sd2v single file");
}

#[test]
fn nine_channel_conv_in_gets_the_delta_padded_with_zeros() {
    // An inpainting UNet: the sd15 fixture with a 9-channel conv_in.
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("sd15");
    copy_dir(&src, dir.path());
    let unet = dir.path().join("unet");
    let weights = unet.join("diffusion_pytorch_model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let w = tensors["conv_in.weight"].clone();
    let extra = Tensor::ones((16, 5, 3, 3), DType::F32, &Device::Cpu).unwrap();
    tensors.insert(
        "conv_in.weight".into(),
        Tensor::cat(&[&w, &extra], 1).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let cfg_path = unet.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["in_channels"] = 9.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();

    let file = open("sd15_locon.safetensors");
    let conv_in = |m: &Model| {
        m.params()
            .unet
            .get("conv_in.weight")
            .unwrap()
            .tensor
            .copy()
            .unwrap()
    };
    let mut plain = load("sd15");
    let w4 = conv_in(&plain);
    plain.set_loras(&[lora(&file, 1.0, 1.0)]).unwrap();
    let delta4 = (conv_in(&plain) - &w4).unwrap();
    let mut inpaint = Model::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
    let w9 = conv_in(&inpaint);
    inpaint.set_loras(&[lora(&file, 1.0, 1.0)]).unwrap();
    let delta9 = (conv_in(&inpaint) - &w9).unwrap();
    assert_eq!(delta9.dims(), &[16, 9, 3, 3]);
    assert!(max_abs(&delta9.narrow(1, 0, 4).unwrap(), &delta4) < 1e-6);
    let rest = delta9.narrow(1, 4, 5).unwrap();
    assert_eq!(max_abs(&rest, &rest.zeros_like().unwrap()), 0.0);
    assert!(max_abs(&delta4, &delta4.zeros_like().unwrap()) > 1e-4);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_model_with_loras_still_moves_between_threads() {
    fn check<T: Send + Sync>() {}
    check::<Model>();
    check::<LoraFile>();
}
