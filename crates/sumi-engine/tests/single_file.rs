//! Single-file (LDM layout) checkpoints made from the tiny fixtures by
//! `tests/fixtures/make_single_file_fixtures.py`: they load through `Model::load_with` and match
//! the diffusers references of the folders they came from; malformed and pickle files fail cleanly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use sumi_engine::arch::network::{AddedCond, NetCond};
use sumi_engine::pipeline::{check_finite, decode, sample_latent};
use sumi_engine::weights::ldm::{infer_config, Checkpoint, YamlHints};
use sumi_engine::{Error, Family, LoadOptions, Model, Parametrization as Prediction, Request};

#[path = "support/fixtures.rs"]
mod support;
use support::{fixtures, max_abs, refs};

fn single(name: &str) -> PathBuf {
    fixtures().join(format!("single/{name}.safetensors"))
}

/// The tiny fixtures use head and group counts that no real checkpoint has, so (as with
/// diffusers' `from_single_file(config=...)`) their folder supplies configs and tokenizers.
fn options(name: &str) -> LoadOptions {
    LoadOptions {
        config_dir: Some(fixtures().join(name)),
        ..Default::default()
    }
}

fn load(name: &str) -> Model {
    Model::load_with(&single(name), &options(name), &Device::Cpu, DType::F32)
        .expect("single-file fixture loads")
}

fn check_components(name: &str) {
    let model = load(name);
    let (t, j) = refs(name);
    // text: rows [negative, cond]
    let cond = model
        .text
        .encode(
            j["text"]["prompt"].as_str().unwrap(),
            j["text"]["negative_prompt"].as_str().unwrap(),
            true,
        )
        .unwrap();
    let err = max_abs(&cond.context, &t["text.neg.context"]);
    assert!(err < 1e-4, "{name}: text context differs by {err}");
    if let Some(p) = &cond.pooled {
        let err = max_abs(p, &t["text.neg.pooled"]);
        assert!(err < 1e-4, "{name}: pooled differs by {err}");
    }
    // UNet
    let added = t.get("unet.text_embeds").map(|te| AddedCond {
        text_embeds: te.clone(),
        time_ids: t["unet.time_ids"].clone(),
    });
    let cond = NetCond::CrossAttention {
        context: t["unet.context"].clone(),
        added,
    };
    let out = model
        .network
        .forward(&t["unet.x"], &t["unet.t"], &cond)
        .unwrap();
    let err = max_abs(&out, &t["unet.out"]);
    assert!(err < 1e-4, "{name}: unet differs by {err}");
    // VAE
    let img = model.vae.decoder.decode(&t["vae.latent"]).unwrap();
    let err = max_abs(&img, &t["vae.image"]);
    assert!(err < 1e-4, "{name}: vae differs by {err}");
    eprintln!("{name}: text, unet, vae match");
}

#[test]
fn sd15_single_file_matches_references() {
    check_components("sd15");
}

#[test]
fn sd2v_single_file_matches_references() {
    check_components("sd2v");
}

#[test]
fn sdxl_single_file_matches_references() {
    check_components("sdxl");
}

