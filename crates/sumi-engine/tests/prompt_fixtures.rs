//! A1111's and ComfyUI's prompt encoding against `tests/fixtures/prompt/make_prompt_fixtures.py`:
//! weights, emphasis modes, BREAK, long prompts, clip skip, embeddings, prompt editing and AND
//! on the tiny SD 1.x, SD 2.x and SDXL models (conditioning within 1e-4), and whole sd15
//! generations with them (final latent within 1e-3, image within 2/255).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use sumi_engine::arch::clip::ClipTextModel;
use sumi_engine::pipeline::{decode, sample_latent_with, GenerateInputs};
use sumi_engine::text::tokenizer::ClipTokenizer;
use sumi_engine::text::{CondSchedule, Embeddings, Emphasis, EncodeOptions, TextEncoder};
use sumi_engine::{Error, Model, Request};

#[path = "support/fixtures.rs"]
mod support;
use support::{fixtures, max_abs};

const TOL: f32 = 1e-4;

struct Reference {
    tensors: HashMap<String, Tensor>,
    json: Value,
}

fn reference() -> Reference {
    let dir = fixtures().join("prompt");
    let tensors =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let json = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
        .unwrap();
    Reference { tensors, json }
}

fn embeddings() -> Embeddings {
    Embeddings::from_paths(&[fixtures().join("prompt/embeddings")]).unwrap()
}

/// The text encoders of fixture `model` with the final layer norm of
/// `tests/fixtures/prompt/encoders` (the fixtures' own is the identity, which makes A1111's
/// mean restoration 0/0) and the fixture's tokenizers.
fn load_text(model: &str) -> TextEncoder {
    let dir = fixtures().join(model);
    let family = sumi_engine::model::folder_family(&dir).unwrap();
    let subs: &[&str] = match family.text_encoders() {
        1 => &[""],
        _ => &["", "_2"],
    };
    let parts = subs
        .iter()
        .map(|s| {
            let tok = ClipTokenizer::load(&dir.join(format!("tokenizer{s}"))).unwrap();
            let te = fixtures().join(format!("prompt/encoders/{model}/text_encoder{s}"));
            (
                tok,
                ClipTextModel::load(&te, &Device::Cpu, DType::F32).unwrap(),
            )
        })
        .collect();
    let style = family.spec().text_style;
    let zeros = family.text_encoders() > 1;
    TextEncoder::from_parts(parts, style, zeros, &Device::Cpu, DType::F32).unwrap()
}

fn opts<'a>(case: &Value, embeddings: &'a Embeddings) -> EncodeOptions<'a> {
    EncodeOptions {
        emphasis: case["emphasis"].as_str().unwrap().parse().unwrap(),
        clip_skip: case["clip_skip"].as_u64().map(|n| n as u32),
        embeddings,
        steps: case["steps"].as_u64().unwrap() as u32,
        max_sequence_length: None,
    }
}

/// Compares a schedule with the reference's `[[last call, key], ...]`; gives the largest
/// difference.
fn check_schedule(r: &Reference, case: &str, what: &str, got: &CondSchedule, want: &Value) -> f32 {
    let mut worst = 0f32;
    let want = want.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{case} {what}: schedule length");
    for ((end, cond), w) in got.iter().zip(want) {
        assert_eq!(
            *end as u64,
            w[0].as_u64().unwrap(),
            "{case} {what}: last call"
        );
        let key = w[1].as_str().unwrap();
        let ctx = &r.tensors[&format!("{case}/{key}.context")];
        assert_eq!(
            cond.context.dims(),
            ctx.dims(),
            "{case} {what} {key}: shape"
        );
        let d = max_abs(&cond.context, ctx);
        assert!(d <= TOL, "{case} {what} {key}: context differs by {d:e}");
        worst = worst.max(d);
        match (&cond.pooled, r.tensors.get(&format!("{case}/{key}.pooled"))) {
            (Some(p), Some(want)) => {
                let d = max_abs(p, want);
                assert!(d <= TOL, "{case} {what} {key}: pooled differs by {d:e}");
                worst = worst.max(d);
            }
            (None, None) => {}
            (got, want) => panic!(
                "{case} {what} {key}: pooled {} but reference {}",
                got.is_some(),
                want.is_some()
            ),
        }
    }
    worst
}

