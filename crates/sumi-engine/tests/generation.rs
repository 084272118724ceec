//! Whole generations on the tiny fixture models against diffusers/k-diffusion references,
//! plus determinism, validation and cancellation of the pipeline.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device};
use sumi_engine::pipeline::{decode, sample_latent};
use sumi_engine::{generate, Error, Event, Model, Request};

#[path = "support/fixtures.rs"]
mod support;
use support::{fixtures, max_abs, refs};

fn load(name: &str) -> Model {
    Model::load(&fixtures().join(name), &Device::Cpu, DType::F32).expect("fixture model loads")
}

fn sampler_name(fixture: &str) -> &'static str {
    match fixture {
        "euler" | "euler_cfg1" | "euler_emptyneg" => "Euler",
        "euler_a" => "Euler a",
        "dpmpp_2m" => "DPM++ 2M",
        "ddim" => "DDIM",
        other => panic!("fixture sampler {other} not mapped"),
    }
}

fn schedule_name(fixture: &str) -> &'static str {
    match fixture {
        "normal" => "Normal",
        "karras" => "Karras",
        "ddim" => DDIM_SCHEDULE,
        other => panic!("fixture schedule {other} not mapped"),
    }
}

const DDIM_SCHEDULE: &str = "DDIM timesteps";

/// Every recorded generation of `model` matches the reference image within 2e-3.
fn check_generations(model_name: &str) {
    let model = load(model_name);
    let (t, j) = refs(model_name);
    let cancel = AtomicBool::new(false);
    for g in j["generations"].as_array().unwrap() {
        let name = g["name"].as_str().unwrap();
        let request = Request {
            prompt: j["prompt"].as_str().unwrap().into(),
            negative_prompt: g["negative_prompt"].as_str().unwrap().into(),
            seed: j["seed"].as_u64().unwrap(),
            steps: j["steps"].as_u64().unwrap() as u32,
            cfg: g["cfg"].as_f64().unwrap(),
            sampler: sampler_name(g["sampler"].as_str().unwrap()).into(),
            schedule: schedule_name(g["schedule"].as_str().unwrap()).into(),
            width: j["width"].as_u64().unwrap() as u32,
            height: j["height"].as_u64().unwrap() as u32,
            noise: Default::default(),
            clip_skip: None,
            emphasis: Default::default(),
        };
        let latent = sample_latent(&model, &request, &cancel, &mut |_| {}).unwrap();
        let want_latent = &t[&format!("gen.{name}.latent")];
        let scale = want_latent
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1.0);
        let latent_err = max_abs(&latent, want_latent) / scale;
        let image = ((decode(&model, &latent).unwrap() / 2.0).unwrap() + 0.5)
            .unwrap()
            .clamp(0.0, 1.0)
            .unwrap();
        let image_err = max_abs(&image, &t[&format!("gen.{name}.image")]);
        eprintln!(
            "{model_name} {name}: image max abs {image_err:.2e}, latent rel {latent_err:.2e}"
        );
        assert!(
            image_err < 1e-4,
            "{model_name} {name}: image differs by {image_err}"
        );
        assert!(
            latent_err < 2e-5,
            "{model_name} {name}: latent differs by {latent_err} (relative)"
        );
    }
}

#[test]
fn sd15_generations_match_reference() {
    check_generations("sd15");
}

#[test]
fn sd2v_generations_match_reference() {
    check_generations("sd2v");
}

#[test]
fn sdxl_generations_match_reference() {
    check_generations("sdxl");
}

#[test]
fn initial_noise_matches_torch_exactly() {
    let (t, j) = refs("sd15");
    for seed in j["noise_seeds"].as_array().unwrap() {
        let seed = seed.as_u64().unwrap();
        let mut noise = sumi_engine::noise::NoiseSource::TorchCpu.seeded(seed);
        let got = noise
            .initial_latent(&[1, 4, 8, 8], &Device::Cpu, DType::F32)
            .unwrap();
        let want = &t[&format!("noise.seed{seed}")];
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, want, "seed {seed}");
    }
}

fn small_request(model: &Model) -> Request {
    let mut r = Request::with_defaults(&model.info, "a red circle", 7);
    r.steps = 4;
    r.sampler = "Euler a".into();
    r.schedule = "Karras".into();
    r
}

