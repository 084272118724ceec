//! The engine's rules on imported settings, and imports that keep every image with its note.

use std::{fs, path::Path};

use sumi_gallery::{comfy, png_meta, GenerationMeta};

use super::*;

/// Settings every rule accepts.
fn usable() -> GenerationParams {
    GenerationParams {
        prompt: "a lighthouse".into(),
        sampler: "Euler a".into(),
        schedule: "Automatic".into(),
        width: 512,
        height: 768,
        ..Default::default()
    }
}

/// Writes a PNG of `w` x `h` with these text chunks.
fn write_png(path: &Path, w: u32, h: u32, texts: &[(&str, &str)]) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 3]));
    fs::write(path, png_meta::encode_png(&img, texts).unwrap()).unwrap();
}

#[test]
fn usable_settings_raise_nothing() {
    assert!(check(&usable()).is_empty());
    for (sampler, schedule) in [
        ("DPM++ 2M Karras", "Automatic"),
        ("DPM++ 2M", ""),
        ("dpmpp_2m", "karras"),
        ("DPM++ SDE", "Karras"),
    ] {
        let p = GenerationParams {
            sampler: sampler.into(),
            schedule: schedule.into(),
            ..usable()
        };
        assert!(
            check(&p).is_empty(),
            "{sampler} / {schedule}: {:?}",
            check(&p)
        );
    }
    for source in ["gpu", "cpu", "nv", "comfy-cpu", "comfy-nv"] {
        let p = GenerationParams {
            noise_source: source.into(),
            ..usable()
        };
        assert!(check(&p).is_empty(), "{source}");
    }
}

#[test]
fn every_rule_has_its_sentence() {
    let p = GenerationParams {
        steps: 0,
        cfg: 150.0,
        width: 7,
        height: 9,
        sampler: "Restart".into(),
        schedule: "KL Optimal".into(),
        noise_source: "cuda".into(),
        clip_skip: 0,
        variation_strength: 1.5,
        prompt: "a".repeat(MAX_PROMPT_CHARS + 1),
        negative_prompt: "é".repeat(30_000),
        ..usable()
    };
    assert_eq!(
        check(&p),
        [
            "Steps 0 is out of range (1 to 500)",
            "CFG scale 150 is out of range (0 to 100)",
            "Size 7x9 is not usable: width and height must be multiples of 8 from 8 to 8192",
            "sampler \"Restart\" is not one Sumi has",
            "schedule \"KL Optimal\" is not one Sumi has",
            "noise source \"cuda\" is not one Sumi has (cpu, nv, comfy-cpu, comfy-nv)",
            "Clip skip 0 is out of range (1 to 12)",
            "Variation seed strength 1.5 is out of range (0 to 1)",
            "the prompt has 20001 characters, more than the 20000 Sumi reads",
            "the negative prompt has 30000 characters, more than the 20000 Sumi reads",
        ]
    );
    let known_sampler = GenerationParams {
        schedule: "Linear Quadratic".into(),
        ..usable()
    };
    assert_eq!(
        check(&known_sampler),
        ["schedule \"Linear Quadratic\" is not one Sumi has"]
    );
    let long = GenerationParams {
        sampler: "x".repeat(1000),
        ..usable()
    };
    assert!(check(&long)[0].len() < 100);
}

#[test]
fn a1111_texts_import_with_the_engines_notes() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let g = Gallery::open(home.path()).unwrap();
    let base = "a lighthouse\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 16x8";
    let long = format!("{}{}", "a".repeat(30_000), &base["a lighthouse".len()..]);
    let cases = [
        (
            base.replace("CFG scale: 7", "CFG scale: inf"),
            "CFG scale \"inf\" is not a finite number: 7 (A1111's default) recorded",
        ),
        (
            base.replace("CFG scale: 7", "CFG scale: NaN"),
            "CFG scale \"NaN\" is not a number: 7 (A1111's default) recorded",
        ),
        (
            base.replace("Steps: 20", "Steps: 0"),
            "Steps 0 is out of range (1 to 500)",
        ),
        (
            base.replace("Size: 16x8", "Size: 7x9"),
            "Size 7x9 is not usable: width and height must be multiples of 8 from 8 to 8192",
        ),
        (
            long,
            "the prompt has 30000 characters, more than the 20000 Sumi reads",
        ),
        (
            base.replace("Seed: 1, ", ""),
            "the text has no Seed: 0 recorded, so the image cannot be made again exactly",
        ),
    ];
    for (i, (text, note)) in cases.iter().enumerate() {
        let text = text.replace("a lighthouse", &format!("lighthouse {i}"));
        let file = src.path().join(format!("{i:05}-1.png"));
        write_png(&file, 16, 8, &[("parameters", &text)]);
        let gen = import(&g, &file).unwrap();
        assert_eq!(gen.meta.note.as_deref(), Some(*note), "case {i}");
    }
    let again = import_paths(&g, &[src.path().to_path_buf()]);
    assert_eq!(
        (again.imported.len(), again.already_in_gallery.len()),
        (0, cases.len())
    );
}

#[test]
fn comfy_and_sumi_pngs_go_through_the_same_rules() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let g = Gallery::open(home.path()).unwrap();
    let loras = include_str!("../../../sumi-gallery/tests/comfy/loras-clip-skip.json");
    write_png(
        &src.path().join("a.png"),
        512,
        768,
        &[(comfy::PROMPT_KEY, loras)],
    );
    let odd = loras
        .replace("\"euler_ancestral\"", "\"heunpp2\"")
        .replace("\"karras\"", "\"kl_optimal\"");
    write_png(
        &src.path().join("b.png"),
        512,
        768,
        &[(comfy::PROMPT_KEY, &odd)],
    );
    let restart = GenerationParams {
        sampler: "Restart".into(),
        ..usable()
    };
    let meta = GenerationMeta::default();
    let png = sumi_gallery::encode_generation_png(&restart, &meta, &image::RgbImage::new(8, 8));
    fs::write(src.path().join("c.png"), png.unwrap()).unwrap();
    fs::write(src.path().join("d.png"), b"not a png").unwrap();

    let report = import_paths(&g, &[src.path().to_path_buf()]);
    assert_eq!(report.imported.len(), 3, "{:?}", report.failed);
    assert_eq!(report.failed.len(), 1);
    let notes: Vec<String> = report
        .imported
        .iter()
        .map(|x| x.meta.note.clone().unwrap_or_default())
        .collect();
    assert_eq!(notes[0].split("; ").count(), 3, "{}", notes[0]);
    assert!(!notes[0].contains("not one Sumi has"), "{}", notes[0]);
    assert!(
        notes[1].ends_with(
            "sampler \"heunpp2\" is not one Sumi has; schedule \"KL Optimal\" is not one Sumi has"
        ),
        "{}",
        notes[1]
    );
    assert_eq!(notes[2], "sampler \"Restart\" is not one Sumi has");
}
