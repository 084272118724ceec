//! Prompt encoding against the references `tests/fixtures/make_fixtures.py` wrote with
//! transformers/diffusers: token ids exactly, hidden states and pooled outputs within 1e-4.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sumi_engine::text::tokenizer::ClipTokenizer;
use sumi_engine::text::TextEncoder;
use sumi_engine::Error;

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Ref {
    tensors: HashMap<String, Tensor>,
    json: serde_json::Value,
}

impl Ref {
    fn load(model: &str) -> Self {
        let dir = fixtures().join("ref");
        let tensors =
            candle_core::safetensors::load(dir.join(format!("{model}.safetensors")), &Device::Cpu)
                .expect("reference tensors");
        let json = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{model}.json"))).unwrap(),
        )
        .expect("reference json");
        Self { tensors, json }
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference has no {name}"))
    }

    fn ids(&self, name: &str) -> Vec<u32> {
        self.tensor(name)
            .flatten_all()
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }

    fn text(&self, key: &str) -> String {
        let v = self.json["text"][key]
            .as_str()
            .or_else(|| self.json[key].as_str());
        v.unwrap_or_else(|| panic!("reference json has no {key}"))
            .to_owned()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    let d = max_abs_diff(got, want);
    eprintln!("{name}: max abs diff {d:e}");
    assert!(d <= TOL, "{name}: max abs diff {d:e} > {TOL:e}");
}

/// Token ids as the pipeline feeds them, for the plain (<= 75 tokens) and the chunked case.
fn check_ids(tok: &ClipTokenizer, r: &Ref, ids_key: &str) {
    let prompt = r.text("prompt");
    let negative = r.text("negative_prompt");
    assert_eq!(
        tok.encode_truncated(&prompt).unwrap(),
        r.ids(&format!("text.{ids_key}.cond"))
    );
    assert_eq!(
        tok.encode_truncated("").unwrap(),
        r.ids(&format!("text.{ids_key}.uncond"))
    );
    assert_eq!(
        tok.encode_truncated(&negative).unwrap(),
        r.ids(&format!("text.{ids_key}.neg"))
    );
    let long = r.text("long_prompt");
    let chunks: Vec<u32> = tok.chunks(&tok.tokenize(&long).unwrap(), 2).concat();
    assert_eq!(chunks, r.ids(&format!("text.long.{ids_key}.cond")));
    let empty: Vec<u32> = tok.chunks(&[], 2).concat();
    assert_eq!(empty, r.ids(&format!("text.long.{ids_key}.uncond")));
}

fn check_model(model: &str) {
    let r = Ref::load(model);
    let enc = load_text(&fixtures().join(model), DType::F32).unwrap();
    let toks: Vec<&ClipTokenizer> = enc.tokenizers().collect();
    check_ids(toks[0], &r, "ids");
    if toks.len() > 1 {
        check_ids(toks[1], &r, "ids2");
    }

    let prompt = r.text("prompt");
    let negative = r.text("negative_prompt");
    let long = r.text("long_prompt");
    let has_pooled = r.tensors.contains_key("text.pooled");
    // `text.long` cuts the long prompt every 75 tokens; A1111 (and Sumi) move the words after
    // a nearby comma to the next chunk, so long prompts are checked against
    // `tests/fixtures/prompt` (tests/prompt_fixtures.rs) instead.
    let cases = [
        ("text", prompt.as_str(), ""),
        ("text.neg", prompt.as_str(), negative.as_str()),
    ];
    for (key, p, n) in cases {
        let c = enc.encode(p, n, true).unwrap();
        assert_close(
            &format!("{model} {key}.context"),
            &c.context,
            r.tensor(&format!("{key}.context")),
        );
        match (has_pooled, &c.pooled) {
            (true, Some(pooled)) => assert_close(
                &format!("{model} {key}.pooled"),
                pooled,
                r.tensor(&format!("{key}.pooled")),
            ),
            (false, None) => {}
            (want, got) => panic!(
                "{model} {key}: pooled expected {want}, got {}",
                got.is_some()
            ),
        }
    }

    // Without the uncond row the cond row is the same.
    let c = enc.encode(&prompt, "", false).unwrap();
    let want = r
        .tensor("text.context")
        .get(1)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    assert_close(&format!("{model} cond only"), &c.context, &want);
    if has_pooled {
        let want = r
            .tensor("text.pooled")
            .get(1)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        assert_close(
            &format!("{model} cond only pooled"),
            c.pooled.as_ref().unwrap(),
            &want,
        );
    }

    // With a long negative prompt `encode` pads the cond side with an empty prompt's chunk
    // (A1111's `pad_cond_uncond`; the pipeline runs the two apart instead).
    let c = enc.encode(&prompt, &long, true).unwrap();
    assert_eq!(c.context.dims(), &[2, 154, enc.context_dim()]);
    let cond = c.context.get(1).unwrap().narrow(0, 0, 77).unwrap();
    let want = r.tensor("text.context").get(1).unwrap();
    assert_close(
        &format!("{model} cond beside a long negative"),
        &cond,
        &want,
    );
}

