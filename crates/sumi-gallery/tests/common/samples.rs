//! Samples and checks shared by the fuzz-style tests and the corpus replay: real infotexts,
//! a PNG chunk model, and functions that run input through the gallery and insist that
//! nothing panics and every failure reads as a sentence.

use std::{fs, io::Cursor, path::Path};

use sumi_gallery::{
    comfy, infotext,
    png_meta::{self, PARAMETERS_KEY, SUMI_KEY},
    EmbeddedRecord, Gallery,
};

/// ComfyUI API graphs of real shape, written by hand (`tests/comfy/`).
pub const COMFY_GRAPHS: &[&str] = &[
    include_str!("../comfy/txt2img-ksampler.json"),
    include_str!("../comfy/txt2img-advanced.json"),
    include_str!("../comfy/loras-clip-skip.json"),
    include_str!("../comfy/img2img.json"),
    include_str!("../comfy/custom-node.json"),
    include_str!("../comfy/hires-two-passes.json"),
];

/// A black PNG of `w` x `h` carrying `graph` as ComfyUI does (its `prompt` chunk).
pub fn comfy_png(graph: &str, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::new(w, h);
    png_meta::encode_png(&img, &[(comfy::PROMPT_KEY, graph), ("workflow", "{}")]).unwrap()
}

/// Infotexts as the tools write them.
pub const REAL_TEXTS: &[&str] = &[
    // A1111 1.6: legacy sampler name with the schedule, extras, a quoted value.
    "masterpiece, best quality, 1girl, <lora:detail:0.6>\nNegative prompt: (worst quality:1.4), \
     easynegative\nSteps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3263925463, Size: \
     512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, Clip skip: 2, \
     Hires upscale: 2, Hires upscaler: Latent, Lora hashes: \"detail: 62e6ad0d3e7f\", Version: v1.6.0",
    // A1111 1.10: schedule type, RNG.
    "portrait of an old sailor\nSteps: 30, Sampler: Euler a, Schedule type: Automatic, CFG scale: \
     7, Seed: 42, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, RNG: CPU, \
     Version: v1.10.1",
    // stable-diffusion.cpp.
    "a lovely cat\nSteps: 20, CFG scale: 7, Guidance: 3.5, Eta: 0, Seed: 42, Size: 512x512, \
     Model: v1-5, RNG: cuda, Sampler: euler_a, Schedule type: karras, Version: stable-diffusion.cpp",
    // Fooocus.
    "cinematic still of a lighthouse, stormy sea\nNegative prompt: unrealistic, saturated\nSteps: \
     30, Sampler: DPM++ 2M SDE Karras, Seed: 8675309, Size: 1152x896, CFG scale: 4, Sharpness: 2, \
     ADM Guidance: \"(1.5, 0.8, 0.3)\", Model: juggernautXL_v8Rundiffusion, Refiner: None, \
     Styles: \"['Fooocus V2', 'Fooocus Enhance']\", Version: Fooocus v2.3.1",
    // Krita AI Diffusion (CRLF).
    "a castle on a hill\r\nSteps: 25, Sampler: Euler, Schedule type: Simple, CFG scale: 5.5, \
     Seed: 12, Size: 832x1216, Model: ponyDiffusionV6XL, Denoising strength: 1\r\n",
    // Multi-line prompt and negative prompt, as Sumi writes them.
    "line one\nline two, Steps: 3\n\n  indented\nNegative prompt: neg one\nneg two\nSteps: 20, \
     Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1919484475, Size: 768x512, \
     Model hash: 6ce0161689, Model: \"a\\nb\", RNG: CPU",
];

/// Parses text every way the gallery does; panics only through the checks here.
pub fn exercise_infotext(text: &str) {
    let parsed = infotext::parse(text);
    match parsed.to_params() {
        Ok(p) => {
            assert!(
                p.cfg.is_finite(),
                "a non-finite CFG was accepted from {text:?}"
            );
            let again = infotext::format(&p);
            let back = infotext::parse(&again).to_params();
            assert!(
                back.is_ok(),
                "Sumi's own text {again:?} does not read back: {back:?}"
            );
            serde_json::to_string(&p).unwrap();
        }
        Err(e) => assert_readable(&e.to_string()),
    }
}

