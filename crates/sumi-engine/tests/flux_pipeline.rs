//! Whole Flux generations against diffusers' `FluxPipeline` on two tiny random pipelines
//! (`tests/fixtures/flux/make_flux_pipeline.py`): the prompt's T5 states and pooled CLIP
//! vector, the sigmas, and the decoded image for dev (distilled guidance, dynamic shift, true
//! CFG with a negative prompt) and schnell; plus ComfyUI's Flux schedules.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use sumi_engine::pipeline::{sample_latent, Request};
use sumi_engine::sampling::table::schedule;
use sumi_engine::text::{Embeddings, EncodeOptions};
use sumi_engine::{Family, Model};

#[path = "support/fixtures.rs"]
mod support;
use support::{decoded_image, fixtures, max_abs};

fn refs() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = fixtures().join("flux");
    let t =
        candle_core::safetensors::load(dir.join("pipeline_ref.safetensors"), &Device::Cpu).unwrap();
    let j = serde_json::from_str(&std::fs::read_to_string(dir.join("pipeline_ref.json")).unwrap())
        .unwrap();
    (t, j)
}

fn load(which: &str) -> Model {
    let dir = fixtures().join("flux").join(format!("pipe-{which}"));
    Model::load(&dir, &Device::Cpu, DType::F32).expect("the Flux fixture loads")
}

fn request(case: &serde_json::Value) -> Request {
    let cfg = case["true_cfg"].as_f64().unwrap();
    Request {
        prompt: case["prompt"].as_str().unwrap().into(),
        negative_prompt: case["negative"].as_str().unwrap_or("").into(),
        seed: case["seed"].as_u64().unwrap(),
        steps: case["steps"].as_u64().unwrap() as u32,
        cfg,
        guidance: case["guidance"].as_f64(),
        max_sequence_length: case["max_sequence_length"].as_u64().map(|n| n as u32),
        sampler: "Euler".into(),
        schedule: String::new(),
        width: case["width"].as_u64().unwrap() as u32,
        height: case["height"].as_u64().unwrap() as u32,
        ..Request::default()
    }
}

fn mean_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn flux_folders_load_as_flux_with_their_defaults() {
    let dev = load("dev");
    assert_eq!(dev.info.family, Family::Flux);
    assert!(dev.info.guidance_distilled);
    let d = dev.info.defaults();
    assert_eq!((d.steps, d.cfg, d.guidance), (20, 1.0, Some(3.5)));
    assert_eq!((d.sampler, d.schedule), ("Euler", "Flow"));
    assert_eq!(dev.info.size_multiple(), 8);
    assert_eq!(dev.vae.latent_channels(), 16);
    let schnell = load("schnell");
    assert!(!schnell.info.guidance_distilled);
    let d = schnell.info.defaults();
    assert_eq!((d.steps, d.guidance), (4, None));
    assert_eq!(schnell.text.t5().unwrap().max_len, 256);
    assert_eq!(dev.text.t5().unwrap().max_len, 512);
}

#[test]
fn flux_prompts_encode_as_flux_pipeline() {
    let (t, meta) = refs();
    for (name, case) in meta.as_object().unwrap() {
        let model = load(case["pipeline"].as_str().unwrap());
        let empty = Embeddings::empty();
        let opts = EncodeOptions {
            emphasis: Default::default(),
            clip_skip: None,
            embeddings: &empty,
            steps: 1,
            max_sequence_length: case["max_sequence_length"].as_u64().map(|n| n as usize),
        };
        let enc = model
            .text
            .encode_prompts(case["prompt"].as_str().unwrap(), "", false, &opts)
            .unwrap();
        let cond = &enc.cond[0].1[0].1;
        let t5 = &t[&format!("{name}.t5")];
        assert_eq!(cond.context.dims(), t5.dims(), "{name}");
        let err = max_abs(&cond.context, t5);
        let pooled_err = max_abs(cond.pooled.as_ref().unwrap(), &t[&format!("{name}.pooled")]);
        eprintln!("{name}: T5 max abs {err:.2e}, pooled {pooled_err:.2e}");
        assert!(
            err < 1e-4 && pooled_err < 1e-4,
            "{name}: {err} {pooled_err}"
        );
    }
}

