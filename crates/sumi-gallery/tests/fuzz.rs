//! Fuzz-style tests on stable Rust: structure-aware generators feed the infotext parser, the
//! PNG chunk reader and the import path with real texts and PNGs after random mutations
//! (edited lines and keys, flipped bytes, wrong checksums, huge and off-by-one lengths, chunks
//! added, dropped, repeated or reordered, truncation). Nothing may panic, and every failure
//! must read as a sentence (no Rust debug text such as `ChunkType { ... }`).
//!
//! `SUMI_FUZZ_CASES` sets the cases per property (default 2000; the import property runs a
//! tenth as many, since each case writes a file). A long run:
//! `SUMI_FUZZ_CASES=200000 cargo test -p sumi-gallery --release --test fuzz`.
//!
//! `corpus/` holds real and hostile files replayed by `corpus_files_give_their_expected_results`,
//! with the expected result of each in `corpus/EXPECTED.txt`. Both are written by
//! `SUMI_WRITE_CORPUS=1 cargo test -p sumi-gallery --test fuzz write_corpus`.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    io::Cursor,
    path::{Path, PathBuf},
};

use proptest::prelude::*;
use sumi_gallery::{
    infotext,
    png_meta::{self, PARAMETERS_KEY, SUMI_KEY},
    EmbeddedRecord, Gallery,
};

/// Cases per property, from `SUMI_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("SUMI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Infotexts as the tools write them.
const REAL_TEXTS: &[&str] = &[
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

/// Pieces the text mutations insert: separators, keys, odd values, escapes, wide characters.
const SNIPPETS: &[&str] = &[
    ", ",
    ": ",
    ",",
    ":",
    "\n",
    "\r\n",
    "\r",
    "\"",
    "\\",
    "\\u00e9",
    "\\ud800",
    "\"\\\"",
    "Negative prompt:",
    "Negative prompt: ",
    "Steps: ",
    "Steps: 0",
    "Steps: 99999999999999999999",
    "Sampler: ",
    "Schedule type: ",
    "CFG scale: NaN",
    "CFG scale: inf",
    "CFG scale: -1e309",
    "Seed: -1",
    "Seed: 18446744073709551615",
    "Size: 0x0",
    "Size: x",
    "Size: 4294967296x1",
    "Model hash: ",
    "RNG: NV",
    "é",
    "猫",
    "\u{0}",
    "\u{feff}",
    "👩‍🎨",
    " ",
    "\t",
];

/// One edit of a text (positions are taken modulo the length, at character boundaries).
#[derive(Debug, Clone)]
enum TextEdit {
    Insert(usize, String),
    Delete(usize, usize),
    Truncate(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn snippet() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(SNIPPETS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
        1 => (0usize..400).prop_map(|n| "x".repeat(n)),
    ]
}

fn text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        4 => (any::<usize>(), snippet()).prop_map(|(at, s)| TextEdit::Insert(at, s)),
        2 => (any::<usize>(), 0usize..20).prop_map(|(at, n)| TextEdit::Delete(at, n)),
        1 => any::<usize>().prop_map(TextEdit::Truncate),
        1 => any::<usize>().prop_map(TextEdit::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| TextEdit::SwapLines(a, b)),
    ]
}

/// The byte offset of character `at % (chars + 1)`.
fn char_offset(s: &str, at: usize) -> usize {
    let n = s.chars().count() + 1;
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .nth(at % n)
        .unwrap_or(s.len())
}

fn apply_text_edit(s: &mut String, edit: &TextEdit) {
    match edit {
        TextEdit::Insert(at, piece) => {
            let i = char_offset(s, *at);
            s.insert_str(i, piece);
        }
        TextEdit::Delete(at, n) => {
            let i = char_offset(s, *at);
            let end = s[i..]
                .char_indices()
                .nth(*n)
                .map_or(s.len(), |(j, _)| i + j);
            s.replace_range(i..end, "");
        }
        TextEdit::Truncate(at) => {
            let i = char_offset(s, *at);
            s.truncate(i);
        }
        TextEdit::DuplicateLine(i) | TextEdit::SwapLines(i, _) => {
            let mut lines: Vec<String> = s.split('\n').map(str::to_string).collect();
            let a = i % lines.len();
            match edit {
                TextEdit::DuplicateLine(_) => lines.insert(a, lines[a].clone()),
                TextEdit::SwapLines(_, j) => {
                    let b = j % lines.len();
                    lines.swap(a, b);
                }
                _ => unreachable!(),
            }
            *s = lines.join("\n");
        }
    }
}