fn png_bytes(img: &image::RgbImage) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
    buf.into_inner()
}

#[test]
fn same_request_gives_identical_png() {
    let model = load("sd15");
    let req = small_request(&model);
    let cancel = AtomicBool::new(false);
    let a = generate(&model, &req, &cancel, &mut |_| {}).unwrap();
    let b = generate(&model, &req, &cancel, &mut |_| {}).unwrap();
    assert_eq!(png_bytes(&a), png_bytes(&b));
    let mut other = req.clone();
    other.seed += 1;
    let c = generate(&model, &other, &cancel, &mut |_| {}).unwrap();
    assert_ne!(a, c, "a different seed must give a different image");
}

#[test]
fn events_arrive_in_order_with_previews() {
    let model = load("sdxl");
    let mut req = small_request(&model);
    req.steps = 3;
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    generate(&model, &req, &cancel, &mut |e| events.push(e)).unwrap();
    assert!(matches!(events[0], Event::Started { total: 3, seed: 7 }));
    for (i, e) in events[1..4].iter().enumerate() {
        match e {
            Event::Step {
                index,
                total,
                preview,
                model_evals,
                ..
            } => {
                assert_eq!((*index, *total), (i, 3));
                assert_eq!(*model_evals, i + 1);
                let p = preview.as_ref().expect("preview");
                assert_eq!((p.width(), p.height()), (8, 8));
            }
            other => panic!("expected a step, got {other:?}"),
        }
    }
    match &events[4] {
        Event::Finished { image, .. } => assert_eq!((image.width(), image.height()), (64, 64)),
        other => panic!("expected Finished, got {other:?}"),
    }
    assert_eq!(events.len(), 5);
}

