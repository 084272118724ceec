//! LoRAs on a GGUF-quantized Flux transformer: the weights stay quantized and each LoRA's
//! factors are added to its layers' products. The tiny dev pipeline's transformer as a Q8_0 GGUF
//! (`tests/fixtures/flux/make_pipe_gguf.py`, written with gguf-py as city96's files are) is run
//! beside a safetensors file holding exactly its dequantized values; a LoRA must change the GGUF
//! model's image as it changes the dequantized model's (whose patching is checked against
//! diffusers in `flux_lora.rs`), and removing it gives back the plain image bit for bit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{DType, Device, Tensor};
use sumi_engine::model::LoadOptions;
use sumi_engine::pipeline::{sample_latent, Request};
use sumi_engine::weights::lora::LoraFile;
use sumi_engine::Model;

#[path = "support/lora.rs"]
mod lora_support;
#[path = "support/fixtures.rs"]
mod support;
use lora_support::*;
use support::{decoded_image, fixtures, max_abs};

/// A ComfyUI tree in `root` with the GGUF fixture and a safetensors file of its dequantized
/// values in `diffusion_models/`, and the pipeline's text encoders and VAE beside them.
fn write_tree(root: &Path) -> (PathBuf, PathBuf) {
    let comfy = fixtures().join("flux/comfy/models");
    let models = root.join("models");
    for part in ["text_encoders", "vae"] {
        std::fs::create_dir_all(models.join(part)).unwrap();
        for entry in std::fs::read_dir(comfy.join(part)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), models.join(part).join(entry.file_name())).unwrap();
        }
    }
    let dm = models.join("diffusion_models");
    std::fs::create_dir_all(&dm).unwrap();
    let gguf = dm.join("flux1-dev-pipe-Q8_0.gguf");
    std::fs::copy(
        fixtures().join("flux/files/flux1-dev-pipe-Q8_0.gguf"),
        &gguf,
    )
    .unwrap();
    let mut f = std::fs::File::open(&gguf).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut dequantized = HashMap::new();
    let mut q8 = 0;
    for name in content.tensor_infos.keys() {
        let q = content.tensor(&mut f, name, &Device::Cpu).unwrap();
        q8 += usize::from(q.dtype() == GgmlDType::Q8_0);
        dequantized.insert(name.clone(), q.dequantize(&Device::Cpu).unwrap());
    }
    assert!(q8 > 20, "the transformer's matrices are quantized");
    let dense = dm.join("flux1-dev-pipe-dequant.safetensors");
    candle_core::safetensors::save(&dequantized, &dense).unwrap();
    (gguf, dense)
}

fn load(path: &Path) -> Model {
    let options = LoadOptions {
        tokenizer_dirs: vec![fixtures().join("flux/pipe-dev")],
        ..Default::default()
    };
    Model::load_with(path, &options, &Device::Cpu, DType::F32).expect("the tiny Flux file loads")
}

/// The image of a short dev run, `[h, w, 3]` in 0..1.
fn image(model: &Model) -> Tensor {
    let req = Request {
        prompt: "a photo of a red cat".into(),
        seed: 7,
        steps: 3,
        cfg: 1.0,
        guidance: Some(3.5),
        sampler: "Euler".into(),
        width: 64,
        height: 48,
        ..Request::default()
    };
    let cancel = AtomicBool::new(false);
    let latent = sample_latent(model, &req, &cancel, &mut |_| {}).unwrap();
    decoded_image(model, &latent)
}

/// Factors twice as large as the shared helper's, so a LyCORIS file moves the image clearly.
fn factor(shape: &[usize], seed: f32) -> Tensor {
    (randn(shape, seed) * 2.0).unwrap()
}

