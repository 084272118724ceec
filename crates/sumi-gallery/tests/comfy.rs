//! Importing ComfyUI PNGs and imperfect A1111 texts: the image is always kept, and what could
//! not be read (or, with the caller's check, used) is said in the generation's note. Also a
//! property: the ComfyUI reader never panics, whatever JSON it is given (`SUMI_FUZZ_CASES`
//! cases per property, 2000 by default, as in `tests/fuzz.rs`).

mod common;

use std::{fs, io::Cursor, path::Path};

use common::samples::COMFY_GRAPHS;
use proptest::prelude::*;
use serde_json::{json, Value};
use sumi_gallery::{
    comfy,
    png_meta::{self, PARAMETERS_KEY, SUMI_KEY},
    EmbeddedRecord, Gallery, GalleryError, GenerationParams,
};

/// A gallery in a fresh folder, and a folder for source files.
fn galleries() -> (tempfile::TempDir, Gallery, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let g = Gallery::open(home.path()).unwrap();
    (home, g, tempfile::tempdir().unwrap())
}

/// Writes a PNG of the given size with these text chunks.
fn write_png(path: &Path, w: u32, h: u32, texts: &[(&str, &str)]) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    fs::write(path, png_meta::encode_png(&img, texts).unwrap()).unwrap();
}

/// The record in a gallery copy's `sumi` chunk, and how many such chunks it has.
fn copy_record(g: &Gallery, id: i64) -> (EmbeddedRecord, usize) {
    let bytes = fs::read(g.image_path(&g.get(id).unwrap())).unwrap();
    let chunks = png_meta::read_text_chunks(Cursor::new(&bytes)).unwrap();
    let sumi: Vec<_> = chunks.iter().filter(|c| c.key == SUMI_KEY).collect();
    (serde_json::from_str(&sumi[0].text).unwrap(), sumi.len())
}

#[test]
fn comfy_pngs_import_with_their_settings_and_notes() {
    let (_home, g, src) = galleries();
    let cases = [
        (0, 512, 512, "Euler", 0),
        (1, 512, 768, "DPM++ 2M SDE", 1),
        (2, 512, 768, "Euler a", 3),
        (3, 96, 64, "DPM++ 2M", 1),
        (4, 512, 512, "DPM++ 2M", 1),
    ];
    for (i, w, h, sampler, notes) in cases {
        let file = src.path().join(format!("ComfyUI_{i:05}_.png"));
        write_png(
            &file,
            w,
            h,
            &[(comfy::PROMPT_KEY, COMFY_GRAPHS[i]), ("workflow", "{}")],
        );
        let gen = g.import(&file).unwrap();
        let p = &gen.params;
        assert_eq!(p.sampler, sampler, "graph {i}");
        assert_eq!((p.width, p.height), (w, h), "graph {i}");
        assert_eq!(
            (p.emphasis.as_str(), p.quantize.as_str()),
            ("comfy", "truncate")
        );
        assert_eq!(p.noise_source, "comfy-nv");
        assert_eq!(gen.meta.engine_version, "ComfyUI");
        let note = gen.meta.note.clone().unwrap_or_default();
        assert_eq!(
            note.split("; ").filter(|s| !s.is_empty()).count(),
            notes,
            "graph {i}: {note}"
        );
        // The copy keeps ComfyUI's chunks and gains Sumi's record, note included.
        let bytes = fs::read(g.image_path(&gen)).unwrap();
        let found = png_meta::find_text(Cursor::new(&bytes), comfy::PROMPT_KEY).unwrap();
        assert_eq!(found.as_deref(), Some(COMFY_GRAPHS[i]));
        let (record, n) = copy_record(&g, gen.id);
        assert_eq!(
            (record.params, record.meta, n),
            (gen.params.clone(), gen.meta.clone(), 1)
        );
        // The same file again is recognised.
        assert!(matches!(
            g.import(&file),
            Err(GalleryError::AlreadyInGallery { id, .. }) if id == gen.id
        ));
    }
    let img2img = g.get(4).unwrap().meta.note.unwrap();
    assert!(img2img.starts_with("ComfyUI graph not understood: the sampler starts from VAEEncode"));
}

#[test]
fn an_understood_graph_wins_over_a_saver_nodes_parameters_text() {
    let (_home, g, src) = galleries();
    let text = "whatever the saver wrote\nSteps: 99, Sampler: Euler a, CFG scale: 3, Seed: 5, \
                Size: 512x512, Model hash: abcdef0123, Model: v1-5-pruned-emaonly";
    let file = src.path().join("both.png");
    write_png(
        &file,
        512,
        512,
        &[(PARAMETERS_KEY, text), (comfy::PROMPT_KEY, COMFY_GRAPHS[0])],
    );
    let gen = g.import(&file).unwrap();
    assert_eq!(
        (gen.params.steps, gen.params.seed),
        (20, 156_680_208_700_286)
    );
    assert_eq!(gen.params.model_hash.as_deref(), Some("abcdef0123"));
    assert_eq!(gen.meta.note, None);
}