#[test]
fn conditioning_matches_the_reference() {
    let r = reference();
    let set = embeddings();
    let none = Embeddings::empty();
    let mut models: HashMap<String, TextEncoder> = HashMap::new();
    for case in r.json["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let model = case["model"].as_str().unwrap();
        let enc = models
            .entry(model.to_string())
            .or_insert_with(|| load_text(model));
        let e = if case["embeddings"].as_bool().unwrap() {
            &set
        } else {
            &none
        };
        let got = enc
            .encode_prompts(
                case["prompt"].as_str().unwrap(),
                case["negative_prompt"].as_str().unwrap(),
                case["guided"].as_bool().unwrap(),
                &opts(case, e),
            )
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let parts = case["cond"].as_array().unwrap();
        assert_eq!(got.cond.len(), parts.len(), "{name}: AND parts");
        let mut worst = 0f32;
        for (k, ((w, sched), want)) in got.cond.iter().zip(parts).enumerate() {
            assert_eq!(*w, want[0].as_f64().unwrap(), "{name}: weight of part {k}");
            let d = check_schedule(&r, name, &format!("part {k}"), sched, &want[1]);
            worst = worst.max(d);
        }
        match (&got.uncond, &case["uncond"]) {
            (Some(u), want @ Value::Array(_)) => {
                worst = worst.max(check_schedule(&r, name, "uncond", u, want));
            }
            (None, Value::Null) => {}
            (got, want) => panic!("{name}: uncond {} but reference {want}", got.is_some()),
        }
        let hashes: Vec<(String, String)> = case["ti_hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
            .collect();
        assert_eq!(got.info.ti_hashes, hashes, "{name}: TI hashes");
        eprintln!("{name}: max abs diff {worst:.2e}");
    }
}

#[test]
fn prompt_info_reports_tags_and_notes() {
    let enc = load_text("sdxl");
    let none = Embeddings::empty();
    let mut o = EncodeOptions {
        emphasis: Emphasis::NoNorm,
        clip_skip: Some(2),
        embeddings: &none,
        steps: 10,
        max_sequence_length: None,
    };
    let got = enc
        .encode_prompts("a <lora:ink:0.7> (red) circle", "", true, &o)
        .unwrap();
    assert_eq!(got.info.networks.len(), 1);
    assert_eq!(got.info.networks[0].positional, ["ink", "0.7"]);
    assert!(got.info.emphasis_in_infotext);
    assert!(got.info.clip_skip_ignored);
    // SDXL's empty negative prompt is all zeros.
    let u = &got.uncond.unwrap()[0].1;
    assert_eq!(max_abs(&u.context, &u.context.zeros_like().unwrap()), 0.0);
    o.emphasis = Emphasis::Original;
    let got = enc.encode_prompts("a red circle", "", true, &o).unwrap();
    assert!(!got.info.emphasis_in_infotext);
    o.emphasis = Emphasis::Comfy;
    let got = enc
        .encode_prompts("a embedding:nowhere circle", "x", true, &o)
        .unwrap();
    assert_eq!(got.info.missing_embeddings, ["nowhere"]);
    assert!(got.info.networks.is_empty() && !got.info.clip_skip_ignored);
    // LoRA tags (how imported ComfyUI LoRA loaders are recorded) are not encoded as text.
    let tagged = enc
        .encode_prompts("a red circle <lora:ink:1>", "", false, &o)
        .unwrap();
    let plain = enc.encode_prompts("a red circle ", "", false, &o).unwrap();
    assert_eq!(tagged.info.networks.len(), 1);
    let (t, p) = (
        &tagged.cond[0].1[0].1.context,
        &plain.cond[0].1[0].1.context,
    );
    assert_eq!(max_abs(t, p), 0.0);
    let text = enc
        .encode_prompts("a red circle <lora ink>", "", false, &o)
        .unwrap();
    assert!(max_abs(&text.cond[0].1[0].1.context, p) > 0.0);
}

fn embedding_error(model: &str, prompt: &str, emphasis: Emphasis) -> String {
    let enc = load_text(model);
    let set = embeddings();
    let o = EncodeOptions {
        emphasis,
        clip_skip: None,
        embeddings: &set,
        steps: 10,
        max_sequence_length: None,
    };
    match enc.encode_prompts(prompt, "", true, &o) {
        Err(e @ Error::Embedding { .. }) => e.to_string(),
        Err(e) => panic!("expected an embedding error, got {e}"),
        Ok(_) => panic!("{model}: {prompt:?} was accepted"),
    }
}

#[test]
fn embeddings_for_other_models_are_refused() {
    let e = embedding_error("sd15", "a sumishiny circle", Emphasis::Original);
    assert!(
        e.contains("sumishiny") && e.contains("made for SDXL"),
        "{e}"
    );
    let e = embedding_error("sd15", "a sumithin circle", Emphasis::Original);
    assert!(e.contains("16-wide") && e.contains("takes 32-wide"), "{e}");
    let e = embedding_error("sdxl", "a sumired circle", Emphasis::Original);
    assert!(e.contains("two text encoders"), "{e}");
    let e = embedding_error("sdxl", "a embedding:sumiblue circle", Emphasis::Comfy);
    assert!(e.contains("sumiblue"), "{e}");
}

#[test]
fn over_long_prompts_are_refused_before_tokenizing() {
    let enc = load_text("sd15");
    let none = Embeddings::empty();
    let o = EncodeOptions {
        emphasis: Emphasis::Original,
        clip_skip: None,
        embeddings: &none,
        steps: 10,
        max_sequence_length: None,
    };
    let long = "a ".repeat(sumi_engine::text::prompt::MAX_PROMPT_CHARS);
    let err = enc.encode_prompts(&long, "", true, &o).unwrap_err();
    assert!(err.to_string().contains("at most 20000"), "{err}");
    let err = enc.encode_prompts("a", &long, true, &o).unwrap_err();
    assert!(err.to_string().contains("negative prompt"), "{err}");
}

#[test]
fn clip_skip_needs_the_layer() {
    let none = Embeddings::empty();
    let mut o = EncodeOptions {
        emphasis: Emphasis::Comfy,
        clip_skip: Some(1),
        embeddings: &none,
        steps: 10,
        max_sequence_length: None,
    };
    let err = load_text("sd2v")
        .encode_prompts("a", "", true, &o)
        .unwrap_err();
    assert!(err.to_string().contains("leave out"), "{err}");
    o.emphasis = Emphasis::Original;
    o.clip_skip = Some(4);
    let err = load_text("sd15")
        .encode_prompts("a", "", true, &o)
        .unwrap_err();
    assert!(err.to_string().contains("3"), "{err}");
}

fn sample(model: &Model, request: &Request, embeddings: &Embeddings) -> (Tensor, Tensor) {
    let inputs = GenerateInputs {
        embeddings,
        ..Default::default()
    };
    let cancel = AtomicBool::new(false);
    let (latent, _) = sample_latent_with(model, request, &inputs, &cancel, &mut |_| {}).unwrap();
    let image = ((decode(model, &latent).unwrap() / 2.0).unwrap() + 0.5)
        .unwrap()
        .clamp(0.0, 1.0)
        .unwrap();
    (latent, image)
}

#[test]
fn generations_match_the_reference() {
    let r = reference();
    let mut model = Model::load(&fixtures().join("sd15"), &Device::Cpu, DType::F32).unwrap();
    model.text = load_text("sd15");
    let set = embeddings();
    let none = Embeddings::empty();
    let g = &r.json["generation"];
    for gen in r.json["generations"].as_array().unwrap() {
        let name = gen["name"].as_str().unwrap();
        let request = Request {
            prompt: gen["prompt"].as_str().unwrap().into(),
            negative_prompt: gen["negative_prompt"].as_str().unwrap().into(),
            seed: g["seed"].as_u64().unwrap(),
            steps: g["steps"].as_u64().unwrap() as u32,
            cfg: g["cfg"].as_f64().unwrap(),
            sampler: gen["sampler"].as_str().unwrap().into(),
            schedule: gen["schedule"].as_str().unwrap().into(),
            width: g["width"].as_u64().unwrap() as u32,
            height: g["height"].as_u64().unwrap() as u32,
            noise: Default::default(),
            clip_skip: gen["clip_skip"].as_u64().map(|n| n as u32),
            emphasis: Emphasis::Original,
            ..Default::default()
        };
        let e = match gen["embeddings"].as_bool().unwrap() {
            true => &set,
            false => &none,
        };
        let (latent, image) = sample(&model, &request, e);
        let dl = max_abs(&latent, &r.tensors[&format!("gen/{name}.latent")]);
        let di = max_abs(&image, &r.tensors[&format!("gen/{name}.image")]);
        eprintln!("{name}: latent {dl:.2e}, image {di:.2e}");
        assert!(dl <= 1e-3, "{name}: latent differs by {dl:e}");
        assert!(di <= 2.0 / 255.0, "{name}: image differs by {di:e}");
    }
}

/// The embedding files the fixtures use are where the script wrote them.
#[test]
fn fixture_embeddings_are_indexed() {
    let set = embeddings();
    let names: Vec<&str> = set.names().collect();
    for n in ["sumiblue", "sumired", "sumishiny", "sumithin"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let r = reference();
    for (name, hash) in r.json["embedding_hashes"].as_object().unwrap() {
        let i = set.find(name).unwrap();
        assert_eq!(set.short_hash(i).unwrap(), hash.as_str().unwrap());
    }
    assert!(Embeddings::from_paths(&[Path::new("/no/such/folder")]).is_err());
}

#[test]
fn token_counts_read_like_a1111s_counter() {
    let enc = load_text("sd15");
    let set = embeddings();
    let mut o = EncodeOptions {
        emphasis: Emphasis::Original,
        clip_skip: None,
        embeddings: &set,
        steps: 20,
        max_sequence_length: None,
    };
    let count = |o: &EncodeOptions, text: &str, positive: bool| {
        let c = enc.token_count(text, positive, o).unwrap();
        (c.tokens, c.capacity)
    };
    assert_eq!(count(&o, "", true), (0, 75));
    assert_eq!(count(&o, "a (red:1.2) circle <lora:x:1>", true), (3, 75));
    // A negative prompt keeps its tags as text.
    assert!(count(&o, "a red circle <lora:x:1>", false).0 > 3);
    assert_eq!(count(&o, "a sumired", true), (4, 75));
    assert_eq!(count(&o, "a BREAK b", true), (76, 150));
    assert_eq!(count(&o, "a red circle AND a", true), (3, 75));
    assert_eq!(count(&o, "[a red circle:a:5]", true), (3, 75));
    o.emphasis = Emphasis::Comfy;
    assert_eq!(count(&o, "a (embedding:sumired:1.2)", true), (4, 75));
    assert_eq!(count(&o, "a red circle <lora:x:1>", true), (3, 75));
}
