//! Flux transformers and T5 encoders loaded from single files as users have them (BFL names,
//! fp8, GGUF), against diffusers / transformers run on the weights each file holds
//! (`tests/fixtures/flux/make_flux_files.py`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sumi_engine::arch::flux::{FluxInputs, FluxTransformer, Rope};
use sumi_engine::arch::t5::T5Encoder;

#[path = "support/fixtures.rs"]
mod support;
use support::{fixtures, max_abs};

fn dir() -> PathBuf {
    fixtures().join("flux")
}

fn file(name: &str) -> PathBuf {
    dir().join("files").join(name)
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn ids(t: &Tensor) -> Vec<[f32; 3]> {
    t.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| [r[0], r[1], r[2]])
        .collect()
}

/// The largest difference from `want`, relative to `want`'s largest value.
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    max_abs(got, want) / max_abs(want, &want.zeros_like().unwrap())
}

/// The transformer's output on the fixture inputs.
fn run(model: &FluxTransformer) -> Tensor {
    let t = tensors(&dir().join("transformer_ref.safetensors"));
    let mut all_ids = ids(&t["txt_ids"]);
    all_ids.extend(ids(&t["img_ids"]));
    let rope = Rope::new(&all_ids, &model.config().axes_dims_rope, &Device::Cpu).unwrap();
    model
        .forward(&FluxInputs {
            img: &t["img"],
            txt: &t["txt"],
            pooled: &t["pooled"],
            timestep: &t["timestep"],
            guidance: model.has_guidance().then_some(&t["guidance"]),
            rope: &rope,
        })
        .unwrap()
}

/// Loads `name` and checks its output against `want` (a key of `transformer_ref` or
/// `files_ref`) within `tolerance`; returns the error.
fn check(name: &str, dtype: DType, want: &str, tolerance: f32) -> f32 {
    let model = FluxTransformer::load_file(&file(name), &Device::Cpu, dtype)
        .unwrap_or_else(|e| panic!("{name} loads: {e}"));
    let mut refs = tensors(&dir().join("transformer_ref.safetensors"));
    refs.extend(tensors(&file("files_ref.safetensors")));
    let err = rel_err(&run(&model), &refs[want]);
    eprintln!("{name} {dtype:?} vs {want}: max error {err:.2e} (relative)");
    assert!(err < tolerance, "{name}: differs from {want} by {err:.2e}");
    err
}

#[test]
fn bfl_single_files_match_diffusers() {
    check(
        "flux1-schnell-tiny.safetensors",
        DType::F32,
        "schnell.out",
        1e-4,
    );
    check(
        "flux1-dev-tiny-prefixed.safetensors",
        DType::F32,
        "dev.out",
        1e-4,
    );
    check(
        "flux1-dev-tiny-prefixed.safetensors",
        DType::BF16,
        "dev.out",
        2e-2,
    );
}