/// A failure message must be a sentence, not Rust debug output.
pub fn assert_readable(message: &str) {
    assert!(!message.is_empty());
    for debug in [
        "ChunkType {",
        "Os {",
        "kind: ",
        "Custom {",
        "Some(",
        "Error {",
    ] {
        assert!(
            !message.contains(debug),
            "message shows debug text {debug:?}: {message}"
        );
    }
}

/// One chunk of a PNG model; `len` and `crc` override the correct values when set.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub kind: [u8; 4],
    pub data: Vec<u8>,
    pub len: Option<u32>,
    pub crc: Option<u32>,
}

impl Chunk {
    /// A chunk with correct length and checksum.
    pub fn new(kind: &[u8; 4], data: Vec<u8>) -> Self {
        Chunk {
            kind: *kind,
            data,
            len: None,
            crc: None,
        }
    }
}

/// Splits a well-formed PNG into chunks.
pub fn chunks_of(png: &[u8]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = png[at + 4..at + 8].try_into().unwrap();
        let data = png[at + 8..(at + 8 + len).min(png.len())].to_vec();
        out.push(Chunk::new(&kind, data));
        at += 12 + len;
    }
    out
}

pub fn png_bytes(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for c in chunks {
        out.extend_from_slice(&c.len.unwrap_or(c.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&c.kind);
        out.extend_from_slice(&c.data);
        let mut h = crc32fast::Hasher::new();
        h.update(&c.kind);
        h.update(&c.data);
        out.extend_from_slice(&c.crc.unwrap_or(h.finalize()).to_be_bytes());
    }
    out
}

/// A small Sumi PNG: both text chunks, as the gallery writes them.
pub fn sumi_png(seed: u64, w: u32, h: u32) -> Vec<u8> {
    let params = super::params(seed);
    let record = EmbeddedRecord {
        format: 1,
        params: params.clone(),
        meta: super::meta(),
        created_at: 1_700_000_000_000,
    };
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 13) as u8, seed as u8])
    });
    png_meta::encode_png(
        &img,
        &[
            (PARAMETERS_KEY, &infotext::format(&params)),
            (SUMI_KEY, &serde_json::to_string(&record).unwrap()),
        ],
    )
    .unwrap()
}

/// Runs PNG bytes through the chunk reader and checker; panics only through the checks here.
pub fn exercise_png(bytes: &[u8]) {
    match png_meta::read_text_chunks(Cursor::new(bytes)) {
        Ok(chunks) => {
            for c in chunks.iter().filter(|c| c.key == PARAMETERS_KEY) {
                exercise_infotext(&c.text);
            }
            for c in chunks.iter().filter(|c| c.key == comfy::PROMPT_KEY) {
                let _ = comfy::read(&c.text, png_meta::image_size(bytes));
            }
        }
        Err(e) => assert_readable(&e.to_string()),
    }
    if let Err(e) = png_meta::check_chunks(bytes) {
        assert_readable(&e.to_string());
    }
    if let Err(e) = png_meta::insert_text_chunks(bytes, &[(SUMI_KEY, "{}")]) {
        assert_readable(&e.to_string());
    }
}

/// Imports a file into `g`, returning the import's note; panics only through the checks here.
pub fn exercise_import(g: &Gallery, path: &Path) -> Result<Option<String>, String> {
    match g.import(path) {
        Ok(gen) => {
            let back = fs::read(g.image_path(&gen)).unwrap();
            image::load_from_memory(&back).expect("an imported image must decode");
            assert!(gen.params.cfg.is_finite());
            // The copy's own record reads back as what the row holds.
            let record = png_meta::find_text(Cursor::new(&back), SUMI_KEY)
                .unwrap()
                .unwrap();
            let record: EmbeddedRecord = serde_json::from_str(&record).unwrap();
            assert_eq!((&record.params, &record.meta), (&gen.params, &gen.meta));
            Ok(gen.meta.note)
        }
        Err(e) => {
            let text = e.to_string();
            assert_readable(&text);
            Err(text)
        }
    }
}