#[test]
fn flux_images_match_flux_pipeline() {
    let (t, meta) = refs();
    let cancel = AtomicBool::new(false);
    for (name, case) in meta.as_object().unwrap() {
        let model = load(case["pipeline"].as_str().unwrap());
        let req = request(case);
        // The default schedule is diffusers' (dynamic shift from the image's tokens for dev).
        let mut sigmas = Vec::new();
        let latent = sample_latent(&model, &req, &cancel, &mut |e| {
            if let sumi_engine::pipeline::Event::Step { sigma, .. } = e {
                sigmas.push(sigma);
            }
        })
        .unwrap();
        let want: Vec<f64> = t[&format!("{name}.sigmas")].to_vec1().unwrap();
        for (a, b) in sigmas.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-6,
                "{name}: sigmas {sigmas:?} vs {want:?}"
            );
        }
        assert_eq!(sigmas.len() + 1, want.len(), "{name}");
        let image = decoded_image(&model, &latent);
        let want = &t[&format!("{name}.image")];
        let (max, mean) = (max_abs(&image, want), mean_abs(&image, want));
        eprintln!("{name}: image max abs {max:.2e}, mean {mean:.2e} (of 1)");
        assert!(max < 1e-4, "{name}: image differs by {max}");
    }
}

#[test]
fn comfyui_flux_schedules_match() {
    let dir = fixtures().join("flux");
    let t =
        candle_core::safetensors::load(dir.join("flow_schedules_ref.safetensors"), &Device::Cpu)
            .unwrap();
    for (which, shift) in [("dev", "1.15"), ("schnell", "1.0")] {
        let model = load(which);
        let table: Vec<f32> = t[&format!("shift{shift}.table")].to_vec1().unwrap();
        let ours = model.levels.sigmas();
        assert_eq!(ours.len(), table.len());
        for (a, b) in ours.iter().zip(&table) {
            assert_eq!(*a as f32, *b, "{which} table");
        }
        for (key, name) in [
            ("simple", "Simple"),
            ("normal", "Normal"),
            ("sgm", "SGM Uniform"),
            ("karras", "Karras"),
            ("beta", "Beta"),
        ] {
            for steps in [1usize, 4, 9, 20] {
                let want: Vec<f64> = t[&format!("shift{shift}.{key}.{steps}")].to_vec1().unwrap();
                let got = (schedule(name).unwrap().func)(&model.levels, steps).unwrap();
                assert_eq!(got.len(), want.len(), "{which} {name} {steps}");
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                        "{which} {name} {steps}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn flux_refuses_what_does_not_apply() {
    let model = load("schnell");
    let cancel = AtomicBool::new(false);
    let base = Request {
        prompt: "a red cat".into(),
        steps: 2,
        cfg: 1.0,
        width: 64,
        height: 64,
        sampler: "Euler".into(),
        schedule: "Flow".into(),
        ..Request::default()
    };
    for (change, needle) in [
        (
            Request {
                width: 60,
                ..base.clone()
            },
            "multiple of 8",
        ),
        (
            Request {
                sampler: "DPM++ SDE".into(),
                ..base.clone()
            },
            "not available for flow-matching",
        ),
        (
            Request {
                schedule: "Align Your Steps".into(),
                ..base.clone()
            },
            "flow-matching",
        ),
        (
            Request {
                max_sequence_length: Some(0),
                ..base.clone()
            },
            "max sequence length",
        ),
    ] {
        let err = sample_latent(&model, &change, &cancel, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    // Every schedule a Flux user picks gives a finished latent.
    for s in [
        "Flow",
        "Simple",
        "Normal",
        "Beta",
        "SGM Uniform",
        "Karras",
        "Exponential",
    ] {
        for sampler in ["Euler", "Euler a", "Heun", "DPM++ 2M", "LMS", "DPM2"] {
            let r = Request {
                schedule: s.into(),
                sampler: sampler.into(),
                ..base.clone()
            };
            sample_latent(&model, &r, &cancel, &mut |_| {})
                .unwrap_or_else(|e| panic!("{s} {sampler}: {e}"));
        }
    }
}

#[test]
fn sd_loras_and_embeddings_are_refused_on_flux() {
    let mut model = load("dev");
    let lora =
        sumi_engine::weights::lora::LoraFile::open(&fixtures().join("lora/sd15_kohya.safetensors"))
            .unwrap();
    let err = model
        .set_loras(&[sumi_engine::model::LoraUse {
            file: std::sync::Arc::new(lora),
            te: 1.0,
            unet: 1.0,
        }])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is for a Stable Diffusion (UNet) model") && err.contains("Flux.1"),
        "{err}"
    );
    // An embedding as wide as the fixture's CLIP-L (an SD 1.x one fits real CLIP-L too).
    let dir = tempfile::tempdir().unwrap();
    let vectors = Tensor::ones((2, 64), DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &HashMap::from([("emb_params".to_string(), vectors)]),
        dir.path().join("sumired.safetensors"),
    )
    .unwrap();
    let embeddings = Embeddings::from_paths(&[dir.path()]).unwrap();
    let opts = EncodeOptions {
        emphasis: Default::default(),
        clip_skip: None,
        embeddings: &embeddings,
        steps: 1,
        max_sequence_length: Some(16),
    };
    let err = model
        .text
        .encode_prompts("a cat, sumired", "", false, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sumired") && err.contains("T5"), "{err}");
}

#[test]
fn a_flux_transformer_file_finds_its_parts_in_comfyui_folders() {
    let (t, meta) = refs();
    let file = fixtures().join("flux/comfy/models/diffusion_models/flux1-dev-tiny.safetensors");
    assert!(sumi_engine::model::is_flux_file(&file));
    let options = sumi_engine::model::LoadOptions {
        tokenizer_dirs: vec![fixtures().join("flux/pipe-dev")],
        ..Default::default()
    };
    let model = Model::load_with(&file, &options, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.info.family, Family::Flux);
    assert!(model.info.guidance_distilled);
    let case = &meta["dev"];
    let cancel = AtomicBool::new(false);
    let latent = sample_latent(&model, &request(case), &cancel, &mut |_| {}).unwrap();
    let image = decoded_image(&model, &latent);
    let err = max_abs(&image, &t["dev.image"]);
    eprintln!("single files: image max abs {err:.2e}");
    assert!(err < 1e-4, "{err}");

    // Alone in a folder, the file says which part is missing and how to give it.
    let lone = tempfile::tempdir().unwrap();
    let copy = lone.path().join("flux1-dev.safetensors");
    std::fs::copy(&file, &copy).unwrap();
    let err = Model::load_with(&copy, &options, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("T5 text encoder") && err.contains("--t5"),
        "{err}"
    );
    // Given by options, the parts load from anywhere.
    let parts = fixtures().join("flux/comfy/models");
    let given = sumi_engine::model::LoadOptions {
        t5: Some(parts.join("text_encoders/t5xxl_tiny.safetensors")),
        clip_l: Some(fixtures().join("flux/pipe-dev")),
        vae: Some(parts.join("vae/ae.safetensors")),
        ..options.clone()
    };
    let model = Model::load_with(&copy, &given, &Device::Cpu, DType::F32).unwrap();
    let again = sample_latent(&model, &request(case), &cancel, &mut |_| {}).unwrap();
    assert_eq!(max_abs(&again, &latent), 0.0);
    // ComfyUI's all-in-one checkpoint holds every part under its prefix.
    let aio = fixtures().join("flux/comfy/models/checkpoints/flux1-dev-tiny-aio.safetensors");
    let model = Model::load_with(&aio, &options, &Device::Cpu, DType::F32).unwrap();
    let again = sample_latent(&model, &request(case), &cancel, &mut |_| {}).unwrap();
    assert_eq!(max_abs(&again, &latent), 0.0);
}

#[test]
fn offloaded_parts_are_read_again_and_give_the_same_image() {
    let (_, meta) = refs();
    let req = request(&meta["dev"]);
    let cancel = AtomicBool::new(false);
    let dir = fixtures().join("flux/pipe-dev");
    let mut latents = Vec::new();
    let mut peaks = Vec::new();
    for offload in ["none", "encoders", "sequential"] {
        let options = sumi_engine::model::LoadOptions {
            offload: offload.parse().unwrap(),
            ..Default::default()
        };
        let model = Model::load_with(&dir, &options, &Device::Cpu, DType::F32).unwrap();
        assert!(
            model.memory.network > 0 && model.memory.t5 > 0,
            "{offload}: {:?}",
            model.memory
        );
        // Twice: what was released after the first run is read again for the second.
        for _ in 0..2 {
            latents.push(sample_latent(&model, &req, &cancel, &mut |_| {}).unwrap());
        }
        let plan = sumi_engine::pipeline::memory_plan(&model, &req);
        assert!(plan.peak <= plan.all_loaded);
        peaks.push((plan.peak, plan.all_loaded));
        if offload == "sequential" {
            let lora = sumi_engine::weights::lora::LoraFile::open(
                &fixtures().join("lora/sd15_kohya.safetensors"),
            )
            .unwrap();
            let mut model = model;
            let err = model
                .set_loras(&[sumi_engine::model::LoraUse {
                    file: std::sync::Arc::new(lora),
                    te: 1.0,
                    unet: 1.0,
                }])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--offload sequential"), "{err}");
        }
    }
    for l in &latents[1..] {
        assert_eq!(max_abs(l, &latents[0]), 0.0);
    }
    eprintln!("peaks (offload, all loaded): {peaks:?}");
}