#[test]
fn cancelling_at_step_k_stops_before_step_k_plus_one() {
    let model = load("sd15");
    let mut req = small_request(&model);
    req.steps = 6;
    let cancel = AtomicBool::new(false);
    let mut steps = Vec::new();
    let mut last = None;
    let result = generate(&model, &req, &cancel, &mut |e| match e {
        Event::Step { index, .. } => {
            steps.push(index);
            if index == 2 {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        other => last = Some(other),
    });
    assert!(matches!(result, Err(Error::Cancelled)));
    assert_eq!(steps, vec![0, 1, 2]);
    assert!(matches!(last, Some(Event::Cancelled)));
}

#[test]
fn invalid_requests_are_rejected_with_clear_messages() {
    let model = load("sd15");
    let base = small_request(&model);
    let cancel = AtomicBool::new(false);
    type Case = (Box<dyn Fn(&mut Request)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|r| r.width = 60),
            "width 60 must be a positive multiple of 8",
        ),
        (
            Box::new(|r| r.height = 0),
            "height 0 must be a positive multiple of 8",
        ),
        (
            Box::new(|r| r.steps = 0),
            "steps 0 must be between 1 and 500",
        ),
        (
            Box::new(|r| r.steps = 501),
            "steps 501 must be between 1 and 500",
        ),
        (
            Box::new(|r| r.cfg = f64::NAN),
            "must be a number from 0 to 100",
        ),
        (Box::new(|r| r.cfg = -1.0), "must be a number from 0 to 100"),
        (
            Box::new(|r| r.sampler = "Eulr".into()),
            "unknown sampler 'Eulr'; valid names:",
        ),
        (
            Box::new(|r| r.schedule = "Karas".into()),
            "unknown schedule 'Karas'; valid names:",
        ),
    ];
    for (mutate, expected) in cases {
        let mut req = base.clone();
        mutate(&mut req);
        let mut failed = None;
        let err = generate(&model, &req, &cancel, &mut |e| {
            if let Event::Failed { message } = e {
                failed = Some(message)
            }
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
        assert_eq!(failed.as_deref(), Some(err.as_str()));
    }
}

#[test]
fn broken_model_folders_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m");
    copy_dir(&fixtures().join("sd15"), &copy);
    let unet = copy.join("unet/diffusion_pytorch_model.safetensors");

    std::fs::write(&unet, b"hello, I am not a model").unwrap();
    let err = Model::load(&copy, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("diffusion_pytorch_model.safetensors")
            && err.contains("not a safetensors file"),
        "{err}"
    );

    let original =
        std::fs::read(fixtures().join("sd15/unet/diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(&unet, &original[..original.len() / 2]).unwrap();
    let err = Model::load(&copy, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");

    std::fs::remove_file(&unet).unwrap();
    let err = Model::load(&copy, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("neither diffusion_pytorch_model.safetensors nor"),
        "{err}"
    );

    std::fs::write(&unet, &original).unwrap();
    std::fs::write(copy.join("vae/config.json"), b"{ not json").unwrap();
    let err = Model::load(&copy, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("vae/config.json") && err.contains("invalid config"),
        "{err}"
    );

    std::fs::remove_file(copy.join("model_index.json")).unwrap();
    let err = Model::load(&copy, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model_index.json") && err.contains("missing"),
        "{err}"
    );

    let err = Model::load(&dir.path().join("nope"), &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn wrong_shapes_in_weights_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m");
    copy_dir(&fixtures().join("sd15"), &copy);
    let cfg_path = copy.join("unet/config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["cross_attention_dim"] = serde_json::json!(48);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = Model::load(&copy, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unet") && err.contains("do not match"),
        "{err}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn family_prediction_and_defaults_come_from_configs() {
    use sumi_engine::{Family, Parametrization as Prediction};
    let sd15 = load("sd15");
    assert_eq!(
        (sd15.info.family, sd15.info.prediction, sd15.info.turbo),
        (Family::Sd1, Prediction::Epsilon, false)
    );
    assert_eq!(sd15.info.native_size, 64);
    let d = sd15.info.defaults();
    assert_eq!(
        (d.steps, d.sampler, d.schedule, d.size),
        (20, "DPM++ 2M", "Karras", 64)
    );
    let sd2 = load("sd2v");
    assert_eq!(
        (sd2.info.family, sd2.info.prediction),
        (Family::Sd2, Prediction::V)
    );
    let xl = load("sdxl");
    assert_eq!(xl.info.family, Family::Sdxl);
    assert!((xl.info.scaling_factor - 0.13025).abs() < 1e-9);

    // A Turbo model is the same architecture with trailing timesteps: 1 step, no CFG.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("turbo");
    copy_dir(&fixtures().join("sd15"), &copy);
    let cfg_path = copy.join("scheduler/scheduler_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["timestep_spacing"] = serde_json::json!("trailing");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let turbo = Model::load(&copy, &Device::Cpu, DType::F32).unwrap();
    assert!(turbo.info.turbo);
    let d = turbo.info.defaults();
    assert_eq!((d.steps, d.cfg, d.sampler), (1, 1.0, "Euler a"));
    let req = Request::with_defaults(&turbo.info, "a cat", 3);
    let img = generate(&turbo, &req, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(img.dimensions(), (64, 64));
}

#[test]
fn a_model_folders_recommended_settings_become_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("recommends");
    copy_dir(&fixtures().join("sd15"), &copy);
    let file = copy.join("sumi.json");
    std::fs::write(&file, r#"{"defaults": {"cfg": 3.5, "sampler": "euler a"}}"#).unwrap();
    let model = Model::load(&copy, &Device::Cpu, DType::F32).unwrap();
    let req = Request::with_defaults(&model.info, "a cat", 3);
    // Given fields replace the family's; the others stay the family's.
    assert_eq!(
        (
            req.cfg,
            req.sampler.as_str(),
            req.schedule.as_str(),
            req.steps
        ),
        (3.5, "Euler a", "Karras", 20)
    );

    std::fs::write(&file, r#"{"defaults": {"sampler": "Euler z"}}"#).unwrap();
    let err = Model::load(&copy, &Device::Cpu, DType::F32)
        .err()
        .expect("a bad sumi.json is refused")
        .to_string();
    assert!(
        err.contains("sumi.json") && err.contains("Euler z"),
        "{err}"
    );
}

#[test]
fn legacy_combined_sampler_names_pick_the_schedule() {
    let model = load("sd15");
    let mut a = small_request(&model);
    a.sampler = "DPM++ 2M Karras".into();
    a.schedule = "Automatic".into();
    let mut b = small_request(&model);
    b.sampler = "dpmpp_2m".into();
    b.schedule = "karras".into();
    let cancel = AtomicBool::new(false);
    let x = generate(&model, &a, &cancel, &mut |_| {}).unwrap();
    let y = generate(&model, &b, &cancel, &mut |_| {}).unwrap();
    assert_eq!(x, y);
}
