//! img2img, inpainting and hires fix on the tiny sd15 fixture against the references of
//! `tests/fixtures/i2i/make_i2i_fixtures.py` (A1111's rules over k-diffusion and diffusers),
//! and the pipeline's refusals of bad img2img input.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use sumi_engine::pipeline::{decode, sample_latent_with, source_hash, Hires, Img2Img};
use sumi_engine::{generate_with, Event, GenerateInputs, Model, Request};

#[path = "support/fixtures.rs"]
mod support;
use support::{fixtures, max_abs};

fn load() -> Model {
    load_named("sd15")
}

fn load_named(name: &str) -> Model {
    Model::load(&fixtures().join(name), &Device::Cpu, DType::F32).expect("fixture model loads")
}

fn refs() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = fixtures().join("i2i");
    let t =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let j = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
        .unwrap();
    (t, j)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("i2i").join(name)).unwrap()
}

fn base(j: &serde_json::Value, sampler: &str, steps: u64) -> Request {
    Request {
        prompt: j["prompt"].as_str().unwrap().into(),
        negative_prompt: String::new(),
        seed: j["seed"].as_u64().unwrap(),
        steps: steps as u32,
        cfg: j["cfg"].as_f64().unwrap(),
        sampler: match sampler {
            "euler" => "Euler",
            "euler_a" => "Euler a",
            other => panic!("sampler {other} not mapped"),
        }
        .into(),
        schedule: "Normal".into(),
        width: 64,
        height: 64,
        ..Default::default()
    }
}

/// The latent (relative to its scale) and the decoded picture match the reference.
fn check(model: &Model, t: &HashMap<String, Tensor>, name: &str, latent: &Tensor) {
    let want = &t[&format!("{name}.latent")];
    assert_eq!(latent.dims(), want.dims(), "{name}: latent shape");
    let scale = max_abs(want, &want.zeros_like().unwrap()).max(1.0);
    let latent_err = max_abs(latent, want) / scale;
    let image = ((decode(model, latent).unwrap() / 2.0).unwrap() + 0.5)
        .unwrap()
        .clamp(0.0, 1.0)
        .unwrap();
    let image_err = max_abs(&image, &t[&format!("{name}.image")]);
    eprintln!("{name}: latent rel {latent_err:.2e}, image max abs {image_err:.2e}");
    assert!(latent_err < 1e-4, "{name}: latent differs by {latent_err}");
    assert!(image_err < 1e-4, "{name}: image differs by {image_err}");
}

#[test]
fn img2img_inpainting_and_hires_match_reference() {
    let models: HashMap<&str, Model> = [("sd15", load()), ("sd15inp", load_named("sd15inp"))]
        .into_iter()
        .collect();
    assert_eq!(models["sd15inp"].network.in_channels(), 9);
    let (t, j) = refs();
    let init = bytes("init.png");
    let mask = bytes("mask.png");
    let cancel = AtomicBool::new(false);
    let inputs = GenerateInputs {
        init_image: Some(&init),
        mask: Some(&mask),
        ..Default::default()
    };
    for case in j["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let model = &models[case["model"].as_str().unwrap()];
        let mut request = base(
            &j,
            case["sampler"].as_str().unwrap(),
            case["steps"].as_u64().unwrap(),
        );
        match case["kind"].as_str().unwrap() {
            "img2img" | "inpaint" => {
                request.img2img = Some(Img2Img {
                    init_image: source_hash(&init),
                    strength: case["strength"].as_f64().unwrap(),
                    mask: (case["kind"] == "inpaint").then(|| source_hash(&mask)),
                    mask_blur: 0,
                    ..Default::default()
                });
            }
            "txt2img" => {}
            "hires" => {
                request.hires = Some(Hires {
                    scale: case["hires_scale"].as_f64().unwrap(),
                    upscaler: case["hires_upscaler"].as_str().unwrap().into(),
                    steps: case["hires_steps"].as_u64().unwrap() as u32,
                    strength: case["hires_strength"].as_f64().unwrap(),
                    ..Default::default()
                });
            }
            other => panic!("case kind {other}"),
        }
        let mut steps = Vec::new();
        let (latent, _) = sample_latent_with(model, &request, &inputs, &cancel, &mut |e| {
            if let Event::Step { index, total, .. } = e {
                steps.push((index, total));
            }
        })
        .unwrap();
        check(model, &t, name, &latent);
        let runs = case["sigmas"].as_array().unwrap().len() - 1;
        let expected = match case["kind"].as_str().unwrap() {
            "hires" => request.steps as usize + runs,
            _ => runs,
        };
        assert_eq!(steps.len(), expected, "{name}: step events");
        assert!(steps
            .iter()
            .enumerate()
            .all(|(i, &(idx, total))| idx == i && total == expected));
    }
}