#[test]
fn sd2v_single_file_generation_matches_reference() {
    // v-prediction comes from the companion sd2v.yaml; the scheduler is the standard SD one.
    let model = load("sd2v");
    assert_eq!(model.info.prediction, Prediction::V);
    assert_eq!(model.info.family, Family::Sd2);
    let (t, j) = refs("sd2v");
    let g = j["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "euler.normal")
        .unwrap();
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
        noise: Default::default(),
        clip_skip: None,
        emphasis: Default::default(),
    };
    let latent = sample_latent(&model, &request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let image = ((decode(&model, &latent).unwrap() / 2.0).unwrap() + 0.5)
        .unwrap()
        .clamp(0.0, 1.0)
        .unwrap();
    let err = max_abs(&image, &t["gen.euler.normal.image"]);
    assert!(err < 1e-4, "sd2v single-file generation differs by {err}");
}

#[test]
fn configs_are_inferred_from_shapes() {
    for name in ["sd15", "sd2v", "sdxl"] {
        let ck = Checkpoint::open(&single(name)).unwrap();
        let hints = YamlHints::next_to(&single(name))
            .unwrap()
            .unwrap_or_default();
        let got = infer_config(&ck, &hints, None).unwrap();
        let dir = fixtures().join(name);
        let unet: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("unet/config.json")).unwrap())
                .unwrap();
        let u = &got.unet;
        assert_eq!(
            serde_json::json!(u.block_out_channels),
            unet["block_out_channels"]
        );
        assert_eq!(
            serde_json::json!(u.down_block_types),
            unet["down_block_types"]
        );
        assert_eq!(serde_json::json!(u.up_block_types), unet["up_block_types"]);
        assert_eq!(
            serde_json::json!(u.cross_attention_dim),
            unet["cross_attention_dim"]
        );
        assert_eq!(
            serde_json::json!(u.use_linear_projection),
            unet["use_linear_projection"]
        );
        assert_eq!(
            serde_json::json!(u.addition_time_embed_dim),
            unet["addition_time_embed_dim"]
        );
        assert_eq!(
            serde_json::json!(u.projection_class_embeddings_input_dim),
            unet["projection_class_embeddings_input_dim"]
        );
        assert_eq!(format!("{:?}", u.layers_per_block), "One(2)");
        let vae: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vae/config.json")).unwrap())
                .unwrap();
        assert_eq!(
            serde_json::json!(got.vae.block_out_channels),
            vae["block_out_channels"]
        );
        assert_eq!(got.vae.layers_per_block, 2);
        assert_eq!(
            serde_json::json!(got.vae.scaling_factor),
            vae["scaling_factor"]
        );
        let encoders: &[&str] = if name == "sdxl" {
            &["text_encoder", "text_encoder_2"]
        } else {
            &["text_encoder"]
        };
        assert_eq!(got.text.len(), encoders.len());
        for (cfg, enc) in got.text.iter().zip(encoders) {
            let want: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(enc).join("config.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(serde_json::json!(cfg.hidden_size), want["hidden_size"]);
            assert_eq!(
                serde_json::json!(cfg.num_hidden_layers),
                want["num_hidden_layers"]
            );
            assert_eq!(
                serde_json::json!(cfg.intermediate_size),
                want["intermediate_size"]
            );
            assert_eq!(serde_json::json!(cfg.vocab_size), want["vocab_size"]);
            assert_eq!(serde_json::json!(cfg.hidden_act), want["hidden_act"]);
        }
        let (family, prediction) = match name {
            "sd15" => (Family::Sd1, Prediction::Epsilon),
            "sd2v" => (Family::Sd2, Prediction::V),
            _ => (Family::Sdxl, Prediction::Epsilon),
        };
        assert_eq!(got.family, family, "{name}");
        assert_eq!(got.prediction, prediction, "{name}");
        // a caller's override wins over the yaml
        let forced = infer_config(&ck, &hints, Some(Prediction::Epsilon)).unwrap();
        assert_eq!(forced.prediction, Prediction::Epsilon);
    }
}

/// Runs `Model::load` on `path` and returns the error's message (the load must fail).
fn load_err(path: &Path) -> String {
    match Model::load_with(path, &LoadOptions::default(), &Device::Cpu, DType::F32) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => {
            assert!(matches!(e, Error::Model { .. }), "not a model error: {e}");
            e.to_string()
        }
    }
}

