//! Hostile or damaged model folders: every value that sizes an allocation is bounded, and
//! nothing that is not a regular file is read. Each gives a clear error, never an abort or a hang.

#[path = "support/fixtures.rs"]
mod support;

use std::path::Path;

use candle_core::{DType, Device};
use sumi_engine::Model;
use support::fixtures;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A copy of the tiny SD 1.5 fixture with `file`'s JSON key `key` set to `value`.
fn with_value(file: &str, key: &str, value: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("sd15"), dir.path());
    let path = dir.path().join(file);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(&path, json.to_string()).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match Model::load(dir, &Device::Cpu, DType::F32) {
        Ok(_) => panic!("a damaged model loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn values_that_size_allocations_are_bounded() {
    let cases = [
        (
            "scheduler/scheduler_config.json",
            "num_train_timesteps",
            serde_json::json!(1_000_000_000_000u64),
            "num_train_timesteps is 1000000000000",
        ),
        (
            "unet/config.json",
            "attention_head_dim",
            serde_json::json!(0),
            "attention_head_dim is 0",
        ),
        (
            "unet/config.json",
            "layers_per_block",
            serde_json::json!(1_000_000),
            "layers_per_block is 1000000",
        ),
        (
            "unet/config.json",
            "cross_attention_dim",
            serde_json::json!(1u64 << 40),
            "cross_attention_dim is",
        ),
        (
            "unet/config.json",
            "attention_head_dim",
            serde_json::json!(7),
            "does not divide",
        ),
        (
            "vae/config.json",
            "layers_per_block",
            serde_json::json!(1_000_000),
            "layers_per_block is 1000000",
        ),
        (
            "vae/config.json",
            "latent_channels",
            serde_json::json!(0),
            "latent_channels is 0",
        ),
        (
            "text_encoder/config.json",
            "vocab_size",
            serde_json::json!(1u64 << 40),
            "vocab_size is",
        ),
        (
            "text_encoder/config.json",
            "num_hidden_layers",
            serde_json::json!(100_000),
            "num_hidden_layers is 100000",
        ),
        (
            "text_encoder/config.json",
            "max_position_embeddings",
            serde_json::json!(0),
            "max_position_embeddings is 0",
        ),
    ];
    for (file, key, value, expect) in cases {
        let dir = with_value(file, key, value);
        let e = load_error(dir.path());
        assert!(e.contains(expect), "{file} {key}: {e}");
        assert!(
            e.contains(file.split('/').next().unwrap()),
            "names the file: {e}"
        );
    }
}

#[cfg(unix)]
#[test]
fn fifos_are_refused_without_waiting() {
    fn mkfifo(path: &Path) {
        std::fs::remove_file(path).ok();
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    for file in [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixtures().join("sd15"), dir.path());
        mkfifo(&dir.path().join(file));
        let e = load_error(dir.path());
        assert!(e.contains("not a regular file"), "{file}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.safetensors");
    mkfifo(&fifo);
    let e = load_error(&fifo);
    assert!(e.contains("not a regular file or folder"), "{e}");
}

/// UNet weights full of NaN: the error names the denoising network, not the VAE.
#[test]
fn nan_from_the_network_is_blamed_on_the_network() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("sd15"), dir.path());
    let file = dir.path().join("unet/diffusion_pytorch_model.safetensors");
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let poisoned: std::collections::HashMap<_, _> = tensors
        .into_iter()
        .map(|(k, t)| {
            let nan = (t.ones_like().unwrap() * f64::NAN).unwrap();
            (k, nan)
        })
        .collect();
    candle_core::safetensors::save(&poisoned, &file).unwrap();
    let model = Model::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
    let request = sumi_engine::Request {
        prompt: "a cat".into(),
        steps: 2,
        width: 64,
        height: 64,
        ..Default::default()
    };
    let e = sumi_engine::pipeline::sample_latent(
        &model,
        &request,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("denoising network"), "{e}");
    assert!(!e.contains("VAE weights"), "{e}");
}