#[test]
fn a_graph_not_understood_gives_way_to_the_parameters_text() {
    let (_home, g, src) = galleries();
    let text =
        "portrait of an old fisherman\nNegative prompt: cartoon\nSteps: 30, Sampler: DPM++ 2M, \
                Schedule type: Karras, CFG scale: 5, Seed: 987654321, Size: 512x512";
    let file = src.path().join("detailer.png");
    write_png(
        &file,
        512,
        512,
        &[(PARAMETERS_KEY, text), (comfy::PROMPT_KEY, COMFY_GRAPHS[4])],
    );
    let gen = g.import(&file).unwrap();
    let p = &gen.params;
    assert_eq!(
        (p.prompt.as_str(), p.negative_prompt.as_str()),
        ("portrait of an old fisherman", "cartoon")
    );
    assert_eq!(
        (p.noise_source.as_str(), p.emphasis.as_str()),
        ("comfy-nv", "comfy")
    );
    let note = gen.meta.note.unwrap();
    assert!(
        note.starts_with(
            "ComfyUI graph not understood: the saved image comes from FaceDetailer (node 14)"
        ),
        "{note}"
    );
    assert!(
        note.ends_with("settings read from the image's A1111-style parameters text"),
        "{note}"
    );
}

#[test]
fn a1111_texts_with_unusable_settings_import_with_a_note() {
    let (_home, g, src) = galleries();
    let base = "a lighthouse\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 9, Size: 16x8";
    let long_prompt = format!(
        "{}\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 9, Size: 16x8",
        "a".repeat(30_000)
    );
    let cases = [
        (
            base.replace("CFG scale: 7", "CFG scale: inf"),
            Some("CFG scale \"inf\" is not a finite number: 7 (A1111's default) recorded"),
        ),
        (
            base.replace("CFG scale: 7", "CFG scale: NaN"),
            Some("CFG scale \"NaN\" is not a number: 7 (A1111's default) recorded"),
        ),
        (base.replace("Steps: 20", "Steps: 0"), None),
        (base.replace("Size: 16x8", "Size: 7x9"), None),
        (long_prompt, None),
    ];
    for (i, (text, note)) in cases.iter().enumerate() {
        let file = src.path().join(format!("{i}.png"));
        // NaN and inf both record CFG 7: distinct seeds keep the two from being one image.
        let text = text.replace("Seed: 9", &format!("Seed: {i}"));
        write_png(&file, 16, 8, &[(PARAMETERS_KEY, &text)]);
        let gen = g.import(&file).unwrap();
        assert_eq!(gen.meta.note.as_deref(), *note, "case {i}");
        assert!(gen.params.cfg.is_finite());
        let json = serde_json::to_value(&gen).unwrap();
        assert!(json["params"]["cfg"].is_number(), "case {i}: {json}");
    }
    let rows = g.list(&Default::default(), None, 0).unwrap().items;
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().any(|r| r.params.steps == 0));
    assert!(rows
        .iter()
        .any(|r| (r.params.width, r.params.height) == (7, 9)));
    assert!(rows.iter().any(|r| r.params.prompt.len() == 30_000));
}

#[test]
fn the_callers_check_adds_to_the_note_of_every_kind_of_png() {
    let (_home, g, src) = galleries();
    let check = |p: &GenerationParams| {
        let mut out = Vec::new();
        if p.steps == 0 {
            out.push("Steps 0 is out of range (1 to 500)".to_string());
        }
        if !p.width.is_multiple_of(8) {
            out.push(format!("Size {}x{} is not usable", p.width, p.height));
        }
        out
    };
    let a1111 = src.path().join("a1111.png");
    write_png(
        &a1111,
        2,
        2,
        &[(
            PARAMETERS_KEY,
            "x\nSteps: 0, Sampler: Euler, CFG scale: NaN, Seed: 1, Size: 7x9",
        )],
    );
    let gen = g.import_with(&a1111, &check).unwrap();
    assert_eq!(
        gen.meta.note.as_deref(),
        Some("CFG scale \"NaN\" is not a number: 7 (A1111's default) recorded; Steps 0 is out of range (1 to 500); Size 7x9 is not usable")
    );
    // A Sumi PNG goes through the same check; its copy's record then carries the note too.
    let sumi = src.path().join("sumi.png");
    fs::copy(g.image_path(&gen), &sumi).unwrap();
    let other = tempfile::tempdir().unwrap();
    let g2 = Gallery::open(other.path()).unwrap();
    let strict = |_: &GenerationParams| vec!["sampler \"Euler\" is not one Sumi has".to_string()];
    let again = g2.import_with(&sumi, &strict).unwrap();
    let note = again.meta.note.clone().unwrap();
    assert!(note.starts_with("CFG scale \"NaN\""), "{note}");
    assert!(
        note.ends_with("; sampler \"Euler\" is not one Sumi has"),
        "{note}"
    );
    let (record, n) = copy_record(&g2, again.id);
    assert_eq!((record.meta.note, n), (again.meta.note, 1));
    // A note already there is not repeated.
    let third = tempfile::tempdir().unwrap();
    let g3 = Gallery::open(third.path()).unwrap();
    let same = g3.import_with(&sumi, &check).unwrap();
    assert_eq!(same.meta.note, gen.meta.note);
}

