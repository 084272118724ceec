//! `sumi models pull` and the tokenizer download of `sumi generate`, against a local server with
//! the Hugging Face hub's URL layout on 127.0.0.1 (HF_ENDPOINT) and a temporary HF_HUB_CACHE.

#[path = "../../sumi-hub/tests/support/hub_server.rs"]
mod hub_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hub_server::{HubServer, Repo};

const SHA: &str = "2222222222222222222222222222222222222222";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Runs `sumi` with the hub at `endpoint` and the cache at `cache`, and nothing from the
/// environment that could point it elsewhere.
fn sumi(
    home: &Path,
    endpoint: &str,
    cache: &Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sumi"));
    cmd.arg("--home").arg(home).args(args);
    for var in [
        "HF_TOKEN",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        "SUMI_TOKENIZERS",
        "SUMI_MODEL_DIRS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HF_ENDPOINT", endpoint).env("HF_HUB_CACHE", cache);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("sumi runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn pulled_repo_is_listed_and_generates_by_its_id() {
    let server = HubServer::start(vec![(
        "org/tiny",
        Repo::from_dir(&fixtures().join("sd15"), SHA),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let (home, cache) = (dir.path().join("home"), dir.path().join("hub"));

    let o = sumi(
        &home,
        &server.url,
        &cache,
        &[],
        &["models", "pull", "org/tiny"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let snap = cache.join("models--org--tiny/snapshots").join(SHA);
    assert!(
        text(&o.stdout).contains(&snap.display().to_string()),
        "{}",
        text(&o.stdout)
    );
    assert!(snap
        .join("unet/diffusion_pytorch_model.safetensors")
        .is_file());

    let o = sumi(
        &home,
        &server.url,
        &cache,
        &[],
        &["models", "--json", "--no-hash"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "org/tiny"),
        "{listed}"
    );

    let out = dir.path().join("out.png");
    let o = sumi(
        &home,
        &server.url,
        &cache,
        &[],
        &[
            "generate",
            "--model",
            "org/tiny",
            "--prompt",
            "a red circle",
            "--seed",
            "3",
            "--steps",
            "2",
            "--no-save",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("loaded org/tiny"),
        "{}",
        text(&o.stderr)
    );
    assert!(out.is_file());
}

#[test]
fn pulling_a_missing_repo_fails_with_advice() {
    let server = HubServer::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let o = sumi(
        &dir.path().join("home"),
        &server.url,
        &dir.path().join("hub"),
        &[],
        &["models", "pull", "org/nothing-here"],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("org/nothing-here was not found") && err.contains("check the id"),
        "{err}"
    );
}

/// The configs of the tiny SD1.5 model without its tokenizer, as `--config` for its single file.
fn configs_without_tokenizer(to: &Path) {
    let src = fixtures().join("sd15");
    for f in [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
    ] {
        let dest = to.join(f);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(src.join(f), dest).unwrap();
    }
}

#[test]
fn single_file_tokenizers_are_fetched_once_or_explained_offline() {
    let server = HubServer::start(vec![(
        "openai/clip-vit-large-patch14",
        Repo::from_dir(&fixtures().join("sd15/tokenizer"), SHA),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let (home, cache) = (dir.path().join("home"), dir.path().join("hub"));
    let config = dir.path().join("config");
    configs_without_tokenizer(&config);
    let checkpoint = fixtures().join("single/sd15.safetensors");
    let out = dir.path().join("out.png");
    let args = [
        "generate",
        "--model",
        checkpoint.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--prompt",
        "a red circle",
        "--seed",
        "3",
        "--steps",
        "1",
        "--no-save",
        "--output",
        out.to_str().unwrap(),
        "--force",
    ];

    // Offline with nothing cached: the error says what to do.
    let o = sumi(
        &home,
        &server.url,
        &cache,
        &[("HF_HUB_OFFLINE", "1")],
        &args,
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("sumi models pull openai/clip-vit-large-patch14 --tokenizers-only")
            && err.contains("--tokenizers DIR"),
        "{err}"
    );
    assert!(server.log().is_empty(), "offline means no requests");

    // Online: fetched into the hub cache, then used.
    let o = sumi(&home, &server.url, &cache, &[], &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tok = cache
        .join("models--openai--clip-vit-large-patch14/snapshots")
        .join(SHA);
    assert!(tok.join("vocab.json").is_file() && tok.join("tokenizer_config.json").is_file());

    // Next time it is found in the cache: no requests at all.
    server.clear_log();
    let o = sumi(&home, &server.url, &cache, &[], &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(server.log().is_empty(), "{:?}", server.log());
}