fn mutated_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(REAL_TEXTS),
        prop::collection::vec(text_edit(), 0..8),
    )
        .prop_map(|(base, edits)| {
            let mut s = base.to_string();
            for e in &edits {
                apply_text_edit(&mut s, e);
            }
            s
        })
}

/// Parses text every way the gallery does; panics only through the checks here.
fn exercise_infotext(text: &str) {
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
fn assert_readable(message: &str) {
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

// ---- PNGs -------------------------------------------------------------------------------

/// One chunk of a PNG model; `len` and `crc` override the correct values when set.
#[derive(Debug, Clone)]
struct Chunk {
    kind: [u8; 4],
    data: Vec<u8>,
    len: Option<u32>,
    crc: Option<u32>,
}

impl Chunk {
    fn new(kind: &[u8; 4], data: Vec<u8>) -> Self {
        Chunk {
            kind: *kind,
            data,
            len: None,
            crc: None,
        }
    }
}

/// Splits a well-formed PNG into chunks.
fn chunks_of(png: &[u8]) -> Vec<Chunk> {
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

fn png_bytes(chunks: &[Chunk]) -> Vec<u8> {
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
fn sumi_png(seed: u64, w: u32, h: u32) -> Vec<u8> {
    let params = common::params(seed);
    let record = EmbeddedRecord {
        format: 1,
        params: params.clone(),
        meta: common::meta(),
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

/// A text chunk body: `tEXt`, `zTXt` or `iTXt`, compressed or not, well formed or not.
fn text_chunk() -> impl Strategy<Value = Chunk> {
    (
        0u8..3,
        prop_oneof![
            Just(PARAMETERS_KEY.to_string()),
            Just(SUMI_KEY.to_string()),
            "[ -~]{0,90}"
        ],
        prop_oneof![mutated_text(), "\\PC{0,60}"],
        any::<bool>(),
    )
        .prop_map(|(kind, key, text, garble)| {
            let mut data = key.into_bytes();
            data.push(0);
            let packed = miniz_oxide::deflate::compress_to_vec_zlib(text.as_bytes(), 6);
            let (kind, body): (&[u8; 4], Vec<u8>) = match kind {
                0 => (b"tEXt", text.into_bytes()),
                1 => (b"zTXt", [&[0u8][..], &packed].concat()),
                _ => (b"iTXt", [&[1u8, 0, b'e', b'n', 0, 0][..], &packed].concat()),
            };
            data.extend_from_slice(&body);
            if garble && data.len() > 4 {
                let i = data.len() / 2;
                data[i] ^= 0x5a;
            }
            Chunk::new(kind, data)
        })
}

/// One structural edit of a PNG.
#[derive(Debug, Clone)]
enum PngEdit {
    /// Flip a data byte and keep the old checksum (a CRC error).
    Flip(usize, usize, u8),
    /// Flip a data byte and fix the checksum (the decoders see the damage).
    FlipFixed(usize, usize, u8),
    /// Declare another length.
    Length(usize, u32),
    /// Store a wrong checksum.
    Crc(usize, u32),
    Insert(usize, Chunk),
    Remove(usize),
    Duplicate(usize),
    Swap(usize, usize),
}

fn png_edit() -> impl Strategy<Value = PngEdit> {
    let length = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(u32::MAX),
        Just(16 * 1024 * 1024 + 1),
        any::<u32>(),
        0u32..64,
    ];
    let kind = prop_oneof![
        Just(*b"IDAT"),
        Just(*b"IEND"),
        Just(*b"IHDR"),
        Just(*b"PLTE"),
        Just(*b"tRNS"),
        Just(*b"gAMA"),
        any::<[u8; 4]>(),
    ];
    let raw_chunk = (kind, prop::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(k, data)| Chunk::new(&k, data));
    prop_oneof![
        3 => (any::<usize>(), any::<usize>(), 1u8..).prop_map(|(c, i, x)| PngEdit::Flip(c, i, x)),
        3 => (any::<usize>(), any::<usize>(), 1u8..).prop_map(|(c, i, x)| PngEdit::FlipFixed(c, i, x)),
        2 => (any::<usize>(), length).prop_map(|(c, l)| PngEdit::Length(c, l)),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(c, v)| PngEdit::Crc(c, v)),
        2 => (any::<usize>(), text_chunk()).prop_map(|(at, c)| PngEdit::Insert(at, c)),
        1 => (any::<usize>(), raw_chunk).prop_map(|(at, c)| PngEdit::Insert(at, c)),
        1 => any::<usize>().prop_map(PngEdit::Remove),
        1 => any::<usize>().prop_map(PngEdit::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| PngEdit::Swap(a, b)),
    ]
}

fn apply_png_edit(chunks: &mut Vec<Chunk>, edit: PngEdit) {
    let n = chunks.len();
    if n == 0 {
        if let PngEdit::Insert(_, c) = edit {
            chunks.push(c);
        }
        return;
    }
    match edit {
        PngEdit::Flip(c, i, x) | PngEdit::FlipFixed(c, i, x) => {
            let fixed = matches!(edit, PngEdit::FlipFixed(..));
            let chunk = &mut chunks[c % n];
            if chunk.data.is_empty() {
                return;
            }
            let mut h = crc32fast::Hasher::new();
            h.update(&chunk.kind);
            h.update(&chunk.data);
            let old = h.finalize();
            let at = i % chunk.data.len();
            chunk.data[at] ^= x;
            if !fixed {
                chunk.crc = Some(old);
            }
        }
        PngEdit::Length(c, l) => chunks[c % n].len = Some(l),
        PngEdit::Crc(c, v) => chunks[c % n].crc = Some(v),
        PngEdit::Insert(at, c) => chunks.insert(at % (n + 1), c),
        PngEdit::Remove(c) => {
            chunks.remove(c % n);
        }
        PngEdit::Duplicate(c) => chunks.insert(c % n, chunks[c % n].clone()),
        PngEdit::Swap(a, b) => chunks.swap(a % n, b % n),
    }
}

/// A real PNG (Sumi's, or an A1111-style one) after structural edits, maybe truncated or
/// with bytes appended.
fn mutated_png() -> impl Strategy<Value = Vec<u8>> {
    (
        0u64..4,
        1u32..12,
        1u32..12,
        prop::collection::vec(png_edit(), 0..6),
        prop::option::weighted(0.15, any::<usize>()),
        prop::option::weighted(0.1, prop::collection::vec(any::<u8>(), 1..32)),
    )
        .prop_map(|(seed, w, h, edits, cut, tail)| {
            let base = if seed == 0 {
                let img = image::RgbImage::new(w, h);
                png_meta::encode_png(&img, &[(PARAMETERS_KEY, REAL_TEXTS[0])]).unwrap()
            } else {
                sumi_png(seed, w, h)
            };
            let mut chunks = chunks_of(&base);
            for e in edits {
                apply_png_edit(&mut chunks, e);
            }
            let mut bytes = png_bytes(&chunks);
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            if let Some(tail) = tail {
                bytes.extend_from_slice(&tail);
            }
            bytes
        })
}

/// Runs PNG bytes through the chunk reader and checker; panics only through the checks here.
fn exercise_png(bytes: &[u8]) {
    match png_meta::read_text_chunks(Cursor::new(bytes)) {
        Ok(chunks) => {
            for c in chunks.iter().filter(|c| c.key == PARAMETERS_KEY) {
                exercise_infotext(&c.text);
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

/// Imports a file into `g`; panics only through the checks here.
fn exercise_import(g: &Gallery, path: &Path) -> Result<(), String> {
    match g.import(path) {
        Ok(gen) => {
            let back = fs::read(g.image_path(&gen)).unwrap();
            image::load_from_memory(&back).expect("an imported image must decode");
            assert!(gen.params.cfg.is_finite());
            Ok(())
        }
        Err(e) => {
            let text = e.to_string();
            assert_readable(&text);
            Err(text)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_infotexts_never_panic(text in mutated_text()) {
        exercise_infotext(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        exercise_infotext(&text);
        exercise_infotext(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_pngs_never_panic(bytes in mutated_png()) {
        exercise_png(&bytes);
    }
}

thread_local! {
    /// One gallery for all import cases of a thread (opening a new one per case is slow).
    static GALLERY: (tempfile::TempDir, Gallery) = {
        let dir = tempfile::tempdir().unwrap();
        let g = Gallery::open(&dir.path().join("home")).unwrap();
        (dir, g)
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (cases() / 10).max(20), ..ProptestConfig::default() })]

    #[test]
    fn importing_mutated_pngs_never_panics(png in mutated_png()) {
        GALLERY.with(|(dir, g)| {
            let path = dir.path().join("case.png");
            fs::write(&path, &png).unwrap();
            let _ = exercise_import(g, &path);
            assert!(g.integrity_check().unwrap().is_empty());
        });
    }
}

// ---- The corpus ---------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

const EXPECTED_FILE: &str = "EXPECTED.txt";

/// Every corpus file with its bytes and expected result: `ok`, or `error: <part of the message>`.
fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let ok = || "ok".to_string();
    let err = |part: &str| format!("error: {part}");
    let mut out = Vec::new();
    let names = [
        "a1111-v1.6",
        "a1111-v1.10",
        "sdcpp",
        "fooocus",
        "krita-crlf",
        "sumi-multiline",
    ];
    for (name, text) in names.iter().zip(REAL_TEXTS) {
        out.push((format!("{name}.txt"), text.as_bytes().to_vec(), ok()));
    }
    let hostile_texts: &[(&str, &str, &str)] = &[
        ("empty.txt", "", "no settings line"),
        (
            "caption-only.txt",
            "just a caption, nothing else",
            "no settings line",
        ),
        (
            "nan-cfg.txt",
            "x\nSteps: 1, Sampler: Euler, CFG scale: NaN, Seed: 1, Size: 8x8",
            "CFG scale",
        ),
        (
            "inf-cfg.txt",
            "x\nSteps: 1, Sampler: Euler, CFG scale: inf, Seed: 1, Size: 8x8",
            "CFG scale",
        ),
        (
            "huge-steps.txt",
            "x\nSteps: 99999999999999999999, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8x8",
            "Steps",
        ),
        (
            "negative-seed.txt",
            "x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: -1, Size: 8x8",
            "Seed",
        ),
        (
            "no-size.txt",
            "x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8",
            "Size",
        ),
        (
            "unterminated-quote.txt",
            "x\nSteps: 20, Sampler: \"Euler, CFG scale: 7, Seed: 1, Size: 8x8",
            "ok",
        ),
        ("only-newlines.txt", "\n\n\n\r\n", "no settings line"),
        (
            "nul-and-bom.txt",
            "\u{feff}x\u{0}\nSteps: 1, Sampler: E\u{0}, CFG scale: 1, Seed: 1, Size: 1x1",
            "ok",
        ),
    ];
    for (name, text, expect) in hostile_texts {
        let expect = if *expect == "ok" { ok() } else { err(expect) };
        out.push((name.to_string(), text.as_bytes().to_vec(), expect));
    }

    out.push(("sumi.png".into(), sumi_png(3, 8, 6), ok()));
    let a1111 = png_meta::encode_png(
        &image::RgbImage::new(8, 6),
        &[(PARAMETERS_KEY, REAL_TEXTS[0])],
    )
    .unwrap();
    out.push(("a1111.png".into(), a1111.clone(), ok()));
    let wide = png_meta::encode_png(
        &image::RgbImage::new(4, 4),
        &[(
            PARAMETERS_KEY,
            &REAL_TEXTS[1].replace("old sailor", "猫と灯台"),
        )],
    )
    .unwrap();
    out.push(("itxt-utf8.png".into(), wide, ok()));

    let base = chunks_of(&sumi_png(5, 8, 6));
    let edited = |f: &dyn Fn(&mut Vec<Chunk>)| {
        let mut c = base.clone();
        f(&mut c);
        png_bytes(&c)
    };
    let index =
        |chunks: &[Chunk], kind: &[u8; 4]| chunks.iter().position(|c| &c.kind == kind).unwrap();
    let ztxt = {
        let mut data = b"parameters\0\0".to_vec();
        data.extend(miniz_oxide::deflate::compress_to_vec_zlib(
            REAL_TEXTS[1].as_bytes(),
            9,
        ));
        Chunk::new(b"zTXt", data)
    };
    out.push((
        "ztxt.png".into(),
        {
            let mut c = chunks_of(&png_meta::encode_png(&image::RgbImage::new(4, 4), &[]).unwrap());
            c.insert(1, ztxt);
            png_bytes(&c)
        },
        ok(),
    ));
    let bomb = {
        let mut data = b"parameters\0\0".to_vec();
        data.extend(miniz_oxide::deflate::compress_to_vec_zlib(
            &vec![b'a'; 17 * 1024 * 1024],
            9,
        ));
        Chunk::new(b"zTXt", data)
    };
    out.push((
        "ztxt-bomb.png".into(),
        edited(&|c| c.insert(1, bomb.clone())),
        err("compressed text is corrupt or too large"),
    ));
    out.push((
        "crc-error-text.png".into(),
        edited(&|c| {
            let i = index(c, b"tEXt");
            c[i].crc = Some(0);
        }),
        err("chunk tEXt has a wrong checksum"),
    ));
    out.push((
        "crc-error-idat.png".into(),
        edited(&|c| {
            let i = index(c, b"IDAT");
            c[i].crc = Some(1);
        }),
        err("chunk IDAT has a wrong checksum"),
    ));
    out.push((
        "crc-error-iend.png".into(),
        edited(&|c| {
            let i = index(c, b"IEND");
            c[i].crc = Some(2);
        }),
        err("chunk IEND has a wrong checksum"),
    ));
    out.push((
        "crc-error-ihdr.png".into(),
        edited(&|c| c[0].crc = Some(3)),
        err("chunk IHDR has a wrong checksum"),
    ));
    out.push((
        "huge-length-text.png".into(),
        edited(&|c| {
            let i = index(c, b"tEXt");
            c[i].len = Some(0x7fff_ffff);
        }),
        err("larger than the 16 MiB limit"),
    ));
    out.push((
        "huge-length-idat.png".into(),
        edited(&|c| {
            let i = index(c, b"IDAT");
            c[i].len = Some(0x7fff_fff0);
        }),
        err("truncated"),
    ));
    out.push((
        "length-over-i32.png".into(),
        edited(&|c| {
            let i = index(c, b"IDAT");
            c[i].len = Some(u32::MAX);
        }),
        err("chunk length out of range"),
    ));
    out.push((
        "no-iend.png".into(),
        edited(&|c| {
            c.pop();
        }),
        err("truncated"),
    ));
    let full = png_bytes(&base);
    out.push((
        "truncated.png".into(),
        full[..full.len() - 20].to_vec(),
        err("truncated"),
    ));
    out.push(("zero-bytes.png".into(), Vec::new(), err("not a PNG file")));
    out.push((
        "signature-only.png".into(),
        full[..8].to_vec(),
        err("truncated"),
    ));
    out.push((
        "gif-named-png.png".into(),
        b"GIF89a\x01\0\x01\0\0\0\0;".to_vec(),
        err("not a PNG file"),
    ));
    out.push((
        "huge-dimensions.png".into(),
        edited(&|c| {
            c[0].data[..8].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
        }),
        err("cannot decode"),
    ));
    out.push((
        "idat-garbage.png".into(),
        edited(&|c| {
            let i = index(c, b"IDAT");
            c[i].data = vec![0x78, 0x9c, 0xff, 0xff, 0xff];
        }),
        err("cannot decode"),
    ));
    out.push((
        "chunk-before-ihdr.png".into(),
        edited(&|c| {
            let i = index(c, b"IDAT");
            let d = c[i].clone();
            c.insert(0, d);
        }),
        err("cannot decode"),
    ));
    out.push((
        "bad-sumi-json.png".into(),
        edited(&|c| {
            let i = c
                .iter()
                .position(|x| x.data.starts_with(b"sumi\0"))
                .unwrap();
            c[i].data = b"sumi\0{\"format\": 1, \"params\": ".to_vec();
        }),
        ok(),
    ));
    out.push((
        "sumi-json-only-broken.png".into(),
        edited(&|c| {
            c.retain(|x| !x.data.starts_with(b"parameters\0"));
            let i = c
                .iter()
                .position(|x| x.data.starts_with(b"sumi\0"))
                .unwrap();
            c[i].data = b"sumi\0[]".to_vec();
        }),
        err("the Sumi record embedded in"),
    ));
    out.push((
        "keyword-too-long.png".into(),
        edited(&|c| {
            c.insert(
                1,
                Chunk::new(b"tEXt", [vec![b'k'; 100], vec![0], b"v".to_vec()].concat()),
            )
        }),
        err("keyword length not 1-79 bytes"),
    ));
    out.push((
        "itxt-bad-utf8.png".into(),
        edited(&|c| {
            c.insert(
                1,
                Chunk::new(b"iTXt", b"parameters\0\0\0\0\0\xff\xfe".to_vec()),
            )
        }),
        err("iTXt text is not UTF-8"),
    ));
    out.push((
        "nan-cfg.png".into(),
        png_meta::encode_png(
            &image::RgbImage::new(2, 2),
            &[(
                PARAMETERS_KEY,
                "x\nSteps: 1, Sampler: Euler, CFG scale: NaN, Seed: 1, Size: 2x2",
            )],
        )
        .unwrap(),
        err("CFG scale"),
    ));
    out.push((
        "no-settings.png".into(),
        png_meta::encode_png(
            &image::RgbImage::new(2, 2),
            &[("Software", "a paint program")],
        )
        .unwrap(),
        err("no generation settings"),
    ));
    out.push((
        "text-after-iend.png".into(),
        [a1111.as_slice(), b"trailing garbage"].concat(),
        ok(),
    ));
    out
}

/// Parses the expectations file: name → expectation.
fn expectations() -> BTreeMap<String, String> {
    fs::read_to_string(corpus_dir().join(EXPECTED_FILE))
        .expect("tests/corpus/EXPECTED.txt is missing; run the write_corpus test")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, expect) = l.split_once('\t').expect("name<TAB>expectation");
            (name.to_string(), expect.to_string())
        })
        .collect()
}

/// Regenerates `corpus/` (only with `SUMI_WRITE_CORPUS=1`).
#[test]
fn write_corpus() {
    if std::env::var_os("SUMI_WRITE_CORPUS").is_none() {
        return;
    }
    let dir = corpus_dir();
    fs::create_dir_all(&dir).unwrap();
    let mut listing = String::from(
        "# Expected result of each corpus file: ok, or error: <part of the message>.\n\
         # Written by SUMI_WRITE_CORPUS=1 cargo test -p sumi-gallery --test fuzz write_corpus\n",
    );
    for (name, bytes, expect) in corpus() {
        fs::write(dir.join(&name), bytes).unwrap();
        listing.push_str(&format!("{name}\t{expect}\n"));
    }
    fs::write(dir.join(EXPECTED_FILE), listing).unwrap();
}

/// Replays every corpus file: texts through the parser, PNGs through the reader and an import.
#[test]
fn corpus_files_give_their_expected_results() {
    let expected = expectations();
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != EXPECTED_FILE)
        .collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus is incomplete");
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let expect = expected
            .get(&name)
            .unwrap_or_else(|| panic!("corpus file {name} has no line in {EXPECTED_FILE}"));
        let bytes = fs::read(&path).unwrap();
        let got = if name.ends_with(".txt") {
            let text = String::from_utf8(bytes).unwrap();
            exercise_infotext(&text);
            infotext::parse(&text)
                .to_params()
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            exercise_png(&bytes);
            // A fresh gallery each time, so that no file is "already in the gallery".
            let g = Gallery::open(&dir.path().join(&name)).unwrap();
            exercise_import(&g, &path)
        };
        match (expect.as_str(), got) {
            ("ok", Ok(())) => {}
            ("ok", Err(e)) => panic!("{name}: expected to succeed, failed: {e}"),
            (want, Ok(())) => panic!("{name}: expected {want}, succeeded"),
            (want, Err(e)) => {
                let part = want.strip_prefix("error: ").unwrap_or(want);
                assert!(e.contains(part), "{name}: expected {want:?}, got {e:?}");
            }
        }
    }
}