#[test]
fn missing_tokenizer_says_where_to_put_one() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("model.safetensors");
    std::fs::copy(single("sd15"), &ck).unwrap();
    // an empty hub cache and no configured folders: nothing to find offline
    std::env::set_var("HF_HUB_CACHE", dir.path().join("hub"));
    std::env::remove_var("SUMI_TOKENIZERS");
    let opts = LoadOptions {
        config_dir: None,
        tokenizer_dirs: vec![],
        ..Default::default()
    };
    let err = Model::load_with(&ck, &opts, &Device::Cpu, DType::F32)
        .err()
        .expect("no tokenizer anywhere")
        .to_string();
    assert!(err.contains("tokenizer"), "{err}");
    assert!(err.contains("SUMI_TOKENIZERS"), "{err}");
    assert!(err.contains("--tokenizers DIR"), "{err}");
}

#[test]
fn pickles_are_refused_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    // A protocol-2 pickle whose loading would call os.system("touch <marker>").
    let cmd = format!("touch {}", marker.display());
    let mut bytes = b"\x80\x02cposix\nsystem\nX".to_vec();
    bytes.extend((cmd.len() as u32).to_le_bytes());
    bytes.extend(cmd.as_bytes());
    bytes.extend(b"\x85R.");
    for name in ["evil.ckpt", "evil.pt", "evil.bin", "evil.pth"] {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        let err = load_err(&p);
        assert!(
            err.contains("pickle") && err.contains("safetensors"),
            "{err}"
        );
        assert!(err.contains(name), "error names the file: {err}");
    }
    // the same bytes under a .safetensors name are not a safetensors file
    let p = dir.path().join("evil.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    let err = load_err(&p);
    assert!(err.contains("safetensors"), "{err}");
    // and as a VAE override
    let err = Model::load_with(
        &single("sd15"),
        &LoadOptions {
            vae: Some(dir.path().join("evil.ckpt")),
            ..options("sd15")
        },
        &Device::Cpu,
        DType::F32,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("pickle"), "{err}");
    assert!(!marker.exists(), "the pickle ran");
}

