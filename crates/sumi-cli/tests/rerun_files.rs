//! A gallery image made from a model whose parts were named by flags (a Flux transformer file
//! with `--t5`, `--clip-l`, `--vae` and `--tokenizers`) re-runs without them: the gallery
//! recorded where each file was, and a part that has gone since is named with its flag.

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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
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
        copy_dir(&pipe.join(part), &models.join("parts").join(part));
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