#[test]
fn pngs_from_no_known_generator_are_refused() {
    let (_home, g, src) = galleries();
    let file = src.path().join("photo.png");
    write_png(
        &file,
        4,
        4,
        &[("Software", "a camera"), (comfy::PROMPT_KEY, "a prompt")],
    );
    let err = g.import(&file).unwrap_err();
    assert!(matches!(err, GalleryError::NoParameters(_)), "{err}");
    assert!(
        err.to_string()
            .contains("not made by an image generator Sumi knows"),
        "{err}"
    );
}

/// A JSON scalar, including the odd ones (negative, huge, fractional, empty).
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z0-9_ ]{0,8}".prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_0-9]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Class types and input names of the nodes the reader follows, and some it does not.
const CLASSES: &[&str] = &[
    "SaveImage",
    "PreviewImage",
    "VAEDecode",
    "VAEDecodeTiled",
    "KSampler",
    "KSamplerAdvanced",
    "EmptyLatentImage",
    "CheckpointLoaderSimple",
    "LoraLoader",
    "LoraLoaderModelOnly",
    "CLIPSetLastLayer",
    "CLIPTextEncode",
    "VAELoader",
    "VAEEncode",
    "Custom",
];
const INPUTS: &[&str] = &[
    "images",
    "samples",
    "vae",
    "model",
    "clip",
    "positive",
    "negative",
    "latent_image",
    "seed",
    "noise_seed",
    "steps",
    "cfg",
    "sampler_name",
    "scheduler",
    "denoise",
    "width",
    "height",
    "batch_size",
    "ckpt_name",
    "lora_name",
    "strength_model",
    "strength_clip",
    "text",
    "stop_at_clip_layer",
    "add_noise",
    "start_at_step",
    "end_at_step",
    "vae_name",
    "return_with_leftover_noise",
];

/// A graph of nodes from [`CLASSES`] whose inputs are links among them or arbitrary values.
fn graph() -> impl Strategy<Value = String> {
    let input = prop_oneof![
        (0u8..12, 0u8..3).prop_map(|(id, out)| json!([id.to_string(), out])),
        json_leaf(),
    ];
    let node = (
        prop::sample::select(CLASSES),
        prop::collection::btree_map(prop::sample::select(INPUTS), input, 0..10),
    )
        .prop_map(|(class, inputs)| json!({"class_type": class, "inputs": inputs}));
    prop::collection::btree_map((0u8..12).prop_map(|i| i.to_string()), node, 1..12)
        .prop_map(|nodes| Value::Object(nodes.into_iter().collect()).to_string())
}

/// A fixture graph with one input of one node set to an arbitrary value.
fn mutated_fixture() -> impl Strategy<Value = String> {
    (
        prop::sample::select(COMFY_GRAPHS),
        any::<prop::sample::Index>(),
        prop::sample::select(INPUTS),
        json_value(),
    )
        .prop_map(|(text, at, input, value)| {
            let mut graph: Value = serde_json::from_str(text).unwrap();
            let ids: Vec<String> = graph.as_object().unwrap().keys().cloned().collect();
            graph[at.get(&ids).as_str()]["inputs"][input] = value;
            graph.to_string()
        })
}

/// Cases per property, from `SUMI_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("SUMI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn comfy_read_never_panics_on_arbitrary_json(v in json_value(), w in 0u32..2048, h in 0u32..2048) {
        let _ = comfy::read(&v.to_string(), Some((w, h)));
    }

    #[test]
    fn comfy_read_never_panics_on_node_graphs(text in graph()) {
        if let Some(r) = comfy::read(&text, None) {
            prop_assert!(r.params.cfg.is_finite());
            prop_assert_eq!(r.understood, !r.notes.iter().any(|n| n.starts_with(comfy::NOT_UNDERSTOOD)));
        }
    }

    #[test]
    fn comfy_read_never_panics_on_mutated_fixtures(text in mutated_fixture()) {
        let r = comfy::read(&text, Some((512, 512))).unwrap();
        prop_assert!(r.params.cfg.is_finite());
    }
}
