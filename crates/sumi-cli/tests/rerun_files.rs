//! A gallery image made from a model whose parts were named by flags (a Flux transformer file
//! with `--t5`, `--clip-l`, `--vae` and `--tokenizers`) re-runs without them: the gallery
//! recorded where each file was, and a part that has gone since is named with its flag.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/flux")
}

fn sumi(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sumi"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("SUMI_MODEL_DIRS", "")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("sumi runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_image_from_named_parts_re_runs_without_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (home, models) = (dir.path().join("home"), dir.path().join("models"));
    let pipe = fixtures().join("pipe-dev");
    for part in [
        "text_encoder",
        "text_encoder_2",
        "vae",
        "tokenizer",
        "tokenizer_2",
    ] {
        common::copy_dir(&pipe.join(part), &models.join("parts").join(part));
    }
    let model = models.join("flux1-dev-pipe-Q8_0.gguf");
    std::fs::copy(fixtures().join("files/flux1-dev-pipe-Q8_0.gguf"), &model).unwrap();
    let parts = models.join("parts");
    let path = |p: PathBuf| p.display().to_string();
    let made = sumi(
        &home,
        &[
            "generate",
            "--model",
            &path(model.clone()),
            "--t5",
            &path(parts.join("text_encoder_2")),
            "--clip-l",
            &path(parts.join("text_encoder")),
            "--vae",
            &path(parts.join("vae")),
            "--tokenizers",
            &path(parts.clone()),
            "-p",
            "a lighthouse",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--seed",
            "5",
        ],
    );
    assert!(made.status.success(), "{}", text(&made));

    let again = sumi(&home, &["gallery", "rerun", "1"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("identical pixels to #1"),
        "{}",
        text(&again)
    );

    // Without the record the transformer file alone is not enough.
    std::fs::remove_dir_all(parts.join("vae")).unwrap();
    let gone = sumi(&home, &["gallery", "rerun", "1"]);
    assert!(!gone.status.success());
    let err = text(&gone);
    assert!(err.contains("VAE") && err.contains("--vae"), "{err}");
    assert!(err.contains(&path(parts.join("vae"))), "{err}");
}

/// `file`'s first 16 f32 values doubled or halved (their lowest exponent bit flipped).
fn altered_copy(file: &Path, to: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for i in 0..16 {
        bytes[8 + header + 4 * i + 3] ^= 0x01;
    }
    std::fs::write(to, bytes).unwrap();
}

#[test]
fn a_separate_vae_is_recorded_as_a1111_does_and_named_when_a_rerun_differs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sd15 = fixtures().join("../sd15");
    // A VAE folder with other weights (the tiny fixture's VAE needs its config).
    let vae = dir.path().join("my-vae");
    std::fs::create_dir(&vae).unwrap();
    std::fs::copy(sd15.join("vae/config.json"), vae.join("config.json")).unwrap();
    let weights = "diffusion_pytorch_model.safetensors";
    altered_copy(&sd15.join("vae").join(weights), &vae.join(weights));
    let path = |p: &Path| p.display().to_string();
    let made = sumi(
        &home,
        &[
            "generate",
            "--model",
            &path(&sd15),
            "--vae",
            &path(&vae),
            "-p",
            "a boat",
            "--steps",
            "3",
            "--seed",
            "4",
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let shown = sumi(&home, &["gallery", "show", "1", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["params"]["vae_name"], "my-vae");
    // A folder has no single file to hash.
    assert!(json["params"]["vae_hash"].is_null());
    let png = std::fs::read(json["image_path"].as_str().unwrap()).unwrap();
    assert!(String::from_utf8_lossy(&png).contains("Model: sd15, VAE: my-vae"));

    // The recorded VAE is used again without --vae.
    let out = path(&dir.path().join("again.png"));
    let again = sumi(&home, &["generate", "--from", "1", "--no-save", "-o", &out]);
    assert!(
        text(&again).contains("identical pixels to #1"),
        "{}",
        text(&again)
    );

    // The model's own VAE: other pixels, and the VAE is named as the reason.
    let own = path(&sd15.join("vae"));
    let other = sumi(&home, &["gallery", "rerun", "1", "--vae", &own]);
    let err = text(&other);
    assert!(other.status.success(), "{err}");
    assert!(
        err.contains("was made with VAE my-vae, this run used vae"),
        "{err}"
    );
}

#[test]
fn an_image_brought_from_another_computer_finds_its_forge_modules_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // Forge's folders: the transformer in models/Stable-diffusion, the VAE in models/VAE, the
    // text encoders in models/text_encoder.
    let models = dir.path().join("models");
    let (checkpoints, encoders) = (models.join("Stable-diffusion"), models.join("text_encoder"));
    let pipe = fixtures().join("pipe-dev");
    for part in ["tokenizer", "tokenizer_2"] {
        common::copy_dir(&pipe.join(part), &checkpoints.join(part));
    }
    for d in [&encoders, &models.join("VAE")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let model = checkpoints.join("flux1-dev-pipe-Q8_0.gguf");
    std::fs::copy(fixtures().join("files/flux1-dev-pipe-Q8_0.gguf"), &model).unwrap();
    let copy = |from: &str, to: &Path| std::fs::copy(pipe.join(from), to).unwrap();
    copy(
        "vae/diffusion_pytorch_model.safetensors",
        &models.join("VAE/ae.safetensors"),
    );
    copy(
        "text_encoder/model.safetensors",
        &encoders.join("clip_l.safetensors"),
    );
    let t5 = encoders.join("t5xxl_fp8_e4m3fn.safetensors");
    copy("text_encoder_2/model.safetensors", &t5);
    // The T5 Sumi would take when none is named (the first by name): not one it can read.
    std::fs::write(encoders.join("t5xxl_fp16.safetensors"), b"not weights").unwrap();

    let made_png = dir.path().join("made.png");
    let path = |p: &Path| p.display().to_string();
    let made = sumi(
        &dir.path().join("home-a"),
        &[
            "generate",
            "--model",
            &path(&model),
            "--t5",
            &path(&t5),
            "-p",
            "a kite",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--seed",
            "9",
            "-o",
            &path(&made_png),
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let png = String::from_utf8_lossy(&std::fs::read(&made_png).unwrap()).into_owned();
    assert!(
        png.contains("Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp8_e4m3fn"),
        "the infotext names the modules as Forge does"
    );

    // Another gallery, which has no record of the files: the names find them.
    let home = dir.path().join("home-b");
    let in_models = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sumi"))
            .arg("--home")
            .arg(&home)
            .args(args)
            .env("SUMI_MODEL_DIRS", &models)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("sumi runs")
    };
    let imported = in_models(&["gallery", "import", &path(&made_png)]);
    assert!(imported.status.success(), "{}", text(&imported));
    let again = in_models(&["gallery", "rerun", "1"]);
    assert!(
        text(&again).contains("identical pixels to #1"),
        "{}",
        text(&again)
    );

    // A module that is not there is named, and the re-run takes what Sumi finds.
    std::fs::rename(&t5, dir.path().join("elsewhere.safetensors")).unwrap();
    let gone = in_models(&["gallery", "rerun", "1"]);
    let err = text(&gone);
    assert!(
        err.contains("t5xxl_fp8_e4m3fn, which this image was made with, is not among"),
        "{err}"
    );
    assert!(!gone.status.success(), "{err}");
    assert!(err.contains("t5xxl_fp16.safetensors"), "{err}");
}