fn header_file(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn malformed_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // empty
    std::fs::write(d.join("empty.safetensors"), b"").unwrap();
    let err = load_err(&d.join("empty.safetensors"));
    assert!(
        err.contains("empty.safetensors") && err.contains("short"),
        "{err}"
    );
    // a text file renamed
    std::fs::write(
        d.join("notes.safetensors"),
        "these are my prompts, not weights\n".repeat(10),
    )
    .unwrap();
    let err = load_err(&d.join("notes.safetensors"));
    assert!(err.contains("not a safetensors file"), "{err}");
    // header length of u64::MAX
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    std::fs::write(d.join("huge.safetensors"), huge).unwrap();
    let err = load_err(&d.join("huge.safetensors"));
    assert!(err.contains("header"), "{err}");
    // truncated real checkpoint
    let full = std::fs::read(single("sd15")).unwrap();
    std::fs::write(d.join("cut.safetensors"), &full[..full.len() / 2]).unwrap();
    let err = load_err(&d.join("cut.safetensors"));
    assert!(
        err.contains("cut.safetensors") && err.contains("safetensors"),
        "{err}"
    );
    // header lies: offsets far past the end of the file, and a terabyte-sized shape
    let p = header_file(
        d,
        "lies.safetensors",
        r#"{"model.diffusion_model.out.2.weight":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}"#,
        &[0u8; 16],
    );
    let err = load_err(&p);
    assert!(err.contains("lies.safetensors"), "{err}");
    // header says 8 bytes but the shape needs more
    let p = header_file(
        d,
        "shape.safetensors",
        r#"{"a":{"dtype":"F32","shape":[4,4],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    let err = load_err(&p);
    assert!(err.contains("shape.safetensors"), "{err}");
    // valid safetensors but not a model (no UNet)
    let p = header_file(
        d,
        "lora.safetensors",
        r#"{"lora_unet_down.alpha":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0u8; 4],
    );
    let err = load_err(&p);
    assert!(err.contains("model.diffusion_model"), "{err}");
    // an unknown extension
    std::fs::write(d.join("model.gguf"), b"GGUF").unwrap();
    let err = load_err(&d.join("model.gguf"));
    assert!(err.contains(".safetensors"), "{err}");
}

fn rewrite(name: &str, dest: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let mut t = candle_core::safetensors::load(single(name), &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, dest).unwrap();
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options("sd15");
    let missing = dir.path().join("missing.safetensors");
    let key = "model.diffusion_model.middle_block.1.proj_out.weight";
    rewrite("sd15", &missing, |t| {
        t.remove(key);
    });
    let err = Model::load_with(&missing, &opts, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(key) && err.contains("missing.safetensors"),
        "{err}"
    );

    let wrong = dir.path().join("wrong.safetensors");
    let key = "first_stage_model.decoder.conv_out.weight";
    rewrite("sd15", &wrong, |t| {
        t.insert(
            key.into(),
            Tensor::zeros((3, 8, 1, 1), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = Model::load_with(&wrong, &opts, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("shape") && err.contains("wrong.safetensors"),
        "{err}"
    );
}

#[test]
fn f16_and_bf16_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = refs("sd15");
    for dt in [DType::F16, DType::BF16] {
        let p = dir.path().join(format!("{dt:?}.safetensors"));
        rewrite("sd15", &p, |m| {
            for v in m.values_mut() {
                if v.dtype() == DType::F32 {
                    *v = v.to_dtype(dt).unwrap();
                }
            }
        });
        let model = Model::load_with(&p, &options("sd15"), &Device::Cpu, DType::F32).unwrap();
        let img = model.vae.decoder.decode(&t["vae.latent"]).unwrap();
        // the weights were rounded to 16 bits, so only roughly equal
        let err = max_abs(&img, &t["vae.image"]);
        assert!(err < 0.1, "{dt:?}: vae differs by {err}");
    }
}

#[test]
fn vae_override_from_folder_and_file() {
    let (t, _) = refs("sd15");
    // the sd15 VAE folder as an override gives the same decoder
    let opts = LoadOptions {
        vae: Some(fixtures().join("sd15/vae")),
        ..options("sd15")
    };
    let model = Model::load_with(&single("sd15"), &opts, &Device::Cpu, DType::F32).unwrap();
    let err = max_abs(
        &model.vae.decoder.decode(&t["vae.latent"]).unwrap(),
        &t["vae.image"],
    );
    assert!(err < 1e-4, "folder override: {err}");
    // an LDM-layout VAE file (the VAE part of the checkpoint, without its prefix)
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vae.safetensors");
    // the tiny VAE's group count is not in its weights: a config.json beside the file says it
    std::fs::copy(
        fixtures().join("sd15/vae/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let all = candle_core::safetensors::load(single("sd15"), &Device::Cpu).unwrap();
    let vae: HashMap<String, Tensor> = all
        .into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("first_stage_model.")
                .map(|k| (k.to_string(), v))
        })
        .collect();
    candle_core::safetensors::save(&vae, &p).unwrap();
    let opts = LoadOptions {
        vae: Some(p),
        ..options("sd2v")
    };
    // sd2v's model with sd15's VAE: the decoder must be sd15's
    let model = Model::load_with(&single("sd2v"), &opts, &Device::Cpu, DType::F32).unwrap();
    let err = max_abs(
        &model.vae.decoder.decode(&t["vae.latent"]).unwrap(),
        &t["vae.image"],
    );
    assert!(err < 1e-4, "file override: {err}");
}

#[test]
fn nan_images_are_reported() {
    let p = Path::new("model.safetensors");
    let ok = Tensor::new(&[0.5f32, -1.0, 1.0], &Device::Cpu).unwrap();
    assert!(check_finite(&ok, DType::F16, p).is_ok());
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let t = Tensor::new(&[0.5f32, bad, 1.0], &Device::Cpu).unwrap();
        let err = check_finite(&t, DType::F16, p).unwrap_err().to_string();
        assert!(
            err.contains("NaN") && err.contains("--vae") && err.contains("f32"),
            "{err}"
        );
    }
}