#[test]
fn inpainting_keeps_the_pixels_outside_the_mask() {
    let model = load();
    let (_, j) = refs();
    let init = bytes("init.png");
    let mask = bytes("mask.png");
    let mut request = base(&j, "euler", 4);
    request.img2img = Some(Img2Img {
        init_image: source_hash(&init),
        mask: Some(source_hash(&mask)),
        mask_blur: 0,
        ..Default::default()
    });
    let inputs = GenerateInputs {
        init_image: Some(&init),
        mask: Some(&mask),
        ..Default::default()
    };
    let got = generate_with(
        &model,
        &request,
        &inputs,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap()
    .image;
    let original = image::load_from_memory(&init).unwrap().to_rgb8();
    let m = image::load_from_memory(&mask).unwrap().to_luma8();
    let (mut kept, mut changed) = (0, 0);
    for (x, y, p) in got.enumerate_pixels() {
        if m.get_pixel(x, y)[0] == 0 {
            assert_eq!(
                p,
                original.get_pixel(x, y),
                "pixel {x},{y} outside the mask"
            );
            kept += 1;
        } else if p != original.get_pixel(x, y) {
            changed += 1;
        }
    }
    assert!(kept > 0 && changed > 0, "kept {kept}, changed {changed}");
}

#[test]
fn bad_img2img_input_is_refused_clearly() {
    let model = load();
    let (_, j) = refs();
    let init = bytes("init.png");
    let run = |request: &Request, init: Option<&[u8]>, mask: Option<&[u8]>| {
        let inputs = GenerateInputs {
            init_image: init,
            mask,
            ..Default::default()
        };
        sample_latent_with(
            &model,
            request,
            &inputs,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let mut request = base(&j, "euler", 4);
    let good = Img2Img {
        init_image: source_hash(&init),
        ..Default::default()
    };
    request.img2img = Some(Img2Img {
        strength: 1.5,
        ..good.clone()
    });
    assert!(run(&request, Some(&init), None).contains("between 0 and 1"));
    // A truncated PNG, named by its own hash.
    let cut = &init[..init.len() / 2];
    request.img2img = Some(Img2Img {
        init_image: source_hash(cut),
        ..good.clone()
    });
    let err = run(&request, Some(cut), None);
    assert!(err.contains("init image"), "{err}");
    // Bytes that are not the ones named.
    request.img2img = Some(good.clone());
    let err = run(&request, Some(cut), None);
    assert!(err.contains("is not the one the request names"), "{err}");
    let err = run(&request, None, None);
    assert!(err.contains("not supplied"), "{err}");
    // An all-black mask repaints nothing.
    let mut black = Vec::new();
    image::GrayImage::new(64, 64)
        .write_to(
            &mut std::io::Cursor::new(&mut black),
            image::ImageFormat::Png,
        )
        .unwrap();
    request.img2img = Some(Img2Img {
        mask: Some(source_hash(&black)),
        ..good.clone()
    });
    let err = run(&request, Some(&init), Some(&black));
    assert!(err.contains("mask is empty"), "{err}");
    // A mask of another size is fitted, as A1111 does.
    let mut small = Vec::new();
    image::GrayImage::from_pixel(16, 16, image::Luma([255]))
        .write_to(
            &mut std::io::Cursor::new(&mut small),
            image::ImageFormat::Png,
        )
        .unwrap();
    request.img2img = Some(Img2Img {
        mask: Some(source_hash(&small)),
        strength: 0.3,
        ..good.clone()
    });
    let inputs = GenerateInputs {
        init_image: Some(&init),
        mask: Some(&small),
        ..Default::default()
    };
    sample_latent_with(
        &model,
        &request,
        &inputs,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    // Hires fix and img2img together, and an unknown upscaler.
    request.img2img = Some(good);
    request.hires = Some(Hires::default());
    assert!(run(&request, Some(&init), None).contains("hires fix"));
    request.img2img = None;
    request.hires = Some(Hires {
        upscaler: "4x-UltraSharp".into(),
        ..Default::default()
    });
    let err = run(&request, None, None);
    assert!(
        err.contains("no hires upscaler") && err.contains("Lanczos"),
        "{err}"
    );
}

#[test]
fn old_request_json_parses_without_img2img() {
    let json = r#"{"prompt":"a","seed":1,"steps":20,"cfg":7,"sampler":"Euler",
        "schedule":"Normal","width":512,"height":512}"#;
    let r: Request = serde_json::from_str(json).unwrap();
    assert_eq!((r.img2img, r.hires), (None, None));
    let i: Img2Img = serde_json::from_str(r#"{"init_image":"ab","strength":0.5}"#).unwrap();
    assert_eq!((i.mask_blur, i.masked_padding), (4, 32));
}