#[test]
fn sd15_text_matches_transformers() {
    check_model("sd15");
}

#[test]
fn sd2v_text_matches_transformers() {
    check_model("sd2v");
}

#[test]
fn sdxl_text_matches_transformers() {
    check_model("sdxl");
}

/// A fresh copy of the sd15 text parts (model_index, tokenizer, text_encoder) to break.
fn sd15_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("sd15");
    std::fs::copy(
        src.join("model_index.json"),
        tmp.path().join("model_index.json"),
    )
    .unwrap();
    for sub in ["tokenizer", "text_encoder"] {
        std::fs::create_dir(tmp.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(src.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), tmp.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    tmp
}

fn expect_model_error(dir: &Path, file: &Path, reason_has: &str) {
    match load_text(dir, DType::F32) {
        Err(Error::Model { path, reason }) => {
            assert_eq!(path, file, "error names the wrong file ({reason})");
            assert!(
                reason.contains(reason_has),
                "reason {reason:?} lacks {reason_has:?}"
            );
        }
        Err(e) => panic!("expected a model-file error, got {e}"),
        Ok(_) => panic!("loading a broken model succeeded"),
    }
}

#[test]
fn missing_text_encoder_config_is_named() {
    let tmp = sd15_copy();
    let cfg = tmp.path().join("text_encoder/config.json");
    std::fs::remove_file(&cfg).unwrap();
    expect_model_error(tmp.path(), &cfg, "missing");
}

#[test]
fn corrupt_safetensors_is_named() {
    let tmp = sd15_copy();
    let weights = tmp.path().join("text_encoder/model.safetensors");
    std::fs::write(
        &weights,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
    )
    .unwrap();
    expect_model_error(tmp.path(), &weights, "safetensors");
}

#[test]
fn truncated_safetensors_is_named() {
    let tmp = sd15_copy();
    let weights = tmp.path().join("text_encoder/model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    expect_model_error(tmp.path(), &weights, "safetensors");
}

#[test]
fn missing_weights_file_is_named() {
    let tmp = sd15_copy();
    let weights = tmp.path().join("text_encoder/model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    expect_model_error(tmp.path(), &weights, "missing");
}

#[test]
fn missing_tensor_is_named() {
    let tmp = sd15_copy();
    let weights = tmp.path().join("text_encoder/model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let victim = tensors
        .keys()
        .find(|k| k.ends_with("final_layer_norm.weight"))
        .cloned()
        .expect("fixture has a final layer norm");
    tensors.remove(&victim);
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    expect_model_error(tmp.path(), &weights, &victim);
}

#[test]
fn missing_tokenizer_files_are_named() {
    let tmp = sd15_copy();
    std::fs::remove_file(tmp.path().join("tokenizer/tokenizer.json")).unwrap();
    let merges = tmp.path().join("tokenizer/merges.txt");
    std::fs::remove_file(&merges).unwrap();
    expect_model_error(tmp.path(), &merges, "missing");
}

/// The tokenizer assembled from vocab.json + merges.txt agrees with transformers' tokenizer.json.
#[test]
fn vocab_and_merges_tokenize_like_tokenizer_json() {
    for sub in ["sdxl/tokenizer", "sdxl/tokenizer_2"] {
        let src = fixtures().join(sub);
        let tmp = tempfile::tempdir().unwrap();
        for f in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
            std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
        }
        let from_json = ClipTokenizer::load(&src).unwrap();
        let from_vocab = ClipTokenizer::load(tmp.path()).unwrap();
        for text in [
            "a photo of an astronaut riding a horse on mars, 4k",
            "  Mixed CASE\twith\n\nodd   spacing ",
            "it's the cat's toy, isn't it? they'll've",
            "numbers 1234567 and 3.14159",
            "punctuation!!! (((brackets))) [emphasis:1.2] <|endoftext|> --- ...",
            "café naïve ﬁ Ω 東京 😀 \u{0301}e",
            "",
        ] {
            assert_eq!(
                from_vocab.tokenize(text).unwrap(),
                from_json.tokenize(text).unwrap(),
                "{sub}: {text:?}"
            );
        }
        assert_eq!(from_vocab.pad_id(), from_json.pad_id());
    }
}

/// Half precision runs through the same code and stays near the f32 reference.
#[test]
fn sdxl_text_runs_in_f16() {
    let r = Ref::load("sdxl");
    let enc = load_text(&fixtures().join("sdxl"), DType::F16).unwrap();
    let c = enc
        .encode(&r.text("prompt"), &r.text("negative_prompt"), true)
        .unwrap();
    assert_eq!(c.context.dtype(), DType::F16);
    let d = max_abs_diff(&c.context, r.tensor("text.neg.context"));
    assert!(d < 2e-2, "f16 context differs by {d}");
    let d = max_abs_diff(c.pooled.as_ref().unwrap(), r.tensor("text.neg.pooled"));
    assert!(d < 2e-2, "f16 pooled differs by {d}");
}

/// Chunked encoding is one batch; each chunk must come out as if it had been encoded alone.
#[test]
fn batched_chunks_equal_single_chunks() {
    let r = Ref::load("sd15");
    let enc = load_text(&fixtures().join("sd15"), DType::F32).unwrap();
    let long = enc.encode(&r.text("long_prompt"), "", true).unwrap();
    let short = enc.encode("", "", false).unwrap();
    // The uncond side of the long encoding is two chunks of empty text.
    let uncond = long.context.get(0).unwrap();
    for k in 0..2 {
        let chunk = uncond.narrow(0, 77 * k, 77).unwrap().unsqueeze(0).unwrap();
        let d = max_abs_diff(&chunk, &short.context);
        assert!(d < 1e-5, "chunk {k} differs by {d}");
    }
}

/// Weights split into shards with an index file load like the single file.
#[test]
fn sharded_weights_load_like_one_file() {
    let tmp = sd15_copy();
    let te = tmp.path().join("text_encoder");
    let single = te.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let shard: HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&shard, te.join(file)).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(te.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(&single).unwrap();

    let r = Ref::load("sd15");
    let enc = load_text(tmp.path(), DType::F32).unwrap();
    let c = enc.encode(&r.text("prompt"), "", true).unwrap();
    assert_close(
        "sharded sd15 text.context",
        &c.context,
        r.tensor("text.context"),
    );
}

/// The text encoders of a fixture folder, with the layers its family uses.
fn load_text(dir: &Path, dtype: DType) -> sumi_engine::Result<TextEncoder> {
    let style = sumi_engine::model::folder_family(dir)
        .unwrap_or(sumi_engine::Family::Sd1)
        .spec()
        .text_style;
    TextEncoder::load(dir, style, &Device::Cpu, dtype)
}
