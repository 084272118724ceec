use super::*;

fn list(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn picks_fp16_single_files_and_skips_other_formats() {
    let files = list(&[
        "model_index.json",
        "README.md",
        "v1-5-pruned.ckpt",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.non_ema.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_flax_model.msgpack",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/model.onnx",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/tokenizer_config.json",
        "safety_checker/config.json",
        "safety_checker/model.safetensors",
    ]);
    let got = select_model_files(&files).unwrap();
    assert_eq!(
        got,
        list(&[
            "model_index.json",
            "scheduler/scheduler_config.json",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "tokenizer/tokenizer_config.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/config.json",
            "text_encoder/model.fp16.safetensors",
        ])
    );
}

#[test]
fn sharded_weights_come_with_their_index() {
    let files = list(&[
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors.index.json",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
        "text_encoder_2/config.json",
        "text_encoder_2/model.safetensors.index.json",
        "text_encoder_2/model-00001-of-00002.safetensors",
        "text_encoder_2/model-00002-of-00002.safetensors",
        "text_encoder_2/pytorch_model-00001-of-00002.bin",
    ]);
    let got = select_model_files(&files).unwrap();
    assert_eq!(
        got,
        list(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
            "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
            "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
            "text_encoder_2/config.json",
            "text_encoder_2/model.safetensors.index.json",
            "text_encoder_2/model-00001-of-00002.safetensors",
            "text_encoder_2/model-00002-of-00002.safetensors",
        ])
    );
}

#[test]
fn pickle_only_components_and_non_diffusers_repos_are_refused() {
    let pickle = list(&[
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
    ]);
    let err = select_model_files(&pickle).unwrap_err();
    assert!(err.contains("unet/") && err.contains("pickle"), "{err}");
    let single = list(&["sd_xl_base_1.0.safetensors", "README.md"]);
    let err = select_model_files(&single).unwrap_err();
    assert!(err.contains("model_index.json"), "{err}");
    let clip = list(&[
        "vocab.json",
        "merges.txt",
        "pytorch_model.bin",
        "config.json",
    ]);
    assert_eq!(
        select_model_files(&clip).unwrap(),
        list(&["vocab.json", "merges.txt"])
    );
}

#[test]
fn names_and_paths_are_checked() {
    assert_eq!(clean_etag("W/\"abc\""), "abc");
    assert!(is_sha256(&"a".repeat(64)) && !is_sha256("abc"));
    assert!(check_revision("main").is_ok() && check_revision("refs/pr/1").is_ok());
    assert!(check_revision("../x").is_err() && check_revision("").is_err());
    assert!(check_rel_path("unet/config.json").is_ok());
    assert!(check_rel_path("../x").is_err() && check_rel_path("/etc/passwd").is_err());
    assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
    assert_eq!(encode("a b/c.json", true), "a%20b/c.json");
}
