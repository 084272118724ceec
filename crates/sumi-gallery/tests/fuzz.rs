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
//! The committed corpus of real and hostile files is replayed by `tests/corpus.rs`.

mod common;

use std::fs;

use common::samples::{
    chunks_of, comfy_png, exercise_import, exercise_infotext, exercise_png, png_bytes, sumi_png,
    Chunk, COMFY_GRAPHS, REAL_TEXTS,
};
use proptest::prelude::*;
use sumi_gallery::{
    png_meta::{self, PARAMETERS_KEY, SUMI_KEY},
    Gallery,
};

/// Cases per property, from `SUMI_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("SUMI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

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

/// A real PNG (Sumi's, an A1111-style one or a ComfyUI one) after structural edits, maybe truncated or
/// with bytes appended.
fn mutated_png() -> impl Strategy<Value = Vec<u8>> {
    (
        0u64..5,
        1u32..12,
        1u32..12,
        prop::collection::vec(png_edit(), 0..6),
        prop::option::weighted(0.15, any::<usize>()),
        prop::option::weighted(0.1, prop::collection::vec(any::<u8>(), 1..32)),
    )
        .prop_map(|(seed, w, h, edits, cut, tail)| {
            let base = match seed {
                0 => {
                    let img = image::RgbImage::new(w, h);
                    png_meta::encode_png(&img, &[(PARAMETERS_KEY, REAL_TEXTS[0])]).unwrap()
                }
                1 => comfy_png(COMFY_GRAPHS[(w + h) as usize % COMFY_GRAPHS.len()], w, h),
                _ => sumi_png(seed, w, h),
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