/// A LyCORIS file: LoHa on a double block's fused qkv, LoKr on a single block's `linear1`
/// (its blocks of 32 rows line up with q, k, v and the MLP's rows).
fn write_lycoris(dir: &Path) -> PathBuf {
    let (c, mlp) = (32, 128);
    let qkv = "lora_unet_double_blocks_0_img_attn_qkv";
    let l1 = "lora_unet_single_blocks_1_linear1";
    let tensors: HashMap<String, Tensor> = [
        (format!("{qkv}.hada_w1_a"), factor(&[3 * c, 2], 1.0)),
        (format!("{qkv}.hada_w1_b"), factor(&[2, c], 2.0)),
        (format!("{qkv}.hada_w2_a"), factor(&[3 * c, 2], 3.0)),
        (format!("{qkv}.hada_w2_b"), factor(&[2, c], 4.0)),
        (
            format!("{qkv}.alpha"),
            Tensor::new(8f32, &Device::Cpu).unwrap(),
        ),
        (
            format!("{l1}.lokr_w1"),
            factor(&[(3 * c + mlp) / c, 1], 5.0),
        ),
        (format!("{l1}.lokr_w2"), factor(&[c, c], 6.0)),
    ]
    .into_iter()
    .collect();
    let path = dir.join("lycoris.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

/// How far the LoRA's effect on the GGUF model's image (`with_q - plain_q`) is from its effect
/// on the dequantized model's, and the size of the latter; the quantized products' own
/// rounding (activations quantized in few-row products) mostly cancels in the difference.
fn effects(with_q: &Tensor, plain_q: &Tensor, with_d: &Tensor, plain_d: &Tensor) -> (f32, f32) {
    let eq = (with_q - plain_q).unwrap();
    let ed = (with_d - plain_d).unwrap();
    (max_abs(&eq, &ed), max_abs(with_d, plain_d))
}

/// The LoRA's effect on the GGUF model's image is its effect on the dequantized model's.
#[test]
fn loras_on_a_gguf_transformer_match_the_dequantized_weights_patched() {
    let tmp = tempfile::tempdir().unwrap();
    let (gguf, dense) = write_tree(tmp.path());
    let mut q = load(&gguf);
    let mut d = load(&dense);
    assert!(q
        .params()
        .unet
        .quantized("transformer_blocks.0.attn.to_q.weight")
        .is_some());
    let (plain_q, plain_d) = (image(&q), image(&d));
    let base = max_abs(&plain_q, &plain_d);
    let files = [
        ("kohya", open("flux_kohya.safetensors")),
        ("peft", open("flux_peft.safetensors")),
        (
            "lycoris",
            Arc::new(LoraFile::open(&write_lycoris(tmp.path())).unwrap()),
        ),
    ];
    for (name, file) in files {
        let rq = q.set_loras(&[lora(&file, 0.9, 0.9)]).unwrap();
        let rd = d.set_loras(&[lora(&file, 0.9, 0.9)]).unwrap();
        assert_eq!(rq.loras[0].unmatched, rd.loras[0].unmatched, "{name}");
        assert_eq!(rq.loras[0].matched, rd.loras[0].matched, "{name}");
        let (with_q, with_d) = (image(&q), image(&d));
        let (err, effect) = effects(&with_q, &plain_q, &with_d, &plain_d);
        eprintln!(
            "{name}: effect {effect:.2e}, on GGUF off by {err:.2e} (images without: {base:.2e})"
        );
        assert!(effect > 5e-2, "{name}: the LoRA barely changes the image");
        assert!(
            err < effect / 6.0,
            "{name}: the LoRA's effect on GGUF is off by {err:.2e} (effect {effect:.2e})"
        );
        q.clear_loras().unwrap();
        d.clear_loras().unwrap();
        assert_eq!(
            max_abs(&image(&q), &plain_q),
            0.0,
            "{name}: after clear_loras"
        );
    }
}

/// Two LoRAs stack on quantized layers, and a DoRA file (whose decomposition needs the weight
/// itself) is refused with a reason, leaving the applied set as it was.
#[test]
fn gguf_loras_stack_and_dora_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (gguf, dense) = write_tree(tmp.path());
    let mut q = load(&gguf);
    let mut d = load(&dense);
    let (plain_q, plain_d) = (image(&q), image(&d));
    let kohya = open("flux_kohya.safetensors");
    let lycoris = Arc::new(LoraFile::open(&write_lycoris(tmp.path())).unwrap());
    let set = [lora(&kohya, 0.7, 0.7), lora(&lycoris, -0.6, -0.6)];
    q.set_loras(&set).unwrap();
    d.set_loras(&set).unwrap();
    let (with_q, with_d) = (image(&q), image(&d));
    let (err, effect) = effects(&with_q, &plain_q, &with_d, &plain_d);
    eprintln!("two LoRAs: effect {effect:.2e}, on GGUF off by {err:.2e}");
    assert!(
        err < effect / 6.0,
        "two LoRAs on GGUF: off by {err:.2e} (effect {effect:.2e})"
    );

    let c = 32;
    let layer = "lora_unet_double_blocks_0_img_attn_proj";
    let tensors: HashMap<String, Tensor> = [
        (format!("{layer}.lora_down.weight"), factor(&[2, c], 7.0)),
        (format!("{layer}.lora_up.weight"), factor(&[c, 2], 8.0)),
        (
            format!("{layer}.dora_scale"),
            factor(&[1, c], 9.0).abs().unwrap(),
        ),
    ]
    .into_iter()
    .collect();
    let path = tmp.path().join("dora.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let dora = Arc::new(LoraFile::open(&path).unwrap());
    let err = q
        .set_loras(&[lora(&dora, 1.0, 1.0)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("DoRA on a GGUF-quantized layer"), "{err}");
    assert_eq!(q.loras().len(), 2, "the set applied before stays");
    assert_eq!(max_abs(&image(&q), &with_q), 0.0);
}
