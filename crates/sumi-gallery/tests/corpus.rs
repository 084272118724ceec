//! The corpus: real and hostile infotexts and PNGs under `tests/corpus/`, each replayed
//! through the parser, the PNG reader and an import, with its expected result in
//! `tests/corpus/EXPECTED.txt`: `ok`; `note: <part of the note>` for a PNG that imports with a
//! note about its settings; or `error: <part of the message>`. Texts are read strictly
//! (`Parsed::to_params`, which fails on a missing or unreadable setting).
//!
//! The files are produced by this script: `SUMI_WRITE_CORPUS=1 cargo test -p sumi-gallery
//! --test corpus write_corpus` rewrites them from [`corpus`].

mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use common::samples::{
    chunks_of, comfy_png, exercise_import, exercise_infotext, exercise_png, png_bytes, sumi_png,
    Chunk, COMFY_GRAPHS, REAL_TEXTS,
};
use sumi_gallery::{
    infotext,
    png_meta::{self, PARAMETERS_KEY},
    Gallery,
};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

const EXPECTED_FILE: &str = "EXPECTED.txt";

/// Every corpus file with its bytes and expected result: `ok`, or `error: <part of the message>`.
fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let ok = || "ok".to_string();
    let err = |part: &str| format!("error: {part}");
    let note = |part: &str| format!("note: {part}");
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
        note("CFG scale \"NaN\" is not a number: 7 (A1111's default) recorded"),
    ));
    out.push((
        "no-seed.png".into(),
        png_meta::encode_png(
            &image::RgbImage::new(2, 2),
            &[(
                PARAMETERS_KEY,
                "x\nSteps: 0, Sampler: Euler, CFG scale: inf, Size: 7x9",
            )],
        )
        .unwrap(),
        note("CFG scale \"inf\" is not a finite number: 7 (A1111's default) recorded; the text has no Seed: 0 recorded"),
    ));
    out.push((
        "comfy-txt2img.png".into(),
        comfy_png(COMFY_GRAPHS[0], 512, 512),
        ok(),
    ));
    out.push((
        "comfy-img2img.png".into(),
        comfy_png(COMFY_GRAPHS[3], 64, 64),
        note("ComfyUI graph not understood: the sampler starts from VAEEncode (node 3)"),
    ));
    out.push((
        "comfy-not-a-graph.png".into(),
        comfy_png("a prompt, not a graph", 2, 2),
        err("no generation settings"),
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
        "# Expected result of each corpus file: ok, note: <part of the import's note>, or error: <part of the message>.\n\
         # Written by SUMI_WRITE_CORPUS=1 cargo test -p sumi-gallery --test corpus write_corpus\n",
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
                .map(|_| None)
                .map_err(|e| e.to_string())
        } else {
            exercise_png(&bytes);
            // A fresh gallery each time, so that no file is "already in the gallery".
            let g = Gallery::open(&dir.path().join(&name)).unwrap();
            exercise_import(&g, &path)
        };
        match (expect.as_str(), got) {
            ("ok", Ok(None)) => {}
            ("ok", Ok(Some(note))) => panic!("{name}: expected no note, got {note:?}"),
            (want, Ok(note)) if want.starts_with("note: ") => {
                let part = &want["note: ".len()..];
                let note = note.unwrap_or_default();
                assert!(
                    note.contains(part),
                    "{name}: expected {want:?}, got {note:?}"
                );
            }
            (want, Ok(_)) => panic!("{name}: expected {want}, succeeded"),
            (want, Err(e)) => {
                let part = want.strip_prefix("error: ").unwrap_or(want);
                assert!(
                    want.starts_with("error: ") && e.contains(part),
                    "{name}: expected {want:?}, got {e:?}"
                );
            }
        }
    }
}
