//! Property tests ("fuzzing" on stable Rust) for what the engine reads from files a user
//! downloads: the safetensors header reader, LoRA files and their key mapper, and the model
//! configs. Each input must give a value or an error, never a panic, an abort or a hang; a LoRA
//! that fails to apply leaves the model as it was.
//!
//! `SUMI_FUZZ_CASES` sets the cases per property (default 300, kept short for CI); a longer
//! local pass: `SUMI_FUZZ_CASES=50000 cargo test -p sumi-engine --release --test fuzz_weights`.

#[path = "support/fixtures.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use proptest::prelude::*;
use sumi_engine::arch::clip::ClipTextConfig;
use sumi_engine::arch::unet::UNetConfig;
use sumi_engine::arch::vae::VaeConfig;
use sumi_engine::model::LoraUse;
use sumi_engine::weights::lora::LoraFile;
use sumi_engine::weights::SafetensorsFiles;
use support::fixtures;

fn cases() -> u32 {
    std::env::var("SUMI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn lora_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("lora").join(name)).unwrap()
}

/// A safetensors file from a header JSON value and `data` bytes.
fn safetensors_bytes(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// Opens `bytes` as a safetensors file and reads every tensor it lists; returns whether it opened.
fn read_all(dir: &Path, bytes: &[u8]) -> bool {
    let path = dir.join("case.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let Ok(st) = SafetensorsFiles::open(&[path]) else {
        return false;
    };
    let names: Vec<String> = st.shapes().map(|(k, _)| k.to_string()).collect();
    for name in names {
        let _ = st.load(&name, DType::F32, &Device::Cpu);
    }
    true
}

/// A header entry with a dtype, a shape and offsets drawn from values that hit the reader's
/// edge cases (zero sizes, overflowing products, offsets past the data, reversed ranges).
fn entry() -> impl Strategy<Value = serde_json::Value> {
    let dtype = prop::sample::select(vec![
        "F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X", "",
    ]);
    let dim = prop_oneof![0usize..6, Just(usize::MAX), Just(1usize << 40)];
    let offset = prop_oneof![0u64..128, Just(u64::MAX)];
    (
        dtype,
        prop::collection::vec(dim, 0..5),
        offset.clone(),
        offset,
    )
        .prop_map(|(dtype, shape, a, b)| {
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [a, b]})
        })
}