#[test]
fn config_is_inferred_from_shapes() {
    let dev = FluxTransformer::load_file(
        &file("flux1-dev-tiny-prefixed.safetensors"),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let folder = sumi_engine::arch::flux::FluxConfig::load(&dir().join("dev/transformer")).unwrap();
    assert_eq!(dev.config(), &folder);
    let schnell = FluxTransformer::load_file(
        &file("flux1-schnell-tiny.safetensors"),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    assert!(!schnell.has_guidance());
    let k = FluxTransformer::load_file(&file("flux1-k-tiny-Q4_K.gguf"), &Device::Cpu, DType::F32)
        .unwrap();
    let c = k.config();
    assert_eq!(
        (
            c.num_attention_heads,
            c.attention_head_dim,
            c.num_layers,
            c.num_single_layers
        ),
        (4, 64, 1, 1)
    );
    assert_eq!(c.axes_dims_rope, vec![16, 24, 24]);
}

#[test]
fn a_diffusers_named_single_file_loads_too() {
    let path = dir().join("dev/transformer/diffusion_pytorch_model.safetensors");
    let model = FluxTransformer::load_file(&path, &Device::Cpu, DType::F32).unwrap();
    let want = &tensors(&dir().join("transformer_ref.safetensors"))["dev.out"];
    let err = rel_err(&run(&model), want);
    assert!(err < 1e-4, "differs by {err:.2e}");
}

#[test]
fn fp8_weights_are_converted_on_load() {
    check(
        "flux1-dev-tiny-fp8.safetensors",
        DType::F32,
        "dev.fp8.out",
        1e-4,
    );
    check(
        "flux1-dev-tiny-fp8.safetensors",
        DType::BF16,
        "dev.fp8.out",
        2e-2,
    );
    // fp8 rounding moves the output well away from the f32 model's: the weights were converted,
    // not read as something else.
    let err = rel_err(
        &run(&FluxTransformer::load_file(
            &file("flux1-dev-tiny-fp8.safetensors"),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap()),
        &tensors(&dir().join("transformer_ref.safetensors"))["dev.out"],
    );
    eprintln!("fp8 vs the f32 model: {err:.2e}");
    assert!(err > 1e-3 && err < 0.2, "{err:.2e}");
}

#[test]
fn scaled_fp8_weights_are_multiplied_by_their_scales() {
    check(
        "flux1-dev-tiny-fp8-scaled.safetensors",
        DType::F32,
        "dev.fp8_scaled.out",
        1e-4,
    );
    check(
        "flux1-dev-tiny-fp8-scaled.safetensors",
        DType::BF16,
        "dev.fp8_scaled.out",
        2e-2,
    );
}

#[test]
fn gguf_transformers_run_quantized_and_match_diffusers_on_the_dequantized_weights() {
    // candle quantizes each activation row to 8 bits (Q8_0 / Q8_K blocks) for the integer dot
    // products, so the outputs differ from float arithmetic on the dequantized weights by
    // about that rounding.
    let q8 = check("flux1-dev-tiny-Q8_0.gguf", DType::F32, "dev.Q8_0.out", 4e-2);
    let q4 = check("flux1-dev-tiny-Q4_0.gguf", DType::F32, "dev.Q4_0.out", 4e-2);
    let q5 = check("flux1-dev-tiny-Q5_0.gguf", DType::F32, "dev.Q5_0.out", 4e-2);
    let k = check("flux1-k-tiny-Q4_K.gguf", DType::F32, "k.Q4_K.out", 4e-2);
    check(
        "flux1-dev-tiny-Q8_0.gguf",
        DType::BF16,
        "dev.Q8_0.out",
        5e-2,
    );
    // The 4-bit weights move diffusers' output far more than candle's activation rounding
    // does: the model ran on the file's quantized values, not on something close to f32.
    let mut refs = tensors(&dir().join("transformer_ref.safetensors"));
    refs.extend(tensors(&file("files_ref.safetensors")));
    let q4_shift = rel_err(&refs["dev.Q4_0.out"], &refs["dev.out"]);
    let k_shift = rel_err(&refs["k.Q4_K.out"], &refs["k.f32.out"]);
    eprintln!("4-bit weights move the reference by: Q4_0 {q4_shift:.2e}, Q4_K {k_shift:.2e}");
    assert!(q4 < q4_shift / 3.0, "Q4_0 {q4:.2e} vs {q4_shift:.2e}");
    assert!(k < k_shift / 3.0, "Q4_K {k:.2e} vs {k_shift:.2e}");
    // A Q8_0 model stays close to the f32 one.
    let close = check("flux1-dev-tiny-Q8_0.gguf", DType::F32, "dev.out", 4e-2);
    eprintln!(
        "Q8_0 {q8:.2e}, Q4_0 {q4:.2e}, Q5_0 {q5:.2e}, Q4_K {k:.2e} vs their references; Q8_0 vs f32 {close:.2e}"
    );
}

#[test]
fn t5_gguf_matches_transformers_on_the_dequantized_weights() {
    let model = T5Encoder::load_file(&file("t5-tiny-Q8_0.gguf"), &Device::Cpu, DType::F32)
        .expect("T5 GGUF loads");
    let folder =
        T5Encoder::load(&dir().join("dev/text_encoder_2"), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.config(), folder.config());
    let t = tensors(&dir().join("t5_ref.safetensors"));
    let ids = t["ids"].to_dtype(DType::U32).unwrap();
    let got = model.forward(&ids).unwrap();
    let want = &tensors(&file("files_ref.safetensors"))["t5.Q8_0.hidden"];
    let err = rel_err(&got, want);
    eprintln!("t5 Q8_0 vs transformers on the dequantized weights: {err:.2e}");
    assert!(err < 2e-2, "differs by {err:.2e}");
}

#[test]
fn t5_fp8_file_matches_transformers_on_the_fp8_weights() {
    let model = T5Encoder::load_file(&file("t5-tiny-fp8.safetensors"), &Device::Cpu, DType::F32)
        .expect("T5 fp8 file loads");
    let t = tensors(&dir().join("t5_ref.safetensors"));
    let got = model
        .forward(&t["ids"].to_dtype(DType::U32).unwrap())
        .unwrap();
    let want = &tensors(&file("files_ref.safetensors"))["t5.fp8.hidden"];
    let err = rel_err(&got, want);
    eprintln!("t5 fp8 vs transformers on the fp8 weights: {err:.2e}");
    assert!(err < 1e-5, "differs by {err:.2e}");
}

#[test]
fn t5_single_safetensors_file_loads_with_an_inferred_config() {
    let path = dir().join("dev/text_encoder_2/model.safetensors");
    let model = T5Encoder::load_file(&path, &Device::Cpu, DType::F32).unwrap();
    let folder =
        T5Encoder::load(&dir().join("dev/text_encoder_2"), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.config(), folder.config());
    let t = tensors(&dir().join("t5_ref.safetensors"));
    let got = model
        .forward(&t["ids"].to_dtype(DType::U32).unwrap())
        .unwrap();
    let err = rel_err(&got, &t["hidden"]);
    assert!(err < 1e-5, "differs by {err:.2e}");
}

fn load_err(path: &Path) -> String {
    match FluxTransformer::load_file(path, &Device::Cpu, DType::F32) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_and_broken_files_are_refused_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    // A T5 file is not a transformer.
    let msg = load_err(&file("t5-tiny-Q8_0.gguf"));
    assert!(msg.contains("T5 text encoder"), "{msg}");
    // An SD checkpoint passed by mistake.
    let sd = tmp.path().join("sd15.safetensors");
    let w = Tensor::zeros((4, 4), DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &HashMap::from([
            (
                "model.diffusion_model.input_blocks.0.0.weight".to_string(),
                w.clone(),
            ),
            (
                "first_stage_model.encoder.conv_in.weight".to_string(),
                w.clone(),
            ),
        ]),
        &sd,
    )
    .unwrap();
    let msg = load_err(&sd);
    assert!(msg.contains("Stable Diffusion"), "{msg}");
    // Something else: say which names were expected.
    let other = tmp.path().join("other.safetensors");
    candle_core::safetensors::save(&HashMap::from([("foo.weight".to_string(), w)]), &other)
        .unwrap();
    let msg = load_err(&other);
    assert!(msg.contains("double_blocks.N.img_attn.qkv.weight"), "{msg}");
    // Truncated files, both formats.
    for name in ["flux1-schnell-tiny.safetensors", "flux1-dev-tiny-Q8_0.gguf"] {
        let bytes = std::fs::read(file(name)).unwrap();
        let cut = tmp.path().join(name);
        std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
        let msg = load_err(&cut);
        assert!(msg.contains("truncated"), "{name}: {msg}");
    }
    // A tensor missing from an otherwise good file.
    let mut t = tensors(&file("flux1-schnell-tiny.safetensors"));
    t.remove("single_blocks.1.linear2.weight");
    let partial = tmp.path().join("partial.safetensors");
    candle_core::safetensors::save(&t, &partial).unwrap();
    let msg = load_err(&partial);
    assert!(msg.contains("single_blocks.1.linear2.weight"), "{msg}");
    // Unknown extension and pickles.
    let msg = load_err(&tmp.path().join("model.bin"));
    assert!(msg.contains("pickle"), "{msg}");
}

#[test]
fn unknown_gguf_quantization_is_refused_with_a_reason() {
    // Rewrite one tensor's type id in the Q8_0 file's header to IQ4_NL (20).
    let mut bytes = std::fs::read(file("flux1-dev-tiny-Q8_0.gguf")).unwrap();
    let name = b"img_in.weight";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor name in the header");
    // name, n_dims (u32), dims (u64 each), type (u32)
    let n_dims_at = at + name.len();
    let n_dims = u32::from_le_bytes(bytes[n_dims_at..n_dims_at + 4].try_into().unwrap()) as usize;
    let type_at = n_dims_at + 4 + 8 * n_dims;
    bytes[type_at..type_at + 4].copy_from_slice(&20u32.to_le_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("iq.gguf");
    std::fs::write(&path, bytes).unwrap();
    let msg = load_err(&path);
    assert!(msg.contains("ggml type IQ4_NL (id 20)"), "{msg}");
    assert!(msg.contains("Q4_K"), "{msg}");
}

#[test]
fn loads_are_recorded_for_patching_and_gguf_matrices_stay_quantized() {
    use sumi_engine::weights::params::record;
    let (model, tables) = record(|| {
        FluxTransformer::load_file(
            &file("flux1-dev-tiny-prefixed.safetensors"),
            &Device::Cpu,
            DType::F32,
        )
    });
    model.unwrap();
    let table = &tables[0];
    // Diffusers names, cut from BFL's fused tensors, read again bit for bit.
    let q = table.get("transformer_blocks.1.attn.to_q.weight").unwrap();
    assert_eq!(q.tensor.dims(), &[32, 32]);
    let again = q.reread().unwrap();
    assert_eq!(max_abs(&again, &q.tensor), 0.0);
    let mlp = table
        .get("single_transformer_blocks.0.proj_mlp.weight")
        .unwrap();
    assert_eq!(mlp.tensor.dims(), &[128, 32]);
    // Each part owns its own rows, not a copy of the whole fused tensor.
    for p in [q, mlp] {
        let (storage, _) = p.tensor.storage_and_layout();
        let held = match &*storage {
            candle_core::Storage::Cpu(c) => c.as_slice::<f32>().unwrap().len(),
            _ => unreachable!("loaded on the CPU"),
        };
        assert_eq!(held, p.tensor.elem_count());
    }
    let folder = tensors(&dir().join("dev/transformer/diffusion_pytorch_model.safetensors"));
    for (name, p) in table.iter() {
        assert_eq!(max_abs(&p.tensor, &folder[name]), 0.0, "{name}");
    }
    assert_eq!(table.len(), folder.len());

    let (model, tables) = record(|| {
        FluxTransformer::load_file(&file("flux1-dev-tiny-Q8_0.gguf"), &Device::Cpu, DType::F32)
    });
    model.unwrap();
    let table = &tables[0];
    // Quantized matrices never went through the dense loader; F32-kept ones and norms did.
    assert!(table.get("transformer_blocks.0.attn.to_q.weight").is_none());
    assert!(table
        .get("single_transformer_blocks.1.proj_out.weight")
        .is_none());
    assert!(table.get("transformer_blocks.0.attn.to_q.bias").is_some());
    assert!(table.get("x_embedder.weight").is_some()); // 16 wide: kept F32 in the file
                                                       // The quantized ones are noted for LoRAs, with their shapes.
    let q = table.quantized("transformer_blocks.0.attn.to_q.weight");
    assert_eq!(q.unwrap().dims(), &[32, 32]);
    assert_eq!(
        table.dims("single_transformer_blocks.0.proj_mlp.weight"),
        Some(&[128, 32][..])
    );
    assert!(table
        .names()
        .any(|n| n == "single_transformer_blocks.1.proj_out.weight"));
}

#[test]
fn full_size_shapes_give_the_released_configs() {
    use sumi_engine::arch::flux::FluxConfig;
    for (guidance, single) in [(true, 38), (false, 38), (true, 20)] {
        let mut shapes: HashMap<String, Vec<usize>> = HashMap::from([
            ("x_embedder.weight".into(), vec![3072, 64]),
            ("context_embedder.weight".into(), vec![3072, 4096]),
            (
                "time_text_embed.text_embedder.linear_1.weight".into(),
                vec![3072, 768],
            ),
            ("proj_out.weight".into(), vec![64, 3072]),
        ]);
        if guidance {
            shapes.insert(
                "time_text_embed.guidance_embedder.linear_1.weight".into(),
                vec![3072, 256],
            );
        }
        for i in 0..19 {
            let b = format!("transformer_blocks.{i}");
            shapes.insert(format!("{b}.attn.to_q.weight"), vec![3072, 3072]);
            shapes.insert(format!("{b}.attn.norm_q.weight"), vec![128]);
            shapes.insert(format!("{b}.ff.net.0.proj.weight"), vec![12288, 3072]);
        }
        for i in 0..single {
            let b = format!("single_transformer_blocks.{i}");
            shapes.insert(format!("{b}.attn.to_q.weight"), vec![3072, 3072]);
        }
        let config = FluxConfig::infer(&|n: &str| shapes.get(n).cloned()).unwrap();
        let mut want: FluxConfig = serde_json::from_str("{}").unwrap();
        want.guidance_embeds = guidance;
        want.num_single_layers = single;
        assert_eq!(config, want);
    }
    // An MLP ratio other than 4 is refused with a reason.
    let shapes: HashMap<String, Vec<usize>> = HashMap::from([
        ("x_embedder.weight".into(), vec![64, 16]),
        ("context_embedder.weight".into(), vec![64, 24]),
        (
            "time_text_embed.text_embedder.linear_1.weight".into(),
            vec![64, 12],
        ),
        ("proj_out.weight".into(), vec![16, 64]),
        ("transformer_blocks.0.attn.to_q.weight".into(), vec![64, 64]),
        ("transformer_blocks.0.attn.norm_q.weight".into(), vec![16]),
        (
            "transformer_blocks.0.ff.net.0.proj.weight".into(),
            vec![192, 64],
        ),
    ]);
    let err = FluxConfig::infer(&|n: &str| shapes.get(n).cloned()).unwrap_err();
    assert!(err.contains("MLP ratio"), "{err}");
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn cases() -> u32 {
        std::env::var("SUMI_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64)
    }

    /// Loads `bytes` written as `name` and runs what loads: values or errors, never a panic.
    fn load(name: &str, bytes: &[u8]) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let t5_ids = Tensor::zeros((1, 4), DType::U32, &Device::Cpu).unwrap();
        if name.starts_with("t5") {
            if let Ok(model) = T5Encoder::load_file(&path, &Device::Cpu, DType::F32) {
                let _ = model.forward(&t5_ids);
            }
        } else if let Ok(model) = FluxTransformer::load_file(&path, &Device::Cpu, DType::F32) {
            let t = tensors(&dir().join("transformer_ref.safetensors"));
            let mut all_ids = ids(&t["txt_ids"]);
            all_ids.extend(ids(&t["img_ids"]));
            if let Ok(rope) = Rope::new(&all_ids, &model.config().axes_dims_rope, &Device::Cpu) {
                let _ = model.forward(&FluxInputs {
                    img: &t["img"],
                    txt: &t["txt"],
                    pooled: &t["pooled"],
                    timestep: &t["timestep"],
                    guidance: model.has_guidance().then_some(&t["guidance"]),
                    rope: &rope,
                });
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn damaged_gguf_headers_give_errors_not_panics(
            which in 0usize..2,
            flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8),
            cut in proptest::option::of(0usize..200_000),
        ) {
            let name = ["flux1-dev-tiny-Q8_0.gguf", "t5-tiny-Q8_0.gguf"][which];
            let mut bytes = std::fs::read(file(name)).unwrap();
            for (at, v) in flips {
                let at = at % bytes.len();
                bytes[at] = v;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % bytes.len());
            }
            load(name, &bytes);
        }
    }
}

#[test]
fn a_fused_tensor_too_short_for_its_parts_is_refused_with_a_reason() {
    let mut t = tensors(&file("flux1-schnell-tiny.safetensors"));
    let qkv = "double_blocks.1.img_attn.qkv.weight";
    let short = t[qkv].narrow(0, 0, 64).unwrap();
    t.insert(qkv.to_string(), short);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("short.safetensors");
    candle_core::safetensors::save(&t, &path).unwrap();
    let msg = load_err(&path);
    assert!(msg.contains(qkv) && msg.contains("[64, 32]"), "{msg}");
}