fn key() -> impl Strategy<Value = String> {
    let part = prop::sample::select(vec![
        "lora_unet",
        "lora_te",
        "lora_te1",
        "lora_te2",
        "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
        "input_blocks_1_1_proj_in",
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
        "lora_down",
        "lora_up",
        "lora_mid",
        "alpha",
        "weight",
        "hada_w1_a",
        "hada_w1_b",
        "lokr_w1",
        "lokr_w2_a",
        "dora_scale",
        "lora_A",
        "lora_B",
        "processor",
        "0",
        "999999999999999999999",
        "",
        "..",
        "é",
    ]);
    let sep = prop::sample::select(vec![".", "_", "..", ""]);
    prop::collection::vec((part, sep), 1..7).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(p, s)| format!("{p}{s}"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Structured headers: any mix of dtypes, shapes and offsets opens or is refused.
    #[test]
    fn safetensors_headers_never_panic(
        entries in prop::collection::btree_map(key(), entry(), 0..6),
        metadata in prop::option::of(prop::collection::btree_map("[a-z_]{0,8}", "[ -~]{0,16}", 0..3)),
        data in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut header = serde_json::Map::new();
        for (k, v) in entries {
            header.insert(k, v);
        }
        if let Some(m) = metadata {
            header.insert("__metadata__".into(), serde_json::json!(m));
        }
        let dir = tempfile::tempdir().unwrap();
        read_all(dir.path(), &safetensors_bytes(&serde_json::Value::Object(header), &data));
    }

    /// A real LoRA file with bytes overwritten or cut: it opens, or the error names the file.
    #[test]
    fn damaged_lora_files_open_or_are_refused(
        which in prop::sample::select(vec!["sd15_kohya.safetensors", "sd15_loha.safetensors", "sd15_lokr.safetensors", "sd15_peft.safetensors"]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = lora_fixture(which);
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(which);
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = LoraFile::open(&path) {
            let msg = e.to_string();
            prop_assert!(msg.contains(which), "{}", msg);
        }
    }

    /// Model configs with values anywhere from 0 to huge: validation refuses or accepts, and
    /// what it accepts is within the bounds.
    #[test]
    fn configs_are_bounded(
        channels in prop::collection::vec(prop_oneof![0usize..2048, Just(usize::MAX / 2)], 0..6),
        layers in prop_oneof![0usize..4, Just(1usize << 40)],
        width in prop_oneof![0usize..1024, Just(1usize << 50)],
        heads in prop_oneof![0usize..16, Just(usize::MAX)],
    ) {
        let vae = serde_json::json!({
            "block_out_channels": channels, "layers_per_block": layers,
            "latent_channels": heads, "norm_num_groups": heads.clamp(1, 64),
        });
        if let Ok(cfg) = serde_json::from_value::<VaeConfig>(vae) {
            if cfg.validate().is_ok() {
                prop_assert!(cfg.layers_per_block <= 32 && cfg.latent_channels <= 256);
            }
        }
        let clip = serde_json::json!({
            "vocab_size": width, "hidden_size": width, "intermediate_size": width,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "max_position_embeddings": width,
        });
        if let Ok(cfg) = serde_json::from_value::<ClipTextConfig>(clip) {
            if cfg.validate().is_ok() {
                prop_assert!(cfg.hidden_size <= 16384 && cfg.num_hidden_layers <= 256);
            }
        }
        let unet = serde_json::json!({
            "block_out_channels": channels, "layers_per_block": layers,
            "attention_head_dim": heads, "cross_attention_dim": width,
            "down_block_types": vec!["CrossAttnDownBlock2D"; channels.len()],
            "up_block_types": vec!["CrossAttnUpBlock2D"; channels.len()],
        });
        if let Ok(cfg) = serde_json::from_value::<UNetConfig>(unet) {
            if cfg.validate().is_ok() {
                prop_assert!(cfg.cross_attention_dim <= 16384);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (cases() / 10).max(10), ..ProptestConfig::default() })]

    /// A LoRA with damaged tensor values or shapes applied to the tiny SD 1.5 model: it applies,
    /// or it fails and the model's output is what it was before.
    #[test]
    fn damaged_loras_apply_or_leave_the_model_unchanged(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        weight in prop_oneof![-4.0f64..4.0, Just(1e300), Just(f64::NAN)],
    ) {
        let mut bytes = lora_fixture("sd15_kohya.safetensors");
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for (at, b) in edits {
            // Only the tensor data: a damaged header is the property above.
            let i = header_end + at.index(bytes.len() - header_end);
            bytes[i] = b;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let Ok(file) = LoraFile::open(&path) else { return Ok(()); };
        let mut model = sumi_engine::Model::load(&fixtures().join("sd15"), &Device::Cpu, DType::F32).unwrap();
        let before = probe(&model);
        let use_ = LoraUse { file: Arc::new(file), te: weight, unet: weight };
        if model.set_loras(&[use_]).is_err() {
            prop_assert_eq!(probe(&model), before);
        } else {
            model.clear_loras().unwrap();
            prop_assert_eq!(probe(&model), before);
        }
    }
}

/// A short generation's latent, as bits, to compare a model before and after.
fn probe(model: &sumi_engine::Model) -> Vec<u32> {
    let request = sumi_engine::Request {
        prompt: "a lighthouse".into(),
        steps: 1,
        width: 64,
        height: 64,
        ..Default::default()
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    sumi_engine::pipeline::sample_latent(model, &request, &cancel, &mut |_| {})
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}
